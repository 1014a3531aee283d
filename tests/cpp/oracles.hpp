#pragma once
/// @file oracles.hpp
/// Test oracles for blfft, in double precision and independent of the library (nothing here
/// calls into libblfft; conv_params is only used as a plain struct):
/// - shapes derived from conv_params by the rules of docs/design.md 1.1;
/// - a direct convolution (PyTorch conv1d/conv2d semantics: cross-correlation, stride, zero
///   padding, dilation, groups, bias) and its input, weight and bias gradients, by loops;
/// - a dense band-limited reference (docs/design.md 1.3-1.6): full complex spectra on the grid by
///   naive separable DFTs, the kept set expanded to the full spectrum by conjugate symmetry,
///   real part of the inverse (= irfft2 of the half spectrum);
/// - the kept-set rules of docs/design.md 1.4 (fast size, band limits, kept rows/columns);
/// - relative l2 error with a NaN/Inf check, and helpers to build problems and views.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "blfft/blfft.hpp"

namespace bt {

using blfft::compression;
using blfft::conv_params;
using blfft::dim_array;
using blfft::spectrum_view;
using blfft::tensor_view;
using cd = std::complex<double>;
using i64 = int64_t;
using vec = std::vector<double>;

// ---------------------------------------------------------------------------------------------
// Per-dtype tolerances (relative l2 error unless stated).
// float: the FFT path rounds in single precision (unit roundoff 6e-8); errors grow like
// eps * log(L) * (channel sums), so 1e-4 against the direct oracle and 2e-4 against the
// compressed dense reference leave a wide margin while still catching any indexing error
// (which gives errors of order 1e-1..1).
// double: 1e-10 against direct convolution, 1e-9 against the dense reference.
template <class T>
struct tol;
template <>
struct tol<float> {
  static constexpr double direct = 1e-4;
  static constexpr double dense = 2e-4;
  static constexpr double adjoint = 2e-5;  ///< |<Ax,y>-<x,A^T y>| / (|Ax||y| + |x||A^T y|)
  static constexpr double energy = 1e-5;
  static const char* name() { return "f32"; }
};
template <>
struct tol<double> {
  static constexpr double direct = 1e-10;
  static constexpr double dense = 1e-9;
  static constexpr double adjoint = 1e-13;
  static constexpr double energy = 1e-11;
  static const char* name() { return "f64"; }
};

// ---------------------------------------------------------------------------------------------
// conv_params built field by field (not through the library's factories, which the accounting
// tests check against these).
inline conv_params make2d(i64 n, i64 c, i64 f, std::array<i64, 2> in, std::array<i64, 2> k,
                          std::array<i64, 2> s = {1, 1}, std::array<i64, 2> pad = {0, 0},
                          std::array<i64, 2> dil = {1, 1}, i64 groups = 1) {
  // Every field, in declaration order (conv_params is an aggregate).
  return conv_params{2, n, c, f, in, k, s, pad, dil, groups, {0, 0}, {}};
}
inline conv_params make1d(i64 n, i64 c, i64 f, i64 l, i64 k, i64 s = 1, i64 pad = 0, i64 dil = 1,
                          i64 groups = 1) {
  return conv_params{1, n, c, f, {1, l}, {1, k}, {1, s}, {0, pad}, {1, dil}, groups, {0, 0}, {}};
}

inline conv_params with_grid(conv_params p, std::array<i64, 2> grid) {
  p.grid = grid;
  return p;
}

/// A readable gtest-safe name: d2_N2C3F4_7x9_K3x2_s2x1_p1x0_d1x2_g1[_L12x16].
inline std::string name_of(const conv_params& p) {
  std::ostringstream os;
  os << "d" << p.ndim << "_N" << p.batch << "C" << p.in_channels << "F" << p.out_channels << "_";
  if (p.ndim == 1) {
    os << "L" << p.input[1] << "_K" << p.kernel[1] << "_s" << p.stride[1] << "_p" << p.padding[1]
       << "_d" << p.dilation[1];
  } else {
    os << p.input[0] << "x" << p.input[1] << "_K" << p.kernel[0] << "x" << p.kernel[1] << "_s"
       << p.stride[0] << "x" << p.stride[1] << "_p" << p.padding[0] << "x" << p.padding[1] << "_d"
       << p.dilation[0] << "x" << p.dilation[1];
  }
  os << "_g" << p.groups;
  if (p.grid[0] != 0 || p.grid[1] != 0) os << "_grid" << p.grid[0] << "x" << p.grid[1];
  return os.str();
}

// ---------------------------------------------------------------------------------------------
// Shapes (docs/design.md 1.1), derived here without the library.
struct dims {
  int ndim = 2;
  i64 N = 0, C = 0, F = 0, G = 0, Cg = 0, Fg = 0;
  i64 H = 0, W = 0, KH = 0, KW = 0, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  i64 Hp = 0, Wp = 0, KHd = 0, KWd = 0, Ho1 = 0, Wo1 = 0, Ho = 0, Wo = 0;

