#pragma once
// The tensors' element types and the compute type of the kernels (issue #11): x, w, y and the
// gradients are read and written in their own type X (float, double, or the 16-bit half and
// bfloat16 of blfft/cuda.hpp), computed in T (float for the 16-bit types); spectra are T. The
// kernels' loads and stores of tensors go through load_as / store_as, so that gload / gstore,
// and the traffic the emulation counts, see X's size.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "blfft/cuda.hpp"
#include "common.hpp"

namespace blfft::cuda::detail {

BLFFT_HD_INLINE uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
BLFFT_HD_INLINE float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/// binary16 -> float (exact).
BLFFT_HD_INLINE float to_float(half h) {
  const uint32_t sign = uint32_t(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1fu,
                 m = h.bits & 0x3ffu;
  if (e == 0) {  // zero and subnormals: m * 2^-24
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));  // inf, NaN (payload kept)
  return bits_float(sign | ((e + 112) << 23) | (m << 13));
}

/// float -> binary16, round to nearest even; overflow to infinity, NaN stays NaN.
BLFFT_HD_INLINE half to_half(float f) {
  const uint32_t x = float_bits(f), sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return {uint16_t(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u))};
  if (a >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};  // >= 65520: rounds to infinity
  if (a < 0x38800000u) {  // below 2^-14: a subnormal half, units of 2^-24 (exact in float)
    const float units = bits_float(a) * 16777216.0f;
    return {uint16_t(sign | static_cast<uint32_t>(rintf(units)))};  // rint: nearest even
  }
  uint32_t h = ((a >> 23) - 112) << 10 | ((a >> 13) & 0x3ffu);
  const uint32_t rest = a & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent
  return {uint16_t(sign | h)};
}

/// bfloat16 -> float (exact).
BLFFT_HD_INLINE float to_float(bfloat16 b) {
  return bits_float(uint32_t(b.bits) << 16);
}

/// float -> bfloat16, round to nearest even; NaN stays NaN.
BLFFT_HD_INLINE bfloat16 to_bfloat16(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return {uint16_t((x >> 16) | 0x40u)};  // quiet NaN
  return {uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16)};
}

/// X's value in the compute type T.
template <class T, class X>
BLFFT_HD_INLINE T to_compute(X v) {
  if constexpr (std::is_same_v<X, half> || std::is_same_v<X, bfloat16>)
    return static_cast<T>(to_float(v));
  else
    return static_cast<T>(v);
}
/// A compute value stored as X.
template <class X, class T>
BLFFT_HD_INLINE X to_storage(T v) {
  if constexpr (std::is_same_v<X, half>)
    return to_half(static_cast<float>(v));
  else if constexpr (std::is_same_v<X, bfloat16>)
    return to_bfloat16(static_cast<float>(v));
  else
    return static_cast<X>(v);
}

/// A tensor element loaded (gload) as T, and a T stored (gstore) as the tensor's X.
template <class T, class X>
BLFFT_HD_INLINE T load_as(const X* p) {
  return to_compute<T>(gload(p));
}
template <class X, class T>
BLFFT_HD_INLINE void store_as(X* p, T v) {
  gstore(p, to_storage<X>(v));
}

}  // namespace blfft::cuda::detail
