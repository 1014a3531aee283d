#pragma once
// A batched 1D FFT of the pipeline (pipeline.hpp), in cuFFT's advanced-layout terms. No CUDA
// header: the pipeline and the CPU emulation tests include it with a plain C++ compiler.

#include <cstdint>
#include <tuple>

namespace blfft::cuda::detail {

enum class fft_type { r2c, c2r, c2c_forward, c2c_inverse };

/// `batch` transforms of length n: element i of transform b is read at in[b * idist +
/// i * istride] and written at out[b * odist + i * ostride], counted in elements of the input and
/// output types (real or complex). Unnormalised, like cuFFT and FFTW. r2c writes n/2+1 complex
/// outputs per transform, c2r reads n/2+1 complex inputs (and, like cuFFT, may overwrite them).
struct fft_desc {
  fft_type type = fft_type::c2c_forward;
  bool double_precision = false;
  int64_t n = 1, batch = 1;
  int64_t istride = 1, idist = 1, ostride = 1, odist = 1;

  bool operator<(const fft_desc& o) const {
    return std::tie(type, double_precision, n, batch, istride, idist, ostride, odist) <
           std::tie(o.type, o.double_precision, o.n, o.batch, o.istride, o.idist, o.ostride,
                    o.odist);
  }
};

}  // namespace blfft::cuda::detail
