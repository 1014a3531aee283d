// Hostile inputs and hostile conditions (issue #14): sizes that wrap size_t, allocation failures
// anywhere in a call, caller buffers that end at a page boundary, set_num_threads changed while
// other threads compute, bitwise determinism across thread counts, huge paddings, memory given
// back. Each test here failed (or crashed) before its fix.

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "fft.hpp"  // src/: fft_cache_size
#include "harness.hpp"
#include "oracles.hpp"
#include "parallel.hpp"  // src/: parallel_for
#include "workspace.hpp"

// ---- fault injection: the test executable's aligned_alloc replaces the C library's for the whole
// process (libblfft's calls resolve to it), and fails the N-th call after arming and the one
// after it (the pool retries a failed allocation once, after freeing its idle buffers).
namespace {
std::atomic<long> fail_at{0};  // 0: disarmed; else calls are failed while it counts 2 and 1
std::atomic<long> failures{0};
}  // namespace

extern "C" void* aligned_alloc(size_t alignment, size_t size) {
  const long left = fail_at.load();
  if (left > 0) {
    const long now = fail_at.fetch_sub(1);
    if (now <= 2) {
      ++failures;
      return nullptr;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size) != 0)
    return nullptr;
  return p;
}

// Debian's BLIS picks its kernels by CPU; its haswell sgemm (on any AVX2 CPU) reads past the end
// of C for small m, the bug the page-boundary tests below guard against. BLIS reads
// BLIS_ARCH_TYPE when first called, after this runs (3 = haswell in BLIS 0.9's arch_t).
namespace {
const bool blis_haswell = [] {
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    setenv("BLIS_ARCH_TYPE", "3", 0);
  return true;
}();
}  // namespace

namespace bt {
namespace {

bool is_code(const blfft::error& e, blfft::error_code c) {
  return e.code() == c;
}

// ---- sizes ------------------------------------------------------------------------------------

TEST(Reliability, SpectrumBytesThatWrapSizeTAreRefused) {
  // From Python: x = torch.zeros(1,1,1).expand(1, 2**51, 2048), w expanded likewise, stride 2048,
  // rate 0.0005: every int64 count fits, the float32 byte count wraps size_t, and the 1-byte
  // buffer it gave was then written in full (heap-buffer-overflow, SIGSEGV).
  const conv_params p = make1d(1, i64(1) << 51, 1, 2048, 2, 2048);
  try {
    blfft::plan<float> pl(p, compression::rate(0.0005));
    FAIL() << "a plan whose spectra cannot exist was made";
  } catch (const blfft::error& e) {
    EXPECT_TRUE(is_code(e, blfft::error_code::out_of_memory)) << e.what();
    EXPECT_NE(std::string(e.what()).find("spectrum"), std::string::npos) << e.what();
  }
  EXPECT_THROW(blfft::detail::checked_bytes(SIZE_MAX / 2, 4, "x"), blfft::error);
  EXPECT_THROW(blfft::detail::aligned_buffer<float>(SIZE_MAX / 3), blfft::error);
}

TEST(Reliability, BufferCapRefusesBeforeAllocating) {
  const conv_params p = make2d(2, 3, 4, {9, 9}, {3, 3}, {1, 1}, {1, 1});
  problem<float> pr(p, 3);
  const dims d = pr.d;
  const std::size_t before = blfft::get_max_buffer_bytes();
  EXPECT_GT(before, std::size_t(1) << 28);  // the default: this machine's memory
  blfft::set_max_buffer_bytes(1024);
  try {
    blfft::plan<float> pl(p, compression::none());
    FAIL() << "no error for spectra above the cap";
  } catch (const blfft::error& e) {
    EXPECT_TRUE(is_code(e, blfft::error_code::out_of_memory)) << e.what();
    EXPECT_NE(std::string(e.what()).find("set_max_buffer_bytes"), std::string::npos) << e.what();
  }
  blfft::set_max_buffer_bytes(0);  // back to the default
  EXPECT_EQ(blfft::get_max_buffer_bytes(), before);
  blfft::plan<float> pl(p, compression::none());
  auto y = nan_filled<float>(d.output_size());
  pl.forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, d.output_shape()));
  EXPECT_TRUE(rel_close("forward after the cap was lifted", y,
                        direct_forward(p, pr.x, pr.w, pr.b.data()), tol<float>::direct));
}

