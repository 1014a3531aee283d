#pragma once
// The backend's side of the cuBLAS API boundary, mirroring cufft_plans.hpp: how a GEMM of the
// pipeline (gemm_desc) becomes a cublasGemmStridedBatchedEx call, and the cache of handles.
//
// Header-only and free of the CUDA runtime (cuBLAS's declarations only), so that the same code
// runs in two builds: on a GPU against libcublas (nvidia-cublas wheel or the toolkit), and in the
// CPU emulation against the cuBLAS stand-ins (tests/cpp/standin_cublas.cpp, NVIDIA's documented
// semantics), which declare the API themselves and define BLFFT_CUBLAS_DECLARED.
//
// One handle per device, made on first use (never while a CUDA graph is being captured: the
// caller passes may_create = false then, and gets a clear error), with host pointer mode and
// CUBLAS_DEFAULT_MATH (no TF32 unless a call asks for it through its compute type). Every call
// sets the stream and a fresh stream-ordered workspace from the executor on the handle, then
// enqueues the GEMM, under the handle's mutex (a handle holds one stream at a time), as
// run_cufft does for plans: two streams never share a workspace.

#if !defined(BLFFT_CUBLAS_DECLARED)
#include <cublas_v2.h>
#endif

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "check.hpp"
#include "gemm_desc.hpp"

namespace blfft::cuda::detail {

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cublasStatus_t";
  }
}

inline void check_cublas(cublasStatus_t s, const char* call, const char* file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS) return;
  throw error(error_code::backend,
              blfft::detail::cat("blfft: cuBLAS error ", cublas_status_name(s), " (",
                                 static_cast<int>(s), ") in ", call, " at ", file, ":", line));
}

#define BLFFT_CUBLAS_CHECK(call)                                                                   \
  ::blfft::cuda::detail::check_cublas((call), #call, __FILE__, __LINE__)

/// Workspace set on the handle for every call (cuBLAS's recommendation for Hopper is 32 MiB
/// when it may use split-K and stream-K kernels; 4 MiB for earlier GPUs).
constexpr std::size_t cublas_workspace_bytes = std::size_t(32) << 20;

/// The arguments of cublasGemmStridedBatchedEx for one gemm_desc (besides pointers and scalars).
struct cublas_gemm_args {
  cublasOperation_t op_a = CUBLAS_OP_N, op_b = CUBLAS_OP_N;
  int m = 1, n = 1, k = 1, lda = 1, ldb = 1, ldc = 1, batch = 1;
  long long stride_a = 0, stride_b = 0, stride_c = 0;
  cudaDataType type = CUDA_R_32F;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
};

inline cublasOperation_t cublas_op_of(gemm_op op) {
  return op == gemm_op::n ? CUBLAS_OP_N : op == gemm_op::t ? CUBLAS_OP_T : CUBLAS_OP_C;
}

inline cublas_gemm_args cublas_args_of(const gemm_desc& d) {
  constexpr int64_t int_max = 2147483647;
  BLFFT_EXPECTS(d.m <= int_max && d.n <= int_max && d.k <= int_max && d.lda <= int_max &&
                    d.ldb <= int_max && d.ldc <= int_max && d.batch <= int_max,
                error_code::unsupported, "CUDA backend: a ", d.m, " x ", d.n, " x ", d.k,
                " GEMM (batch ", d.batch, ") exceeds cuBLAS's 32-bit sizes");
  cublas_gemm_args a;
  a.op_a = cublas_op_of(d.op_a);
  a.op_b = cublas_op_of(d.op_b);
  a.m = static_cast<int>(d.m);
  a.n = static_cast<int>(d.n);
  a.k = static_cast<int>(d.k);
  a.lda = static_cast<int>(d.lda);
  a.ldb = static_cast<int>(d.ldb);
  a.ldc = static_cast<int>(d.ldc);
  a.batch = static_cast<int>(d.batch);
  a.stride_a = d.stride_a;
  a.stride_b = d.stride_b;
  a.stride_c = d.stride_c;
  if (d.double_precision) {
    a.type = d.complex ? CUDA_C_64F : CUDA_R_64F;
    a.compute = CUBLAS_COMPUTE_64F;
  } else {
    a.type = d.complex ? CUDA_C_32F : CUDA_R_32F;
    a.compute = d.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  }
  return a;
}

/// Process-wide cuBLAS handles, one per device. `DeviceGuard(device, nothrow)` makes a device
/// current for its lifetime: a handle is destroyed with its device current.
template <class DeviceGuard>
class cublas_handle_cache {
 public:
  struct handle {
    std::mutex mutex;  // held from cublasSetStream to the return of the GEMM (an enqueue)
    cublasHandle_t h = nullptr;
    int device = 0;
    handle() = default;
    handle(const handle&) = delete;
    handle& operator=(const handle&) = delete;
    ~handle() {
      if (!h) return;
      DeviceGuard guard(device, true);
      cublasDestroy(h);  // errors ignored: destructors never throw
    }
  };

  /// The handle of `device` (which must be current), made on first use; nullptr when there is
  /// none yet and `may_create` is false.
  std::shared_ptr<handle> get(int device, bool may_create = true) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = handles_.find(device);
    if (it != handles_.end()) return it->second;
    if (!may_create) return nullptr;
    auto p = std::make_shared<handle>();
    p->device = device;
    BLFFT_CUBLAS_CHECK(cublasCreate(&p->h));
    BLFFT_CUBLAS_CHECK(cublasSetPointerMode(p->h, CUBLAS_POINTER_MODE_HOST));
    BLFFT_CUBLAS_CHECK(cublasSetMathMode(p->h, CUBLAS_DEFAULT_MATH));
    handles_.emplace(device, p);
    return p;
  }

  /// Drops the handles nobody is using right now.
  void drop_idle() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto i = handles_.begin(); i != handles_.end();)
      i = i->second.use_count() == 1 ? handles_.erase(i) : std::next(i);
  }

  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return handles_.size();
  }

 private:
  std::mutex mutex_;
  std::map<int, std::shared_ptr<handle>> handles_;
};

