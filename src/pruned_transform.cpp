#include "pruned_transform.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>

#include "blas.hpp"
#include "check.hpp"
#include "engine_choice.hpp"
#include "parallel.hpp"
#include "twiddle.hpp"

namespace blfft::detail {
namespace {

// Images per work item: large enough that each kept frequency of the chunk is a long contiguous
// run in the spectrum (short runs made the gathers latency-bound), small enough for L2/L3.
constexpr std::size_t chunk_bytes = 1024 * 1024;
constexpr std::size_t serial_bytes = 64 * 1024;
// Chunks per transform under plan_options::deterministic, whatever the thread count.
constexpr int64_t deterministic_split = 16;

}  // namespace

template <class T>
pruned_transform<T>::pruned_transform(const geometry& g, direction dir, int64_t B, int64_t CH,
                                      placement h, placement w, const plan_options& options)
    : dir_(dir),
      Lh_(g.grid[0]),
      Lw_(g.grid[1]),
      kept_rows_(g.kept_rows),
      kept_cols_(g.kept_cols),
      B_(B),
      CH_(CH),
      h_(h),
      w_(w),
      row_len_(g.bins_w) {
  matmul_ = use_matmul({Lh_, Lw_, h.count, w.count, static_cast<int64_t>(kept_rows_.size()),
                        static_cast<int64_t>(kept_cols_.size())},
                       options);
  const int64_t images = B * CH;
  const std::size_t per_image = per_thread_scalars();  // with chunk_ = 1
  const int64_t by_cache =
      std::max<int64_t>(1, static_cast<int64_t>(chunk_bytes / (per_image * sizeof(T))));
  // Enough chunks for every thread; with plan_options::deterministic, a split that does not
  // depend on the thread count (a chunk's GEMM and FFT shapes decide its rounding).
  const int64_t threads = options.deterministic ? deterministic_split : thread_count();
  const int64_t by_threads = (images + threads - 1) / threads;
  chunk_ = std::max<int64_t>(1, std::min(by_cache, by_threads));
  // Small transforms run as one chunk on the calling thread: splitting them costs more than it
  // saves.
  if (static_cast<std::size_t>(images) * per_image * sizeof(T) <= serial_bytes) chunk_ = images;
  if (matmul_) {
    make_dft_matrices();
    return;
  }
  const auto plans = [&](int64_t m) {
    chunk_plans p;
    p.rows = make_fft<T>(dir == direction::analyse ? fft_kind::r2c_rows : fft_kind::c2r_rows, Lw_,
                         m * h.count, options.rigor);
    if (Lh_ > 1)
      p.cols = make_fft<T>(dir == direction::analyse ? fft_kind::c2c_cols_forward
                                                     : fft_kind::c2c_cols_backward,
                           Lh_, m * static_cast<int64_t>(kept_cols_.size()), options.rigor);
    return p;
  };
  full_ = plans(chunk_);
  const int64_t tail = images % chunk_;
  if (tail != 0) tail_ = plans(tail);
}

template <class T>
void pruned_transform<T>::make_dft_matrices() {
  const int64_t nr = static_cast<int64_t>(kept_rows_.size());
  const int64_t nc = static_cast<int64_t>(kept_cols_.size());
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
        const auto e = twiddle(kept_cols_[q], w_.offset + w_.step * i, Lw_, -1.0);
        row_dft_[i * 2 * nc + q] = static_cast<T>(e.real());
        row_dft_[i * 2 * nc + nc + q] = static_cast<T>(e.imag());
      }
    // Height axis, one row per pair: [Re D; Im D], (2 np x Rh), D[p][r] = e^{-i theta}.
    if (Lh_ > 1) {
      col_dft_.assign(static_cast<size_t>(2 * np * Rh), T(0));
      for (int64_t p = 0; p < np; ++p)
        for (int64_t r = 0; r < Rh; ++r) {
          const auto e = twiddle(kept_rows_[pairs_[p].pos], h_.offset + h_.step * r, Lh_, -1.0);
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
          const auto e = twiddle(kept_rows_[pairs_[p].pos], h_.offset + h_.step * r, Lh_, 1.0);
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
      const double weight = (k == 0 || 2 * k == Lw_) ? 1.0 : 2.0;
      for (int64_t i = 0; i < Rw; ++i) {
        const auto e = twiddle(k, w_.offset + w_.step * i, Lw_, 1.0);
        row_dft_[q * Rw + i] = static_cast<T>(weight * e.real());
        row_dft_[(nc + q) * Rw + i] = static_cast<T>(-weight * e.imag());
      }
    }
  }
}

