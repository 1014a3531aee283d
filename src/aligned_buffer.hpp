#pragma once
// A 64-byte aligned, uninitialised array: FFT plans are made for this alignment, and SIMD loads
// like it. Byte counts are checked: a count that would wrap size_t is refused, not truncated.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "check.hpp"

namespace blfft::detail {

constexpr std::size_t buffer_alignment = 64;

/// Rounds a count of T up so that consecutive sub-buffers stay 64-byte aligned.
template <class T>
constexpr std::size_t aligned_count(std::size_t n) {
  constexpr std::size_t per = buffer_alignment / sizeof(T);
  return (n + per - 1) / per * per;
}

/// Bytes of an aligned array of n elements of `size` bytes each; error_code::out_of_memory
/// naming `what` when that does not fit in size_t (or in the allocator's range).
inline std::size_t checked_bytes(std::size_t n, std::size_t size, const char* what) {
  std::size_t bytes = 0;
  if (n > (SIZE_MAX >> 2) || __builtin_mul_overflow(n, size, &bytes) || bytes > (SIZE_MAX >> 2))
    fail(error_code::out_of_memory,
         cat(what, ": ", n, " elements of ", size, " bytes do not fit in memory"));
  return (bytes + buffer_alignment - 1) / buffer_alignment * buffer_alignment;
}

template <class T>
class aligned_buffer {
 public:
  aligned_buffer() = default;
  explicit aligned_buffer(std::size_t n) { resize(n); }
  ~aligned_buffer() { std::free(data_); }
  aligned_buffer(const aligned_buffer&) = delete;
  aligned_buffer& operator=(const aligned_buffer&) = delete;
  aligned_buffer(aligned_buffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }

  /// Grows (never shrinks) to at least n elements; contents are not kept. Throws std::bad_alloc
  /// when the memory is not there (the buffer is then empty, and usable again).
  void resize(std::size_t n) {
    if (n <= size_) return;
    const std::size_t bytes = checked_bytes(n == 0 ? 1 : n, sizeof(T), "buffer");
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    data_ = static_cast<T*>(std::aligned_alloc(buffer_alignment, bytes));
    if (!data_) throw std::bad_alloc();
    size_ = n;
  }
  T* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::size_t bytes() const { return size_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace blfft::detail
