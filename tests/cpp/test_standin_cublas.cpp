// The cuBLAS stand-ins (standin_cublas.cpp) on their own, against hand-computed products:
// column-major storage, leading dimensions, batch strides, transposes, complex conjugation,
// alpha / beta, TF32 rounding, and the errors. Ready for the backend's cuBLAS mixing (the issue
// after #10), whose calls will then run on them in the emulation tests.

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <limits>
#include <vector>

#include "standin_cublas.hpp"
#include "standin_runtime.hpp"

namespace {

using cf = std::complex<float>;
using cd = std::complex<double>;

struct handle {
  cublasHandle_t h = nullptr;
  handle() { EXPECT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS); }
  ~handle() { cublasDestroy(h); }
};

const float nanf_ = std::numeric_limits<float>::quiet_NaN();

TEST(StandinCublas, RealColumnMajorWithLeadingDimensions) {
  // A = [[1, 2, 3], [4, 5, 6]] (2 x 3), B = [[7, 8], [9, 10], [11, 12]] (3 x 2):
  // A B = [[58, 64], [139, 154]]. Column-major; C has ldc 3, its third row stays untouched;
  // beta = 0, so the NaN in C is not read.
  handle H;
  const std::vector<float> A{1, 4, 2, 5, 3, 6}, B{7, 9, 11, 8, 10, 12};
  std::vector<float> C{nanf_, nanf_, -1, nanf_, nanf_, -1};
  const float one = 1, zero = 0;
  ASSERT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A.data(),
                                       CUDA_R_32F, 2, 0, B.data(), CUDA_R_32F, 3, 0, &zero,
                                       C.data(), CUDA_R_32F, 3, 0, 1, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  const std::vector<float> want{58, 139, -1, 64, 154, -1};
  EXPECT_EQ(C, want);
}

TEST(StandinCublas, TransposesAlphaBeta) {
  // The same product from A^T stored (3 x 2, lda 3, OP_T) and B^T stored (2 x 3, ldb 2, OP_T);
  // alpha 2, beta 0.5 on C = [[2, 4], [6, 8]]: C = 2 A B + 0.5 C.
  handle H;
  const std::vector<double> At{1, 2, 3, 4, 5, 6}, Bt{7, 8, 9, 10, 11, 12};
  std::vector<double> C{2, 6, 4, 8};
  const double alpha = 2, beta = 0.5;
  ASSERT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_T, CUBLAS_OP_T, 2, 2, 3, &alpha, At.data(),
                                       CUDA_R_64F, 3, 0, Bt.data(), CUDA_R_64F, 2, 0, &beta,
                                       C.data(), CUDA_R_64F, 2, 0, 1, CUBLAS_COMPUTE_64F,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  const std::vector<double> want{117, 281, 130, 312};
  EXPECT_EQ(C, want);
}

TEST(StandinCublas, BatchStridesAndABroadcastOperand) {
  // Three batches of 2 x 2 times 2 x 1: A[b] = (b + 1) I at stride 5 (one spare element each),
  // B shared (stride 0) = [1, 2]^T, C[b] at stride 3: C[b] = (b + 1) [1, 2]^T; the spare element of
  // each C stays.
  handle H;
  std::vector<float> A(15, nanf_);
  for (int b = 0; b < 3; ++b) {
    A[b * 5 + 0] = b + 1.f;
    A[b * 5 + 1] = 0;
    A[b * 5 + 2] = 0;
    A[b * 5 + 3] = b + 1.f;
  }
  const std::vector<float> B{1, 2};
  std::vector<float> C(9, -3);
  const float one = 1, zero = 0;
  ASSERT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 2, &one, A.data(),
                                       CUDA_R_32F, 2, 5, B.data(), CUDA_R_32F, 2, 0, &zero,
                                       C.data(), CUDA_R_32F, 2, 3, 3, CUBLAS_COMPUTE_32F_PEDANTIC,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  for (int b = 0; b < 3; ++b) {
    EXPECT_EQ(C[b * 3], b + 1.f);
    EXPECT_EQ(C[b * 3 + 1], 2 * (b + 1.f));
    EXPECT_EQ(C[b * 3 + 2], -3.f);
  }
}

