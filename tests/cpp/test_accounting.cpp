// Shapes and kept-set accounting (docs/design.md 1.1, 1.2, 1.4; geometry.hpp): fast_size,
// band_limit, default grid, kept rows/columns, kept/total/achieved rate, output shapes, spectrum
// sizes, the conv1d/conv2d factories, and that plans report the same geometry.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "oracles.hpp"

namespace {

using namespace bt;

TEST(FastSize, KnownValues) {
  const std::vector<std::pair<i64, i64>> known = {
      {1, 1},   {2, 2},   {7, 7},   {11, 12}, {13, 14}, {17, 18},   {19, 20},   {23, 24},
      {29, 30}, {31, 32}, {34, 35}, {37, 40}, {97, 98}, {121, 125}, {127, 128}, {211, 216}};
  for (auto [n, want] : known) EXPECT_EQ(blfft::fast_size(n), want) << "n = " << n;
}

TEST(FastSize, SevenSmoothAndMinimalUpTo500) {
  for (i64 n = 1; n <= 500; ++n) {
    const i64 f = blfft::fast_size(n);
    ASSERT_GE(f, n);
    EXPECT_TRUE(is_7smooth(f)) << "fast_size(" << n << ") = " << f;
    for (i64 m = n; m < f; ++m)
      EXPECT_FALSE(is_7smooth(m)) << "fast_size(" << n << ") = " << f << " but " << m
                                  << " is 7-smooth";
  }
  EXPECT_EQ(blfft::fast_size(1000000), 1000000);
  EXPECT_EQ(blfft::fast_size(1000001), ref_fast_size(1000001));
}

TEST(BandLimit, EpsilonKeepsExactProducts) {
  // (L//2 + 1) = 10 and r = 0.8: 10 * (1 - 0.8) = 1.9999999999999996 in double; the 1e-9 in
  // docs/design.md 1.4 makes it 2.
  EXPECT_EQ(blfft::band_limit(18, 0.8, 1), 2);
  EXPECT_EQ(blfft::band_limit(19, 0.8, 1), 2);
  // 2D: sqrt(1 - 0.96) = 0.2 (to rounding).
  EXPECT_EQ(blfft::band_limit(18, 0.96, 2), 2);
  // (L//2 + 1) = 10, r = 0.7: 3 exactly (10 * 0.30000000000000004).
  EXPECT_EQ(blfft::band_limit(18, 0.7, 1), 3);
  // 2D, (L//2 + 1) = 9, r = 0.75: 9 * 0.5 = 4.5 -> 4.
  EXPECT_EQ(blfft::band_limit(16, 0.75, 2), 4);
}

TEST(BandLimit, CapsAndFloor) {
  for (i64 L : {1, 2, 3, 8, 9, 35, 64, 125}) {
    EXPECT_EQ(blfft::band_limit(L, 0.0, 1), L / 2 + 1);
    EXPECT_EQ(blfft::band_limit(L, 0.0, 2), L / 2 + 1);
    EXPECT_EQ(blfft::band_limit(L, 0.999999, 1), 1);
    EXPECT_EQ(blfft::band_limit(L, 0.999999, 2), 1);
  }
}

TEST(BandLimit, FormulaOverAGrid) {
  std::vector<double> rates;
  for (int k = 0; k < 100; ++k) rates.push_back(k / 100.0);
  for (double r : {0.125, 0.2, 0.36, 0.64, 0.8, 0.96, 0.9999}) rates.push_back(r);
  for (i64 L = 1; L <= 80; ++L)
    for (int nd : {1, 2})
      for (double r : rates)
        EXPECT_EQ(blfft::band_limit(L, r, nd), ref_band_limit(L, r, nd))
            << "L = " << L << ", r = " << r << ", ndim = " << nd;
}

// Kept sets on explicit grids: every (Lh, Lw) parity combination, 1D and 2D.
TEST(Geometry, KeptSetsFollowDesign) {
  struct gc {
    conv_params p;
    std::array<i64, 2> grid;
  };
  const std::vector<gc> cases = {
      {make2d(1, 1, 1, {8, 8}, {3, 3}), {8, 8}},    // even x even
      {make2d(1, 1, 1, {8, 8}, {3, 3}), {9, 9}},    // odd x odd
      {make2d(1, 1, 1, {8, 8}, {3, 3}), {10, 15}},  // even x odd
      {make2d(1, 1, 1, {8, 8}, {3, 3}), {21, 12}},  // odd x even
      {make2d(1, 1, 1, {1, 8}, {1, 3}), {1, 8}},    // one row in 2D
      {make2d(1, 1, 1, {2, 5}, {1, 3}), {2, 7}},    // two rows
      {make1d(1, 1, 1, 16, 3), {1, 16}},           {make1d(1, 1, 1, 16, 3), {1, 27}},
  };
  for (const auto& c : cases)
    for (double r : {0.0, 0.1, 0.3, 0.5, 0.75, 0.8, 0.9, 0.99}) {
      const auto p = with_grid(c.p, c.grid);
      SCOPED_TRACE(name_of(p) + " r=" + std::to_string(r));
      const auto g = blfft::make_geometry(p, compression::rate(r));
      const i64 lh = c.grid[0], lw = c.grid[1];
      const i64 ih = p.ndim == 1 ? 1 : ref_band_limit(lh, r, 2);
      const i64 iw = ref_band_limit(lw, r, p.ndim);
      EXPECT_EQ(g.grid, c.grid);
      EXPECT_EQ(g.bins_w, lw / 2 + 1);
      EXPECT_EQ(g.limits, (std::array<i64, 2>{ih, iw}));
      EXPECT_EQ(g.kept_rows, ref_kept_rows(lh, ih));
      EXPECT_EQ(g.kept_cols, ref_kept_cols(iw));
      EXPECT_EQ(g.kept, static_cast<i64>(g.kept_rows.size() * g.kept_cols.size()));
      EXPECT_EQ(g.total, lh * (lw / 2 + 1));
      EXPECT_DOUBLE_EQ(g.achieved_rate,
                       1.0 - static_cast<double>(g.kept) / static_cast<double>(g.total));
      EXPECT_DOUBLE_EQ(g.requested_rate, r);
      // The kept rows are symmetric under k -> -k.
      for (i64 k : g.kept_rows)
        EXPECT_TRUE(std::binary_search(g.kept_rows.begin(), g.kept_rows.end(), (lh - k) % lh));
      if (r == 0.0) {
        EXPECT_EQ(g.kept, g.total);
      }
    }
}

TEST(Geometry, KeptRowsByHand) {
  // Lh = 8: i_h = 1 -> {0}; 2 -> {0, 1, 7}; 4 -> {0..3, 5..7}; 5 (= 8/2 + 1) -> all rows.
  auto p = with_grid(make2d(1, 1, 1, {8, 8}, {3, 3}), {8, 8});
  using v = std::vector<i64>;
  EXPECT_EQ(blfft::make_geometry(p, compression::band(1, 1)).kept_rows, v({0}));
  EXPECT_EQ(blfft::make_geometry(p, compression::band(2, 1)).kept_rows, v({0, 1, 7}));
  EXPECT_EQ(blfft::make_geometry(p, compression::band(4, 1)).kept_rows, v({0, 1, 2, 3, 5, 6, 7}));
  EXPECT_EQ(blfft::make_geometry(p, compression::band(5, 1)).kept_rows,
            v({0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(blfft::make_geometry(p, compression::band(5, 3)).kept_cols, v({0, 1, 2}));
  EXPECT_EQ(blfft::make_geometry(p, compression::band(5, 5)).kept_cols, v({0, 1, 2, 3, 4}));
  // Lh = 9: i_h = 5 (= 9/2 + 1) -> all rows; 4 -> {0..3, 6..8}.
  p = with_grid(p, {9, 9});
  EXPECT_EQ(blfft::make_geometry(p, compression::band(5, 1)).kept_rows.size(), 9u);
  EXPECT_EQ(blfft::make_geometry(p, compression::band(4, 1)).kept_rows, v({0, 1, 2, 3, 6, 7, 8}));
}

TEST(Geometry, BandAndIndicesReportTheirSets) {
  const auto p = with_grid(make2d(2, 3, 4, {8, 8}, {3, 3}, {1, 1}, {1, 1}), {12, 16});
  const auto b = blfft::make_geometry(p, compression::band(3, 5));
  EXPECT_EQ(b.limits, (std::array<i64, 2>{3, 5}));
  EXPECT_EQ(b.kept_rows, ref_kept_rows(12, 3));
  EXPECT_EQ(b.kept_cols, ref_kept_cols(5));
  EXPECT_EQ(b.kept, 25);
  EXPECT_DOUBLE_EQ(b.achieved_rate, 1.0 - 25.0 / (12 * 9));
  EXPECT_DOUBLE_EQ(b.requested_rate, b.achieved_rate);

  using v = std::vector<i64>;
  const auto ix = blfft::make_geometry(p, compression::indices(v{0, 2, 10}, v{0, 3, 8}));
  EXPECT_EQ(ix.kept_rows, v({0, 2, 10}));
  EXPECT_EQ(ix.kept_cols, v({0, 3, 8}));
  EXPECT_EQ(ix.kept, 9);
  EXPECT_EQ(ix.limits, (std::array<i64, 2>{0, 0}));
  EXPECT_DOUBLE_EQ(ix.achieved_rate, 1.0 - 9.0 / (12 * 9));
  EXPECT_DOUBLE_EQ(ix.requested_rate, ix.achieved_rate);
  EXPECT_EQ(ix.x_spectrum_size(), 2 * 9 * 2 * 3);

  const auto all = blfft::make_geometry(p, compression::indices({}, {}));
  EXPECT_EQ(all.kept, all.total);
  const auto all_rows = blfft::make_geometry(p, compression::indices({}, v{1, 2}));
  EXPECT_EQ(all_rows.kept_rows.size(), 12u);
  EXPECT_EQ(all_rows.kept, 24);
  const auto all_cols = blfft::make_geometry(p, compression::indices(v{0}, {}));
  EXPECT_EQ(all_cols.kept_cols, ref_kept_cols(9));
}

// Shapes, default grid and sizes over the geometries of the correctness tests.
TEST(Geometry, ShapesGridsAndSizes) {
  const std::vector<conv_params> ps = {
      make1d(2, 3, 4, 9, 4, 2, 1),
      make1d(2, 4, 6, 11, 3, 2, 3, 3, 2),
      make1d(1, 1, 1, 5, 9, 1, 2),
      make2d(2, 3, 4, {7, 9}, {3, 2}, {2, 1}, {1, 0}, {1, 2}),
      make2d(2, 4, 6, {10, 6}, {2, 3}, {1, 3}, {0, 2}, {2, 1}, 2),
      make2d(2, 3, 6, {6, 6}, {3, 3}, {1, 1}, {2, 2}, {2, 2}, 3),
      make2d(2, 2, 3, {4, 5}, {6, 7}, {1, 1}, {1, 1}),
      make2d(3, 2, 2, {3, 3}, {1, 1}, {2, 2}),
      make2d(1, 2, 2, {32, 32}, {3, 3}, {1, 1}, {1, 1}),  // CIFAR: grid 35 x 35 (docs/design.md 4)
  };
  for (const auto& p : ps)
    for (double r : {0.0, 0.5}) {
      SCOPED_TRACE(name_of(p) + " r=" + std::to_string(r));
      const dims d = dims_of(p);
      const auto g = blfft::make_geometry(p, compression::rate(r));
      EXPECT_EQ(g.params.grid, g.grid) << "params carry the grid filled in";
      EXPECT_EQ(g.params.batch, p.batch);
      EXPECT_EQ(g.in_per_group, d.Cg);
      EXPECT_EQ(g.out_per_group, d.Fg);
      EXPECT_EQ(g.padded, (std::array<i64, 2>{d.Hp, d.Wp}));
      EXPECT_EQ(g.dilated, (std::array<i64, 2>{d.KHd, d.KWd}));
      EXPECT_EQ(g.full_out, (std::array<i64, 2>{d.Ho1, d.Wo1}));
      EXPECT_EQ(g.output, (std::array<i64, 2>{d.Ho, d.Wo}));
      EXPECT_EQ(g.grid, ref_default_grid(p));
      if (p.ndim == 1) {
        EXPECT_EQ(g.grid[0], 1);
      }
      EXPECT_EQ(g.input_shape(), d.input_shape());
      EXPECT_EQ(g.weight_shape(), d.weight_shape());
      EXPECT_EQ(g.output_shape(), d.output_shape());
      EXPECT_EQ(g.input_size(), d.input_size());
      EXPECT_EQ(g.weight_size(), d.weight_size());
      EXPECT_EQ(g.output_size(), d.output_size());
      EXPECT_EQ(g.x_spectrum_size(), 2 * g.kept * d.N * d.C);
      EXPECT_EQ(g.w_spectrum_size(), 2 * g.kept * d.F * d.Cg);
      EXPECT_EQ(g.y_spectrum_size(), 2 * g.kept * d.N * d.F);
      EXPECT_FALSE(g.describe().empty());
    }
  const auto cifar = blfft::make_geometry(make2d(1, 2, 2, {32, 32}, {3, 3}, {1, 1}, {1, 1}),
                                          compression::rate(0.5));
  EXPECT_EQ(cifar.grid, (std::array<i64, 2>{35, 35}));
  EXPECT_EQ(cifar.total, 630);
  EXPECT_EQ(cifar.kept, 276) << "docs/design.md 4: 276 of 630 bins kept at 50%";
}

TEST(Geometry, FactoriesSetEveryField) {
  const auto a = conv_params::conv1d(2, 6, 4, 17, 3, 2, 1, 3, 2);
  const auto b = make1d(2, 6, 4, 17, 3, 2, 1, 3, 2);
  const auto c = conv_params::conv2d(3, 4, 8, {9, 10}, {3, 2}, {2, 1}, {1, 2}, {2, 3}, 4);
  const auto e = make2d(3, 4, 8, {9, 10}, {3, 2}, {2, 1}, {1, 2}, {2, 3}, 4);
  for (auto [got, want] : {std::pair{a, b}, std::pair{c, e}}) {
    EXPECT_EQ(got.ndim, want.ndim);
    EXPECT_EQ(got.batch, want.batch);
    EXPECT_EQ(got.in_channels, want.in_channels);
    EXPECT_EQ(got.out_channels, want.out_channels);
    EXPECT_EQ(got.input, want.input);
    EXPECT_EQ(got.kernel, want.kernel);
    EXPECT_EQ(got.stride, want.stride);
    EXPECT_EQ(got.padding, want.padding);
    EXPECT_EQ(got.dilation, want.dilation);
    EXPECT_EQ(got.groups, want.groups);
    EXPECT_EQ(got.grid, want.grid);
  }
  // Defaults.
  const auto d1 = conv_params::conv1d(1, 2, 3, 8, 3);
  EXPECT_EQ(d1.stride, (std::array<i64, 2>{1, 1}));
  EXPECT_EQ(d1.padding, (std::array<i64, 2>{0, 0}));
  EXPECT_EQ(d1.dilation, (std::array<i64, 2>{1, 1}));
  EXPECT_EQ(d1.groups, 1);
  const auto d2 = conv_params::conv2d(1, 2, 3, {8, 8}, {3, 3});
  EXPECT_EQ(d2.ndim, 2);
  EXPECT_EQ(d2.stride, (std::array<i64, 2>{1, 1}));
  EXPECT_EQ(d2.padding, (std::array<i64, 2>{0, 0}));
  EXPECT_EQ(d2.groups, 1);
  EXPECT_EQ(d2.grid, (std::array<i64, 2>{0, 0}));
}

TEST(Geometry, PlansReportTheirGeometry) {
  const auto p = make2d(2, 4, 6, {10, 6}, {2, 3}, {1, 3}, {0, 2}, {2, 1}, 2);
  for (double r : {0.0, 0.3, 0.9}) {
    const auto want = blfft::make_geometry(p, compression::rate(r));
    const auto pf = blfft::get_plan<float>(p, compression::rate(r));
    const auto pd = blfft::get_plan<double>(p, compression::rate(r));
    for (const blfft::geometry* got : {&pf->geometry(), &pd->geometry()}) {
      EXPECT_EQ(got->grid, want.grid);
      EXPECT_EQ(got->kept_rows, want.kept_rows);
      EXPECT_EQ(got->kept_cols, want.kept_cols);
      EXPECT_EQ(got->kept, want.kept);
      EXPECT_EQ(got->output, want.output);
      EXPECT_EQ(got->x_spectrum_size(), want.x_spectrum_size());
      EXPECT_EQ(got->w_spectrum_size(), want.w_spectrum_size());
      EXPECT_DOUBLE_EQ(got->achieved_rate, want.achieved_rate);
      EXPECT_DOUBLE_EQ(got->requested_rate, r);
    }
    blfft::plan<double> own(want);
    EXPECT_EQ(own.geometry().kept_rows, want.kept_rows);
  }
  // A plan with FFTW's measuring planner computes the same thing.
  problem<double> pr(p, 5);
  auto a = blfft::get_plan<double>(p, compression::rate(0.3));
  blfft::plan_options opt;
  opt.rigor = blfft::fft_rigor::measure;
  auto b = blfft::get_plan<double>(p, compression::rate(0.3), opt);
  std::vector<double> ya(pr.d.output_size()), yb(pr.d.output_size());
  a->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(ya, pr.d.output_shape()));
  b->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(yb, pr.d.output_shape()));
  EXPECT_TRUE(rel_close("measure vs estimate", yb, ya, 1e-13));
}

}  // namespace
