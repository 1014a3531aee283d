// device_executor: temporaries, cuFFT plan cache, pointer checks (kernel launches: kernels.cu).

#include "device_executor.hpp"

#include <cuda_runtime.h>
#include <cufft.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "cublas_handles.hpp"
#include "cufft_plans.hpp"
#include "error.hpp"

namespace blfft::cuda::detail {
namespace {

// The process-wide caches below are created on first use and deliberately never destroyed: at
// process exit the CUDA runtime may be torn down before static destructors run, and destroying
// cuFFT plans then would fail (or crash). clear_device_caches() empties them explicitly.

/// cudaMallocAsync / cudaFreeAsync on the call's stream (the device's current pool, whose
/// attributes blfft leaves alone); cudaMalloc / cudaFree where the device has no memory pools.
class stream_ordered_allocator final : public allocator {
 public:
  void* allocate(std::size_t bytes, int device, void* stream) override {
    void* p = nullptr;
    const bool pools = pools_supported(device);
    const cudaError_t e = pools ? cudaMallocAsync(&p, bytes, static_cast<cudaStream_t>(stream))
                                : cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      fail(error_code::out_of_memory,
           cat("blfft: CUDA device ", device, " could not allocate ", bytes,
               " bytes for a temporary (", cudaGetErrorName(e), ")"));
    }
    check_cuda(e, pools ? "cudaMallocAsync" : "cudaMalloc", __FILE__, __LINE__);
    return p;
  }
  void deallocate(void* p, std::size_t, int device, void* stream) noexcept override {
    // Errors ignored: deallocate never throws (a failure here means the context is gone).
    if (pools_supported(device))
      cudaFreeAsync(p, static_cast<cudaStream_t>(stream));
    else
      cudaFree(p);
  }

 private:
  bool pools_supported(int device) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = supported_.find(device);
    if (it != supported_.end()) return it->second;
    int v = 0;
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMemoryPoolsSupported, device) != cudaSuccess) {
      cudaGetLastError();
      v = 0;
    }
    return supported_.emplace(device, v != 0).first->second;
  }
  std::mutex mutex_;
  std::map<int, bool> supported_;
};

/// memory_stats: what blfft asked allocators for, per device.
struct usage_registry {
  std::mutex mutex;
  std::map<int, memory_usage> devices;
  static usage_registry& get() {
    static auto* r = new usage_registry;
    return *r;
  }
};

// ---- cuFFT plans (cufft_plans.hpp) ----------------------------------------------------------

cufft_plan_cache<device_guard>& cufft_cache() {
  static auto* c = new cufft_plan_cache<device_guard>;
  return *c;
}

cublas_handle_cache<device_guard>& cublas_cache() {
  static auto* c = new cublas_handle_cache<device_guard>;  // never destroyed, as cufft_cache
  return *c;
}

bool capturing(void* stream) {
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &st) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return st != cudaStreamCaptureStatusNone;
}

}  // namespace

void* scratch_acquire(allocator& a, int device, std::size_t bytes, void* stream) {
  void* p = a.allocate(bytes, device, stream);
  BLFFT_EXPECTS(p != nullptr, error_code::out_of_memory, "blfft: the allocator returned null for ",
                bytes, " bytes on CUDA device ", device);
  auto& reg = usage_registry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  memory_usage& u = reg.devices[device];
  u.in_use += bytes;
  u.peak = std::max(u.peak, u.in_use);
  ++u.allocations;
  return p;
}

void scratch_release(allocator& a, int device, void* p, std::size_t bytes, void* stream) noexcept {
  a.deallocate(p, bytes, device, stream);
  auto& reg = usage_registry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  reg.devices[device].in_use -= bytes;
}

device_executor::table::~table() {
  if (p_) cudaFree(p_);  // errors ignored: destructors never throw
}

device_executor::table device_executor::upload(const std::vector<int64_t>& host) const {
  if (host.empty()) return table();
  int64_t* p = nullptr;
  BLFFT_CUDA_CHECK(cudaMalloc(&p, sizeof(int64_t) * host.size()));
  table t(p);
  BLFFT_CUDA_CHECK(
      cudaMemcpy(p, host.data(), sizeof(int64_t) * host.size(), cudaMemcpyHostToDevice));
  // From pageable memory cudaMemcpy may return before the DMA into device memory is done, and the
  // kernels that read the table run on other (possibly non-blocking) streams: wait for it here,
  // once per plan.
  BLFFT_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
  return t;
}

