#include "mix_taps.hpp"

#include <algorithm>
#include <cstring>

#include "check.hpp"
#include "mix.hpp"
#include "parallel.hpp"
#include "twiddle.hpp"
#include "workspace.hpp"

namespace blfft::detail {
namespace {

// Accumulators of the weight gradient (pieces of the kept frequencies) under determinism.
constexpr int64_t deterministic_pieces = 16;

struct shape {
  int64_t Cg, groups, taps, FC;
};
shape shape_of(const geometry& g) {
  const auto& p = g.params;
  return {g.in_per_group, p.groups, p.kernel[0] * p.kernel[1], p.out_channels * g.in_per_group};
}

/// The weight taps, tap-major: wt[t * FC + f * Cg + c] = w(f, c, t / KW, t % KW).
template <class T>
void taps_major(const geometry& g, const image_view<const T>& w, T* wt) {
  const shape s = shape_of(g);
  const int64_t KW = g.params.kernel[1];
  for (int64_t fc = 0; fc < s.FC; ++fc) {
    const int64_t f = fc / s.Cg, c = fc % s.Cg;
    const T* base = w.data + f * w.stride_b + c * w.stride_ch;
    for (int64_t t = 0; t < s.taps; ++t)
      wt[t * s.FC + fc] = base[(t / KW) * w.stride_h + (t % KW) * w.stride_w];
  }
}

/// W_k = sum_t w_t e^{-i theta_{k,t}} into (wr, wi), each FC long.
template <class T>
void weight_at(const tap_twiddles<T>& tw, int64_t k, const T* wt, int64_t FC, T* wr, T* wi) {
  for (int64_t t = 0; t < tw.taps; ++t) {
    const T er = tw.re[k * tw.taps + t], ei = tw.im[k * tw.taps + t];
    const T* src = wt + t * FC;
    if (t == 0) {
#pragma omp simd
      for (int64_t j = 0; j < FC; ++j) {
        wr[j] = er * src[j];
        wi[j] = ei * src[j];
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < FC; ++j) {
        wr[j] += er * src[j];
        wi[j] += ei * src[j];
      }
    }
  }
}

/// Per-thread scratch of the taps path: one frequency's weight (or weight-gradient) matrix,
/// planar (2 FC), then the mixing products' scratch.
template <class T>
struct taps_scratch {
  T* wr;
  T* wi;
  T* mix;
};
template <class T>
std::size_t taps_scratch_scalars(const geometry& g) {
  return aligned_count<T>(static_cast<std::size_t>(2 * shape_of(g).FC)) + mix_scratch_scalars(g);
}
template <class T>
taps_scratch<T> split(const geometry& g, T* s) {
  const int64_t FC = shape_of(g).FC;
  return {s, s + FC, s + aligned_count<T>(static_cast<std::size_t>(2 * FC))};
}

}  // namespace

template <class T>
tap_twiddles<T>::tap_twiddles(const geometry& g) {
  const auto& p = g.params;
  taps = p.kernel[0] * p.kernel[1];
  const auto nc = static_cast<int64_t>(g.kept_cols.size());
  re.resize(static_cast<size_t>(g.kept * taps));
  im.resize(re.size());
  fold.resize(static_cast<size_t>(g.kept));
  for (int64_t k = 0; k < g.kept; ++k) {
    const int64_t kr = g.kept_rows[static_cast<size_t>(k / nc)];
    const int64_t kc = g.kept_cols[static_cast<size_t>(k % nc)];
    fold[static_cast<size_t>(k)] = (kc == 0 || 2 * kc == g.grid[1]) ? T(1) : T(2);
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t h = (t / p.kernel[1]) * p.dilation[0], w = (t % p.kernel[1]) * p.dilation[1];
      const auto e = twiddle(kr, h, g.grid[0], -1.0) * twiddle(kc, w, g.grid[1], -1.0);
      re[static_cast<size_t>(k * taps + t)] = static_cast<T>(e.real());
      im[static_cast<size_t>(k * taps + t)] = static_cast<T>(e.imag());
    }
  }
}

namespace {
/// A pass that reads the weight (forward, input gradient) with the weight matrix W_k of every
/// kept frequency made from the taps of w: out = product(in, W_k) for every group.
template <class T, class Product>
void mix_with_taps(const geometry& g, const tap_twiddles<T>& tw, const T* in,
                   const image_view<const T>& w, T* out, Product product) {
  const shape s = shape_of(g);
  auto wt = take_workspace<T>(s.taps * s.FC, "weight taps");
  taps_major(g, w, wt.data());
  const bool parallel = mix_in_parallel(g);
  const int threads = parallel ? thread_count() : 1;
  const thread_slices<T> scratch(threads, taps_scratch_scalars<T>(g), "mixing scratch");
  parallel_for(g.kept, threads, parallel, [&](int64_t k) {
    const taps_scratch<T> t = split(g, scratch.mine());
    weight_at(tw, k, wt.data(), s.FC, t.wr, t.wi);
    for (int64_t gr = 0; gr < s.groups; ++gr) product(g, k, gr, in, t.wr, t.wi, out, t.mix);
  });
}
}  // namespace

