#pragma once
// One small complex matrix product on planar operands, the unit of channel mixing: Gauss's
// trick (three real GEMMs) for large products, a direct loop for tiny ones.

#include <cstdint>

#include "blas.hpp"
#include "parallel.hpp"

namespace blfft::detail {

// Below this many multiply-adds a direct loop beats a BLAS call.
constexpr int64_t blas_min_work = 4096;

/// One planar complex operand: element (i, j) of the stored row-major matrix is
/// (re[i * ld + j], im[i * ld + j]); the product uses its transpose when `trans`, and its
/// conjugate when `conj`.
template <class T>
struct operand {
  const T* re;
  const T* im;
  int64_t ld;
  bool trans;
  bool conj;
};

/// C = op(A) op(B), C row-major M x N with leading dimension ldc, planar.
template <class T>
inline void complex_product(int64_t M, int64_t N, int64_t K, const operand<T>& A,
                            const operand<T>& B, T* c_re, T* c_im, int64_t ldc) {
  const T sa = A.conj ? T(-1) : T(1), sb = B.conj ? T(-1) : T(1);
  if (M * N * K < blas_min_work) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        T sr = 0, si = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t ia = A.trans ? k * A.ld + i : i * A.ld + k;
          const int64_t ib = B.trans ? j * B.ld + k : k * B.ld + j;
          const T ar = A.re[ia], ai = sa * A.im[ia], br = B.re[ib], bi = sb * B.im[ib];
          sr += ar * br - ai * bi;
          si += ar * bi + ai * br;
        }
        c_re[i * ldc + j] = sr;
        c_im[i * ldc + j] = si;
      }
    return;
  }
  // Gauss: with T1 = Ar Br, T2 = Ai Bi, T3 = (Ar + sa Ai)(Br + sb Bi),
  // Re = T1 - sa sb T2 and Im = T3 - T1 - sa sb T2.
  const int64_t a_rows = A.trans ? K : M, a_cols = A.trans ? M : K;
  const int64_t b_rows = B.trans ? N : K, b_cols = B.trans ? K : N;
  T* a_sum = thread_scratch<T, 1>(static_cast<std::size_t>(a_rows * a_cols + b_rows * b_cols +
                                                           M * N));
  T* b_sum = a_sum + a_rows * a_cols;
  T* t2 = b_sum + b_rows * b_cols;
  for (int64_t i = 0; i < a_rows; ++i)
    for (int64_t j = 0; j < a_cols; ++j)
      a_sum[i * a_cols + j] = A.re[i * A.ld + j] + sa * A.im[i * A.ld + j];
  for (int64_t i = 0; i < b_rows; ++i)
    for (int64_t j = 0; j < b_cols; ++j)
      b_sum[i * b_cols + j] = B.re[i * B.ld + j] + sb * B.im[i * B.ld + j];
  gemm<T>(A.trans, B.trans, M, N, K, T(1), A.re, A.ld, B.re, B.ld, T(0), c_re, ldc);
  gemm<T>(A.trans, B.trans, M, N, K, T(1), a_sum, a_cols, b_sum, b_cols, T(0), c_im, ldc);
  gemm<T>(A.trans, B.trans, M, N, K, T(1), A.im, A.ld, B.im, B.ld, T(0), t2, N);
  const T s = sa * sb;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const T t1 = c_re[i * ldc + j], st2 = s * t2[i * N + j];
      c_re[i * ldc + j] = t1 - st2;
      c_im[i * ldc + j] = c_im[i * ldc + j] - t1 - st2;
    }
}

}  // namespace blfft::detail
