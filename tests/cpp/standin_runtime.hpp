#pragma once
/// @file standin_runtime.hpp
/// The little of the CUDA runtime's state that the CPU stand-ins (standin_cufft.cpp,
/// standin_cublas.cpp) and the emulator (cuda_emulator.hpp) share, on the CPU: the current device
/// of each host thread (cudaSetDevice / cudaGetDevice), which device a stream belongs to
/// (cudaStreamGetDevice), and which device a range of "device memory" lives on
/// (cudaPointerGetAttributes). Tests register emulated streams and buffers with device ids, so that
/// a call on the wrong device, with another device's stream or memory, shows without a GPU.
/// Header-only (C++17 inline variables): every test executable has one copy of the state.

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

namespace blfft_standin {

namespace state {
inline thread_local int current_device = 0;
inline std::mutex mutex;
inline std::map<const void*, int> streams;                       // stream -> device
inline std::map<uintptr_t, std::pair<std::size_t, int>> memory;  // begin -> (bytes, dev)
}  // namespace state

/// The calling thread's current device (cudaGetDevice); 0 until set, as in CUDA.
inline int current_device() {
  return state::current_device;
}
inline void set_current_device(int device) {
  state::current_device = device;
}

/// Makes `device` current for the lifetime of the object, then restores the previous one (what
/// the backend's device_guard does with cudaSetDevice).
class device_scope {
 public:
  explicit device_scope(int device) : previous_(current_device()) { set_current_device(device); }
  ~device_scope() { set_current_device(previous_); }
  device_scope(const device_scope&) = delete;
  device_scope& operator=(const device_scope&) = delete;

 private:
  int previous_;
};

/// Streams: nullptr (the legacy default stream) belongs to whichever device is current; any other
/// handle to the device it was registered with, or to none (-1) when it was not registered.
inline void register_stream(const void* stream, int device) {
  std::lock_guard<std::mutex> lock(state::mutex);
  state::streams[stream] = device;
}
inline void unregister_stream(const void* stream) {
  std::lock_guard<std::mutex> lock(state::mutex);
  state::streams.erase(stream);
}
inline int stream_device(const void* stream) {
  if (stream == nullptr) return current_device();
  std::lock_guard<std::mutex> lock(state::mutex);
  const auto it = state::streams.find(stream);
  return it == state::streams.end() ? -1 : it->second;
}

/// Memory: [p, p + bytes) is device memory of `device` until unregistered.
inline void register_memory(const void* p, std::size_t bytes, int device) {
  if (p == nullptr) return;
  std::lock_guard<std::mutex> lock(state::mutex);
  state::memory[reinterpret_cast<uintptr_t>(p)] = {bytes, device};
}
inline void unregister_memory(const void* p) {
  std::lock_guard<std::mutex> lock(state::mutex);
  state::memory.erase(reinterpret_cast<uintptr_t>(p));
}
/// The device of the registered range holding p, or -1 (not registered: plain host memory).
inline int memory_device(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(state::mutex);
  auto it = state::memory.upper_bound(a);
  if (it == state::memory.begin()) return -1;
  --it;
  return a < it->first + it->second.first ? it->second.second : -1;
}

}  // namespace blfft_standin
