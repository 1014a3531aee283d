#pragma once
// Row-major real GEMM on top of the Fortran BLAS symbols (any BLAS provides them), each call run
// on the calling thread (blas.cpp).

#include <cstdint>

// The BLAS's name of a Fortran routine: OpenBLAS builds such as scipy-openblas32 prefix every
// symbol (BLAS_SYMBOL_PREFIX=scipy_, from cmake/blfftDependencies.cmake: scipy_sgemm_), so that
// they never clash with another BLAS in the process (numpy's, torch's).
#define BLFFT_BLAS_CAT_(a, b) a##b
#define BLFFT_BLAS_CAT(a, b) BLFFT_BLAS_CAT_(a, b)
#ifdef BLAS_SYMBOL_PREFIX
#define BLFFT_BLAS_SYMBOL(name) BLFFT_BLAS_CAT(BLAS_SYMBOL_PREFIX, name)
#else
#define BLFFT_BLAS_SYMBOL(name) name
#endif
#define BLFFT_BLAS_STR_(x) #x
#define BLFFT_BLAS_STR(x) BLFFT_BLAS_STR_(x)
/// BLFFT_BLAS_SYMBOL(name) as a string literal (for dlsym).
#define BLFFT_BLAS_SYMBOL_NAME(name) BLFFT_BLAS_STR(BLFFT_BLAS_SYMBOL(name))

namespace blfft::detail {

/// C (M x N, ldc) = alpha * op(A) * op(B) + beta * C, all row-major. op(A) is M x K: A is stored
/// M x K (lda) when !trans_a, K x M when trans_a; likewise op(B) is K x N.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace blfft::detail
