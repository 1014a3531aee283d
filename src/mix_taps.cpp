#include "mix_taps.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "mix.hpp"
#include "parallel.hpp"
#include "twiddle.hpp"
#include "workspace.hpp"

namespace blfft::detail {
namespace {

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

/// Runs body(k) for every kept frequency, in parallel unless the work is tiny.
template <class F>
void for_each_frequency(const geometry& g, F&& body) {
  const int64_t work = g.kept * g.params.batch * g.out_per_group * g.params.in_channels;
#pragma omp parallel for schedule(dynamic) num_threads(thread_count()) if (g.kept > 1 && work >= 32768)
  for (int64_t k = 0; k < g.kept; ++k) body(k);
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

/// Runs body(k, wr, wi) for every kept frequency, (wr, wi) = W_k made from the taps of w.
template <class T, class F>
void for_each_weight_matrix(const geometry& g, const tap_twiddles<T>& tw,
                            const image_view<const T>& w, F&& body) {
  const shape s = shape_of(g);
  auto wt = take_workspace<T>(s.taps * s.FC);
  taps_major(g, w, wt.data());
  for_each_frequency(g, [&](int64_t k) {
    T* wr = thread_scratch<T, 2>(static_cast<size_t>(2 * s.FC));
    T* wi = wr + s.FC;
    weight_at(tw, k, wt.data(), s.FC, wr, wi);
    body(k, wr, wi);
  });
}

template <class T>
void mix_forward_taps(const geometry& g, const tap_twiddles<T>& tw, const T* x_spec,
                      const image_view<const T>& w, T* y_spec) {
  for_each_weight_matrix(g, tw, w, [&](int64_t k, const T* wr, const T* wi) {
    for (int64_t gr = 0; gr < g.params.groups; ++gr)
      mix_forward_at(g, k, gr, x_spec, wr, wi, y_spec);
  });
}

template <class T>
void mix_input_grad_taps(const geometry& g, const tap_twiddles<T>& tw, const T* g_spec,
                         const image_view<const T>& w, T* dx_spec) {
  for_each_weight_matrix(g, tw, w, [&](int64_t k, const T* wr, const T* wi) {
    for (int64_t gr = 0; gr < g.params.groups; ++gr)
      mix_input_grad_at(g, k, gr, g_spec, wr, wi, dx_spec);
  });
}

template <class T>
void weight_grad_taps(const geometry& g, const tap_twiddles<T>& tw, const T* g_spec,
                      const T* x_spec, T scale, const image_view<T>& dw) {
  const shape s = shape_of(g);
  const int64_t threads = thread_count(), per_thread = s.taps * s.FC;
  auto acc = take_workspace<T>(threads * per_thread);
  std::fill(acc.data(), acc.data() + threads * per_thread, T(0));
  for_each_frequency(g, [&](int64_t k) {
    T* dwr = thread_scratch<T, 2>(static_cast<size_t>(2 * s.FC));
    T* dwi = dwr + s.FC;
    for (int64_t gr = 0; gr < s.groups; ++gr)
      mix_weight_grad_at(g, k, gr, g_spec, x_spec, dwr, dwi);
    // dw_t += fold_k Re(dW_k conj(e_{k,t})) = fold_k (e_re dW_re + e_im dW_im).
    T* a = acc.data() + omp_get_thread_num() * per_thread;
    const T fold = tw.fold[static_cast<size_t>(k)];
    for (int64_t t = 0; t < s.taps; ++t) {
      const T er = fold * tw.re[k * s.taps + t], ei = fold * tw.im[k * s.taps + t];
      T* at = a + t * s.FC;
#pragma omp simd
      for (int64_t j = 0; j < s.FC; ++j) at[j] += er * dwr[j] + ei * dwi[j];
    }
  });
  // Sum the threads' accumulators, scale, and write the weight-shaped view.
  T* total = acc.data();
  for (int64_t th = 1; th < threads; ++th) {
    const T* a = acc.data() + th * per_thread;
#pragma omp simd
    for (int64_t j = 0; j < per_thread; ++j) total[j] += a[j];
  }
  const int64_t KW = g.params.kernel[1];
  for (int64_t fc = 0; fc < s.FC; ++fc) {
    const int64_t f = fc / s.Cg, c = fc % s.Cg;
    T* base = dw.data + f * dw.stride_b + c * dw.stride_ch;
    for (int64_t t = 0; t < s.taps; ++t)
      base[(t / KW) * dw.stride_h + (t % KW) * dw.stride_w] = scale * total[t * s.FC + fc];
  }
}

#define BLFFT_INSTANTIATE(T)                                                                  \
  template struct tap_twiddles<T>;                                                            \
  template void mix_forward_taps<T>(const geometry&, const tap_twiddles<T>&, const T*,        \
                                    const image_view<const T>&, T*);                          \
  template void mix_input_grad_taps<T>(const geometry&, const tap_twiddles<T>&, const T*,     \
                                       const image_view<const T>&, T*);                       \
  template void weight_grad_taps<T>(const geometry&, const tap_twiddles<T>&, const T*,        \
                                    const T*, T, const image_view<T>&);
BLFFT_INSTANTIATE(float)
BLFFT_INSTANTIATE(double)
#undef BLFFT_INSTANTIATE

}  // namespace blfft::detail
