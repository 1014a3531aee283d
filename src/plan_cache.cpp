// The process-wide plan cache, keyed by everything that makes two plans different.

#include <map>
#include <mutex>
#include <vector>

#include "blfft/plan.hpp"
#include "fft.hpp"

namespace blfft {
namespace {

// Past this many plans, the ones nobody holds any more are dropped (energy re-selection per
// batch can create a new kept set every step).
constexpr std::size_t trim_threshold = 256;

std::vector<int64_t> cache_key(const geometry& g, int dtype, const plan_options& o) {
  const auto& p = g.params;
  std::vector<int64_t> k{dtype,         static_cast<int64_t>(o.rigor),
                         static_cast<int64_t>(o.method), o.matmul_max_grid,
                         p.ndim,        p.batch,
                         p.in_channels, p.out_channels,
                         p.groups};
  for (const auto* a : {&p.input, &p.kernel, &p.stride, &p.padding, &p.dilation, &g.grid})
    k.insert(k.end(), a->begin(), a->end());
  k.push_back(static_cast<int64_t>(g.kept_rows.size()));
  k.insert(k.end(), g.kept_rows.begin(), g.kept_rows.end());
  k.push_back(static_cast<int64_t>(g.kept_cols.size()));
  k.insert(k.end(), g.kept_cols.begin(), g.kept_cols.end());
  return k;
}

template <class T>
struct plan_cache {
  std::mutex mutex;
  std::map<std::vector<int64_t>, std::shared_ptr<const plan<T>>> plans;
  static plan_cache& get() {
    static plan_cache c;
    return c;
  }
};

template <class T>
constexpr int dtype_tag() {
  return sizeof(T) == 4 ? 0 : 1;
}

template <class T>
void trim_unused(plan_cache<T>& c) {
  for (auto it = c.plans.begin(); it != c.plans.end();)
    it = it->second.use_count() == 1 ? c.plans.erase(it) : std::next(it);
}

}  // namespace

template <class T>
std::shared_ptr<const plan<T>> get_plan(const conv_params& p, const compression& c,
                                        const plan_options& options) {
  geometry g = make_geometry(p, c);  // validates before anything is cached
  auto key = cache_key(g, dtype_tag<T>(), options);
  auto& cache = plan_cache<T>::get();
  std::lock_guard<std::mutex> lock(cache.mutex);
  auto it = cache.plans.find(key);
  if (it != cache.plans.end()) return it->second;
  if (cache.plans.size() >= trim_threshold) trim_unused(cache);
  auto made = std::make_shared<const plan<T>>(g, options);
  cache.plans.emplace(std::move(key), made);
  return made;
}

std::size_t plan_cache_size() {
  auto& f = plan_cache<float>::get();
  auto& d = plan_cache<double>::get();
  std::scoped_lock lock(f.mutex, d.mutex);
  return f.plans.size() + d.plans.size();
}

void clear_plan_cache() {
  {
    auto& f = plan_cache<float>::get();
    auto& d = plan_cache<double>::get();
    std::scoped_lock lock(f.mutex, d.mutex);
    f.plans.clear();
    d.plans.clear();
  }
  detail::trim_fft_cache();
}

template BLFFT_API std::shared_ptr<const plan<float>> get_plan<float>(const conv_params&,
                                                                      const compression&,
                                                                      const plan_options&);
template BLFFT_API std::shared_ptr<const plan<double>> get_plan<double>(const conv_params&,
                                                                        const compression&,
                                                                        const plan_options&);

}  // namespace blfft