// ---- allocation failures ------------------------------------------------------------------------

// Before: per-thread scratch was allocated inside OpenMP regions, and a std::bad_alloc there
// called std::terminate (2 of 9 allocations of a 1D forward+backward aborted the process).
TEST(Reliability, AllocationFailureAnywhereIsAnExceptionAndTheNextCallWorks) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "ASan interposes aligned_alloc itself";
#endif
  blfft::set_num_threads(2);
  for (const auto& p :
       {make1d(4, 8, 8, 300, 5, 1, 2), make2d(4, 8, 8, {16, 16}, {3, 3}, {1, 1}, {1, 1})}) {
    problem<float> pr(p, 11);
    const dims d = pr.d;
    const reference ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
    const auto run = [&]() {
      blfft::plan<float> pl(p, compression::none());
      auto y = nan_filled<float>(d.output_size());
      pl.forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, d.output_shape()));
      auto dx = nan_filled<float>(d.input_size());
      auto dw = nan_filled<float>(d.weight_size());
      auto dxv = out_view(dx, d.input_shape());
      auto dwv = out_view(dw, d.weight_shape());
      pl.backward_with_weight(pr.gv(), nullptr, pr.wv(), &dxv, nullptr, nullptr);
      std::vector<float> xs(static_cast<size_t>(pl.geometry().x_spectrum_size()));
      pl.input_spectrum(pr.xv(), spec(xs));
      pl.weight_grad(pr.gv(), spec(xs), dwv);
      return std::make_tuple(y, dx, dw);
    };
    int thrown = 0;
    for (long n = 1; n <= 40; ++n) {
      blfft::release_memory();  // every call allocates afresh
      failures = 0;
      fail_at = n + 1;  // calls n and n + 1 fail
      try {
        run();
      } catch (const std::bad_alloc&) {
        ++thrown;
      } catch (const blfft::error& e) {
        EXPECT_TRUE(is_code(e, blfft::error_code::out_of_memory)) << e.what();
        ++thrown;
      }
      fail_at = 0;
      if (failures == 0) break;  // the call made fewer than n allocations: all were tried
    }
    EXPECT_GE(thrown, 3) << name_of(p);
    const auto [y, dx, dw] = run();
    EXPECT_TRUE(rel_close("forward after failures", y, ref.y, tol<float>::direct));
    EXPECT_TRUE(rel_close("grad_input after failures", dx, ref.dx, tol<float>::direct));
    EXPECT_TRUE(rel_close("grad_weight after failures", dw, ref.dw, tol<float>::direct));
  }
  blfft::set_num_threads(0);
}

TEST(Reliability, ExceptionInAParallelRegionReachesTheCaller) {
  std::atomic<int> ran{0};
  EXPECT_THROW(blfft::detail::parallel_for(64, 4, true,
                                           [&](int64_t i) {
                                             ++ran;
                                             if (i % 7 == 3) throw std::bad_alloc();
                                           }),
               std::bad_alloc);
  EXPECT_GT(ran.load(), 0);
}

// ---- caller buffers that end at a page boundary
// ---------------------------------------------------

