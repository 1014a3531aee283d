#pragma once
// ThreadSanitizer annotations, no-ops in other builds. TSan sees neither libgomp's fork and join
// (uninstrumented futex waits: every region would look like a race with the code around it) nor
// the memory an uninstrumented BLAS reads and writes (races on blfft's buffers inside a GEMM
// would go unseen). parallel.hpp and blas.cpp tell it both.

#include <cstddef>
#include <cstdint>

#if defined(__SANITIZE_THREAD__)
// (__tsan_read_range and __tsan_write_range are compiler built-ins under -fsanitize=thread.)
extern "C" {
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}
#endif

namespace blfft::detail::tsan {

#if defined(__SANITIZE_THREAD__)
inline void acquire(void* sync) {
  __tsan_acquire(sync);
}
inline void release(void* sync) {
  __tsan_release(sync);
}
/// Rows of a row-major matrix (cols elements each, ld apart) as read or written by this thread.
inline void matrix(const void* p, int64_t rows, int64_t cols, int64_t ld, std::size_t elem,
                   bool write) {
  auto* base = static_cast<unsigned char*>(const_cast<void*>(p));
  for (int64_t r = 0; r < rows && cols > 0; ++r) {
    void* row = base + static_cast<std::size_t>(r * ld) * elem;
    const auto bytes = static_cast<long>(static_cast<std::size_t>(cols) * elem);
    write ? __tsan_write_range(row, bytes) : __tsan_read_range(row, bytes);
  }
}
#else
inline void acquire(void*) {}
inline void release(void*) {}
inline void matrix(const void*, int64_t, int64_t, int64_t, std::size_t, bool) {}
#endif

}  // namespace blfft::detail::tsan
