#pragma once
// The compute entry points of blfft's binding modules, written once as templates over the
// backend: blfft._core (bindings.cpp, the CPU backend) and blfft._cuda (cuda_bindings.cpp) differ
// only in how a tensor argument is taken (a consumer stream for CUDA producers), in the device
// check, in the plan they get and in a trailing stream on every plan call. A backend `B` provides:
//
//   struct device_policy           callable on each `imported` (check_common), with int device()
//   take(slot, obj, name, stream)  import an optional argument (None leaves the slot empty)
//   need(slot, obj, name, stream)  import a required argument
//   present(what, {slots...})      refuse missing required arguments (after all were taken)
//   plan<T>(p, c, policy, deterministic)         the cached plan
//   call(plan, stream, f)          f(plan, stream args...): the stream, where the backend has one
//   tf32_scope(allow)              optional (the CUDA module's): an RAII object under which the
//                                  plan calls may use TF32 (blfft::cuda::scoped_tf32); without
//                                  it the `tf32` keyword is accepted and unused (the CPU core)
//   select_by_energy<T>(p, view, fraction, policy, stream), energy_map<T>(p, view, policy, stream)
//   half, bfloat16                 optional (the CUDA module's): 16-bit tensor types that
//                                  plan<float> reads and writes (float32 spectra); without them
//                                  16-bit tensors are refused, naming the argument
//
// and both modules register them with the same signatures (register_compute).

#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "blfft/blfft.hpp"
#include "dlpack_adaptor.hpp"

namespace blfft_py {

/// f(float{}) or f(double{}), for a float32 / float64 call (the energy functions).
template <class F>
decltype(auto) with_dtype(scalar s, F&& f) {
  if (s == scalar::f32) return f(float{});
  return f(double{});
}

/// The element types of a call: X, that of its tensors (x, w, bias, y, gradients), and T, the
/// type it computes in, that of its spectra and its plan (plan<T>).
template <class X, class T>
struct element_types {
  using tensor = X;
  using compute = T;
};

/// Whether the backend reads and writes 16-bit tensors: it names them `half` and `bfloat16`
/// (blfft::cuda's, which plan<float> takes).
template <class B, class = void>
struct has_16bit : std::false_type {};
template <class B>
struct has_16bit<B, std::void_t<typename B::half, typename B::bfloat16>> : std::true_type {};

/// f(element_types<X, T>{}) for the tensors' type check_common found.
template <class B, class F>
void with_types(scalar s, F&& f) {
  if constexpr (has_16bit<B>::value) {
    if (s == scalar::f16) return f(element_types<typename B::half, float>{});
    if (s == scalar::bf16) return f(element_types<typename B::bfloat16, float>{});
  }
  if (s == scalar::f64) return f(element_types<double, double>{});
  return f(element_types<float, float>{});
}

template <class T>
const T* flat_or_null(const opt_imported& a, int64_t size) {
  return a ? flat_of<T>(*a, size) : nullptr;
}
template <class T>
T* out_flat_or_null(const opt_imported& a, int64_t size) {
  return a ? flat_of<T>(*a, size) : nullptr;
}

/// One tensor argument of a compute function: the Python object, its name in messages, and
/// whether it is required.
struct tensor_arg {
  const py::object& obj;
  const char* name;
  bool required;
};

/// Whether the backend has tf32_scope(bool).
template <class B, class = void>
struct has_tf32_scope : std::false_type {};
template <class B>
struct has_tf32_scope<B, std::void_t<decltype(B::tf32_scope(true))>> : std::true_type {};

template <class B>
struct entry_points {
  using policy = typename B::device_policy;

  /// Imports the tensor arguments of a call, in order, into `slots` (None leaves a slot empty);
  /// then refuses a missing required one with `missing`.
  template <std::size_t N>
  static void import_args(std::array<opt_imported, N>& slots, const tensor_arg (&args)[N],
                          std::uintptr_t stream, const char* missing) {
    for (std::size_t i = 0; i < N; ++i) {
      if (args[i].required)
        B::need(slots[i], args[i].obj, args[i].name, stream);
      else
        B::take(slots[i], args[i].obj, args[i].name, stream);
    }
    for (std::size_t i = 0; i < N; ++i)
      if (args[i].required) B::present(missing, {&slots[i]});
  }

