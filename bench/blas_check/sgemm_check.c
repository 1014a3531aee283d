// LD_PRELOAD checker for sgemm_ / scipy_sgemm_ (bench/NOTES.md, fifth round): every call is
// forwarded to the real BLAS, then its C is compared with a double-precision product of copies
// of the operands taken before the call. A wrong C whose operands did not change during the call
// is the BLAS's error, not the caller's; operands that changed mean another thread wrote them.
//
//   gcc -O2 -shared -fPIC -o sgemm_check.so sgemm_check.c -ldl
//   LD_PRELOAD=$PWD/sgemm_check.so SGEMM_CHECK_DUMP=/tmp/bad ./program
//   (SGEMM_CHECK_LIB=<path of the BLAS> where it is loaded RTLD_LOCAL, as under Python)
//
// Reports go to stderr; with SGEMM_CHECK_DUMP, the first 20 bad calls' operands are written to
// <prefix>_<n>.bin for sgemm_replay.c. Column-major, Fortran interface.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef void (*sgemm_fn)(const char*, const char*, const int*, const int*, const int*,
                         const float*, const float*, const int*, const float*, const int*,
                         const float*, float*, const int*);

static atomic_long n_calls, n_bad, n_inputs_changed, n_dumped;
// SGEMM_CHECK_SERIAL=1: one call at a time in the whole process (does concurrency matter?).
static pthread_mutex_t serial = PTHREAD_MUTEX_INITIALIZER;
static int serial_on = -1;

static void call(sgemm_fn real, const char* ta, const char* tb, const int* M, const int* N,
                 const int* K, const float* alpha, const float* a, const int* lda, const float* b,
                 const int* ldb, const float* beta, float* c, const int* ldc) {
  if (serial_on < 0) serial_on = getenv("SGEMM_CHECK_SERIAL") != NULL;
  if (serial_on) pthread_mutex_lock(&serial);
  real(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  if (serial_on) pthread_mutex_unlock(&serial);
}

static void summary(void) __attribute__((destructor));
static void summary(void) {
  fprintf(stderr, "sgemm_check: %ld calls, %ld wrong C, %ld with operands changed during the call\n",
          atomic_load(&n_calls), atomic_load(&n_bad), atomic_load(&n_inputs_changed));
}

// Elements of a column-major rows x cols operand with leading dimension ld, as stored.
static size_t span(int rows, int cols, int ld) {
  return cols == 0 || rows == 0 ? 0 : (size_t)ld * (size_t)(cols - 1) + (size_t)rows;
}

static void dump(const char* ta, const char* tb, int m, int n, int k, float alpha, const float* a,
                 int lda, const float* b, int ldb, float beta, const float* c0, int ldc,
                 size_t na, size_t nb, size_t nc, const void* pa, const void* pb, const void* pc) {
  const char* prefix = getenv("SGEMM_CHECK_DUMP");
  if (!prefix) return;
  const long id = atomic_fetch_add(&n_dumped, 1);
  if (id >= 20) return;
  char path[512];
  snprintf(path, sizeof path, "%s_%ld.bin", prefix, id);
  FILE* f = fopen(path, "wb");
  if (!f) return;
  // Header: transposes, sizes, lds, alpha, beta, element counts, original addresses mod 4096.
  const int hdr[8] = {ta[0], tb[0], m, n, k, lda, ldb, ldc};
  const float ab[2] = {alpha, beta};
  const uint64_t sizes[6] = {na, nb, nc, (uintptr_t)pa & 4095, (uintptr_t)pb & 4095,
                             (uintptr_t)pc & 4095};
  fwrite(hdr, sizeof hdr, 1, f);
  fwrite(ab, sizeof ab, 1, f);
  fwrite(sizes, sizeof sizes, 1, f);
  fwrite(a, sizeof(float), na, f);
  fwrite(b, sizeof(float), nb, f);
  fwrite(c0, sizeof(float), nc, f);
  fclose(f);
  fprintf(stderr, "sgemm_check: operands written to %s\n", path);
}

// Full check: C against a double-precision product of copies of the operands, O(m n k).
static long full_check(const char* ta, const char* tb, int m, int n, int k, float alpha,
                       const float* ca, int lda, const float* cb, int ldb, float beta,
                       const float* cc, const float* c, int ldc, double* worst, int* wi, int* wj,
                       double* got_w, double* want_w) {
  const int at = ta[0] == 'T' || ta[0] == 't', bt = tb[0] == 'T' || tb[0] == 't';
  long bad = 0;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double s = 0, bound = 0;
      for (int l = 0; l < k; ++l) {
        const double x = at ? ca[(size_t)i * lda + l] : ca[(size_t)l * lda + i];
        const double y = bt ? cb[(size_t)l * ldb + j] : cb[(size_t)j * ldb + l];
        s += x * y;
        bound += fabs(x * y);
      }
      const double c0 = beta == 0 ? 0 : cc[(size_t)j * ldc + i];
      const double want = alpha * s + beta * c0;
      bound = fabs(alpha) * bound + fabs(beta * c0);
      const double got = c[(size_t)j * ldc + i];
      const double err = fabs(got - want);
      // float32 products of k terms: a few k * 2^-24 of the bound; 1e-4 leaves room.
      if (!(err <= 1e-4 * bound + 1e-30)) {
        ++bad;
        if (!(err <= *worst)) *worst = err, *got_w = got, *want_w = want, *wi = i, *wj = j;
      }
    }
  return bad;
}

