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
    : dir_(dir), Lh_(g.grid[0]), Lw_(g.grid[1]), kept_rows_(g.kept_rows), kept_cols_(g.kept_cols),
      B_(B), CH_(CH), J_(B * CH), nr_(static_cast<int64_t>(g.kept_rows.size())),
      nc_(static_cast<int64_t>(g.kept_cols.size())), h_(h), w_(w), row_len_(g.bins_w) {
  matmul_ = use_matmul({Lh_, Lw_, h.count, w.count, nr_, nc_}, options);
  const int64_t images = J_;
  // Before the DFT matrices exist (their row pairs do not count in this estimate).
  const std::size_t per_image = layout_for(1).total;
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
    if (splits()) make_split_matrices();
    scratch_ = layout_for(chunk_);
    return;
  }
  scratch_ = layout_for(chunk_);
  const auto plans = [&](int64_t m) {
    chunk_plans p;
    p.rows = make_fft<T>(dir == direction::analyse ? fft_kind::r2c_rows : fft_kind::c2r_rows, Lw_,
                         m * h.count, options.rigor);
    if (Lh_ > 1)
      p.cols = make_fft<T>(dir == direction::analyse ? fft_kind::c2c_cols_forward
                                                     : fft_kind::c2c_cols_backward,
                           Lh_, m * nc_, options.rigor);
    return p;
  };
  full_ = plans(chunk_);
  const int64_t tail = images % chunk_;
  if (tail != 0) tail_ = plans(tail);
}

template <class T>
typename pruned_transform<T>::scratch_layout pruned_transform<T>::layout_for(int64_t chunk) const {
  const auto c = static_cast<std::size_t>(chunk);
  const auto nr = static_cast<std::size_t>(nr_), nc = static_cast<std::size_t>(nc_);
  const auto Rh = static_cast<std::size_t>(h_.count), Rw = static_cast<std::size_t>(w_.count);
  std::size_t sizes[3];
  if (matmul_) {
    const std::size_t lines = std::max({nr, Rh, 2 * pairs_.size()});
    sizes[0] = Rh * c * Rw;
    sizes[1] = lines * c * 2 * nc;
    sizes[2] = 2 * lines * c * 2 * nc;
  } else {
    sizes[0] = c * Rh * static_cast<std::size_t>(Lw_);
    sizes[1] = 2 * c * Rh * static_cast<std::size_t>(row_len_);
    sizes[2] = 2 * c * static_cast<std::size_t>(Lh_) * nc;
  }
  scratch_layout s;
  s.second = aligned_count<T>(sizes[0]);
  s.third = s.second + aligned_count<T>(sizes[1]);
  s.total = s.third + aligned_count<T>(sizes[2]);
  return s;
}

namespace {
/// body(j0, mc, scratch) for every chunk of `chunk` images out of J, in parallel, each thread with
/// its own `per_thread` scalars of scratch.
template <class T, class F>
void for_each_chunk(int64_t J, int64_t chunk, std::size_t per_thread, F&& body) {
  const int64_t nchunks = (J + chunk - 1) / chunk;
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), nchunks));
  const thread_slices<T> scratch(threads, per_thread, "transform scratch");
  parallel_for(nchunks, threads, true, [&](int64_t c) {
    const int64_t j0 = c * chunk;
    body(j0, std::min(chunk, J - j0), scratch.mine());
  });
}
}  // namespace

template <class T>
void pruned_transform<T>::analyse(const image_view<const T>& src, T* spectrum) const {
  for_each_chunk<T>(J_, chunk_, per_thread_scalars(), [&](int64_t j0, int64_t mc, T* scratch) {
    if (matmul_)
      analyse_matmul(src, spectrum, j0, mc, scratch);
    else
      analyse_fft(src, spectrum, j0, mc, scratch);
  });
}

template <class T>
void pruned_transform<T>::synthesise(const T* spectrum, const image_view<T>& dst, T scale,
                                     const T* bias) const {
  for_each_chunk<T>(J_, chunk_, per_thread_scalars(), [&](int64_t j0, int64_t mc, T* scratch) {
    if (matmul_)
      synthesise_matmul(spectrum, dst, scale, bias, j0, mc, scratch);
    else
      synthesise_fft(spectrum, dst, scale, bias, j0, mc, scratch);
  });
}

template <class T>
void pruned_transform<T>::analyse_rows(const image_view<const T>& src, T* rows) const {
  for_each_chunk<T>(J_, chunk_, per_thread_scalars(), [&](int64_t j0, int64_t mc, T* scratch) {
    analyse_rows_chunk(src, rows, j0, mc, scratch);
  });
}

template <class T>
void pruned_transform<T>::synthesise_rows(const T* rows, const image_view<T>& dst, T scale,
                                          const T* bias) const {
  for_each_chunk<T>(J_, chunk_, per_thread_scalars(), [&](int64_t j0, int64_t mc, T* scratch) {
    synthesise_rows_chunk(rows, dst, scale, bias, j0, mc, scratch);
  });
}

template class pruned_transform<float>;
template class pruned_transform<double>;

}  // namespace blfft::detail
