// Where the CUDA plan's temporaries come from (issue #10 item 3), in the CPU emulation: the
// emulated executor takes scratch from the calling thread's blfft::cuda::scoped_allocator exactly
// as the GPU executor does (cuda/device_executor.hpp), through the public call path of the GPU
// plan (cuda/plan_calls.hpp). Checked: a caller's allocator sees every temporary (spectra,
// transform scratch, cuFFT work areas), on the call's stream and device, and gets every byte back
// before the call returns, also when a call fails half-way; the plan's own tables never come from
// it; scopes are per thread and nest. Also the spectrum_view length checks of the CUDA plan
// (issue #16), against the CPU plan's messages.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "blfft/cuda.hpp"
#include "cuda_emulator.hpp"
#include "oracles.hpp"
#include "plan_calls.hpp"

namespace {

using namespace bt;
namespace cdx = blfft::cuda::detail;
using blfft::cuda::scoped_allocator;

/// Host memory standing in for device memory, with a ledger of everything handed out.
class tracking_allocator final : public blfft::cuda::allocator {
 public:
  struct block {
    std::size_t bytes;
    int device;
    void* stream;
  };
  void* allocate(std::size_t bytes, int device, void* stream) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (fail_after_ >= 0 && allocations_ >= fail_after_)
      throw blfft::error(blfft::error_code::out_of_memory, "tracking_allocator: out of memory");
    // 256-byte aligned, as cudaMalloc's and torch's blocks are.
    void* p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
    if (!p) throw std::bad_alloc();
    live_[p] = {bytes, device, stream};
    ++allocations_;
    allocated_bytes_ += bytes;
    if (stream != expected_stream_) ++wrong_stream_;
    if (device != blfft_standin::current_device()) ++wrong_device_;
    return p;
  }
  void deallocate(void* p, std::size_t bytes, int device, void* stream) noexcept override {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = live_.find(p);
    if (it == live_.end()) {
      ++unknown_frees_;
      return;
    }
    // Given back with the arguments it was allocated with.
    if (it->second.bytes != bytes || it->second.device != device || it->second.stream != stream)
      ++mismatched_frees_;
    freed_bytes_ += bytes;
    live_.erase(it);
    std::free(p);
  }

  void expect_stream(void* s) { expected_stream_ = s; }
  void fail_after(int64_t n) { fail_after_ = n; }
  int64_t allocations() const { return allocations_; }
  std::size_t allocated_bytes() const { return allocated_bytes_; }
  std::size_t freed_bytes() const { return freed_bytes_; }
  std::size_t live_count() const { return live_.size(); }
  /// Every block given back, with the arguments it was allocated with, on the right stream.
  void expect_balanced(const std::string& what) const {
    SCOPED_TRACE(what);
    EXPECT_EQ(live_.size(), 0u) << "blocks still allocated after the call";
    EXPECT_EQ(allocated_bytes_, freed_bytes_);
    EXPECT_EQ(unknown_frees_, 0);
    EXPECT_EQ(mismatched_frees_, 0);
    EXPECT_EQ(wrong_stream_, 0);
    EXPECT_EQ(wrong_device_, 0);
  }

 private:
  std::mutex mutex_;
  std::map<void*, block> live_;
  int64_t allocations_ = 0, fail_after_ = -1;
  std::size_t allocated_bytes_ = 0, freed_bytes_ = 0;
  int64_t unknown_frees_ = 0, mismatched_frees_ = 0, wrong_stream_ = 0, wrong_device_ = 0;
  void* expected_stream_ = nullptr;
};

/// An emulated stream of one device (registered for the executor's stream check).
struct emulated_stream {
  int tag = 0;
  explicit emulated_stream(int device) { blfft_standin::register_stream(&tag, device); }
  ~emulated_stream() { blfft_standin::unregister_stream(&tag); }
  void* get() { return &tag; }
};

using plan_f = cdx::plan_calls<float, host_executor>;

