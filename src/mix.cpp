#include "mix.hpp"

#include <type_traits>

#include "blas.hpp"
#include "parallel.hpp"

namespace blfft::detail {
namespace {

// Below this many multiply-adds a direct loop beats a BLAS call.
constexpr int64_t blas_min_work = 4096;

/// One planar complex operand: element (i, j) of the stored row-major matrix is
/// (re[i * ld + j], im[i * ld + j]); the product uses its transpose when `trans`, and its
/// conjugate when `conj`.
template <class T>
struct operand {
  const T* re;
  const T* im;
  int64_t ld;
  bool trans;
  bool conj;
};

/// Rows of a planar complex matrix: element (i, j) is (re[i * ld + j], im[i * ld + j]).
template <class T>
struct planar {
  T* re;
  T* im;
  int64_t ld;
  operand<std::remove_const_t<T>> as_operand(bool trans, bool conj) const {
    return {re, im, ld, trans, conj};
  }
};

/// C = op(A) op(B), C row-major M x N, planar.
template <class T>
void complex_product(int64_t M, int64_t N, int64_t K, const operand<T>& A, const operand<T>& B,
                     const planar<T>& C, T* scratch) {
  T* const c_re = C.re;
  T* const c_im = C.im;
  const int64_t ldc = C.ld;
  const T sa = A.conj ? T(-1) : T(1), sb = B.conj ? T(-1) : T(1);
  if (M * N * K < blas_min_work) {
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        T sr = 0, si = 0;
        for (int64_t k = 0; k < K; ++k) {
          const int64_t ia = A.trans ? k * A.ld + i : i * A.ld + k;
          const int64_t ib = B.trans ? j * B.ld + k : k * B.ld + j;
          const T ar = A.re[ia], ai = sa * A.im[ia], br = B.re[ib], bi = sb * B.im[ib];
          sr += ar * br - ai * bi;
          si += ar * bi + ai * br;
        }
        c_re[i * ldc + j] = sr;
        c_im[i * ldc + j] = si;
      }
    return;
  }
  // Gauss: with T1 = Ar Br, T2 = Ai Bi, T3 = (Ar + sa Ai)(Br + sb Bi),
  // Re = T1 - sa sb T2 and Im = T3 - T1 - sa sb T2.
  const int64_t a_rows = A.trans ? K : M, a_cols = A.trans ? M : K;
  const int64_t b_rows = B.trans ? N : K, b_cols = B.trans ? K : N;
  T* a_sum = scratch;  // a_rows a_cols + b_rows b_cols + M N = mix_scratch_scalars
  T* b_sum = a_sum + a_rows * a_cols;
  T* t2 = b_sum + b_rows * b_cols;
  for (int64_t i = 0; i < a_rows; ++i)
    for (int64_t j = 0; j < a_cols; ++j)
      a_sum[i * a_cols + j] = A.re[i * A.ld + j] + sa * A.im[i * A.ld + j];
  for (int64_t i = 0; i < b_rows; ++i)
    for (int64_t j = 0; j < b_cols; ++j)
      b_sum[i * b_cols + j] = B.re[i * B.ld + j] + sb * B.im[i * B.ld + j];
  gemm<T>(A.trans, B.trans, M, N, K, T(1), A.re, A.ld, B.re, B.ld, T(0), c_re, ldc);
  gemm<T>(A.trans, B.trans, M, N, K, T(1), a_sum, a_cols, b_sum, b_cols, T(0), c_im, ldc);
  gemm<T>(A.trans, B.trans, M, N, K, T(1), A.im, A.ld, B.im, B.ld, T(0), t2, N);
  const T s = sa * sb;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const T t1 = c_re[i * ldc + j], st2 = s * t2[i * N + j];
      c_re[i * ldc + j] = t1 - st2;
      c_im[i * ldc + j] = c_im[i * ldc + j] - t1 - st2;
    }
}

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

/// Group gr's channels at frequency k of a spectrum of B images with CH channels, `per_group` of
/// them to a group: a B x per_group matrix.
template <class T>
planar<T> channels(T* spec, int64_t k, int64_t B, int64_t CH, int64_t per_group, int64_t gr) {
  const auto f = at(spec, k, B, CH);
  return {f.re + gr * per_group, f.im + gr * per_group, CH};
}

/// Group gr's F/g x C/g block of a planar F x C/g weight (or weight gradient) matrix.
template <class T>
planar<T> group_weights(const geometry& g, T* re, T* im, int64_t gr) {
  const int64_t off = gr * g.out_per_group * g.in_per_group;
  return {re + off, im + off, g.in_per_group};
}

/// body(k, group, re, im, scratch) for every kept frequency and group, in parallel, with the
/// planar F x C/g matrix of frequency k in `w_spec` (a weight or weight gradient spectrum).
template <class T, class W, class F>
void for_each_frequency_and_group(const geometry& g, W* w_spec, F&& body) {
  const int64_t groups = g.params.groups, items = g.kept * groups;
  const bool parallel = mix_in_parallel(g);
  const int threads = parallel ? thread_count() : 1;
  const thread_slices<T> scratch(threads, mix_scratch_scalars(g), "mixing scratch");
  parallel_for(items, threads, parallel, [&](int64_t item) {
    const int64_t k = item / groups;
    const auto w = at(w_spec, k, g.params.out_channels, g.in_per_group);
    body(k, item % groups, w.re, w.im, scratch.mine());
  });
}

}  // namespace

