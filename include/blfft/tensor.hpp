#pragma once
/// @file tensor.hpp
/// A non-owning view of caller memory: pointer + shape + element strides (pocketfft style), so
/// any framework's tensors fit without copies.

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace blfft {

/// Rank <= 4 strided view. Strides are in elements and must be >= 0; an output view must not
/// alias itself (checked). Shapes are checked against the plan on every call.
template <class T>
struct tensor_view {
  T* data = nullptr;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;

  tensor_view() = default;
  tensor_view(T* d, std::vector<int64_t> s, std::vector<int64_t> st)
      : data(d), shape(std::move(s)), strides(std::move(st)) {}

  /// A C-contiguous view of `shape`.
  static tensor_view contiguous(T* d, std::vector<int64_t> shape) {
    std::vector<int64_t> st(shape.size());
    int64_t s = 1;
    for (size_t i = shape.size(); i-- > 0;) {
      st[i] = s;
      s *= shape[i];
    }
    return tensor_view(d, std::move(shape), std::move(st));
  }
  int rank() const { return static_cast<int>(shape.size()); }
};

}  // namespace blfft