/// n elements of T whose last one ends exactly where an inaccessible page starts: reading or
/// writing one element past the end faults.
template <class T>
class guarded {
 public:
  explicit guarded(i64 n) : n_(static_cast<size_t>(n)) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = n_ * sizeof(T);
    pages_ = (bytes + page - 1) / page + 1;
    base_ = static_cast<char*>(
        mmap(nullptr, pages_ * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (base_ == MAP_FAILED) throw std::runtime_error("mmap failed");
    char* guard = base_ + (pages_ - 1) * page;
    if (mprotect(guard, page, PROT_NONE) != 0) throw std::runtime_error("mprotect failed");
    data_ = reinterpret_cast<T*>(guard - bytes);
    std::fill(data_, data_ + n_, std::numeric_limits<T>::quiet_NaN());
    page_ = page;
  }
  ~guarded() { munmap(base_, pages_ * page_); }
  guarded(const guarded&) = delete;
  T* data() { return data_; }
  size_t size() const { return n_; }
  std::vector<T> values() const { return std::vector<T>(data_, data_ + n_); }
  void fill(const std::vector<T>& v) { std::copy(v.begin(), v.end(), data_); }

 private:
  size_t n_, pages_ = 0, page_ = 0;
  char* base_ = nullptr;
  T* data_ = nullptr;
};

// Before: the 1D synthesis let BLAS write straight into the caller's buffer, and Debian's BLIS
// 0.9.0 sgemm_('N', 'T', m <= 3, ...) reads past the end of C: weight_grad into a correctly
// sized buffer ending at a page boundary segfaulted.
template <class T>
void every_pass_into_guarded_buffers() {
  const std::vector<conv_params> layers = {
      make1d(1, 1, 1, 40, 3),          make1d(2, 3, 2, 33, 2, 1, 1),
      make1d(3, 1, 1, 64, 1),          make1d(1, 2, 1, 17, 3, 2, 1, 2),
      make2d(1, 1, 1, {6, 6}, {3, 3}), make2d(2, 2, 3, {7, 5}, {2, 3}, {2, 1}, {1, 1}),
  };
  for (const auto& p : layers)
    for (double rate : {0.0, 0.5}) {
      for (auto method : {blfft::transform_method::matmul, blfft::transform_method::fft}) {
        SCOPED_TRACE(name_of(p) + " rate " + std::to_string(rate));
        blfft::plan_options o;
        o.method = method;
        blfft::plan<T> pl(p, compression::rate(rate), o);
        const auto& geo = pl.geometry();
        problem<T> pr(p, 5);
        const dims d = pr.d;
        guarded<T> x(d.input_size()), w(d.weight_size()), b(d.F), g(d.output_size());
        x.fill(pr.xt);
        w.fill(pr.wt);
        b.fill(pr.bt);
        g.fill(pr.gt);
        guarded<T> y(d.output_size()), xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
        guarded<T> dx(d.input_size()), dw(d.weight_size()), db(d.F), dw2(d.weight_size());
        const auto xv = tensor_view<const T>::contiguous(x.data(), d.input_shape());
        const auto wv = tensor_view<const T>::contiguous(w.data(), d.weight_shape());
        const auto gv = tensor_view<const T>::contiguous(g.data(), d.output_shape());
        auto yv = tensor_view<T>::contiguous(y.data(), d.output_shape());
        auto dxv = tensor_view<T>::contiguous(dx.data(), d.input_shape());
        auto dwv = tensor_view<T>::contiguous(dw.data(), d.weight_shape());
        auto dw2v = tensor_view<T>::contiguous(dw2.data(), d.weight_shape());
        pl.forward(xv, wv, b.data(), yv, spec(xs), spec(ws));
        pl.backward(gv, spec(xs), spec(ws), &dxv, &dwv, db.data());
        pl.weight_grad(gv, spec(xs), dw2v);
        if (rate == 0.0) {
          const reference ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
          EXPECT_TRUE(rel_close("forward", y.values(), ref.y, tol<T>::direct));
          EXPECT_TRUE(rel_close("grad_input", dx.values(), ref.dx, tol<T>::direct));
          EXPECT_TRUE(rel_close("grad_weight", dw.values(), ref.dw, tol<T>::direct));
          EXPECT_TRUE(rel_close("weight_grad", dw2.values(), ref.dw, tol<T>::direct));
          EXPECT_TRUE(rel_close("grad_bias", db.values(), ref.db, tol<T>::direct));
        }
      }
    }
}

TEST(Reliability, EveryPassIntoBuffersEndingAtAPageBoundaryFloat) {
  every_pass_into_guarded_buffers<float>();
}
TEST(Reliability, EveryPassIntoBuffersEndingAtAPageBoundaryDouble) {
  every_pass_into_guarded_buffers<double>();
}

// Found in review: the 1D analysis wrote a chunk's imaginary parts straight into the spectrum
// unless it was the last chunk; with a last chunk of fewer images than BLIS over-reads, the read
// past an earlier chunk's last column ran off the end of the caller's spectrum (SIGSEGV).
TEST(Reliability, SpectraOfManyChunksIntoBuffersEndingAtAPageBoundary) {
  for (int threads : {2, 4})
    for (i64 C : {3, 5}) {
      SCOPED_TRACE("threads " + std::to_string(threads) + " C " + std::to_string(C));
      const conv_params p = make1d(1, C, 1, 20000, 3);
      problem<float> pr(p, 9);
      blfft::set_num_threads(1);
      blfft::plan<float> one(p, compression::rate(0.995));
      blfft::set_num_threads(threads);
      blfft::plan<float> pl(p, compression::rate(0.995));
      const i64 n = pl.geometry().x_spectrum_size();
      std::vector<float> ref(static_cast<size_t>(n));
      one.input_spectrum(pr.xv(), spec(ref));
      guarded<float> xs(n);
      pl.input_spectrum(pr.xv(), spec(xs));
      EXPECT_TRUE(
          rel_close("input spectrum", xs.values(), widen(ref), 5e-5));  // float sums of 20000
    }
  blfft::set_num_threads(0);
}

// ---- threads
// -------------------------------------------------------------------------------------

// A 1D layer that mixes from the weight taps, large enough for its parallel regions.
conv_params taps_layer() {
  return make1d(8, 32, 32, 250, 3, 1, 1);
}
blfft::plan_options taps_options(bool deterministic) {
  blfft::plan_options o;
  o.mixing = blfft::weight_mixing::taps;
  o.deterministic = deterministic;
  return o;
}

// Before: weight_grad_taps sized its per-thread accumulators with one thread_count() and ran
// its region with another: set_num_threads on another thread gave wrong weight gradients
// (relative error 0.5) or wrote past the accumulators.
TEST(Reliability, SetNumThreadsWhileOtherThreadsRunTheTapsPath) {
  const conv_params p = taps_layer();
  problem<float> pr(p, 21);
  const dims d = pr.d;
  const auto pl = blfft::get_plan<float>(p, compression::rate(0.5), taps_options(false));
  std::vector<float> xs(static_cast<size_t>(pl->geometry().x_spectrum_size()));
  pl->input_spectrum(pr.xv(), spec(xs));
  const auto weight_grad = [&]() {
    std::vector<float> dw(static_cast<size_t>(d.weight_size()));
    pl->weight_grad(pr.gv(), spec(xs), out_view(dw, d.weight_shape()));
    return dw;
  };
  blfft::set_num_threads(1);
  const vec ref = widen(weight_grad());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, runs{0};
  std::thread toggler([&] {
    for (int n = 0; !stop.load(); n = (n + 1) % 4) blfft::set_num_threads(1 + n);
  });
  std::vector<std::thread> workers;
  for (int t = 0; t < 3; ++t)
    workers.emplace_back([&] {
      for (int i = 0; i < 60; ++i) {
        if (rel_l2(widen(weight_grad()), ref) > 1e-5) ++bad;
        ++runs;
      }
    });
  for (auto& th : workers) th.join();
  stop = true;
  toggler.join();
  blfft::set_num_threads(0);
  EXPECT_EQ(bad.load(), 0) << "of " << runs.load() << " weight gradients";
}

// plan_options::deterministic: bitwise the same results for any thread count, on every path
// (taps and spectrum mixing, matmul and FFT transforms).
template <class T>
void bitwise_for_any_thread_count(const conv_params& p, blfft::plan_options o) {
  SCOPED_TRACE(name_of(p));
  o.deterministic = true;
  problem<T> pr(p, 8);
  const dims d = pr.d;
  const auto run = [&](int threads) {
    blfft::set_num_threads(threads);
    blfft::clear_plan_cache();  // plans made under this thread count
    const auto pl = blfft::get_plan<T>(p, compression::rate(0.5), o);
    std::vector<T> y(static_cast<size_t>(d.output_size())), dx(static_cast<size_t>(d.input_size())),
        dw(static_cast<size_t>(d.weight_size())), db(static_cast<size_t>(d.F));
    std::vector<T> xs(static_cast<size_t>(pl->geometry().x_spectrum_size()));
    pl->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, d.output_shape()), spec(xs));
    auto dxv = out_view(dx, d.input_shape());
    auto dwv = out_view(dw, d.weight_shape());
    pl->backward_with_weight(pr.gv(), spec(xs), pr.wv(), &dxv, &dwv, db.data());
    std::vector<T> all;
    for (const auto* v : {&y, &dx, &dw, &db}) all.insert(all.end(), v->begin(), v->end());
    return all;
  };
  const auto one = run(1);
  for (int threads : {2, 3, 5, 1}) {
    const auto other = run(threads);
    ASSERT_EQ(other.size(), one.size());
    EXPECT_EQ(std::memcmp(other.data(), one.data(), one.size() * sizeof(T)), 0)
        << "results differ between 1 and " << threads << " threads";
  }
  blfft::set_num_threads(0);
}

