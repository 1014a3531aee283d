#pragma once
// Threading for the CPU backend: OpenMP, with a process-wide thread count (0 = OpenMP's default).
//
// Two rules keep the parallel regions safe:
// - the thread count is read once per region (set_num_threads may run on another thread at any
//   time), and everything sized by it (per-thread scratch, accumulators) uses that one value;
// - nothing is allocated inside a region (scratch comes from the pool before it starts), and an
//   exception thrown by a body is caught there and rethrown after the region on the calling
//   thread: an exception leaving an OpenMP region calls std::terminate.

#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>

#include "tsan.hpp"
#include "workspace.hpp"

namespace blfft::detail {

/// Threads the next parallel region should use (>= 1).
int thread_count();

/// Runs body(i) for i in [0, n): on `threads` threads with dynamic scheduling when `parallel`,
/// else on the calling thread. The first exception a body throws is rethrown here once all
/// threads have finished (the other items may or may not have run).
template <class F>
void parallel_for(int64_t n, int threads, bool parallel, F&& body) {
  std::exception_ptr error;
  std::mutex error_mutex;
  // OpenMP's fork and join as TSan synchronisation (tsan.hpp): items see the caller's writes,
  // the caller sees all items' writes, items of one region stay unordered.
  char fork = 0, join = 0;
  tsan::release(&fork);
#pragma omp parallel for schedule(dynamic)                                                         \
    num_threads(threads) if (parallel && n > 1 && threads > 1)
  for (int64_t i = 0; i < n; ++i) {
    tsan::acquire(&fork);
    try {
      body(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
    tsan::release(&join);
  }
  tsan::acquire(&join);
  if (error) std::rethrow_exception(error);
}

/// Per-thread scratch for one parallel region: one pooled buffer with a slice of
/// `per_thread` elements for each of `threads` threads, taken before the region starts.
template <class T>
class thread_slices {
 public:
  thread_slices(int threads, std::size_t per_thread, const char* what)
      : per_(aligned_count<T>(per_thread)), buf_(checked_count(threads, per_), what) {}
  /// The calling thread's slice (omp_get_thread_num() < threads in the region that sized it).
  T* mine() const { return buf_.data() + static_cast<std::size_t>(omp_get_thread_num()) * per_; }

 private:
  static std::size_t checked_count(int threads, std::size_t per) {
    std::size_t n = 0;
    if (__builtin_mul_overflow(static_cast<std::size_t>(threads), per, &n))
      fail(error_code::out_of_memory, "per-thread scratch does not fit in memory");
    return n;
  }
  std::size_t per_;
  lease<T> buf_;
};

}  // namespace blfft::detail
