// The public API (blfft/cuda.hpp): plans over plan_calls<T, device_executor> (the pipeline with
// the public signatures), the plan cache, energy selection.

#include <cmath>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

#include "blfft/cuda.hpp"
#include "device_executor.hpp"
#include "pipeline.hpp"
#include "plan_calls.hpp"
#include "plan_members.hpp"
#include "shared_cache.hpp"

namespace blfft::cuda {
namespace detail {

template <class T>
class plan_impl {
 public:
  // The pipeline makes the plan's device current in every call, its construction and its
  // destruction included (pipeline.hpp: executor.activate()).
  plan_impl(const geometry& g, int dev, const cuda_plan_options& o)
      : device(dev), calls(device_executor(dev), g, o) {}
  int device;
  plan_calls<T, device_executor> calls;
};

template <class T>
std::unique_ptr<plan_impl<T>> make_impl(const geometry& g, int device, const cuda_plan_options& o) {
  validate_device(device);
  return std::make_unique<plan_impl<T>>(g, device, o);
}

}  // namespace detail

using blfft::detail::live_impl;

template <class T>
plan<T>::plan(const blfft::geometry& g, int device, const cuda_plan_options& options)
    : impl_(detail::make_impl<T>(g, device, options)) {}

template <class T>
plan<T>::plan(const conv_params& p, const compression& c, int device,
              const cuda_plan_options& options)
    : plan(make_geometry(p, c), device, options) {}

BLFFT_DEFINE_PLAN_MOVES(plan);

template <class T>
const blfft::geometry& plan<T>::geometry() const {
  return live_impl(impl_).calls.geometry();
}

template <class T>
int plan<T>::device() const {
  return live_impl(impl_).device;
}

template <class T>
void plan<T>::forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const T* bias,
                      const tensor_view<T>& y, spectrum_view<T> x_spectrum,
                      spectrum_view<T> w_spectrum, void* stream) const {
  live_impl(impl_).calls.forward(x, w, bias, y, x_spectrum, w_spectrum, stream);
}

template <class T>
void plan<T>::input_spectrum(const tensor_view<const T>& x, spectrum_view<T> x_spectrum,
                             void* stream) const {
  live_impl(impl_).calls.input_spectrum(x, x_spectrum, stream);
}

template <class T>
void plan<T>::weight_spectrum(const tensor_view<const T>& w, spectrum_view<T> w_spectrum,
                              void* stream) const {
  live_impl(impl_).calls.weight_spectrum(w, w_spectrum, stream);
}

template <class T>
void plan<T>::forward_spectra(spectrum_view<const T> x_spectrum, spectrum_view<const T> w_spectrum,
                              const T* bias, const tensor_view<T>& y, void* stream) const {
  live_impl(impl_).calls.forward_spectra(x_spectrum, w_spectrum, bias, y, stream);
}

template <class T>
void plan<T>::backward(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                       spectrum_view<const T> w_spectrum, const tensor_view<T>* grad_input,
                       const tensor_view<T>* grad_weight, T* grad_bias, void* stream) const {
  live_impl(impl_).calls.backward(grad_out, x_spectrum, w_spectrum, grad_input, grad_weight,
                                  grad_bias, stream);
}

template <class T>
void plan<T>::backward_with_weight(const tensor_view<const T>& grad_out,
                                   spectrum_view<const T> x_spectrum,
                                   const tensor_view<const T>& weight,
                                   const tensor_view<T>* grad_input,
                                   const tensor_view<T>* grad_weight, T* grad_bias,
                                   void* stream) const {
  live_impl(impl_).calls.backward_with_weight(grad_out, x_spectrum, weight, grad_input, grad_weight,
                                              grad_bias, stream);
}

template <class T>
void plan<T>::input_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> w_spectrum,
                         const tensor_view<T>& grad_input, void* stream) const {
  live_impl(impl_).calls.input_grad(grad_out, w_spectrum, grad_input, stream);
}

template <class T>
void plan<T>::weight_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                          const tensor_view<T>& grad_weight, void* stream) const {
  live_impl(impl_).calls.weight_grad(grad_out, x_spectrum, grad_weight, stream);
}

template <class T>
void plan<T>::bias_grad(const tensor_view<const T>& grad_out, T* grad_bias, void* stream) const {
  live_impl(impl_).calls.bias_grad(grad_out, grad_bias, stream);
}

// ---- 16-bit tensors (plan<float> only) ---------------------------------------------------------

namespace {
/// f(calls) on a plan<float>'s calls, for 16-bit tensors; a plan<double> refuses them.
template <class T, class F>
void on_float_plan(const std::unique_ptr<detail::plan_impl<T>>& impl, F&& f) {
  if constexpr (std::is_same_v<T, float>)
    f(live_impl(impl).calls);
  else
    blfft::detail::fail(error_code::type_mismatch,
                        "float16 / bfloat16 tensors need a plan<float> (they are computed in "
                        "float), not a plan<double>");
}
}  // namespace