std::size_t mix_scratch_scalars(const geometry& g) {
  const auto N = static_cast<std::size_t>(g.params.batch);
  const auto Cg = static_cast<std::size_t>(g.in_per_group);
  const auto Fg = static_cast<std::size_t>(g.out_per_group);
  return N * Cg + Fg * Cg + N * Fg;
}

bool mix_in_parallel(const geometry& g) {
  const int64_t work = g.kept * g.params.batch * g.out_per_group * g.params.in_channels;
  return g.kept * g.params.groups > 1 && work >= 32768;
}

template <class T>
void mix_forward_at(const geometry& g, int64_t k, int64_t gr, const T* x_spec, const T* w_re,
                    const T* w_im, T* y_spec, T* scratch) {
  const int64_t N = g.params.batch, Cg = g.in_per_group, Fg = g.out_per_group;
  complex_product<T>(N, Fg, Cg,
                     channels(x_spec, k, N, g.params.in_channels, Cg, gr).as_operand(false, false),
                     group_weights(g, w_re, w_im, gr).as_operand(true, true),
                     channels(y_spec, k, N, g.params.out_channels, Fg, gr), scratch);
}

template <class T>
void mix_input_grad_at(const geometry& g, int64_t k, int64_t gr, const T* dy_spec, const T* w_re,
                       const T* w_im, T* dx_spec, T* scratch) {
  const int64_t N = g.params.batch, Cg = g.in_per_group, Fg = g.out_per_group;
  complex_product<T>(
      N, Cg, Fg, channels(dy_spec, k, N, g.params.out_channels, Fg, gr).as_operand(false, false),
      group_weights(g, w_re, w_im, gr).as_operand(false, false),
      channels(dx_spec, k, N, g.params.in_channels, Cg, gr), scratch);
}

template <class T>
void mix_weight_grad_at(const geometry& g, int64_t k, int64_t gr, const T* dy_spec, const T* x_spec,
                        T* dw_re, T* dw_im, T* scratch) {
  const int64_t N = g.params.batch, Cg = g.in_per_group, Fg = g.out_per_group;
  complex_product<T>(Fg, Cg, N,
                     channels(dy_spec, k, N, g.params.out_channels, Fg, gr).as_operand(true, true),
                     channels(x_spec, k, N, g.params.in_channels, Cg, gr).as_operand(false, false),
                     group_weights(g, dw_re, dw_im, gr), scratch);
}

// The whole-spectrum passes: the products above at every kept frequency and group.

namespace {
/// A pass that reads the weight spectrum (forward, input gradient): out = product(in, W).
template <class T, class Product>
void mix_with_weight(const geometry& g, const T* in, const T* w_spec, T* out, Product product) {
  for_each_frequency_and_group<T>(g, w_spec, [&](int64_t k, int64_t gr, auto re, auto im, T* s) {
    product(g, k, gr, in, re, im, out, s);
  });
}
}  // namespace

template <class T>
void mix_forward(const geometry& g, const T* x_spec, const T* w_spec, T* y_spec) {
  mix_with_weight(g, x_spec, w_spec, y_spec, mix_forward_at<T>);
}

template <class T>
void mix_input_grad(const geometry& g, const T* dy_spec, const T* w_spec, T* dx_spec) {
  mix_with_weight(g, dy_spec, w_spec, dx_spec, mix_input_grad_at<T>);
}

template <class T>
void mix_weight_grad(const geometry& g, const T* dy_spec, const T* x_spec, T* dw_spec) {
  for_each_frequency_and_group<T>(g, dw_spec, [&](int64_t k, int64_t gr, T* re, T* im, T* s) {
    mix_weight_grad_at(g, k, gr, dy_spec, x_spec, re, im, s);
  });
}

#define BLFFT_INSTANTIATE(T)                                                                       \
  template void mix_forward<T>(const geometry&, const T*, const T*, T*);                           \
  template void mix_input_grad<T>(const geometry&, const T*, const T*, T*);                        \
  template void mix_weight_grad<T>(const geometry&, const T*, const T*, T*);                       \
  template void mix_forward_at<T>(const geometry&, int64_t, int64_t, const T*, const T*, const T*, \
                                  T*, T*);                                                         \
  template void mix_input_grad_at<T>(const geometry&, int64_t, int64_t, const T*, const T*,        \
                                     const T*, T*, T*);                                            \
  template void mix_weight_grad_at<T>(const geometry&, int64_t, int64_t, const T*, const T*, T*,   \
                                      T*, T*);
BLFFT_INSTANTIATE(float)
BLFFT_INSTANTIATE(double)
#undef BLFFT_INSTANTIATE

}  // namespace blfft::detail
