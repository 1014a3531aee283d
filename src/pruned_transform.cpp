#include "pruned_transform.hpp"

#include <omp.h>

#include <algorithm>
#include <complex>
#include <cstring>

#include "check.hpp"
#include "parallel.hpp"

namespace blfft::detail {
namespace {
// Images per work item are chosen so that one item's buffers stay within the L2 cache.
constexpr std::size_t chunk_bytes = 192 * 1024;
}  // namespace

template <class T>
pruned_transform<T>::pruned_transform(const geometry& g, direction dir, int64_t B, int64_t CH,
                                      placement h, placement w, fft_rigor rigor)
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
  const int64_t images = B * CH;
  const auto per_image = static_cast<std::size_t>(
      h.count * Lw_ + 2 * h.count * row_len_ + 2 * Lh_ * static_cast<int64_t>(kept_cols_.size()));
  const int64_t by_cache =
      std::max<int64_t>(1, static_cast<int64_t>(chunk_bytes / (per_image * sizeof(T))));
  const int64_t threads = thread_count();
  const int64_t by_threads = (images + threads - 1) / threads;
  chunk_ = std::max<int64_t>(1, std::min(by_cache, by_threads));
  const auto plans = [&](int64_t m) {
    chunk_plans p;
    p.rows = make_fft<T>(dir == direction::analyse ? fft_kind::r2c_rows : fft_kind::c2r_rows, Lw_,
                         m * h.count, rigor);
    if (Lh_ > 1)
      p.cols = make_fft<T>(dir == direction::analyse ? fft_kind::c2c_cols_forward
                                                     : fft_kind::c2c_cols_backward,
                           Lh_, m * static_cast<int64_t>(kept_cols_.size()), rigor);
    return p;
  };
  full_ = plans(chunk_);
  const int64_t tail = images % chunk_;
  if (tail != 0) tail_ = plans(tail);
}

template <class T>
std::size_t pruned_transform<T>::per_thread_scalars() const {
  const auto c = static_cast<std::size_t>(chunk_);
  const auto nc = kept_cols_.size();
  return aligned_count<T>(c * h_.count * Lw_) + aligned_count<T>(2 * c * h_.count * row_len_) +
         aligned_count<T>(2 * c * Lh_ * nc);
}

template <class T>
void pruned_transform<T>::analyse(const image_view<const T>& src, T* spectrum) const {
  using C = std::complex<T>;
  const int64_t J = B_ * CH_;
  const int64_t nchunks = (J + chunk_ - 1) / chunk_;
  const int64_t nr = static_cast<int64_t>(kept_rows_.size());
  const int64_t nc = static_cast<int64_t>(kept_cols_.size());
  const int64_t Rh = h_.count, Rw = w_.count, L = Lw_, bins = row_len_;
  const int64_t per_k = 2 * J;

#pragma omp parallel for schedule(dynamic) num_threads(thread_count())
  for (int64_t chunk = 0; chunk < nchunks; ++chunk) {
    const int64_t j0 = chunk * chunk_, mc = std::min(chunk_, J - j0);
    const chunk_plans& plans = mc == chunk_ ? full_ : tail_;
    T* rin = thread_scratch<T>(per_thread_scalars());
    C* rout = reinterpret_cast<C*>(rin + aligned_count<T>(chunk_ * Rh * L));
    C* grid = rout + aligned_count<T>(2 * chunk_ * Rh * bins) / 2;
    const int64_t width = mc * nc;  // columns of the chunk's column-pass array

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
    std::fill(grid, grid + Lh_ * width, C(0));
    for (int64_t m = 0; m < mc; ++m)
      for (int64_t r = 0; r < Rh; ++r) {
        const C* s = rout + (m * Rh + r) * bins;
        C* d = grid + m * nc * Lh_ + h_.offset + h_.step * r;
        for (int64_t q = 0; q < nc; ++q) d[q * Lh_] = s[kept_cols_[q]];
      }
    if (plans.cols) plans.cols->execute(grid, grid);

    // Kept rows into the frequency-major planar spectrum.
    for (int64_t a = 0; a < nr; ++a) {
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
  }
}

template <class T>
void pruned_transform<T>::synthesise(const T* spectrum, const image_view<T>& dst, T scale,
                                     const T* bias) const {
  using C = std::complex<T>;
  const int64_t J = B_ * CH_;
  const int64_t nchunks = (J + chunk_ - 1) / chunk_;
  const int64_t nr = static_cast<int64_t>(kept_rows_.size());
  const int64_t nc = static_cast<int64_t>(kept_cols_.size());
  const int64_t Rh = h_.count, Rw = w_.count, L = Lw_, bins = row_len_;
  const int64_t per_k = 2 * J;

#pragma omp parallel for schedule(dynamic) num_threads(thread_count())
  for (int64_t chunk = 0; chunk < nchunks; ++chunk) {
    const int64_t j0 = chunk * chunk_, mc = std::min(chunk_, J - j0);
    const chunk_plans& plans = mc == chunk_ ? full_ : tail_;
    T* rin = thread_scratch<T>(per_thread_scalars());
    C* rout = reinterpret_cast<C*>(rin + aligned_count<T>(chunk_ * Rh * L));
    C* grid = rout + aligned_count<T>(2 * chunk_ * Rh * bins) / 2;
    const int64_t width = mc * nc;

    // Kept bins onto contiguous columns (the dropped ones are zero), then inverse column FFTs.
    std::fill(grid, grid + Lh_ * width, C(0));
    for (int64_t a = 0; a < nr; ++a) {
      for (int64_t q = 0; q < nc; ++q) {
        C* g = grid + q * Lh_ + kept_rows_[a];
        const T* re = spectrum + (a * nc + q) * per_k + j0;
        const T* im = re + J;
        for (int64_t m = 0; m < mc; ++m) g[m * nc * Lh_] = C(re[m], im[m]);
      }
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
}

template class pruned_transform<float>;
template class pruned_transform<double>;

}  // namespace blfft::detail
