// The BLAS calls of a deterministic plan (issue #15). plan_options::deterministic promises
// bitwise-identical results for any thread count with *any* correct BLAS, and a BLAS may round
// an element of C differently when the call's M or N changes (OpenBLAS 0.3.21 and BLIS 0.9 both
// do, for some shapes), or when it splits one call among threads of its own. So the calls, as a
// multiset (the order across threads is free) of shape, transposes and leading dimensions, must
// not depend on the thread count, and each must run on the calling thread. Recorded with the
// test executable's own sgemm_/dgemm_, which libblfft's calls bind to before the BLAS library's,
// forwarding to the real ones. Not recorded: the operands' alignment, which varies with where
// malloc put the caller's buffers and the plan's tables, and changed no bit of either BLAS's
// sgemm (8 shapes of blfft's, offsets of 1-8 floats; bench/NOTES.md).

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>

#include "blas.hpp"
#include "blfft/energy.hpp"
#include "harness.hpp"
#include "oracles.hpp"

namespace {

/// One call as the Fortran interface sees it: precision, transposes, M, N, K, lda, ldb, ldc.
using blas_call = std::tuple<char, char, char, int, int, int, int, int, int>;

std::mutex calls_mutex;
bool recording = false;
std::map<blas_call, long> calls;
/// The most threads a BLAS threaded with OpenMP would have used for a call: one inside an
/// active parallel region, else the calling thread's OpenMP default (what OpenBLAS's OpenMP
/// flavour reads at every call).
int most_blas_threads = 0;

void record(char type, const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const int* lda, const int* ldb, const int* ldc) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  std::lock_guard<std::mutex> lock(calls_mutex);
  if (!recording) return;
  ++calls[blas_call{type, *ta, *tb, *m, *n, *k, *lda, *ldb, *ldc}];
  most_blas_threads = std::max(most_blas_threads, threads);
}

template <class Fn>
Fn real(const char* name) {
  static_assert(sizeof(Fn) == sizeof(void*));
  void* f = dlsym(RTLD_NEXT, name);
  if (!f) std::abort();  // the BLAS library must be loaded: libblfft links it
  return reinterpret_cast<Fn>(f);
}

}  // namespace