  i64 input_size() const { return N * C * H * W; }
  i64 weight_size() const { return F * Cg * KH * KW; }
  i64 output_size() const { return N * F * Ho * Wo; }
  std::vector<i64> input_shape() const {
    return ndim == 1 ? std::vector<i64>{N, C, W} : std::vector<i64>{N, C, H, W};
  }
  std::vector<i64> weight_shape() const {
    return ndim == 1 ? std::vector<i64>{F, Cg, KW} : std::vector<i64>{F, Cg, KH, KW};
  }
  std::vector<i64> output_shape() const {
    return ndim == 1 ? std::vector<i64>{N, F, Wo} : std::vector<i64>{N, F, Ho, Wo};
  }
  // Flat C-order indices of the (N, C, H, W) / (F, Cg, KH, KW) / (N, F, Ho, Wo) tensors (1D: H =
  // 1).
  i64 xi(i64 n, i64 c, i64 h, i64 w) const { return ((n * C + c) * H + h) * W + w; }
  i64 wi(i64 f, i64 c, i64 h, i64 w) const { return ((f * Cg + c) * KH + h) * KW + w; }
  i64 yi(i64 n, i64 f, i64 h, i64 w) const { return ((n * F + f) * Ho + h) * Wo + w; }
};

inline i64 ceil_div(i64 a, i64 b) {
  return a <= 0 ? 0 : 1 + (a - 1) / b;
}  // no overflow

inline dims dims_of(const conv_params& p) {
  dims d;
  d.ndim = p.ndim;
  d.N = p.batch;
  d.C = p.in_channels;
  d.F = p.out_channels;
  d.G = p.groups;
  d.Cg = d.C / d.G;
  d.Fg = d.F / d.G;
  d.H = p.input[0];
  d.W = p.input[1];
  d.KH = p.kernel[0];
  d.KW = p.kernel[1];
  d.sh = p.stride[0];
  d.sw = p.stride[1];
  d.ph = p.padding[0];
  d.pw = p.padding[1];
  d.dh = p.dilation[0];
  d.dw = p.dilation[1];
  d.Hp = d.H + 2 * d.ph;
  d.Wp = d.W + 2 * d.pw;
  d.KHd = d.dh * (d.KH - 1) + 1;
  d.KWd = d.dw * (d.KW - 1) + 1;
  d.Ho1 = d.Hp - d.KHd + 1;
  d.Wo1 = d.Wp - d.KWd + 1;
  d.Ho = ceil_div(d.Ho1, d.sh);
  d.Wo = ceil_div(d.Wo1, d.sw);
  return d;
}

// ---------------------------------------------------------------------------------------------
// Kept-set rules (docs/design.md 1.2, 1.4), written out independently.
inline bool is_7smooth(i64 n) {
  if (n < 1) return false;
  for (i64 p : {2, 3, 5, 7})
    while (n % p == 0) n /= p;
  return n == 1;
}
inline i64 ref_fast_size(i64 n) {
  i64 m = std::max<i64>(n, 1);
  while (!is_7smooth(m)) ++m;
  return m;
}
inline i64 ref_band_limit(i64 L, double r, int ndim) {
  const i64 B = L / 2 + 1;
  const double s = ndim == 1 ? (1.0 - r) : std::sqrt(1.0 - r);
  i64 i = static_cast<i64>(std::floor(static_cast<double>(B) * s + 1e-9));
  i = std::max<i64>(i, 1);
  return std::min(i, B);
}
/// Rows 0..i-1 and L-i+1..L-1, ascending, without duplicates.
inline std::vector<i64> ref_kept_rows(i64 L, i64 i) {
  std::vector<char> keep(static_cast<size_t>(L), 0);
  for (i64 k = 0; k < i && k < L; ++k) keep[k] = 1;
  for (i64 k = std::max<i64>(L - i + 1, 0); k < L; ++k) keep[k] = 1;
  std::vector<i64> rows;
  for (i64 k = 0; k < L; ++k)
    if (keep[k]) rows.push_back(k);
  return rows;
}
inline std::vector<i64> ref_kept_cols(i64 i) {
  std::vector<i64> cols;
  for (i64 k = 0; k < i; ++k) cols.push_back(k);
  return cols;
}
inline std::array<i64, 2> ref_default_grid(const conv_params& p) {
  const dims d = dims_of(p);
  return {ref_fast_size(d.Hp), ref_fast_size(d.Wp)};
}

// ---------------------------------------------------------------------------------------------
// Random data and precision helpers.
inline vec random_vector(i64 n, uint64_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + 12345);
  std::uniform_real_distribution<double> dist(lo, hi);
  vec v(static_cast<size_t>(n));
  for (auto& e : v) e = dist(rng);
  return v;
}
template <class T>
vec rounded(vec v) {
  for (auto& e : v) e = static_cast<double>(static_cast<T>(e));
  return v;
}
template <class T>
std::vector<T> cast(const vec& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <class T>
vec widen(const std::vector<T>& v) {
  return vec(v.begin(), v.end());
}
template <class T>
std::vector<T> nan_filled(i64 n) {
  return std::vector<T>(static_cast<size_t>(n), std::numeric_limits<T>::quiet_NaN());
}

/// Relative l2 error ||got - ref|| / ||ref|| (absolute when ref is zero); +inf when sizes differ
/// or `got` holds a NaN or Inf.
inline double rel_l2(const vec& got, const vec& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

template <class T>
::testing::AssertionResult rel_close(const std::string& what, const std::vector<T>& got,
                                     const vec& ref, double tolerance) {
  const vec g = widen(got);
  const double e = rel_l2(g, ref);
  if (e <= tolerance) return ::testing::AssertionSuccess();
  auto fail = ::testing::AssertionFailure();
  fail << what << ": relative l2 error " << e << " > tolerance " << tolerance
       << " (n = " << ref.size() << ")";
  if (g.size() == ref.size()) {
    // Point at the first bad element to make index errors easy to read.
    double scale = 0;
    for (double r : ref) scale = std::max(scale, std::abs(r));
    for (size_t i = 0; i < g.size(); ++i) {
      if (!std::isfinite(g[i]) || std::abs(g[i] - ref[i]) > 10 * tolerance * (scale + 1e-300)) {
        fail << "; first bad element " << i << ": got " << g[i] << ", want " << ref[i];
        break;
      }
    }
  } else {
    fail << "; size " << g.size() << " vs " << ref.size();
  }
  return fail;
}

inline double dot(const vec& a, const vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
inline double norm(const vec& a) {
  return std::sqrt(dot(a, a));
}

// ---------------------------------------------------------------------------------------------
// Direct convolution oracle (double, loops). x: (N, C, H, W), w: (F, C/g, KH, KW), y: (N, F, Ho,
// Wo); 1D is the same with H = KH = 1.
/// Calls tap(yi, xi, wi) for every (output, input, weight) index triple that direct convolution
/// multiplies, output by output and in a fixed order within each output.
template <class Tap>
void for_each_tap(const dims& d, Tap&& tap) {
  for (i64 n = 0; n < d.N; ++n)
    for (i64 f = 0; f < d.F; ++f) {
      const i64 grp = f / d.Fg;
      for (i64 oh = 0; oh < d.Ho; ++oh)
        for (i64 ow = 0; ow < d.Wo; ++ow)
          for (i64 c = 0; c < d.Cg; ++c)
            for (i64 kh = 0; kh < d.KH; ++kh) {
              const i64 ih = oh * d.sh + kh * d.dh - d.ph;
              if (ih < 0 || ih >= d.H) continue;
              for (i64 kw = 0; kw < d.KW; ++kw) {
                const i64 iw = ow * d.sw + kw * d.dw - d.pw;
                if (iw < 0 || iw >= d.W) continue;
                tap(d.yi(n, f, oh, ow), d.xi(n, grp * d.Cg + c, ih, iw), d.wi(f, c, kh, kw));
              }
            }
    }
}

inline vec direct_forward(const conv_params& p, const vec& x, const vec& w, const double* bias) {
  const dims d = dims_of(p);
  vec y(static_cast<size_t>(d.output_size()), 0.0);
  if (bias)
    for (i64 i = 0; i < d.output_size(); ++i) y[i] = bias[(i / (d.Ho * d.Wo)) % d.F];
  for_each_tap(d, [&](i64 yi, i64 xi, i64 wi) { y[yi] += x[xi] * w[wi]; });
  return y;
}

inline vec direct_input_grad(const conv_params& p, const vec& g, const vec& w) {
  const dims d = dims_of(p);
  vec dx(static_cast<size_t>(d.input_size()), 0.0);
  for_each_tap(d, [&](i64 yi, i64 xi, i64 wi) { dx[xi] += g[yi] * w[wi]; });
  return dx;
}

inline vec direct_weight_grad(const conv_params& p, const vec& g, const vec& x) {
  const dims d = dims_of(p);
  vec dw(static_cast<size_t>(d.weight_size()), 0.0);
  for_each_tap(d, [&](i64 yi, i64 xi, i64 wi) { dw[wi] += g[yi] * x[xi]; });
  return dw;
}

inline vec direct_bias_grad(const conv_params& p, const vec& g) {
  const dims d = dims_of(p);
  vec db(static_cast<size_t>(d.F), 0.0);
  for (i64 n = 0; n < d.N; ++n)
    for (i64 f = 0; f < d.F; ++f)
      for (i64 o = 0; o < d.Ho * d.Wo; ++o) db[f] += g[d.yi(n, f, 0, 0) + o];
  return db;
}

// ---------------------------------------------------------------------------------------------
// Naive 2D DFT on an Lh x Lw grid (separable O(L^2) sums, twiddles from a table indexed by
// (k n) mod L so that symmetric bins use identical values).
class dft2d {
 public:
  dft2d(i64 lh, i64 lw) : lh_(lh), lw_(lw), th_(table(lh)), tw_(table(lw)) {}
  i64 rows() const { return lh_; }
  i64 cols() const { return lw_; }

  /// In place: forward X[k] = sum_n a[n] e^{-2 pi i k n / L}; inverse with e^{+...} / (Lh Lw).
  void apply(std::vector<cd>& a, bool inverse) const {
    std::vector<cd> tmp(static_cast<size_t>(std::max(lh_, lw_)));
    for (i64 h = 0; h < lh_; ++h) {
      cd* row = a.data() + h * lw_;
      for (i64 k = 0; k < lw_; ++k) {
        cd s = 0;
        for (i64 n = 0; n < lw_; ++n) s += row[n] * tw(tw_, lw_, k * n, inverse);
        tmp[k] = s;
      }
      std::copy(tmp.begin(), tmp.begin() + lw_, row);
    }
    for (i64 w = 0; w < lw_; ++w) {
      for (i64 k = 0; k < lh_; ++k) {
        cd s = 0;
        for (i64 n = 0; n < lh_; ++n) s += a[n * lw_ + w] * tw(th_, lh_, k * n, inverse);
        tmp[k] = s;
      }
      for (i64 k = 0; k < lh_; ++k) a[k * lw_ + w] = tmp[k];
    }
    if (inverse) {
      const double scale = 1.0 / static_cast<double>(lh_ * lw_);
      for (auto& e : a) e *= scale;
    }
  }

 private:
  static std::vector<cd> table(i64 L) {
    std::vector<cd> t(static_cast<size_t>(L));
    const double pi = std::acos(-1.0);
    for (i64 j = 0; j < L; ++j) t[j] = std::polar(1.0, -2.0 * pi * static_cast<double>(j) / L);
    return t;
  }
  static cd tw(const std::vector<cd>& t, i64 L, i64 j, bool inverse) {
    const cd v = t[static_cast<size_t>(j % L)];
    return inverse ? std::conj(v) : v;
  }
  i64 lh_, lw_;
  std::vector<cd> th_, tw_;
};

// ---------------------------------------------------------------------------------------------
// Dense band-limited reference (docs/design.md 1.3-1.6) on grid Lh x Lw with the given kept rows
// and rfft columns. Everything is done on the full complex spectrum: the rfft mask is expanded with
// conjugate symmetry (bin (kh, kw), kw > Lw/2, is the conjugate of bin (-kh mod Lh, Lw - kw), so
// it is kept iff that bin is), and the real part of the full inverse DFT equals irfft2 of the
// half spectrum.
class dense_reference {
 public:
  dense_reference(const conv_params& p, std::array<i64, 2> grid, const std::vector<i64>& rows,
                  const std::vector<i64>& cols)
      : p_(p), d_(dims_of(p)), lh_(grid[0]), lw_(grid[1]), dft_(grid[0], grid[1]) {
    std::vector<char> rk(static_cast<size_t>(lh_), 0), ck(static_cast<size_t>(lw_ / 2 + 1), 0);
    for (i64 r : rows) rk.at(static_cast<size_t>(r)) = 1;
    for (i64 c : cols) ck.at(static_cast<size_t>(c)) = 1;
    mask_.assign(static_cast<size_t>(lh_ * lw_), 0);
    for (i64 kh = 0; kh < lh_; ++kh)
      for (i64 kw = 0; kw < lw_; ++kw) {
        const bool keep =
            kw <= lw_ / 2 ? (rk[kh] && ck[kw]) : (rk[(lh_ - kh) % lh_] && ck[lw_ - kw]);
        mask_[kh * lw_ + kw] = keep ? 1 : 0;
      }
  }
  /// All bins kept: the unmasked FFT convolution.
  static dense_reference full(const conv_params& p, std::array<i64, 2> grid) {
    return dense_reference(p, grid, ref_kept_rows(grid[0], grid[0] / 2 + 1),
                           ref_kept_cols(grid[1] / 2 + 1));
  }

  i64 plane() const { return lh_ * lw_; }

  /// Where `images` C-order images of rows x cols samples sit on the grid: sample (r, s) of
  /// each at grid row off_h + step_h r, column off_w + step_w s (docs/design.md 1.5-1.6).
  struct placement {
    i64 images, rows, cols, off_h, step_h, off_w, step_w;
    i64 at(i64 r, i64 s, i64 lw) const { return (off_h + step_h * r) * lw + off_w + step_w * s; }
  };
  /// The zero-padded input, one image per (n, c); the dilated weight, one per (f, c/g); the
  /// output (gradient) at [0:Ho1:stride], one per (n, f).
  placement x_place() const { return {d_.N * d_.C, d_.H, d_.W, d_.ph, 1, d_.pw, 1}; }
  placement w_place() const { return {d_.F * d_.Cg, d_.KH, d_.KW, 0, d_.dh, 0, d_.dw}; }
  placement y_place() const { return {d_.N * d_.F, d_.Ho, d_.Wo, 0, d_.sh, 0, d_.sw}; }

  /// Full Lh x Lw spectra of the images of `v` placed by `pl`, one plane each.
  std::vector<cd> spectra(const vec& v, const placement& pl) const {
    std::vector<cd> out(static_cast<size_t>(pl.images * plane()), 0.0);
    for (i64 i = 0; i < pl.images; ++i) {
      std::vector<cd> a(static_cast<size_t>(plane()), 0.0);
      for (i64 r = 0; r < pl.rows; ++r)
        for (i64 s = 0; s < pl.cols; ++s) a[pl.at(r, s, lw_)] = v[(i * pl.rows + r) * pl.cols + s];
      dft_.apply(a, false);
      std::copy(a.begin(), a.end(), out.begin() + i * plane());
    }
    return out;
  }
  std::vector<cd> x_spectra(const vec& x) const { return spectra(x, x_place()); }
  std::vector<cd> w_spectra(const vec& w) const { return spectra(w, w_place()); }
  std::vector<cd> g_spectra(const vec& g) const { return spectra(g, y_place()); }

  /// One term of a sum of spectra products: plane a times plane b, or times conj(b).
  struct product {
    i64 a, b;
    bool conj_b;
  };
  /// The images placed by `pl`: image i is the inverse transform of M * sum_t A_a conj?(B_b) for
  /// (a, b) = term(i, t), t < terms, sampled where `pl` places it (the crop, stride or dilation
  /// of each pass).
  template <class Term>
  vec synthesise(const std::vector<cd>& A, const std::vector<cd>& B, const placement& pl, i64 terms,
                 Term&& term) const {
    vec out(static_cast<size_t>(pl.images * pl.rows * pl.cols), 0.0);
    std::vector<cd> a(static_cast<size_t>(plane()));
    for (i64 i = 0; i < pl.images; ++i) {
      std::fill(a.begin(), a.end(), cd(0.0));
      for (i64 t = 0; t < terms; ++t) {
        const product pr = term(i, t);
        const cd* pa = &A[pr.a * plane()];
        const cd* pb = &B[pr.b * plane()];
        for (i64 k = 0; k < plane(); ++k)
          if (mask_[k]) a[k] += pa[k] * (pr.conj_b ? std::conj(pb[k]) : pb[k]);
      }
      dft_.apply(a, true);
      for (i64 r = 0; r < pl.rows; ++r)
        for (i64 s = 0; s < pl.cols; ++s)
          out[(i * pl.rows + r) * pl.cols + s] = a[pl.at(r, s, lw_)].real();
    }
    return out;
  }

  /// y = crop/stride(irfft2(M * sum_c X_c conj(W_fc))) + bias.
  vec forward(const vec& x, const vec& w, const double* bias) const {
    vec y = synthesise(x_spectra(x), w_spectra(w), y_place(), d_.Cg, [&](i64 nf, i64 c) {
      const i64 n = nf / d_.F, f = nf % d_.F;
      return product{n * d_.C + (f / d_.Fg) * d_.Cg + c, f * d_.Cg + c, true};
    });
    if (bias)
      for (i64 i = 0; i < d_.output_size(); ++i) y[i] += bias[(i / (d_.Ho * d_.Wo)) % d_.F];
    return y;
  }

  /// dx = irfft2(M * sum_f G_f W_fc)[ph:ph+H, pw:pw+W].
  vec input_grad(const vec& g, const vec& w) const {
    return synthesise(g_spectra(g), w_spectra(w), x_place(), d_.Fg, [&](i64 nc, i64 fl) {
      const i64 n = nc / d_.C, c = nc % d_.C, f = (c / d_.Cg) * d_.Fg + fl;
      return product{n * d_.F + f, f * d_.Cg + c % d_.Cg, false};
    });
  }

  /// dw = irfft2(M * sum_n X_nc conj(G_nf))[0:KH', 0:KW'][::dh, ::dw].
  vec weight_grad(const vec& g, const vec& x) const {
    return synthesise(x_spectra(x), g_spectra(g), w_place(), d_.N, [&](i64 fc, i64 n) {
      const i64 f = fc / d_.Cg, c = fc % d_.Cg;
      return product{n * d_.C + (f / d_.Fg) * d_.Cg + c, n * d_.F + f, true};
    });
  }

  vec bias_grad(const vec& g) const { return direct_bias_grad(p_, g); }

 private:
  conv_params p_;
  dims d_;
  i64 lh_, lw_;
  dft2d dft_;
  std::vector<char> mask_;  // full Lh x Lw spectrum
};

/// Energy per rfft bin (Lh x (Lw/2+1)), summed over batch and channels, columns that stand for
/// a conjugate pair (0 < kw < Lw/2, or kw != 0 for odd Lw) counted twice.
inline vec ref_energy_map(const conv_params& p, std::array<i64, 2> grid, const vec& x) {
  const dims d = dims_of(p);
  const auto ref = dense_reference::full(p, grid);
  const auto X = ref.x_spectra(x);
  const i64 lh = grid[0], lw = grid[1], bw = lw / 2 + 1;
  vec e(static_cast<size_t>(lh * bw), 0.0);
  for (i64 nc = 0; nc < d.N * d.C; ++nc)
    for (i64 kh = 0; kh < lh; ++kh)
      for (i64 kw = 0; kw < bw; ++kw) {
        const bool paired = kw != 0 && !(lw % 2 == 0 && kw == lw / 2);
        e[kh * bw + kw] += (paired ? 2.0 : 1.0) * std::norm(X[nc * lh * lw + kh * lw + kw]);
      }
  return e;
}

/// Energy of `map` (Lh x bw) inside rows x cols.
inline double kept_energy(const vec& map, i64 bw, const std::vector<i64>& rows,
                          const std::vector<i64>& cols) {
  double s = 0;
  for (i64 r : rows)
    for (i64 c : cols) s += map[r * bw + c];
  return s;
}

// ---------------------------------------------------------------------------------------------
// A random problem whose values are exactly representable in T, with views for the library.

/// The shapes of a layer as `Dims`: dims (1D, 2D) here; oracles3d.hpp adds dims3 (3D).
template <class Dims>
Dims dims_for(const conv_params& p) {
  return dims_of(p);
}

template <class T, class Dims = dims>
struct problem {
  conv_params p;
  Dims d;
  vec x, w, b, g;  // the values, in double
  std::vector<T> xt, wt, bt, gt;

  problem(const conv_params& prm, uint64_t seed) : p(prm), d(dims_for<Dims>(prm)) {
    x = rounded<T>(random_vector(d.input_size(), 4 * seed + 1));
    w = rounded<T>(random_vector(d.weight_size(), 4 * seed + 2));
    b = rounded<T>(random_vector(d.F, 4 * seed + 3));
    g = rounded<T>(random_vector(d.output_size(), 4 * seed + 4));
    xt = cast<T>(x);
    wt = cast<T>(w);
    bt = cast<T>(b);
    gt = cast<T>(g);
  }
  tensor_view<const T> xv() const {
    return tensor_view<const T>::contiguous(xt.data(), d.input_shape());
  }
  tensor_view<const T> wv() const {
    return tensor_view<const T>::contiguous(wt.data(), d.weight_shape());
  }
  tensor_view<const T> gv() const {
    return tensor_view<const T>::contiguous(gt.data(), d.output_shape());
  }
};

template <class T>
tensor_view<T> out_view(std::vector<T>& v, const dim_array& shape) {
  return tensor_view<T>::contiguous(v.data(), shape);
}
template <class T>
tensor_view<const T> in_view(const std::vector<T>& v, const dim_array& shape) {
  return tensor_view<const T>::contiguous(v.data(), shape);
}
/// All of a buffer (a std::vector, or anything with data() and size()) as a spectrum argument.
template <class Buffer>
auto spec(Buffer& v) {
  using T = std::remove_pointer_t<decltype(v.data())>;
  return spectrum_view<T>(v.data(), static_cast<i64>(v.size()));
}

}  // namespace bt
