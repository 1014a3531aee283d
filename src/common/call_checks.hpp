#pragma once
// The argument checks of every plan entry point, written once for both backends so that they
// refuse the same mistakes with the same messages (src/plan.cpp, cuda/pipeline.hpp). What differs
// is the pointer check, a parameter: none on the CPU (any host pointer will do), "device memory of
// the plan's device" on CUDA. It is called on every non-null pointer a call reads or writes, after
// the null and shape checks.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"
#include "check.hpp"
#include "view_check.hpp"

namespace blfft::detail {

/// Energy selection is 1D/2D only on both backends (README: Limitations).
inline void refuse_energy_3d(const conv_params& p) {
  BLFFT_EXPECTS(p.ndim != 3, error_code::unsupported,
                "energy-based compression is not supported for 3D convolutions; use a "
                "compression rate");
}

/// The CPU backend's pointer check: host memory needs none.
struct any_pointer {
  void operator()(const void*, const char*) const {}
};

/// A spectrum argument: a spectrum_view (whose length is checked against the geometry), null
/// ("not given"), or a bare pointer of unknown length, which is trusted (the CUDA plan's
/// signatures until they take spectrum_view too). A view's length is always checked, a negative
/// one too (it is no "unknown length" marker: a view of -1 scalars is refused like any other).
struct spectrum_arg {
  const void* data = nullptr;
  int64_t size = 0;
  bool sized = false;                       ///< false: a bare pointer, length unknown
  spectrum_arg(std::nullptr_t) {}           // NOLINT: implicit
  spectrum_arg(const void* p) : data(p) {}  // NOLINT: implicit
  template <class T>
  spectrum_arg(spectrum_view<T> s) : data(s.data), size(s.size), sized(true) {}  // NOLINT
};

/// T as a parameter that does not take part in deduction (so that nullptr may be passed).
template <class T>
struct same_as {
  using type = T;
};
template <class T>
using nd = typename same_as<T>::type;

/// `PointerCheck`: callable as check(const void* p, const char* name), throws if p is unusable.
template <class PointerCheck>
class call_checks {
 public:
  call_checks(const geometry& g, PointerCheck pointer) : g_(g), pointer_(std::move(pointer)) {}

  template <class T>
  void input(const tensor_view<const T>& x) const {
    view(x, g_.input_shape(), "input", false);
  }

  template <class T>
  void input_spectrum(const tensor_view<const T>& x, spectrum_arg xs) const {
    input(x);
    spectrum(xs, g_.x_spectrum_size(), "x_spectrum", true);
  }

  template <class T>
  void weight_spectrum(const tensor_view<const T>& w, spectrum_arg ws) const {
    view(w, g_.weight_shape(), "weight", false);
    spectrum(ws, g_.w_spectrum_size(), "w_spectrum", true);
  }

  /// x, w, y are required; bias and the spectra to fill are optional.
  template <class T>
  void forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const nd<T>* bias,
               const tensor_view<nd<T>>& y, spectrum_arg xs, spectrum_arg ws) const {
    input(x);
    view(w, g_.weight_shape(), "weight", false);
    view(y, g_.output_shape(), "output", true);
    optional(bias, "bias");
    spectrum(xs, g_.x_spectrum_size(), "x_spectrum", false);
    spectrum(ws, g_.w_spectrum_size(), "w_spectrum", false);
  }

  /// forward() from the input's spectrum: x_spectrum instead of the input.
  template <class T>
  void forward_with_input_spectrum(spectrum_arg xs, const tensor_view<const T>& w,
                                   const nd<T>* bias, const tensor_view<nd<T>>& y,
                                   spectrum_arg ws) const {
    spectrum(xs, g_.x_spectrum_size(), "x_spectrum", true);
    view(w, g_.weight_shape(), "weight", false);
    view(y, g_.output_shape(), "output", true);
    optional(bias, "bias");
    spectrum(ws, g_.w_spectrum_size(), "w_spectrum", false);
  }

  template <class T>
  void forward_spectra(spectrum_arg xs, spectrum_arg ws, const nd<T>* bias,
                       const tensor_view<T>& y) const {
    spectrum(xs, g_.x_spectrum_size(), "x_spectrum", true);
    spectrum(ws, g_.w_spectrum_size(), "w_spectrum", true);
    optional(bias, "bias");
    view(y, g_.output_shape(), "output", true);
  }

  /// Each gradient may be skipped (null); grad_input needs the weight's spectrum or, where
  /// `weight` is given (backward_with_weight), the weight; grad_weight needs x_spectrum.
  template <class T>
  void backward(const tensor_view<const T>& grad_out, spectrum_arg xs, spectrum_arg ws,
                const tensor_view<const nd<T>>* weight, const tensor_view<nd<T>>* grad_input,
                const tensor_view<nd<T>>* grad_weight, const nd<T>* grad_bias) const {
    if (weight) view(*weight, g_.weight_shape(), "weight", false);
    view(grad_out, g_.output_shape(), "grad_output", false);
    if (grad_input) {
      view(*grad_input, g_.input_shape(), "grad_input", true);
    }
    if (grad_weight) view(*grad_weight, g_.weight_shape(), "grad_weight", true);
    // A spectrum that is given is checked even where no gradient reads it.
    spectrum(ws, g_.w_spectrum_size(), "w_spectrum", grad_input && !weight);
    spectrum(xs, g_.x_spectrum_size(), "x_spectrum", grad_weight != nullptr);
    optional(grad_bias, "grad_bias");
  }

  template <class T>
  void bias_grad(const tensor_view<const T>& grad_out, const nd<T>* grad_bias) const {
    view(grad_out, g_.output_shape(), "grad_output", false);
    required(grad_bias, "grad_bias");
  }

 private:
  template <class T>
  void view(const tensor_view<T>& v, const std::vector<int64_t>& expected, const char* name,
            bool is_output) const {
    check_view(v, expected, name, is_output);
    pointer_(v.data, name);
  }
  void required(const void* p, const char* name) const {
    BLFFT_EXPECTS(p != nullptr, error_code::invalid_argument, name, " pointer is null");
    pointer_(p, name);
  }
  void optional(const void* p, const char* name) const {
    if (p) pointer_(p, name);
  }
  /// Required: not null; given: the length the geometry says (where it is known).
  void spectrum(spectrum_arg s, int64_t expected, const char* name, bool is_required) const {
    if (!s.data && !is_required) return;
    required(s.data, name);
    BLFFT_EXPECTS(!s.sized || s.size == expected, error_code::invalid_argument, name, " has ",
                  s.size, " scalars but the plan expects ", expected, " (geometry().", name,
                  "_size())");
  }

  const geometry& g_;
  PointerCheck pointer_;
};

template <class PointerCheck>
call_checks(const geometry&, PointerCheck) -> call_checks<PointerCheck>;

}  // namespace blfft::detail