  /// The tensors' dtype of a compute call (check_common): 16-bit ones where the backend has them.
  static constexpr bool sixteen = has_16bit<B>::value;

  /// f(plan, element_types<X, T>{}, stream args...) with the GIL released, on the cached plan<T>
  /// for the call's dtype (16-bit tensors: plan<float>, whose overloads take them). `tf32`: the
  /// call may round float mixing inputs to TF32 (backends with tf32_scope).
  template <class F>
  static void with_plan(const blfft::conv_params& p, const blfft::compression& c, const policy& dev,
                        bool deterministic, bool tf32, scalar s, std::uintptr_t stream, F&& f) {
    with_types<B>(s, [&](auto tag) {
      py::gil_scoped_release nogil;
      using T = typename decltype(tag)::compute;
      auto pl = B::template plan<T>(p, c, dev, deterministic);
      const auto run = [&] {
        B::call(*pl, stream, [&](const auto& plan, auto... st) { f(plan, tag, st...); });
      };
      if constexpr (has_tf32_scope<B>::value) {
        const auto scope = B::tf32_scope(tf32);
        run();
      } else {
        (void)tf32;
        run();
      }
    });
  }

  static void forward(const blfft::conv_params& p, const blfft::compression& c, const py::object& x,
                      const py::object& w, const py::object& bias, const py::object& y,
                      const py::object& x_spectrum, const py::object& w_spectrum,
                      std::uintptr_t stream, bool deterministic, bool tf32) {
    std::array<opt_imported, 6> a;
    import_args(a,
                {{x, "input", true},
                 {w, "weight", true},
                 {bias, "bias", false},
                 {y, "output", true},
                 {x_spectrum, "x_spectrum", false},
                 {w_spectrum, "w_spectrum", false}},
                stream, "input, weight and output are required");
    const opt_imported &X = a[0], &W = a[1], &Bi = a[2], &Y = a[3], &XS = a[4], &WS = a[5];
    policy dev;
    const scalar s = check_common({ptr(X), ptr(W), ptr(Bi)},
                                  {ptr(Y), spectrum_arg(XS), spectrum_arg(WS)}, dev, sixteen);
    with_plan(p, c, dev, deterministic, tf32, s, stream,
              [&](const auto& plan, auto tag, auto... st) {
                using E = typename decltype(tag)::tensor;
                using T = typename decltype(tag)::compute;
                const auto& g = plan.geometry();
                plan.forward(view_of<const E>(*X), view_of<const E>(*W),
                             flat_or_null<E>(Bi, g.params.out_channels), view_of<E>(*Y),
                             spectrum_or_none<T>(XS, g.x_spectrum_size()),
                             spectrum_or_none<T>(WS, g.w_spectrum_size()), st...);
              });
  }

  /// input_spectrum (`weight` false) or weight_spectrum (true).
  template <bool weight>
  static void spectrum(const blfft::conv_params& p, const blfft::compression& c,
                       const py::object& t, const py::object& spectrum, std::uintptr_t stream,
                       bool deterministic, bool tf32) {
    std::array<opt_imported, 2> a;
    import_args(a,
                {{t, weight ? "weight" : "input", true},
                 {spectrum, weight ? "w_spectrum" : "x_spectrum", true}},
                stream,
                weight ? "weight and w_spectrum are required"
                       : "input and x_spectrum are required");
    const opt_imported &X = a[0], &XS = a[1];
    policy dev;
    const scalar s = check_common({ptr(X)}, {spectrum_arg(XS)}, dev, sixteen);
    with_plan(p, c, dev, deterministic, tf32, s, stream,
              [&](const auto& plan, auto tag, auto... st) {
                using E = typename decltype(tag)::tensor;
                using T = typename decltype(tag)::compute;
                const auto& g = plan.geometry();
                const auto xs =
                    spectrum_or_none<T>(XS, weight ? g.w_spectrum_size() : g.x_spectrum_size());
                if constexpr (weight)
                  plan.weight_spectrum(view_of<const E>(*X), xs, st...);
                else
                  plan.input_spectrum(view_of<const E>(*X), xs, st...);
              });
  }

