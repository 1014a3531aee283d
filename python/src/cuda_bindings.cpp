// blfft._cuda: the Python binding of the CUDA backend (blfft::cuda, include/blfft/cuda.hpp).
//
// A module of its own (DESIGN.md 2), so that the CPU path (blfft._core) never depends on it: it is
// built only where the CUDA backend is (nvcc and cuFFT found), links the CUDA runtime statically
// and finds cuFFT through its RPATH, and imports on machines without a GPU or a driver (then
// device_count() is 0 and every compute call raises blfft.BlfftError, code "unsupported").
//
// The same entry points as blfft._core, on CUDA tensors, plus a trailing `stream`: the
// cudaStream_t to enqueue on, as an int (torch.cuda.current_stream(device).cuda_stream; 0 is the
// legacy default stream), passed explicitly by the caller on every call. Every tensor of a call
// must be device memory of one and the same GPU; that GPU runs the call. Outputs and saved
// spectra are allocated by the caller (torch.empty on the device); nothing here synchronises,
// except select_by_energy / energy_map, which return host data. The GIL is released while the
// backend enqueues its work. Conversion of tensors, checks and error mapping: dlpack_adaptor.hpp,
// shared with blfft._core. The geometry types (ConvParams, Compression, EnergySelection) are
// blfft._core's: this module imports it and takes and returns its objects.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "blfft/blfft.hpp"
#include "blfft/cuda.hpp"
#include "dlpack_adaptor.hpp"

namespace py = pybind11;
using namespace blfft_py;

#ifndef BLFFT_PY_CUDA_ARCHITECTURES
#define BLFFT_PY_CUDA_ARCHITECTURES ""
#endif

namespace {

bool is_cuda_memory(int32_t device_type) {
  return device_type == dl::device_cuda || device_type == dl::device_cuda_managed;
}

[[noreturn]] void refuse_device(const char* name, const dl::device& d) {
  fail(error_code::type_mismatch,
       std::string(name) + " is on " + device_name(d) +
           ": blfft._cuda takes CUDA tensors (device memory of one GPU); tensors on the CPU go "
           "to blfft._core");
}

/// The device policy of this module: every tensor of a call is CUDA memory of the device of the
/// first tensor checked (which is then the device the call runs on).
class one_cuda_device {
 public:
  void operator()(const imported& a) {
    const auto& d = a.raw().dev;
    if (!is_cuda_memory(d.device_type)) refuse_device(a.name(), d);
    if (first_ == nullptr) {
      first_ = &a;
      return;
    }
    const auto& f = first_->raw().dev;
    if (d.device_id != f.device_id) {
      fail(error_code::type_mismatch, std::string(a.name()) + " is on " + device_name(d) +
                                          " but " + first_->name() + " is on " +
                                          device_name(f) + ": all tensors of a call must be on "
                                          "one device");
    }
  }
  int device() const { return first_ ? first_->raw().dev.device_id : 0; }

