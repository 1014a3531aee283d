#pragma once
/// @file standin_cufft.hpp
/// CPU stand-ins for the cuFFT functions that blfft's CUDA backend calls (cuda/cufft_plans.hpp):
///   cufftCreate, cufftDestroy, cufftSetAutoAllocation, cufftMakePlanMany64, cufftSetStream,
///   cufftSetWorkArea, cufftExecR2C / C2R / C2C / D2Z / Z2D / Z2Z,
/// defined in standin_cufft.cpp with cufft.h's own declarations (so the signatures are checked by
/// the compiler), written from NVIDIA's documented semantics, not from the backend's assumptions:
/// - advanced data layout (inembed and onembed both non-null): element (x0, x1, x2) of transform
///   b is at b * idist + ((x0 * inembed[1] + x1) * inembed[2] + x2) * istride (ranks 1-3; the
///   same for the output with onembed, ostride, odist), counted in elements of the data type;
///   either embed pointer null: the basic layout, and the stride and distance arguments ignored;
/// - R2C / D2Z write n/2+1 complex outputs along the last dimension, C2R / Z2D read as many;
/// - transforms are unnormalised: forward then inverse multiplies by the product of n;
/// - an out-of-place C2R / Z2D overwrites its input: the stand-in fills every input element it
///   read with NaN after reading it, so a caller that reuses that input fails its test;
/// - with auto-allocation off the caller provides the work area (cufftSetWorkArea): the stand-in
///   reports a non-zero work size, refuses to execute without a work area (CUFFT_NO_WORKSPACE) and
///   fills all of it with garbage at each execution (a too-small or shared work area shows);
/// - a plan belongs to the device current when it was made; executing it with another device
///   current (CUFFT_INVALID_DEVICE) or on a stream registered to another device
///   (CUFFT_INVALID_VALUE) fails (standin_runtime.hpp holds the emulated devices and streams);
/// - out-of-place input and output whose address ranges overlap: CUFFT_INVALID_VALUE.
/// The transforms are computed in double precision as direct DFTs (O(n^2) per axis: test sizes
/// only), then rounded to the data type. C2R takes the real part of the inverse of the
/// Hermitian-completed spectrum; inputs that are not Hermitian where the transform needs them to
/// be (the imaginary parts of the self-conjugate bins, beyond rounding) are counted in
/// cufft_counters::non_hermitian, since what cuFFT returns for them is unspecified.
/// Executions run synchronously on the calling thread (a stream's order is program order).

#include <cufft.h>

#include <array>
#include <cstddef>
#include <string>

namespace blfft_standin {

/// What a stand-in plan holds (for tests).
struct cufft_plan_info {
  bool made = false;  // cufftMakePlan* succeeded
  int device = -1;    // the device current at cufftMakePlanMany64
  int rank = 0;
  std::array<long long, 3> n{}, inembed{}, onembed{};
  bool advanced = false;  // both embed arrays were given
  long long istride = 0, idist = 0, ostride = 0, odist = 0, batch = 0;
  cufftType type = CUFFT_C2C;
  std::size_t work_size = 0;
  bool auto_allocation = true;
  void* work_area = nullptr;
  cudaStream_t stream = nullptr;
  long long executions = 0;
};

/// False when `h` is not a live handle.
bool cufft_plan_info_of(cufftHandle h, cufft_plan_info* out);

/// Calls made since the last reset (all threads).
struct cufft_counters {
  long long create = 0, destroy = 0, make_plan = 0, set_stream = 0, set_work_area = 0,
            set_auto_allocation = 0, exec = 0, failed = 0, non_hermitian = 0;
};
cufft_counters cufft_stats();
void reset_cufft_stats();
/// Handles created and not destroyed.
int cufft_live_plans();
/// Why the last call that did not return CUFFT_SUCCESS failed (this thread).
std::string cufft_last_error();

}  // namespace blfft_standin