  static void forward_spectra(const blfft::conv_params& p, const blfft::compression& c,
                              const py::object& x_spectrum, const py::object& w_spectrum,
                              const py::object& bias, const py::object& y, std::uintptr_t stream,
                              bool deterministic, bool tf32) {
    std::array<opt_imported, 4> a;
    import_args(a,
                {{x_spectrum, "x_spectrum", true},
                 {w_spectrum, "w_spectrum", true},
                 {bias, "bias", false},
                 {y, "output", true}},
                stream, "x_spectrum, w_spectrum and output are required");
    const opt_imported &XS = a[0], &WS = a[1], &Bi = a[2], &Y = a[3];
    policy dev;
    const scalar s =
        check_common({spectrum_arg(XS), spectrum_arg(WS), ptr(Bi)}, {ptr(Y)}, dev, sixteen);
    with_plan(
        p, c, dev, deterministic, tf32, s, stream, [&](const auto& plan, auto tag, auto... st) {
          using E = typename decltype(tag)::tensor;
          using T = typename decltype(tag)::compute;
          const auto& g = plan.geometry();
          plan.forward_spectra(spectrum_or_none<const T>(XS, g.x_spectrum_size()),
                               spectrum_or_none<const T>(WS, g.w_spectrum_size()),
                               flat_or_null<E>(Bi, g.params.out_channels), view_of<E>(*Y), st...);
        });
  }

  static void backward(const blfft::conv_params& p, const blfft::compression& c,
                       const py::object& grad_output, const py::object& x_spectrum,
                       const py::object& w_spectrum, const py::object& grad_input,
                       const py::object& grad_weight, const py::object& grad_bias,
                       const py::object& weight, std::uintptr_t stream, bool deterministic,
                       bool tf32) {
    std::array<opt_imported, 7> a;
    import_args(a,
                {{grad_output, "grad_output", true},
                 {x_spectrum, "x_spectrum", false},
                 {w_spectrum, "w_spectrum", false},
                 {grad_input, "grad_input", false},
                 {grad_weight, "grad_weight", false},
                 {grad_bias, "grad_bias", false},
                 {weight, "weight", false}},
                stream, "grad_output is required");
    const opt_imported &G = a[0], &XS = a[1], &WS = a[2], &GI = a[3], &GW = a[4], &GB = a[5],
                       &W = a[6];
    policy dev;
    const scalar s = check_common({ptr(G), spectrum_arg(XS), spectrum_arg(WS), ptr(W)},
                                  {ptr(GI), ptr(GW), ptr(GB)}, dev, sixteen);
    if (GI && !WS && !W)
      fail(error_code::invalid_argument, "grad_input needs w_spectrum or weight (got None)");
    if (GW && !XS) fail(error_code::invalid_argument, "grad_weight needs x_spectrum (got None)");
    if (GI && !WS && s != compute_of(s))  // the 16-bit backward takes spectra only
      fail(error_code::invalid_argument,
           "grad_input of " + dtype_name(G->raw().dtype) +
               " tensors needs w_spectrum (weight_spectrum makes it; got None)");
    with_plan(p, c, dev, deterministic, tf32, s, stream,
              [&](const auto& plan, auto tag, auto... st) {
                using E = typename decltype(tag)::tensor;
                using T = typename decltype(tag)::compute;
                const auto& g = plan.geometry();
                const auto xs = spectrum_or_none<const T>(XS, g.x_spectrum_size());
                const auto ws = spectrum_or_none<const T>(WS, g.w_spectrum_size());
                E* gb = out_flat_or_null<E>(GB, g.params.out_channels);
                std::optional<blfft::tensor_view<E>> gi, gw;
                if (GI) gi = view_of<E>(*GI);
                if (GW) gw = view_of<E>(*GW);
                if (!ws.given() && W) {  // no spectrum kept: the plan mixes from the weight
                  if constexpr (std::is_same_v<E, T>)
                    plan.backward_with_weight(view_of<const E>(*G), xs, view_of<const E>(*W),
                                              gi ? &*gi : nullptr, gw ? &*gw : nullptr, gb, st...);
                  // (16-bit tensors without w_spectrum were refused above)
                } else {
                  plan.backward(view_of<const E>(*G), xs, ws, gi ? &*gi : nullptr,
                                gw ? &*gw : nullptr, gb, st...);
                }
              });
  }

