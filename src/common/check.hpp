#pragma once
// Argument checks that never compile out (unlike assert under NDEBUG), and overflow-checked
// size arithmetic.

#include <cstdint>
#include <sstream>
#include <string>

#include "blfft/error.hpp"

namespace blfft::detail {

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

[[noreturn]] inline void fail(error_code code, const std::string& msg) {
  throw error(code, "blfft: " + msg);
}

/// a * b, throwing error_code::overflow naming `what` if it does not fit in int64.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) fail(error_code::overflow, cat(what, " overflows int64"));
  return r;
}
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) fail(error_code::overflow, cat(what, " overflows int64"));
  return r;
}

}  // namespace blfft::detail

/// Throws blfft::error(code, "blfft: " + message) unless cond holds. Message parts are streamed.
#define BLFFT_EXPECTS(cond, code, ...)                                                             \
  do {                                                                                             \
    if (!(cond)) ::blfft::detail::fail((code), ::blfft::detail::cat(__VA_ARGS__));                 \
  } while (0)