template <class T>
std::size_t pruned_transform<T>::per_thread_scalars() const {
  const auto c = static_cast<std::size_t>(chunk_);
  const std::size_t nr = kept_rows_.size(), nc = kept_cols_.size();
  const auto Rh = static_cast<std::size_t>(h_.count), Rw = static_cast<std::size_t>(w_.count);
  if (matmul_) {
    // samples (Rh x c x Rw); row-transformed or kept bins (lines x c x 2nc);
    // column-transformed (2 lines x c x 2nc)
    const std::size_t lines = std::max({nr, Rh, 2 * pairs_.size()});
    return aligned_count<T>(Rh * c * Rw) + aligned_count<T>(lines * c * 2 * nc) +
           aligned_count<T>(2 * lines * c * 2 * nc);
  }
  return aligned_count<T>(c * Rh * Lw_) + aligned_count<T>(2 * c * Rh * row_len_) +
         aligned_count<T>(2 * c * Lh_ * nc);
}

template <class T>
void pruned_transform<T>::analyse(const image_view<const T>& src, T* spectrum) const {
  const int64_t J = B_ * CH_;
  const int64_t nchunks = (J + chunk_ - 1) / chunk_;
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), nchunks));
  const thread_slices<T> scratch(threads, per_thread_scalars(), "transform scratch");
  parallel_for(nchunks, threads, true, [&](int64_t chunk) {
    const int64_t j0 = chunk * chunk_, mc = std::min(chunk_, J - j0);
    if (matmul_)
      analyse_matmul(src, spectrum, j0, mc, scratch.mine());
    else
      analyse_fft(src, spectrum, j0, mc, scratch.mine());
  });
}

