#pragma once
/// @file error.hpp
/// The one exception type blfft throws, with a code saying which kind of mistake it reports.

#include <stdexcept>
#include <string>

#include "blfft/export.hpp"

namespace blfft {

/// What went wrong. Python maps `invalid_argument`/`shape_mismatch`/`overflow` to ValueError,
/// `type_mismatch` to TypeError, `out_of_memory` to MemoryError and the rest to blfft.BlfftError.
enum class error_code {
  invalid_argument,  ///< a value outside its allowed range (sizes, rates, strides, pointers)
  shape_mismatch,    ///< a buffer whose shape or strides do not match the plan
  overflow,          ///< sizes whose element counts do not fit in 64 bits
  type_mismatch,     ///< wrong dtype or device
  unsupported,       ///< a valid request this build cannot serve (e.g. no CUDA backend)
  backend,           ///< an FFT, BLAS, CUDA or cuFFT call failed
  out_of_memory,     ///< an allocation failed, or a buffer would exceed the size cap
                     ///< (get_max_buffer_bytes); nothing is left half-done (Python: MemoryError)
};

/// The enumerator's name ("invalid_argument", ...), as Python's BlfftError.code reports it.
inline const char* error_code_name(error_code c) noexcept {
  switch (c) {
    case error_code::invalid_argument: return "invalid_argument";
    case error_code::shape_mismatch: return "shape_mismatch";
    case error_code::overflow: return "overflow";
    case error_code::type_mismatch: return "type_mismatch";
    case error_code::unsupported: return "unsupported";
    case error_code::backend: return "backend";
    case error_code::out_of_memory: return "out_of_memory";
  }
  return "unknown";
}

/// Exception thrown by every blfft entry point. The message names the offending argument.
class BLFFT_API error : public std::runtime_error {
 public:
  error(error_code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  error_code code() const noexcept { return code_; }

 private:
  error_code code_;
};

}  // namespace blfft
