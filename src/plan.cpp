// The CPU plan: validation of caller buffers, then analyse -> mix -> synthesise.

#include "blfft/plan.hpp"

#include <optional>

#include "aligned_buffer.hpp"
#include "check.hpp"
#include "mix.hpp"
#include "mix_taps.hpp"
#include "parallel.hpp"
#include "pruned_transform.hpp"
#include "view_check.hpp"
#include "workspace.hpp"

namespace blfft {
namespace detail {
namespace {

template <class T>
image_view<T> as_image(const tensor_view<T>& v) {
  if (v.shape.size() == 3) return {v.data, v.strides[0], v.strides[1], 0, v.strides[2]};
  return {v.data, v.strides[0], v.strides[1], v.strides[2], v.strides[3]};
}

}  // namespace

template <class T>
class plan_impl {
  using transform = pruned_transform<T>;
  using dir = typename transform::direction;

 public:
  plan_impl(const geometry& geo, const plan_options& o)
      : g(geo) {
    check_sizes();
    if (use_taps(geo, o, sizeof(T))) twiddles.emplace(geo);
    const auto& p = g.params;
    const placement x_h{p.input[0], p.padding[0], 1}, x_w{p.input[1], p.padding[1], 1};
    const placement w_h{p.kernel[0], 0, p.dilation[0]}, w_w{p.kernel[1], 0, p.dilation[1]};
    const placement y_h{g.output[0], 0, p.stride[0]}, y_w{g.output[1], 0, p.stride[1]};
    const int64_t N = p.batch, C = p.in_channels, F = p.out_channels, Cg = g.in_per_group;
    x_in = std::make_unique<transform>(g, dir::analyse, N, C, x_h, x_w, o);
    w_in = std::make_unique<transform>(g, dir::analyse, F, Cg, w_h, w_w, o);
    g_in = std::make_unique<transform>(g, dir::analyse, N, F, y_h, y_w, o);
    y_out = std::make_unique<transform>(g, dir::synthesise, N, F, y_h, y_w, o);
    dx_out = std::make_unique<transform>(g, dir::synthesise, N, C, x_h, x_w, o);
    dw_out = std::make_unique<transform>(g, dir::synthesise, F, Cg, w_h, w_w, o);
    scale = T(1) / static_cast<T>(g.grid[0] * g.grid[1]);
    deterministic = o.deterministic;
  }

  /// Refuses, before anything is allocated, a layer whose spectra could not all be in memory
  /// at once (a pass holds up to three of them).
  void check_sizes() const {
    const auto bytes = [](int64_t n, const char* what) {
      return checked_bytes(static_cast<std::size_t>(n), sizeof(T), what);
    };
    const std::size_t x = bytes(g.x_spectrum_size(), "the input spectrum");
    const std::size_t w = bytes(g.w_spectrum_size(), "the weight spectrum");
    const std::size_t y = bytes(g.y_spectrum_size(), "the output spectrum");
    check_buffer_bytes(x, "the input spectrum");
    check_buffer_bytes(w, "the weight spectrum");
    check_buffer_bytes(y, "the output spectrum");
    std::size_t total = 0;
    if (__builtin_add_overflow(x, w, &total) || __builtin_add_overflow(total, y, &total))
      total = SIZE_MAX;
    check_buffer_bytes(total, "the input, weight and output spectra together");
  }

