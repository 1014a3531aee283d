#pragma once
// Samples in and out of the pruned transforms' scratch, for both engines
// (pruned_transform_fft.cpp, pruned_transform_matmul.cpp): the gather of image rows before an
// analysis and the epilogue (scale, bias, strided store) after a synthesis.

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace blfft::detail {

/// f(m, r, ch, row) for every sample row r < rows of the chunk's images j0 .. j0 + mc - 1 in `v`
/// (image j is batch j / CH, channel ch = j % CH); `row` points at the row's first sample.
template <class View, class F>
void for_each_sample_row(const View& v, int64_t CH, int64_t j0, int64_t mc, int64_t rows, F&& f) {
  for (int64_t m = 0; m < mc; ++m) {
    const int64_t j = j0 + m, ch = j % CH;
    auto* base = v.data + (j / CH) * v.stride_b + ch * v.stride_ch;
    for (int64_t r = 0; r < rows; ++r) f(m, r, ch, base + r * v.stride_h);
  }
}

/// d[i * ds] = s[i * ss] for i < n.
template <class T>
void copy_samples(const T* s, int64_t ss, int64_t n, T* d, int64_t ds) {
  if (ss == 1 && ds == 1) {
    std::memcpy(d, s, sizeof(T) * static_cast<std::size_t>(n));
  } else {
    for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss];
  }
}

/// d[i * ds] = s[i * ss] * scale + add for i < n (the synthesis epilogue).
template <class T>
void store_samples(const T* s, int64_t ss, int64_t n, T scale, T add, T* d, int64_t ds) {
  if (ss == 1 && ds == 1) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) d[i] = s[i] * scale + add;
  } else {
    for (int64_t i = 0; i < n; ++i) d[i * ds] = s[i * ss] * scale + add;
  }
}

}  // namespace blfft::detail