TEST(StandinCublas, ComplexConjugateTranspose) {
  // A = [[1+i, 2], [0, 1-i]], B = [[1, i], [2, 0]]: A^H B = [[1-i, 1+i], [4+2i, 2i]];
  // with alpha = i: [[1+i, -1+i], [-2+4i, -2]].
  handle H;
  const std::vector<cf> A{cf(1, 1), 0, 2, cf(1, -1)}, B{1, 2, cf(0, 1), 0};
  std::vector<cf> C(4, cf(nanf_, nanf_));
  const cf alpha(0, 1), beta(0, 0);
  ASSERT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_C, CUBLAS_OP_N, 2, 2, 2, &alpha, A.data(),
                                       CUDA_C_32F, 2, 0, B.data(), CUDA_C_32F, 2, 0, &beta,
                                       C.data(), CUDA_C_32F, 2, 0, 1, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  const std::vector<cf> want{cf(1, 1), cf(-2, 4), cf(-1, 1), cf(-2, 0)};
  EXPECT_EQ(C, want);
  // Double complex, OP_T (no conjugation) on A: A^T B = [[1+i, 1-1i*... ]] checked entrywise.
  const std::vector<cd> Ad{cd(1, 1), 0, 2, cd(1, -1)}, Bd{1, 2, cd(0, 1), 0};
  std::vector<cd> Cd(4);
  const cd one(1, 0), zero(0, 0);
  ASSERT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 2, &one, Ad.data(),
                                       CUDA_C_64F, 2, 0, Bd.data(), CUDA_C_64F, 2, 0, &zero,
                                       Cd.data(), CUDA_C_64F, 2, 0, 1, CUBLAS_COMPUTE_64F,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  // A^T = [[1+i, 0], [2, 1-i]]; A^T B = [[1+i, -1+i], [2+2(1-i), 2i]] = [[1+i, -1+i], [4-2i, 2i]]
  const std::vector<cd> wantd{cd(1, 1), cd(4, -2), cd(-1, 1), cd(0, 2)};
  EXPECT_EQ(Cd, wantd);
}

TEST(StandinCublas, Tf32RoundsInputsOnlyWhenAllowed) {
  // 1 + 2^-12 is not a TF32 value (10 mantissa bits): it rounds to 1 under FAST_TF32 and under
  // COMPUTE_32F with CUBLAS_TF32_TENSOR_OP_MATH, never under COMPUTE_32F_PEDANTIC.
  handle H;
  const float a = 1.f + std::ldexp(1.f, -12), b = 1, one = 1, zero = 0;
  const auto run = [&](cublasComputeType_t ct) {
    float c = 0;
    EXPECT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, &a,
                                         CUDA_R_32F, 1, 0, &b, CUDA_R_32F, 1, 0, &zero, &c,
                                         CUDA_R_32F, 1, 0, 1, ct, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    return c;
  };
  EXPECT_EQ(run(CUBLAS_COMPUTE_32F), a);
  EXPECT_EQ(run(CUBLAS_COMPUTE_32F_FAST_TF32), 1.f);
  ASSERT_EQ(cublasSetMathMode(H.h, CUBLAS_TF32_TENSOR_OP_MATH), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(run(CUBLAS_COMPUTE_32F), 1.f);
  EXPECT_EQ(run(CUBLAS_COMPUTE_32F_PEDANTIC), a);
}

TEST(StandinCublas, EdgeSizes) {
  handle H;
  float c[2] = {5, 6};
  const float two = 2, half = 0.5f;
  // k = 0: C = beta C
  EXPECT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 0, &two, nullptr,
                                       CUDA_R_32F, 2, 0, nullptr, CUDA_R_32F, 1, 0, &half, c,
                                       CUDA_R_32F, 2, 0, 1, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c[0], 2.5f);
  EXPECT_EQ(c[1], 3.f);
  // m = 0 or batchCount = 0: nothing is touched
  EXPECT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 0, 1, 1, &two, nullptr,
                                       CUDA_R_32F, 1, 0, nullptr, CUDA_R_32F, 1, 0, &half, nullptr,
                                       CUDA_R_32F, 1, 0, 1, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 1, &two, nullptr,
                                       CUDA_R_32F, 2, 0, nullptr, CUDA_R_32F, 1, 0, &half, nullptr,
                                       CUDA_R_32F, 2, 0, 0, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
}