struct layer {
  conv_params p = make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  blfft::geometry geo = blfft::make_geometry(p, compression::rate(0.5));
  problem<float> pr{p, 3};
};

/// forward (spectra not given: the plan makes its own), backward from them, and
/// backward_with_weight; returns every output, concatenated.
std::vector<float> run_calls(const plan_f& pl, const layer& l, void* stream) {
  const dims& d = l.pr.d;
  std::vector<float> y(static_cast<size_t>(d.output_size())), y0 = y;
  std::vector<float> xs(static_cast<size_t>(l.geo.x_spectrum_size()));
  std::vector<float> ws(static_cast<size_t>(l.geo.w_spectrum_size()));
  std::vector<float> dx(static_cast<size_t>(d.input_size())), dx2 = dx;
  std::vector<float> dw(static_cast<size_t>(d.weight_size()));
  pl.forward(l.pr.xv(), l.pr.wv(), l.pr.bt.data(), out_view(y0, d.output_shape()), {}, {}, stream);
  pl.forward(l.pr.xv(), l.pr.wv(), nullptr, out_view(y, d.output_shape()), spec(xs), spec(ws),
             stream);
  const auto dxv = out_view(dx, d.input_shape()), dwv = out_view(dw, d.weight_shape());
  pl.backward(l.pr.gv(), spec(xs), spec(ws), &dxv, &dwv, nullptr, stream);
  const auto dxv2 = out_view(dx2, d.input_shape());
  pl.backward_with_weight(l.pr.gv(), {}, l.pr.wv(), &dxv2, nullptr, nullptr, stream);
  std::vector<float> all;
  for (const auto* v : {&y0, &y, &dx, &dw, &dx2}) all.insert(all.end(), v->begin(), v->end());
  return all;
}

TEST(CudaAllocator, CallerAllocatorSeesEveryTemporaryAndGetsEveryByteBack) {
  const layer l;
  emulated_stream s(0);
  host_executor ex;
  const plan_f pl(ex, l.geo);
  const int64_t tables = ex.stats().live_bytes;  // the plan's own, for its lifetime
  const auto want = run_calls(pl, l, s.get());   // no scope: the emulator's heap
  const auto heap_temps = ex.stats().temps;
  ASSERT_GT(heap_temps, 0);

  tracking_allocator a;
  a.expect_stream(s.get());
  std::vector<float> got;
  {
    scoped_allocator use(a);
    got = run_calls(pl, l, s.get());
  }
  // Every temporary of the calls (one per make_temp, cuFFT work areas included) came from the
  // caller, and the results are those of the heap run (same computation, same order).
  EXPECT_EQ(a.allocations(), ex.stats().temps - heap_temps);
  EXPECT_GT(a.allocated_bytes(), 0u);
  a.expect_balanced("after forward / backward / backward_with_weight");
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "output element " << i;
  EXPECT_EQ(ex.stats().live_bytes, tables);

  // energy_map takes its temporaries from the scope too.
  tracking_allocator e;
  e.expect_stream(s.get());
  {
    scoped_allocator use(e);
    const auto map = cdx::energy_map<float>(ex, l.p, l.pr.xv(), s.get());
    EXPECT_EQ(map, cdx::energy_map<float>(ex, l.p, l.pr.xv(), s.get()));
  }
  EXPECT_GT(e.allocations(), 0);
  e.expect_balanced("after energy_map");
}

TEST(CudaAllocator, PlanTablesNeverComeFromTheCallAllocator) {
  const layer l;
  tracking_allocator a;
  scoped_allocator use(a);
  host_executor ex;
  {
    const plan_f pl(ex, l.geo);  // made inside the scope: its index tables are the plan's own
    EXPECT_EQ(a.allocations(), 0);
    run_calls(pl, l, nullptr);
    EXPECT_GT(a.allocations(), 0);
    EXPECT_EQ(a.live_count(), 0u) << "memory held by the plan between calls";
  }
  a.expect_balanced("after the plan's destruction");
}

