#pragma once
/// @file cuda_emulator.hpp
/// A host executor for the CUDA pipeline (cuda/pipeline.hpp): it runs the very kernels of
/// cuda/kernels.hpp on the CPU by looping over each launch grid (blocks, then for a shared-memory
/// kernel phase by phase over all threads of the block, which is what __syncthreads guarantees).
///
/// cuFFT: where the build found cufft.h (BLFFT_TEST_CUFFT_STANDIN), the transforms go through the
/// backend's own cuFFT code (cuda/cufft_plans.hpp: the cufftMakePlanMany64 arguments, the plan
/// cache, cufftSetStream / cufftSetWorkArea / cufftExec*) into the cuFFT stand-ins of
/// standin_cufft.cpp, written from NVIDIA's documented semantics; so the backend's translation is
/// what is tested. Without cufft.h, a reference DFT of fft_desc stands in (the older, weaker
/// check).
///
/// Devices: an executor has a device id (default 0). The emulated current device and the devices
/// of registered streams and buffers live in standin_runtime.hpp; every operation checks that its
/// device is current (the pipeline must have called activate()), check_stream refuses a
/// registered stream of another device, check_pointer refuses registered memory of another device
/// with the GPU executor's message.
///
/// Traffic (issue #11), when measure_traffic() was called: every launch's global-memory footprint
/// (the distinct addresses it reads plus the distinct addresses it writes, in bytes: reuse inside
/// a launch is served by L2 and shared memory, so it is not counted twice), through the recorder
/// hook of cuda/traffic.hpp that the kernels' gload / gstore and the stand-ins' operand accesses
/// report to; per launch and summed in counters.
///
/// Coalescing (issue #11), for the address ranges given to watch_coalescing() (the caller's
/// tensors): how many 32-byte sectors each warp request to them touches (coalescing_meter).
///
/// It also checks what a GPU would not report: launch geometry within CUDA's limits and matching
/// the kernel's block size, scratch buffers with guard zones (a write past either end fails the
/// test), scratch, shared memory and registers starting as NaN (so reading something never
/// written shows up as NaN in the results).

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pipeline.hpp"
#include "standin_runtime.hpp"
#if defined(BLFFT_TEST_CUFFT_STANDIN)
// The stand-ins' cuBLAS declarations first: cublas_handles.hpp then takes them.
#include "standin_cublas.hpp"
// (a separate include block, kept in this order)
#include "cublas_handles.hpp"
#include "cufft_plans.hpp"
#endif

namespace bt {

namespace cdx = blfft::cuda::detail;

/// Whether the emulation's cuFFT calls go through the backend's cuFFT code and the stand-ins.
constexpr bool cufft_standins_linked =
#if defined(BLFFT_TEST_CUFFT_STANDIN)
    true;
#else
    false;
#endif

/// What device_guard does on a GPU, on the emulated current device.
class emulated_device_guard {
 public:
  explicit emulated_device_guard(int device, bool /*nothrow*/ = false)
      : previous_(blfft_standin::current_device()) {
    blfft_standin::set_current_device(device);
  }
  ~emulated_device_guard() { blfft_standin::set_current_device(previous_); }
  emulated_device_guard(const emulated_device_guard&) = delete;
  emulated_device_guard& operator=(const emulated_device_guard&) = delete;

 private:
  int previous_;
};

/// The footprint of one launch: distinct addresses read and distinct addresses written, each
/// counted once with the size of its first access. Bitmaps of 4 KiB pages, one bit per 2-byte
/// cell (every global access is 2-, 4- or 8-byte aligned: 16-bit tensors too), looked up through
/// the last page used.
class footprint final : public cdx::traffic_recorder {
 public:
  void read(const void* p, std::size_t bytes) override { reads_.add(p, bytes); }
  void write(const void* p, std::size_t bytes) override { writes_.add(p, bytes); }
  int64_t read_bytes() const { return reads_.bytes; }
  int64_t write_bytes() const { return writes_.bytes; }
  /// The same footprints in whole 32-byte sectors (what DRAM moves at the least): equal to the
  /// bytes when the accesses cover whole sectors, larger where they are scattered.
  int64_t read_sector_bytes() const { return 32 * reads_.sectors; }
  int64_t write_sector_bytes() const { return 32 * writes_.sectors; }
  void clear() {
    reads_.clear();
    writes_.clear();
  }

