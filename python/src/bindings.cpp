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
#include "entry_points.hpp"

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

/// The CPU backend of the shared entry points (entry_points.hpp).
struct cpu_backend {
  struct device_policy {
    void operator()(const imported& a) const { require_host(a); }
    int device() const { return 0; }
  };
  static void take(opt_imported& slot, const py::object& obj, const char* name, std::uintptr_t) {
    maybe_import(slot, obj, name);
  }
  /// A required argument: None is refused by the import itself, as any non-tensor.
  static void need(opt_imported& slot, const py::object& obj, const char* name, std::uintptr_t) {
    slot.emplace(obj, name);
  }
  static void present(const char*, std::initializer_list<const opt_imported*>) {}

  /// The cached plan for (p, c) with the call's options. `deterministic`: the plan splits its
  /// work independently of the thread count and reduces in a fixed order
  /// (plan_options::deterministic, part of the plan cache's key); the Python layer sets it under
  /// torch.use_deterministic_algorithms(True) or blfft.set_deterministic(True).
  template <class T>
  static std::shared_ptr<const blfft::plan<T>> plan(const blfft::conv_params& p,
                                                    const blfft::compression& c,
                                                    const device_policy&, bool deterministic) {
    blfft::plan_options o;
    o.deterministic = deterministic;
    return blfft::get_plan<T>(p, c, o);
  }
  /// Host calls are synchronous: there is no stream to pass on.
  template <class P, class F>
  static void call(const P& plan, std::uintptr_t, F&& f) {
    f(plan);
  }
  template <class T>
  static blfft::energy_selection
  select_by_energy(const blfft::conv_params& p, const blfft::tensor_view<const T>& x,
                   double fraction, const device_policy&, std::uintptr_t) {
    return blfft::select_by_energy<T>(p, x, fraction);
  }
  template <class T>
  static std::vector<double> energy_map(const blfft::conv_params& p,
                                        const blfft::tensor_view<const T>& x, const device_policy&,
                                        std::uintptr_t) {
    return blfft::energy_map<T>(p, x);
  }
};

// The energy mode's hand-over (CPU only): the selection leaves the input's spectrum at the chosen
// kept set in the caller's buffer, and the forward takes it instead of transforming x again.
using cpu_entry = entry_points<cpu_backend>;

/// select_by_energy handing over (blfft::spectrum_allocator): `allocate(n)` (called with the GIL)
/// returns a tensor of n scalars of x's dtype on the host; returns the selection and the tensor
/// that holds the chosen kept set's spectrum.
py::tuple select_by_energy_for_forward(const blfft::conv_params& p, const py::object& x,
                                       double fraction, const py::function& allocate,
                                       bool deterministic) {
  std::array<opt_imported, 1> a;
  cpu_entry::import_args(a, {{x, "input", true}}, 0, "input is required");
  cpu_backend::device_policy dev;
  const scalar s = check_common({ptr(a[0])}, {}, dev);
  // The buffers, alive until the GIL is back (their DLPack deleters need it).
  std::vector<std::pair<py::object, std::unique_ptr<imported>>> buffers;
  blfft::energy_selection sel;
  {
    py::gil_scoped_release nogil;
    sel = with_dtype(s, [&](auto tag) {
      using T = decltype(tag);
      const blfft::spectrum_allocator<T> take = [&](int64_t n) {
        py::gil_scoped_acquire gil;
        py::object t = allocate(n);
        auto in = std::make_unique<imported>(t, "allocated spectrum");
        check_common({ptr(a[0])}, {in.get()}, dev);  // x's dtype, on the host
        const auto view = spectrum_of<T>(*in, n);
        buffers.emplace_back(std::move(t), std::move(in));
        return view;
      };
      blfft::plan_options o;
      o.deterministic = deterministic;
      return blfft::select_by_energy<T>(p, view_of<const T>(*a[0]), fraction, o, take);
    });
  }
  return py::make_tuple(sel, buffers.empty() ? py::none() : buffers.back().first);
}

