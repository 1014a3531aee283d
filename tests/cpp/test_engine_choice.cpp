// The automatic choice between the transform engines (src/engine_choice.hpp): which transforms
// of typical layers go to which engine. Results do not depend on the choice (every engine is
// tested against the oracles elsewhere); speed does, so a change of these rules should be a
// deliberate one.

#include <gtest/gtest.h>

#include "engine_choice.hpp"
#include "mix_taps.hpp"

using blfft::plan_options;
using blfft::transform_method;
using blfft::detail::transform_shape;
using blfft::detail::use_matmul;

namespace {
// 1D: one grid row. kept = bins kept along the axis.
transform_shape line(int64_t L, int64_t samples, int64_t kept) {
  return {1, L, 1, samples, 1, kept};
}
}  // namespace

TEST(EngineChoice, OneDimensionalLayers) {
  const plan_options o;
  // The FCN's 128->256 k5 layer on a 504-point grid at rate 0.5 (126 bins kept).
  EXPECT_TRUE(use_matmul(line(504, 5, 126), o)) << "weight: 5 taps";
  EXPECT_FALSE(use_matmul(line(504, 500, 126), o)) << "input: 500 samples";
  EXPECT_TRUE(use_matmul(line(504, 8, 253), o)) << "weight: 8 taps, nothing dropped";
  EXPECT_FALSE(use_matmul(line(4096, 4000, 2049), o)) << "long signal";
}

TEST(EngineChoice, SmallGridsAlwaysMatmul) {
  const plan_options o;
  EXPECT_TRUE(use_matmul({34, 34, 32, 32, 34, 18}, o)) << "ResNet 32x32 input";
  EXPECT_TRUE(use_matmul({34, 34, 3, 3, 34, 18}, o)) << "ResNet 3x3 weight";
}

TEST(EngineChoice, LargeImagesUseFftForData) {
  const plan_options o;
  // 224x224 input, 3x3 kernel: grid 226 x 226, nothing dropped.
  EXPECT_FALSE(use_matmul({226, 226, 224, 224, 226, 114}, o)) << "input";
  EXPECT_TRUE(use_matmul({226, 226, 3, 3, 226, 114}, o)) << "3x3 weight";
}

TEST(EngineChoice, ExplicitMethodsAndThreshold) {
  plan_options o;
  o.method = transform_method::fft;
  EXPECT_FALSE(use_matmul({8, 8, 6, 6, 8, 5}, o));
  o.method = transform_method::matmul;
  EXPECT_TRUE(use_matmul(line(4096, 4000, 2049), o));
  o = plan_options{};
  o.matmul_max_grid = 0;  // only the cost model decides: it agrees on the ResNet grid (about
                          // 5x the FFT flops, measured faster), not on a large image
  EXPECT_TRUE(use_matmul({34, 34, 32, 32, 34, 18}, o));
  EXPECT_FALSE(use_matmul({130, 130, 128, 128, 130, 66}, o));
  o.matmul_max_grid = 5000;  // every grid within the threshold, while its DFT tables are small
  EXPECT_TRUE(use_matmul(line(1024, 1000, 513), o));
  EXPECT_FALSE(use_matmul(line(4096, 4000, 2049), o));  // 16.4M-scalar tables
}

// Before: a 10-sample input with padding 2^22 took the matmul engine by its flops and made a
// 336 MB DFT table per transform (padding 2^26: 113 s and 22.7 GiB for one conv1d).
TEST(EngineChoice, LargeDftTablesGoToTheFft) {
  const plan_options o;
  const auto padded = line(8398080, 10, 4199041);
  EXPECT_LT(blfft::detail::matmul_flops(padded), blfft::detail::fft_flops(padded));
  EXPECT_GT(blfft::detail::matmul_table_scalars(padded), blfft::detail::matmul_max_table_scalars);
  EXPECT_FALSE(use_matmul(padded, o));
  EXPECT_TRUE(use_matmul(line(504, 5, 126), o));  // a 1D weight transform: tiny tables
}

TEST(EngineChoice, FlopModel) {
  // Matmul flops: 2 * Rh * Rw * 2 nc (+ the column pass on 2D grids).
  EXPECT_DOUBLE_EQ(blfft::detail::matmul_flops(line(504, 5, 126)), 2.0 * 5 * 2 * 126);
  EXPECT_DOUBLE_EQ(blfft::detail::matmul_flops({10, 10, 8, 8, 9, 5}),
                   2.0 * 8 * 8 * 10 + 2.0 * 10 * 8 * 10);
  EXPECT_DOUBLE_EQ(blfft::detail::fft_flops(line(8, 5, 3)), 2.5 * 8 * 3);
}

// Where the weight side of the mixing comes from (src/mix_taps.hpp).
TEST(WeightMixingChoice, AutomaticRule) {
  using blfft::compression;
  using blfft::conv_params;
  using blfft::make_geometry;
  using blfft::detail::use_taps;
  const plan_options o;
  const auto fcn =
      make_geometry(conv_params::conv1d(16, 256, 128, 500, 3, 1, 1), compression::rate(0.5));
  EXPECT_TRUE(use_taps(fcn, o, sizeof(float))) << "FCN k3: 33 MB spectrum, 3 taps";
  const auto fcn_b1 =
      make_geometry(conv_params::conv1d(1, 256, 128, 500, 3, 1, 1), compression::rate(0.5));
  EXPECT_FALSE(use_taps(fcn_b1, o, sizeof(float))) << "batch 1: the taps outweigh the products";
  const auto small =
      make_geometry(conv_params::conv1d(16, 8, 16, 64, 5, 1, 2), compression::rate(0.5));
  EXPECT_FALSE(use_taps(small, o, sizeof(float))) << "small spectrum: it stays in cache";
  const auto resnet = make_geometry(
      conv_params::conv2d(32, 64, 128, {32, 32}, {3, 3}, {2, 2}, {1, 1}), compression::rate(0.5));
  EXPECT_FALSE(use_taps(resnet, o, sizeof(float))) << "3x3: 9 taps";
  plan_options forced;
  forced.mixing = blfft::weight_mixing::taps;
  EXPECT_TRUE(use_taps(small, forced, sizeof(float)));
  forced.mixing = blfft::weight_mixing::spectrum;
  EXPECT_FALSE(use_taps(fcn, forced, sizeof(float)));
}