template <class T>
void pruned_transform<T>::synthesise(const T* spectrum, const image_view<T>& dst, T scale,
                                     const T* bias) const {
  const int64_t J = B_ * CH_;
  const int64_t nchunks = (J + chunk_ - 1) / chunk_;
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), nchunks));
  const thread_slices<T> scratch(threads, per_thread_scalars(), "transform scratch");
  parallel_for(nchunks, threads, true, [&](int64_t chunk) {
    const int64_t j0 = chunk * chunk_, mc = std::min(chunk_, J - j0);
    if (matmul_)
      synthesise_matmul(spectrum, dst, scale, bias, j0, mc, scratch.mine());
    else
      synthesise_fft(spectrum, dst, scale, bias, j0, mc, scratch.mine());
  });
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
  const int64_t J = B_ * CH_, per_k = 2 * J;
  const int64_t nr = static_cast<int64_t>(kept_rows_.size());
  const int64_t nc = static_cast<int64_t>(kept_cols_.size());
  const int64_t Rh = h_.count, Rw = w_.count, W2 = mc * 2 * nc;
  const auto np = static_cast<int64_t>(pairs_.size());
  const int64_t lines = std::max({nr, Rh, 2 * np});
  T* rows = samples + aligned_count<T>(static_cast<size_t>(Rh * chunk_ * Rw));
  T* cols = rows + aligned_count<T>(static_cast<size_t>(lines * chunk_ * 2 * nc));

  if (Lh_ == 1) {
    // One grid row: the row transform is the whole transform. With the samples transposed
    // (Rw x mc), the products land straight in the frequency-major spectrum, one run of mc
    // images per kept bin: re = Re(D)^T S^T, im = Im(D)^T S^T (no scatter pass afterwards).
    for (int64_t m = 0; m < mc; ++m) {
      const int64_t j = j0 + m, b = j / CH_, ch = j % CH_;
      const T* s = src.data + b * src.stride_b + ch * src.stride_ch;
      for (int64_t i = 0; i < Rw; ++i) samples[i * mc + m] = s[i * src.stride_w];
    }
    gemm<T>(true, false, nc, mc, Rw, T(1), row_dft_.data(), 2 * nc, samples, mc, T(0),
            spectrum + j0, per_k);
    if (j0 + mc < J) {
      gemm<T>(true, false, nc, mc, Rw, T(1), row_dft_.data() + nc, 2 * nc, samples, mc, T(0),
              spectrum + J + j0, per_k);
      return;
    }
    // The last chunk's imaginary parts end where the (maybe caller's) spectrum ends, and BLAS
    // may read a few elements past the end of C: they go through scratch.
    gemm<T>(true, false, nc, mc, Rw, T(1), row_dft_.data() + nc, 2 * nc, samples, mc, T(0), rows,
            mc);
    for (int64_t q = 0; q < nc; ++q)
      std::memcpy(spectrum + J + j0 + q * per_k, rows + q * mc, sizeof(T) * static_cast<size_t>(mc));
    return;
  }

  for (int64_t m = 0; m < mc; ++m) {
    const int64_t j = j0 + m, b = j / CH_, ch = j % CH_;
    const T* base = src.data + b * src.stride_b + ch * src.stride_ch;
    for (int64_t r = 0; r < Rh; ++r) {
      const T* s = base + r * src.stride_h;
      T* d = samples + (r * mc + m) * Rw;
      if (src.stride_w == 1) {
        std::memcpy(d, s, sizeof(T) * static_cast<size_t>(Rw));
      } else {
        for (int64_t i = 0; i < Rw; ++i) d[i] = s[i * src.stride_w];
      }
    }
  }
  // Row transform, per sample row r: (2nc x mc) = row_dft^T (2nc x Rw) * S_r^T (Rw x mc).
  for (int64_t r = 0; r < Rh; ++r)
    gemm<T>(true, true, 2 * nc, mc, Rw, T(1), row_dft_.data(), 2 * nc, samples + r * mc * Rw, Rw,
            T(0), rows + r * W2, mc);
  // cols = [Re D; Im D] * rows: P = Re D Z, Q = Im D Z (np rows each). Row k of the spectrum is
  // D Z = (P_re - Q_im) + i (P_im + Q_re); its mirror, with conj(D), is (P_re + Q_im) + i (P_im -
  // Q_re).
  gemm<T>(false, false, 2 * np, W2, Rh, T(1), col_dft_.data(), Rh, rows, W2, T(0), cols, W2);
  for (int64_t p = 0; p < np; ++p) {
    const bool paired = pairs_[p].neg != pairs_[p].pos;
    for (int64_t q = 0; q < nc; ++q) {
      const T* pr = cols + p * W2 + q * mc;
      const T* pi = pr + nc * mc;
      const T* qr = cols + (np + p) * W2 + q * mc;
      const T* qi = qr + nc * mc;
      T* re = spectrum + (pairs_[p].pos * nc + q) * per_k + j0;
      T* im = re + J;
      #pragma omp simd
      for (int64_t m = 0; m < mc; ++m) {
        re[m] = pr[m] - qi[m];
        im[m] = pi[m] + qr[m];
      }
      if (!paired) continue;
      T* re_m = spectrum + (pairs_[p].neg * nc + q) * per_k + j0;
      T* im_m = re_m + J;
      #pragma omp simd
      for (int64_t m = 0; m < mc; ++m) {
        re_m[m] = pr[m] + qi[m];
        im_m[m] = pi[m] - qr[m];
      }
    }
  }
}

