#pragma once
// DFT twiddle factors in double precision.

#include <cmath>
#include <complex>
#include <cstdint>

namespace blfft::detail {

/// exp(sign * 2 pi i * k * t / L) with k * t reduced mod L first, so large products keep their
/// precision.
inline std::complex<double> twiddle(int64_t k, int64_t t, int64_t L, double sign) {
  const int64_t kt = (k % L) * (t % L) % L;
  const double a = sign * 2.0 * M_PI * static_cast<double>(kt) / static_cast<double>(L);
  return {std::cos(a), std::sin(a)};
}

}  // namespace blfft::detail
