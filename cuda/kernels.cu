// The __global__ shells around the __host__ __device__ kernels of kernels.hpp, and
// device_executor::launch, explicitly instantiated for every kernel the pipeline launches.
// Everything a kernel computes lives in kernels.hpp, where the CPU tests run it too.

#include <cuda_runtime.h>

#include "device_executor.hpp"
#include "error.hpp"
#include "kernels.hpp"

namespace blfft::cuda::detail {
namespace {

__device__ __forceinline__ idx3 block_index() {
  return {blockIdx.x, blockIdx.y, blockIdx.z};
}
__device__ __forceinline__ idx3 thread_index() {
  return {threadIdx.x, threadIdx.y, threadIdx.z};
}

template <class K>
__global__ void __launch_bounds__(K::threads, K::min_blocks) simple_kernel(const K k) {
  k(block_index(), thread_index());
}

/// Runs the phases of a shared-memory kernel with a barrier between consecutive phases. The
/// phase count depends on the block only, so every thread reaches every barrier.
template <class K>
__global__ void __launch_bounds__(K::threads, K::min_blocks) phased_kernel(const K k) {
  __shared__ typename K::shared sh;
  typename K::regs r;
  const idx3 b = block_index(), t = thread_index();
  const int phases = k.phase_count(b);
  for (int p = 0; p < phases; ++p) {
    if (p > 0) __syncthreads();
    k.phase(p, sh, r, b, t);
  }
}

}  // namespace

template <class K>
void device_executor::launch(const launch_dims& d, const K& k, void* stream) const {
  if (d.grid.x == 0 || d.grid.y == 0 || d.grid.z == 0) return;
  const dim3 grid(d.grid.x, d.grid.y, d.grid.z), block(d.block.x, d.block.y, d.block.z);
  const auto s = static_cast<cudaStream_t>(stream);
  if constexpr (K::phased)
    phased_kernel<K><<<grid, block, 0, s>>>(k);
  else
    simple_kernel<K><<<grid, block, 0, s>>>(k);
  BLFFT_CUDA_CHECK_LAUNCH(K::name);
}

#define BLFFT_INSTANTIATE_LAUNCH(...)                                                              \
  template void device_executor::launch<__VA_ARGS__>(const launch_dims&, const __VA_ARGS__&,       \
                                                     void*) const;
#define BLFFT_INSTANTIATE_ALL(T)                                                                   \
  BLFFT_INSTANTIATE_LAUNCH(pack_rows<T>)                                                           \
  BLFFT_INSTANTIATE_LAUNCH(unpack_rows<T>)                                                         \
  BLFFT_INSTANTIATE_LAUNCH(pack_rows_tiled<T>)                                                     \
  BLFFT_INSTANTIATE_LAUNCH(unpack_rows_tiled<T>)                                                   \
  BLFFT_INSTANTIATE_LAUNCH(tile_copy<T>)                                                           \
  BLFFT_INSTANTIATE_LAUNCH(restack<T>)                                                             \
  BLFFT_INSTANTIATE_LAUNCH(depth_dft<T>)                                                           \
  BLFFT_INSTANTIATE_LAUNCH(dft_analyse<T>)                                                         \
  BLFFT_INSTANTIATE_LAUNCH(dft_synthesise<T>)                                                      \
  BLFFT_INSTANTIATE_LAUNCH(mix_small<T>)                                                           \
  BLFFT_INSTANTIATE_LAUNCH(mix_large<T>)                                                           \
  BLFFT_INSTANTIATE_LAUNCH(mix_to_taps_small<T>)                                                   \
  BLFFT_INSTANTIATE_LAUNCH(mix_to_taps_large<T>)                                                   \
  BLFFT_INSTANTIATE_LAUNCH(tap_sum<T>)                                                             \
  BLFFT_INSTANTIATE_LAUNCH(bias_grad_kernel<T>)                                                    \
  BLFFT_INSTANTIATE_LAUNCH(bias_grad_tiled<T>)                                                     \
  BLFFT_INSTANTIATE_LAUNCH(bias_grad_sum<T>)                                                       \
  BLFFT_INSTANTIATE_LAUNCH(energy_kernel<T>)
/// The kernels that read or write tensors (mix_*: the weight's taps), for 16-bit tensors X computed
/// in T.
#define BLFFT_INSTANTIATE_STORAGE(T, X)                                                            \
  BLFFT_INSTANTIATE_LAUNCH(pack_rows<T, X>)                                                        \
  BLFFT_INSTANTIATE_LAUNCH(unpack_rows<T, X>)                                                      \
  BLFFT_INSTANTIATE_LAUNCH(pack_rows_tiled<T, X>)                                                  \
  BLFFT_INSTANTIATE_LAUNCH(unpack_rows_tiled<T, X>)                                                \
  BLFFT_INSTANTIATE_LAUNCH(dft_analyse<T, X>)                                                      \
  BLFFT_INSTANTIATE_LAUNCH(dft_synthesise<T, X>)                                                   \
  BLFFT_INSTANTIATE_LAUNCH(mix_small<T, X>)                                                        \
  BLFFT_INSTANTIATE_LAUNCH(mix_large<T, X>)                                                        \
  BLFFT_INSTANTIATE_LAUNCH(mix_to_taps_small<T, X>)                                                \
  BLFFT_INSTANTIATE_LAUNCH(mix_to_taps_large<T, X>)                                                \
  BLFFT_INSTANTIATE_LAUNCH(tap_sum<T, X>)                                                          \
  BLFFT_INSTANTIATE_LAUNCH(bias_grad_kernel<T, X>)                                                 \
  BLFFT_INSTANTIATE_LAUNCH(bias_grad_tiled<T, X>)                                                  \
  BLFFT_INSTANTIATE_LAUNCH(bias_grad_sum<T, X>)
BLFFT_INSTANTIATE_ALL(float)
BLFFT_INSTANTIATE_ALL(double)
BLFFT_INSTANTIATE_STORAGE(float, half)
BLFFT_INSTANTIATE_STORAGE(float, bfloat16)

}  // namespace blfft::cuda::detail