void device_executor::fft(const fft_desc& d, const void* in, void* out, void* stream) const {
  // A new plan allocates device memory (cuFFT's tables): not possible while the stream is being
  // captured into a CUDA graph, so then only cached plans are used (a clear error otherwise).
  run_cufft(cufft_cache(), *this, device_, d, in, out, stream, !capturing(stream));
}

void device_executor::gemm(const gemm_desc& d, const void* a, const void* b, void* c,
                           void* stream) const {
  // A handle is made outside capture only (cublasCreate allocates), as cuFFT plans are.
  run_cublas(cublas_cache(), *this, device_, d, a, b, c, stream, !capturing(stream));
}

void device_executor::check_stream(void* stream) const {
  const auto s = static_cast<cudaStream_t>(stream);
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return;
  int dev = -1;
  const cudaError_t e = cudaStreamGetDevice(s, &dev);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail(error_code::invalid_argument,
         cat("stream ", stream, " is not a valid CUDA stream (", cudaGetErrorName(e), ")"));
  }
  BLFFT_EXPECTS(dev == device_, error_code::type_mismatch, "the stream belongs to CUDA device ",
                dev, " but the plan runs on device ", device_,
                " (pass a stream of the tensors' device, e.g. torch.cuda.current_stream(device))");
}

void device_executor::check_pointer(const void* p, const char* what) const {
  cudaPointerAttributes a{};
  const cudaError_t e = cudaPointerGetAttributes(&a, p);
  if (e != cudaSuccess) {
    cudaGetLastError();  // not sticky; clear it
    fail(error_code::type_mismatch, cat(what, " is not a pointer CUDA knows (", cudaGetErrorName(e),
                                        "); the CUDA plan needs device memory"));
  }
  if (a.type == cudaMemoryTypeManaged) return;
  if (a.type == cudaMemoryTypeDevice) {
    BLFFT_EXPECTS(a.device == device_, error_code::type_mismatch, what,
                  " is device memory of CUDA device ", a.device, " but the plan runs on device ",
                  device_);
    return;
  }
  fail(error_code::type_mismatch,
       cat(what, " is host memory; the CUDA plan needs device memory of device ", device_));
}

void device_executor::zero(void* p, std::size_t bytes, void* stream) const {
  BLFFT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, static_cast<cudaStream_t>(stream)));
}

void device_executor::copy_to_host(void* dst, const void* src, std::size_t bytes,
                                   void* stream) const {
  const auto s = static_cast<cudaStream_t>(stream);
  BLFFT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  BLFFT_CUDA_CHECK(cudaStreamSynchronize(s));
}

device_guard::device_guard(int device, bool nothrow) {
  int current = -1;
  cudaError_t e = cudaGetDevice(&current);
  if (e == cudaSuccess && current == device) return;
  if (e == cudaSuccess) e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (nothrow) return;
    throw_cuda(e, "cudaSetDevice", __FILE__, __LINE__);
  }
  previous_ = current;
}

device_guard::~device_guard() {
  if (previous_ >= 0) cudaSetDevice(previous_);  // errors ignored: destructors never throw
}

void validate_device(int device) {
  const int n = device_count();
  BLFFT_EXPECTS(n > 0, error_code::unsupported,
                "no CUDA device is available (no GPU, or no driver: device_count() is 0)");
  BLFFT_EXPECTS(device >= 0 && device < n, error_code::invalid_argument, "CUDA device index ",
                device, " is out of range [0, ", n, ")");
}

void clear_device_caches() noexcept {
  cufft_cache().drop_idle();
  cublas_cache().drop_idle();
}

std::size_t cufft_plan_count() {
  return cufft_cache().size();
}

}  // namespace blfft::cuda::detail

namespace blfft::cuda {

bool compiled() noexcept {
  return true;
}

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

allocator& default_allocator() noexcept {
  static auto* a = new detail::stream_ordered_allocator;  // never destroyed, as the caches
  return *a;
}

memory_usage memory_stats(int device) {
  detail::validate_device(device);
  auto& reg = detail::usage_registry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  const auto it = reg.devices.find(device);
  return it == reg.devices.end() ? memory_usage{} : it->second;
}

void reset_memory_peak(int device) {
  detail::validate_device(device);
  auto& reg = detail::usage_registry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  memory_usage& u = reg.devices[device];
  u.peak = u.in_use;
}

}  // namespace blfft::cuda