 private:
  struct address_set {
    static constexpr int page_shift = 12, words = 1 << (page_shift - 1);  // 2-byte cells
    static constexpr int sector_cells = (1 << (page_shift - 5)) / 64;     // after the word bits
    std::unordered_map<uint64_t, size_t> index;  // page number -> pages[...]
    std::vector<std::array<uint64_t, words / 64 + sector_cells>> pages;
    uint64_t last = ~uint64_t(0);
    size_t last_at = 0;
    int64_t bytes = 0, sectors = 0;

    void add(const void* p, std::size_t size) {
      const auto a = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p));
      const uint64_t page = a >> page_shift;
      if (page != last) {
        const auto [it, fresh] = index.emplace(page, pages.size());
        if (fresh) pages.emplace_back().fill(0);
        last = page;
        last_at = it->second;
      }
      const uint64_t w = (a >> 1) & (words - 1), bit = uint64_t(1) << (w % 64);
      uint64_t& cell = pages[last_at][w / 64];
      if (cell & bit) return;
      cell |= bit;
      bytes += static_cast<int64_t>(size);
      const uint64_t sector = (a >> 5) & ((uint64_t(1) << (page_shift - 5)) - 1);
      uint64_t& sc = pages[last_at][words / 64 + sector / 64];
      if (sc & (uint64_t(1) << (sector % 64))) return;
      sc |= uint64_t(1) << (sector % 64);
      ++sectors;
    }
    void clear() {
      index.clear();
      pages.clear();
      last = ~uint64_t(0);
      bytes = sectors = 0;
    }
  };
  address_set reads_, writes_;
};

/// Coalescing of a kernel's accesses to watched address ranges (the caller's tensors), in the
/// emulation's execution order. Model: a warp is 32 consecutive threads of a block (x fastest,
/// as CUDA forms them); the n-th access of a thread to one watched range in one direction within
/// one phase is the same instruction as the n-th access of the other threads of its warp (SIMT
/// lockstep; lanes that make fewer accesses are inactive there), so the warp's n-th accesses are
/// one request. A request costs the distinct 32-byte sectors its lanes touch; its ideal is the
/// fewest sectors that hold its distinct bytes (ceil(bytes / 32)). Where lanes leave a loop at
/// different counts the model misaligns the later requests of a warp, which only overcounts.
class coalescing_meter {
 public:
  struct tally {
    int64_t requests = 0, sectors = 0, ideal = 0;
    double sectors_per_request() const { return requests ? double(sectors) / requests : 0.0; }
    /// Sectors moved over the fewest possible (1 = ideal).
    double excess() const { return ideal ? double(sectors) / ideal : 1.0; }
  };
  struct range {
    uintptr_t begin = 0, end = 0;
    std::string what;
  };