/// One GEMM on `stream`: the device's handle (made on first use, with `ex`'s device current), a
/// workspace from the executor (`ex.make_temp<unsigned char>(bytes, stream)`, stream-ordered),
/// cublasSetStream and cublasSetWorkspace, then cublasGemmStridedBatchedEx, under the handle's
/// mutex. Alpha and beta go by host pointer, in the type of the data (complex: imaginary 0).
/// `workspace_bytes`: the CPU emulation passes less (a workspace is filled on every call there).
template <class Cache, class Exec>
void run_cublas(Cache& cache, const Exec& ex, int device, const gemm_desc& d, const void* a,
                const void* b, void* c, void* stream, bool may_create = true,
                std::size_t workspace_bytes = cublas_workspace_bytes) {
  const cublas_gemm_args g = cublas_args_of(d);
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  const auto p = cache.get(device, may_create);
  BLFFT_EXPECTS(p != nullptr, error_code::unsupported, "blfft: a cuBLAS handle for device ", device,
                " is needed while a CUDA graph is "
                "being captured; blfft makes it outside capture: run the layer once before "
                "capturing");
  // Scalars of the data type: real, or complex with a zero imaginary part.
  const double al[2] = {d.alpha, 0}, be[2] = {d.beta, 0};
  const float alf[2] = {static_cast<float>(d.alpha), 0}, bef[2] = {static_cast<float>(d.beta), 0};
  const void* alpha = d.double_precision ? static_cast<const void*>(al) : alf;
  const void* beta = d.double_precision ? static_cast<const void*>(be) : bef;
  std::lock_guard<std::mutex> lock(p->mutex);
  auto work = ex.template make_temp<unsigned char>(static_cast<int64_t>(workspace_bytes), stream);
  BLFFT_CUBLAS_CHECK(cublasSetStream(p->h, static_cast<cudaStream_t>(stream)));
  BLFFT_CUBLAS_CHECK(cublasSetWorkspace(p->h, work.get(), workspace_bytes));
  BLFFT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      p->h, g.op_a, g.op_b, g.m, g.n, g.k, alpha, a, g.type, g.lda, g.stride_a, b, g.type, g.ldb,
      g.stride_b, beta, c, g.type, g.ldc, g.stride_c, g.batch, g.compute, CUBLAS_GEMM_DEFAULT));
}

}  // namespace blfft::cuda::detail
