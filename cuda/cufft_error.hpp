#pragma once
// Error checks for cuFFT calls: a failure becomes a blfft::error (error_code::backend) whose
// message names the call, the result and file:line. Needs cufft.h only (no CUDA runtime), so that
// the CPU emulation tests compile the backend's cuFFT code against the cuFFT stand-ins.

#include <cufft.h>

#include "check.hpp"

namespace blfft::cuda::detail {

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

/// Checks a cuFFT call: throws blfft::error naming the call, the result and file:line.
#define BLFFT_CUFFT_CHECK(call)                                                                    \
  ::blfft::cuda::detail::check_cufft((call), #call, __FILE__, __LINE__)
