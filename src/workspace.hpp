#pragma once
// Memory for one call: spectra of outputs and gradients and the threads' scratch come from one
// process-wide pool of byte buffers. Fresh multi-megabyte allocations cost page faults on every
// call, so finished calls leave their buffers idle in the pool for the next one; the pool keeps
// at most get_max_idle_bytes() idle (the largest recently used ones first) and gives everything
// back on release_memory(). Every request is checked against get_max_buffer_bytes() before
// anything is allocated.

#include <cstddef>
#include <cstdint>
#include <memory>

#include "aligned_buffer.hpp"

namespace blfft::detail {

using byte_buffer = aligned_buffer<unsigned char>;

/// A buffer of at least `bytes` (contents undefined), idle or fresh. Throws
/// error(out_of_memory) naming `what` when `bytes` exceeds the cap, std::bad_alloc when the
/// memory is not there even after the idle buffers were released.
std::unique_ptr<byte_buffer> take_buffer(std::size_t bytes, const char* what);
/// Back to the pool (kept idle, or freed past the idle limit).
void give_back(std::unique_ptr<byte_buffer> b) noexcept;
/// Refuses (error_code::out_of_memory, naming `what`) a request of more than the cap.
void check_buffer_bytes(std::size_t bytes, const char* what);

/// Bytes every pooled buffer has past its end: BLAS may read a few elements past the end of C
/// (Debian's BLIS 0.9 haswell sgemm reads 2 floats past it for m = 2), so that must be ours.
constexpr std::size_t blas_slack_bytes = 64;

/// RAII lease of n elements of T from the pool.
template <class T>
class lease {
 public:
  lease() = default;
  lease(std::size_t n, const char* what)
      : buf_(n == 0 ? nullptr
                    : take_buffer(checked_bytes(n, sizeof(T), what) + blas_slack_bytes, what)) {}
  lease(lease&&) noexcept = default;
  lease& operator=(lease&&) noexcept = default;
  ~lease() {
    if (buf_) give_back(std::move(buf_));
  }
  T* data() const { return buf_ ? reinterpret_cast<T*>(buf_->data()) : nullptr; }

 private:
  std::unique_ptr<byte_buffer> buf_;
};

/// Shorthand: a pooled buffer of n scalars for `what` (named in errors).
template <class T>
lease<T> take_workspace(int64_t n, const char* what) {
  BLFFT_EXPECTS(n >= 0, error_code::invalid_argument, what, ": negative size ", n);
  return lease<T>(static_cast<std::size_t>(n), what);
}

}  // namespace blfft::detail
