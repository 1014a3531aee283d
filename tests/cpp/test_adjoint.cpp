// Adjointness (FINUFFT test/adjointness.cpp style). The forward map is linear in x (w fixed,
// no bias): A x = forward(x, w); its adjoint is the input gradient A^T y = input_grad(y, W).
// It is also linear in w (x fixed): B w = forward(x, w), B^T g = weight_grad(g, X). For every
// rate the kept set is symmetric, so the masked operator stays an exact adjoint pair:
//   <A x, y> = <x, A^T y>   and   <B w, g> = <w, B^T g>.
// Relative defect |lhs - rhs| / (|A x||y| + |x||A^T y|): double 1e-13, float 2e-5.

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
      make1d(2, 4, 6, 11, 4, 3, 2, 2, 2),
      make2d(2, 3, 4, {7, 9}, {3, 2}, {2, 3}, {1, 0}, {1, 2}),
      make2d(2, 3, 6, {9, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 3),
      make2d(1, 2, 2, {4, 5}, {6, 7}, {1, 1}, {1, 1}),
      with_grid(make2d(1, 2, 3, {6, 7}, {3, 3}, {2, 1}, {1, 1}), {10, 12}),
  });
}

class Adjoint : public ::testing::TestWithParam<layer_case> {};

template <class T>
void run_adjoint(const conv_params& p, double rate, transform_method m) {
  problem<T> pr(p, 91);  // x, w (fixed operand), g plays y
  const dims& d = pr.d;
  auto pl = blfft::get_plan<T>(p, compression::rate(rate), options(m));
  std::vector<T> xs(pl->geometry().x_spectrum_size()), ws(pl->geometry().w_spectrum_size());

  // A x and B w are the same forward call.
  auto y = nan_filled<T>(d.output_size());
  pl->forward(pr.xv(), pr.wv(), nullptr, out_view(y, d.output_shape()), spec(xs), spec(ws));

  auto aty = nan_filled<T>(d.input_size());
  pl->input_grad(pr.gv(), spec(ws), out_view(aty, d.input_shape()));
  auto btg = nan_filled<T>(d.weight_size());
  pl->weight_grad(pr.gv(), spec(xs), out_view(btg, d.weight_shape()));

  const vec Ax = widen(y), ATy = widen(aty), BTg = widen(btg);
  ASSERT_TRUE(std::isfinite(norm(Ax)) && std::isfinite(norm(ATy)) && std::isfinite(norm(BTg)));
  const double lhs = dot(Ax, pr.g);
  const double rhs_x = dot(pr.x, ATy);
  const double rhs_w = dot(pr.w, BTg);
  const double scale_x = norm(Ax) * norm(pr.g) + norm(pr.x) * norm(ATy);
  const double scale_w = norm(Ax) * norm(pr.g) + norm(pr.w) * norm(BTg);
  EXPECT_LE(std::abs(lhs - rhs_x), tol<T>::adjoint * scale_x)
      << "<Ax,y> = " << lhs << " vs <x,A^T y> = " << rhs_x;
  EXPECT_LE(std::abs(lhs - rhs_w), tol<T>::adjoint * scale_w)
      << "<Bw,g> = " << lhs << " vs <w,B^T g> = " << rhs_w;
  // Non-degenerate: the identity must not hold trivially.
  EXPECT_GT(std::abs(lhs), 1e-6 * scale_x);
}

TEST_P(Adjoint, InputAndWeightGradientsAreAdjoints) {
  const auto& prm = GetParam();
  with_dtype(prm.t, [&](auto t) { run_adjoint<decltype(t)>(prm.p, prm.rate, prm.m); });
}

INSTANTIATE_TEST_SUITE_P(Rates, Adjoint,
                         ::testing::ValuesIn(layer_cases(geometries(), {0.0, 0.5, 0.9})),
                         case_name);

}  // namespace
