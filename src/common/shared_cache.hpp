#pragma once
// The plan caches of the CPU and CUDA backends: a thread-safe map from a key to shared,
// immutable plans, and the geometry part of the key.

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "blfft/geometry.hpp"

namespace blfft::detail {

/// Appends everything that makes two layers' plans differ: sizes, conv settings, grid, kept set.
inline void append_geometry_key(std::vector<int64_t>& k, const geometry& g) {
  const auto& p = g.params;
  k.insert(k.end(), {p.ndim, p.batch, p.in_channels, p.out_channels, p.groups});
  for (const auto* a : {&p.input, &p.kernel, &p.stride, &p.padding, &p.dilation, &g.grid})
    k.insert(k.end(), a->begin(), a->end());
  k.push_back(static_cast<int64_t>(g.kept_rows.size()));
  k.insert(k.end(), g.kept_rows.begin(), g.kept_rows.end());
  k.push_back(static_cast<int64_t>(g.kept_cols.size()));
  k.insert(k.end(), g.kept_cols.begin(), g.kept_cols.end());
  // The depth axis of 3D layers (trivial for 1D and 2D).
  const auto& d = p.depth;
  k.insert(k.end(), {d.input, d.kernel, d.stride, d.padding, d.dilation, g.depth_grid});
  k.push_back(static_cast<int64_t>(g.kept_depth.size()));
  k.insert(k.end(), g.kept_depth.begin(), g.kept_depth.end());
}

template <class V>
class shared_cache {
 public:
  /// The cached value for `key`, made by `make()` on first use (under the lock: plan
  /// construction is serialised, as FFT planners require anyway).
  template <class Make>
  std::shared_ptr<const V> get(std::vector<int64_t> key, Make&& make) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = values_.find(key);
    if (it != values_.end()) return it->second;
    // Past this many entries, the ones nobody holds any more are dropped (energy re-selection
    // per batch can create a new kept set every step).
    if (values_.size() >= trim_threshold) {
      for (auto i = values_.begin(); i != values_.end();)
        i = i->second.use_count() == 1 ? values_.erase(i) : std::next(i);
    }
    std::shared_ptr<const V> made = make();
    values_.emplace(std::move(key), made);
    return made;
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return values_.size();
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    values_.clear();
  }

 private:
  static constexpr std::size_t trim_threshold = 256;
  std::mutex mutex_;
  std::map<std::vector<int64_t>, std::shared_ptr<const V>> values_;
};

/// A backend's process-wide plan caches, one per precision of its plan template (plan<float>,
/// plan<double>), with the size and clear that cover both.
template <template <class> class Plan>
struct precision_caches {
  template <class T>
  static shared_cache<Plan<T>>& of() {
    static shared_cache<Plan<T>> c;
    return c;
  }
  static std::size_t size() { return of<float>().size() + of<double>().size(); }
  static void clear() {
    of<float>().clear();
    of<double>().clear();
  }
};

}  // namespace blfft::detail
