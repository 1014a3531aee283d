#pragma once
// One step of the matmul engine's 2D analysis, shared by the whole-pass and the split (fused)
// versions (pruned_transform_matmul.cpp, pruned_transform_split.cpp). Include only from sources
// compiled with OpenMP (the loops are `omp simd`).

#include <cstdint>

namespace blfft::detail {

/// Rows k and -k of a spectrum from the column products of one conjugate pair, P = Re D Z and
/// Q = Im D Z (n values each, real and imaginary parts apart): row k is D Z = (P_re - Q_im) +
/// i (P_im + Q_re), its mirror, with conj(D), (P_re + Q_im) + i (P_im - Q_re). `re_m` is null
/// for a self-mirrored row. Shared by the whole-pass and the split (fused) analyses.
template <class T>
inline void combine_pair(const T* pr, const T* pi, const T* qr, const T* qi, T* re, T* im, T* re_m,
                         T* im_m, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    re[j] = pr[j] - qi[j];
    im[j] = pi[j] + qr[j];
  }
  if (re_m == nullptr) return;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    re_m[j] = pr[j] + qi[j];
    im_m[j] = pi[j] - qr[j];
  }
}

}  // namespace blfft::detail
