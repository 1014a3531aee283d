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
/// what is tested. Without cufft.h, a reference DFT of fft_desc stands in (the older, weaker check).
///
/// Devices: an executor has a device id (default 0). The emulated current device and the devices
/// of registered streams and buffers live in standin_runtime.hpp; every operation checks that its
/// device is current (the pipeline must have called activate()), check_stream refuses a
/// registered stream of another device, check_pointer refuses registered memory of another device
/// with the GPU executor's message.
///
/// It also checks what a GPU would not report: launch geometry within CUDA's limits and matching
/// the kernel's block size, scratch buffers with guard zones (a write past either end fails the
/// test), scratch, shared memory and registers starting as NaN (so reading something never
/// written shows up as NaN in the results).

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "pipeline.hpp"
#include "standin_runtime.hpp"
#if defined(BLFFT_TEST_CUFFT_STANDIN)
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

class host_executor {
 public:
  /// What the pipeline asked for, for tests that count launches.
  struct counters {
    int64_t kernels = 0, ffts = 0, temps = 0, temp_bytes = 0, max_live_bytes = 0, live_bytes = 0;
    int64_t wrong_device = 0;  // operations run while another device was current
  };

  explicit host_executor(int device = 0)
      : device_(device), stats_(std::make_shared<counters>()) {}
  counters& stats() const { return *stats_; }
  int device() const { return device_; }

  emulated_device_guard activate(bool nothrow = false) const {
    return emulated_device_guard(device_, nothrow);
  }
  void check_stream(void* stream) const {
    const int d = blfft_standin::stream_device(stream);
    BLFFT_EXPECTS(d < 0 || d == device_, blfft::error_code::type_mismatch,
                  "the stream belongs to CUDA device ", d, " but the plan runs on device ",
                  device_, " (pass a stream of the tensors' device, e.g. "
                  "torch.cuda.current_stream(device))");
  }

  /// A scratch array with guard zones on both sides, NaN-filled (floating types).
  template <class U>
  class temp {
   public:
    temp() = default;
    temp(int64_t n, counters* c, int device) : n_(n), c_(c) {
      data_.resize(static_cast<size_t>(n + 2 * guard));
      blfft_standin::register_memory(data_.data() + guard, sizeof(U) * static_cast<size_t>(n),
                                     device);
      fill(data_.data(), data_.size());
      for (size_t i = 0; i < guard; ++i) {
        std::memcpy(&data_[i], &canary, std::min(sizeof(U), sizeof(canary)));
        std::memcpy(&data_[static_cast<size_t>(n) + guard + i], &canary,
                    std::min(sizeof(U), sizeof(canary)));
      }
      c_->live_bytes += bytes();
      c_->max_live_bytes = std::max(c_->max_live_bytes, c_->live_bytes);
    }
    temp(temp&& o) noexcept { *this = std::move(o); }
    temp& operator=(temp&& o) noexcept {
      std::swap(data_, o.data_);
      std::swap(n_, o.n_);
      std::swap(c_, o.c_);
      return *this;
    }
    ~temp() {
      if (data_.empty()) return;
      blfft_standin::unregister_memory(data_.data() + guard);
      for (size_t i = 0; i < guard; ++i) {
        EXPECT_EQ(std::memcmp(&data_[i], &canary, std::min(sizeof(U), sizeof(canary))), 0)
            << "write before the start of a scratch buffer of " << n_ << " elements";
        EXPECT_EQ(std::memcmp(&data_[static_cast<size_t>(n_) + guard + i], &canary,
                              std::min(sizeof(U), sizeof(canary))),
                  0)
            << "write past the end of a scratch buffer of " << n_ << " elements";
      }
      c_->live_bytes -= bytes();
    }
    U* get() const {
      return data_.empty() ? nullptr : const_cast<U*>(data_.data()) + guard;
    }

   private:
    static constexpr size_t guard = 64;
    static constexpr uint64_t canary = 0x5eed5eed5eed5eedull;
    int64_t bytes() const { return n_ * static_cast<int64_t>(sizeof(U)); }
    static void fill(U* p, size_t n) {
      if constexpr (std::is_floating_point_v<U>) {
        for (size_t i = 0; i < n; ++i) p[i] = std::numeric_limits<U>::quiet_NaN();
      } else {
        std::memset(static_cast<void*>(p), 0xcd, n * sizeof(U));
      }
    }
    std::vector<U> data_;
    int64_t n_ = 0;
    counters* c_ = nullptr;
  };

  template <class U>
  temp<U> make_temp(int64_t n, void*) const {
    on_device("make_temp");
    if (n <= 0) return temp<U>();
    ++stats_->temps;
    stats_->temp_bytes += n * static_cast<int64_t>(sizeof(U));
    return temp<U>(n, stats_.get(), device_);
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
    EXPECT_LE(d.grid.x, static_cast<unsigned>(cdx::max_grid_x)) << K::name;
    EXPECT_LE(d.grid.y, static_cast<unsigned>(cdx::max_grid_yz)) << K::name;
    EXPECT_LE(d.grid.z, static_cast<unsigned>(cdx::max_grid_yz)) << K::name;
    EXPECT_EQ(d.block.x * d.block.y * d.block.z, K::threads) << K::name;
    ASSERT_GT(d.grid.x * d.grid.y * d.grid.z, 0u) << K::name << ": empty launch";
    for (unsigned bz = 0; bz < d.grid.z; ++bz)
      for (unsigned by = 0; by < d.grid.y; ++by)
        for (unsigned bx = 0; bx < d.grid.x; ++bx) run_block(d, k, cdx::idx3{bx, by, bz});
  }

  void fft(const cdx::fft_desc& d, const void* in, void* out, void* stream) const {
    on_device("fft");
    ++stats_->ffts;
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
  /// The backend's cuFFT plan cache (cuda/cufft_plans.hpp), over the stand-ins.
  static cdx::cufft_plan_cache<emulated_device_guard>& cufft_cache() {
    // Never destroyed (as in the backend): at exit the stand-ins' state may be gone already.
    static auto* c = new cdx::cufft_plan_cache<emulated_device_guard>;
    return *c;
  }
#endif

  /// Registered memory must be on this executor's device (unregistered memory is taken as
  /// device memory of any device: the older tests pass plain host vectors).
  void check_pointer(const void* p, const char* what) const {
    const int d = blfft_standin::memory_device(p);
    BLFFT_EXPECTS(d < 0 || d == device_, blfft::error_code::type_mismatch, what,
                  " is device memory of CUDA device ", d, " but the plan runs on device ",
                  device_);
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
  void on_device(const char* what) const {
    if (blfft_standin::current_device() == device_) return;
    ++stats_->wrong_device;
    ADD_FAILURE() << what << " on device " << device_ << " while device "
                  << blfft_standin::current_device() << " is current (missing activate())";
  }

  template <class K>
  static void run_block(const cdx::launch_dims& d, const K& k, cdx::idx3 b) {
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
        for (unsigned i = 0; i < nt; ++i) k.phase(p, *sh, regs[i], b, thread(i));
    } else {
      for (unsigned i = 0; i < nt; ++i) k(b, thread(i));
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
};

}  // namespace bt
