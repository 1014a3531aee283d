// The CPU plan: the shared argument checks (common/call_checks.hpp), then analyse -> mix ->
// synthesise on the shared plan skeleton (common/layer.hpp).

#include "blfft/plan.hpp"

#include <optional>

#include "aligned_buffer.hpp"
#include "call_checks.hpp"
#include "check.hpp"
#include "depth_mix.hpp"
#include "depth_transform.hpp"
#include "fused_pass.hpp"
#include "layer.hpp"
#include "mix.hpp"
#include "mix_taps.hpp"
#include "parallel.hpp"
#include "pruned_transform.hpp"
#include "shared_cache.hpp"
#include "workspace.hpp"

namespace blfft {
namespace detail {

template <class T>
class plan_impl {
  using transform = volume_transform<T>;  // the pruned 2D transform, per depth slice in 3D

 public:
  plan_impl(const geometry& geo, const plan_options& o)
      : g(geo),
        stages(g,
               [&](transform_direction d, int64_t B, int64_t CH, placement pd, placement h,
                   placement w) { return std::make_unique<transform>(g, d, B, CH, pd, h, w, o); }),
        scale(T(1) / static_cast<T>(g.depth_grid * g.grid[0] * g.grid[1])),
        deterministic(o.deterministic) {
    if (mixes_from_taps(geo, o, sizeof(T))) twiddles.emplace(geo);
    const bool want = o.fusion == pass_fusion::on;  // automatic: off (plan.hpp, measured)
    fused_forward = want && !volume && fusable(stages.x_in->plane(), stages.y_out->plane());
    fused_input_grad = want && !volume && fusable(stages.g_in->plane(), stages.dx_out->plane());
  }

  /// Refuses, before anything is allocated, a layer whose spectra could not all be in memory
  /// at once (a pass holds up to three of them). The plan calls it on the geometry it is given.
  static const geometry& checked_sizes(const geometry& g) {
    const auto bytes = [](int64_t n, const char* what) {
      return checked_bytes(static_cast<std::size_t>(n), sizeof(T), what);
    };
    const std::size_t x = bytes(g.x_spectrum_size(), "the input spectrum");
    // 3D: the plan itself never makes a whole weight spectrum, only the 2D spectra of the
    // weight's KD depth slices (depth_mix.hpp); a caller that wants one passes its own memory.
    const int64_t per_depth = g.w_spectrum_size() / static_cast<int64_t>(g.kept_depth.size());
    const int64_t w_scalars =
        g.params.ndim == 3 ? checked_mul(g.params.depth.kernel, per_depth, "weight slice spectra")
                           : g.w_spectrum_size();
    const std::size_t w = bytes(w_scalars, "the weight spectrum");
    const std::size_t y = bytes(g.y_spectrum_size(), "the output spectrum");
    check_buffer_bytes(x, "the input spectrum");
    check_buffer_bytes(w, "the weight spectrum");
    check_buffer_bytes(y, "the output spectrum");
    std::size_t total = 0;
    if (__builtin_add_overflow(x, w, &total) || __builtin_add_overflow(total, y, &total))
      total = SIZE_MAX;
    check_buffer_bytes(total, "the input, weight and output spectra together");
    return g;
  }

  call_checks<any_pointer> checks() const { return {g, any_pointer{}}; }

  void forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const T* bias,
               const tensor_view<T>& y, T* x_spectrum, T* w_spectrum) const {
    // Spectra the caller does not keep live in pooled buffers for the duration of the call.
    auto x_tmp = take_workspace<T>(x_spectrum ? 0 : g.x_spectrum_size(), "input spectrum");
    if (!x_spectrum) x_spectrum = x_tmp.data();
    if (fused_forward && (w_spectrum || !twiddles)) {
      forward_fused(&x, w, bias, y, x_spectrum, w_spectrum);
      return;
    }
    analyse_input(x, x_spectrum);
    forward_from(x_spectrum, w, bias, y, w_spectrum);
  }

  /// The input's spectrum, as every path of this plan makes it: a fused plan's fused forward
  /// rounds it differently from the whole-spectrum analysis, so its other paths take the fused
  /// analysis too (input_spectrum() then hands forward_with_input_spectrum forward()'s bits).
  void analyse_input(const tensor_view<const T>& x, T* x_spectrum) const {
    if (fused_forward)
      fused_analysis<T>(g, stages.x_in->plane(), as_image(x), g.params.batch * g.params.in_channels,
                        x_spectrum, stages.y_out->plane(), g.params.batch * g.params.out_channels);
    else
      stages.x_in->analyse(x, x_spectrum);
  }

