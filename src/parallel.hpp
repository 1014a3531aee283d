#pragma once
// Threading for the CPU backend: OpenMP, with a process-wide thread count (0 = OpenMP's default),
// and per-thread scratch memory that is reused across calls.

#include <cstddef>

#include "aligned_buffer.hpp"

namespace blfft::detail {

/// Threads the next parallel region should use.
int thread_count();

/// This thread's scratch array of at least n elements of T (contents undefined). Distinct
/// `Slot`s are distinct arrays, for callers whose scratch lifetimes overlap.
template <class T, int Slot = 0>
T* thread_scratch(std::size_t n) {
  thread_local aligned_buffer<T> buffer;
  buffer.resize(n);
  return buffer.data();
}

}  // namespace blfft::detail
