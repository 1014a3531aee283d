#include "mix.hpp"

#include <omp.h>

#include "complex_gemm.hpp"
#include "parallel.hpp"

namespace blfft::detail {
namespace {

/// Planar view of one frequency of a spectrum with B images of CH channels.
template <class T>
struct frequency_block {
  T* re;
  T* im;
};
template <class T>
frequency_block<T> at(T* spec, int64_t k, int64_t B, int64_t CH) {
  T* re = spec + k * 2 * B * CH;
  return {re, re + B * CH};
}

/// Runs body(k, group) for every kept frequency and group, in parallel.
template <class F>
void for_each_frequency_and_group(const geometry& g, F&& body) {
  const int64_t groups = g.params.groups, items = g.kept * groups;
  // Tiny problems (batch 1, few channels) finish before a thread team would have started.
  const int64_t work = g.kept * g.params.batch * g.out_per_group * g.params.in_channels;
#pragma omp parallel for schedule(dynamic) num_threads(thread_count()) if (items > 1 && work >= 32768)
  for (int64_t item = 0; item < items; ++item) body(item / groups, item % groups);
}

}  // namespace

template <class T>
void mix_forward(const geometry& g, const T* x_spec, const T* w_spec, T* y_spec) {
  const auto& p = g.params;
  const int64_t N = p.batch, C = p.in_channels, F = p.out_channels;
  const int64_t Cg = g.in_per_group, Fg = g.out_per_group;
  for_each_frequency_and_group(g, [&](int64_t k, int64_t gr) {
    const auto x = at(x_spec, k, N, C);
    const auto w = at(w_spec, k, F, Cg);
    const auto y = at(y_spec, k, N, F);
    const operand<T> A{x.re + gr * Cg, x.im + gr * Cg, C, false, false};
    const operand<T> B{w.re + gr * Fg * Cg, w.im + gr * Fg * Cg, Cg, true, true};
    complex_product<T>(N, Fg, Cg, A, B, y.re + gr * Fg, y.im + gr * Fg, F);
  });
}

template <class T>
void mix_input_grad(const geometry& g, const T* g_spec, const T* w_spec, T* dx_spec) {
  const auto& p = g.params;
  const int64_t N = p.batch, C = p.in_channels, F = p.out_channels;
  const int64_t Cg = g.in_per_group, Fg = g.out_per_group;
  for_each_frequency_and_group(g, [&](int64_t k, int64_t gr) {
    const auto go = at(g_spec, k, N, F);
    const auto w = at(w_spec, k, F, Cg);
    const auto dx = at(dx_spec, k, N, C);
    const operand<T> A{go.re + gr * Fg, go.im + gr * Fg, F, false, false};
    const operand<T> B{w.re + gr * Fg * Cg, w.im + gr * Fg * Cg, Cg, false, false};
    complex_product<T>(N, Cg, Fg, A, B, dx.re + gr * Cg, dx.im + gr * Cg, C);
  });
}

template <class T>
void mix_weight_grad(const geometry& g, const T* g_spec, const T* x_spec, T* dw_spec) {
  const auto& p = g.params;
  const int64_t N = p.batch, C = p.in_channels, F = p.out_channels;
  const int64_t Cg = g.in_per_group, Fg = g.out_per_group;
  for_each_frequency_and_group(g, [&](int64_t k, int64_t gr) {
    const auto go = at(g_spec, k, N, F);
    const auto x = at(x_spec, k, N, C);
    const auto dw = at(dw_spec, k, F, Cg);
    const operand<T> A{go.re + gr * Fg, go.im + gr * Fg, F, true, true};
    const operand<T> B{x.re + gr * Cg, x.im + gr * Cg, C, false, false};
    complex_product<T>(Fg, Cg, N, A, B, dw.re + gr * Fg * Cg, dw.im + gr * Fg * Cg, Cg);
  });
}

#define BLFFT_INSTANTIATE(T)                                             \
  template void mix_forward<T>(const geometry&, const T*, const T*, T*); \
  template void mix_input_grad<T>(const geometry&, const T*, const T*, T*); \
  template void mix_weight_grad<T>(const geometry&, const T*, const T*, T*);
BLFFT_INSTANTIATE(float)
BLFFT_INSTANTIATE(double)
#undef BLFFT_INSTANTIATE

}  // namespace blfft::detail