TEST(CudaAllocator, FailedAllocationGivesBackWhatTheCallHad) {
  const layer l;
  host_executor ex;
  const plan_f pl(ex, l.geo);
  const int64_t tables = ex.stats().live_bytes;
  tracking_allocator probe;
  {
    scoped_allocator use(probe);
    run_calls(pl, l, nullptr);
  }
  ASSERT_GT(probe.allocations(), 2);
  // Fail at every allocation of the sequence in turn: the error reaches the caller unchanged
  // and nothing stays allocated.
  for (int64_t n = 0; n < probe.allocations(); ++n) {
    SCOPED_TRACE("allocation " + std::to_string(n) + " fails");
    tracking_allocator a;
    a.fail_after(n);
    scoped_allocator use(a);
    try {
      run_calls(pl, l, nullptr);
      FAIL() << "no error from the failing allocator";
    } catch (const blfft::error& e) {
      EXPECT_EQ(e.code(), blfft::error_code::out_of_memory) << e.what();
    }
    a.expect_balanced("after the failed call");
  }
  EXPECT_EQ(ex.stats().live_bytes, tables);
}

TEST(CudaAllocator, ScopesArePerThreadAndNest) {
  EXPECT_EQ(cdx::scoped_allocator_or_null(), nullptr);
  tracking_allocator outer, inner;
  {
    scoped_allocator a(outer);
    EXPECT_EQ(cdx::scoped_allocator_or_null(), &outer);
    {
      scoped_allocator b(inner);
      EXPECT_EQ(cdx::scoped_allocator_or_null(), &inner);
    }
    EXPECT_EQ(cdx::scoped_allocator_or_null(), &outer);
    // Another thread's calls are not affected by this thread's scope.
    const layer l;
    host_executor ex;
    const plan_f pl(ex, l.geo);
    std::thread t([&] {
      EXPECT_EQ(cdx::scoped_allocator_or_null(), nullptr);
      run_calls(pl, l, nullptr);
    });
    t.join();
    EXPECT_EQ(outer.allocations(), 0);
    EXPECT_GT(ex.stats().temps, 0);
  }
  EXPECT_EQ(cdx::scoped_allocator_or_null(), nullptr);
}

