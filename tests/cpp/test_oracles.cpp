// Self-checks of the oracles in oracles.hpp (no library code involved): a hand-computed
// convolution, the direct gradients as exact adjoints, the unmasked dense reference equal to
// direct convolution, the masked dense reference as an adjoint pair and as a projection, and
// the kept-set helpers. If these fail, the library tests mean nothing.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "oracles.hpp"

namespace {

using namespace bt;

TEST(Oracles, HandComputedConvolution) {
  // x = [1 2 3 4], w = [1 -1]: cross-correlation gives [-1 -1 -1].
  const auto p = make1d(1, 1, 1, 4, 2);
  EXPECT_EQ(direct_forward(p, {1, 2, 3, 4}, {1, -1}, nullptr), vec({-1, -1, -1}));
  // Padding 1, stride 2, dilation 2, bias 10: xp = [0 1 2 3 4 0], taps at i and i+2,
  // outputs at 0 and 2: 0*1 - 2 = -2, 2 - 4 = -2; plus 10.
  const auto q = make1d(1, 1, 1, 4, 2, 2, 1, 2);
  const double bias = 10;
  EXPECT_EQ(direct_forward(q, {1, 2, 3, 4}, {1, -1}, &bias), vec({8, 8}));
  // Groups: two channels, two filters, groups 2: each filter sees its own channel.
  const auto g = make1d(1, 2, 2, 3, 1, 1, 0, 1, 2);
  EXPECT_EQ(direct_forward(g, {1, 2, 3, 4, 5, 6}, {2, 3}, nullptr), vec({2, 4, 6, 12, 15, 18}));
  // 2D: 2x2 box filter on a 3x3 ramp.
  const auto b = make2d(1, 1, 1, {3, 3}, {2, 2});
  EXPECT_EQ(direct_forward(b, {0, 1, 2, 3, 4, 5, 6, 7, 8}, {1, 1, 1, 1}, nullptr),
            vec({8, 12, 20, 24}));
}

const std::vector<conv_params>& oracle_geometries() {
  static const std::vector<conv_params> g = {
      make1d(2, 3, 4, 9, 4, 2, 1),
      make1d(2, 4, 6, 11, 3, 2, 3, 3, 2),
      make2d(2, 3, 4, {7, 9}, {3, 2}, {2, 1}, {1, 0}, {1, 2}),
      make2d(2, 4, 6, {10, 6}, {2, 3}, {1, 3}, {0, 2}, {2, 1}, 2),
      make2d(2, 3, 6, {6, 6}, {3, 3}, {1, 1}, {2, 2}, {2, 2}, 3),
      make2d(2, 2, 3, {4, 5}, {6, 7}, {1, 1}, {1, 1}),
  };
  return g;
}

TEST(Oracles, DirectGradientsAreAdjoints) {
  for (const auto& p : oracle_geometries()) {
    SCOPED_TRACE(name_of(p));
    const dims d = dims_of(p);
    const vec x = random_vector(d.input_size(), 1), w = random_vector(d.weight_size(), 2);
    const vec g = random_vector(d.output_size(), 3);
    const vec y = direct_forward(p, x, w, nullptr);
    const double lhs = dot(y, g);
    EXPECT_NEAR(lhs, dot(x, direct_input_grad(p, g, w)), 1e-12 * norm(y) * norm(g));
    EXPECT_NEAR(lhs, dot(w, direct_weight_grad(p, g, x)), 1e-12 * norm(y) * norm(g));
    // Bias gradient: d/db <y(b), g> = sum of g per filter.
    const vec b = random_vector(d.F, 4);
    const vec yb = direct_forward(p, x, w, b.data());
    EXPECT_NEAR(dot(yb, g) - lhs, dot(b, direct_bias_grad(p, g)), 1e-12 * norm(yb) * norm(g));
  }
}

TEST(Oracles, UnmaskedDenseEqualsDirect) {
  for (const auto& p0 : oracle_geometries())
    for (bool big : {false, true}) {
      auto grid = ref_default_grid(p0);
      if (big) grid = {grid[0] + (p0.ndim == 2 ? 3 : 0), grid[1] + 5};
      const auto p = with_grid(p0, grid);
      SCOPED_TRACE(name_of(p));
      const dims d = dims_of(p);
      const vec x = random_vector(d.input_size(), 5), w = random_vector(d.weight_size(), 6);
      const vec g = random_vector(d.output_size(), 7), b = random_vector(d.F, 8);
      const auto ref = dense_reference::full(p, grid);
      EXPECT_LE(rel_l2(ref.forward(x, w, b.data()), direct_forward(p, x, w, b.data())), 1e-12);
      EXPECT_LE(rel_l2(ref.input_grad(g, w), direct_input_grad(p, g, w)), 1e-12);
      EXPECT_LE(rel_l2(ref.weight_grad(g, x), direct_weight_grad(p, g, x)), 1e-12);
    }
}

TEST(Oracles, MaskedDenseIsAnAdjointPairAndDiffers) {
  for (const auto& p : oracle_geometries()) {
    SCOPED_TRACE(name_of(p));
    const dims d = dims_of(p);
    const auto grid = ref_default_grid(p);
    const i64 ih = p.ndim == 1 ? 1 : ref_band_limit(grid[0], 0.6, 2);
    const dense_reference ref(p, grid, ref_kept_rows(grid[0], ih),
                              ref_kept_cols(ref_band_limit(grid[1], 0.6, p.ndim)));
    const vec x = random_vector(d.input_size(), 9), w = random_vector(d.weight_size(), 10);
    const vec g = random_vector(d.output_size(), 11);
    const vec y = ref.forward(x, w, nullptr);
    const double lhs = dot(y, g);
    EXPECT_NEAR(lhs, dot(x, ref.input_grad(g, w)), 1e-12 * norm(y) * norm(g));
    EXPECT_NEAR(lhs, dot(w, ref.weight_grad(g, x)), 1e-12 * norm(y) * norm(g));
    EXPECT_GT(rel_l2(y, direct_forward(p, x, w, nullptr)), 1e-3) << "mask had no effect";
  }
}

// The masked forward is direct convolution of the projected, real, padded input: the mask is a
// real orthogonal projection on the grid (symmetric kept set), so the inverse must be real.
TEST(Oracles, MaskIsARealProjection) {
  // 1x1 kernel w = 1 on a 9 x 12 input, grid 10 x 12: y = (P x)[0:9, 0:12].
  const std::array<i64, 2> grid{10, 12};
  const auto p = with_grid(make2d(1, 1, 1, {9, 12}, {1, 1}), grid);
  const dims d = dims_of(p);
  const dense_reference ref(p, grid, ref_kept_rows(grid[0], 3), ref_kept_cols(4));
  const vec x = random_vector(d.input_size(), 12);
  const vec one{1.0};
  // Pad x to the grid explicitly (grid 10 x 12, input 9 x 12, padding 0).
  const auto q = with_grid(make2d(1, 1, 1, {10, 12}, {1, 1}), {10, 12});
  vec xg(120, 0.0);
  for (i64 h = 0; h < 9; ++h)
    for (i64 w = 0; w < 12; ++w) xg[h * 12 + w] = x[h * 12 + w];
  const dense_reference refq(q, {10, 12}, ref_kept_rows(10, 3), ref_kept_cols(4));
  const vec px = refq.forward(xg, one, nullptr);
  const vec ppx = refq.forward(px, one, nullptr);
  EXPECT_LE(rel_l2(ppx, px), 1e-13) << "P P = P";
  EXPECT_NEAR(dot(px, xg), dot(px, px), 1e-12 * dot(xg, xg)) << "P symmetric";
  // And the original geometry's output is the crop of P x.
  const vec y = ref.forward(x, one, nullptr);
  vec crop(px.begin(), px.begin() + 108);
  EXPECT_LE(rel_l2(y, crop), 1e-13);
}

TEST(Oracles, KeptSetHelpers) {
  EXPECT_EQ(ref_fast_size(11), 12);
  EXPECT_EQ(ref_fast_size(121), 125);
  EXPECT_EQ(ref_band_limit(18, 0.8, 1), 2);
  EXPECT_EQ(ref_kept_rows(8, 2), (std::vector<i64>{0, 1, 7}));
  EXPECT_EQ(ref_kept_rows(8, 5).size(), 8u);
  EXPECT_EQ(ref_kept_rows(9, 5).size(), 9u);
  EXPECT_EQ(ref_kept_rows(1, 1), (std::vector<i64>{0}));
  EXPECT_EQ(ref_kept_rows(2, 2), (std::vector<i64>{0, 1}));
}

TEST(Oracles, EnergyMapIsParsevalExact) {
  for (auto grid : std::vector<std::array<i64, 2>>{{8, 8}, {9, 9}, {10, 15}, {1, 16}, {1, 15}}) {
    const auto p = grid[0] == 1 ? with_grid(make1d(2, 3, 1, 7, 1), grid)
                                : with_grid(make2d(2, 3, 1, {7, 6}, {1, 1}), grid);
    const dims d = dims_of(p);
    const vec x = random_vector(d.input_size(), 13);
    const vec e = ref_energy_map(p, grid, x);
    double s = 0;
    for (double v : e) s += v;
    EXPECT_NEAR(s, grid[0] * grid[1] * dot(x, x), 1e-12 * s);
  }
}

TEST(Oracles, RelativeErrorFlagsNaN) {
  EXPECT_TRUE(std::isinf(rel_l2({1.0, std::nan("")}, {1.0, 1.0})));
  EXPECT_TRUE(std::isinf(rel_l2({1.0, INFINITY}, {1.0, 1.0})));
  EXPECT_TRUE(std::isinf(rel_l2({1.0}, {1.0, 1.0})));
  EXPECT_DOUBLE_EQ(rel_l2({3.0, 4.0}, {0.0, 0.0}), 5.0);
  EXPECT_NEAR(rel_l2({1.0, 1.0}, {1.0, 2.0}), std::sqrt(1.0 / 5.0), 1e-15);
}

}  // namespace
