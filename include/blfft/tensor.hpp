#pragma once
/// @file tensor.hpp
/// Non-owning views of caller memory: tensor_view (pointer + shape + element strides, pocketfft
/// style, so any framework's tensors fit without copies) and spectrum_view (pointer + length, for
/// the compressed spectra, so the plan can check the length it is given).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <string>
#include <type_traits>
#include <vector>

#include "blfft/error.hpp"

namespace blfft {

/// The largest rank a tensor_view holds: batch, channels and up to three spatial axes.
inline constexpr int max_rank = 5;

/// Up to max_rank per-axis values (a shape or strides) stored inline, so that making, copying and
/// checking a view allocates nothing. Reads like a std::vector<int64_t>; converts from and to one.
class dim_array {
 public:
  dim_array() = default;
  dim_array(std::initializer_list<int64_t> v) { assign(v.begin(), v.end()); }
  dim_array(const std::vector<int64_t>& v) { assign(v.begin(), v.end()); }  // NOLINT: implicit
  dim_array(const int64_t* first, const int64_t* last) { assign(first, last); }

  template <class It, std::enable_if_t<!std::is_integral_v<It>, int> = 0>  // not assign(n, value)
  void assign(It first, It last) {
    resize(static_cast<size_t>(std::distance(first, last)));
    std::copy(first, last, v_);
  }
  void assign(size_t n, int64_t value) {
    resize(n);
    std::fill(v_, v_ + n, value);
  }
  /// Grows with `value`; more than max_rank values is an invalid_argument error.
  void resize(size_t n, int64_t value = 0) {
    if (n > static_cast<size_t>(max_rank))
      throw error(error_code::invalid_argument, "blfft: tensor rank " + std::to_string(n) +
                                                    " exceeds the maximum of " +
                                                    std::to_string(max_rank));
    if (n > n_) std::fill(v_ + n_, v_ + n, value);
    n_ = n;
  }
  void push_back(int64_t value) { resize(n_ + 1, value); }

  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](size_t i) { return v_[i]; }
  int64_t operator[](size_t i) const { return v_[i]; }
  int64_t& back() { return v_[n_ - 1]; }
  int64_t back() const { return v_[n_ - 1]; }
  int64_t* data() { return v_; }
  const int64_t* data() const { return v_; }
  int64_t* begin() { return v_; }
  int64_t* end() { return v_ + n_; }
  const int64_t* begin() const { return v_; }
  const int64_t* end() const { return v_ + n_; }

  std::vector<int64_t> to_vector() const { return {begin(), end()}; }
  operator std::vector<int64_t>() const { return to_vector(); }  // NOLINT: implicit

  friend bool operator==(const dim_array& a, const dim_array& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }
  friend bool operator!=(const dim_array& a, const dim_array& b) { return !(a == b); }

 private:
  int64_t v_[max_rank] = {};
  size_t n_ = 0;
};

/// Strided view of rank <= max_rank. Strides are in elements and must be >= 0; an output view
/// must not alias itself (checked). Shapes are checked against the plan on every call.
template <class T>
struct tensor_view {
  T* data = nullptr;
  dim_array shape;
  dim_array strides;

  tensor_view() = default;
  tensor_view(T* d, const dim_array& s, const dim_array& st) : data(d), shape(s), strides(st) {}
  /// A view of mutable memory also views it read-only.
  template <class U, std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>, int> = 0>
  tensor_view(const tensor_view<U>& v) : data(v.data), shape(v.shape), strides(v.strides) {}

  /// A C-contiguous view of `shape`.
  static tensor_view contiguous(T* d, const dim_array& shape) {
    dim_array st;
    st.resize(shape.size());
    int64_t s = 1;
    for (size_t i = shape.size(); i-- > 0;) {
      st[i] = s;
      s *= shape[i];
    }
    return tensor_view(d, shape, st);
  }
  int rank() const { return static_cast<int>(shape.size()); }
};

/// A compressed spectrum in caller memory: `size` scalars (real and imaginary parts interleaved)
/// from `data`, in the layout described on blfft::geometry. A default-constructed view (or one
/// from nullptr) means "not given"; a given one must hold exactly the length the plan expects
/// (geometry().x_spectrum_size() or w_spectrum_size()), which every call checks.
template <class T>
struct spectrum_view {
  T* data = nullptr;
  int64_t size = 0;

  constexpr spectrum_view() = default;
  constexpr spectrum_view(std::nullptr_t) {}  // NOLINT: implicit, "not given"
  constexpr spectrum_view(T* d, int64_t n) : data(d), size(n) {}
  /// A view of mutable memory also views it read-only.
  template <class U, std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>, int> = 0>
  constexpr spectrum_view(const spectrum_view<U>& v) : data(v.data), size(v.size) {}

  constexpr bool given() const { return data != nullptr; }
};

}  // namespace blfft