  static blfft::energy_selection select_by_energy(const blfft::conv_params& p, const py::object& x,
                                                  double fraction, std::uintptr_t stream) {
    std::array<opt_imported, 1> a;
    import_args(a, {{x, "input", true}}, stream, "input is required");
    policy dev;
    const scalar s = check_common({ptr(a[0])}, {}, dev);
    py::gil_scoped_release nogil;
    return with_dtype(s, [&](auto tag) {
      using T = decltype(tag);
      return B::template select_by_energy<T>(p, view_of<const T>(*a[0]), fraction, dev, stream);
    });
  }

  static exported energy_map(const blfft::conv_params& p, const py::object& x,
                             std::uintptr_t stream) {
    std::array<opt_imported, 1> a;
    import_args(a, {{x, "input", true}}, stream, "input is required");
    policy dev;
    const scalar s = check_common({ptr(a[0])}, {}, dev);
    std::vector<double> e;
    std::array<int64_t, 2> shape{};
    {
      py::gil_scoped_release nogil;
      e = with_dtype(s, [&](auto tag) {
        using T = decltype(tag);
        return B::template energy_map<T>(p, view_of<const T>(*a[0]), dev, stream);
      });
      const auto g = blfft::make_geometry(p, blfft::compression::none());
      shape = {g.grid[0], g.bins_w};
    }
    return exported::from_vector(std::move(e), {shape[0], shape[1]});
  }
};

/// Registers the compute functions with one signature for every module: `stream` after the
/// positional arguments of each function (py::arg("stream") = 0 for _core; a bare
/// py::arg("stream") for _cuda, whose callers must name the stream of every call), `weight`
/// (backward) after the gradients, `deterministic` a keyword.
template <class B, class StreamArg>
void register_compute(py::module_& m, const StreamArg& stream) {
  using E = entry_points<B>;
  const auto det = py::arg("deterministic") = false;
  const auto tf32 = py::arg("tf32") = false;
  m.def("forward", &E::forward, py::arg("params"), py::arg("compression"), py::arg("input"),
        py::arg("weight"), py::arg("bias"), py::arg("output"), py::arg("x_spectrum") = py::none(),
        py::arg("w_spectrum") = py::none(), stream, py::kw_only(), det, tf32,
        "output = band-limited conv(input, weight) + bias; optionally stores the compressed "
        "spectra into the caller's x_spectrum / w_spectrum. Every compute function takes "
        "`stream` (the CUDA stream to enqueue on, as an int), `deterministic` (keyword: "
        "bitwise-reproducible results for any thread count, plan_options::deterministic) and "
        "`tf32` (keyword: CUDA only, float mixing may use TF32 tensor cores, as torch under "
        "torch.backends.cudnn.allow_tf32; the CPU core ignores it).");
  m.def("input_spectrum", &E::template spectrum<false>, py::arg("params"), py::arg("compression"),
        py::arg("input"), py::arg("x_spectrum"), stream, py::kw_only(), det, tf32);
  m.def("weight_spectrum", &E::template spectrum<true>, py::arg("params"), py::arg("compression"),
        py::arg("weight"), py::arg("w_spectrum"), stream, py::kw_only(), det, tf32);
  m.def("forward_spectra", &E::forward_spectra, py::arg("params"), py::arg("compression"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("bias"), py::arg("output"), stream,
        py::kw_only(), det, tf32);
  m.def("backward", &E::backward, py::arg("params"), py::arg("compression"), py::arg("grad_output"),
        py::arg("x_spectrum"), py::arg("w_spectrum"), py::arg("grad_input"), py::arg("grad_weight"),
        py::arg("grad_bias"), py::arg("weight") = py::none(), stream, py::kw_only(), det, tf32,
        "All gradients from one transform of grad_output; each of grad_input, grad_weight, "
        "grad_bias may be None to skip it. grad_input needs w_spectrum or, when that is None, "
        "the weight itself.");
  m.def("select_by_energy", &E::select_by_energy, py::arg("params"), py::arg("input"),
        py::arg("fraction"), stream,
        "The largest compression whose kept set holds at least `fraction` of the input "
        "spectrum's energy.");
  m.def("energy_map", &E::energy_map, py::arg("params"), py::arg("input"), stream,
        "Energy per rfft bin of the padded input on the grid, summed over batch and channels: a "
        "C++-owned host float64 (Lh, Lw/2+1) buffer exported through DLPack (torch.from_dlpack).");
}

}  // namespace blfft_py
