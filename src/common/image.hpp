#pragma once
// The two small descriptions every transform of both backends is written in: where an image's
// samples sit on the FFT grid (placement) and how its elements are strided in memory
// (image_view). Plain aggregates with no dependencies, so that the CUDA kernels
// (cuda/kernels.hpp) use them in __host__ __device__ code as they are.

#include <cstdint>

namespace blfft::detail {

/// Grid index of sample i along one axis: offset + step * i, for i < count
/// (docs/design.md 1.5-1.6: input offset padding, step 1; weight offset 0, step dilation;
/// grad_out offset 0, step stride).
struct placement {
  int64_t count = 1;
  int64_t offset = 0;
  int64_t step = 1;
};

/// A strided 4D (b, ch, h, w) view, element strides; rank-3 tensors have stride_h unused (one
/// row).
template <class T>
struct image_view {
  T* data = nullptr;
  int64_t stride_b = 0, stride_ch = 0, stride_h = 0, stride_w = 0;
};

}  // namespace blfft::detail
