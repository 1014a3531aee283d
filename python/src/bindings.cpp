// blfft._core: the Python binding of the C++ core and its CPU backend.
//
// Tensors cross in both directions by DLPack, without copies: every argument that is a tensor is
// either a DLPack capsule or an object with __dlpack__ (a torch.Tensor, a NumPy array, ...).
// Python allocates every output and every saved spectrum and passes it in, so C++ never owns
// framework memory. Buffers that C++ does own (an energy map) go out as DLPack producers.
// The GIL is released while the core computes. The DLPack code is shared with blfft._cuda (the
// CUDA backend's module) in dlpack_adaptor.hpp.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "blfft/blfft.hpp"
#include "dlpack_adaptor.hpp"

namespace py = pybind11;
using namespace blfft_py;

namespace {

/// The device check every tensor goes through: the CPU backend reads host memory only. CUDA
/// tensors belong to blfft._cuda (the Python layer dispatches them there).
void require_host(const imported& a) {
  const auto& d = a.raw().dev;
  if (d.device_type == dl::device_cpu || d.device_type == dl::device_cuda_host) return;
  if (d.device_type == dl::device_cuda || d.device_type == dl::device_cuda_managed) {
    fail(error_code::unsupported,
         std::string(a.name()) + " is on " + device_name(d) +
             ": blfft._core is the CPU backend; CUDA tensors go to blfft._cuda (see "
             "blfft.build_info())");
  }
  fail(error_code::unsupported, std::string(a.name()) + " is on " + device_name(d) +
                                    "; blfft runs on the CPU and on CUDA devices");
}

scalar check_common(std::initializer_list<const imported*> inputs,
                    std::initializer_list<const imported*> outputs) {
  return blfft_py::check_common(inputs, outputs, require_host);
}

// ------------------------------------------------------------------------------------------------
// The compute entry points.
// ------------------------------------------------------------------------------------------------

/// The cached plan for (p, c) with the call's options. `deterministic`: the plan splits its work
/// independently of the thread count and reduces in a fixed order (plan_options::deterministic,
/// part of the plan cache's key); the Python layer sets it under
/// torch.use_deterministic_algorithms(True) or blfft.set_deterministic(True).
template <class T>
std::shared_ptr<const blfft::plan<T>> plan_for(const blfft::conv_params& p,
                                               const blfft::compression& c, bool deterministic) {
  blfft::plan_options o;
  o.deterministic = deterministic;
  return blfft::get_plan<T>(p, c, o);
}

void forward(const blfft::conv_params& p, const blfft::compression& c, const py::object& x,
             const py::object& w, const py::object& bias, const py::object& y,
             const py::object& x_spectrum, const py::object& w_spectrum, bool deterministic) {
  imported X(x, "input"), W(w, "weight"), Y(y, "output");
  opt_imported B, XS, WS;
  maybe_import(B, bias, "bias");
  maybe_import(XS, x_spectrum, "x_spectrum");
  maybe_import(WS, w_spectrum, "w_spectrum");
  const scalar s = check_common({&X, &W, ptr(B)}, {&Y, ptr(XS), ptr(WS)});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, deterministic);
    const auto& g = pl->geometry();
    const T* b = B ? flat_of<T>(*B, g.params.out_channels) : nullptr;
    T* xs = XS ? flat_of<T>(*XS, g.x_spectrum_size()) : nullptr;
    T* ws = WS ? flat_of<T>(*WS, g.w_spectrum_size()) : nullptr;
    pl->forward(view_of<const T>(X), view_of<const T>(W), b, view_of<T>(Y), xs, ws);
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void input_spectrum(const blfft::conv_params& p, const blfft::compression& c,
                    const py::object& x, const py::object& x_spectrum, bool deterministic) {
  imported X(x, "input"), XS(x_spectrum, "x_spectrum");
  const scalar s = check_common({&X}, {&XS});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, deterministic);
    pl->input_spectrum(view_of<const T>(X), flat_of<T>(XS, pl->geometry().x_spectrum_size()));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void weight_spectrum(const blfft::conv_params& p, const blfft::compression& c,
                     const py::object& w, const py::object& w_spectrum, bool deterministic) {
  imported W(w, "weight"), WS(w_spectrum, "w_spectrum");
  const scalar s = check_common({&W}, {&WS});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, deterministic);
    pl->weight_spectrum(view_of<const T>(W), flat_of<T>(WS, pl->geometry().w_spectrum_size()));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void forward_spectra(const blfft::conv_params& p, const blfft::compression& c,
                     const py::object& x_spectrum, const py::object& w_spectrum,
                     const py::object& bias, const py::object& y, bool deterministic) {
  imported XS(x_spectrum, "x_spectrum"), WS(w_spectrum, "w_spectrum"), Y(y, "output");
  opt_imported B;
  maybe_import(B, bias, "bias");
  const scalar s = check_common({&XS, &WS, ptr(B)}, {&Y});
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, deterministic);
    const auto& g = pl->geometry();
    const T* b = B ? flat_of<T>(*B, g.params.out_channels) : nullptr;
    pl->forward_spectra(flat_of<T>(XS, g.x_spectrum_size()), flat_of<T>(WS, g.w_spectrum_size()),
                        b, view_of<T>(Y));
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

void backward(const blfft::conv_params& p, const blfft::compression& c,
              const py::object& grad_output, const py::object& x_spectrum,
              const py::object& w_spectrum, const py::object& grad_input,
              const py::object& grad_weight, const py::object& grad_bias,
              const py::object& weight, bool deterministic) {
  imported G(grad_output, "grad_output");
  opt_imported XS, WS, GI, GW, GB, W;
  maybe_import(XS, x_spectrum, "x_spectrum");
  maybe_import(WS, w_spectrum, "w_spectrum");
  maybe_import(GI, grad_input, "grad_input");
  maybe_import(GW, grad_weight, "grad_weight");
  maybe_import(GB, grad_bias, "grad_bias");
  maybe_import(W, weight, "weight");
  const scalar s = check_common({&G, ptr(XS), ptr(WS), ptr(W)}, {ptr(GI), ptr(GW), ptr(GB)});
  if (GI && !WS && !W)
    fail(error_code::invalid_argument, "grad_input needs w_spectrum or weight (got None)");
  if (GW && !XS)
    fail(error_code::invalid_argument, "grad_weight needs x_spectrum (got None)");
  auto run = [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    auto pl = plan_for<T>(p, c, deterministic);
    const auto& g = pl->geometry();
    const T* xs = XS ? flat_of<T>(*XS, g.x_spectrum_size()) : nullptr;
    const T* ws = WS ? flat_of<T>(*WS, g.w_spectrum_size()) : nullptr;
    T* gb = GB ? flat_of<T>(*GB, g.params.out_channels) : nullptr;
    std::optional<blfft::tensor_view<T>> gi, gw;
    if (GI) gi = view_of<T>(*GI);
    if (GW) gw = view_of<T>(*GW);
    if (!ws && W)  // no spectrum kept: the plan mixes from the weight (taps or recomputed)
      pl->backward_with_weight(view_of<const T>(G), xs, view_of<const T>(*W), gi ? &*gi : nullptr,
                               gw ? &*gw : nullptr, gb);
    else
      pl->backward(view_of<const T>(G), xs, ws, gi ? &*gi : nullptr, gw ? &*gw : nullptr, gb);
  };
  if (s == scalar::f32) run(float{}); else run(double{});
}

blfft::energy_selection select_by_energy(const blfft::conv_params& p, const py::object& x,
                                         double fraction) {
  imported X(x, "input");
  const scalar s = check_common({&X}, {});
  py::gil_scoped_release nogil;
  if (s == scalar::f32) return blfft::select_by_energy<float>(p, view_of<const float>(X), fraction);
  return blfft::select_by_energy<double>(p, view_of<const double>(X), fraction);
}

exported energy_map(const blfft::conv_params& p, const py::object& x) {
  imported X(x, "input");
  const scalar s = check_common({&X}, {});
  std::vector<double> e;
  std::array<int64_t, 2> grid{};
  int64_t bins_w = 0;
  {
    py::gil_scoped_release nogil;
    e = s == scalar::f32 ? blfft::energy_map<float>(p, view_of<const float>(X))
                         : blfft::energy_map<double>(p, view_of<const double>(X));
    const auto g = blfft::make_geometry(p, blfft::compression::none());
    grid = g.grid;
    bins_w = g.bins_w;
  }
  return exported::from_vector(std::move(e), {grid[0], bins_w});
}

std::string arr_str(const std::array<int64_t, 2>& a) {
  return "(" + std::to_string(a[0]) + ", " + std::to_string(a[1]) + ")";
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "blfft._core: binding of the blfft C++ core (band-limited FFT convolution)";

  // --- errors -----------------------------------------------------------------------------------
  PyObject* blfft_error = PyErr_NewExceptionWithDoc(
      "blfft.BlfftError",
      "An error from blfft that is not a bad argument (unsupported request, backend failure). "
      "`code` names the core's error_code.",
      PyExc_RuntimeError, nullptr);
  if (blfft_error == nullptr) throw py::error_already_set();
  m.add_object("BlfftError", py::reinterpret_steal<py::object>(blfft_error));
  install_error_translator(m.attr("BlfftError"));

  // --- build facts ------------------------------------------------------------------------------
  m.attr("__version__") = BLFFT_VERSION_STRING;
  m.attr("dlpack_version") = py::make_tuple(dl::abi_major, dl::abi_minor);

  // --- geometry ---------------------------------------------------------------------------------
  py::class_<blfft::conv_params>(m, "ConvParams",
                                 "One convolution layer (PyTorch conventions); 1D is stored as 2D "
                                 "with a height-1 input and kernel.")
      .def(py::init<>())
      .def_readwrite("ndim", &blfft::conv_params::ndim)
      .def_readwrite("batch", &blfft::conv_params::batch)
      .def_readwrite("in_channels", &blfft::conv_params::in_channels)
      .def_readwrite("out_channels", &blfft::conv_params::out_channels)
      .def_readwrite("input", &blfft::conv_params::input)
      .def_readwrite("kernel", &blfft::conv_params::kernel)
      .def_readwrite("stride", &blfft::conv_params::stride)
      .def_readwrite("padding", &blfft::conv_params::padding)
      .def_readwrite("dilation", &blfft::conv_params::dilation)
      .def_readwrite("groups", &blfft::conv_params::groups)
      .def_readwrite("grid", &blfft::conv_params::grid)
      .def_static("conv1d", &blfft::conv_params::conv1d, py::arg("batch"), py::arg("in_channels"),
                  py::arg("out_channels"), py::arg("length"), py::arg("kernel"),
                  py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
                  py::arg("groups") = 1)
      .def_static("conv2d", &blfft::conv_params::conv2d, py::arg("batch"), py::arg("in_channels"),
                  py::arg("out_channels"), py::arg("input"), py::arg("kernel"),
                  py::arg("stride") = std::array<int64_t, 2>{1, 1},
                  py::arg("padding") = std::array<int64_t, 2>{0, 0},
                  py::arg("dilation") = std::array<int64_t, 2>{1, 1}, py::arg("groups") = 1)
      .def("__repr__", [](const blfft::conv_params& p) {
        std::ostringstream os;
        os << "ConvParams(ndim=" << p.ndim << ", batch=" << p.batch
           << ", in_channels=" << p.in_channels << ", out_channels=" << p.out_channels
           << ", input=" << arr_str(p.input) << ", kernel=" << arr_str(p.kernel)
           << ", stride=" << arr_str(p.stride) << ", padding=" << arr_str(p.padding)
           << ", dilation=" << arr_str(p.dilation) << ", groups=" << p.groups
           << ", grid=" << arr_str(p.grid) << ")";
        return os.str();
      });

  py::class_<blfft::compression> comp(m, "Compression",
                                      "Which Fourier coefficients are kept: by rate, by band "
                                      "limits, or by explicit indices.");
  py::enum_<blfft::compression::kind>(comp, "Kind")
      .value("rate", blfft::compression::kind::rate)
      .value("band", blfft::compression::kind::band)
      .value("indices", blfft::compression::kind::indices);
  comp.def_static("none", &blfft::compression::none)
      .def_static("rate", &blfft::compression::rate, py::arg("rate"))
      .def_static("band", &blfft::compression::band, py::arg("i_h"), py::arg("i_w"))
      .def_static("indices", &blfft::compression::indices, py::arg("rows"), py::arg("cols"))
      .def_readonly("kind", &blfft::compression::how)
      .def_readonly("rate_value", &blfft::compression::rate_value)
      .def_readonly("limits", &blfft::compression::limits)
      .def_readonly("rows", &blfft::compression::rows)
      .def_readonly("cols", &blfft::compression::cols)
      .def("__repr__", [](const blfft::compression& c) {
        std::ostringstream os;
        switch (c.how) {
          case blfft::compression::kind::rate: os << "Compression.rate(" << c.rate_value << ")"; break;
          case blfft::compression::kind::band:
            os << "Compression.band(" << c.limits[0] << ", " << c.limits[1] << ")";
            break;
          case blfft::compression::kind::indices:
            os << "Compression.indices(<" << c.rows.size() << " rows>, <" << c.cols.size()
               << " cols>)";
            break;
        }
        return os.str();
      });

  py::class_<blfft::geometry>(m, "Geometry",
                              "Everything derived from (ConvParams, Compression): the one source "
                              "of truth for shapes, grid, kept sets and spectrum sizes.")
      .def_readonly("params", &blfft::geometry::params)
      .def_readonly("in_per_group", &blfft::geometry::in_per_group)
      .def_readonly("out_per_group", &blfft::geometry::out_per_group)
      .def_readonly("padded", &blfft::geometry::padded)
      .def_readonly("dilated", &blfft::geometry::dilated)
      .def_readonly("full_out", &blfft::geometry::full_out)
      .def_readonly("output", &blfft::geometry::output)
      .def_readonly("grid", &blfft::geometry::grid)
      .def_readonly("bins_w", &blfft::geometry::bins_w)
      .def_readonly("requested_rate", &blfft::geometry::requested_rate)
      .def_readonly("limits", &blfft::geometry::limits)
      .def_readonly("kept_rows", &blfft::geometry::kept_rows)
      .def_readonly("kept_cols", &blfft::geometry::kept_cols)
      .def_readonly("kept", &blfft::geometry::kept)
      .def_readonly("total", &blfft::geometry::total)
      .def_readonly("achieved_rate", &blfft::geometry::achieved_rate)
      .def_property_readonly("x_spectrum_size", &blfft::geometry::x_spectrum_size)
      .def_property_readonly("w_spectrum_size", &blfft::geometry::w_spectrum_size)
      .def_property_readonly("y_spectrum_size", &blfft::geometry::y_spectrum_size)
      .def_property_readonly("input_size", &blfft::geometry::input_size)
      .def_property_readonly("weight_size", &blfft::geometry::weight_size)
      .def_property_readonly("output_size", &blfft::geometry::output_size)
      .def_property_readonly("input_shape", &blfft::geometry::input_shape)
      .def_property_readonly("weight_shape", &blfft::geometry::weight_shape)
      .def_property_readonly("output_shape", &blfft::geometry::output_shape)
      .def("describe", &blfft::geometry::describe)
      .def("__repr__", [](const blfft::geometry& g) { return "<Geometry " + g.describe() + ">"; });

  // The GIL is released while a geometry is made (after the arguments are converted): a large
  // grid's kept sets take a while, and other Python threads keep running meanwhile.
  m.def("make_geometry", &blfft::make_geometry, py::arg("params"),
        py::arg("compression") = blfft::compression::none(),
        py::call_guard<py::gil_scoped_release>(),
        "Validate (params, compression) and derive the geometry (releases the GIL).");
  m.def("fast_size", &blfft::fast_size, py::arg("n"), py::call_guard<py::gil_scoped_release>(),
        "Smallest integer >= n whose prime factors are all in {2, 3, 5, 7}.");
  m.attr("max_grid_points") = blfft::max_grid_points;
  m.def("band_limit", &blfft::band_limit, py::arg("grid_length"), py::arg("rate"),
        py::arg("ndim"), "Per-axis band limit for a rate (DESIGN.md 1.4).");

  // --- energy -----------------------------------------------------------------------------------
  py::class_<blfft::energy_selection>(m, "EnergySelection")
      .def_readonly("chosen", &blfft::energy_selection::chosen)
      .def_readonly("rate", &blfft::energy_selection::rate)
      .def_readonly("limits", &blfft::energy_selection::limits)
      .def_readonly("achieved_rate", &blfft::energy_selection::achieved_rate)
      .def_readonly("energy_kept", &blfft::energy_selection::energy_kept)
      .def("__repr__", [](const blfft::energy_selection& s) {
        std::ostringstream os;
        os << "EnergySelection(rate=" << s.rate << ", limits=" << arr_str(s.limits)
           << ", achieved_rate=" << s.achieved_rate << ", energy_kept=" << s.energy_kept << ")";
        return os.str();
      });
  m.def("select_by_energy", &select_by_energy, py::arg("params"), py::arg("input"),
        py::arg("fraction"),
        "The largest compression whose kept set holds at least `fraction` of the input "
        "spectrum's energy.");
  m.def("energy_map", &energy_map, py::arg("params"), py::arg("input"),
        "Energy per rfft bin of the padded input on the grid, summed over batch and channels: a "
        "C++-owned float64 (Lh, Lw/2+1) buffer exported through DLPack (torch.from_dlpack).");

  // module_local: blfft._cuda registers the same C++ type (dlpack_adaptor.hpp) for itself.
  py::class_<exported>(m, "DLPackBuffer", "A C++-owned buffer; take it with torch.from_dlpack (no copy).",
                       py::module_local())
      .def("__dlpack__", &exported::dlpack, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none())
      .def("__dlpack_device__", &exported::dlpack_device)
      .def_property_readonly("shape", &exported::shape);

  // --- compute ----------------------------------------------------------------------------------
  m.def("forward", &forward, py::arg("params"), py::arg("compression"), py::arg("input"),
        py::arg("weight"), py::arg("bias"), py::arg("output"), py::arg("x_spectrum") = py::none(),
        py::arg("w_spectrum") = py::none(), py::kw_only(), py::arg("deterministic") = false,
        "output = band-limited conv(input, weight) + bias; optionally stores the compressed "
        "spectra into the caller's x_spectrum / w_spectrum. Every compute function takes "
        "`deterministic` (keyword): bitwise-reproducible results for any thread count "
        "(plan_options::deterministic).");
  m.def("input_spectrum", &input_spectrum, py::arg("params"), py::arg("compression"),
        py::arg("input"), py::arg("x_spectrum"), py::kw_only(), py::arg("deterministic") = false);
  m.def("weight_spectrum", &weight_spectrum, py::arg("params"), py::arg("compression"),
        py::arg("weight"), py::arg("w_spectrum"), py::kw_only(),
        py::arg("deterministic") = false);
  m.def("forward_spectra", &forward_spectra, py::arg("params"), py::arg("compression"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("bias"), py::arg("output"),
        py::kw_only(), py::arg("deterministic") = false);
  m.def("backward", &backward, py::arg("params"), py::arg("compression"), py::arg("grad_output"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("grad_input"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("weight") = py::none(),
        py::kw_only(), py::arg("deterministic") = false,
        "All gradients from one transform of grad_output; each of grad_input, grad_weight, "
        "grad_bias may be None to skip it. grad_input needs w_spectrum or, when that is None, "
        "the weight itself.");
  m.def("dlpack_info", &dlpack_info, py::arg("tensor"),
        "What the binding reads from a DLPack tensor (consumes a capsule).");

  // --- runtime ----------------------------------------------------------------------------------
  m.def("plan_cache_size", &blfft::plan_cache_size);
  m.def("clear_plan_cache", &blfft::clear_plan_cache, py::call_guard<py::gil_scoped_release>());
  m.def("release_memory", &blfft::release_memory, py::call_guard<py::gil_scoped_release>(),
        "Gives back all memory the CPU backend holds between calls: cached plans, the "
        "workspace pool's idle buffers, per-thread scratch (blfft::release_memory).");
  m.def("set_max_idle_bytes", &blfft::set_max_idle_bytes, py::arg("bytes"),
        "The most bytes the workspace pool keeps idle between calls (0: none).");
  m.def("get_max_idle_bytes", &blfft::get_max_idle_bytes);
  m.def("idle_bytes", &blfft::idle_bytes, "Bytes the workspace pool holds idle now.");
  m.def("set_max_buffer_bytes", &blfft::set_max_buffer_bytes, py::arg("bytes"),
        "The largest single buffer a call may allocate; larger ones raise MemoryError before "
        "allocating (0: the default, the machine's physical memory).");
  m.def("get_max_buffer_bytes", &blfft::get_max_buffer_bytes);
  m.def("set_num_threads", &blfft::set_num_threads, py::arg("n"),
        "Threads used by the CPU backend (0: OpenMP's default).");
  m.def("get_num_threads", &blfft::get_num_threads);
}