/// The CUDA plan's spectrum_view checks (issue #16) give the CPU plan's errors, word for word.
TEST(CudaPlanSpectra, WrongLengthsAreRefusedAsByTheCpuPlan) {
  const layer l;
  const dims& d = l.pr.d;
  host_executor ex;
  const plan_f gpu(ex, l.geo);
  const blfft::plan<float> cpu(l.geo);
  const int64_t xs_n = l.geo.x_spectrum_size(), ws_n = l.geo.w_spectrum_size();
  std::vector<float> xs(static_cast<size_t>(xs_n + 1)), ws(static_cast<size_t>(ws_n + 1));
  std::vector<float> y(static_cast<size_t>(d.output_size())),
      dx(static_cast<size_t>(d.input_size()));
  const auto yv = out_view(y, d.output_shape());
  const auto dxv = out_view(dx, d.input_shape());
  const blfft::spectrum_view<float> xs_short(xs.data(), xs_n - 1), xs_long(xs.data(), xs_n + 1);
  const blfft::spectrum_view<float> ws_ok(ws.data(), ws_n), ws_short(ws.data(), ws_n - 2);

  const auto same_error = [](const char* what, auto&& on_gpu, auto&& on_cpu) {
    SCOPED_TRACE(what);
    std::string gpu_msg, cpu_msg;
    try {
      on_gpu();
      ADD_FAILURE() << "the CUDA plan accepted a spectrum of the wrong length";
    } catch (const blfft::error& e) {
      EXPECT_EQ(e.code(), blfft::error_code::invalid_argument) << e.what();
      gpu_msg = e.what();
    }
    try {
      on_cpu();
      ADD_FAILURE() << "the CPU plan accepted a spectrum of the wrong length";
    } catch (const blfft::error& e) {
      cpu_msg = e.what();
    }
    EXPECT_EQ(gpu_msg, cpu_msg);
  };
  same_error(
      "forward, x_spectrum too long",
      [&] { gpu.forward(l.pr.xv(), l.pr.wv(), nullptr, yv, xs_long, ws_ok, nullptr); },
      [&] { cpu.forward(l.pr.xv(), l.pr.wv(), nullptr, yv, xs_long, ws_ok); });
  same_error(
      "input_spectrum, too short", [&] { gpu.input_spectrum(l.pr.xv(), xs_short, nullptr); },
      [&] { cpu.input_spectrum(l.pr.xv(), xs_short); });
  same_error(
      "weight_spectrum, too short", [&] { gpu.weight_spectrum(l.pr.wv(), ws_short, nullptr); },
      [&] { cpu.weight_spectrum(l.pr.wv(), ws_short); });
  same_error(
      "forward_spectra", [&] { gpu.forward_spectra(xs_long, ws_ok, nullptr, yv, nullptr); },
      [&] { cpu.forward_spectra(xs_long, ws_ok, nullptr, yv); });
  // A negative length is a wrong length on both (the CPU plan once read it as "unknown").
  const blfft::spectrum_view<const float> ws_negative(ws.data(), -1);
  same_error(
      "input_grad, negative length", [&] { gpu.input_grad(l.pr.gv(), ws_negative, dxv, nullptr); },
      [&] { cpu.input_grad(l.pr.gv(), ws_negative, dxv); });
  same_error(
      "input_grad", [&] { gpu.input_grad(l.pr.gv(), ws_short, dxv, nullptr); },
      [&] { cpu.input_grad(l.pr.gv(), ws_short, dxv); });
  same_error(
      "backward_with_weight",
      [&] {
        gpu.backward_with_weight(l.pr.gv(), xs_short, l.pr.wv(), &dxv, nullptr, nullptr, nullptr);
      },
      [&] { cpu.backward_with_weight(l.pr.gv(), xs_short, l.pr.wv(), &dxv, nullptr, nullptr); });
  EXPECT_EQ(ex.stats().kernels, 0) << "work was enqueued before the length check";
}

// ---- arena_allocator: what the Python module puts between a call and torch's allocator ----------

TEST(CudaArena, ServesBlocksLastInFirstOutAndGivesEverySlabBack) {
  tracking_allocator base;
  int other_stream = 0;
  {
    blfft::cuda::arena_allocator arena(base, 4096);
    void* a = arena.allocate(100, 0, nullptr);
    void* b = arena.allocate(1000, 0, nullptr);
    EXPECT_EQ(base.allocations(), 1) << "both fit the first slab of 4096 bytes";
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a) % 256, 0u);
    EXPECT_EQ(static_cast<char*>(b) - static_cast<char*>(a), 256) << "blocks start at 256 bytes";
    EXPECT_EQ(arena.peak_bytes(), 256u + 1024u);
    // Freed out of order: a's space comes back only when b, above it, is freed too.
    arena.deallocate(a, 100, 0, nullptr);
    void* c = arena.allocate(10, 0, nullptr);
    EXPECT_NE(c, a);
    arena.deallocate(c, 10, 0, nullptr);
    arena.deallocate(b, 1000, 0, nullptr);
    EXPECT_EQ(arena.allocate(10, 0, nullptr), a) << "the rewound slab is reused from its start";
    // Too big for what is left: a second slab, at least twice the first.
    void* big = arena.allocate(5000, 0, nullptr);
    EXPECT_EQ(base.allocations(), 2);
    EXPECT_EQ(arena.slab_count(), 2u);
    // Another stream is not the arena's to order: straight to the base allocator and back.
    base.expect_stream(nullptr);
    void* elsewhere = arena.allocate(64, 0, &other_stream);
    EXPECT_EQ(base.allocations(), 3);
    arena.deallocate(elsewhere, 64, 0, &other_stream);
    arena.deallocate(big, 5000, 0, nullptr);
    arena.deallocate(a, 10, 0, nullptr);
    EXPECT_EQ(base.live_count(), 2u) << "slabs are kept until the arena goes";
  }
  EXPECT_EQ(base.live_count(), 0u);
  EXPECT_EQ(base.allocated_bytes(), base.freed_bytes());
}

