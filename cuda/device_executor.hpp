#pragma once
// The executor that runs the pipeline (pipeline.hpp) on a GPU: kernel launches (kernels.cu),
// cuFFT plans, and stream-ordered temporaries from the caller's allocator.
//
// Streams and workspaces: every temporary, cuFFT's work areas included, is allocated on the
// caller's stream from the calling thread's scoped_allocator, or default_allocator()
// (cudaMallocAsync) without one, and given back on the same stream when it goes out of scope, so
// no two streams ever share a workspace and nothing is kept between calls. cuFFT plans are cached
// per (device, transform) with auto-allocation off (cufft_plans.hpp); the stream and the work area
// are set on the plan right before each execution, under the plan's mutex.
//
// Devices: the pipeline calls activate() at the start of every public call (and of its
// construction and destruction), which makes this executor's device current for the call and
// restores the caller's; every operation below assumes it. check_stream() refuses a stream of
// another device.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "blfft/cuda.hpp"
#include "kernels.hpp"
#include "pipeline.hpp"

namespace blfft::cuda::detail {

/// `bytes` from `a` on `stream`, counted in memory_stats(device); scratch_release gives them back
/// (never throws).
void* scratch_acquire(allocator& a, int device, std::size_t bytes, void* stream);
void scratch_release(allocator& a, int device, void* p, std::size_t bytes, void* stream) noexcept;

class device_guard;

class device_executor {
 public:
  explicit device_executor(int device) : device_(device) {}
  int device() const { return device_; }

  /// Makes this executor's device current until the returned guard goes out of scope.
  /// `nothrow`: for destructors.
  device_guard activate(bool nothrow = false) const;
  /// Throws error_code::type_mismatch when `stream` belongs to another device (the legacy and
  /// per-thread default streams, nullptr / cudaStreamLegacy / cudaStreamPerThread, are accepted).
  void check_stream(void* stream) const;

  /// A stream-ordered temporary array from the calling thread's allocator (scoped_allocator,
  /// else default_allocator()); given back to it on its stream when it goes out of scope.
  template <class U>
  class temp {
   public:
    temp() = default;
    temp(allocator& a, int device, std::size_t bytes, void* stream)
        : a_(&a), device_(device), bytes_(bytes), stream_(stream),
          p_(static_cast<U*>(scratch_acquire(a, device, bytes, stream))) {}
    temp(temp&& o) noexcept { swap(o); }
    temp& operator=(temp&& o) noexcept {
      swap(o);
      return *this;
    }
    ~temp() {
      if (p_) scratch_release(*a_, device_, p_, bytes_, stream_);
    }
    U* get() const { return p_; }

   private:
    void swap(temp& o) noexcept {
      std::swap(a_, o.a_);
      std::swap(device_, o.device_);
      std::swap(bytes_, o.bytes_);
      std::swap(stream_, o.stream_);
      std::swap(p_, o.p_);
    }
    allocator* a_ = nullptr;
    int device_ = 0;
    std::size_t bytes_ = 0;
    void* stream_ = nullptr;
    U* p_ = nullptr;
  };

  template <class U>
  temp<U> make_temp(int64_t n, void* stream) const {
    if (n <= 0) return temp<U>();
    allocator* a = scoped_allocator_or_null();
    return temp<U>(a ? *a : default_allocator(), device_, sizeof(U) * static_cast<std::size_t>(n),
                   stream);
  }

  /// A persistent index table in device memory (cudaMalloc'ed; freed by the destructor).
  class table {
   public:
    table() = default;
    explicit table(int64_t* p) : p_(p) {}
    table(table&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    table& operator=(table&& o) noexcept {
      std::swap(p_, o.p_);
      return *this;
    }
    ~table();
    const int64_t* get() const { return p_; }

   private:
    int64_t* p_ = nullptr;
  };
  table upload(const std::vector<int64_t>& host) const;

  /// Launches kernel k (kernels.hpp) with geometry d on `stream`, then checks the launch.
  /// Defined in kernels.cu, explicitly instantiated for every kernel the pipeline uses.
  template <class K>
  void launch(const launch_dims& d, const K& k, void* stream) const;

  void fft(const fft_desc& desc, const void* in, void* out, void* stream) const;
  /// One strided batched GEMM on cuBLAS (cublas_handles.hpp: the device's handle, the stream and
  /// a workspace of the call set on it).
  void gemm(const gemm_desc& desc, const void* a, const void* b, void* c, void* stream) const;
  /// Throws error_code::type_mismatch unless p is device (or managed) memory of this device.
  void check_pointer(const void* p, const char* what) const;
  void zero(void* p, std::size_t bytes, void* stream) const;
  void copy_to_host(void* dst, const void* src, std::size_t bytes, void* stream) const;

 private:
  int device_;
};

/// Makes `device` current for its lifetime; restores the previous device (never throws).
class device_guard {
 public:
  /// `nothrow`: for destructors; a failure to switch is then ignored.
  explicit device_guard(int device, bool nothrow = false);
  ~device_guard();
  device_guard(const device_guard&) = delete;
  device_guard& operator=(const device_guard&) = delete;

 private:
  int previous_ = -1;
};

/// Throws error_code::unsupported without a device, invalid_argument for an index out of range.
void validate_device(int device);

inline device_guard device_executor::activate(bool nothrow) const {
  return device_guard(device_, nothrow);
}

/// Drops the cached cuFFT plans (and cuBLAS handles) that are not in use right now.
void clear_device_caches() noexcept;
std::size_t cufft_plan_count();

}  // namespace blfft::cuda::detail
