#pragma once
// Validation of caller views against the shapes a plan expects; shared by the CPU and CUDA
// backends so both refuse the same mistakes with the same messages.

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "blfft/tensor.hpp"
#include "check.hpp"

namespace blfft::detail {

/// "[a, b, c]" for a shape or strides (a std::vector or a dim_array).
template <class Dims>
std::string shape_str(const Dims& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

/// Checks a caller view against the shape the plan expects. Outputs must also not overlap
/// themselves, or parallel writes would race and results would depend on timing.
template <class T>
void check_view(const tensor_view<T>& v, const std::vector<int64_t>& expected, const char* name,
                bool is_output) {
  BLFFT_EXPECTS(v.data != nullptr, error_code::invalid_argument, name, " data pointer is null");
  BLFFT_EXPECTS(v.shape.size() == expected.size(), error_code::shape_mismatch, name,
                " must have rank ", expected.size(), " (shape ", shape_str(expected),
                "), got rank ", v.shape.size());
  BLFFT_EXPECTS(v.shape == expected, error_code::shape_mismatch, name, " has shape ",
                shape_str(v.shape), " but the plan expects ", shape_str(expected));
  BLFFT_EXPECTS(v.strides.size() == v.shape.size(), error_code::shape_mismatch, name, " has ",
                v.strides.size(), " strides for rank ", v.shape.size());
  int64_t extent = 0;
  for (size_t i = 0; i < v.shape.size(); ++i) {
    BLFFT_EXPECTS(v.strides[i] >= 0, error_code::invalid_argument, name,
                  " strides must be non-negative, got ", shape_str(v.strides));
    extent = checked_add(extent, checked_mul(v.strides[i], v.shape[i] - 1, name), name);
  }
  if (!is_output) return;
  // The dimensions by increasing stride: an insertion sort into inline storage (at most
  // max_rank of them), so that checking a view allocates nothing, like the view itself.
  const size_t rank = v.shape.size();
  std::array<size_t, max_rank> order{};
  for (size_t d = 0; d < rank; ++d) {
    size_t k = d;
    for (; k > 0 && v.strides[order[k - 1]] > v.strides[d]; --k) order[k] = order[k - 1];
    order[k] = d;
  }
  int64_t span = 1;  // elements covered by the dimensions visited so far
  for (size_t k = 0; k < rank; ++k) {
    const size_t i = order[k];
    if (v.shape[i] == 1) continue;
    BLFFT_EXPECTS(v.strides[i] >= span, error_code::invalid_argument, name, " strides ",
                  shape_str(v.strides), " make elements of shape ", shape_str(v.shape), " overlap");
    // Past int64 no later stride can reach it: the remaining dimensions all overlap, and the
    // extent check above has already refused a view that large.
    if (__builtin_mul_overflow(v.strides[i], v.shape[i], &span)) span = INT64_MAX;
  }
}

}  // namespace blfft::detail
