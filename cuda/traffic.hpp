#pragma once
// The hook through which the CPU emulation measures the global-memory traffic of the CUDA
// kernels (issue #11: footprints per launch, without a GPU).
//
// The kernels access global memory through gload / gstore (common.hpp): under nvcc plain loads
// and stores; compiled by a host compiler (the CPU emulation of the tests and of
// bench/cuda_traffic.cpp) they also report the address and size to the calling thread's
// recorder when one is installed. The emulator installs one around each
// launch and counts the distinct addresses: a launch's footprint, which is what reaches DRAM when
// reuse inside the launch is served by L2 and shared memory. Plain C++, no CUDA header: the
// cuFFT / cuBLAS stand-ins report their operands through the same hook.

#include <cstddef>

namespace blfft::cuda::detail {

/// Receives every global access of the emulated kernels and stand-ins of the calling thread.
class traffic_recorder {
 public:
  virtual void read(const void* p, std::size_t bytes) = 0;
  virtual void write(const void* p, std::size_t bytes) = 0;

 protected:
  ~traffic_recorder() = default;
};

#if !defined(__CUDACC__)
/// The calling thread's recorder, or null (then nothing is recorded).
inline traffic_recorder*& current_traffic_recorder() {
  static thread_local traffic_recorder* r = nullptr;
  return r;
}
#endif

}  // namespace blfft::cuda::detail