TEST(Reliability, DeterministicPlansGiveBitwiseIdenticalResultsForAnyThreadCount) {
  bitwise_for_any_thread_count<float>(taps_layer(), taps_options(true));
  bitwise_for_any_thread_count<double>(taps_layer(), taps_options(true));
  blfft::plan_options spectrum;
  spectrum.mixing = blfft::weight_mixing::spectrum;
  bitwise_for_any_thread_count<float>(taps_layer(), spectrum);
  bitwise_for_any_thread_count<float>(make2d(8, 16, 16, {20, 20}, {3, 3}, {1, 1}, {1, 1}), {});
  blfft::plan_options fft;
  fft.method = blfft::transform_method::fft;
  bitwise_for_any_thread_count<float>(make2d(8, 16, 16, {20, 20}, {3, 3}, {1, 1}, {1, 1}), fft);
  bitwise_for_any_thread_count<double>(make1d(16, 8, 8, 700, 9, 2, 4), fft);
}

// ---- grids and paddings
// ---------------------------------------------------------------------------

TEST(Reliability, FastSizeIsFoundDirectly) {
  for (i64 n = 1; n <= 20000; ++n) ASSERT_EQ(blfft::fast_size(n), ref_fast_size(n)) << n;
  // Before: a scan upward one integer at a time (minutes for padding 2^40).
  const auto t0 = std::chrono::steady_clock::now();
  for (i64 n : {i64(1) << 60, (i64(1) << 60) - 1, (i64(1) << 41) + 3, i64(1000000007)}) {
    const i64 m = blfft::fast_size(n);
    EXPECT_GE(m, n);
    EXPECT_TRUE(is_7smooth(m)) << m;
  }
  EXPECT_EQ(blfft::fast_size(i64(1) << 60), i64(1) << 60);
  EXPECT_EQ(blfft::fast_size(1000000007), ref_fast_size(1000000007));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
}

