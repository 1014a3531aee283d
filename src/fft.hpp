#pragma once
// The small internal interface to the CPU FFT library. Only fft_fftw.cpp knows FFTW; swapping
// the FFT library (FFTW is GPL-2+) means rewriting that one file.
//
// Three batched 1D transforms cover every pass of the pruned 2D transforms:
//   rfft_rows:  `howmany` real rows of length n (distance n) -> rows of n/2+1 complex
//   irfft_rows: the inverse (unnormalised); it may overwrite its input
//   cfft_cols:  in place on `howmany` contiguous complex columns of length n (distance n)
// Plans are built once per (kind, n, howmany) and cached process-wide; executing one is
// thread-safe. Buffers passed to execute must be 64-byte aligned (aligned_buffer is).

#include <complex>
#include <cstdint>
#include <memory>

#include "blfft/plan.hpp"

namespace blfft::detail {

enum class fft_kind { r2c_rows, c2r_rows, c2c_cols_forward, c2c_cols_backward };

template <class T>
class fft_plan {
 public:
  virtual ~fft_plan() = default;
  /// Runs the transform. For cfft_cols, `in` == `out` (in place).
  virtual void execute(void* in, void* out) const = 0;
};

template <class T>
std::shared_ptr<const fft_plan<T>> make_fft(fft_kind kind, int64_t n, int64_t howmany,
                                            fft_rigor rigor);

/// Drops cached FFT plans that no blfft plan uses any more.
void trim_fft_cache();
/// FFT plans cached now (float and double); exported for the tests.
BLFFT_API std::size_t fft_cache_size();

}  // namespace blfft::detail
