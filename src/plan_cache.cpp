// The process-wide CPU plan cache.

#include "blfft/plan.hpp"
#include "fft.hpp"
#include "shared_cache.hpp"

namespace blfft {
namespace {

template <class T>
detail::shared_cache<plan<T>>& cache() {
  static detail::shared_cache<plan<T>> c;
  return c;
}

}  // namespace

template <class T>
std::shared_ptr<const plan<T>> get_plan(const conv_params& p, const compression& c,
                                        const plan_options& options) {
  geometry g = make_geometry(p, c);  // validates before anything is cached
  std::vector<int64_t> key = options.key();
  key.push_back(sizeof(T));
  detail::append_geometry_key(key, g);
  return cache<T>().get(std::move(key),
                        [&] { return std::make_shared<const plan<T>>(g, options); });
}

std::size_t plan_cache_size() { return cache<float>().size() + cache<double>().size(); }

void clear_plan_cache() {
  cache<float>().clear();
  cache<double>().clear();
  detail::trim_fft_cache();
}

template BLFFT_API std::shared_ptr<const plan<float>> get_plan<float>(const conv_params&,
                                                                      const compression&,
                                                                      const plan_options&);
template BLFFT_API std::shared_ptr<const plan<double>> get_plan<double>(const conv_params&,
                                                                        const compression&,
                                                                        const plan_options&);

}  // namespace blfft