TEST(Reliability, GridsAboveTheCapAreRefusedAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  const conv_params huge = make2d(1, 1, 1, {8, 8}, {3, 3}, {1, 1}, {i64(1) << 40, i64(1) << 40});
  try {
    (void)blfft::make_geometry(huge);
    FAIL() << "no error for a 2^41 x 2^41 grid";
  } catch (const blfft::error& e) {
    EXPECT_TRUE(is_code(e, blfft::error_code::invalid_argument)) << e.what();
    EXPECT_NE(std::string(e.what()).find("max_grid_points"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)blfft::make_geometry(make1d(1, 1, 1, 10, 3, 1, blfft::max_grid_points)),
               blfft::error);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  // The conv1d of 10 samples with padding 2^26 (113 s and 22.7 GiB before): refused.
  EXPECT_THROW((void)blfft::make_geometry(make1d(1, 1, 1, 10, 3, 1, i64(1) << 26)), blfft::error);
  // Below the cap is a valid layer.
  EXPECT_NO_THROW((void)blfft::make_geometry(make1d(1, 1, 1, 10, 3, 1, i64(1) << 24)));
}

// Before: the output size ceil(full_out / stride) was computed as (full_out + stride - 1) /
// stride, which wraps for strides near 2^63: a zero-sized output, then SIGFPE in the transforms.
TEST(Reliability, HugeStridesGiveOneOutputPerAxis) {
  const i64 huge = std::numeric_limits<i64>::max();
  const conv_params p = make2d(2, 2, 1, {3, 1}, {1, 1}, {huge, huge});
  const auto g = blfft::make_geometry(p, compression::none());
  EXPECT_EQ(g.output[0], 1);
  EXPECT_EQ(g.output[1], 1);
  problem<float> pr(p, 4);
  const dims d = pr.d;
  ASSERT_EQ(d.Ho, 1);
  blfft::plan<float> pl(p, compression::none());
  auto y = nan_filled<float>(d.output_size());
  pl.forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, d.output_shape()));
  std::vector<float> ws(static_cast<size_t>(g.w_spectrum_size()));
  pl.weight_spectrum(pr.wv(), spec(ws));
  const reference ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
  EXPECT_TRUE(rel_close("forward", y, ref.y, tol<float>::direct));
  for (i64 s : {i64(2), huge / 2, huge - 1, huge})
    EXPECT_EQ(blfft::make_geometry(make1d(1, 1, 1, 7, 2, s)).output[1], s >= 6 ? 1 : 3) << s;
}

