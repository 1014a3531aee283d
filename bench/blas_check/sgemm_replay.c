// Replays one sgemm call written by sgemm_check.c (bench/NOTES.md, fifth round): its operands at
// their original offsets within a page, on `threads` threads at once, `reps` times each, every C
// compared with a double-precision product; prints how many were wrong.
//
//   gcc -O2 -pthread -o sgemm_replay sgemm_replay.c -ldl -lm
//   ./sgemm_replay <libscipy_openblas.so> <dump.bin> [threads=1] [reps=100]
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*sgemm_fn)(const char*, const char*, const int*, const int*, const int*,
                         const float*, const float*, const int*, const float*, const int*,
                         const float*, float*, const int*);

static sgemm_fn sgemm;
static int hdr[8];
static float ab[2];
static uint64_t sizes[6];
static float *A, *B, *C0;
static double* want;
static double* bound;
static int reps = 100;
static atomic_long wrong_calls, total_calls;

// A fresh copy of n floats at byte offset `off` into a page-aligned buffer.
static float* placed(const float* src, size_t n, uint64_t off) {
  unsigned char* p = aligned_alloc(4096, ((off + 4 * n + 64) / 4096 + 1) * 4096);
  float* f = (float*)(p + off);
  memcpy(f, src, 4 * n);
  return f;
}

static void* worker(void* arg) {
  (void)arg;
  const int m = hdr[2], n = hdr[3], k = hdr[4], lda = hdr[5], ldb = hdr[6], ldc = hdr[7];
  const char ta = (char)hdr[0], tb = (char)hdr[1];
  float* a = placed(A, sizes[0], sizes[3]);
  float* b = placed(B, sizes[1], sizes[4]);
  float* c = placed(C0, sizes[2], sizes[5]);
  for (int r = 0; r < reps; ++r) {
    memcpy(c, C0, 4 * sizes[2]);
    sgemm(&ta, &tb, &m, &n, &k, &ab[0], a, &lda, b, &ldb, &ab[1], c, &ldc);
    long bad = 0;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const size_t e = (size_t)j * m + i;
        if (!(fabs(c[(size_t)j * ldc + i] - want[e]) <= 1e-4 * bound[e] + 1e-30)) ++bad;
      }
    atomic_fetch_add(&total_calls, 1);
    if (bad) atomic_fetch_add(&wrong_calls, 1);
  }
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <blas.so> <dump.bin> [threads] [reps]\n", argv[0]);
    return 2;
  }
  void* lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) return fprintf(stderr, "%s\n", dlerror()), 2;
  sgemm = (sgemm_fn)dlsym(lib, "scipy_sgemm_");
  if (!sgemm) sgemm = (sgemm_fn)dlsym(lib, "sgemm_");
  void (*set_threads)(int) = (void (*)(int))dlsym(lib, "scipy_openblas_set_num_threads");
  if (set_threads) set_threads(1);  // as src/blas.cpp does
  const int threads = argc > 3 ? atoi(argv[3]) : 1;
  if (argc > 4) reps = atoi(argv[4]);
  FILE* f = fopen(argv[2], "rb");
  if (!f || fread(hdr, sizeof hdr, 1, f) != 1 || fread(ab, sizeof ab, 1, f) != 1 ||
      fread(sizes, sizeof sizes, 1, f) != 1)
    return fprintf(stderr, "bad dump\n"), 2;
  A = malloc(4 * sizes[0] + 4), B = malloc(4 * sizes[1] + 4), C0 = malloc(4 * sizes[2] + 4);
  if (fread(A, 4, sizes[0], f) != sizes[0] || fread(B, 4, sizes[1], f) != sizes[1] ||
      fread(C0, 4, sizes[2], f) != sizes[2])
    return fprintf(stderr, "short dump\n"), 2;
  const int m = hdr[2], n = hdr[3], k = hdr[4], lda = hdr[5], ldb = hdr[6], ldc = hdr[7];
  const int at = hdr[0] == 'T', bt = hdr[1] == 'T';
  want = malloc(sizeof(double) * (size_t)m * n);
  bound = malloc(sizeof(double) * (size_t)m * n);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0, bd = 0;
      for (int l = 0; l < k; ++l) {
        const double x = at ? A[(size_t)i * lda + l] : A[(size_t)l * lda + i];
        const double y = bt ? B[(size_t)l * ldb + j] : B[(size_t)j * ldb + l];
        s += x * y, bd += fabs(x * y);
      }
      const double c0 = ab[1] == 0 ? 0 : C0[(size_t)j * ldc + i];
      want[(size_t)j * m + i] = ab[0] * s + ab[1] * c0;
      bound[(size_t)j * m + i] = fabs(ab[0]) * bd + fabs(ab[1] * c0);
    }
  printf("%c%c m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g offsets %lu %lu %lu\n",
         hdr[0], hdr[1], m, n, k, lda, ldb, ldc, ab[0], ab[1], (unsigned long)sizes[3],
         (unsigned long)sizes[4], (unsigned long)sizes[5]);
  pthread_t t[256];
  for (int i = 0; i < threads && i < 256; ++i) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < threads && i < 256; ++i) pthread_join(t[i], NULL);
  printf("%ld wrong of %ld calls (%d threads)\n", atomic_load(&wrong_calls),
         atomic_load(&total_calls), threads);
  return 0;
}
