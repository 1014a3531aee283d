#include "parallel.hpp"

#include <atomic>

#include "blfft/plan.hpp"
#include "check.hpp"

namespace blfft {
namespace {
std::atomic<int> requested_threads{0};
}

void set_num_threads(int n) {
  BLFFT_EXPECTS(n >= 0, error_code::invalid_argument,
                "num_threads must be >= 0 (0: OpenMP's default), got ", n);
  requested_threads.store(n);
}

int get_num_threads() {
  return detail::thread_count();
}

namespace detail {
int thread_count() {
  const int n = requested_threads.load();
  const int t = n > 0 ? n : omp_get_max_threads();
  return t > 0 ? t : 1;
}
}  // namespace detail
}  // namespace blfft