template <class T>
void mix_forward_taps(const geometry& g, const tap_twiddles<T>& tw, const T* x_spec,
                      const image_view<const T>& w, T* y_spec) {
  mix_with_taps(g, tw, x_spec, w, y_spec, mix_forward_at<T>);
}

template <class T>
void mix_input_grad_taps(const geometry& g, const tap_twiddles<T>& tw, const T* dy_spec,
                         const image_view<const T>& w, T* dx_spec) {
  mix_with_taps(g, tw, dy_spec, w, dx_spec, mix_input_grad_at<T>);
}

template <class T>
void weight_grad_taps(const geometry& g, const tap_twiddles<T>& tw, const T* dy_spec,
                      const T* x_spec, T scale, const image_view<T>& dw, bool deterministic) {
  const shape s = shape_of(g);
  const int64_t per_piece = s.taps * s.FC;
  // The kept frequencies are cut into contiguous pieces, each summed in order into its own
  // accumulator, and the accumulators summed in piece order: the result does not depend on
  // which thread ran which piece. With `deterministic`, the number of pieces does not depend
  // on the thread count either, so the result is bitwise the same for any thread count.
  const bool parallel = mix_in_parallel(g);
  const int threads = parallel ? thread_count() : 1;
  const int64_t pieces =
      std::min<int64_t>(g.kept, deterministic ? deterministic_pieces
                                              : std::max<int64_t>(threads, deterministic_pieces));
  auto acc = take_workspace<T>(checked_mul(pieces, per_piece, "weight gradient accumulators"),
                               "weight gradient accumulators");
  std::fill(acc.data(), acc.data() + pieces * per_piece, T(0));
  const thread_slices<T> scratch(threads, taps_scratch_scalars<T>(g), "mixing scratch");
  parallel_for(pieces, threads, parallel, [&](int64_t piece) {
    const taps_scratch<T> t = split(g, scratch.mine());
    T* a = acc.data() + piece * per_piece;
    const int64_t k0 = g.kept * piece / pieces, k1 = g.kept * (piece + 1) / pieces;
    for (int64_t k = k0; k < k1; ++k) {
      for (int64_t gr = 0; gr < s.groups; ++gr)
        mix_weight_grad_at(g, k, gr, dy_spec, x_spec, t.wr, t.wi, t.mix);
      // dw_t += fold_k Re(dW_k conj(e_{k,t})) = fold_k (e_re dW_re + e_im dW_im).
      const T fold = tw.fold[static_cast<size_t>(k)];
      for (int64_t tap = 0; tap < s.taps; ++tap) {
        const T er = fold * tw.re[k * s.taps + tap], ei = fold * tw.im[k * s.taps + tap];
        T* at = a + tap * s.FC;
#pragma omp simd
        for (int64_t j = 0; j < s.FC; ++j) at[j] += er * t.wr[j] + ei * t.wi[j];
      }
    }
  });
  // Sum the pieces' accumulators in order, scale, and write the weight-shaped view.
  T* total = acc.data();
  for (int64_t piece = 1; piece < pieces; ++piece) {
    const T* a = acc.data() + piece * per_piece;
#pragma omp simd
    for (int64_t j = 0; j < per_piece; ++j) total[j] += a[j];
  }
  const int64_t KW = g.params.kernel[1];
  for (int64_t fc = 0; fc < s.FC; ++fc) {
    const int64_t f = fc / s.Cg, c = fc % s.Cg;
    T* base = dw.data + f * dw.stride_b + c * dw.stride_ch;
    for (int64_t t = 0; t < s.taps; ++t)
      base[(t / KW) * dw.stride_h + (t % KW) * dw.stride_w] = scale * total[t * s.FC + fc];
  }
}

#define BLFFT_INSTANTIATE(T)                                                                       \
  template struct tap_twiddles<T>;                                                                 \
  template void mix_forward_taps<T>(const geometry&, const tap_twiddles<T>&, const T*,             \
                                    const image_view<const T>&, T*);                               \
  template void mix_input_grad_taps<T>(const geometry&, const tap_twiddles<T>&, const T*,          \
                                       const image_view<const T>&, T*);                            \
  template void weight_grad_taps<T>(const geometry&, const tap_twiddles<T>&, const T*, const T*,   \
                                    T, const image_view<T>&, bool);
BLFFT_INSTANTIATE(float)
BLFFT_INSTANTIATE(double)
#undef BLFFT_INSTANTIATE

}  // namespace blfft::detail