extern "C" {
void BLFFT_BLAS_SYMBOL(sgemm_)(const char* ta, const char* tb, const int* m, const int* n,
                               const int* k, const float* alpha, const float* a, const int* lda,
                               const float* b, const int* ldb, const float* beta, float* c,
                               const int* ldc) {
  using fn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*,
                      const float*, const int*, const float*, const int*, const float*, float*,
                      const int*);
  static const fn next = real<fn>(BLFFT_BLAS_SYMBOL_NAME(sgemm_));
  record('s', ta, tb, m, n, k, lda, ldb, ldc);
  next(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void BLFFT_BLAS_SYMBOL(dgemm_)(const char* ta, const char* tb, const int* m, const int* n,
                               const int* k, const double* alpha, const double* a, const int* lda,
                               const double* b, const int* ldb, const double* beta, double* c,
                               const int* ldc) {
  using fn = void (*)(const char*, const char*, const int*, const int*, const int*, const double*,
                      const double*, const int*, const double*, const int*, const double*, double*,
                      const int*);
  static const fn next = real<fn>(BLFFT_BLAS_SYMBOL_NAME(dgemm_));
  record('d', ta, tb, m, n, k, lda, ldb, ldc);
  next(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
}

namespace bt {
namespace {

std::string describe(const std::map<blas_call, long>& m) {
  std::ostringstream os;
  for (const auto& [c, n] : m) {
    const auto& [t, ta, tb, M, N, K, la, lb, lc] = c;
    os << "  " << n << "x " << t << "gemm " << ta << tb << " m=" << M << " n=" << N << " k=" << K
       << " ld=" << la << "," << lb << "," << lc << "\n";
  }
  return os.str();
}

/// Calls in `a` that `b` lacks, with their counts.
std::map<blas_call, long> minus(const std::map<blas_call, long>& a,
                                const std::map<blas_call, long>& b) {
  std::map<blas_call, long> d;
  for (const auto& [c, n] : a) {
    const auto it = b.find(c);
    const long left = n - (it == b.end() ? 0 : it->second);
    if (left > 0) d[c] = left;
  }
  return d;
}

/// What the BLAS saw of one deterministic forward and backward.
struct recorded {
  std::map<blas_call, long> calls;
  int most_blas_threads = 0;  // see the variable of that name
  int omp_default_after = 0;  // the caller's OpenMP default after the calls
};

/// The BLAS calls of one deterministic forward and backward (with the weight: the input and
/// weight gradients, the bias gradient), under `threads`, with the plan made under that count,
/// from a caller whose OpenMP default is 4 threads; with `energy`, the kept set comes from
/// select_by_energy on the input (E = 0.9).
template <class T>
recorded calls_of(const conv_params& p, bool energy, int threads) {
  problem<T> pr(p, 3);
  const dims d = pr.d;
  const int caller_default = omp_get_max_threads();
  omp_set_num_threads(4);
  blfft::set_num_threads(threads);
  blfft::clear_plan_cache();
  blfft::plan_options o;
  o.deterministic = true;
  {
    std::lock_guard<std::mutex> lock(calls_mutex);
    calls.clear();
    most_blas_threads = 0;
    recording = true;
  }
  const compression c =
      energy ? blfft::select_by_energy<T>(p, pr.xv(), 0.9).chosen : compression::rate(0.5);
  const auto pl = blfft::get_plan<T>(p, c, o);
  std::vector<T> y(static_cast<size_t>(d.output_size())), dx(static_cast<size_t>(d.input_size())),
      dw(static_cast<size_t>(d.weight_size())), db(static_cast<size_t>(d.F));
  std::vector<T> xs(static_cast<size_t>(pl->geometry().x_spectrum_size()));
  pl->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, d.output_shape()), spec(xs));
  auto dxv = out_view(dx, d.input_shape());
  auto dwv = out_view(dw, d.weight_shape());
  pl->backward_with_weight(pr.gv(), spec(xs), pr.wv(), &dxv, &dwv, db.data());
  recorded r;
  {
    std::lock_guard<std::mutex> lock(calls_mutex);
    recording = false;
    r.calls = calls;
    r.most_blas_threads = most_blas_threads;
  }
  r.omp_default_after = omp_get_max_threads();
  blfft::set_num_threads(0);
  omp_set_num_threads(caller_default);
  return r;
}

template <class T>
void same_calls_for_any_thread_count(const conv_params& p, bool energy = false) {
  SCOPED_TRACE(name_of(p) + (energy ? " energy" : ""));
  // The energy search starts where the layer's last search landed (fewer transforms from the
  // second call on): one call first, so that every recorded one starts from the same place.
  if (energy) calls_of<T>(p, energy, 1);
  const auto one = calls_of<T>(p, energy, 1);
  ASSERT_FALSE(one.calls.empty()) << "no BLAS call recorded: the recorder is not in the call path";
  for (int threads : {1, 2, 3}) {
    const auto other = threads == 1 ? one : calls_of<T>(p, energy, threads);
    EXPECT_EQ(other.calls, one.calls)
        << "BLAS calls differ between 1 and " << threads << " threads\nonly with 1:\n"
        << describe(minus(one.calls, other.calls)) << "only with " << threads << ":\n"
        << describe(minus(other.calls, one.calls));
    // Before the fix (src/blas.cpp), 4 with 1 blfft thread: the calls outside parallel regions
    // ran on the caller's OpenMP default under OpenBLAS's OpenMP flavour.
    EXPECT_EQ(other.most_blas_threads, 1)
        << "with " << threads << " threads, an OpenMP-threaded BLAS would split a call";
    EXPECT_EQ(other.omp_default_after, 4) << "the caller's OpenMP default was changed";
  }
}

// The layers of tests/py/test_threads.py: the FCN's 256->128 k3 (mixes from the taps) and a
// ResNet-like 32@32x32 3x3; then 1-channel inputs (the first layers of the FCN and of an image
// network), a strided layer, energy mode, and float64.
TEST(BlasCalls, FcnLayerIsTheSameForAnyThreadCount) {
  same_calls_for_any_thread_count<float>(make1d(16, 256, 128, 500, 3, 1, 1));
}

TEST(BlasCalls, ResnetLayerIsTheSameForAnyThreadCount) {
  same_calls_for_any_thread_count<float>(make2d(4, 32, 32, {32, 32}, {3, 3}, {1, 1}, {1, 1}));
  same_calls_for_any_thread_count<float>(make2d(8, 32, 64, {32, 32}, {3, 3}, {2, 2}, {1, 1}));
}

TEST(BlasCalls, OneChannelInputsAreTheSameForAnyThreadCount) {
  same_calls_for_any_thread_count<float>(make1d(16, 1, 128, 500, 8, 1, 4));
  same_calls_for_any_thread_count<float>(make2d(32, 1, 16, {28, 28}, {5, 5}, {1, 1}, {2, 2}));
}

TEST(BlasCalls, EnergyModeIsTheSameForAnyThreadCount) {
  same_calls_for_any_thread_count<float>(make2d(8, 16, 16, {32, 32}, {3, 3}, {1, 1}, {1, 1}), true);
  same_calls_for_any_thread_count<float>(make1d(16, 1, 128, 500, 8, 1, 4), true);
}

TEST(BlasCalls, DoublePrecisionIsTheSameForAnyThreadCount) {
  same_calls_for_any_thread_count<double>(make2d(4, 32, 32, {32, 32}, {3, 3}, {1, 1}, {1, 1}));
}

}  // namespace
}  // namespace bt
