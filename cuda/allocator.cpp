// scoped_allocator: the calling thread's allocator for blfft::cuda calls, and arena_allocator,
// which serves one call's temporaries from a few slabs of another allocator (blfft/cuda.hpp).
// Plain C++, no CUDA header: the CPU emulation tests compile this file too, so that their
// executor (tests/cpp/cuda_emulator.hpp) reads the same scope as the GPU executor.

#include "blfft/cuda.hpp"

#include <algorithm>
#include <limits>

namespace blfft::cuda {
namespace {
// One slot per thread: a scope installs an allocator for the calls its own thread makes.
thread_local allocator* current = nullptr;
}  // namespace

scoped_allocator::scoped_allocator(allocator& a) noexcept : previous_(current) {
  current = &a;
}

scoped_allocator::~scoped_allocator() {
  current = previous_;
}

allocator* detail::scoped_allocator_or_null() noexcept {
  return current;
}

namespace {
thread_local bool tf32 = false;  // scoped_tf32: per thread, like the allocator slot
}  // namespace

scoped_tf32::scoped_tf32(bool allow) noexcept : previous_(tf32) {
  tf32 = allow;
}

scoped_tf32::~scoped_tf32() {
  tf32 = previous_;
}

bool tf32_allowed() noexcept {
  return tf32;
}

namespace {
// Every block starts on a 256-byte boundary, as cudaMalloc's do (cuFFT work areas and vector
// loads rely on it).
constexpr std::size_t block_align = 256;
std::size_t aligned(std::size_t bytes) {
  return (bytes + block_align - 1) / block_align * block_align;
}
}  // namespace

arena_allocator::arena_allocator(allocator& base, std::size_t slab_bytes) noexcept
    : base_(base), next_slab_(aligned(std::max<std::size_t>(slab_bytes, 1))) {}

arena_allocator::~arena_allocator() {
  for (const slab& s : slabs_) base_.deallocate(s.base, s.size, device_, stream_);
}

void* arena_allocator::allocate(std::size_t bytes, int device, void* stream) {
  if (slabs_.empty() && blocks_.empty()) {
    device_ = device;
    stream_ = stream;
  }
  // Every block takes at least one 256-byte unit (a 0-byte request once took none and shared
  // its address with the next block, which deallocate could then mistake for it). A request too
  // large to round up is not served from a slab either: the base allocator refuses it (rounding
  // it up wrapped to 0 bytes, and a slab "served" it).
  // Room for the bookkeeping first: a bad_alloc after the base allocator handed out memory
  // would leak it.
  if (blocks_.size() == blocks_.capacity()) blocks_.reserve(2 * blocks_.size() + 16);
  if (slabs_.size() == slabs_.capacity()) slabs_.reserve(2 * slabs_.size() + 4);
  const bool huge = bytes > std::numeric_limits<std::size_t>::max() - block_align;
  const std::size_t need = huge ? 0 : aligned(std::max<std::size_t>(bytes, 1));
  if (huge || device != device_ || stream != stream_) {  // not ours to order: straight from base
    blocks_.push_back({static_cast<char*>(base_.allocate(bytes, device, stream)), bytes, -1, 0,
                       device, stream, false});
  } else {
    // The slab holding the topmost block (slabs above it are empty), else the first.
    int s = 0;
    for (auto it = blocks_.rbegin(); it != blocks_.rend(); ++it)
      if (it->slab >= 0) {
        s = it->slab;
        break;
      }
    while (s < static_cast<int>(slabs_.size()) && slabs_[s].size - slabs_[s].top < need) ++s;
    if (s == static_cast<int>(slabs_.size())) {
      const std::size_t size = std::max(need, next_slab_);
      slabs_.push_back({static_cast<char*>(base_.allocate(size, device, stream)), size, 0});
      next_slab_ = 2 * size;
    }
    slab& sl = slabs_[s];
    blocks_.push_back({sl.base + sl.top, bytes, s, sl.top, device, stream, false});
    sl.top += need;
    stack_ += need;
    peak_ = std::max(peak_, stack_);
  }
  return blocks_.back().p;
}

void arena_allocator::deallocate(void* p, std::size_t, int, void*) noexcept {
  auto it = std::find_if(blocks_.rbegin(), blocks_.rend(),
                         [p](const block& b) { return b.p == p && !b.freed; });
  if (it == blocks_.rend()) return;  // not ours (cannot happen through blfft's executors)
  it->freed = true;
  if (it->slab < 0) base_.deallocate(it->p, it->bytes, it->device, it->stream);
  // Pop the freed blocks off the top, rewinding their slabs.
  while (!blocks_.empty() && blocks_.back().freed) {
    const block& b = blocks_.back();
    if (b.slab >= 0) {
      slabs_[b.slab].top = b.offset;
      stack_ -= aligned(std::max<std::size_t>(b.bytes, 1));
    }
    blocks_.pop_back();
  }
}

}  // namespace blfft::cuda