  explicit coalescing_meter(std::vector<range> watched) : watched_(std::move(watched)) {
    tallies_.resize(2 * watched_.size());
  }
  /// Thread `tid` of a block (linear index, x fastest) starts phase `phase` (0 for simple
  /// kernels); `block` identifies the block within the launch.
  void begin_thread(uint64_t block, int phase, unsigned tid) {
    const warp_key w{block, phase, tid / 32};
    if (!(w == warp_)) {
      flush();
      warp_ = w;
    }
    ordinal_.assign(2 * watched_.size(), 0);
    in_thread_ = true;
  }
  /// Outside a kernel's threads (the cuFFT / cuBLAS stand-ins): accesses are not requests.
  void end_launch() {
    flush();
    warp_ = {};
    in_thread_ = false;
  }
  void access(const void* p, std::size_t bytes, bool write) {
    if (!in_thread_) return;
    const auto a = reinterpret_cast<uintptr_t>(p);
    for (size_t r = 0; r < watched_.size(); ++r) {
      if (a < watched_[r].begin || a >= watched_[r].end) continue;
      const size_t slot = 2 * r + (write ? 1 : 0);
      pending_[{slot, ordinal_[slot]++}].push_back({a, bytes});
      return;
    }
  }
  /// Per watched range and direction (index 2 r + write), since the last take().
  std::vector<tally> take() {
    flush();
    std::vector<tally> t(2 * watched_.size());
    t.swap(tallies_);
    return t;
  }
  const std::vector<range>& watched() const { return watched_; }

 private:
  struct warp_key {
    uint64_t block = ~uint64_t(0);
    int phase = -1;
    unsigned warp = 0;
    bool operator==(const warp_key& o) const {
      return block == o.block && phase == o.phase && warp == o.warp;
    }
  };
  void flush() {
    for (auto& [key, lanes] : pending_) {
      std::vector<uintptr_t> sectors, addresses;
      int64_t bytes = 0;
      for (const auto& [a, n] : lanes) {
        sectors.push_back(a >> 5);
        if (std::find(addresses.begin(), addresses.end(), a) == addresses.end()) {
          addresses.push_back(a);
          bytes += static_cast<int64_t>(n);
        }
      }
      std::sort(sectors.begin(), sectors.end());
      tally& t = tallies_[key.first];
      ++t.requests;
      t.sectors += std::unique(sectors.begin(), sectors.end()) - sectors.begin();
      t.ideal += (bytes + 31) / 32;
    }
    pending_.clear();
  }

  std::vector<range> watched_;
  std::vector<tally> tallies_;
  std::vector<int64_t> ordinal_;  // the current thread's accesses so far, per slot
  std::map<std::pair<size_t, int64_t>, std::vector<std::pair<uintptr_t, std::size_t>>> pending_;
  warp_key warp_;
  bool in_thread_ = false;
};

class host_executor {
 public:
  /// What the pipeline asked for, for tests that count launches (and, with measure_traffic(),
  /// the global-memory footprints of the launches).
  struct counters {
    int64_t kernels = 0, ffts = 0, gemms = 0, temps = 0, temp_bytes = 0, max_live_bytes = 0,
            live_bytes = 0;
    int64_t wrong_device = 0;                 // operations run while another device was current
    int64_t read_bytes = 0, write_bytes = 0;  // summed footprints (measure_traffic())
    int64_t sector_bytes = 0;                 // the same in whole 32-byte sectors
    struct launch_record {
      std::string name;
      int64_t read_bytes = 0, write_bytes = 0;
    };
    std::vector<launch_record> launch_log;  // per launch (measure_traffic())
    struct coalescing_record {
      std::string name, what;  // the launch; the watched range
      bool write = false;
      coalescing_meter::tally tally;
    };
    std::vector<coalescing_record> coalescing_log;  // per launch and range (watch_coalescing())
    struct grid_record {
      std::string name;
      cdx::launch_dims dims;
    };
    std::vector<grid_record> grid_log;  // every kernel launch's geometry
    int64_t launches() const { return kernels + ffts + gemms; }
    int64_t global_bytes() const { return read_bytes + write_bytes; }
  };

  explicit host_executor(int device = 0) : device_(device), stats_(std::make_shared<counters>()) {}
  counters& stats() const { return *stats_; }
  int device() const { return device_; }
  /// From now on, every launch's footprint is measured (slower: a set of addresses per launch).
  void measure_traffic() { meter_ = std::make_shared<footprint>(); }
  /// From now on, every kernel launch's requests to these ranges are metered (coalescing_meter)
  /// into stats().coalescing_log, one record per launch, range and direction accessed.
  void watch_coalescing(std::vector<coalescing_meter::range> watched) {
    coalescing_ = std::make_shared<coalescing_meter>(std::move(watched));
  }