  geometry g;
  /// Mix from the weight taps (mix_taps.hpp) where no weight spectrum is given, and fold the
  /// weight gradient into the taps directly; else through whole weight spectra.
  std::optional<tap_twiddles<T>> twiddles;  // set where the plan mixes from the taps
  std::unique_ptr<transform> x_in, w_in, g_in, y_out, dx_out, dw_out;
  T scale;
  bool deterministic = false;
};

}  // namespace detail

using detail::as_image;
using detail::check_view;
using detail::require;

namespace {
/// FFTW's measured planning picks algorithms by timing, so it may differ from run to run;
/// deterministic plans estimate.
plan_options effective(plan_options o) {
  if (o.deterministic) o.rigor = fft_rigor::estimate;
  return o;
}
}  // namespace

template <class T>
plan<T>::plan(const blfft::geometry& g, const plan_options& options)
    : impl_(std::make_unique<detail::plan_impl<T>>(g, effective(options))) {}

template <class T>
plan<T>::plan(const conv_params& p, const compression& c, const plan_options& options)
    : plan(make_geometry(p, c), options) {}

template <class T>
plan<T>::~plan() = default;
template <class T>
plan<T>::plan(plan&&) noexcept = default;
template <class T>
plan<T>& plan<T>::operator=(plan&&) noexcept = default;

template <class T>
const blfft::geometry& plan<T>::geometry() const {
  BLFFT_EXPECTS(impl_ != nullptr, error_code::invalid_argument, "plan was moved from");
  return impl_->g;
}

template <class T>
void plan<T>::input_spectrum(const tensor_view<const T>& x, T* x_spectrum) const {
  const auto& g = geometry();
  check_view(x, g.input_shape(), "input", false);
  require(x_spectrum, "x_spectrum");
  impl_->x_in->analyse(as_image(x), x_spectrum);
}

template <class T>
void plan<T>::weight_spectrum(const tensor_view<const T>& w, T* w_spectrum) const {
  const auto& g = geometry();
  check_view(w, g.weight_shape(), "weight", false);
  require(w_spectrum, "w_spectrum");
  impl_->w_in->analyse(as_image(w), w_spectrum);
}

template <class T>
void plan<T>::forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const T* bias,
                      const tensor_view<T>& y, T* x_spectrum, T* w_spectrum) const {
  const auto& g = geometry();
  check_view(x, g.input_shape(), "input", false);
  check_view(w, g.weight_shape(), "weight", false);
  check_view(y, g.output_shape(), "output", true);
  // Spectra the caller does not keep live in pooled buffers for the duration of the call.
  auto x_tmp = detail::take_workspace<T>(x_spectrum ? 0 : g.x_spectrum_size(), "input spectrum");
  if (!x_spectrum) x_spectrum = x_tmp.data();
  impl_->x_in->analyse(as_image(x), x_spectrum);
  if (!w_spectrum && impl_->twiddles) {  // no weight spectrum at all
    auto y_spec = detail::take_workspace<T>(g.y_spectrum_size(), "output spectrum");
    detail::mix_forward_taps(g, *impl_->twiddles, x_spectrum, as_image(w), y_spec.data());
    impl_->y_out->synthesise(y_spec.data(), as_image(y), impl_->scale, bias);
    return;
  }
  auto w_tmp = detail::take_workspace<T>(w_spectrum ? 0 : g.w_spectrum_size(), "weight spectrum");
  if (!w_spectrum) w_spectrum = w_tmp.data();
  impl_->w_in->analyse(as_image(w), w_spectrum);
  forward_spectra(x_spectrum, w_spectrum, bias, y);
}

template <class T>
void plan<T>::forward_spectra(const T* x_spectrum, const T* w_spectrum, const T* bias,
                              const tensor_view<T>& y) const {
  const auto& g = geometry();
  require(x_spectrum, "x_spectrum");
  require(w_spectrum, "w_spectrum");
  check_view(y, g.output_shape(), "output", true);
  auto y_spec = detail::take_workspace<T>(g.y_spectrum_size(), "output spectrum");
  detail::mix_forward(g, x_spectrum, w_spectrum, y_spec.data());
  impl_->y_out->synthesise(y_spec.data(), as_image(y), impl_->scale, bias);
}

template <class T>
void plan<T>::backward(const tensor_view<const T>& grad_out, const T* x_spectrum,
                       const T* w_spectrum, const tensor_view<T>* grad_input,
                       const tensor_view<T>* grad_weight, T* grad_bias) const {
  if (grad_input) require(w_spectrum, "w_spectrum");
  backward_impl(grad_out, x_spectrum, w_spectrum, nullptr, grad_input, grad_weight, grad_bias);
}

template <class T>
void plan<T>::backward_with_weight(const tensor_view<const T>& grad_out, const T* x_spectrum,
                                   const tensor_view<const T>& weight,
                                   const tensor_view<T>* grad_input,
                                   const tensor_view<T>* grad_weight, T* grad_bias) const {
  check_view(weight, geometry().weight_shape(), "weight", false);
  backward_impl(grad_out, x_spectrum, nullptr, &weight, grad_input, grad_weight, grad_bias);
}

