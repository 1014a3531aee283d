#pragma once
/// @file oracles3d.hpp
/// The oracles of 3D layers (conv_params::conv3d), written without the library: shapes by the
/// rules of docs/design.md 1.1 per axis (d, h, w), direct 3D cross-correlation and its gradients
/// in double, and problem3 (problem<T> of oracles.hpp with these shapes), so that the CUDA
/// harness runs 3D layers through the same checks. Used by test_conv3d.cpp (CPU)
/// and the CUDA tests.

#include <array>
#include <cstdint>
#include <vector>

#include "oracles.hpp"

namespace bt {

/// The sizes of a 3D layer by the rules of docs/design.md 1.1, per axis (d, h, w).
struct dims3 {
  i64 N, C, F, G, Cg, Fg;
  std::array<i64, 3> in, k, s, p, dl, out;

  i64 input_size() const { return N * C * in[0] * in[1] * in[2]; }
  i64 weight_size() const { return F * Cg * k[0] * k[1] * k[2]; }
  i64 output_size() const { return N * F * out[0] * out[1] * out[2]; }
  std::vector<i64> input_shape() const { return {N, C, in[0], in[1], in[2]}; }
  std::vector<i64> weight_shape() const { return {F, Cg, k[0], k[1], k[2]}; }
  std::vector<i64> output_shape() const { return {N, F, out[0], out[1], out[2]}; }
};

inline dims3 dims3_of(i64 N, i64 C, i64 F, i64 G, std::array<i64, 3> in, std::array<i64, 3> k,
                      std::array<i64, 3> s, std::array<i64, 3> p, std::array<i64, 3> dl) {
  dims3 d{N, C, F, G, C / G, F / G, in, k, s, p, dl, {}};
  for (int a = 0; a < 3; ++a) {
    const i64 full = in[a] + 2 * p[a] - dl[a] * (k[a] - 1);
    d.out[a] = (full - 1) / s[a] + 1;
  }
  return d;
}

/// The dims3 of a conv_params::conv3d layer (depth from p.depth, height and width from p).
inline dims3 dims3_of(const conv_params& p) {
  const auto& z = p.depth;
  return dims3_of(p.batch, p.in_channels, p.out_channels, p.groups,
                  {z.input, p.input[0], p.input[1]}, {z.kernel, p.kernel[0], p.kernel[1]},
                  {z.stride, p.stride[0], p.stride[1]}, {z.padding, p.padding[0], p.padding[1]},
                  {z.dilation, p.dilation[0], p.dilation[1]});
}

/// Calls tap(y index, x index, w index) for every product of direct 3D cross-correlation.
template <class Tap>
void for_each_tap3(const dims3& d, Tap&& tap) {
  const auto [Do, Ho, Wo] = d.out;
  const auto [D, H, W] = d.in;
  const auto [KD, KH, KW] = d.k;
  for (i64 n = 0; n < d.N; ++n)
    for (i64 f = 0; f < d.F; ++f) {
      const i64 grp = f / d.Fg;
      for (i64 od = 0; od < Do; ++od)
        for (i64 oh = 0; oh < Ho; ++oh)
          for (i64 ow = 0; ow < Wo; ++ow) {
            const i64 yi = (((n * d.F + f) * Do + od) * Ho + oh) * Wo + ow;
            for (i64 c = 0; c < d.Cg; ++c)
              for (i64 a = 0; a < KD; ++a) {
                const i64 id = od * d.s[0] + a * d.dl[0] - d.p[0];
                if (id < 0 || id >= D) continue;
                for (i64 b = 0; b < KH; ++b) {
                  const i64 ih = oh * d.s[1] + b * d.dl[1] - d.p[1];
                  if (ih < 0 || ih >= H) continue;
                  for (i64 e = 0; e < KW; ++e) {
                    const i64 iw = ow * d.s[2] + e * d.dl[2] - d.p[2];
                    if (iw < 0 || iw >= W) continue;
                    const i64 ch = grp * d.Cg + c;
                    const i64 xi = (((n * d.C + ch) * D + id) * H + ih) * W + iw;
                    const i64 wi = (((f * d.Cg + c) * KD + a) * KH + b) * KW + e;
                    tap(yi, xi, wi);
                  }
                }
              }
          }
    }
}

/// Direct 3D results in double: y (with bias), dx, dw, db of output gradient g.
struct direct3 {
  vec y, dx, dw, db;
};

inline direct3 direct3d(const dims3& d, const vec& x, const vec& w, const vec& bias, const vec& g) {
  direct3 r;
  const i64 per_f = d.out[0] * d.out[1] * d.out[2];
  r.y.assign(static_cast<size_t>(d.N * d.F * per_f), 0.0);
  r.dx.assign(x.size(), 0.0);
  r.dw.assign(w.size(), 0.0);
  r.db.assign(static_cast<size_t>(d.F), 0.0);
  for_each_tap3(d, [&](i64 yi, i64 xi, i64 wi) {
    r.y[yi] += x[xi] * w[wi];
    r.dx[xi] += g[yi] * w[wi];
    r.dw[wi] += g[yi] * x[xi];
  });
  for (size_t i = 0; i < r.y.size(); ++i) {
    const i64 f = (static_cast<i64>(i) / per_f) % d.F;
    r.y[i] += bias[static_cast<size_t>(f)];
    r.db[static_cast<size_t>(f)] += g[i];
  }
  return r;
}

/// One 3D layer: N, C, F, groups, input {D, H, W}, kernel, stride, padding, dilation.
struct case3 {
  i64 N, C, F, G;
  std::array<i64, 3> in, k, s, p, dl;
};

inline conv_params params_of(const case3& c) {
  return conv_params::conv3d(c.N, c.C, c.F, c.in, c.k, c.s, c.p, c.dl, c.G);
}

/// The 3D layers every 3D test runs: odd sizes, stride, padding, dilation per axis, groups,
/// depthwise, depth-only taps, depth 1, kernel as large as the padded input.
inline std::vector<case3> conv3d_cases() {
  return {
      {2, 3, 4, 1, {5, 6, 7}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}},
      {1, 2, 3, 1, {7, 5, 6}, {3, 2, 3}, {2, 1, 2}, {1, 0, 2}, {1, 2, 1}},
      {2, 4, 6, 2, {6, 6, 5}, {2, 3, 2}, {1, 2, 1}, {2, 1, 0}, {2, 1, 2}},
      {2, 4, 4, 4, {4, 5, 5}, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}},  // depthwise
      {1, 2, 2, 1, {9, 4, 4}, {3, 1, 1}, {3, 1, 1}, {3, 0, 0}, {3, 1, 1}},  // temporal only
      {2, 2, 3, 1, {1, 5, 6}, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, {1, 1, 1}},  // depth 1
      {1, 3, 2, 1, {3, 3, 3}, {5, 5, 5}, {1, 1, 1}, {1, 1, 1}, {1, 1, 1}},  // kernel = padded
  };
}

template <>
inline dims3 dims_for<dims3>(const conv_params& p) {
  return dims3_of(p);
}

/// problem<T> of a 3D layer: random tensors rounded to T, with the same members and views.
template <class T>
using problem3 = problem<T, dims3>;

}  // namespace bt