  emulated_device_guard activate(bool nothrow = false) const {
    return emulated_device_guard(device_, nothrow);
  }
  void check_stream(void* stream) const {
    const int d = blfft_standin::stream_device(stream);
    BLFFT_EXPECTS(d < 0 || d == device_, blfft::error_code::type_mismatch,
                  "the stream belongs to CUDA device ", d, " but the plan runs on device ", device_,
                  " (pass a stream of the tensors' device, e.g. "
                  "torch.cuda.current_stream(device))");
  }

  /// A scratch array with guard zones on both sides, NaN-filled (floating types). Scratch
  /// (make_temp) takes its storage, guards included, from the calling thread's scoped_allocator
  /// when one is installed, on the call's stream, as the GPU executor does; else (and for the
  /// plan's tables) from the heap.
  template <class U>
  class temp {
   public:
    temp() = default;
    temp(int64_t n, counters* c, int device, blfft::cuda::allocator* a = nullptr,
         void* stream = nullptr)
        : n_(n), c_(c), a_(a), device_(device), stream_(stream) {
      const size_t count = static_cast<size_t>(n) + 2 * guard;
      base_ = static_cast<U*>(a_ ? a_->allocate(storage_bytes(), device, stream)
                                 : ::operator new(storage_bytes()));
      blfft_standin::register_memory(base_ + guard, sizeof(U) * static_cast<size_t>(n), device);
      fill(base_, count);
      for (size_t i = 0; i < guard; ++i) {
        std::memcpy(&base_[i], &canary, std::min(sizeof(U), sizeof(canary)));
        std::memcpy(&base_[static_cast<size_t>(n) + guard + i], &canary,
                    std::min(sizeof(U), sizeof(canary)));
      }
      c_->live_bytes += bytes();
      c_->max_live_bytes = std::max(c_->max_live_bytes, c_->live_bytes);
    }
    temp(temp&& o) noexcept { *this = std::move(o); }
    temp& operator=(temp&& o) noexcept {
      std::swap(base_, o.base_);
      std::swap(n_, o.n_);
      std::swap(c_, o.c_);
      std::swap(a_, o.a_);
      std::swap(device_, o.device_);
      std::swap(stream_, o.stream_);
      return *this;
    }
    ~temp() {
      if (!base_) return;
      blfft_standin::unregister_memory(base_ + guard);
      for (size_t i = 0; i < guard; ++i) {
        EXPECT_EQ(std::memcmp(&base_[i], &canary, std::min(sizeof(U), sizeof(canary))), 0)
            << "write before the start of a scratch buffer of " << n_ << " elements";
        EXPECT_EQ(std::memcmp(&base_[static_cast<size_t>(n_) + guard + i], &canary,
                              std::min(sizeof(U), sizeof(canary))),
                  0)
            << "write past the end of a scratch buffer of " << n_ << " elements";
      }
      c_->live_bytes -= bytes();
      if (a_)
        a_->deallocate(base_, storage_bytes(), device_, stream_);
      else
        ::operator delete(base_);
    }
    U* get() const { return base_ ? base_ + guard : nullptr; }

