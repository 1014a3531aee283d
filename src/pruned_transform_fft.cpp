// The fft engine of the pruned transforms (pruned_transform.hpp): FFTW row and column
// transforms, pruned to the rows and columns that hold data or are kept.

#include <algorithm>
#include <complex>
#include <cstring>

#include "pruned_transform.hpp"
#include "sample_io.hpp"

namespace blfft::detail {

// ---- fft engine --------------------------------------------------------------------------

template <class T>
void pruned_transform<T>::analyse_fft(const image_view<const T>& src, T* spectrum, int64_t j0,
                                      int64_t mc, T* rin) const {
  using C = std::complex<T>;
  const int64_t J = J_, per_k = 2 * J, nr = nr_, nc = nc_;
  const int64_t Rh = h_.count, L = Lw_, bins = row_len_;
  const auto [plans, rout, grid] = fft_work_for(mc, rin);

  // Rows that hold data, zero-padded to the grid width.
  for_each_sample_row(src, CH_, j0, mc, Rh, [&](int64_t m, int64_t r, int64_t, const T* s) {
    T* row = rin + (m * Rh + r) * L;
    std::memset(row, 0, sizeof(T) * static_cast<std::size_t>(L));
    copy_samples(s, src.stride_w, w_.count, row + w_.offset, w_.step);
  });
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
  const int64_t J = J_, per_k = 2 * J, nr = nr_, nc = nc_;
  const int64_t Rh = h_.count, L = Lw_, bins = row_len_;
  const auto [plans, rout, grid] = fft_work_for(mc, rin);

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

  for_each_sample_row(dst, CH_, j0, mc, Rh, [&](int64_t m, int64_t r, int64_t ch, T* d) {
    store_samples(rin + (m * Rh + r) * L + w_.offset, w_.step, w_.count, scale,
                  bias ? bias[ch] : T(0), d, dst.stride_w);
  });
}

// The members this file defines, for both precisions (the rest: pruned_transform.cpp).
#define BLFFT_PRUNED_FFT(T)                                                                        \
  template void pruned_transform<T>::analyse_fft(const image_view<const T>&, T*, int64_t, int64_t, \
                                                 T*) const;                                        \
  template void pruned_transform<T>::synthesise_fft(const T*, const image_view<T>&, T, const T*,   \
                                                    int64_t, int64_t, T*) const;
BLFFT_PRUNED_FFT(float)
BLFFT_PRUNED_FFT(double)
#undef BLFFT_PRUNED_FFT

}  // namespace blfft::detail
