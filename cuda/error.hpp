#pragma once
// Error checks for CUDA runtime calls (cuFFT's: cufft_error.hpp): every failure becomes a
// blfft::error whose message names the call, the error and file:line. error_code::unsupported
// when the cause is that there is no usable device or driver, out_of_memory when device memory
// ran out, error_code::backend otherwise.

#include <cuda_runtime.h>

#include <string>

#include "check.hpp"
#include "cufft_error.hpp"

namespace blfft::cuda::detail {

inline bool is_no_device(cudaError_t e) {
  return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice;
}

/// Errors that a call made during CUDA graph capture gets (cudaMalloc, a synchronous copy, ...).
inline bool is_capture_error(cudaError_t e) {
  return e == cudaErrorStreamCaptureUnsupported || e == cudaErrorStreamCaptureInvalidated ||
         e == cudaErrorStreamCaptureImplicit || e == cudaErrorStreamCaptureWrongThread ||
         e == cudaErrorStreamCaptureUnjoined || e == cudaErrorStreamCaptureIsolation ||
         e == cudaErrorStreamCaptureMerge || e == cudaErrorStreamCaptureUnmatched;
}

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  const error_code code = is_no_device(e)                  ? error_code::unsupported
                          : e == cudaErrorMemoryAllocation ? error_code::out_of_memory
                                                           : error_code::backend;
  throw error(code,
              blfft::detail::cat("blfft: CUDA error ", cudaGetErrorName(e), " (",
                                 cudaGetErrorString(e), ") in ", call, " at ", file, ":", line,
                                 is_capture_error(e)
                                     ? ". A CUDA graph is being captured: blfft makes its plans "
                                       "(cuFFT plans, index tables) outside capture; run the "
                                       "layer once with the same shapes before capturing"
                                     : ""));
}

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda(e, call, file, line);
}

inline void check_launch(cudaError_t e, const char* kernel, const char* file, int line) {
  if (e == cudaSuccess) return;
  const std::string call = blfft::detail::cat("cudaGetLastError() after launching kernel ", kernel);
  throw_cuda(e, call.c_str(), file, line);
}

}  // namespace blfft::cuda::detail

/// Checks a CUDA runtime call: throws blfft::error naming the call, the error and file:line.
#define BLFFT_CUDA_CHECK(call) ::blfft::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)
/// After a kernel launch (cudaGetLastError): a bad launch configuration, or an earlier
/// asynchronous error. `kernel_name` is any const char*.
#define BLFFT_CUDA_CHECK_LAUNCH(kernel_name)                                                       \
  ::blfft::cuda::detail::check_launch(cudaGetLastError(), (kernel_name), __FILE__, __LINE__)
