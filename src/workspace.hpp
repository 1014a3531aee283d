#pragma once
// Large per-call buffers (spectra of outputs and gradients) come from a small process-wide pool:
// fresh multi-megabyte allocations cost page faults on every call, while a pool keeps the last
// few buffers warm. At most `max_free` idle buffers are kept, so memory stays bounded.

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include "aligned_buffer.hpp"

namespace blfft::detail {

template <class T>
class workspace_pool {
 public:
  using buffer = aligned_buffer<T>;

  /// RAII lease: the buffer goes back to the pool when the lease ends.
  class lease {
   public:
    lease(workspace_pool* pool, std::unique_ptr<buffer> b) : pool_(pool), buf_(std::move(b)) {}
    lease(lease&&) noexcept = default;
    ~lease() {
      if (buf_) pool_->give_back(std::move(buf_));
    }
    T* data() const { return buf_ ? buf_->data() : nullptr; }

   private:
    workspace_pool* pool_;
    std::unique_ptr<buffer> buf_;
  };

  static workspace_pool& instance() {
    static workspace_pool p;
    return p;
  }

  /// A buffer of at least n elements (contents undefined).
  lease take(std::size_t n) {
    if (n == 0) return lease(this, nullptr);
    std::unique_ptr<buffer> b;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // The smallest idle buffer that is large enough.
      auto best = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if ((*it)->size() >= n && (best == free_.end() || (*it)->size() < (*best)->size()))
          best = it;
      if (best == free_.end() && !free_.empty()) best = free_.begin();  // grow one
      if (best != free_.end()) {
        b = std::move(*best);
        free_.erase(best);
      }
    }
    if (!b) b = std::make_unique<buffer>();
    b->resize(n);
    return lease(this, std::move(b));
  }

 private:
  static constexpr std::size_t max_free = 8;

  void give_back(std::unique_ptr<buffer> b) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(b));
    if (free_.size() > max_free) {
      auto smallest = std::min_element(free_.begin(), free_.end(), [](auto& a, auto& c) {
        return a->size() < c->size();
      });
      free_.erase(smallest);
    }
  }

  std::mutex mutex_;
  std::vector<std::unique_ptr<buffer>> free_;
};

/// Shorthand: a pooled buffer of n scalars.
template <class T>
typename workspace_pool<T>::lease take_workspace(int64_t n) {
  return workspace_pool<T>::instance().take(static_cast<std::size_t>(n));
}

}  // namespace blfft::detail