template <class T>
void plan<T>::backward_impl(const tensor_view<const T>& grad_out, const T* x_spectrum,
                            const T* w_spectrum, const tensor_view<const T>* weight,
                            const tensor_view<T>* grad_input, const tensor_view<T>* grad_weight,
                            T* grad_bias) const {
  const auto& g = geometry();
  check_view(grad_out, g.output_shape(), "grad_output", false);
  if (grad_input) check_view(*grad_input, g.input_shape(), "grad_input", true);
  if (grad_weight) {
    check_view(*grad_weight, g.weight_shape(), "grad_weight", true);
    require(x_spectrum, "x_spectrum");
  }
  if (grad_input || grad_weight) {
    // The one new transform of the backward pass (DESIGN.md 1.6).
    auto g_spec = detail::take_workspace<T>(g.y_spectrum_size(), "output gradient spectrum");
    impl_->g_in->analyse(as_image(grad_out), g_spec.data());
    if (grad_input) {
      auto dx_spec = detail::take_workspace<T>(g.x_spectrum_size(), "input gradient spectrum");
      if (w_spectrum) {
        detail::mix_input_grad(g, g_spec.data(), w_spectrum, dx_spec.data());
      } else if (impl_->twiddles) {
        detail::mix_input_grad_taps(g, *impl_->twiddles, g_spec.data(), as_image(*weight),
                                    dx_spec.data());
      } else {
        auto w_spec = detail::take_workspace<T>(g.w_spectrum_size(), "weight spectrum");
        impl_->w_in->analyse(as_image(*weight), w_spec.data());
        detail::mix_input_grad(g, g_spec.data(), w_spec.data(), dx_spec.data());
      }
      impl_->dx_out->synthesise(dx_spec.data(), as_image(*grad_input), impl_->scale, nullptr);
    }
    if (grad_weight && impl_->twiddles) {
      detail::weight_grad_taps(g, *impl_->twiddles, g_spec.data(), x_spectrum, impl_->scale,
                               as_image(*grad_weight), impl_->deterministic);
    } else if (grad_weight) {
      auto dw_spec = detail::take_workspace<T>(g.w_spectrum_size(), "weight gradient spectrum");
      detail::mix_weight_grad(g, g_spec.data(), x_spectrum, dw_spec.data());
      impl_->dw_out->synthesise(dw_spec.data(), as_image(*grad_weight), impl_->scale, nullptr);
    }
  }
  if (grad_bias) bias_grad(grad_out, grad_bias);
}

template <class T>
void plan<T>::input_grad(const tensor_view<const T>& grad_out, const T* w_spectrum,
                         const tensor_view<T>& grad_input) const {
  backward(grad_out, nullptr, w_spectrum, &grad_input, nullptr, nullptr);
}

template <class T>
void plan<T>::weight_grad(const tensor_view<const T>& grad_out, const T* x_spectrum,
                          const tensor_view<T>& grad_weight) const {
  backward(grad_out, x_spectrum, nullptr, nullptr, &grad_weight, nullptr);
}

template <class T>
void plan<T>::bias_grad(const tensor_view<const T>& grad_out, T* grad_bias) const {
  const auto& g = geometry();
  check_view(grad_out, g.output_shape(), "grad_output", false);
  require(grad_bias, "grad_bias");
  const auto img = as_image(grad_out);
  const int64_t N = g.params.batch, F = g.params.out_channels;
  const int64_t Ho = g.output[0], Wo = g.output[1];
  const bool parallel = N * Ho * Wo * F >= 32768;
  detail::parallel_for(F, parallel ? detail::thread_count() : 1, parallel, [&](int64_t f) {
    double sum = 0;  // double accumulation over rows; each row in T, vectorised
    for (int64_t n = 0; n < N; ++n)
      for (int64_t h = 0; h < Ho; ++h) {
        const T* row = img.data + n * img.stride_b + f * img.stride_ch + h * img.stride_h;
        T row_sum = 0;
        if (img.stride_w == 1) {
#pragma omp simd reduction(+ : row_sum)
          for (int64_t w = 0; w < Wo; ++w) row_sum += row[w];
        } else {
          for (int64_t w = 0; w < Wo; ++w) row_sum += row[w * img.stride_w];
        }
        sum += row_sum;
      }
    grad_bias[f] = static_cast<T>(sum);
  });
}

template class plan<float>;
template class plan<double>;

}  // namespace blfft