   private:
    static constexpr size_t guard = 64;
    static constexpr uint64_t canary = 0x5eed5eed5eed5eedull;
    int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(U)); }
    size_t storage_bytes() const { return sizeof(U) * (static_cast<size_t>(n_) + 2 * guard); }
    static void fill(U* p, size_t n) {
      if constexpr (std::is_floating_point_v<U>) {
        for (size_t i = 0; i < n; ++i) p[i] = std::numeric_limits<U>::quiet_NaN();
      } else {
        std::memset(static_cast<void*>(p), 0xcd, n * sizeof(U));
      }
    }
    U* base_ = nullptr;
    int64_t n_ = 0;
    counters* c_ = nullptr;
    blfft::cuda::allocator* a_ = nullptr;
    int device_ = 0;
    void* stream_ = nullptr;
  };

  template <class U>
  temp<U> make_temp(int64_t n, void* stream) const {
    on_device("make_temp");
    if (n <= 0) return temp<U>();
    ++stats_->temps;
    stats_->temp_bytes += n * static_cast<int64_t>(sizeof(U));
    return temp<U>(n, stats_.get(), device_, cdx::scoped_allocator_or_null(), stream);
  }

  using table = temp<int64_t>;
  table upload(const std::vector<int64_t>& host) const {
    on_device("upload");
    if (host.empty()) return table();
    table t(static_cast<int64_t>(host.size()), stats_.get(), device_);
    std::memcpy(t.get(), host.data(), sizeof(int64_t) * host.size());
    return t;
  }

  template <class K>
  void launch(const cdx::launch_dims& d, const K& k, void* stream) const {
    on_device(K::name);
    const int sd = blfft_standin::stream_device(stream);
    EXPECT_TRUE(sd < 0 || sd == device_) << K::name << " launched on a stream of device " << sd;
    ++stats_->kernels;
    stats_->grid_log.push_back({K::name, d});
    EXPECT_LE(d.grid.x, static_cast<unsigned>(cdx::max_grid_x)) << K::name;
    EXPECT_LE(d.grid.y, static_cast<unsigned>(cdx::max_grid_yz)) << K::name;
    EXPECT_LE(d.grid.z, static_cast<unsigned>(cdx::max_grid_yz)) << K::name;
    EXPECT_EQ(d.block.x * d.block.y * d.block.z, K::threads) << K::name;
    ASSERT_GT(d.grid.x * d.grid.y * d.grid.z, 0u) << K::name << ": empty launch";
    const metered m(*this, K::name, true);
    coalescing_meter* cm = coalescing_.get();
    for (unsigned bz = 0; bz < d.grid.z; ++bz)
      for (unsigned by = 0; by < d.grid.y; ++by)
        for (unsigned bx = 0; bx < d.grid.x; ++bx) run_block(d, k, cdx::idx3{bx, by, bz}, cm);
  }

  void fft(const cdx::fft_desc& d, const void* in, void* out, void* stream) const {
    on_device("fft");
    ++stats_->ffts;
    const metered m(*this, "cufft");
#if defined(BLFFT_TEST_CUFFT_STANDIN)
    cdx::run_cufft(cufft_cache(), *this, device_, d, in, out, stream);
#else
    (void)stream;
    if (d.double_precision)
      reference_fft<double>(d, in, out);
    else
      reference_fft<float>(d, in, out);
#endif
  }

#if defined(BLFFT_TEST_CUFFT_STANDIN)
  /// The workspace each GEMM holds while it runs: 64 KiB, filled by the emulator and the
  /// stand-in on every call (32 MiB on a GPU); none without the stand-ins (reference GEMM).
  static constexpr int64_t gemm_workspace_bytes = int64_t(64) << 10;

  /// One strided batched GEMM through the backend's cuBLAS code (cuda/cublas_handles.hpp) on the
  /// cuBLAS stand-ins (standin_cublas.cpp), counted as one launch.
  void gemm(const cdx::gemm_desc& d, const void* a, const void* b, void* c, void* stream) const {
    on_device("gemm");
    ++stats_->gemms;
    const metered m(*this, "cublas");
    cdx::run_cublas(cublas_cache(), *this, device_, d, a, b, c, stream, true,
                    static_cast<std::size_t>(gemm_workspace_bytes));
  }
  static cdx::cublas_handle_cache<emulated_device_guard>& cublas_cache() {
    static auto* c = new cdx::cublas_handle_cache<emulated_device_guard>;  // never destroyed
    return *c;
  }

  /// The backend's cuFFT plan cache (cuda/cufft_plans.hpp), over the stand-ins.
  static cdx::cufft_plan_cache<emulated_device_guard>& cufft_cache() {
    // Never destroyed (as in the backend): at exit the stand-ins' state may be gone already.
    static auto* c = new cdx::cufft_plan_cache<emulated_device_guard>;
    return *c;
  }
