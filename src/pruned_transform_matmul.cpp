// The matmul engine of the pruned transforms (pruned_transform.hpp): real GEMMs with small DFT
// matrices that map exactly the data-holding samples to exactly the kept bins, and back.

#include <algorithm>
#include <cstring>

#include "blas.hpp"
#include "dft_matrix.hpp"  // common/: the entries, shared with the CUDA fused kernels
#include "pair_combination.hpp"
#include "pruned_transform.hpp"
#include "sample_io.hpp"
#include "workspace.hpp"

namespace blfft::detail {

template <class T>
void pruned_transform<T>::make_dft_matrices() {
  const int64_t nr = nr_, nc = nc_;
  const int64_t Rh = h_.count, Rw = w_.count;
  pairs_.clear();
  for (int64_t a = 0; a < nr; ++a) {
    const int64_t k = kept_rows_[a], mirror = (Lh_ - k) % Lh_;
    if (k > mirror) continue;  // the pair was added at its mirror
    const auto at = std::lower_bound(kept_rows_.begin(), kept_rows_.end(), mirror);
    pairs_.push_back({a, static_cast<int64_t>(at - kept_rows_.begin())});
  }
  const auto np = static_cast<int64_t>(pairs_.size());
  if (dir_ == direction::analyse) {
    // Width axis: samples (Rw) -> [re | im] of the kept columns (2 nc), e^{-i theta}.
    row_dft_.assign(static_cast<size_t>(Rw * 2 * nc), T(0));
    for (int64_t i = 0; i < Rw; ++i)
      for (int64_t q = 0; q < nc; ++q) {
        const auto e = dft_twiddle(kept_cols_[q], w_.offset + w_.step * i, Lw_, -1.0);
        row_dft_[i * 2 * nc + q] = static_cast<T>(e.real());
        row_dft_[i * 2 * nc + nc + q] = static_cast<T>(e.imag());
      }
    // Height axis, one row per pair: [Re D; Im D], (2 np x Rh), D[p][r] = e^{-i theta}.
    if (Lh_ > 1) {
      col_dft_.assign(static_cast<size_t>(2 * np * Rh), T(0));
      for (int64_t p = 0; p < np; ++p)
        for (int64_t r = 0; r < Rh; ++r) {
          const auto e = dft_twiddle(kept_rows_[pairs_[p].pos], h_.offset + h_.step * r, Lh_, -1.0);
          col_dft_[p * Rh + r] = static_cast<T>(e.real());
          col_dft_[(np + p) * Rh + r] = static_cast<T>(e.imag());
        }
    }
  } else {
    // Height axis, one column per pair: Re E then Im E, each (Rh x np), E[r][p] = e^{+i theta}.
    if (Lh_ > 1) {
      col_dft_.assign(static_cast<size_t>(2 * Rh * np), T(0));
      for (int64_t r = 0; r < Rh; ++r)
        for (int64_t p = 0; p < np; ++p) {
          const auto e = dft_twiddle(kept_rows_[pairs_[p].pos], h_.offset + h_.step * r, Lh_, 1.0);
          col_dft_[r * np + p] = static_cast<T>(e.real());
          col_dft_[(Rh + r) * np + p] = static_cast<T>(e.imag());
        }
    }
    // Width axis, the real inverse of a half spectrum (what c2r computes): columns other than DC
    // and Nyquist stand for a conjugate pair and count twice; the imaginary parts of DC and
    // Nyquist drop out (their sines vanish). Rows: [re | im] of the kept columns (2 nc x Rw).
    row_dft_.assign(static_cast<size_t>(2 * nc * Rw), T(0));
    for (int64_t q = 0; q < nc; ++q) {
      const int64_t k = kept_cols_[q];
      const double weight = half_spectrum_weight(k, Lw_);
      for (int64_t i = 0; i < Rw; ++i) {
        const auto e = dft_twiddle(k, w_.offset + w_.step * i, Lw_, 1.0);
        row_dft_[q * Rw + i] = static_cast<T>(weight * e.real());
        row_dft_[(nc + q) * Rw + i] = static_cast<T>(-weight * e.imag());
      }
    }
  }
}

// ---- matmul engine -----------------------------------------------------------------------
// Samples are gathered as (r, m, i): sample row r of chunk image m. The transformed work arrays
// are ordered (line, part, m), part = [re | im] of the kept columns: the row transform writes,
// for each sample row r, a (2nc x mc) block (one GEMM per row), and those blocks side by side
// form the (Rh x 2nc * mc) right operand of the column transform: one more GEMM. With the chunk
// image m fastest, each kept bin of the chunk is a contiguous run of mc values, as in the
// frequency-major spectrum, so the passes between spectrum and work arrays are contiguous,
// vectorisable loops. Complex products are real GEMMs on [re | im] blocks; combining the parts
// is O(output).

template <class T>
void pruned_transform<T>::analyse_matmul(const image_view<const T>& src, T* spectrum, int64_t j0,
                                         int64_t mc, T* samples) const {
  const int64_t J = J_, per_k = 2 * J, nc = nc_;
  const int64_t Rh = h_.count, Rw = w_.count, W2 = mc * 2 * nc;
  T* rows = samples + scratch_.second;

  if (Lh_ == 1) {
    // One grid row: the row transform is the whole transform. With the samples transposed
    // (Rw x mc), the products land straight in the frequency-major spectrum, one run of mc
    // images per kept bin: re = Re(D)^T S^T, im = Im(D)^T S^T (no scatter pass afterwards).
    for_each_sample_row(src, CH_, j0, mc, 1, [&](int64_t m, int64_t, int64_t, const T* s) {
      copy_samples(s, src.stride_w, Rw, samples + m, mc);
    });
    gemm<T>(true, false, nc, mc, Rw, T(1), row_dft_.data(), 2 * nc, samples, mc, T(0),
            spectrum + j0, per_k);
    // BLAS may read a few elements past the end of C (BLIS 0.9 haswell sgemm: 2 floats for
    // m = 2). The imaginary parts' last column ends J - j0 - mc elements before the end of the
    // (maybe caller's) spectrum: write there directly only with room for that read to spare.
    if (static_cast<std::size_t>(J - j0 - mc) * sizeof(T) >= blas_slack_bytes) {
      gemm<T>(true, false, nc, mc, Rw, T(1), row_dft_.data() + nc, 2 * nc, samples, mc, T(0),
              spectrum + J + j0, per_k);
      return;
    }
    gemm<T>(true, false, nc, mc, Rw, T(1), row_dft_.data() + nc, 2 * nc, samples, mc, T(0), rows,
            mc);
    for (int64_t q = 0; q < nc; ++q)
      std::memcpy(spectrum + J + j0 + q * per_k, rows + q * mc,
                  sizeof(T) * static_cast<size_t>(mc));
    return;
  }

  for_each_sample_row(src, CH_, j0, mc, Rh, [&](int64_t m, int64_t r, int64_t, const T* s) {
    copy_samples(s, src.stride_w, Rw, samples + (r * mc + m) * Rw, int64_t(1));
  });
  // Row transform, per sample row r: (2nc x mc) = row_dft^T (2nc x Rw) * S_r^T (Rw x mc).
  for (int64_t r = 0; r < Rh; ++r)
    gemm<T>(true, true, 2 * nc, mc, Rw, T(1), row_dft_.data(), 2 * nc, samples + r * mc * Rw, Rw,
            T(0), rows + r * W2, mc);
  const auto np = static_cast<int64_t>(pairs_.size());
  T* cols = samples + scratch_.third;
  // cols = [Re D; Im D] * rows: P = Re D Z, Q = Im D Z (np rows each); combine_pair makes rows k
  // and -k of the spectrum from them.
  gemm<T>(false, false, 2 * np, W2, Rh, T(1), col_dft_.data(), Rh, rows, W2, T(0), cols, W2);
  for (int64_t p = 0; p < np; ++p) {
    const bool paired = pairs_[p].neg != pairs_[p].pos;
    for (int64_t q = 0; q < nc; ++q) {
      const T* pr = cols + p * W2 + q * mc;
      const T* pi = pr + nc * mc;
      const T* qr = cols + (np + p) * W2 + q * mc;
      const T* qi = qr + nc * mc;
      T* re = spectrum + (pairs_[p].pos * nc + q) * per_k + j0;
      T* re_m = paired ? spectrum + (pairs_[p].neg * nc + q) * per_k + j0 : nullptr;
      combine_pair(pr, pi, qr, qi, re, re + J, re_m, paired ? re_m + J : nullptr, mc);
    }
  }
}

template <class T>
void pruned_transform<T>::synthesise_matmul(const T* spectrum, const image_view<T>& dst, T scale,
                                            const T* bias, int64_t j0, int64_t mc,
                                            T* samples) const {
  const int64_t J = J_, per_k = 2 * J, nc = nc_;
  const int64_t Rh = h_.count, Rw = w_.count;
  if (Lh_ == 1) {
    // One grid row: samples (mc x Rw) = Re^T E_re + Im^T E_im, reading the spectrum's runs of mc
    // images per kept bin in place (no gather pass). Never into dst directly: BLIS 0.9's sgemm
    // reads past the end of C for small m, so C must be our own scratch, not the caller's buffer.
    gemm<T>(true, false, mc, Rw, nc, T(1), spectrum + j0, per_k, row_dft_.data(), Rw, T(0), samples,
            Rw);
    gemm<T>(true, false, mc, Rw, nc, T(1), spectrum + J + j0, per_k, row_dft_.data() + nc * Rw, Rw,
            T(1), samples, Rw);
  } else {
    // Per pair (k, -k): S = Y_k + Y_-k and D = Y_k - Y_-k (a self-mirrored row: S = Y_k, D = 0),
    // so that E Y_k + conj(E) Y_-k = Re E S + i Im E D. kept holds S (np rows) then D (np rows),
    // each row [re | im] of every chunk image's kept columns.
    const auto np = static_cast<int64_t>(pairs_.size());
    const int64_t W2 = mc * 2 * nc;
    T* sum = samples + scratch_.second;
    T* diff = sum + np * W2;
    T* cols = samples + scratch_.third;
    for (int64_t p = 0; p < np; ++p) {
      const bool paired = pairs_[p].neg != pairs_[p].pos;
      for (int64_t q = 0; q < nc; ++q) {
        const T* re = spectrum + (pairs_[p].pos * nc + q) * per_k + j0;
        const T* im = re + J;
        const T* re_m = spectrum + (pairs_[p].neg * nc + q) * per_k + j0;
        const T* im_m = re_m + J;
        T* s_re = sum + p * W2 + q * mc;
        T* s_im = s_re + nc * mc;
        T* d_re = diff + p * W2 + q * mc;
        T* d_im = d_re + nc * mc;
        if (paired) {
#pragma omp simd
          for (int64_t m = 0; m < mc; ++m) {
            s_re[m] = re[m] + re_m[m];
            s_im[m] = im[m] + im_m[m];
            d_re[m] = re[m] - re_m[m];
            d_im[m] = im[m] - im_m[m];
          }
        } else {
          std::memcpy(s_re, re, sizeof(T) * static_cast<size_t>(mc));
          std::memcpy(s_im, im, sizeof(T) * static_cast<size_t>(mc));
          std::fill(d_re, d_re + mc, T(0));
          std::fill(d_im, d_im + mc, T(0));
        }
      }
    }
    // cols = [Re E S; Im E D]; V = (P_re - Q_im) + i (P_im + Q_re), written over P.
    gemm<T>(false, false, Rh, W2, np, T(1), col_dft_.data(), np, sum, W2, T(0), cols, W2);
    gemm<T>(false, false, Rh, W2, np, T(1), col_dft_.data() + Rh * np, np, diff, W2, T(0),
            cols + Rh * W2, W2);
    for (int64_t r = 0; r < Rh; ++r)
      for (int64_t q = 0; q < nc; ++q) {
        T* pr = cols + r * W2 + q * mc;
        T* pi = pr + nc * mc;
        const T* qr = cols + (Rh + r) * W2 + q * mc;
        const T* qi = qr + nc * mc;
#pragma omp simd
        for (int64_t m = 0; m < mc; ++m) {
          const T a = pr[m], b = pi[m];
          pr[m] = a - qi[m];
          pi[m] = b + qr[m];
        }
      }
    // Width-axis inverse per grid row r: samples_r (mc x Rw) = V_r^T (mc x 2nc) * row_dft.
    for (int64_t r = 0; r < Rh; ++r)
      gemm<T>(true, false, mc, Rw, 2 * nc, T(1), cols + r * W2, mc, row_dft_.data(), Rw, T(0),
              samples + r * mc * Rw, Rw);
  }
  // samples holds (r, m, i); one grid row (Lh == 1) is the case Rh = 1.
  for_each_sample_row(dst, CH_, j0, mc, Rh, [&](int64_t m, int64_t r, int64_t ch, T* d) {
    store_samples(samples + (r * mc + m) * Rw, int64_t(1), Rw, scale, bias ? bias[ch] : T(0), d,
                  dst.stride_w);
  });
}

// The members this file defines, for both precisions (the rest: pruned_transform.cpp).
#define BLFFT_PRUNED_MATMUL(T)                                                                     \
  template void pruned_transform<T>::make_dft_matrices();                                          \
  template void pruned_transform<T>::analyse_matmul(const image_view<const T>&, T*, int64_t,       \
                                                    int64_t, T*) const;                            \
  template void pruned_transform<T>::synthesise_matmul(const T*, const image_view<T>&, T,          \
                                                       const T*, int64_t, int64_t, T*) const;
BLFFT_PRUNED_MATMUL(float)
BLFFT_PRUNED_MATMUL(double)
#undef BLFFT_PRUNED_MATMUL

}  // namespace blfft::detail
