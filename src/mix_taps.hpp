#pragma once
// Channel mixing with the weight spectrum made per kept frequency from the weight taps, instead
// of a whole weight spectrum in memory.
//
// A weight spectrum holds one complex (F/g x C/g) matrix per kept frequency: for small kernels it
// is many times the size of the weight (84x for the FCN's 256->128 k3 layer at rate 0.5), and
// reading it back from memory made the mixing memory-bound. Here each thread builds W_k for the
// frequency it works on from the taps (W_k = sum_t w_t e^{-i theta_{k,t}}, a few vector FMAs per
// element, in cache) right before the products that use it. The weight gradient likewise never
// becomes a spectrum: each frequency's dW_k is folded into per-thread tap accumulators
// (dw_t += c_k Re(dW_k e^{+i theta_{k,t}}), the real inverse transform, term by term).
// Same operator, same kept set; chosen when the taps are few against the batch (use_taps).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "blfft/geometry.hpp"
#include "blfft/plan.hpp"
#include "pruned_transform.hpp"

namespace blfft::detail {

/// e^{-i theta_{k,t}} for every kept frequency k and weight tap t, and the weight of k in the
/// real inverse transform (2 for columns standing for a conjugate pair, else 1).
template <class T>
struct tap_twiddles {
  int64_t taps = 0;
  std::vector<T> re, im;  // [k * taps + t]
  std::vector<T> fold;    // [k]
  explicit tap_twiddles(const geometry& g);
};

/// Whether a plan mixes from the taps (plan_options::mixing). Automatic: generating W_k costs 2
/// FMAs per tap and element and the products about 3 per batch row, so the taps must be few
/// (at most 6, and 2 taps <= 3 batch); it only pays when the spectrum it replaces would not
/// stay in the last-level cache (>= 16 MiB), and while the taps themselves (read once per
/// frequency, and the per-thread gradient accumulators) do (<= 2 MiB). Measured (bench/NOTES.md):
/// the FCN's k3/k5 layers (33 MB spectra) 1.5x faster fwd+bwd; ResNet's 3x3 stride-2 layers
/// (18-29 MB spectra, 9 taps) equal or slower, hence the cap on taps.
inline bool use_taps(const geometry& g, const plan_options& o, std::size_t element_bytes) {
  switch (o.mixing) {
    case weight_mixing::taps: return true;
    case weight_mixing::spectrum: return false;
    case weight_mixing::automatic: break;
  }
  constexpr double large_spectrum_bytes = 16.0 * 1024 * 1024;
  constexpr double cached_taps_bytes = 2.0 * 1024 * 1024;
  const int64_t taps = g.params.kernel[0] * g.params.kernel[1];
  const auto e = static_cast<double>(element_bytes);
  const double spectrum = static_cast<double>(g.w_spectrum_size()) * e;
  const double tap_array = static_cast<double>(g.weight_size()) * e;
  return taps <= 6 && 2 * taps <= 3 * g.params.batch && spectrum >= large_spectrum_bytes &&
         tap_array <= cached_taps_bytes;
}

/// y_spec = mixing of x_spec with the spectrum of the weight view w (F, C/g, KH, KW).
template <class T>
void mix_forward_taps(const geometry& g, const tap_twiddles<T>& tw, const T* x_spec,
                      const image_view<const T>& w, T* y_spec);

/// dx_spec = mixing of dy_spec with the spectrum of w.
template <class T>
void mix_input_grad_taps(const geometry& g, const tap_twiddles<T>& tw, const T* dy_spec,
                         const image_view<const T>& w, T* dx_spec);

/// dw = scale * (real inverse transform of G_k^H X_k at the kept frequencies), written to the
/// weight-shaped view dw. `deterministic`: bitwise the same result for any thread count.
template <class T>
void weight_grad_taps(const geometry& g, const tap_twiddles<T>& tw, const T* dy_spec,
                      const T* x_spec, T scale, const image_view<T>& dw, bool deterministic);

}  // namespace blfft::detail
