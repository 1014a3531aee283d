#pragma once
/// @file standin_cublas.hpp
/// CPU stand-ins for the cuBLAS functions that the CUDA backend's channel mixing will call (the
/// issue after #10: one strided-batched GEMM per pass), defined in standin_cublas.cpp:
///   cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2, cublasGetStream_v2,
///   cublasSetWorkspace_v2, cublasSetMathMode, cublasSetPointerMode_v2,
///   cublasGemmStridedBatchedEx.
/// Declarations: the real cublas_v2.h where the build found it (BLFFT_STANDIN_REAL_CUBLAS: then the
/// compiler checks every signature against NVIDIA's header), else the copy below, made from
/// cuBLAS 13's cublas_api.h (same names, enum values and signatures; checked against it when it was
/// written). Semantics, from NVIDIA's documentation:
/// - column-major: C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b < batchCount, with
///   X[b] = X + b * strideX (elements of X's type; a stride may be 0: one matrix for every batch);
///   op(A) is m x k: A is lda x k (OP_N, lda >= max(1, m)) or lda x m (OP_T / OP_C, lda >=
///   max(1, k)); op(B) is k x n likewise with ldb; C is ldc x n with ldc >= max(1, m); OP_C is the
///   conjugate transpose;
/// - alpha and beta are host pointers (default pointer mode) of the compute's scale type: float /
///   cuComplex for CUBLAS_COMPUTE_32F*, double / cuDoubleComplex for CUBLAS_COMPUTE_64F*;
/// - beta == 0: C is not read (NaN there does not propagate); m, n or batchCount 0: nothing done;
/// - CUBLAS_COMPUTE_32F_FAST_TF32 (and CUBLAS_COMPUTE_32F with CUBLAS_TF32_TENSOR_OP_MATH set on
///   the handle) may round A and B to TF32: the stand-in always does (10-bit mantissa, to nearest
///   even), so tolerances meant for tensor cores are tested; _FAST_16BF rounds to bfloat16; the
///   _PEDANTIC types never round;
/// - errors: CUBLAS_STATUS_NOT_INITIALIZED for a handle that is not live;
/// CUBLAS_STATUS_INVALID_VALUE
///   for m, n, k or batchCount < 0, a leading dimension too small, an unknown operation; and, the
///   stand-in being stricter than cuBLAS where cuBLAS leaves the result undefined: the handle used
///   with another device current than at cublasCreate, a stream of another device, C matrices of
///   different batches that overlap;
/// - supported type combinations (others: CUBLAS_STATUS_NOT_SUPPORTED, from the stand-in): A, B,
///   C all CUDA_R_32F or all CUDA_C_32F with a 32F compute type; all CUDA_R_64F or all CUDA_C_64F
///   with a 64F one.
/// A work area set with cublasSetWorkspace is filled with garbage at every GEMM (cuBLAS may use
/// all of it). Sums are accumulated in double precision.

#include <cstddef>
#include <string>

#if defined(BLFFT_STANDIN_REAL_CUBLAS)
#include <cublas_v2.h>
#else
#include <cuComplex.h>
#include <driver_types.h>
#include <library_types.h>

extern "C" {
typedef enum {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;

typedef enum {
  CUBLAS_OP_N = 0,
  CUBLAS_OP_T = 1,
  CUBLAS_OP_C = 2,
  CUBLAS_OP_HERMITAN = 2,
  CUBLAS_OP_CONJG = 3
} cublasOperation_t;

typedef enum { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 } cublasPointerMode_t;

typedef enum {
  CUBLAS_GEMM_DFALT = -1,
  CUBLAS_GEMM_DEFAULT = -1,
  CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
  CUBLAS_GEMM_DFALT_TENSOR_OP = 99
} cublasGemmAlgo_t;

typedef enum {
  CUBLAS_DEFAULT_MATH = 0,
  CUBLAS_TENSOR_OP_MATH = 1,
  CUBLAS_PEDANTIC_MATH = 2,
  CUBLAS_TF32_TENSOR_OP_MATH = 3,
  CUBLAS_FP32_EMULATED_BF16X9_MATH = 4,
  CUBLAS_FP64_EMULATED_FIXEDPOINT_MATH = 8,
  CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16,
} cublasMath_t;

typedef enum {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_16F_PEDANTIC = 65,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  CUBLAS_COMPUTE_32F_EMULATED_16BFX9 = 78,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_64F_PEDANTIC = 71,
  CUBLAS_COMPUTE_64F_EMULATED_FIXEDPOINT = 79,
  CUBLAS_COMPUTE_32I = 72,
  CUBLAS_COMPUTE_32I_PEDANTIC = 73,
} cublasComputeType_t;

struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                     size_t workspaceSizeInBytes);
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId);
cublasStatus_t cublasGetStream_v2(cublasHandle_t handle, cudaStream_t* streamId);
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t handle, cublasPointerMode_t mode);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k,
                                          const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long int strideA, const void* B,
                                          cudaDataType Btype, int ldb, long long int strideB,
                                          const void* beta, void* C, cudaDataType Ctype, int ldc,
                                          long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo);
}  // extern "C"

// cublas_v2.h's names
#define cublasCreate cublasCreate_v2
#define cublasDestroy cublasDestroy_v2
#define cublasSetWorkspace cublasSetWorkspace_v2
#define cublasSetStream cublasSetStream_v2
#define cublasGetStream cublasGetStream_v2
#define cublasSetPointerMode cublasSetPointerMode_v2
#endif
// The backend's cuBLAS code (cuda/cublas_handles.hpp) then takes these declarations.
#define BLFFT_CUBLAS_DECLARED 1

namespace blfft_standin {

struct cublas_counters {
  long long create = 0, destroy = 0, set_stream = 0, set_workspace = 0, gemm = 0, failed = 0,
            tf32_rounded = 0;
};
cublas_counters cublas_stats();
void reset_cublas_stats();
int cublas_live_handles();
/// Why the last call that did not return CUBLAS_STATUS_SUCCESS failed (this thread).
std::string cublas_last_error();

}  // namespace blfft_standin
