#pragma once
// A 64-byte aligned, uninitialised array: FFT plans are made for this alignment, and SIMD loads
// like it.

#include <cstddef>
#include <cstdlib>
#include <new>

namespace blfft::detail {

constexpr std::size_t buffer_alignment = 64;

/// Rounds a count of T up so that consecutive sub-buffers stay 64-byte aligned.
template <class T>
constexpr std::size_t aligned_count(std::size_t n) {
  constexpr std::size_t per = buffer_alignment / sizeof(T);
  return (n + per - 1) / per * per;
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

  /// Grows (never shrinks) to at least n elements; contents are not kept.
  void resize(std::size_t n) {
    if (n <= size_) return;
    std::free(data_);
    const std::size_t bytes = aligned_count<T>(n == 0 ? 1 : n) * sizeof(T);
    data_ = static_cast<T*>(std::aligned_alloc(buffer_alignment, bytes));
    if (!data_) throw std::bad_alloc();
    size_ = n;
  }
  T* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace blfft::detail