// Light check (SGEMM_CHECK_LIGHT=1), to disturb the timing less: Freivalds' test, C x against
// alpha op(A) (op(B) x) + beta C0 x for x = (1, -1, 1, ...) -ish weights, O(m n + m k + k n);
// operands copied only when it fails (A and B should not have changed; C0 is then lost).
static int light_ok(int at, int bt, int m, int n, int k, float alpha, const float* a, int lda,
                    const float* b, int ldb, float beta, const double* c0x, const double* c0b,
                    const float* c, int ldc) {
  double* v = malloc(sizeof(double) * (size_t)(2 * k + 1));
  double* vb = v + k;
  for (int l = 0; l < k; ++l) {
    double s = 0, sb = 0;
    for (int j = 0; j < n; ++j) {
      const double y = bt ? b[(size_t)l * ldb + j] : b[(size_t)j * ldb + l];
      const double x = 1.0 + 0.25 * (j % 5);
      s += y * x, sb += fabs(y) * x;
    }
    v[l] = s, vb[l] = sb;
  }
  int ok = 1;
  for (int i = 0; i < m && ok; ++i) {
    double u = 0, ub = 0, cx = 0;
    for (int l = 0; l < k; ++l) {
      const double x = at ? a[(size_t)i * lda + l] : a[(size_t)l * lda + i];
      u += x * v[l], ub += fabs(x) * vb[l];
    }
    for (int j = 0; j < n; ++j) cx += c[(size_t)j * ldc + i] * (1.0 + 0.25 * (j % 5));
    const double want = alpha * u + beta * c0x[i];
    const double bound = fabs(alpha) * ub + fabs(beta) * c0b[i];
    if (!(fabs(cx - want) <= 1e-4 * bound + 1e-30)) ok = 0;
  }
  free(v);
  return ok;
}