template <class T>
void pruned_transform<T>::synthesise_matmul(const T* spectrum, const image_view<T>& dst, T scale,
                                            const T* bias, int64_t j0, int64_t mc,
                                            T* samples) const {
  const int64_t J = B_ * CH_, per_k = 2 * J;
  const int64_t nr = static_cast<int64_t>(kept_rows_.size());
  const int64_t nc = static_cast<int64_t>(kept_cols_.size());
  const int64_t Rh = h_.count, Rw = w_.count, W2 = mc * 2 * nc;
  const auto np = static_cast<int64_t>(pairs_.size());
  const int64_t lines = std::max({nr, Rh, 2 * np});
  T* kept = samples + aligned_count<T>(static_cast<size_t>(Rh * chunk_ * Rw));
  T* cols = kept + aligned_count<T>(static_cast<size_t>(lines * chunk_ * 2 * nc));

  if (Lh_ == 1) {
    // One grid row: samples (mc x Rw) = Re^T E_re + Im^T E_im, reading the spectrum's runs of mc
    // images per kept bin in place (no gather pass). Never into dst directly: BLIS 0.9's sgemm
    // reads past the end of C for small m, so C must be our own scratch, not the caller's buffer.
    gemm<T>(true, false, mc, Rw, nc, T(1), spectrum + j0, per_k, row_dft_.data(), Rw, T(0),
            samples, Rw);
    gemm<T>(true, false, mc, Rw, nc, T(1), spectrum + J + j0, per_k, row_dft_.data() + nc * Rw,
            Rw, T(1), samples, Rw);
    for (int64_t m = 0; m < mc; ++m) {
      const int64_t j = j0 + m, b = j / CH_, ch = j % CH_;
      T* d = dst.data + b * dst.stride_b + ch * dst.stride_ch;
      const T add = bias ? bias[ch] : T(0);
      const T* s = samples + m * Rw;
      for (int64_t i = 0; i < Rw; ++i) d[i * dst.stride_w] = s[i] * scale + add;
    }
    return;
  }
  {
    // Per pair (k, -k): S = Y_k + Y_-k and D = Y_k - Y_-k (a self-mirrored row: S = Y_k, D = 0),
    // so that E Y_k + conj(E) Y_-k = Re E S + i Im E D. kept holds S (np rows) then D (np rows),
    // each row [re | im] of every chunk image's kept columns.
    T* sum = kept;
    T* diff = kept + np * W2;
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
  }
  // Width-axis inverse per grid row r: samples_r (mc x Rw) = V_r^T (mc x 2nc) * row_dft.
  for (int64_t r = 0; r < Rh; ++r)
    gemm<T>(true, false, mc, Rw, 2 * nc, T(1), cols + r * W2, mc, row_dft_.data(), Rw, T(0),
            samples + r * mc * Rw, Rw);
  for (int64_t m = 0; m < mc; ++m) {
    const int64_t j = j0 + m, b = j / CH_, ch = j % CH_;
    T* base = dst.data + b * dst.stride_b + ch * dst.stride_ch;
    const T add = bias ? bias[ch] : T(0);
    for (int64_t r = 0; r < Rh; ++r) {
      const T* s = samples + (r * mc + m) * Rw;
      T* d = base + r * dst.stride_h;
      if (dst.stride_w == 1) {
#pragma omp simd
        for (int64_t i = 0; i < Rw; ++i) d[i] = s[i] * scale + add;
      } else {
        for (int64_t i = 0; i < Rw; ++i) d[i * dst.stride_w] = s[i] * scale + add;
      }
    }
  }
}

// ---- fft engine --------------------------------------------------------------------------

