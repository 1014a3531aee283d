// The matmul engine's split stages (pruned_transform.hpp): the width and height axes as separate
// passes, so that the fused pipeline (fused_pass.hpp) can run the height stage, the mixing and
// the inverse height stage per chunk of kept columns while that chunk is in cache.

#include <algorithm>
#include <cstring>

#include "blas.hpp"
#include "pair_combination.hpp"
#include "pruned_transform.hpp"
#include "sample_io.hpp"

namespace blfft::detail {

template <class T>
void pruned_transform<T>::make_split_matrices() {
  const int64_t nc = nc_, Rh = h_.count, Rw = w_.count;
  const auto np = static_cast<int64_t>(pairs_.size());
  row_split_.resize(row_dft_.size());
  if (dir_ == direction::analyse) {
    // (Rw x 2nc): column 2q + part of row_split_ is column part * nc + q of row_dft_.
    for (int64_t i = 0; i < Rw; ++i)
      for (int64_t q = 0; q < nc; ++q)
        for (int64_t part = 0; part < 2; ++part)
          row_split_[i * 2 * nc + 2 * q + part] = row_dft_[i * 2 * nc + part * nc + q];
    return;
  }
  // (2nc x Rw): row 2q + part is row part * nc + q of row_dft_.
  for (int64_t q = 0; q < nc; ++q)
    for (int64_t part = 0; part < 2; ++part)
      std::copy_n(row_dft_.data() + (part * nc + q) * Rw, Rw,
                  row_split_.data() + (2 * q + part) * Rw);
  // [Re E | Im E] (Rh x 2np) from col_dft_'s Re E (Rh x np) then Im E (Rh x np).
  col_split_.resize(static_cast<size_t>(Rh * 2 * np));
  for (int64_t r = 0; r < Rh; ++r)
    for (int64_t p = 0; p < np; ++p) {
      col_split_[r * 2 * np + p] = col_dft_[r * np + p];
      col_split_[r * 2 * np + np + p] = col_dft_[(Rh + r) * np + p];
    }
}

template <class T>
void pruned_transform<T>::analyse_rows_chunk(const image_view<const T>& src, T* rows, int64_t j0,
                                             int64_t mc, T* samples) const {
  const int64_t J = J_, nc = nc_, Rh = h_.count, Rw = w_.count;
  for_each_sample_row(src, CH_, j0, mc, Rh, [&](int64_t m, int64_t r, int64_t, const T* s) {
    copy_samples(s, src.stride_w, Rw, samples + (r * mc + m) * Rw, int64_t(1));
  });
  // Per sample row r: rows[r][2q + part][j0 ..] (2nc x mc, ld J) = row_split^T * S_r^T.
  for (int64_t r = 0; r < Rh; ++r)
    gemm<T>(true, true, 2 * nc, mc, Rw, T(1), row_split_.data(), 2 * nc, samples + r * mc * Rw, Rw,
            T(0), rows + r * 2 * nc * J + j0, J);
}

template <class T>
void pruned_transform<T>::analyse_columns(const T* rows, int64_t q0, int64_t qc, T* spectrum,
                                          T* cols) const {
  const int64_t J = J_, per_k = 2 * J, nc = nc_, Rh = h_.count, W2 = 2 * qc * J;
  const auto np = static_cast<int64_t>(pairs_.size());
  // cols = [Re D; Im D] (2np x Rh) * Z (Rh x W2): P then Q, each row [re | im] per column.
  gemm<T>(false, false, 2 * np, W2, Rh, T(1), col_dft_.data(), Rh, rows + q0 * 2 * J, 2 * nc * J,
          T(0), cols, W2);
  for (int64_t p = 0; p < np; ++p) {
    const bool paired = pairs_[p].neg != pairs_[p].pos;
    for (int64_t i = 0; i < qc; ++i) {
      const T* pr = cols + p * W2 + i * 2 * J;
      const T* pi = pr + J;
      const T* qr = cols + (np + p) * W2 + i * 2 * J;
      const T* qi = qr + J;
      T* re = spectrum + (pairs_[p].pos * nc + q0 + i) * per_k;
      T* re_m = paired ? spectrum + (pairs_[p].neg * nc + q0 + i) * per_k : nullptr;
      combine_pair(pr, pi, qr, qi, re, re + J, re_m, paired ? re_m + J : nullptr, J);
    }
  }
}

template <class T>
void pruned_transform<T>::synthesise_columns(const T* chunk, int64_t q0, int64_t qc, T* rows,
                                             T* stacked) const {
  const int64_t J = J_, per_k = 2 * J, nc = nc_, Rh = h_.count, W2 = 2 * qc * J;
  const auto np = static_cast<int64_t>(pairs_.size());
  // With S = Y_k + Y_-k and D = Y_k - Y_-k per pair, V = Re E S + i Im E D, so
  // V = [Re E | Im E] [S; D'] with D' = (-Im D) + i Re D: one product, no combination pass.
  for (int64_t p = 0; p < np; ++p) {
    const bool paired = pairs_[p].neg != pairs_[p].pos;
    for (int64_t i = 0; i < qc; ++i) {
      const T* re = chunk + (pairs_[p].pos * qc + i) * per_k;
      const T* im = re + J;
      const T* re_m = chunk + (pairs_[p].neg * qc + i) * per_k;
      const T* im_m = re_m + J;
      T* s_re = stacked + p * W2 + i * 2 * J;
      T* s_im = s_re + J;
      T* d_re = stacked + (np + p) * W2 + i * 2 * J;  // holds -Im D
      T* d_im = d_re + J;                             // holds Re D
      if (paired) {
#pragma omp simd
        for (int64_t j = 0; j < J; ++j) {
          s_re[j] = re[j] + re_m[j];
          s_im[j] = im[j] + im_m[j];
          d_re[j] = im_m[j] - im[j];
          d_im[j] = re[j] - re_m[j];
        }
      } else {
        std::memcpy(s_re, re, sizeof(T) * static_cast<size_t>(J));
        std::memcpy(s_im, im, sizeof(T) * static_cast<size_t>(J));
        std::fill(d_re, d_re + 2 * J, T(0));
      }
    }
  }
  gemm<T>(false, false, Rh, W2, 2 * np, T(1), col_split_.data(), 2 * np, stacked, W2, T(0),
          rows + q0 * 2 * J, 2 * nc * J);
}

template <class T>
void pruned_transform<T>::synthesise_rows_chunk(const T* rows, const image_view<T>& dst, T scale,
                                                const T* bias, int64_t j0, int64_t mc,
                                                T* samples) const {
  const int64_t J = J_, nc = nc_, Rh = h_.count, Rw = w_.count;
  // Per grid row r: samples_r (mc x Rw) = V_r^T (mc x 2nc, ld J) * row_split (2nc x Rw).
  for (int64_t r = 0; r < Rh; ++r)
    gemm<T>(true, false, mc, Rw, 2 * nc, T(1), rows + r * 2 * nc * J + j0, J, row_split_.data(), Rw,
            T(0), samples + r * mc * Rw, Rw);
  for_each_sample_row(dst, CH_, j0, mc, Rh, [&](int64_t m, int64_t r, int64_t ch, T* d) {
    store_samples(samples + (r * mc + m) * Rw, int64_t(1), Rw, scale, bias ? bias[ch] : T(0), d,
                  dst.stride_w);
  });
}

#define BLFFT_PRUNED_SPLIT(T)                                                                      \
  template void pruned_transform<T>::make_split_matrices();                                        \
  template void pruned_transform<T>::analyse_rows_chunk(const image_view<const T>&, T*, int64_t,   \
                                                        int64_t, T*) const;                        \
  template void pruned_transform<T>::analyse_columns(const T*, int64_t, int64_t, T*, T*) const;    \
  template void pruned_transform<T>::synthesise_columns(const T*, int64_t, int64_t, T*, T*) const; \
  template void pruned_transform<T>::synthesise_rows_chunk(const T*, const image_view<T>&, T,      \
                                                           const T*, int64_t, int64_t, T*) const;
BLFFT_PRUNED_SPLIT(float)
BLFFT_PRUNED_SPLIT(double)
#undef BLFFT_PRUNED_SPLIT

}  // namespace blfft::detail