  /// forward() for an input whose spectrum is given: the pass forward() takes, fused or not (the
  /// fused synthesis rounds differently from the whole-spectrum one).
  void forward_with_input_spectrum(const T* x_spectrum, const tensor_view<const T>& w,
                                   const T* bias, const tensor_view<T>& y, T* w_spectrum) const {
    if (fused_forward && (w_spectrum || !twiddles))  // (x_spectrum is only read: no source)
      forward_fused(nullptr, w, bias, y, const_cast<T*>(x_spectrum), w_spectrum);
    else
      forward_from(x_spectrum, w, bias, y, w_spectrum);
  }

  /// forward() after its input transform: from the input's spectrum.
  void forward_from(const T* x_spectrum, const tensor_view<const T>& w, const T* bias,
                    const tensor_view<T>& y, T* w_spectrum) const {
    if (!w_spectrum && twiddles) {  // no weight spectrum at all
      auto y_spec = take_workspace<T>(g.y_spectrum_size(), "output spectrum");
      mix_forward_taps(g, *twiddles, x_spectrum, as_image(w), y_spec.data());
      stages.y_out->synthesise(y_spec.data(), y, scale, bias);
      return;
    }
    if (!w_spectrum && volume) {  // 3D: the weight's depth slices only (depth_mix.hpp)
      auto w_slices = weight_slices(w);
      auto y_spec = take_workspace<T>(g.y_spectrum_size(), "output spectrum");
      depth_taps_mix(g, *stages.w_in, w_slices.data(), x_spectrum, y_spec.data(), true);
      stages.y_out->synthesise(y_spec.data(), y, scale, bias);
      return;
    }
    auto w_tmp = take_workspace<T>(w_spectrum ? 0 : g.w_spectrum_size(), "weight spectrum");
    if (!w_spectrum) w_spectrum = w_tmp.data();
    stages.w_in->analyse(w, w_spectrum);
    forward_spectra(x_spectrum, w_spectrum, bias, y);
  }

  void forward_spectra(const T* x_spectrum, const T* w_spectrum, const T* bias,
                       const tensor_view<T>& y) const {
    auto y_spec = take_workspace<T>(g.y_spectrum_size(), "output spectrum");
    mix_forward(g, x_spectrum, w_spectrum, y_spec.data());
    stages.y_out->synthesise(y_spec.data(), y, scale, bias);
  }

  /// `w_spectrum` or, where it is null, `weight` for the input gradient.
  void backward(const tensor_view<const T>& grad_out, const T* x_spectrum, const T* w_spectrum,
                const tensor_view<const T>* weight, const tensor_view<T>* grad_input,
                const tensor_view<T>* grad_weight, T* grad_bias) const {
    if (grad_input || grad_weight) {
      // The one new transform of the backward pass (docs/design.md 1.6).
      auto dy_spec = take_workspace<T>(g.y_spectrum_size(), "output gradient spectrum");
      const bool fuse_dx = grad_input && fused_input_grad && (w_spectrum || !twiddles);
      if (fuse_dx)
        input_grad_fused(grad_out, dy_spec.data(), w_spectrum, weight, *grad_input);
      else if (fused_input_grad)  // the fused pass's bits: the weight gradient's with or without it
        fused_analysis<T>(g, stages.g_in->plane(), as_image(grad_out),
                          g.params.batch * g.params.out_channels, dy_spec.data(),
                          stages.dx_out->plane(), g.params.batch * g.params.in_channels);
      else
        stages.g_in->analyse(grad_out, dy_spec.data());
      if (grad_input && !fuse_dx) {
        auto dx_spec = take_workspace<T>(g.x_spectrum_size(), "input gradient spectrum");
        if (w_spectrum) {
          mix_input_grad(g, dy_spec.data(), w_spectrum, dx_spec.data());
        } else if (twiddles) {
          mix_input_grad_taps(g, *twiddles, dy_spec.data(), as_image(*weight), dx_spec.data());
        } else if (volume) {
          auto w_slices = weight_slices(*weight);
          depth_taps_mix(g, *stages.w_in, w_slices.data(), dy_spec.data(), dx_spec.data(), false);
        } else {
          auto w_spec = take_workspace<T>(g.w_spectrum_size(), "weight spectrum");
          stages.w_in->analyse(*weight, w_spec.data());
          mix_input_grad(g, dy_spec.data(), w_spec.data(), dx_spec.data());
        }
        stages.dx_out->synthesise(dx_spec.data(), *grad_input, scale, nullptr);
      }
      if (grad_weight && twiddles) {
        weight_grad_taps(g, *twiddles, dy_spec.data(), x_spectrum, scale, as_image(*grad_weight),
                         deterministic);
      } else if (grad_weight && volume) {
        auto dw_slices = take_workspace<T>(g.params.depth.kernel * stages.dw_out->slice_size(),
                                           "weight gradient slices");
        depth_taps_weight_grad(g, *stages.dw_out, dy_spec.data(), x_spectrum, dw_slices.data());
        stages.dw_out->synthesise_slices(dw_slices.data(), *grad_weight, scale, nullptr);
      } else if (grad_weight) {
        auto dw_spec = take_workspace<T>(g.w_spectrum_size(), "weight gradient spectrum");
        mix_weight_grad(g, dy_spec.data(), x_spectrum, dw_spec.data());
        stages.dw_out->synthesise(dw_spec.data(), *grad_weight, scale, nullptr);
      }
    }
    if (grad_bias) bias_grad(grad_out, grad_bias);
  }

