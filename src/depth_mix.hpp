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

/// Kept depths, kept 2D frequencies, kernel depth, F x C/g and groups of the layer.
struct counts {
  int64_t nd, kept2, KD, FC, groups;
  explicit counts(const geometry& g)
      : nd(static_cast<int64_t>(g.kept_depth.size())),
        kept2(static_cast<int64_t>(g.kept_rows.size() * g.kept_cols.size())),
        KD(g.params.depth.kernel), FC(g.params.out_channels * g.in_per_group),
        groups(g.params.groups) {}
};

/// out += (cr + i ci) in, for n planar complex elements.
template <class T>
void add_scaled(T cr, T ci, const T* in_re, const T* in_im, T* out_re, T* out_im, int64_t n) {
#pragma omp simd
  for (int64_t e = 0; e < n; ++e) {
    out_re[e] += cr * in_re[e] - ci * in_im[e];
    out_im[e] += cr * in_im[e] + ci * in_re[e];
  }
}

/// Runs body(k2, s, re, im) for every kept 2D frequency k2, on the mixing's threads: `s`, the
/// thread's scratch for the mixing; (re, im), its planar F x C/g matrix.
template <class T, class Body>
void for_each_kept2(const geometry& g, Body&& body) {
  const counts c(g);
  const bool parallel = mix_in_parallel(g) && c.kept2 > 1;
  const int threads = parallel ? thread_count() : 1;
  const std::size_t off = (mix_scratch_scalars(g) + 15) / 16 * 16;
  const thread_slices<T> scratch(threads, off + static_cast<std::size_t>(2 * c.FC),
                                 "depth taps scratch");
  parallel_for(c.kept2, threads, parallel, [&](int64_t k2) {
    T* s = scratch.mine();
    body(k2, s, s + off, s + off + c.FC);
  });
}

}  // namespace depth_mix_detail

/// out = the forward (`forward`) or input-gradient mixing of `in` with the weight whose depth
/// slice spectra are `w_slices` (w_in.analyse_slices), at every kept frequency.
template <class T>
void depth_taps_mix(const geometry& g, const volume_transform<T>& w_in, const T* w_slices,
                    const T* in, T* out, bool forward) {
  const depth_mix_detail::counts c(g);
  const int64_t slice = w_in.slice_size();
  const T* m = w_in.depth_matrix();  // (2 nd x KD)
  depth_mix_detail::for_each_kept2<T>(g, [&](int64_t k2, T* s, T* w_re, T* w_im) {
    for (int64_t q = 0; q < c.nd; ++q) {
      std::fill(w_re, w_re + 2 * c.FC, T(0));
      for (int64_t a = 0; a < c.KD; ++a) {
        const T* sr = w_slices + a * slice + k2 * 2 * c.FC;
        depth_mix_detail::add_scaled(m[q * c.KD + a], m[(c.nd + q) * c.KD + a], sr, sr + c.FC, w_re,
                                     w_im, c.FC);
      }
      const int64_t k = q * c.kept2 + k2;
      for (int64_t gr = 0; gr < c.groups; ++gr) {
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
  const depth_mix_detail::counts c(g);
  const int64_t slice = dw_out.slice_size();
  const T* m = dw_out.depth_matrix();  // (2 KD x nd)
  depth_mix_detail::for_each_kept2<T>(g, [&](int64_t k2, T* s, T* d_re, T* d_im) {
    for (int64_t a = 0; a < c.KD; ++a) {
      T* o = dw_slices + a * slice + k2 * 2 * c.FC;
      std::fill(o, o + 2 * c.FC, T(0));
    }
    for (int64_t q = 0; q < c.nd; ++q) {
      const int64_t k = q * c.kept2 + k2;
      for (int64_t gr = 0; gr < c.groups; ++gr)
        mix_weight_grad_at(g, k, gr, dy_spec, x_spec, d_re, d_im, s);
      for (int64_t a = 0; a < c.KD; ++a) {
        T* o = dw_slices + a * slice + k2 * 2 * c.FC;
        depth_mix_detail::add_scaled(m[a * c.nd + q], m[(c.KD + a) * c.nd + q], d_re, d_im, o,
                                     o + c.FC, c.FC);
      }
    }
  });
}

}  // namespace blfft::detail
