#pragma once
// The argument checks of every plan entry point, written once for both backends so that they
// refuse the same mistakes with the same messages (src/plan.cpp, cuda/pipeline.hpp). What differs
// is the pointer check, a parameter: none on the CPU (any host pointer will do), "device memory of
// the plan's device" on CUDA. It is called on every non-null pointer a call reads or writes, after
// the null and shape checks.

#include <utility>
#include <vector>

#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"
#include "check.hpp"
#include "view_check.hpp"

namespace blfft::detail {

/// The CPU backend's pointer check: host memory needs none.
struct any_pointer {
  void operator()(const void*, const char*) const {}
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
  void input_spectrum(const tensor_view<const T>& x, const nd<T>* xs) const {
    input(x);
    required(xs, "x_spectrum");
  }

  template <class T>
  void weight_spectrum(const tensor_view<const T>& w, const nd<T>* ws) const {
    view(w, g_.weight_shape(), "weight", false);
    required(ws, "w_spectrum");
  }

  /// x, w, y are required; bias and the spectra to fill are optional.
  template <class T>
  void forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const nd<T>* bias,
               const tensor_view<nd<T>>& y, const nd<T>* xs, const nd<T>* ws) const {
    input(x);
    view(w, g_.weight_shape(), "weight", false);
    view(y, g_.output_shape(), "output", true);
    optional(bias, "bias");
    optional(xs, "x_spectrum");
    optional(ws, "w_spectrum");
  }

  template <class T>
  void forward_spectra(const nd<T>* xs, const nd<T>* ws, const nd<T>* bias,
                       const tensor_view<T>& y) const {
    required(xs, "x_spectrum");
    required(ws, "w_spectrum");
    optional(bias, "bias");
    view(y, g_.output_shape(), "output", true);
  }

  /// Each gradient may be skipped (null); grad_input needs the weight's spectrum or, where
  /// `weight` is given (backward_with_weight), the weight; grad_weight needs x_spectrum.
  template <class T>
  void backward(const tensor_view<const T>& grad_out, const nd<T>* xs, const nd<T>* ws,
                const tensor_view<const nd<T>>* weight, const tensor_view<nd<T>>* grad_input,
                const tensor_view<nd<T>>* grad_weight, const nd<T>* grad_bias) const {
    if (weight) view(*weight, g_.weight_shape(), "weight", false);
    view(grad_out, g_.output_shape(), "grad_output", false);
    if (grad_input) {
      view(*grad_input, g_.input_shape(), "grad_input", true);
      if (!weight) required(ws, "w_spectrum");
    }
    if (grad_weight) {
      view(*grad_weight, g_.weight_shape(), "grad_weight", true);
      required(xs, "x_spectrum");
    }
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

  const geometry& g_;
  PointerCheck pointer_;
};

template <class PointerCheck>
call_checks(const geometry&, PointerCheck) -> call_checks<PointerCheck>;

}  // namespace blfft::detail