  /// The forward pass fused per chunk of kept columns (fused_pass.hpp); writes both spectra
  /// (without `x`, x_spectrum holds the input's already and is only read).
  void forward_fused(const tensor_view<const T>* x, const tensor_view<const T>& w, const T* bias,
                     const tensor_view<T>& y, T* x_spectrum, T* w_spectrum) const {
    auto w_tmp = take_workspace<T>(w_spectrum ? 0 : g.w_spectrum_size(), "weight spectrum");
    if (!w_spectrum) w_spectrum = w_tmp.data();
    stages.w_in->analyse(w, w_spectrum);
    const T* ws = w_spectrum;
    const int64_t N = g.params.batch, F = g.params.out_channels, Cg = g.in_per_group;
    const auto src = x ? std::optional(as_image(*x)) : std::nullopt;
    fused_pass<T>(g, stages.x_in->plane(), src ? &*src : nullptr, N * g.params.in_channels,
                  x_spectrum, stages.y_out->plane(), as_image(y), N * F, scale, bias,
                  mix_scratch_scalars(g), [&](int64_t k, const T* x_k, T* y_k, T* s) {
                    const T* w_re = ws + k * 2 * F * Cg;
                    for (int64_t gr = 0; gr < g.params.groups; ++gr)
                      mix_forward_at<T>(g, 0, gr, x_k, w_re, w_re + F * Cg, y_k, s);
                  });
  }

  /// The input-gradient pass fused per chunk of kept columns, from `w_spectrum` or, where it is
  /// null, `weight`; writes the whole output-gradient spectrum (the weight gradient's operand).
  void input_grad_fused(const tensor_view<const T>& grad_out, T* dy_spectrum, const T* w_spectrum,
                        const tensor_view<const T>* weight,
                        const tensor_view<T>& grad_input) const {
    auto w_tmp = take_workspace<T>(w_spectrum ? 0 : g.w_spectrum_size(), "weight spectrum");
    if (!w_spectrum) {
      stages.w_in->analyse(*weight, w_tmp.data());
      w_spectrum = w_tmp.data();
    }
    const T* ws = w_spectrum;
    const int64_t N = g.params.batch, F = g.params.out_channels, Cg = g.in_per_group;
    const auto src = as_image(grad_out);
    fused_pass<T>(g, stages.g_in->plane(), &src, N * F, dy_spectrum, stages.dx_out->plane(),
                  as_image(grad_input), N * g.params.in_channels, scale, nullptr,
                  mix_scratch_scalars(g), [&](int64_t k, const T* dy_k, T* dx_k, T* s) {
                    const T* w_re = ws + k * 2 * F * Cg;
                    for (int64_t gr = 0; gr < g.params.groups; ++gr)
                      mix_input_grad_at<T>(g, 0, gr, dy_k, w_re, w_re + F * Cg, dx_k, s);
                  });
  }