TEST(StandinCublas, RefusesWhatCublasRefuses) {
  handle H;
  std::vector<float> A(16, 1), B(16, 1), C(16, 0);
  const float one = 1, zero = 0;
  // A valid 2 x 2 x 2 product; each case below changes what it names.
  struct call {
    cublasHandle_t h;
    cublasOperation_t ta = CUBLAS_OP_N;
    int m = 2, n = 2, k = 2, lda = 2, ldb = 2, ldc = 2;
    cudaDataType ct = CUDA_R_32F;
    cublasComputeType_t cp = CUBLAS_COMPUTE_32F;
    long long sc = 4;
    int batch = 1;
  };
  const auto gemm = [&](const call& c) {
    return cublasGemmStridedBatchedEx(c.h, c.ta, CUBLAS_OP_N, c.m, c.n, c.k, &one, A.data(),
                                      CUDA_R_32F, c.lda, 0, B.data(), CUDA_R_32F, c.ldb, 0, &zero,
                                      C.data(), c.ct, c.ldc, c.sc, c.batch, c.cp,
                                      CUBLAS_GEMM_DEFAULT);
  };
  struct refusal {
    void (*change)(call&);
    cublasStatus_t want;
    const char* why;
  };
  const refusal cases[] = {
      {[](call&) {}, CUBLAS_STATUS_SUCCESS, "the valid call"},
      {[](call& c) { c.m = c.ldc = 3; }, CUBLAS_STATUS_INVALID_VALUE, "lda < m"},
      {[](call& c) {
         c.ta = CUBLAS_OP_T;
         c.k = c.ldb = 3;
       },
       CUBLAS_STATUS_INVALID_VALUE, "lda < k with OP_T"},
      {[](call& c) { c.ldc = 1; }, CUBLAS_STATUS_INVALID_VALUE, "ldc < m"},
      {[](call& c) { c.m = -1; }, CUBLAS_STATUS_INVALID_VALUE, "m < 0"},
      {[](call& c) { c.ta = CUBLAS_OP_CONJG; }, CUBLAS_STATUS_INVALID_VALUE, "OP_C on real data"},
      {[](call& c) { c.ct = CUDA_C_32F; }, CUBLAS_STATUS_NOT_SUPPORTED, "mixed real and complex"},
      {[](call& c) { c.cp = CUBLAS_COMPUTE_64F; }, CUBLAS_STATUS_NOT_SUPPORTED,
       "float data, double compute"},
      {[](call& c) {
         c.sc = 3;
         c.batch = 2;
       },
       CUBLAS_STATUS_INVALID_VALUE, "C of two batches overlap"},
      {[](call& c) { c.h = nullptr; }, CUBLAS_STATUS_NOT_INITIALIZED, "no handle"},
  };
  for (const auto& r : cases) {
    call c{H.h};
    r.change(c);
    EXPECT_EQ(gemm(c), r.want) << r.why;
  }
  {
    blfft_standin::device_scope other(3);
    EXPECT_EQ(gemm(call{H.h}), CUBLAS_STATUS_INVALID_VALUE)
        << "handle of device 0 used on device 3";
  }
}

TEST(StandinCublas, StreamAndWorkspace) {
  handle H;
  int s = 0;
  blfft_standin::register_stream(&s, 0);
  ASSERT_EQ(cublasSetStream(H.h, reinterpret_cast<cudaStream_t>(&s)), CUBLAS_STATUS_SUCCESS);
  cudaStream_t got = nullptr;
  ASSERT_EQ(cublasGetStream(H.h, &got), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(got, reinterpret_cast<cudaStream_t>(&s));
  std::vector<unsigned char> ws(64, 0);
  ASSERT_EQ(cublasSetWorkspace(H.h, ws.data(), ws.size()), CUBLAS_STATUS_SUCCESS);
  const float a = 2, b = 3, one = 1, zero = 0;
  float c = 0;
  ASSERT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, &a, CUDA_R_32F,
                                       1, 0, &b, CUDA_R_32F, 1, 0, &zero, &c, CUDA_R_32F, 1, 0, 1,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(c, 6.f);
  for (unsigned char v : ws) EXPECT_NE(v, 0) << "the workspace is cuBLAS's to use";
  blfft_standin::register_stream(&s, 1);  // now a stream of another device
  EXPECT_EQ(cublasGemmStridedBatchedEx(H.h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, &a, CUDA_R_32F,
                                       1, 0, &b, CUDA_R_32F, 1, 0, &zero, &c, CUDA_R_32F, 1, 0, 1,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE);
  blfft_standin::unregister_stream(&s);
}

}  // namespace
