// At r = 0 the band-limited operator is ordinary convolution (docs/design.md 1, last paragraph):
// forward, backward and every separate entry point against the direct double-precision oracle,
// over a grid of geometries, for float (relative l2 <= 1e-4) and double (<= 1e-10).

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "oracles.hpp"

namespace {

using namespace bt;

std::vector<conv_params> geometries() {
  return {
      // 1D: (N, C, F, L, K, stride, padding, dilation, groups)
      make1d(2, 3, 4, 8, 3),               // even length, plain
      make1d(2, 3, 4, 9, 4, 2, 1),         // odd length, even kernel, stride 2
      make1d(1, 2, 3, 16, 3, 3, 2, 2),     // stride 3, dilation 2
      make1d(2, 2, 2, 7, 7),               // kernel = input (one output)
      make1d(2, 2, 3, 5, 9, 1, 2),         // kernel = padded input (5 + 2*2)
      make1d(2, 4, 6, 11, 3, 2, 3, 3, 2),  // groups 2, dilation 3, padding = K
      make1d(2, 4, 4, 10, 3, 1, 1, 1, 4),  // depthwise
      make1d(1, 3, 6, 12, 5, 2, 2, 1, 3),  // depthwise, channel multiplier 2
      make1d(1, 1, 1, 13, 4, 3, 0, 2),     // single channel, batch 1
      make1d(3, 2, 3, 6, 1),               // 1x1
      make1d(2, 3, 2, 6, 3, 1, 3),         // padding = K
      make1d(2, 2, 2, 17, 2, 3, 1, 3),     // prime length
      // 2D: (N, C, F, {H, W}, {KH, KW}, stride, padding, dilation, groups)
      make2d(2, 3, 4, {8, 8}, {3, 3}, {1, 1}, {1, 1}),
      make2d(2, 3, 4, {7, 9}, {3, 2}, {2, 1}, {1, 0}, {1, 2}),
      make2d(2, 4, 6, {10, 6}, {2, 3}, {1, 3}, {0, 2}, {2, 1}, 2),
      make2d(1, 2, 3, {5, 11}, {5, 3}, {3, 2}, {2, 3}),
      make2d(2, 4, 4, {9, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 4),  // depthwise
      make2d(2, 3, 6, {6, 6}, {3, 3}, {1, 1}, {2, 2}, {2, 2}, 3),  // depthwise x2
      make2d(2, 2, 3, {4, 5}, {6, 7}, {1, 1}, {1, 1}),             // kernel = padded input
      make2d(1, 1, 1, {12, 13}, {4, 4}, {3, 3}, {3, 3}),           // single channel
      make2d(2, 2, 3, {1, 9}, {1, 3}, {1, 2}, {0, 1}),             // one row
      make2d(2, 2, 3, {7, 1}, {3, 1}, {1, 1}, {1, 0}),             // one column
      make2d(1, 2, 2, {11, 10}, {3, 3}, {2, 2}, {3, 3}, {3, 3}),   // dilation 3
      make2d(2, 3, 2, {16, 15}, {5, 4}, {1, 1}, {2, 2}),           // even x odd
      make2d(3, 2, 2, {3, 3}, {1, 1}, {2, 2}),                     // strided 1x1
      make2d(2, 2, 2, {5, 5}, {2, 2}, {1, 1}, {2, 2}),             // padding = K
      make2d(2, 6, 4, {6, 7}, {3, 3}, {2, 3}, {1, 2}, {2, 1}, 2),  // groups 2, mixed
      make2d(1, 2, 2, {13, 6}, {13, 2}, {1, 1}, {0, 0}, {1, 5}),   // KH = H, dilated KW = W
  };
}

class Uncompressed : public ::testing::TestWithParam<layer_case> {};

template <class T>
void run_against_direct(const conv_params& p, transform_method m, uint64_t seed) {
  problem<T> pr(p, seed);
  const auto ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
  auto pl = blfft::get_plan<T>(p, compression::none(), options(m));
  ASSERT_TRUE(pl);
  ASSERT_EQ(pl->geometry().kept, pl->geometry().total) << "r = 0 must keep every bin";
  check_all_entry_points(*pl, pr, ref, tol<T>::direct);
}

TEST_P(Uncompressed, AllEntryPointsMatchDirectConvolution) {
  const auto& prm = GetParam();
  with_dtype(prm.t, [&](auto t) { run_against_direct<decltype(t)>(prm.p, prm.m, 7); });
}

// The same problem with an explicitly built plan (not from the cache) and a moved plan.
template <class T>
void run_owned_plan(const conv_params& p, transform_method m) {
  problem<T> pr(p, 11);
  const auto ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
  blfft::plan<T> a(p, compression::rate(0.0), options(m));
  check_all_entry_points(a, pr, ref, tol<T>::direct);
  blfft::plan<T> b(blfft::make_geometry(p), options(m));
  blfft::plan<T> c(std::move(b));
  check_all_entry_points(c, pr, ref, tol<T>::direct);
}

TEST_P(Uncompressed, OwnedAndMovedPlans) {
  const auto& prm = GetParam();
  with_dtype(prm.t, [&](auto t) { run_owned_plan<decltype(t)>(prm.p, prm.m); });
}

INSTANTIATE_TEST_SUITE_P(Grid, Uncompressed, ::testing::ValuesIn(layer_cases(geometries(), {0.0})),
                         case_name);

// Realistic channel counts and map sizes: the paths (blocked GEMMs, threaded loops) that tiny
// problems may not reach.
std::vector<conv_params> larger_geometries() {
  return {make2d(4, 16, 32, {16, 16}, {3, 3}, {1, 1}, {1, 1}),
          make2d(3, 32, 32, {15, 12}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 32),
          make2d(2, 24, 16, {20, 18}, {5, 5}, {1, 2}, {2, 2}, {1, 1}, 4),
          make1d(4, 16, 16, 100, 5, 1, 2), make1d(3, 8, 24, 64, 7, 2, 3, 2, 8)};
}
INSTANTIATE_TEST_SUITE_P(Larger, Uncompressed,
                         ::testing::ValuesIn(layer_cases(larger_geometries(), {0.0})), case_name);

// A larger-than-default grid changes nothing at r = 0 (no wrap-around either way).
template <class T>
void run_large_grid() {
  for (auto p : {with_grid(make2d(2, 3, 4, {7, 9}, {3, 2}, {2, 1}, {1, 0}, {1, 2}), {16, 20}),
                 with_grid(make1d(2, 3, 4, 9, 4, 2, 1), {1, 32}),
                 with_grid(make2d(1, 2, 2, {5, 6}, {2, 3}), {9, 7})}) {
    SCOPED_TRACE(name_of(p));
    problem<T> pr(p, 3);
    const auto ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
    for (auto m : methods()) {
      SCOPED_TRACE(method_name(m));
      auto pl = blfft::get_plan<T>(p, compression::none(), options(m));
      EXPECT_EQ(pl->geometry().grid, p.grid);
      check_all_entry_points(*pl, pr, ref, tol<T>::direct);
    }
  }
}
TEST(UncompressedGrid, LargerGridF32) {
  run_large_grid<float>();
}
TEST(UncompressedGrid, LargerGridF64) {
  run_large_grid<double>();
}

// The default engine choice (automatic) on both sides of matmul_max_grid, and the threshold
// moved both ways.
template <class T>
void run_automatic() {
  for (auto p : {make2d(2, 3, 4, {8, 8}, {3, 3}, {1, 1}, {1, 1}),      // grid 10 x 10
                 make1d(2, 3, 4, 100, 5, 1, 2),                        // grid 1 x 105
                 make2d(1, 2, 2, {70, 9}, {3, 3}, {2, 1}, {1, 1})}) {  // grid 72 x 12
    problem<T> pr(p, 13);
    const auto ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
    for (int64_t max_grid : {64, 0, 11, 1000}) {
      SCOPED_TRACE(name_of(p) + " matmul_max_grid=" + std::to_string(max_grid));
      blfft::plan_options o;
      o.matmul_max_grid = max_grid;
      auto pl = blfft::get_plan<T>(p, compression::none(), o);
      check_all_entry_points(*pl, pr, ref, tol<T>::direct);
    }
    auto pl = blfft::get_plan<T>(p, compression::none());  // default options
    check_all_entry_points(*pl, pr, ref, tol<T>::direct);
  }
}
TEST(UncompressedGrid, AutomaticMethodF32) {
  run_automatic<float>();
}
TEST(UncompressedGrid, AutomaticMethodF64) {
  run_automatic<double>();
}

// Scale: results are linear in the data, so a large dynamic range must not hurt relative error
// (catches accidental absolute epsilons).
TEST(UncompressedScale, LargeAndSmallMagnitudes) {
  const auto p = make2d(2, 3, 2, {9, 8}, {3, 3}, {1, 2}, {1, 1});
  for (double scale : {1e-20, 1e20}) {
    problem<double> pr(p, 5);
    for (auto& v : pr.x) v *= scale;
    pr.xt = cast<double>(pr.x);
    const auto ref = direct_reference(p, pr.x, pr.w, vec(pr.b.size(), 0.0), pr.g);
    pr.b.assign(pr.b.size(), 0.0);
    pr.bt.assign(pr.bt.size(), 0.0);
    for (auto m : methods()) {
      auto pl = blfft::get_plan<double>(p, compression::none(), options(m));
      check_all_entry_points(*pl, pr, ref, tol<double>::direct);
    }
  }
}

}  // namespace