void forward_with_input_spectrum(const blfft::conv_params& p, const blfft::compression& c,
                                 const py::object& x_spectrum, const py::object& w,
                                 const py::object& bias, const py::object& y,
                                 const py::object& w_spectrum, bool deterministic) {
  std::array<opt_imported, 5> a;
  cpu_entry::import_args(a,
                         {{x_spectrum, "x_spectrum", true},
                          {w, "weight", true},
                          {bias, "bias", false},
                          {y, "output", true},
                          {w_spectrum, "w_spectrum", false}},
                         0, "x_spectrum, weight and output are required");
  const opt_imported &XS = a[0], &W = a[1], &Bi = a[2], &Y = a[3], &WS = a[4];
  cpu_backend::device_policy dev;
  const scalar s =
      check_common({spectrum_arg(XS), ptr(W), ptr(Bi)}, {ptr(Y), spectrum_arg(WS)}, dev);
  cpu_entry::with_plan(p, c, dev, deterministic, false, s, 0, [&](const auto& plan, auto tag) {
    using T = typename decltype(tag)::compute;
    const auto& g = plan.geometry();
    plan.forward_with_input_spectrum(spectrum_of<const T>(*XS, g.x_spectrum_size()),
                                     view_of<const T>(*W),
                                     flat_or_null<T>(Bi, g.params.out_channels), view_of<T>(*Y),
                                     spectrum_or_none<T>(WS, g.w_spectrum_size()));
  });
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
  py::class_<blfft::depth_axis>(m, "DepthAxis", "The depth axis of a 3D layer (ConvParams.depth).")
      .def(py::init<>())
      .def_readwrite("input", &blfft::depth_axis::input)
      .def_readwrite("kernel", &blfft::depth_axis::kernel)
      .def_readwrite("stride", &blfft::depth_axis::stride)
      .def_readwrite("padding", &blfft::depth_axis::padding)
      .def_readwrite("dilation", &blfft::depth_axis::dilation)
      .def_readwrite("grid", &blfft::depth_axis::grid);
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
      .def_readwrite("depth", &blfft::conv_params::depth)
      .def_static("conv1d", &blfft::conv_params::conv1d, py::arg("batch"), py::arg("in_channels"),
                  py::arg("out_channels"), py::arg("length"), py::arg("kernel"),
                  py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
                  py::arg("groups") = 1)
      .def_static("conv2d", &blfft::conv_params::conv2d, py::arg("batch"), py::arg("in_channels"),
                  py::arg("out_channels"), py::arg("input"), py::arg("kernel"),
                  py::arg("stride") = std::array<int64_t, 2>{1, 1},
                  py::arg("padding") = std::array<int64_t, 2>{0, 0},
                  py::arg("dilation") = std::array<int64_t, 2>{1, 1}, py::arg("groups") = 1)
      .def_static("conv3d", &blfft::conv_params::conv3d, py::arg("batch"), py::arg("in_channels"),
                  py::arg("out_channels"), py::arg("input"), py::arg("kernel"),
                  py::arg("stride") = std::array<int64_t, 3>{1, 1, 1},
                  py::arg("padding") = std::array<int64_t, 3>{0, 0, 0},
                  py::arg("dilation") = std::array<int64_t, 3>{1, 1, 1}, py::arg("groups") = 1)
      .def("__repr__", [](const blfft::conv_params& p) {
        std::ostringstream os;
        os << "ConvParams(ndim=" << p.ndim << ", batch=" << p.batch
           << ", in_channels=" << p.in_channels << ", out_channels=" << p.out_channels
           << ", input=" << arr_str(p.input) << ", kernel=" << arr_str(p.kernel)
           << ", stride=" << arr_str(p.stride) << ", padding=" << arr_str(p.padding)
           << ", dilation=" << arr_str(p.dilation) << ", groups=" << p.groups
           << ", grid=" << arr_str(p.grid);
        if (p.ndim == 3) {
          const auto& d = p.depth;
          os << ", depth=(input=" << d.input << ", kernel=" << d.kernel << ", stride=" << d.stride
             << ", padding=" << d.padding << ", dilation=" << d.dilation << ", grid=" << d.grid
             << ")";
        }
        os << ")";
        return os.str();
      });

  py::class_<blfft::compression> comp(m, "Compression",
                                      "Which Fourier coefficients are kept: by rate, by band "
                                      "limits, or by explicit indices.");
  py::enum_<blfft::compression::kind_type>(comp, "Kind")
      .value("rate", blfft::compression::kind_type::rate)
      .value("band", blfft::compression::kind_type::band)
      .value("indices", blfft::compression::kind_type::indices);
  comp.def_static("none", &blfft::compression::none)
      .def_static("rate", &blfft::compression::rate, py::arg("rate"))
      .def_static("band", &blfft::compression::band, py::arg("i_h"), py::arg("i_w"))
      .def_static("band3", &blfft::compression::band3, py::arg("i_d"), py::arg("i_h"),
                  py::arg("i_w"))
      .def_readonly("depth_limit", &blfft::compression::depth_limit)
      .def_static("indices", &blfft::compression::indices, py::arg("rows"), py::arg("cols"))
      .def_readonly("kind", &blfft::compression::kind)
      .def_readonly("rate_value", &blfft::compression::rate_value)
      .def_readonly("limits", &blfft::compression::limits)
      .def_readonly("rows", &blfft::compression::rows)
      .def_readonly("cols", &blfft::compression::cols)
      .def("__repr__", [](const blfft::compression& c) {
        std::ostringstream os;
        switch (c.kind) {
          case blfft::compression::kind_type::rate:
            os << "Compression.rate(" << c.rate_value << ")";
            break;
          case blfft::compression::kind_type::band:
            if (c.depth_limit > 0)
              os << "Compression.band3(" << c.depth_limit << ", " << c.limits[0] << ", "
                 << c.limits[1] << ")";
            else
              os << "Compression.band(" << c.limits[0] << ", " << c.limits[1] << ")";
            break;
          case blfft::compression::kind_type::indices:
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
      .def_readonly("depth_padded", &blfft::geometry::depth_padded)
      .def_readonly("depth_dilated", &blfft::geometry::depth_dilated)
      .def_readonly("depth_full_out", &blfft::geometry::depth_full_out)
      .def_readonly("depth_output", &blfft::geometry::depth_output)
      .def_readonly("depth_grid", &blfft::geometry::depth_grid)
      .def_readonly("depth_limit", &blfft::geometry::depth_limit)
      .def_readonly("kept_depth", &blfft::geometry::kept_depth)
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
  m.def("band_limit", &blfft::band_limit, py::arg("grid_length"), py::arg("rate"), py::arg("ndim"),
        "Per-axis band limit for a rate (docs/design.md 1.4).");

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
  register_dlpack_buffer(m, "A C++-owned buffer; take it with torch.from_dlpack (no copy).");

  // --- compute ----------------------------------------------------------------------------------
  // The same signatures as blfft._cuda's (entry_points.hpp); `stream` is accepted and unused
  // (host calls are synchronous).
  register_compute<cpu_backend>(m, py::arg("stream") = 0);
  m.def("select_by_energy_for_forward", &select_by_energy_for_forward, py::arg("params"),
        py::arg("input"), py::arg("fraction"), py::arg("allocate"), py::kw_only(),
        py::arg("deterministic") = false,
        "(selection, spectrum): select_by_energy, and the input's spectrum at the chosen kept "
        "set as the plan of that set with `deterministic` makes it (forward_with_input_spectrum "
        "takes it over), in a tensor from allocate(n) (n scalars of the input's dtype).");
  m.def("forward_with_input_spectrum", &forward_with_input_spectrum, py::arg("params"),
        py::arg("compression"), py::arg("x_spectrum"), py::arg("weight"), py::arg("bias"),
        py::arg("output"), py::arg("w_spectrum") = py::none(), py::kw_only(),
        py::arg("deterministic") = false,
        "forward() from the input's spectrum as this plan's input_spectrum makes it (the same "
        "bits as forward() on the input), without the input transform.");
  m.def("dlpack_info", &dlpack_info, py::arg("tensor"),
        "What the binding reads from a DLPack tensor (consumes a capsule).");

  // --- runtime ----------------------------------------------------------------------------------
  m.def(
      "mixes_from_taps",
      [](const blfft::geometry& g, bool double_precision) {
        return blfft::mixes_from_taps(g, {}, double_precision ? sizeof(double) : sizeof(float));
      },
      py::arg("geometry"), py::arg("double_precision"),
      "Whether the CPU plan of g mixes from the weight's taps where it is given no weight "
      "spectrum (then keeping one gains nothing).");
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
