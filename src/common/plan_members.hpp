#pragma once
// What the two plan class templates (blfft::plan in src/plan.cpp, blfft::cuda::plan in
// cuda/plan.cpp) define alike around their std::unique_ptr to the implementation.

#include <memory>

#include "check.hpp"

namespace blfft::detail {

/// The implementation of a plan; error_code::invalid_argument for a plan that was moved from.
template <class Impl>
Impl& live_impl(const std::unique_ptr<Impl>& impl) {
  BLFFT_EXPECTS(impl != nullptr, error_code::invalid_argument, "plan was moved from");
  return *impl;
}

}  // namespace blfft::detail

/// The destructor and the moves of plan class template `Plan` (members of Plan<T>), defaulted
/// out of line, where the implementation type is complete.
#define BLFFT_DEFINE_PLAN_MOVES(Plan)                                                              \
  template <class T>                                                                               \
  Plan<T>::~Plan() = default;                                                                      \
  template <class T>                                                                               \
  Plan<T>::Plan(Plan&&) noexcept = default;                                                        \
  template <class T>                                                                               \
  Plan<T>& Plan<T>::operator=(Plan&&) noexcept = default
