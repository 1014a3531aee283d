#pragma once
// The entries of the pruned DFT matrices, shared by the CPU backend's matmul engine
// (src/pruned_transform_matmul.cpp) and the CUDA backend's fused transform kernels
// (cuda/kernels.hpp: dft_analyse / dft_synthesise), which compute them into shared memory on the
// device: one derivation, so that both backends map samples to kept bins identically.
// Plain C++ with a __host__ __device__ marker under nvcc; no dependencies.

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define BLFFT_DFT_HD __host__ __device__ inline
#else
#define BLFFT_DFT_HD inline
#endif

namespace blfft::detail {

/// A complex number in double precision, usable in device code (std::complex is not).
struct dft_coefficient {
  double re = 0, im = 0;
  BLFFT_DFT_HD double real() const { return re; }
  BLFFT_DFT_HD double imag() const { return im; }
};

/// exp(sign * 2 pi i * k * t / L), with k * t reduced mod L first so that large products keep
/// their precision.
BLFFT_DFT_HD dft_coefficient dft_twiddle(int64_t k, int64_t t, int64_t L, double sign) {
  const int64_t kt = (k % L) * (t % L) % L;
  constexpr double two_pi = 6.283185307179586476925;
  const double a = sign * two_pi * static_cast<double>(kt) / static_cast<double>(L);
  return {::cos(a), ::sin(a)};
}

/// How often an rfft column stands in the real inverse of a half spectrum (what c2r computes):
/// once for DC and Nyquist, twice for the others (the column and its conjugate mirror).
BLFFT_DFT_HD double half_spectrum_weight(int64_t k, int64_t L) {
  return (k == 0 || 2 * k == L) ? 1.0 : 2.0;
}

}  // namespace blfft::detail
