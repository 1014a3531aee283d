#pragma once
// Row-major real GEMM on top of the Fortran BLAS symbols (any BLAS provides them), each call run
// on the calling thread (blas.cpp).

#include <cstdint>

namespace blfft::detail {

/// C (M x N, ldc) = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is M x K: A is stored
/// M x K (lda) when !trans_a, K x M when trans_a; likewise op(B) is K x N.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace blfft::detail