// Every block has an address of its own: a 0-byte request once took no room in the slab, shared
// its address with the next block, and giving it back gave back that block instead (which the
// next request was then handed while still in use). A request too large to round up to 256
// bytes once wrapped to 0 bytes and was "served" from the slab; it is the base allocator's to
// refuse.
TEST(CudaArena, EveryBlockHasItsOwnAddress) {
  tracking_allocator base;
  {
    blfft::cuda::arena_allocator arena(base, 4096);
    void* empty = arena.allocate(0, 0, nullptr);
    void* live = arena.allocate(512, 0, nullptr);
    EXPECT_NE(empty, live);
    arena.deallocate(empty, 0, 0, nullptr);
    void* next = arena.allocate(512, 0, nullptr);
    EXPECT_NE(next, live) << "a block still in use was handed out again";
    EXPECT_GE(static_cast<char*>(next) - static_cast<char*>(live), 512);
    base.fail_after(base.allocations());  // the base allocator refuses from now on
    EXPECT_THROW(arena.allocate(std::numeric_limits<std::size_t>::max() - 10, 0, nullptr),
                 blfft::error);
    arena.deallocate(next, 512, 0, nullptr);
    arena.deallocate(live, 512, 0, nullptr);
  }
  base.expect_balanced("after the arena");
}

// A slab that cannot be had half-way through a call (the Python module's arena over torch's
// allocator raising torch.OutOfMemoryError): the error reaches the caller, the blocks the call
// had are given back to the arena as the stack unwinds, and the arena gives back every slab.
TEST(CudaArena, ASlabFailingMidCallGivesEverythingBack) {
  const layer l;
  host_executor ex;
  const plan_f pl(ex, l.geo);
  int64_t slabs = 0;
  {
    tracking_allocator base;
    blfft::cuda::arena_allocator arena(base, 256);  // small: the call needs several slabs
    scoped_allocator use(arena);
    run_calls(pl, l, nullptr);
    slabs = base.allocations();
  }
  ASSERT_GT(slabs, 1);
  for (int64_t n = 1; n < slabs; ++n) {
    SCOPED_TRACE("slab " + std::to_string(n) + " fails");
    tracking_allocator base;
    base.fail_after(n);
    {
      blfft::cuda::arena_allocator arena(base, 256);
      scoped_allocator use(arena);
      EXPECT_THROW(run_calls(pl, l, nullptr), blfft::error);
    }
    base.expect_balanced("after the arena");
  }
}

TEST(CudaArena, ACallSizedByThePreviousPeakTakesOneSlab) {
  const layer l;
  emulated_stream s(0);
  host_executor ex;
  const plan_f pl(ex, l.geo);
  const auto want = run_calls(pl, l, s.get());
  tracking_allocator base;
  base.expect_stream(s.get());
  std::size_t peak = 0;
  for (int call = 0; call < 2; ++call) {
    SCOPED_TRACE("call " + std::to_string(call));
    const int64_t before = base.allocations();
    std::vector<float> got;
    {
      blfft::cuda::arena_allocator arena(base, peak);
      scoped_allocator use(arena);
      got = run_calls(pl, l, s.get());
      peak = arena.peak_bytes();
      EXPECT_GT(peak, 0u);
      if (call == 1) EXPECT_EQ(arena.slab_count(), 1u);
    }
    if (call == 1) EXPECT_EQ(base.allocations() - before, 1);
    base.expect_balanced("after the arena");
    ASSERT_EQ(got, want) << "reused arena memory changed a result";
  }
}

}  // namespace
