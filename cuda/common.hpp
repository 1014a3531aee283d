#pragma once
// Shared by the CUDA kernels (compiled by nvcc) and by their CPU emulation in the tests (compiled
// by the host compiler): the __host__ __device__ marker, launch geometry types, and the launch
// limits every host-side geometry function respects, and the global-memory accessors.

#include <cstdint>

#include "traffic.hpp"

#if defined(__CUDACC__)
#define BLFFT_HD __host__ __device__
#define BLFFT_HD_INLINE __host__ __device__ __forceinline__
#else
#define BLFFT_HD
#define BLFFT_HD_INLINE inline
#endif

namespace blfft::cuda::detail {

/// A block or thread index (CUDA's uint3), usable on the host.
struct idx3 {
  unsigned x = 0, y = 0, z = 0;
};

/// What a launch needs: grid size in blocks and block size in threads, per axis.
struct launch_dims {
  idx3 grid;
  idx3 block;
};

/// CUDA's limits on grid dimensions.
constexpr int64_t max_grid_x = 2147483647;
constexpr int64_t max_grid_yz = 65535;

/// Index arithmetic inside kernels is 32-bit where it divides (64-bit division is slow on GPUs);
/// every launch is sized so that its flattened index spaces stay below this bound.
constexpr int64_t max_flat_index = int64_t(1) << 31;

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

/// Every global-memory access of a kernel goes through these two: plain accesses on the GPU; in
/// the CPU emulation they also report to the thread's traffic recorder (traffic.hpp).
template <class T>
BLFFT_HD_INLINE T gload(const T* p) {
#if !defined(__CUDACC__)
  if (traffic_recorder* r = current_traffic_recorder()) r->read(p, sizeof(T));
#endif
  return *p;
}
template <class T>
BLFFT_HD_INLINE void gstore(T* p, T v) {
#if !defined(__CUDACC__)
  if (traffic_recorder* r = current_traffic_recorder()) r->write(p, sizeof(T));
#endif
  *p = v;
}

}  // namespace blfft::cuda::detail
