// 3D convolutions (conv_params::conv3d) on the CPU backend:
// - the geometry: shapes, grid, kept set (per-axis band limits with ndim = 3);
// - at r = 0 forward and all gradients against a direct double-precision 3D convolution (loops,
//   independent of the library), for every stride, padding, dilation and groups in the list,
//   float and double, both transform engines;
// - at r > 0 the adjoint identities of the two gradient passes, <conv(x, w), g> = <x, dx(g)> =
//   <w, dw(g)>, and the band limit itself (a pure tone above the band vanishes);
// - the refusals: explicit kept indices, energy selection.

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "blfft/blfft.hpp"
#include "oracles3d.hpp"

namespace {

using blfft::compression;
using blfft::conv_params;
using bt::case3;
using bt::cast;
using bt::conv3d_cases;
using bt::dims3_of;
using bt::dot;
using bt::in_view;
using bt::out_view;
using bt::params_of;
using bt::rel_l2;
using bt::widen;
using i64 = int64_t;
using vec = std::vector<double>;
using reference = bt::direct3;  ///< direct results in double (oracles3d.hpp)

vec random_vec(i64 n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  vec v(static_cast<size_t>(n));
  for (auto& e : v) e = u(gen);
  return v;
}

/// Forward (keeping the spectra) and backward of plan `pl`, all in T, widened. `keep_weight`:
/// the whole weight spectrum is made and kept; else forward and backward mix from the weight's
/// depth slices (backward_with_weight).
template <class T>
reference run(const blfft::plan<T>& pl, const vec& x, const vec& w, const vec& b, const vec& g,
              bool keep_weight = true) {
  const auto& geo = pl.geometry();
  auto xt = cast<T>(x), wt = cast<T>(w), bt = cast<T>(b), gt = cast<T>(g);
  std::vector<T> y(static_cast<size_t>(geo.output_size())), dx(x.size()), dw(w.size()),
      db(b.size()), xs(static_cast<size_t>(geo.x_spectrum_size())),
      ws(static_cast<size_t>(geo.w_spectrum_size()));
  const auto xv = in_view(xt, geo.input_shape()), wv = in_view(wt, geo.weight_shape()),
             gv = in_view(gt, geo.output_shape());
  const auto yv = out_view(y, geo.output_shape()), dxv = out_view(dx, geo.input_shape()),
             dwv = out_view(dw, geo.weight_shape());
  if (!keep_weight) {
    pl.forward(xv, wv, bt.data(), yv, {xs.data(), geo.x_spectrum_size()});
    pl.backward_with_weight(gv, {xs.data(), geo.x_spectrum_size()}, wv, &dxv, &dwv, db.data());
    return {widen(y), widen(dx), widen(dw), widen(db)};
  }
  pl.forward(xv, wv, bt.data(), yv, {xs.data(), geo.x_spectrum_size()},
             {ws.data(), geo.w_spectrum_size()});
  pl.backward(gv, {xs.data(), geo.x_spectrum_size()}, {ws.data(), geo.w_spectrum_size()}, &dxv,
              &dwv, db.data());
  return {widen(y), widen(dx), widen(dw), widen(db)};
}

template <class T>
void check_against_direct(blfft::transform_method m, double tol) {
  uint64_t seed = 1;
  for (const auto& c : conv3d_cases()) {
    const auto p = params_of(c);
    const auto d = dims3_of(params_of(c));
    blfft::plan_options o;
    o.method = m;
    blfft::plan<T> pl(p, compression::none(), o);
    const auto& geo = pl.geometry();
    ASSERT_EQ(geo.kept, geo.total);
    const vec x = random_vec(geo.input_size(), seed++), w = random_vec(geo.weight_size(), seed++);
    const vec b = random_vec(c.F, seed++), g = random_vec(geo.output_size(), seed++);
    const auto ref = bt::direct3d(d, x, w, b, g);
    for (bool keep : {true, false}) {
      const auto got = run<T>(pl, x, w, b, g, keep);
      EXPECT_LT(rel_l2(got.y, ref.y), tol) << geo.describe() << " keep " << keep;
      EXPECT_LT(rel_l2(got.dx, ref.dx), tol) << geo.describe() << " keep " << keep;
      EXPECT_LT(rel_l2(got.dw, ref.dw), tol) << geo.describe() << " keep " << keep;
      EXPECT_LT(rel_l2(got.db, ref.db), tol) << geo.describe() << " keep " << keep;
    }
  }
}

TEST(Conv3d, Geometry) {
  const auto p = conv_params::conv3d(2, 3, 4, {16, 20, 21}, {3, 3, 3}, {2, 1, 1}, {1, 1, 1});
  const auto g = blfft::make_geometry(p, compression::rate(0.5));
  EXPECT_EQ(g.input_shape(), (std::vector<i64>{2, 3, 16, 20, 21}));
  EXPECT_EQ(g.weight_shape(), (std::vector<i64>{4, 3, 3, 3, 3}));
  EXPECT_EQ(g.output_shape(), (std::vector<i64>{2, 4, 8, 20, 21}));
  EXPECT_EQ(g.depth_grid, 18);
  EXPECT_EQ(g.grid[0], 24);
  EXPECT_EQ(g.grid[1], 24);
  const auto limit = [](i64 L) {
    return std::max<i64>(1,
                         static_cast<i64>(std::floor((L / 2 + 1) * std::pow(0.5, 1.0 / 3) + 1e-9)));
  };
  EXPECT_EQ(g.depth_limit, limit(18));
  EXPECT_EQ(g.limits[0], limit(24));
  EXPECT_EQ(g.limits[1], limit(24));
  EXPECT_EQ(static_cast<i64>(g.kept_depth.size()), 2 * limit(18) - 1);
  EXPECT_EQ(g.kept,
            static_cast<i64>(g.kept_depth.size() * g.kept_rows.size() * g.kept_cols.size()));
  EXPECT_EQ(g.total, 18 * 24 * 13);
  EXPECT_EQ(g.x_spectrum_size(), 2 * g.kept * 2 * 3);
  // band3: explicit limits; 2D layers keep the trivial depth axis.
  const auto b = blfft::make_geometry(p, compression::band3(2, 3, 4));
  EXPECT_EQ(b.kept_depth, (std::vector<i64>{0, 1, 17}));
  EXPECT_EQ(b.kept, 3 * 5 * 4);
  const auto g2 = blfft::make_geometry(conv_params::conv2d(1, 1, 1, {5, 5}, {3, 3}));
  EXPECT_EQ(g2.kept_depth, (std::vector<i64>{0}));
  EXPECT_EQ(g2.depth_grid, 1);
}

TEST(Conv3d, Refusals) {
  const auto p = conv_params::conv3d(1, 1, 1, {4, 4, 4}, {3, 3, 3});
  EXPECT_THROW(blfft::make_geometry(p, compression::indices({}, {})), blfft::error);
  EXPECT_THROW(blfft::make_geometry(p, compression::band(2, 2)), blfft::error);  // no i_d
  auto bad = conv_params::conv2d(1, 1, 1, {4, 4}, {3, 3});
  bad.depth.input = 2;
  EXPECT_THROW(blfft::make_geometry(bad), blfft::error);
  std::vector<float> x(64);
  const auto xv = blfft::tensor_view<const float>::contiguous(x.data(), {1, 1, 4, 4, 4});
  EXPECT_THROW(blfft::select_by_energy<float>(p, xv, 0.9), blfft::error);
}

TEST(Conv3d, DoubleMatchesDirectMatmul) {
  check_against_direct<double>(blfft::transform_method::matmul, 1e-10);
}
TEST(Conv3d, DoubleMatchesDirectFft) {
  check_against_direct<double>(blfft::transform_method::fft, 1e-10);
}
TEST(Conv3d, FloatMatchesDirect) {
  check_against_direct<float>(blfft::transform_method::automatic, 1e-4);
}

// r > 0: the gradients are the exact adjoints of the band-limited forward.
TEST(Conv3d, CompressedGradientsAreAdjoints) {
  uint64_t seed = 100;
  for (const auto& c : conv3d_cases()) {
    for (double rate : {0.3, 0.75}) {
      const auto p = params_of(c);
      blfft::plan<double> pl(p, compression::rate(rate));
      const auto& geo = pl.geometry();
      const vec x = random_vec(geo.input_size(), seed++);
      const vec w = random_vec(geo.weight_size(), seed++);
      const vec b(static_cast<size_t>(c.F), 0.0);
      const vec g = random_vec(geo.output_size(), seed++);
      const auto got = run<double>(pl, x, w, b, g);
      const double lhs = dot(got.y, g);
      EXPECT_NEAR(dot(x, got.dx), lhs, 1e-10 * (std::abs(lhs) + 1)) << geo.describe();
      EXPECT_NEAR(dot(w, got.dw), lhs, 1e-10 * (std::abs(lhs) + 1)) << geo.describe();
      // Mixing from the weight's depth slices is the same operator.
      const auto taps = run<double>(pl, x, w, b, g, false);
      EXPECT_LT(rel_l2(taps.y, got.y), 1e-12) << geo.describe();
      EXPECT_LT(rel_l2(taps.dx, got.dx), 1e-12) << geo.describe();
      EXPECT_LT(rel_l2(taps.dw, got.dw), 1e-12) << geo.describe();
    }
  }
}

// A pure depth tone above the band is removed; one inside it passes unchanged (1x1x1 kernel).
TEST(Conv3d, BandLimitAlongDepth) {
  const i64 D = 16;
  const auto p = conv_params::conv3d(1, 1, 1, {D, 4, 4}, {1, 1, 1});
  blfft::plan<double> pl(p, compression::band3(3, 3, 3));  // |k_d| <= 2
  ASSERT_EQ(pl.geometry().depth_grid, D);
  for (i64 k : {1, 2, 5}) {
    vec x(static_cast<size_t>(D * 16));
    for (i64 d = 0; d < D; ++d)
      for (i64 j = 0; j < 16; ++j)
        x[static_cast<size_t>(d * 16 + j)] = std::cos(2 * M_PI * static_cast<double>(k * d) / D);
    const vec w{1.0}, b{0.0}, g(x.size(), 0.0);
    const auto got = run<double>(pl, x, w, b, g);
    const vec expect = k <= 2 ? x : vec(x.size(), 0.0);
    double err = 0;
    for (size_t i = 0; i < x.size(); ++i) err = std::max(err, std::abs(got.y[i] - expect[i]));
    EXPECT_LT(err, 1e-12) << "tone k_d = " << k;
  }
}

}  // namespace
