#include "blas.hpp"

#include "check.hpp"

extern "C" {
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b,
            const int* ldb, const double* beta, double* c, const int* ldc);
}

namespace blfft::detail {
namespace {
int as_int(int64_t v) {
  BLFFT_EXPECTS(v >= 0 && v <= INT32_MAX, error_code::unsupported, "GEMM dimension ", v,
                " exceeds the BLAS int range");
  return static_cast<int>(v);
}
}  // namespace

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const int m = as_int(N), n = as_int(M), k = as_int(K);
  const int la = as_int(ldb), lb = as_int(lda), lc = as_int(ldc);
  const char fa = tb ? 'T' : 'N', fb = ta ? 'T' : 'N';
  sgemm_(&fa, &fb, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                  const double* A, int64_t lda, const double* B, int64_t ldb, double beta,
                  double* C, int64_t ldc) {
  const int m = as_int(N), n = as_int(M), k = as_int(K);
  const int la = as_int(ldb), lb = as_int(lda), lc = as_int(ldc);
  const char fa = tb ? 'T' : 'N', fb = ta ? 'T' : 'N';
  dgemm_(&fa, &fb, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
}

}  // namespace blfft::detail
