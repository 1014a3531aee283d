// The BLAS blfft links must give every product right when blfft's threads call it at the same
// time with different shapes. OpenBLAS 0.3.31-0.3.34 (scipy-openblas32 0.3.31.x-0.3.34.x) does
// not on AVX-512 CPUs: two concurrent sgemm_('T','T', m, 24, 32) of different m, each on its own
// operands, get wrong elements (blfft's row-transform products with image chunks of 78 and 50;
// bench/NOTES.md, fifth and sixth rounds; bench/blas_check/sgemm_concurrent_tt.c). This test
// calls the linked BLAS directly (no blfft code in between) and fails with those versions in
// well under a second (0.3.31: 120-3300 wrong of 8000 batches); 0.3.30 and BLIS pass.

#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <vector>

#include "blas.hpp"

extern "C" void BLFFT_BLAS_SYMBOL(sgemm_)(const char* ta, const char* tb, const int* m,
                                          const int* n, const int* k, const float* alpha,
                                          const float* a, const int* lda, const float* b,
                                          const int* ldb, const float* beta, float* c,
                                          const int* ldc);

namespace {

constexpr int N = 24, K = 32, products = 32;

/// One thread's batch: `products` column-major products C = op(A) op(B), m x 24 x 32.
struct batch {
  char ta, tb;
  int m;
  std::vector<float> a, b, c, expected;

  batch(char ta_, char tb_, int m_, unsigned seed) : ta(ta_), tb(tb_), m(m_) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> u(-0.5f, 0.5f);
    a.resize(static_cast<size_t>(products) * m * K);
    b.resize(static_cast<size_t>(K) * N);
    for (float& v : a) v = u(gen);
    for (float& v : b) v = u(gen);
    c.assign(static_cast<size_t>(products) * m * N, 0.0f);
    run();  // alone, before any concurrency: the reference bits
    expected = c;
  }
  void run() {
    const int n = N, k = K, lda = ta == 'T' ? K : m, ldb = tb == 'T' ? N : K;
    const float one = 1, zero = 0;
    for (int r = 0; r < products; ++r)
      BLFFT_BLAS_SYMBOL(sgemm_)(&ta, &tb, &m, &n, &k, &one,
                                a.data() + static_cast<size_t>(r) * m * K, &lda, b.data(), &ldb,
                                &zero, c.data() + static_cast<size_t>(r) * m * N, &m);
  }
  bool right() const {
    return std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)) == 0;
  }
};

/// Batches with m0 and m1 run on two threads at once, `rounds` times; returns the wrong ones.
int wrong_batches(char ta, char tb, int m0, int m1, int rounds) {
  batch one(ta, tb, m0, 1), two(ta, tb, m1, 2);
  batch* both[2] = {&one, &two};
  int wrong = 0;
  for (int it = 0; it < rounds; ++it) {
#pragma omp parallel for num_threads(2) schedule(static, 1) reduction(+ : wrong)
    for (int t = 0; t < 2; ++t) {
      both[t]->run();
      wrong += both[t]->right() ? 0 : 1;
    }
  }
  return wrong;
}

struct shapes {
  char ta, tb;
  int m0, m1;
};

class BlasConcurrency : public ::testing::TestWithParam<shapes> {};

TEST_P(BlasConcurrency, ConcurrentProductsOfDifferentShapesAreRight) {
  const shapes s = GetParam();
  EXPECT_EQ(wrong_batches(s.ta, s.tb, s.m0, s.m1, 3000), 0)
      << "sgemm_('" << s.ta << "','" << s.tb << "', m, 24, 32) with m = " << s.m0 << " and " << s.m1
      << " on two threads at once: wrong products (a BLAS that is not safe to call "
      << "concurrently; see bench/NOTES.md)";
}

// TT with the chunk sizes blfft used when the bug was found (78 / 50, 78 / 77, 33 / 65: the ones
// 0.3.31 gets wrong), and the other transpose forms blfft's transforms use.
INSTANTIATE_TEST_SUITE_P(Shapes, BlasConcurrency,
                         ::testing::Values(shapes{'T', 'T', 78, 50}, shapes{'T', 'T', 78, 77},
                                           shapes{'T', 'T', 33, 65}, shapes{'T', 'N', 78, 50},
                                           shapes{'N', 'T', 78, 50}, shapes{'N', 'N', 33, 65}));

}  // namespace
