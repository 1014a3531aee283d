#include "blas.hpp"

#include <omp.h>

#include "check.hpp"
#include "tsan.hpp"

extern "C" {
void BLFFT_BLAS_SYMBOL(sgemm_)(const char* ta, const char* tb, const int* m, const int* n,
                               const int* k, const float* alpha, const float* a, const int* lda,
                               const float* b, const int* ldb, const float* beta, float* c,
                               const int* ldc);
void BLFFT_BLAS_SYMBOL(dgemm_)(const char* ta, const char* tb, const int* m, const int* n,
                               const int* k, const double* alpha, const double* a, const int* lda,
                               const double* b, const int* ldb, const double* beta, double* c,
                               const int* ldc);
#ifdef BLFFT_BLAS_OPENBLAS_PTHREADS
void BLFFT_BLAS_SYMBOL(openblas_set_num_threads)(int num_threads);
#endif
}

namespace blfft::detail {
namespace {
int as_int(int64_t v) {
  BLFFT_EXPECTS(v >= 0 && v <= INT32_MAX, error_code::unsupported, "GEMM dimension ", v,
                " exceeds the BLAS int range");
  return static_cast<int>(v);
}

/// Holds the calling thread's OpenMP default at one thread for one BLAS call made outside an
/// active parallel region. A BLAS threaded with OpenMP (OpenBLAS's OpenMP flavour; MKL) runs a
/// call on one thread inside an active region, but outside one on omp_get_max_threads()
/// threads, re-read at every call (openblas_set_num_threads(1) lasts until OpenBLAS's next
/// call). blfft calls BLAS outside its regions too (one thread, small problems), so that would
/// ignore blfft::set_num_threads, and, splitting the product among its threads, round it
/// differently with one blfft thread than with several: plan_options::deterministic needs every
/// call on the calling thread. Two ICV writes a call, only outside regions; BLIS ignores them.
class blas_on_calling_thread {
 public:
  blas_on_calling_thread() : saved_(omp_in_parallel() ? 1 : omp_get_max_threads()) {
    if (saved_ != 1) omp_set_num_threads(1);
  }
  ~blas_on_calling_thread() {
    if (saved_ != 1) omp_set_num_threads(saved_);
  }
  blas_on_calling_thread(const blas_on_calling_thread&) = delete;
  blas_on_calling_thread& operator=(const blas_on_calling_thread&) = delete;

 private:
  int saved_;
};

/// OpenBLAS's pthreads flavour (scipy-openblas32) splits a call among a thread pool of its own,
/// sized to the machine: inside blfft's regions that oversubscribes the cores, and it would round
/// differently with another thread count (plan_options::deterministic). blfft's own threads are
/// the parallelism, so it gets one thread, once, before the first call (process-wide: this
/// library file is blfft's; numpy and torch load BLASes of their own). OpenBLAS 0.3.31-0.3.34
/// get two concurrent products of different shapes wrong with their SkylakeX kernels, hence the
/// pin to 0.3.30 (pyproject.toml; tests/cpp/test_blas_concurrency.cpp). Other BLASes: nothing.
void blas_init_once() {
#ifdef BLFFT_BLAS_OPENBLAS_PTHREADS
  static const bool done = (BLFFT_BLAS_SYMBOL(openblas_set_num_threads)(1), true);
  (void)done;
#endif
}
}  // namespace

/// The Fortran routine of each precision.
template <class T>
struct fortran;
template <>
struct fortran<float> {
  static constexpr auto gemm = BLFFT_BLAS_SYMBOL(sgemm_);
};
template <>
struct fortran<double> {
  static constexpr auto gemm = BLFFT_BLAS_SYMBOL(dgemm_);
};

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int m = as_int(N), n = as_int(M), k = as_int(K);
  const int la = as_int(ldb), lb = as_int(lda), lc = as_int(ldc);
  const char fa = tb ? 'T' : 'N', fb = ta ? 'T' : 'N';
  blas_init_once();
  tsan::matrix(A, ta ? K : M, ta ? M : K, lda, sizeof(T), false);
  tsan::matrix(B, tb ? N : K, tb ? K : N, ldb, sizeof(T), false);
  tsan::matrix(C, M, N, ldc, sizeof(T), true);  // read too where beta != 0
  const blas_on_calling_thread one_thread;
  fortran<T>::gemm(&fa, &fb, &m, &n, &k, &alpha, B, &la, A, &lb, &beta, C, &lc);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace blfft::detail