#else
  static constexpr int64_t gemm_workspace_bytes = 0;

  /// Without the stand-ins: gemm_desc's contract written out (real, column-major, FP32/FP64).
  void gemm(const cdx::gemm_desc& d, const void* a, const void* b, void* c, void* stream) const {
    (void)stream;
    on_device("gemm");
    ++stats_->gemms;
    const metered m(*this, "cublas");
    EXPECT_FALSE(d.complex) << "reference GEMM: real only";
    if (d.double_precision)
      reference_gemm<double>(d, a, b, c);
    else
      reference_gemm<float>(d, a, b, c);
  }
  template <class T>
  static void reference_gemm(const cdx::gemm_desc& d, const void* a, const void* b, void* c) {
    const auto at = [&](const T* p, cdx::gemm_op op, int64_t ld, int64_t i, int64_t j) {
      return op == cdx::gemm_op::n ? p[i + j * ld] : p[j + i * ld];  // element (i, j) of op(X)
    };
    for (int64_t z = 0; z < d.batch; ++z) {
      const T* A = static_cast<const T*>(a) + z * d.stride_a;
      const T* B = static_cast<const T*>(b) + z * d.stride_b;
      T* C = static_cast<T*>(c) + z * d.stride_c;
      for (int64_t j = 0; j < d.n; ++j)
        for (int64_t i = 0; i < d.m; ++i) {
          double s = 0;
          for (int64_t l = 0; l < d.k; ++l)
            s += static_cast<double>(at(A, d.op_a, d.lda, i, l)) * at(B, d.op_b, d.ldb, l, j);
          T& out = C[i + j * d.ldc];
          out = static_cast<T>(d.alpha * s + (d.beta != 0 ? d.beta * out : 0));
        }
    }
  }
