// The process-wide CPU plan cache.

#include <atomic>

#include "blfft/plan.hpp"
#include "fft.hpp"
#include "shared_cache.hpp"

namespace blfft {
namespace {

constexpr unsigned fft_trim_interval = 64;
using caches = detail::precision_caches<plan>;

}  // namespace

template <class T>
std::shared_ptr<const plan<T>> get_plan(const conv_params& p, const compression& c,
                                        const plan_options& options) {
  geometry g = make_geometry(p, c);  // validates before anything is cached
  std::vector<int64_t> key = options.key();
  key.push_back(sizeof(T));
  detail::append_geometry_key(key, g);
  bool made = false;
  auto pl = caches::of<T>().get(std::move(key), [&] {
    made = true;
    return std::make_shared<const plan<T>>(g, options);
  });
  // The plan cache drops plans nobody holds once it is full; their FFT plans stay in the FFT
  // cache until trimmed. Trimming every so many new plans keeps that cache as bounded as the
  // plan cache (energy re-selection per batch, or many input lengths, make new plans all along).
  static std::atomic<unsigned> plans_made{0};
  if (made && ++plans_made % fft_trim_interval == 0) detail::trim_fft_cache();
  return pl;
}

std::size_t plan_cache_size() {
  return caches::size();
}

void clear_plan_cache() {
  caches::clear();
  detail::trim_fft_cache();
}

template BLFFT_API std::shared_ptr<const plan<float>>
get_plan<float>(const conv_params&, const compression&, const plan_options&);
template BLFFT_API std::shared_ptr<const plan<double>>
get_plan<double>(const conv_params&, const compression&, const plan_options&);

}  // namespace blfft
