#pragma once
// A strided batched GEMM of the pipeline in cuBLAS's terms (cublasGemmStridedBatchedEx). No CUDA
// header: the pipeline and the CPU emulation include it with a plain C++ compiler.

#include <cstdint>

namespace blfft::cuda::detail {

enum class gemm_op { n, t, c };  ///< op(X) = X, X^T, X^H

/// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b < batch, column-major: op(A) is m x k,
/// op(B) k x n, C m x n with leading dimensions lda / ldb / ldc and X[b] = X + b * stride_x, all
/// in elements of the data type (complex counts one). `complex`: interleaved complex elements;
/// alpha and beta are real. `tf32`: float inputs may be rounded to TF32 (tensor cores), exactly
/// when the caller allows it (torch.backends.cudnn.allow_tf32 from Python); never for double.
struct gemm_desc {
  bool complex = false, double_precision = false, tf32 = false;
  gemm_op op_a = gemm_op::n, op_b = gemm_op::n;
  int64_t m = 1, n = 1, k = 1, lda = 1, ldb = 1, ldc = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0, batch = 1;
  double alpha = 1, beta = 0;
};

}  // namespace blfft::cuda::detail
