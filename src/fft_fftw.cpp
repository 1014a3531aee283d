// FFTW3 behind the fft.hpp interface.

#include <fftw3.h>

#include <map>
#include <mutex>
#include <tuple>

#include "aligned_buffer.hpp"
#include "check.hpp"
#include "fft.hpp"

namespace blfft::detail {
namespace {

// FFTW's planner (plan creation and destruction) is not thread-safe; execution is.
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

template <class T>
struct fftw_api;

// FFTW's float and double APIs differ only in their prefix (fftwf_, fftw_); FFTW's own header
// makes them with a macro, and so does this one.
#define BLFFT_FFTW_API(T, X)                                                                       \
  template <>                                                                                      \
  struct fftw_api<T> {                                                                             \
    using plan_t = X##plan;                                                                        \
    using complex_t = X##complex;                                                                  \
    static plan_t r2c(int n, int howmany, T* in, complex_t* out, unsigned flags) {                 \
      return X##plan_many_dft_r2c(1, &n, howmany, in, nullptr, 1, n, out, nullptr, 1, n / 2 + 1,   \
                                  flags);                                                          \
    }                                                                                              \
    static plan_t c2r(int n, int howmany, complex_t* in, T* out, unsigned flags) {                 \
      return X##plan_many_dft_c2r(1, &n, howmany, in, nullptr, 1, n / 2 + 1, out, nullptr, 1, n,   \
                                  flags);                                                          \
    }                                                                                              \
    static plan_t c2c_cols(int n, int howmany, complex_t* data, int sign, unsigned flags) {        \
      return X##plan_many_dft(1, &n, howmany, data, nullptr, 1, n, data, nullptr, 1, n, sign,      \
                              flags);                                                              \
    }                                                                                              \
    static void exec_r2c(plan_t p, void* in, void* out) {                                          \
      X##execute_dft_r2c(p, static_cast<T*>(in), static_cast<complex_t*>(out));                    \
    }                                                                                              \
    static void exec_c2r(plan_t p, void* in, void* out) {                                          \
      X##execute_dft_c2r(p, static_cast<complex_t*>(in), static_cast<T*>(out));                    \
    }                                                                                              \
    static void exec_c2c(plan_t p, void* in, void* out) {                                          \
      X##execute_dft(p, static_cast<complex_t*>(in), static_cast<complex_t*>(out));                \
    }                                                                                              \
    static void destroy(plan_t p) {                                                                \
      X##destroy_plan(p);                                                                          \
    }                                                                                              \
  };
BLFFT_FFTW_API(float, fftwf_)
BLFFT_FFTW_API(double, fftw_)
#undef BLFFT_FFTW_API

template <class T>
class fftw_plan_holder final : public fft_plan<T> {
  using api = fftw_api<T>;

 public:
  fftw_plan_holder(fft_kind kind, int64_t n, int64_t howmany, fft_rigor rigor) : kind_(kind) {
    BLFFT_EXPECTS(n >= 1 && n <= INT32_MAX && howmany >= 1 && howmany <= INT32_MAX &&
                      n * howmany <= INT32_MAX,
                  error_code::unsupported, "FFT of length ", n, " x ", howmany,
                  " exceeds FFTW's int sizes");
    const int ni = static_cast<int>(n), hi = static_cast<int>(howmany);
    const size_t bins = static_cast<size_t>(n / 2 + 1) * static_cast<size_t>(howmany);
    // Plan on scratch arrays of the same 64-byte alignment as every execution buffer, so the
    // plan is valid for new-array execution (MEASURE overwrites them).
    aligned_buffer<T> real(static_cast<size_t>(n) * static_cast<size_t>(howmany));
    aligned_buffer<T> cplx(2 * (kind == fft_kind::r2c_rows || kind == fft_kind::c2r_rows
                                    ? bins
                                    : static_cast<size_t>(n) * static_cast<size_t>(howmany)));
    const unsigned flags = rigor == fft_rigor::measure ? FFTW_MEASURE : FFTW_ESTIMATE;
    auto* c = reinterpret_cast<typename api::complex_t*>(cplx.data());
    std::lock_guard<std::mutex> lock(planner_mutex());
    switch (kind) {
      case fft_kind::r2c_rows: plan_ = api::r2c(ni, hi, real.data(), c, flags); break;
      case fft_kind::c2r_rows: plan_ = api::c2r(ni, hi, c, real.data(), flags); break;
      case fft_kind::c2c_cols_forward: plan_ = api::c2c_cols(ni, hi, c, FFTW_FORWARD, flags); break;
      case fft_kind::c2c_cols_backward:
        plan_ = api::c2c_cols(ni, hi, c, FFTW_BACKWARD, flags);
        break;
    }
    BLFFT_EXPECTS(plan_ != nullptr, error_code::backend, "FFTW could not plan a transform of ", n,
                  " x ", howmany);
  }
  ~fftw_plan_holder() override {
    std::lock_guard<std::mutex> lock(planner_mutex());
    api::destroy(plan_);
  }
  void execute(void* in, void* out) const override {
    switch (kind_) {
      case fft_kind::r2c_rows: api::exec_r2c(plan_, in, out); break;
      case fft_kind::c2r_rows: api::exec_c2r(plan_, in, out); break;
      default: api::exec_c2c(plan_, in, out); break;
    }
  }

 private:
  fft_kind kind_;
  typename api::plan_t plan_ = nullptr;
};

using fft_key = std::tuple<int, int64_t, int64_t, int>;

template <class T>
struct fft_cache {
  std::mutex mutex;
  std::map<fft_key, std::shared_ptr<const fft_plan<T>>> plans;
  static fft_cache& get() {
    static fft_cache c;
    return c;
  }
  void trim() {
    std::lock_guard<std::mutex> lock(mutex);
    for (auto it = plans.begin(); it != plans.end();)
      it = it->second.use_count() == 1 ? plans.erase(it) : std::next(it);
  }
};

}  // namespace

template <class T>
std::shared_ptr<const fft_plan<T>> make_fft(fft_kind kind, int64_t n, int64_t howmany,
                                            fft_rigor rigor) {
  auto& cache = fft_cache<T>::get();
  const fft_key key{static_cast<int>(kind), n, howmany, static_cast<int>(rigor)};
  std::lock_guard<std::mutex> lock(cache.mutex);
  auto it = cache.plans.find(key);
  if (it != cache.plans.end()) return it->second;
  auto p = std::make_shared<const fftw_plan_holder<T>>(kind, n, howmany, rigor);
  cache.plans.emplace(key, p);
  return p;
}

void trim_fft_cache() {
  fft_cache<float>::get().trim();
  fft_cache<double>::get().trim();
}

std::size_t fft_cache_size() {
  const auto count = [](auto& c) {
    std::lock_guard<std::mutex> lock(c.mutex);
    return c.plans.size();
  };
  return count(fft_cache<float>::get()) + count(fft_cache<double>::get());
}

template std::shared_ptr<const fft_plan<float>> make_fft<float>(fft_kind, int64_t, int64_t,
                                                                fft_rigor);
template std::shared_ptr<const fft_plan<double>> make_fft<double>(fft_kind, int64_t, int64_t,
                                                                  fft_rigor);

}  // namespace blfft::detail