#define BLFFT_HALF_CALLS(H)                                                                        \
  template <class T>                                                                               \
  void plan<T>::forward(const tensor_view<const H>& x, const tensor_view<const H>& w,              \
                        const H* bias, const tensor_view<H>& y, spectrum_view<T> x_spectrum,       \
                        spectrum_view<T> w_spectrum, void* stream) const {                         \
    on_float_plan(                                                                                 \
        impl_, [&](const auto& c) { c.forward(x, w, bias, y, x_spectrum, w_spectrum, stream); });  \
  }                                                                                                \
  template <class T>                                                                               \
  void plan<T>::input_spectrum(const tensor_view<const H>& x, spectrum_view<T> x_spectrum,         \
                               void* stream) const {                                               \
    on_float_plan(impl_, [&](const auto& c) { c.input_spectrum(x, x_spectrum, stream); });         \
  }                                                                                                \
  template <class T>                                                                               \
  void plan<T>::weight_spectrum(const tensor_view<const H>& w, spectrum_view<T> w_spectrum,        \
                                void* stream) const {                                              \
    on_float_plan(impl_, [&](const auto& c) { c.weight_spectrum(w, w_spectrum, stream); });        \
  }                                                                                                \
  template <class T>                                                                               \
  void plan<T>::forward_spectra(spectrum_view<const T> x_spectrum,                                 \
                                spectrum_view<const T> w_spectrum, const H* bias,                  \
                                const tensor_view<H>& y, void* stream) const {                     \
    on_float_plan(impl_, [&](const auto& c) {                                                      \
      c.forward_spectra(x_spectrum, w_spectrum, bias, y, stream);                                  \
    });                                                                                            \
  }                                                                                                \
  template <class T>                                                                               \
  void plan<T>::backward(const tensor_view<const H>& grad_out, spectrum_view<const T> x_spectrum,  \
                         spectrum_view<const T> w_spectrum, const tensor_view<H>* grad_input,      \
                         const tensor_view<H>* grad_weight, H* grad_bias, void* stream) const {    \
    on_float_plan(impl_, [&](const auto& c) {                                                      \
      c.backward(grad_out, x_spectrum, w_spectrum, grad_input, grad_weight, grad_bias, stream);    \
    });                                                                                            \
  }
BLFFT_HALF_CALLS(half)
BLFFT_HALF_CALLS(bfloat16)
#undef BLFFT_HALF_CALLS

template class plan<float>;
template class plan<double>;

// ---- plan cache ------------------------------------------------------------------------------

namespace {

// Never destroyed (see device_executor.cpp): plans hold device memory and cuFFT handles.
template <class T>
::blfft::detail::shared_cache<plan<T>>& cache() {
  static auto* c = new ::blfft::detail::shared_cache<plan<T>>;
  return *c;
}

}  // namespace

template <class T>
std::shared_ptr<const plan<T>> get_plan(const conv_params& p, const compression& c, int device,
                                        const cuda_plan_options& options) {
  geometry g = make_geometry(p, c);
  std::vector<int64_t> key = options.key();
  key.insert(key.end(), {static_cast<int64_t>(sizeof(T)), device});
  ::blfft::detail::append_geometry_key(key, g);
  return cache<T>().get(std::move(key),
                        [&] { return std::make_shared<const plan<T>>(g, device, options); });
}

std::size_t plan_cache_size() {
  return cache<float>().size() + cache<double>().size();
}

void clear_plan_cache() {
  cache<float>().clear();
  cache<double>().clear();
  detail::clear_device_caches();
}

template BLFFT_CUDA_API std::shared_ptr<const plan<float>>
get_plan<float>(const conv_params&, const compression&, int, const cuda_plan_options&);
template BLFFT_CUDA_API std::shared_ptr<const plan<double>>
get_plan<double>(const conv_params&, const compression&, int, const cuda_plan_options&);

// ---- energy ----------------------------------------------------------------------------------

template <class T>
std::vector<double> energy_map(const conv_params& p, const tensor_view<const T>& x, int device,
                               void* stream) {
  make_geometry(p);  // validates p before anything touches the device
  detail::validate_device(device);
  return detail::energy_map<T>(detail::device_executor(device), p, x, stream);
}

template <class T>
energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                  double fraction, int device, void* stream) {
  BLFFT_EXPECTS(std::isfinite(fraction) && fraction > 0.0 && fraction <= 1.0,
                error_code::invalid_argument, "energy fraction must be in (0, 1], got ", fraction);
  return blfft::select_by_energy(p, energy_map<T>(p, x, device, stream), fraction);
}

template BLFFT_CUDA_API std::vector<double>
energy_map<float>(const conv_params&, const tensor_view<const float>&, int, void*);
template BLFFT_CUDA_API std::vector<double>
energy_map<double>(const conv_params&, const tensor_view<const double>&, int, void*);
template BLFFT_CUDA_API energy_selection select_by_energy<float>(const conv_params&,
                                                                 const tensor_view<const float>&,
                                                                 double, int, void*);
template BLFFT_CUDA_API energy_selection select_by_energy<double>(const conv_params&,
                                                                  const tensor_view<const double>&,
                                                                  double, int, void*);

}  // namespace blfft::cuda
