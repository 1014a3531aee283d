// At r > 0: forward, backward and every separate entry point against the dense band-limited
// reference (docs/design.md 1.5, 1.6) built from the plan's kept rows and columns. Tolerances:
// double 1e-9, float 2e-4 relative l2. Also explicit compression::band / ::indices and a grid
// larger than the default.

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "oracles.hpp"

namespace {

using namespace bt;

std::vector<conv_params> geometries() {
  return shared_layers_and({
      make1d(2, 4, 6, 11, 4, 2, 2, 2, 2), make1d(1, 3, 6, 9, 3, 3, 1, 1, 3),
      make2d(2, 3, 4, {7, 9}, {3, 2}, {2, 1}, {1, 0}, {1, 2}),
      make2d(2, 4, 4, {9, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 4),
      make2d(1, 2, 3, {11, 14}, {5, 3}, {3, 2}, {2, 3}, {1, 2}),
      make2d(2, 2, 2, {4, 5}, {6, 7}, {1, 1}, {1, 1}),  // kernel = padded input
  });
}

template <class T>
void run_against_dense(const conv_params& p, const compression& c, transform_method m,
                       uint64_t seed) {
  problem<T> pr(p, seed);
  auto pl = blfft::get_plan<T>(p, c, options(m));
  ASSERT_TRUE(pl);
  const auto& geo = pl->geometry();
  SCOPED_TRACE(geo.describe());
  ASSERT_LT(geo.kept, geo.total) << "a compressed case should drop bins";
  const dense_reference ref(p, geo.grid, geo.kept_rows, geo.kept_cols);
  check_all_entry_points(*pl, pr, dense_results(ref, pr.x, pr.w, pr.b, pr.g), tol<T>::dense);
}

class Compressed : public ::testing::TestWithParam<layer_case> {};

TEST_P(Compressed, AllEntryPointsMatchDenseReference) {
  const auto& prm = GetParam();
  with_dtype(prm.t, [&](auto t) {
    run_against_dense<decltype(t)>(prm.p, compression::rate(prm.rate), prm.m, 21);
  });
}

INSTANTIATE_TEST_SUITE_P(Rates, Compressed,
                         ::testing::ValuesIn(layer_cases(geometries(), {0.3, 0.5, 0.75, 0.9})),
                         case_name);

// Realistic channel counts and map sizes (see test_uncompressed.cpp).
std::vector<conv_params> larger_geometries() {
  return {make2d(4, 16, 32, {16, 16}, {3, 3}, {1, 1}, {1, 1}),
          make2d(3, 32, 32, {15, 12}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 32),
          make2d(2, 24, 16, {20, 18}, {5, 5}, {1, 2}, {2, 2}, {1, 1}, 4),
          make1d(4, 16, 16, 100, 5, 1, 2)};
}
INSTANTIATE_TEST_SUITE_P(Larger, Compressed,
                         ::testing::ValuesIn(layer_cases(larger_geometries(), {0.5, 0.9})),
                         case_name);

// The kept set really is the one of docs/design.md 1.4 (so the dense reference above is not merely
// fed back the library's own choice).
TEST(CompressedKeptSet, RateKeptSetIsDesignRule) {
  for (const auto& p : geometries())
    for (double r : {0.3, 0.5, 0.75, 0.9}) {
      const auto geo = blfft::make_geometry(p, compression::rate(r));
      const auto grid = ref_default_grid(p);
      ASSERT_EQ(geo.grid, grid);
      const i64 ih = ref_band_limit(grid[0], r, p.ndim);
      const i64 iw = ref_band_limit(grid[1], r, p.ndim);
      EXPECT_EQ(geo.kept_rows, ref_kept_rows(grid[0], p.ndim == 1 ? 1 : ih)) << name_of(p);
      EXPECT_EQ(geo.kept_cols, ref_kept_cols(iw)) << name_of(p);
    }
}

/// With each engine, the plan for (p, c) is on `grid`, keeps exactly rows x cols, and matches
/// the dense reference of that kept set in every entry point.
template <class T>
void expect_kept_set_and_results(const conv_params& p, const compression& c,
                                 std::array<i64, 2> grid, const std::vector<i64>& rows,
                                 const std::vector<i64>& cols, uint64_t seed) {
  problem<T> pr(p, seed);
  const dense_reference ref(p, grid, rows, cols);
  const auto want = dense_results(ref, pr.x, pr.w, pr.b, pr.g);
  for (auto m : methods()) {
    SCOPED_TRACE(method_name(m));
    auto pl = blfft::get_plan<T>(p, c, options(m));
    const auto& geo = pl->geometry();
    ASSERT_EQ(geo.grid, grid);
    EXPECT_EQ(geo.kept_rows, rows);
    EXPECT_EQ(geo.kept_cols, cols);
    check_all_entry_points(*pl, pr, want, tol<T>::dense);
  }
}

// The layers of the explicit kept-set cases below, named after their default grids.
const conv_params grid_12x16 = make2d(2, 3, 4, {9, 12}, {3, 4}, {2, 1}, {1, 2}, {1, 1});
const conv_params grid_1x24 = make1d(2, 3, 2, 20, 5, 2, 2, 1);

template <class T>
void run_band_cases() {
  // (params, i_h, i_w): default grids; 2D uneven limits; full rows with few columns; full
  // columns with few rows; the smallest set (DC only).
  struct bc {
    conv_params p;
    i64 ih, iw;
  };
  for (const bc& b :
       {bc{grid_12x16, 2, 5}, bc{grid_12x16, 7, 2}, bc{grid_12x16, 3, 9}, bc{grid_12x16, 1, 1},
        bc{grid_12x16, 5, 5}, bc{grid_1x24, 1, 4}, bc{grid_1x24, 1, 1}, bc{grid_1x24, 1, 12}}) {
    SCOPED_TRACE(name_of(b.p) + " band(" + std::to_string(b.ih) + "," + std::to_string(b.iw) + ")");
    const auto grid = ref_default_grid(b.p);
    expect_kept_set_and_results<T>(b.p, compression::band(b.ih, b.iw), grid,
                                   ref_kept_rows(grid[0], b.ih), ref_kept_cols(b.iw), 31);
  }
}
TEST(CompressedBand, ExplicitBandLimitsF32) {
  run_band_cases<float>();
}
TEST(CompressedBand, ExplicitBandLimitsF64) {
  run_band_cases<double>();
}

template <class T>
void run_indices_cases() {
  struct ic {
    conv_params p;
    std::vector<i64> rows, cols;
  };
  // Symmetric row sets (k and Lh-k together), arbitrary ascending column sets, with and
  // without the DC / Nyquist bins.
  for (const ic& c :
       {ic{grid_12x16, {0, 1, 2, 5, 7, 10, 11}, {0, 2, 3, 6}},
        ic{grid_12x16, {1, 6, 11}, {1, 8}},  // no DC row; Nyquist row 6, column 8
        ic{grid_12x16, {0}, {0, 1, 2, 3, 4, 5, 6, 7, 8}}, ic{grid_12x16, {}, {0, 4}},  // all rows
        ic{grid_12x16, {0, 3, 9}, {}},  // all columns
        ic{grid_1x24, {0}, {0, 3, 4, 12}}, ic{grid_1x24, {}, {1, 2}}}) {
    SCOPED_TRACE(name_of(c.p));
    const auto grid = ref_default_grid(c.p);
    const auto rows = c.rows.empty() ? ref_kept_rows(grid[0], grid[0] / 2 + 1) : c.rows;
    const auto cols = c.cols.empty() ? ref_kept_cols(grid[1] / 2 + 1) : c.cols;
    expect_kept_set_and_results<T>(c.p, compression::indices(c.rows, c.cols), grid, rows, cols, 41);
  }
}
TEST(CompressedIndices, ExplicitIndicesF32) {
  run_indices_cases<float>();
}
TEST(CompressedIndices, ExplicitIndicesF64) {
  run_indices_cases<double>();
}

// A non-default (larger) grid: the kept set is derived from that grid, and results follow it.
template <class T>
void run_large_grid_cases() {
  for (auto p : {with_grid(make2d(2, 3, 4, {7, 9}, {3, 2}, {2, 1}, {1, 0}, {1, 2}), {16, 21}),
                 with_grid(make2d(1, 2, 2, {6, 6}, {3, 3}, {1, 1}, {1, 1}), {11, 10}),
                 with_grid(make1d(2, 3, 4, 9, 4, 2, 1), {1, 27})})
    for (double r : {0.5, 0.9}) {
      SCOPED_TRACE(name_of(p) + " r=" + std::to_string(r));
      const auto rows = ref_kept_rows(p.grid[0], p.ndim == 1 ? 1 : ref_band_limit(p.grid[0], r, 2));
      const auto cols = ref_kept_cols(ref_band_limit(p.grid[1], r, p.ndim));
      expect_kept_set_and_results<T>(p, compression::rate(r), p.grid, rows, cols, 51);
    }
}
TEST(CompressedGrid, LargerGridF32) {
  run_large_grid_cases<float>();
}
TEST(CompressedGrid, LargerGridF64) {
  run_large_grid_cases<double>();
}

// The rate can change between calls (docs/design.md 1.8): interleave plans of one geometry.
TEST(CompressedRates, InterleavedRatesOnOneGeometry) {
  const auto p = make2d(2, 3, 4, {10, 9}, {3, 3}, {1, 2}, {1, 1});
  problem<double> pr(p, 61);
  for (int round = 0; round < 4; ++round)
    for (double r : {0.0, 0.9, 0.3, 0.75, 0.5}) {
      const auto m = methods()[round % 2];
      SCOPED_TRACE("r=" + std::to_string(r) + " " + method_name(m));
      auto pl = blfft::get_plan<double>(p, compression::rate(r), options(m));
      const auto& geo = pl->geometry();
      EXPECT_DOUBLE_EQ(geo.requested_rate, r);
      const dense_reference ref(p, geo.grid, geo.kept_rows, geo.kept_cols);
      auto y = nan_filled<double>(pr.d.output_size());
      pl->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, pr.d.output_shape()));
      EXPECT_TRUE(
          rel_close("forward", y, ref.forward(pr.x, pr.w, pr.b.data()), tol<double>::dense));
    }
}

// Compression really changes the result (guards against a plan ignoring its kept set).
TEST(CompressedRates, CompressionChangesResult) {
  const auto p = make2d(1, 2, 2, {12, 12}, {3, 3}, {1, 1}, {1, 1});
  problem<double> pr(p, 71);
  for (auto m : methods()) {
    auto full = blfft::get_plan<double>(p, compression::none(), options(m));
    auto half = blfft::get_plan<double>(p, compression::rate(0.5), options(m));
    auto y0 = nan_filled<double>(pr.d.output_size());
    auto y1 = nan_filled<double>(pr.d.output_size());
    full->forward(pr.xv(), pr.wv(), nullptr, out_view(y0, pr.d.output_shape()));
    half->forward(pr.xv(), pr.wv(), nullptr, out_view(y1, pr.d.output_shape()));
    EXPECT_GT(rel_l2(widen(y1), widen(y0)), 1e-2) << method_name(m);
  }
}

}  // namespace