// ---- memory given back
// ----------------------------------------------------------------------------

TEST(Reliability, PoolKeepsBoundedIdleMemoryAndReleaseGivesEverythingBack) {
  const std::size_t limit = blfft::get_max_idle_bytes();
  EXPECT_EQ(limit, std::size_t(128) << 20);
  const conv_params p = make2d(8, 32, 32, {32, 32}, {3, 3}, {1, 1}, {1, 1});
  problem<float> pr(p, 2);
  const dims d = pr.d;
  const auto run = [&]() {
    const auto pl = blfft::get_plan<float>(p, compression::none());
    std::vector<float> y(static_cast<size_t>(d.output_size())),
        dx(static_cast<size_t>(d.input_size()));
    pl->forward(pr.xv(), pr.wv(), nullptr, out_view(y, d.output_shape()));
    auto dxv = out_view(dx, d.input_shape());
    pl->backward_with_weight(pr.gv(), nullptr, pr.wv(), &dxv, nullptr, nullptr);
  };
  run();
  EXPECT_GT(blfft::idle_bytes(), 0u);
  EXPECT_LE(blfft::idle_bytes(), limit);
  blfft::set_max_idle_bytes(1 << 20);  // smaller than this layer's spectra
  EXPECT_LE(blfft::idle_bytes(), std::size_t(1) << 20);
  run();
  EXPECT_LE(blfft::idle_bytes(), std::size_t(1) << 20);
  blfft::set_max_idle_bytes(limit);
  run();
  EXPECT_GT(blfft::plan_cache_size(), 0u);
  blfft::release_memory();
  EXPECT_EQ(blfft::idle_bytes(), 0u);
  EXPECT_EQ(blfft::plan_cache_size(), 0u);
  run();  // and everything works afterwards
}

// Found in review: the plan cache drops plans nobody holds once it has 256, but their FFT plans
// stayed in the FFT cache for good (many input lengths, or energy re-selection per batch).
TEST(Reliability, FftPlansOfDroppedPlansAreGivenBack) {
  blfft::release_memory();
  blfft::plan_options fft;
  fft.method = blfft::transform_method::fft;
  // 700 plans, each with a grid of its own (so FFT plans of their own: r2c and c2r rows).
  for (i64 i = 0; i < 700; ++i)
    (void)blfft::get_plan<float>(with_grid(make1d(1, 1, 1, 100, 3), {1, 1000 + i}),
                                 compression::none(), fft);
  const std::size_t plans = blfft::plan_cache_size();
  const std::size_t ffts = blfft::detail::fft_cache_size();
  EXPECT_LE(plans, 256u + 1);
  // At most a few FFT plans per cached plan and per plan made since the last trim (before: all
  // 700 plans' FFT plans, about 1400).
  EXPECT_LE(ffts, 3 * (plans + 64)) << ffts << " FFT plans for " << plans << " plans";
  blfft::release_memory();
  EXPECT_EQ(blfft::detail::fft_cache_size(), 0u);
}

// ---- energy selection on non-finite inputs
// --------------------------------------------------------

TEST(Reliability, EnergySelectionOnANonFiniteInputSaysSo) {
  const conv_params p = make2d(1, 2, 2, {8, 8}, {3, 3}, {1, 1}, {1, 1});
  const dims d = dims_of(p);
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x(static_cast<size_t>(d.input_size()), 1.0f);
    x[5] = bad;
    try {
      (void)blfft::select_by_energy(p, in_view(x, d.input_shape()), 0.9);
      FAIL() << "no error for a non-finite input";
    } catch (const blfft::error& e) {
      EXPECT_TRUE(is_code(e, blfft::error_code::invalid_argument)) << e.what();
      EXPECT_NE(std::string(e.what()).find("finite"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace bt
