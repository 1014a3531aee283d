// Minimal reproducer of the scipy-openblas32 failure (bench/NOTES.md, fifth round): two OpenMP
// threads call sgemm_('T','T', m, 24, 32) at the same time with their own A, B and C, one with
// m = M0 and one with m = M1 (blfft's row-transform products with chunks of 78 and 50 images);
// each thread's 32 products are compared bitwise with the same products computed alone first.
// With OpenBLAS's SkylakeX kernels, some come out wrong when M0 != M1 (78/50, 78/77); none with
// OPENBLAS_CORETYPE=Haswell, with one thread, or with M0 == M1. Wrong with scipy-openblas32
// 0.3.31.188.0, 0.3.33.201.0 and 0.3.34.481.3; right with 0.3.27-0.3.30.443.1 (bench/NOTES.md,
// sixth round): a regression of OpenBLAS 0.3.31.
//
//   SOB=<.venv>/lib/python3.11/site-packages/scipy_openblas32/lib
//   gcc -O2 -fopenmp -o sgemm_concurrent_tt sgemm_concurrent_tt.c -L$SOB -lscipy_openblas
//     -Wl,-rpath,$SOB   (one line)
//   ./sgemm_concurrent_tt [M0=78] [M1=50] [iterations=2000] [threads=2]
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void scipy_sgemm_(const char*, const char*, const int*, const int*, const int*, const float*,
                  const float*, const int*, const float*, const int*, const float*, float*,
                  const int*);
void scipy_openblas_set_num_threads(int);

enum { N = 24, K = 32, ROWS = 32 };

static void tt(int m, const float* a, const float* b, float* c) {
  const char t = 'T';
  const int n = N, k = K, lda = K, ldb = N;
  const float one = 1, zero = 0;
  scipy_sgemm_(&t, &t, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &m);
}

static float* randoms(size_t n) {
  float* p = aligned_alloc(64, (4 * n + 63) / 64 * 64);
  for (size_t i = 0; i < n; ++i) p[i] = (float)rand() / RAND_MAX - 0.5f;
  return p;
}

int main(int argc, char** argv) {
  const int m[2] = {argc > 1 ? atoi(argv[1]) : 78, argc > 2 ? atoi(argv[2]) : 50};
  const int iters = argc > 3 ? atoi(argv[3]) : 2000, threads = argc > 4 ? atoi(argv[4]) : 2;
  scipy_openblas_set_num_threads(1);  // as blfft does: its own threads are the parallelism
  float *a[2], *b[2], *c[2], *ref[2];
  for (int t = 0; t < 2; ++t) {
    a[t] = randoms((size_t)ROWS * m[t] * K);
    b[t] = randoms((size_t)K * N);
    c[t] = randoms((size_t)ROWS * m[t] * N);
    ref[t] = randoms((size_t)ROWS * m[t] * N);
    for (int r = 0; r < ROWS; ++r)
      tt(m[t], a[t] + (size_t)r * m[t] * K, b[t], ref[t] + (size_t)r * m[t] * N);
  }
  long wrong = 0;
  for (int it = 0; it < iters; ++it) {
#pragma omp parallel for schedule(dynamic) num_threads(threads)
    for (int t = 0; t < 2; ++t) {
      for (int r = 0; r < ROWS; ++r)
        tt(m[t], a[t] + (size_t)r * m[t] * K, b[t], c[t] + (size_t)r * m[t] * N);
      if (memcmp(c[t], ref[t], sizeof(float) * ROWS * m[t] * N)) {
#pragma omp atomic
        ++wrong;
      }
    }
  }
  printf("m = %d and %d on %d threads: %ld wrong of %d batches of %d products\n", m[0], m[1],
         threads, wrong, 2 * iters, ROWS);
  return wrong != 0;
}
