#pragma once
// The public CUDA plan's calls (blfft/cuda.hpp: spectra as spectrum_view, stream last) over
// pipeline<T, Exec>: each given spectrum's length is checked against the geometry, then the
// pipeline runs (with its own checks of shapes, pointers, stream and device). plan.cpp wraps
// pipeline<T, device_executor> in it; the CPU emulation tests wrap pipeline<T, host_executor>,
// so what they check is the very call path of the GPU plan.

#include <cstdint>
#include <utility>

#include "blfft/cuda.hpp"
#include "check.hpp"
#include "pipeline.hpp"

namespace blfft::cuda::detail {

template <class T, class Exec>
class plan_calls {
 public:
  /// The pipeline's constructor arguments (executor, geometry, options, ...).
  template <class... Args>
  explicit plan_calls(Args&&... args) : pl_(std::forward<Args>(args)...) {}

  const blfft::geometry& geometry() const { return pl_.geo(); }
  const pipeline<T, Exec>& pipe() const { return pl_; }

  // X: the tensors' element type (T, or half / bfloat16 computed in T = float).
  template <class X>
  void forward(const tensor_view<const X>& x, const tensor_view<const nd<X>>& w, const nd<X>* bias,
               const tensor_view<nd<X>>& y, spectrum_view<T> xs, spectrum_view<T> ws,
               void* stream) const {
    pl_.forward(x, w, bias, y, x_data(xs), w_data(ws), stream);
  }
  template <class X>
  void input_spectrum(const tensor_view<const X>& x, spectrum_view<T> xs, void* stream) const {
    pl_.input_spectrum(x, x_data(xs), stream);
  }
  template <class X>
  void weight_spectrum(const tensor_view<const X>& w, spectrum_view<T> ws, void* stream) const {
    pl_.weight_spectrum(w, w_data(ws), stream);
  }
  template <class X>
  void forward_spectra(spectrum_view<const T> xs, spectrum_view<const T> ws, const nd<X>* bias,
                       const tensor_view<X>& y, void* stream) const {
    pl_.forward_spectra(x_data(xs), w_data(ws), bias, y, stream);
  }
  template <class X>
  void backward(const tensor_view<const X>& g, spectrum_view<const T> xs, spectrum_view<const T> ws,
                const tensor_view<nd<X>>* gi, const tensor_view<nd<X>>* gw, nd<X>* gb,
                void* stream) const {
    pl_.backward(g, x_data(xs), w_data(ws), gi, gw, gb, stream);
  }
  /// (The public plan has this call for T tensors only; X = half / bfloat16 is for the tests.)
  template <class X>
  void backward_with_weight(const tensor_view<const X>& g, spectrum_view<const T> xs,
                            const tensor_view<const nd<X>>& w, const tensor_view<nd<X>>* gi,
                            const tensor_view<nd<X>>* gw, nd<X>* gb, void* stream) const {
    pl_.backward_with_weight(g, x_data(xs), w, gi, gw, gb, stream);
  }
  void input_grad(const tensor_view<const T>& g, spectrum_view<const T> ws,
                  const tensor_view<T>& gi, void* stream) const {
    pl_.input_grad(g, w_data(ws), gi, stream);
  }
  void weight_grad(const tensor_view<const T>& g, spectrum_view<const T> xs,
                   const tensor_view<T>& gw, void* stream) const {
    pl_.weight_grad(g, x_data(xs), gw, stream);
  }
  void bias_grad(const tensor_view<const T>& g, T* gb, void* stream) const {
    pl_.bias_grad(g, gb, stream);
  }

 private:
  /// The data of a spectrum that is not given (null) or has the geometry's length; the CPU
  /// plan's message (src/common/call_checks.hpp) otherwise.
  template <class U>
  static U* checked(spectrum_view<U> s, int64_t expected, const char* name) {
    BLFFT_EXPECTS(!s.given() || s.size == expected, error_code::invalid_argument, name, " has ",
                  s.size, " scalars but the plan expects ", expected, " (geometry().", name,
                  "_size())");
    return s.data;
  }
  template <class U>
  U* x_data(spectrum_view<U> s) const {
    return checked(s, geometry().x_spectrum_size(), "x_spectrum");
  }
  template <class U>
  U* w_data(spectrum_view<U> s) const {
    return checked(s, geometry().w_spectrum_size(), "w_spectrum");
  }

  pipeline<T, Exec> pl_;
};

}  // namespace blfft::cuda::detail
