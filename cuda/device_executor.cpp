// device_executor: memory pools, cuFFT plan cache, pointer checks (kernel launches: kernels.cu).

#include "device_executor.hpp"

#include <cuda_runtime.h>
#include <cufft.h>

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "cufft_plans.hpp"
#include "error.hpp"

namespace blfft::cuda::detail {
namespace {

// The process-wide caches below are created on first use and deliberately never destroyed: at
// process exit the CUDA runtime may be torn down before static destructors run, and destroying
// cuFFT plans or pools then would fail (or crash). clear_device_caches() empties them explicitly.

struct pool_registry {
  std::mutex mutex;
  std::map<int, cudaMemPool_t> pools;  // nullptr: the device has no memory pools
  static pool_registry& get() {
    static auto* r = new pool_registry;
    return *r;
  }
};

cudaMemPool_t pool_for(int device) {
  auto& reg = pool_registry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  auto it = reg.pools.find(device);
  if (it != reg.pools.end()) return it->second;
  int supported = 0;
  BLFFT_CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device));
  cudaMemPool_t pool = nullptr;
  if (supported) {
    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    BLFFT_CUDA_CHECK(cudaMemPoolCreate(&pool, &props));
    // Keep freed memory in the pool across synchronisations (the default, 0, would hand it back
    // to the driver at every stream synchronisation and make the next call map it again).
    uint64_t keep = std::numeric_limits<uint64_t>::max();
    BLFFT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  }
  reg.pools.emplace(device, pool);
  return pool;
}

cudaMemPool_t existing_pool(int device) {
  auto& reg = pool_registry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  auto it = reg.pools.find(device);
  return it == reg.pools.end() ? nullptr : it->second;
}

// ---- cuFFT plans (cufft_plans.hpp) ----------------------------------------------------------

cufft_plan_cache<device_guard>& cufft_cache() {
  static auto* c = new cufft_plan_cache<device_guard>;
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

void* alloc_async(int device, std::size_t bytes, void* stream) {
  void* p = nullptr;
  if (cudaMemPool_t pool = pool_for(device))
    BLFFT_CUDA_CHECK(cudaMallocFromPoolAsync(&p, bytes, pool, static_cast<cudaStream_t>(stream)));
  else
    BLFFT_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void free_async(int device, void* p, void* stream) noexcept {
  if (!p) return;
  if (existing_pool(device))
    cudaFreeAsync(p, static_cast<cudaStream_t>(stream));
  else
    cudaFree(p);
}

device_executor::table::~table() {
  if (p_) cudaFree(p_);  // errors ignored: destructors never throw
}

device_executor::table device_executor::upload(const std::vector<int64_t>& host) const {
  if (host.empty()) return table();
  int64_t* p = nullptr;
  BLFFT_CUDA_CHECK(cudaMalloc(&p, sizeof(int64_t) * host.size()));
  table t(p);
  BLFFT_CUDA_CHECK(cudaMemcpy(p, host.data(), sizeof(int64_t) * host.size(),
                              cudaMemcpyHostToDevice));
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
  auto& reg = pool_registry::get();
  std::lock_guard<std::mutex> lock(reg.mutex);
  for (auto& [device, pool] : reg.pools)
    if (pool) {
      device_guard guard(device, true);
      cudaDeviceSynchronize();  // memory freed on streams returns to the pool once they finish
      cudaMemPoolTrimTo(pool, 0);
    }
}

std::size_t cufft_plan_count() { return cufft_cache().size(); }

}  // namespace blfft::cuda::detail

namespace blfft::cuda {

bool compiled() noexcept { return true; }

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

pool_stats memory_pool_stats(int device) {
  detail::validate_device(device);
  pool_stats s;
  cudaMemPool_t pool = detail::pool_for(device);
  if (!pool) return s;
  uint64_t v = 0;
  BLFFT_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &v));
  s.reserved = v;
  BLFFT_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &v));
  s.used = v;
  BLFFT_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &v));
  s.reserved_peak = v;
  BLFFT_CUDA_CHECK(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &v));
  s.used_peak = v;
  return s;
}

void reset_pool_peaks(int device) {
  detail::validate_device(device);
  cudaMemPool_t pool = detail::pool_for(device);
  if (!pool) return;
  uint64_t zero = 0;
  BLFFT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero));
  BLFFT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
}

}  // namespace blfft::cuda
