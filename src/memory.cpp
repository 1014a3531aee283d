// The workspace pool and the memory settings (workspace.hpp, plan.hpp).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <vector>

#include "blfft/plan.hpp"
#include "check.hpp"
#include "workspace.hpp"

namespace blfft {
namespace detail {
namespace {

std::size_t physical_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return SIZE_MAX >> 2;
  return static_cast<std::size_t>(pages) * static_cast<std::size_t>(page);
}

std::atomic<std::size_t> max_idle{std::size_t(128) << 20};
std::atomic<std::size_t> max_buffer{0};  // 0: physical memory

std::string mib(std::size_t bytes) {
  return cat(static_cast<double>(bytes) / (1024.0 * 1024.0), " MiB");
}

class pool {
 public:
  static pool& instance() {
    static pool* p = new pool;  // never destroyed: leases may end during static destruction
    return *p;
  }

  std::unique_ptr<byte_buffer> take(std::size_t bytes) {
    std::unique_ptr<byte_buffer> b;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // The smallest idle buffer that is large enough.
      auto best = idle_.end();
      for (auto it = idle_.begin(); it != idle_.end(); ++it)
        if ((*it)->bytes() >= bytes && (best == idle_.end() || (*it)->bytes() < (*best)->bytes()))
          best = it;
      if (best != idle_.end()) {
        b = std::move(*best);
        idle_.erase(best);
        idle_bytes_ -= b->bytes();
        return b;
      }
    }
    b = std::make_unique<byte_buffer>();
    try {
      b->resize(bytes);
    } catch (const std::bad_alloc&) {
      release();  // idle buffers may be what is missing; one more try without them
      b->resize(bytes);
    }
    return b;
  }

  void give_back(std::unique_ptr<byte_buffer> b) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      idle_.push_back(std::move(b));
    } catch (...) {
      return;  // no room to keep it: freed here
    }
    idle_bytes_ += idle_.back()->bytes();
    trim(max_idle.load());
  }

  void release() {
    std::vector<std::unique_ptr<byte_buffer>> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      dropped.swap(idle_);
      idle_bytes_ = 0;
    }
  }

  void trim_to_limit() {
    std::lock_guard<std::mutex> lock(mutex_);
    trim(max_idle.load());
  }

  std::size_t idle_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return idle_bytes_;
  }

 private:
  // Frees the smallest idle buffers until at most `limit` bytes are idle (large buffers are the
  // expensive ones to fault in again).
  void trim(std::size_t limit) {
    while (idle_bytes_ > limit && !idle_.empty()) {
      auto smallest = std::min_element(idle_.begin(), idle_.end(),
                                       [](auto& a, auto& c) { return a->bytes() < c->bytes(); });
      idle_bytes_ -= (*smallest)->bytes();
      idle_.erase(smallest);
    }
  }

  std::mutex mutex_;
  std::vector<std::unique_ptr<byte_buffer>> idle_;
  std::size_t idle_bytes_ = 0;
};

}  // namespace

void check_buffer_bytes(std::size_t bytes, const char* what) {
  const std::size_t cap = get_max_buffer_bytes();
  BLFFT_EXPECTS(bytes <= cap, error_code::out_of_memory, what, " needs ", mib(bytes),
                ", more than the largest buffer allowed (", mib(cap),
                "; blfft::set_max_buffer_bytes, default: the machine's memory)");
}

std::unique_ptr<byte_buffer> take_buffer(std::size_t bytes, const char* what) {
  check_buffer_bytes(bytes, what);
  return pool::instance().take(bytes);
}

void give_back(std::unique_ptr<byte_buffer> b) noexcept {
  pool::instance().give_back(std::move(b));
}

}  // namespace detail

void release_memory() {
  clear_plan_cache();
  detail::pool::instance().release();
}

void set_max_idle_bytes(std::size_t bytes) {
  detail::max_idle.store(bytes);
  detail::pool::instance().trim_to_limit();
}
std::size_t get_max_idle_bytes() {
  return detail::max_idle.load();
}
std::size_t idle_bytes() {
  return detail::pool::instance().idle_bytes();
}

void set_max_buffer_bytes(std::size_t bytes) {
  detail::max_buffer.store(bytes);
}
std::size_t get_max_buffer_bytes() {
  const std::size_t b = detail::max_buffer.load();
  if (b != 0) return b;
  static const std::size_t physical = detail::physical_memory();
  return physical;
}

}  // namespace blfft
