#pragma once
// Error checks for CUDA runtime and cuFFT calls: every failure becomes a blfft::error whose
// message names the call, the error and file:line. error_code::unsupported when the cause is that
// there is no usable device or driver, error_code::backend otherwise.

#include <cuda_runtime.h>
#include <cufft.h>

#include <string>

#include "check.hpp"

namespace blfft::cuda::detail {

inline bool is_no_device(cudaError_t e) {
  return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
         e == cudaErrorInvalidDevice;
}

[[noreturn]] inline void throw_cuda(cudaError_t e, const char* call, const char* file, int line) {
  throw error(is_no_device(e) ? error_code::unsupported : error_code::backend,
              blfft::detail::cat("blfft: CUDA error ", cudaGetErrorName(e), " (",
                                 cudaGetErrorString(e), ") in ", call, " at ", file, ":", line));
}

inline void check_cuda(cudaError_t e, const char* call, const char* file, int line) {
  if (e != cudaSuccess) throw_cuda(e, call, file, line);
}

inline void check_launch(cudaError_t e, const char* kernel, const char* file, int line) {
  if (e == cudaSuccess) return;
  const std::string call = blfft::detail::cat("cudaGetLastError() after launching kernel ", kernel);
  throw_cuda(e, call.c_str(), file, line);
}

inline const char* cufft_result_name(cufftResult r) {
  switch (r) {
    case CUFFT_SUCCESS: return "CUFFT_SUCCESS";
    case CUFFT_INVALID_PLAN: return "CUFFT_INVALID_PLAN";
    case CUFFT_ALLOC_FAILED: return "CUFFT_ALLOC_FAILED";
    case CUFFT_INVALID_TYPE: return "CUFFT_INVALID_TYPE";
    case CUFFT_INVALID_VALUE: return "CUFFT_INVALID_VALUE";
    case CUFFT_INTERNAL_ERROR: return "CUFFT_INTERNAL_ERROR";
    case CUFFT_EXEC_FAILED: return "CUFFT_EXEC_FAILED";
    case CUFFT_SETUP_FAILED: return "CUFFT_SETUP_FAILED";
    case CUFFT_INVALID_SIZE: return "CUFFT_INVALID_SIZE";
    case CUFFT_UNALIGNED_DATA: return "CUFFT_UNALIGNED_DATA";
    case CUFFT_INVALID_DEVICE: return "CUFFT_INVALID_DEVICE";
    case CUFFT_NO_WORKSPACE: return "CUFFT_NO_WORKSPACE";
    case CUFFT_NOT_IMPLEMENTED: return "CUFFT_NOT_IMPLEMENTED";
    case CUFFT_NOT_SUPPORTED: return "CUFFT_NOT_SUPPORTED";
    default: return "unknown cufftResult";
  }
}

inline void check_cufft(cufftResult r, const char* call, const char* file, int line) {
  if (r == CUFFT_SUCCESS) return;
  throw error(error_code::backend,
              blfft::detail::cat("blfft: cuFFT error ", cufft_result_name(r), " (",
                                 static_cast<int>(r), ") in ", call, " at ", file, ":", line));
}

}  // namespace blfft::cuda::detail

/// Checks a CUDA runtime call: throws blfft::error naming the call, the error and file:line.
#define BLFFT_CUDA_CHECK(call) ::blfft::cuda::detail::check_cuda((call), #call, __FILE__, __LINE__)
/// Checks a cuFFT call likewise.
#define BLFFT_CUFFT_CHECK(call) \
  ::blfft::cuda::detail::check_cufft((call), #call, __FILE__, __LINE__)
/// After a kernel launch (cudaGetLastError): a bad launch configuration, or an earlier
/// asynchronous error. `kernel_name` is any const char*.
#define BLFFT_CUDA_CHECK_LAUNCH(kernel_name)                                                   \
  ::blfft::cuda::detail::check_launch(cudaGetLastError(), (kernel_name), __FILE__, __LINE__)
