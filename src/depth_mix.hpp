#pragma once
// Channel mixing of 3D layers without a whole weight spectrum ("depth taps"). A 3D weight
// spectrum holds kept_depths x kept2 matrices of F x C/g: at small batches it is far larger than
// everything else a pass touches (a 64-channel 3x3x3 layer on 16x56x56 maps: 1.1 GB at rate 0
// against a 34 MB input spectrum), and writing then reading it dominated the pass. Here the
// weight is kept as the 2D spectra of its KD depth slices (KD x kept2 matrices), and the matrix
// of each kept frequency (kd, k2) is formed where it is used, by the weight analysis's own depth
// DFT: W(kd, k2) = sum_a M(kd, a) W_a(k2). The weight gradient is folded back the same way into
// its depth slices, dW_a(k2) = sum_kd M'(a, kd) dW(kd, k2) (the weight synthesis's depth DFT),
// and the slices synthesised. Same operator as the whole-spectrum path, to rounding.
// Work is split by kept 2D frequency k2 (every kd of one k2 on one thread), so each slice entry
// has one writer and the order of every sum is fixed: reproducible for any thread count.

#include <algorithm>
#include <cstdint>

#include "depth_transform.hpp"
#include "mix.hpp"
#include "parallel.hpp"

namespace blfft::detail {

namespace depth_mix_detail {
/// Per-thread scratch: the mixing's own, then a planar F x C/g matrix (re, im).
inline std::size_t matrix_offset(const geometry& g) {
  return (mix_scratch_scalars(g) + 15) / 16 * 16;
}
inline int64_t kept2(const geometry& g) {
  return static_cast<int64_t>(g.kept_rows.size() * g.kept_cols.size());
}
}  // namespace depth_mix_detail

/// out = the forward (`forward`) or input-gradient mixing of `in` with the weight whose depth
/// slice spectra are `w_slices` (w_in.analyse_slices), at every kept frequency.
template <class T>
void depth_taps_mix(const geometry& g, const volume_transform<T>& w_in, const T* w_slices,
                    const T* in, T* out, bool forward) {
  const int64_t nd = static_cast<int64_t>(g.kept_depth.size()), kept2 = depth_mix_detail::kept2(g);
  const int64_t KD = g.params.depth.kernel, FC = g.params.out_channels * g.in_per_group;
  const int64_t slice = w_in.slice_size(), groups = g.params.groups;
  const T* m = w_in.depth_matrix();  // (2 nd x KD)
  const bool parallel = mix_in_parallel(g) && kept2 > 1;
  const int threads = parallel ? thread_count() : 1;
  const std::size_t off = depth_mix_detail::matrix_offset(g);
  const thread_slices<T> scratch(threads, off + static_cast<std::size_t>(2 * FC),
                                 "depth taps scratch");
  parallel_for(kept2, threads, parallel, [&](int64_t k2) {
    T* s = scratch.mine();
    T* w_re = s + off;
    T* w_im = w_re + FC;
    for (int64_t q = 0; q < nd; ++q) {
      std::fill(w_re, w_re + 2 * FC, T(0));
      for (int64_t a = 0; a < KD; ++a) {
        const T cr = m[q * KD + a], ci = m[(nd + q) * KD + a];
        const T* sr = w_slices + a * slice + k2 * 2 * FC;
        const T* si = sr + FC;
#pragma omp simd
        for (int64_t e = 0; e < FC; ++e) {
          w_re[e] += cr * sr[e] - ci * si[e];
          w_im[e] += cr * si[e] + ci * sr[e];
        }
      }
      const int64_t k = q * kept2 + k2;
      for (int64_t gr = 0; gr < groups; ++gr) {
        if (forward)
          mix_forward_at(g, k, gr, in, w_re, w_im, out, s);
        else
          mix_input_grad_at(g, k, gr, in, w_re, w_im, out, s);
      }
    }
  });
}

/// dw_slices (dw_out.slice_size() scalars per kernel depth slice, for dw_out.synthesise_slices)
/// = the weight gradient of (dy_spec, x_spec) folded into the weight's depth slices.
template <class T>
void depth_taps_weight_grad(const geometry& g, const volume_transform<T>& dw_out, const T* dy_spec,
                            const T* x_spec, T* dw_slices) {
  const int64_t nd = static_cast<int64_t>(g.kept_depth.size()), kept2 = depth_mix_detail::kept2(g);
  const int64_t KD = g.params.depth.kernel, FC = g.params.out_channels * g.in_per_group;
  const int64_t slice = dw_out.slice_size(), groups = g.params.groups;
  const T* m = dw_out.depth_matrix();  // (2 KD x nd)
  const bool parallel = mix_in_parallel(g) && kept2 > 1;
  const int threads = parallel ? thread_count() : 1;
  const std::size_t off = depth_mix_detail::matrix_offset(g);
  const thread_slices<T> scratch(threads, off + static_cast<std::size_t>(2 * FC),
                                 "depth taps scratch");
  parallel_for(kept2, threads, parallel, [&](int64_t k2) {
    T* s = scratch.mine();
    T* d_re = s + off;
    T* d_im = d_re + FC;
    for (int64_t a = 0; a < KD; ++a) {
      T* o = dw_slices + a * slice + k2 * 2 * FC;
      std::fill(o, o + 2 * FC, T(0));
    }
    for (int64_t q = 0; q < nd; ++q) {
      const int64_t k = q * kept2 + k2;
      for (int64_t gr = 0; gr < groups; ++gr)
        mix_weight_grad_at(g, k, gr, dy_spec, x_spec, d_re, d_im, s);
      for (int64_t a = 0; a < KD; ++a) {
        const T cr = m[a * nd + q], ci = m[(KD + a) * nd + q];
        T* o_re = dw_slices + a * slice + k2 * 2 * FC;
        T* o_im = o_re + FC;
#pragma omp simd
        for (int64_t e = 0; e < FC; ++e) {
          o_re[e] += cr * d_re[e] - ci * d_im[e];
          o_im[e] += cr * d_im[e] + ci * d_re[e];
        }
      }
    }
  });
}

}  // namespace blfft::detail