  /// 3D: the 2D spectra of the weight's depth slices (depth_mix.hpp).
  lease<T> weight_slices(const tensor_view<const T>& w) const {
    auto slices = take_workspace<T>(g.params.depth.kernel * stages.w_in->slice_size(),
                                    "weight slice spectra");
    stages.w_in->analyse_slices(w, slices.data());
    return slices;
  }

  void bias_grad(const tensor_view<const T>& grad_out, T* grad_bias) const {
    const bool rank5 = grad_out.rank() == 5;
    // 3D: depth slices are more rows of each (n, f) image, at stride_d.
    const auto img =
        rank5 ? image_view<const T>{grad_out.data, grad_out.strides[0], grad_out.strides[1],
                                    grad_out.strides[3], grad_out.strides[4]}
              : as_image(grad_out);
    const int64_t stride_d = rank5 ? grad_out.strides[2] : 0;
    const int64_t N = g.params.batch, F = g.params.out_channels;
    const int64_t Do = g.depth_output, Ho = g.output[0], Wo = g.output[1];
    const bool parallel = N * Do * Ho * Wo * F >= 32768;
    parallel_for(F, parallel ? thread_count() : 1, parallel, [&](int64_t f) {
      double sum = 0;  // double accumulation over rows; each row in T, vectorised
      for (int64_t n = 0; n < N; ++n)
        for (int64_t dh = 0; dh < Do * Ho; ++dh) {
          const int64_t d = dh / Ho, h = dh % Ho;
          const T* row =
              img.data + n * img.stride_b + f * img.stride_ch + d * stride_d + h * img.stride_h;
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

  geometry g;
  layer_transforms<transform> stages;
  T scale;
  bool deterministic = false;
  bool fused_forward = false, fused_input_grad = false;  // fused_pass.hpp
  bool volume = mixes_from_depth_slices(g);  // 3D: mixing from the weight's depth slices
  /// Mix from the weight taps (mix_taps.hpp) where no weight spectrum is given, and fold the
  /// weight gradient into the taps directly; else through whole weight spectra.
  std::optional<tap_twiddles<T>> twiddles;  // set where the plan mixes from the taps
};

}  // namespace detail

bool mixes_from_taps(const blfft::geometry& g, const plan_options& options,
                     std::size_t element_bytes) {
  return g.params.ndim != 3 && detail::use_taps(g, options, element_bytes);  // (1D/2D only)
}

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
    : impl_(std::make_unique<detail::plan_impl<T>>(detail::plan_impl<T>::checked_sizes(g),
                                                   effective(options))) {}

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

// Every entry point: the shared checks, then the implementation (geometry() refuses a plan that
// was moved from).

template <class T>
void plan<T>::input_spectrum(const tensor_view<const T>& x, spectrum_view<T> x_spectrum) const {
  geometry();
  impl_->checks().input_spectrum(x, x_spectrum);
  impl_->analyse_input(x, x_spectrum.data);
}

template <class T>
void plan<T>::weight_spectrum(const tensor_view<const T>& w, spectrum_view<T> w_spectrum) const {
  geometry();
  impl_->checks().weight_spectrum(w, w_spectrum);
  impl_->stages.w_in->analyse(w, w_spectrum.data);
}

template <class T>
void plan<T>::forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const T* bias,
                      const tensor_view<T>& y, spectrum_view<T> x_spectrum,
                      spectrum_view<T> w_spectrum) const {
  geometry();
  impl_->checks().forward(x, w, bias, y, x_spectrum, w_spectrum);
  impl_->forward(x, w, bias, y, x_spectrum.data, w_spectrum.data);
}

template <class T>
void plan<T>::forward_with_input_spectrum(spectrum_view<const T> x_spectrum,
                                          const tensor_view<const T>& w, const T* bias,
                                          const tensor_view<T>& y,
                                          spectrum_view<T> w_spectrum) const {
  geometry();
  impl_->checks().forward_with_input_spectrum(x_spectrum, w, bias, y, w_spectrum);
  impl_->forward_with_input_spectrum(x_spectrum.data, w, bias, y, w_spectrum.data);
}

template <class T>
void plan<T>::forward_spectra(spectrum_view<const T> x_spectrum, spectrum_view<const T> w_spectrum,
                              const T* bias, const tensor_view<T>& y) const {
  geometry();
  impl_->checks().forward_spectra(x_spectrum, w_spectrum, bias, y);
  impl_->forward_spectra(x_spectrum.data, w_spectrum.data, bias, y);
}

template <class T>
void plan<T>::forward_prepared(const tensor_view<const T>& x, spectrum_view<const T> w_spectrum,
                               const T* bias, const tensor_view<T>& y,
                               spectrum_view<T> x_spectrum) const {
  geometry();
  const auto& g = impl_->g;
  auto x_tmp =
      detail::take_workspace<T>(x_spectrum.given() ? 0 : g.x_spectrum_size(), "input spectrum");
  const spectrum_view<T> xs =
      x_spectrum.given() ? x_spectrum : spectrum_view<T>(x_tmp.data(), g.x_spectrum_size());
  impl_->checks().input_spectrum(x, xs);
  impl_->checks().forward_spectra(spectrum_view<const T>(xs), w_spectrum, bias, y);
  impl_->analyse_input(x, xs.data);
  impl_->forward_spectra(xs.data, w_spectrum.data, bias, y);
}

template <class T>
spectrum_view<const T> prepared_weight<T>::update(const plan<T>& p, const tensor_view<const T>& w,
                                                  uint64_t version) {
  const auto& g = p.geometry();
  std::vector<int64_t> key;
  detail::append_geometry_key(key, g);
  key[1] = 0;  // the batch: a weight spectrum does not depend on it (a last, smaller batch)
  if (!key_.empty() && key == key_ && version == version_) {
    ++reuses_;
    return spectrum();
  }
  key_.clear();  // not valid until the new spectrum is made
  spectrum_.assign(static_cast<std::size_t>(g.w_spectrum_size()), T(0));
  p.weight_spectrum(w, {spectrum_.data(), g.w_spectrum_size()});
  key_ = std::move(key);
  version_ = version;
  ++transforms_;
  return spectrum();
}

template <class T>
spectrum_view<const T> prepared_weight<T>::spectrum() const {
  if (key_.empty()) return {};
  return {spectrum_.data(), static_cast<int64_t>(spectrum_.size())};
}

template <class T>
void prepared_weight<T>::clear() {
  key_.clear();
  std::vector<T>().swap(spectrum_);
}

template <class T>
void plan<T>::backward(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                       spectrum_view<const T> w_spectrum, const tensor_view<T>* grad_input,
                       const tensor_view<T>* grad_weight, T* grad_bias) const {
  geometry();
  impl_->checks().backward(grad_out, x_spectrum, w_spectrum, nullptr, grad_input, grad_weight,
                           grad_bias);
  impl_->backward(grad_out, x_spectrum.data, w_spectrum.data, nullptr, grad_input, grad_weight,
                  grad_bias);
}

template <class T>
void plan<T>::backward_with_weight(const tensor_view<const T>& grad_out,
                                   spectrum_view<const T> x_spectrum,
                                   const tensor_view<const T>& weight,
                                   const tensor_view<T>* grad_input,
                                   const tensor_view<T>* grad_weight, T* grad_bias) const {
  geometry();
  impl_->checks().backward(grad_out, x_spectrum, nullptr, &weight, grad_input, grad_weight,
                           grad_bias);
  impl_->backward(grad_out, x_spectrum.data, nullptr, &weight, grad_input, grad_weight, grad_bias);
}

template <class T>
void plan<T>::input_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> w_spectrum,
                         const tensor_view<T>& grad_input) const {
  backward(grad_out, {}, w_spectrum, &grad_input, nullptr, nullptr);
}

template <class T>
void plan<T>::weight_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                          const tensor_view<T>& grad_weight) const {
  backward(grad_out, x_spectrum, {}, nullptr, &grad_weight, nullptr);
}

template <class T>
void plan<T>::bias_grad(const tensor_view<const T>& grad_out, T* grad_bias) const {
  geometry();
  impl_->checks().bias_grad(grad_out, grad_bias);
  impl_->bias_grad(grad_out, grad_bias);
}

template class plan<float>;
template class plan<double>;
template class prepared_weight<float>;
template class prepared_weight<double>;

}  // namespace blfft