 private:
  const imported* first_ = nullptr;
};

/// The `stream` argument of obj.__dlpack__ for an object that is not a capsule yet (DLPack's
/// stream protocol: 1 means the legacy default stream, whose handle is 0), after checking with
/// __dlpack_device__ that it is a CUDA tensor at all (so that a host tensor gets this module's
/// error, naming the argument, rather than its producer's reaction to a stream). None for
/// capsules: they were exported already (torch.utils.dlpack.to_dlpack makes no stream promise;
/// blfft's Python layer enqueues on the tensors' current stream, so none is needed).
py::object consumer_stream(const py::handle& obj, const char* name, std::uintptr_t stream) {
  if (PyCapsule_CheckExact(obj.ptr()) || !py::hasattr(obj, "__dlpack__")) return py::none();
  if (py::hasattr(obj, "__dlpack_device__")) {
    const auto d = obj.attr("__dlpack_device__")().cast<std::pair<int32_t, int32_t>>();
    if (!is_cuda_memory(d.first)) refuse_device(name, dl::device{d.first, d.second});
  }
  return py::int_(stream == 0 ? std::uintptr_t(1) : stream);
}

void take(opt_imported& slot, const py::object& obj, const char* name, std::uintptr_t stream) {
  if (!obj.is_none()) slot.emplace(obj, name, consumer_stream(obj, name, stream));
}

void* as_stream(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

template <class T>
std::shared_ptr<const blfft::cuda::plan<T>> plan_for(const blfft::conv_params& p,
                                                     const blfft::compression& c, int device) {
  return blfft::cuda::get_plan<T>(p, c, device);
}

// ------------------------------------------------------------------------------------------------
// The compute entry points: blfft._core's, with the stream last.
// ------------------------------------------------------------------------------------------------

void forward(const blfft::conv_params& p, const blfft::compression& c, const py::object& x,
             const py::object& w, const py::object& bias, const py::object& y,
             const py::object& x_spectrum, const py::object& w_spectrum, std::uintptr_t stream) {
  opt_imported X, W, Y, B, XS, WS;
  take(X, x, "input", stream);
  take(W, w, "weight", stream);
  take(B, bias, "bias", stream);
  take(Y, y, "output", stream);
  take(XS, x_spectrum, "x_spectrum", stream);
  take(WS, w_spectrum, "w_spectrum", stream);
  if (!X || !W || !Y) fail(error_code::invalid_argument, "input, weight and output are required");
  one_cuda_device dev;
  const scalar s = check_common({ptr(X), ptr(W), ptr(B)}, {ptr(Y), ptr(XS), ptr(WS)}, dev);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, dev.device());
    const auto& g = pl->geometry();
    const T* b = B ? flat_of<T>(*B, g.params.out_channels) : nullptr;
    T* xs = XS ? flat_of<T>(*XS, g.x_spectrum_size()) : nullptr;
    T* ws = WS ? flat_of<T>(*WS, g.w_spectrum_size()) : nullptr;
    pl->forward(view_of<const T>(*X), view_of<const T>(*W), b, view_of<T>(*Y), xs, ws,
                as_stream(stream));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void input_spectrum(const blfft::conv_params& p, const blfft::compression& c,
                    const py::object& x, const py::object& x_spectrum, std::uintptr_t stream) {
  opt_imported X, XS;
  take(X, x, "input", stream);
  take(XS, x_spectrum, "x_spectrum", stream);
  if (!X || !XS) fail(error_code::invalid_argument, "input and x_spectrum are required");
  one_cuda_device dev;
  const scalar s = check_common({ptr(X)}, {ptr(XS)}, dev);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, dev.device());
    pl->input_spectrum(view_of<const T>(*X), flat_of<T>(*XS, pl->geometry().x_spectrum_size()),
                       as_stream(stream));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void weight_spectrum(const blfft::conv_params& p, const blfft::compression& c,
                     const py::object& w, const py::object& w_spectrum, std::uintptr_t stream) {
  opt_imported W, WS;
  take(W, w, "weight", stream);
  take(WS, w_spectrum, "w_spectrum", stream);
  if (!W || !WS) fail(error_code::invalid_argument, "weight and w_spectrum are required");
  one_cuda_device dev;
  const scalar s = check_common({ptr(W)}, {ptr(WS)}, dev);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, dev.device());
    pl->weight_spectrum(view_of<const T>(*W), flat_of<T>(*WS, pl->geometry().w_spectrum_size()),
                        as_stream(stream));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void forward_spectra(const blfft::conv_params& p, const blfft::compression& c,
                     const py::object& x_spectrum, const py::object& w_spectrum,
                     const py::object& bias, const py::object& y, std::uintptr_t stream) {
  opt_imported XS, WS, B, Y;
  take(XS, x_spectrum, "x_spectrum", stream);
  take(WS, w_spectrum, "w_spectrum", stream);
  take(B, bias, "bias", stream);
  take(Y, y, "output", stream);
  if (!XS || !WS || !Y)
    fail(error_code::invalid_argument, "x_spectrum, w_spectrum and output are required");
  one_cuda_device dev;
  const scalar s = check_common({ptr(XS), ptr(WS), ptr(B)}, {ptr(Y)}, dev);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, dev.device());
    const auto& g = pl->geometry();
    const T* b = B ? flat_of<T>(*B, g.params.out_channels) : nullptr;
    pl->forward_spectra(flat_of<T>(*XS, g.x_spectrum_size()),
                        flat_of<T>(*WS, g.w_spectrum_size()), b, view_of<T>(*Y),
                        as_stream(stream));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void backward(const blfft::conv_params& p, const blfft::compression& c,
              const py::object& grad_output, const py::object& x_spectrum,
              const py::object& w_spectrum, const py::object& grad_input,
              const py::object& grad_weight, const py::object& grad_bias, std::uintptr_t stream) {
  opt_imported G, XS, WS, GI, GW, GB;
  take(G, grad_output, "grad_output", stream);
  take(XS, x_spectrum, "x_spectrum", stream);
  take(WS, w_spectrum, "w_spectrum", stream);
  take(GI, grad_input, "grad_input", stream);
  take(GW, grad_weight, "grad_weight", stream);
  take(GB, grad_bias, "grad_bias", stream);
  if (!G) fail(error_code::invalid_argument, "grad_output is required");
  one_cuda_device dev;
  const scalar s = check_common({ptr(G), ptr(XS), ptr(WS)}, {ptr(GI), ptr(GW), ptr(GB)}, dev);
  if (GI && !WS)
    fail(error_code::invalid_argument, "grad_input needs w_spectrum (got None)");
  if (GW && !XS)
    fail(error_code::invalid_argument, "grad_weight needs x_spectrum (got None)");
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, dev.device());
    const auto& g = pl->geometry();
    const T* xs = XS ? flat_of<T>(*XS, g.x_spectrum_size()) : nullptr;
    const T* ws = WS ? flat_of<T>(*WS, g.w_spectrum_size()) : nullptr;
    T* gb = GB ? flat_of<T>(*GB, g.params.out_channels) : nullptr;
    std::optional<blfft::tensor_view<T>> gi, gw;
    if (GI) gi = view_of<T>(*GI);
    if (GW) gw = view_of<T>(*GW);
    pl->backward(view_of<const T>(*G), xs, ws, gi ? &*gi : nullptr, gw ? &*gw : nullptr, gb,
                 as_stream(stream));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

blfft::energy_selection select_by_energy(const blfft::conv_params& p, const py::object& x,
                                         double fraction, std::uintptr_t stream) {
  opt_imported X;
  take(X, x, "input", stream);
  if (!X) fail(error_code::invalid_argument, "input is required");
  one_cuda_device dev;
  const scalar s = check_common({ptr(X)}, {}, dev);
  py::gil_scoped_release nogil;
  if (s == scalar::f32)
    return blfft::cuda::select_by_energy<float>(p, view_of<const float>(*X), fraction,
                                                dev.device(), as_stream(stream));
  return blfft::cuda::select_by_energy<double>(p, view_of<const double>(*X), fraction,
                                               dev.device(), as_stream(stream));
}

exported energy_map(const blfft::conv_params& p, const py::object& x, std::uintptr_t stream) {
  opt_imported X;
  take(X, x, "input", stream);
  if (!X) fail(error_code::invalid_argument, "input is required");
  one_cuda_device dev;
  const scalar s = check_common({ptr(X)}, {}, dev);
  std::vector<double> e;
  {
    py::gil_scoped_release nogil;
    e = s == scalar::f32 ? blfft::cuda::energy_map<float>(p, view_of<const float>(*X),
                                                          dev.device(), as_stream(stream))
                         : blfft::cuda::energy_map<double>(p, view_of<const double>(*X),
                                                           dev.device(), as_stream(stream));
  }
  const auto g = blfft::make_geometry(p, blfft::compression::none());
  return exported::from_vector(std::move(e), {g.grid[0], g.bins_w});
}

py::dict memory_pool_stats(int device) {
  const auto st = blfft::cuda::memory_pool_stats(device);
  py::dict d;
  d["reserved"] = st.reserved;
  d["used"] = st.used;
  d["reserved_peak"] = st.reserved_peak;
  d["used_peak"] = st.used_peak;
  return d;
}

std::vector<std::string> architectures() {
  std::vector<std::string> archs;
  std::stringstream ss(BLFFT_PY_CUDA_ARCHITECTURES);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) archs.push_back(item);
  return archs;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "blfft._cuda: binding of blfft's CUDA backend (blfft::cuda); CUDA tensors only";

  // ConvParams, Compression, EnergySelection and BlfftError are blfft._core's.
  py::module_ core = py::module_::import("blfft._core");
  m.attr("BlfftError") = core.attr("BlfftError");
  install_error_translator(core.attr("BlfftError"));

  // --- build facts ------------------------------------------------------------------------------
  m.attr("__version__") = BLFFT_VERSION_STRING;
  m.attr("cuda_architectures") = architectures();
  m.attr("dlpack_version") = py::make_tuple(dl::abi_major, dl::abi_minor);
  m.def("compiled", &blfft::cuda::compiled, "True: the CUDA backend is compiled in.");
  m.def("device_count", &blfft::cuda::device_count,
        "CUDA devices usable by this process (0 without a driver or a GPU). Never raises.");

  // --- compute ----------------------------------------------------------------------------------
  // `stream` has no default on purpose: the caller names the stream of every call
  // (torch.cuda.current_stream(device).cuda_stream).
  m.def("forward", &forward, py::arg("params"), py::arg("compression"), py::arg("input"),
        py::arg("weight"), py::arg("bias"), py::arg("output"), py::arg("x_spectrum"),
        py::arg("w_spectrum"), py::arg("stream"),
        "output = band-limited conv(input, weight) + bias on the tensors' GPU, enqueued on "
        "`stream`; optionally stores the compressed spectra into x_spectrum / w_spectrum.");
  m.def("input_spectrum", &input_spectrum, py::arg("params"), py::arg("compression"),
        py::arg("input"), py::arg("x_spectrum"), py::arg("stream"));
  m.def("weight_spectrum", &weight_spectrum, py::arg("params"), py::arg("compression"),
        py::arg("weight"), py::arg("w_spectrum"), py::arg("stream"));
  m.def("forward_spectra", &forward_spectra, py::arg("params"), py::arg("compression"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("bias"), py::arg("output"),
        py::arg("stream"));
  m.def("backward", &backward, py::arg("params"), py::arg("compression"), py::arg("grad_output"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("grad_input"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("stream"),
        "All gradients from one transform of grad_output; each of grad_input, grad_weight, "
        "grad_bias may be None to skip it.");
  m.def("select_by_energy", &select_by_energy, py::arg("params"), py::arg("input"),
        py::arg("fraction"), py::arg("stream"),
        "Energy map on the GPU (synchronises `stream`), then the CPU core's selection.");
  m.def("energy_map", &energy_map, py::arg("params"), py::arg("input"), py::arg("stream"),
        "Energy per rfft bin of the padded input, computed on the GPU; a host float64 "
        "(Lh, Lw/2+1) buffer exported through DLPack. Synchronises `stream`.");
  m.def("dlpack_info", &dlpack_info, py::arg("tensor"),
        "What the binding reads from a DLPack tensor (consumes a capsule).");

  py::class_<exported>(m, "DLPackBuffer",
                       "A C++-owned host buffer; take it with torch.from_dlpack (no copy).",
                       py::module_local())
      .def("__dlpack__", &exported::dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none())
      .def("__dlpack_device__", &exported::dlpack_device)
      .def_property_readonly("shape", &exported::shape);

  // --- runtime ----------------------------------------------------------------------------------
  m.def("plan_cache_size", &blfft::cuda::plan_cache_size);
  m.def("clear_plan_cache", &blfft::cuda::clear_plan_cache,
        "Drops the cached CUDA plans and returns the memory pools' idle memory to the driver.");
  m.def("memory_pool_stats", &memory_pool_stats, py::arg("device") = 0,
        "Bytes in blfft's stream-ordered pool of one device: reserved, used and their peaks.");
  m.def("reset_pool_peaks", &blfft::cuda::reset_pool_peaks, py::arg("device") = 0);
}