static void check(sgemm_fn real, const char* ta, const char* tb, const int* M, const int* N,
                  const int* K, const float* alpha, const float* a, const int* lda,
                  const float* b, const int* ldb, const float* beta, float* c, const int* ldc) {
  const int m = *M, n = *N, k = *K;
  const int at = ta[0] == 'T' || ta[0] == 't', bt = tb[0] == 'T' || tb[0] == 't';
  const size_t na = at ? span(k, m, *lda) : span(m, k, *lda);
  const size_t nb = bt ? span(n, k, *ldb) : span(k, n, *ldb);
  const size_t nc = span(m, n, *ldc);
  static int light = -1;
  if (light < 0) light = getenv("SGEMM_CHECK_LIGHT") != NULL;
  atomic_fetch_add(&n_calls, 1);
  if (light) {
    // Copies of A and B before the call (thread-local, reused): the check runs on them, and
    // comparing them with A and B afterwards tells whether another thread wrote an operand.
    static __thread float *la, *lb;
    static __thread size_t la_n, lb_n;
    if (na + 1 > la_n) free(la), la = malloc(sizeof(float) * (la_n = na + 1));
    if (nb + 1 > lb_n) free(lb), lb = malloc(sizeof(float) * (lb_n = nb + 1));
    if (na) memcpy(la, a, sizeof(float) * na);
    if (nb) memcpy(lb, b, sizeof(float) * nb);
    double* c0x = calloc((size_t)(2 * m + 1), sizeof(double));
    double* c0b = c0x + m;
    if (*beta != 0)
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          const double y = c[(size_t)j * *ldc + i] * (1.0 + 0.25 * (j % 5));
          c0x[i] += y, c0b[i] += fabs(y);
        }
    call(real, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    const int changed = (na && memcmp(la, a, sizeof(float) * na)) ||
                        (nb && memcmp(lb, b, sizeof(float) * nb));
    if (changed) atomic_fetch_add(&n_inputs_changed, 1);
    if (!light_ok(at, bt, m, n, k, *alpha, la, *lda, lb, *ldb, *beta, c0x, c0b, c, *ldc)) {
      atomic_fetch_add(&n_bad, 1);
      // The same call again at once, on the same thread, into a private C.
      int again = -1;
      if (*beta == 0) {
        float* c2 = calloc(nc + 1, sizeof(float));
        call(real, ta, tb, M, N, K, alpha, la, lda, lb, ldb, beta, c2, ldc);
        again = light_ok(at, bt, m, n, k, *alpha, la, *lda, lb, *ldb, *beta, c0x, c0b, c2, *ldc);
        free(c2);
      }
      fprintf(stderr,
              "sgemm_check: WRONG (light) tid %ld %c%c m=%d n=%d k=%d lda=%d ldb=%d ldc=%d "
              "alpha=%g beta=%g a%%64=%lu b%%64=%lu c%%64=%lu; operands %s during the call; "
              "repeated at once: %s\n",
              (long)syscall(SYS_gettid), ta[0], tb[0], m, n, k, *lda, *ldb, *ldc, *alpha, *beta,
              (unsigned long)((uintptr_t)a % 64), (unsigned long)((uintptr_t)b % 64),
              (unsigned long)((uintptr_t)c % 64), changed ? "CHANGED" : "unchanged",
              again < 0 ? "not tried" : again ? "right" : "wrong");
      if (*beta == 0) {  // replayable: C0 irrelevant
        float* zero = calloc(nc + 1, sizeof(float));
        dump(ta, tb, m, n, k, *alpha, la, *lda, lb, *ldb, *beta, zero, *ldc, na, nb, nc, a, b, c);
        free(zero);
      }
    }
    free(c0x);
    return;
  }
  float* ca = malloc(sizeof(float) * (na + 1));
  float* cb = malloc(sizeof(float) * (nb + 1));
  float* cc = malloc(sizeof(float) * (nc + 1));
  if (na) memcpy(ca, a, sizeof(float) * na);
  if (nb) memcpy(cb, b, sizeof(float) * nb);
  if (nc) memcpy(cc, c, sizeof(float) * nc);
  call(real, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
  const int changed = (na && memcmp(ca, a, sizeof(float) * na)) ||
                      (nb && memcmp(cb, b, sizeof(float) * nb));
  if (changed) atomic_fetch_add(&n_inputs_changed, 1);
  double worst = 0, got_w = 0, want_w = 0;
  int wi = -1, wj = -1;
  const long bad = full_check(ta, tb, m, n, k, *alpha, ca, *lda, cb, *ldb, *beta, cc, c, *ldc,
                              &worst, &wi, &wj, &got_w, &want_w);
  if (bad) {
    atomic_fetch_add(&n_bad, 1);
    fprintf(stderr,
            "sgemm_check: WRONG tid %ld %c%c m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%g "
            "beta=%g a%%64=%lu b%%64=%lu c%%64=%lu: %ld of %ld elements bad, worst (%d,%d) got "
            "%g want %g%s\n",
            (long)syscall(SYS_gettid), ta[0], tb[0], m, n, k, *lda, *ldb, *ldc, *alpha, *beta,
            (unsigned long)((uintptr_t)a % 64), (unsigned long)((uintptr_t)b % 64),
            (unsigned long)((uintptr_t)c % 64), bad, (long)m * n, wi, wj, got_w, want_w,
            changed ? " (operands changed during the call)" : "");
    dump(ta, tb, m, n, k, *alpha, ca, *lda, cb, *ldb, *beta, cc, *ldc, na, nb, nc, a, b, c);
  }
  free(ca);
  free(cb);
  free(cc);
}

// A BLAS loaded with RTLD_LOCAL (under a Python extension module) is not in the global scope
// RTLD_NEXT searches: SGEMM_CHECK_LIB names its file.
static void* from_library(const char* name) {
  const char* lib = getenv("SGEMM_CHECK_LIB");
  void* h = lib ? dlopen(lib, RTLD_NOW | RTLD_NOLOAD) : NULL;
  return h ? dlsym(h, name) : NULL;
}

#define CHECKED(name)                                                                          \
  void name(const char* ta, const char* tb, const int* m, const int* n, const int* k,          \
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb, \
            const float* beta, float* c, const int* ldc) {                                     \
    static sgemm_fn real;                                                                      \
    if (!real) real = (sgemm_fn)dlsym(RTLD_NEXT, #name);                                       \
    if (!real) real = (sgemm_fn)from_library(#name);                                           \
    if (!real) abort();                                                                        \
    check(real, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);                         \
  }
CHECKED(sgemm_)
CHECKED(scipy_sgemm_)