template <class T>
void pruned_transform<T>::analyse_fft(const image_view<const T>& src, T* spectrum, int64_t j0,
                                      int64_t mc, T* rin) const {
  using C = std::complex<T>;
  const int64_t J = B_ * CH_, per_k = 2 * J;
  const int64_t nr = static_cast<int64_t>(kept_rows_.size());
  const int64_t nc = static_cast<int64_t>(kept_cols_.size());
  const int64_t Rh = h_.count, Rw = w_.count, L = Lw_, bins = row_len_;
  const chunk_plans& plans = mc == chunk_ ? full_ : tail_;
  C* rout = reinterpret_cast<C*>(rin + aligned_count<T>(static_cast<size_t>(chunk_ * Rh * L)));
  C* grid = rout + aligned_count<T>(static_cast<size_t>(2 * chunk_ * Rh * bins)) / 2;

  // Rows that hold data, zero-padded to the grid width.
  for (int64_t m = 0; m < mc; ++m) {
    const int64_t j = j0 + m, b = j / CH_, ch = j % CH_;
    const T* base = src.data + b * src.stride_b + ch * src.stride_ch;
    for (int64_t r = 0; r < Rh; ++r) {
      T* row = rin + (m * Rh + r) * L;
      std::memset(row, 0, sizeof(T) * static_cast<std::size_t>(L));
      const T* s = base + r * src.stride_h;
      for (int64_t i = 0; i < Rw; ++i) row[w_.offset + w_.step * i] = s[i * src.stride_w];
    }
  }
  plans.rows->execute(rin, rout);

  // Kept columns, each as a contiguous full-height column (zero where no data), then FFTs.
  std::fill(grid, grid + Lh_ * mc * nc, C(0));
  for (int64_t m = 0; m < mc; ++m)
    for (int64_t r = 0; r < Rh; ++r) {
      const C* s = rout + (m * Rh + r) * bins;
      C* d = grid + m * nc * Lh_ + h_.offset + h_.step * r;
      for (int64_t q = 0; q < nc; ++q) d[q * Lh_] = s[kept_cols_[q]];
    }
  if (plans.cols) plans.cols->execute(grid, grid);

  // Kept rows into the frequency-major planar spectrum.
  for (int64_t a = 0; a < nr; ++a)
    for (int64_t q = 0; q < nc; ++q) {
      const C* g = grid + q * Lh_ + kept_rows_[a];
      T* re = spectrum + (a * nc + q) * per_k + j0;
      T* im = re + J;
      for (int64_t m = 0; m < mc; ++m) {
        re[m] = g[m * nc * Lh_].real();
        im[m] = g[m * nc * Lh_].imag();
      }
    }
}

template <class T>
void pruned_transform<T>::synthesise_fft(const T* spectrum, const image_view<T>& dst, T scale,
                                         const T* bias, int64_t j0, int64_t mc, T* rin) const {
  using C = std::complex<T>;
  const int64_t J = B_ * CH_, per_k = 2 * J;
  const int64_t nr = static_cast<int64_t>(kept_rows_.size());
  const int64_t nc = static_cast<int64_t>(kept_cols_.size());
  const int64_t Rh = h_.count, Rw = w_.count, L = Lw_, bins = row_len_;
  const chunk_plans& plans = mc == chunk_ ? full_ : tail_;
  C* rout = reinterpret_cast<C*>(rin + aligned_count<T>(static_cast<size_t>(chunk_ * Rh * L)));
  C* grid = rout + aligned_count<T>(static_cast<size_t>(2 * chunk_ * Rh * bins)) / 2;

  // Kept bins onto contiguous columns (the dropped ones are zero), then inverse column FFTs.
  std::fill(grid, grid + Lh_ * mc * nc, C(0));
  for (int64_t a = 0; a < nr; ++a)
    for (int64_t q = 0; q < nc; ++q) {
      C* g = grid + q * Lh_ + kept_rows_[a];
      const T* re = spectrum + (a * nc + q) * per_k + j0;
      const T* im = re + J;
      for (int64_t m = 0; m < mc; ++m) g[m * nc * Lh_] = C(re[m], im[m]);
    }
  if (plans.cols) plans.cols->execute(grid, grid);

  // Only the grid rows the image needs go through the inverse row FFT.
  std::fill(rout, rout + mc * Rh * bins, C(0));
  for (int64_t m = 0; m < mc; ++m)
    for (int64_t r = 0; r < Rh; ++r) {
      const C* s = grid + m * nc * Lh_ + h_.offset + h_.step * r;
      C* d = rout + (m * Rh + r) * bins;
      for (int64_t q = 0; q < nc; ++q) d[kept_cols_[q]] = s[q * Lh_];
    }
  plans.rows->execute(rout, rin);

  for (int64_t m = 0; m < mc; ++m) {
    const int64_t j = j0 + m, b = j / CH_, ch = j % CH_;
    T* base = dst.data + b * dst.stride_b + ch * dst.stride_ch;
    const T add = bias ? bias[ch] : T(0);
    for (int64_t r = 0; r < Rh; ++r) {
      const T* row = rin + (m * Rh + r) * L;
      T* d = base + r * dst.stride_h;
      for (int64_t i = 0; i < Rw; ++i) d[i * dst.stride_w] = row[w_.offset + w_.step * i] * scale + add;
    }
  }
}

template class pruned_transform<float>;
template class pruned_transform<double>;

}  // namespace blfft::detail