#endif

  /// Registered memory must be on this executor's device (unregistered memory is taken as
  /// device memory of any device: the older tests pass plain host vectors).
  void check_pointer(const void* p, const char* what) const {
    const int d = blfft_standin::memory_device(p);
    BLFFT_EXPECTS(d < 0 || d == device_, blfft::error_code::type_mismatch, what,
                  " is device memory of CUDA device ", d, " but the plan runs on device ", device_);
  }
  void zero(void* p, std::size_t bytes, void*) const {
    on_device("zero");
    std::memset(p, 0, bytes);
  }
  void copy_to_host(void* dst, const void* src, std::size_t bytes, void*) const {
    on_device("copy_to_host");
    std::memcpy(dst, src, bytes);
  }

 private:
  /// Installs the footprint recorder for one launch (when traffic is measured) and adds the
  /// launch's footprint to the counters at its end.
  class metered {
   public:
    /// `kernel`: an own kernel's launch (its threads' requests are metered for coalescing).
    metered(const host_executor& ex, const char* name, bool kernel = false)
        : ex_(ex), name_(name), tee_(ex.meter_.get(), kernel ? ex.coalescing_.get() : nullptr) {
      if (ex_.meter_) ex_.meter_->clear();
      if (ex_.meter_ || tee_.coalescing) cdx::current_traffic_recorder() = &tee_;
    }
    ~metered() {
      cdx::current_traffic_recorder() = nullptr;
      counters& c = *ex_.stats_;
      if (coalescing_meter* cm = tee_.coalescing) {
        cm->end_launch();
        const auto tallies = cm->take();
        for (size_t i = 0; i < tallies.size(); ++i)
          if (tallies[i].requests > 0)
            c.coalescing_log.push_back({name_, cm->watched()[i / 2].what, i % 2 == 1, tallies[i]});
      }
      if (!ex_.meter_) return;
      c.read_bytes += ex_.meter_->read_bytes();
      c.write_bytes += ex_.meter_->write_bytes();
      c.sector_bytes += ex_.meter_->read_sector_bytes() + ex_.meter_->write_sector_bytes();
      c.launch_log.push_back({name_, ex_.meter_->read_bytes(), ex_.meter_->write_bytes()});
    }
    metered(const metered&) = delete;
    metered& operator=(const metered&) = delete;

   private:
    /// The launch's recorder: the footprint and the coalescing meter, where installed.
    struct tee final : cdx::traffic_recorder {
      tee(footprint* f, coalescing_meter* c) : footprint_(f), coalescing(c) {}
      void read(const void* p, std::size_t bytes) override {
        if (footprint_) footprint_->read(p, bytes);
        if (coalescing) coalescing->access(p, bytes, false);
      }
      void write(const void* p, std::size_t bytes) override {
        if (footprint_) footprint_->write(p, bytes);
        if (coalescing) coalescing->access(p, bytes, true);
      }
      footprint* footprint_;
      coalescing_meter* coalescing;
    };
    const host_executor& ex_;
    const char* name_;
    tee tee_;
  };

  void on_device(const char* what) const {
    if (blfft_standin::current_device() == device_) return;
    ++stats_->wrong_device;
    ADD_FAILURE() << what << " on device " << device_ << " while device "
                  << blfft_standin::current_device() << " is current (missing activate())";
  }

  template <class K>
  static void run_block(const cdx::launch_dims& d, const K& k, cdx::idx3 b, coalescing_meter* cm) {
    const uint64_t block = (uint64_t(b.z) * d.grid.y + b.y) * d.grid.x + b.x;
    const unsigned nt = d.block.x * d.block.y * d.block.z;
    const auto thread = [&](unsigned i) {
      return cdx::idx3{i % d.block.x, (i / d.block.x) % d.block.y, i / (d.block.x * d.block.y)};
    };
    if constexpr (K::phased) {
      // Shared memory and registers start as all-ones bytes: NaN for floating-point data.
      auto sh = std::make_unique<typename K::shared>();
      std::memset(static_cast<void*>(sh.get()), 0xff, sizeof(typename K::shared));
      std::vector<typename K::regs> regs(nt);
      if (!regs.empty())
        std::memset(static_cast<void*>(regs.data()), 0xff, sizeof(typename K::regs) * nt);
      const int phases = k.phase_count(b);
      for (int p = 0; p < phases; ++p)  // a __syncthreads() between phases
        for (unsigned i = 0; i < nt; ++i) {
          if (cm) cm->begin_thread(block, p, i);
          k.phase(p, *sh, regs[i], b, thread(i));
        }
    } else {
      for (unsigned i = 0; i < nt; ++i) {
        if (cm) cm->begin_thread(block, 0, i);
        k(b, thread(i));
      }
    }
  }

 public:
  /// Unnormalised batched 1D DFT in double precision, cuFFT's advanced layout. The c2r inverse
  /// is the real inverse of a half spectrum as cuFFT and FFTW compute it: bins other than DC and
  /// Nyquist stand for a conjugate pair; the imaginary parts of DC and Nyquist do not contribute.
  template <class T>
  /// (fft_desc's contract, written out; the cuFFT path is checked against it.)
  static void reference_fft(const cdx::fft_desc& d, const void* in, void* out) {
    using C = std::complex<double>;
    const int64_t n = d.n, half = n / 2 + 1;
    std::vector<C> tw(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      const double a = -2.0 * M_PI * static_cast<double>(j) / static_cast<double>(n);
      tw[static_cast<size_t>(j)] = C(std::cos(a), std::sin(a));
    }
    const auto w = [&](int64_t k, int64_t i, bool inverse) {
      const C t = tw[static_cast<size_t>((k * i) % n)];
      return inverse ? std::conj(t) : t;
    };
    std::vector<C> a(static_cast<size_t>(n)), r(static_cast<size_t>(n));
    const T* ri = static_cast<const T*>(in);
    T* ro = static_cast<T*>(out);
    // Traffic as the cuFFT stand-in counts it: each input element read once, each output element
    // written once (reported after the transform; a footprint does not depend on the order).
    if (auto* meter = cdx::current_traffic_recorder()) {
      const bool real_in = d.type == cdx::fft_type::r2c, real_out = d.type == cdx::fft_type::c2r;
      const int64_t n_in = d.type == cdx::fft_type::c2r ? half : n;
      const int64_t n_out = d.type == cdx::fft_type::r2c ? half : n;
      for (int64_t b = 0; b < d.batch; ++b) {
        for (int64_t i = 0; i < n_in; ++i)
          meter->read(ri + (real_in ? 1 : 2) * (b * d.idist + i * d.istride),
                      (real_in ? 1 : 2) * sizeof(T));
        for (int64_t k = 0; k < n_out; ++k)
          meter->write(ro + (real_out ? 1 : 2) * (b * d.odist + k * d.ostride),
                       (real_out ? 1 : 2) * sizeof(T));
      }
    }
    for (int64_t b = 0; b < d.batch; ++b) {
      switch (d.type) {
        case cdx::fft_type::r2c:
          for (int64_t i = 0; i < n; ++i) a[i] = ri[b * d.idist + i * d.istride];
          for (int64_t k = 0; k < half; ++k) {
            C s = 0;
            for (int64_t i = 0; i < n; ++i) s += a[i] * w(k, i, false);
            const int64_t o = 2 * (b * d.odist + k * d.ostride);
            ro[o] = static_cast<T>(s.real());
            ro[o + 1] = static_cast<T>(s.imag());
          }
          break;
        case cdx::fft_type::c2r:
          for (int64_t k = 0; k < half; ++k) {
            const int64_t o = 2 * (b * d.idist + k * d.istride);
            a[k] = C(ri[o], ri[o + 1]);
          }
          for (int64_t i = 0; i < n; ++i) {
            double s = a[0].real();
            for (int64_t k = 1; k < half; ++k) {
              if (2 * k == n)
                s += a[k].real() * w(k, i, true).real();
              else
                s += 2.0 * (a[k] * w(k, i, true)).real();
            }
            ro[b * d.odist + i * d.ostride] = static_cast<T>(s);
          }
          break;
        case cdx::fft_type::c2c_forward:
        case cdx::fft_type::c2c_inverse: {
          const bool inverse = d.type == cdx::fft_type::c2c_inverse;
          for (int64_t i = 0; i < n; ++i) {
            const int64_t o = 2 * (b * d.idist + i * d.istride);
            a[i] = C(ri[o], ri[o + 1]);
          }
          for (int64_t k = 0; k < n; ++k) {
            C s = 0;
            for (int64_t i = 0; i < n; ++i) s += a[i] * w(k, i, inverse);
            r[k] = s;
          }
          for (int64_t k = 0; k < n; ++k) {  // after all reads: in place is fine
            const int64_t o = 2 * (b * d.odist + k * d.ostride);
            ro[o] = static_cast<T>(r[k].real());
            ro[o + 1] = static_cast<T>(r[k].imag());
          }
          break;
        }
      }
    }
  }

 private:
  int device_ = 0;
  std::shared_ptr<counters> stats_;
  std::shared_ptr<footprint> meter_;              // set by measure_traffic()
  std::shared_ptr<coalescing_meter> coalescing_;  // set by watch_coalescing()
};

}  // namespace bt
