#pragma once
/// @file harness.hpp
/// Runs every entry point of a blfft::plan on one problem and compares with reference results.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "oracles.hpp"

namespace bt {

/// Reference results for one problem (from the direct oracle or the dense reference).
struct reference {
  vec y, y_nobias, dx, dw, db;
};

inline reference direct_reference(const conv_params& p, const vec& x, const vec& w, const vec& b,
                                  const vec& g) {
  return {direct_forward(p, x, w, b.data()), direct_forward(p, x, w, nullptr),
          direct_input_grad(p, g, w), direct_weight_grad(p, g, x), direct_bias_grad(p, g)};
}

inline reference dense_results(const dense_reference& ref, const vec& x, const vec& w,
                               const vec& b, const vec& g) {
  return {ref.forward(x, w, b.data()), ref.forward(x, w, nullptr), ref.input_grad(g, w),
          ref.weight_grad(g, x), ref.bias_grad(g)};
}

/// Runs forward (with and without bias; saving spectra), backward with all / each single
/// output, and the separate entry points (input_spectrum, weight_spectrum, forward_spectra,
/// input_grad, weight_grad, bias_grad), and checks every result against `ref` with `tolerance`.
/// Outputs start as NaN so that an element the library forgets to write fails the NaN check.
template <class T>
void check_all_entry_points(const blfft::plan<T>& pl, const problem<T>& pr, const reference& ref,
                            double tolerance) {
  const dims& d = pr.d;
  const auto& geo = pl.geometry();
  const i64 xs_n = geo.x_spectrum_size(), ws_n = geo.w_spectrum_size();
  ASSERT_GT(xs_n, 0);
  ASSERT_GT(ws_n, 0);

  // forward, saving the spectra (map reuse), with bias
  std::vector<T> xs = nan_filled<T>(xs_n), ws = nan_filled<T>(ws_n);
  auto y = nan_filled<T>(d.output_size());
  pl.forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, d.output_shape()), xs.data(), ws.data());
  EXPECT_TRUE(rel_close("forward(bias)", y, ref.y, tolerance));

  // forward without bias and without saving spectra
  auto y0 = nan_filled<T>(d.output_size());
  pl.forward(pr.xv(), pr.wv(), nullptr, out_view(y0, d.output_shape()));
  EXPECT_TRUE(rel_close("forward(no bias)", y0, ref.y_nobias, tolerance));

  // backward with all three outputs from the saved spectra
  auto dx = nan_filled<T>(d.input_size());
  auto dw = nan_filled<T>(d.weight_size());
  auto db = nan_filled<T>(d.F);
  {
    auto dxv = out_view(dx, d.input_shape());
    auto dwv = out_view(dw, d.weight_shape());
    pl.backward(pr.gv(), xs.data(), ws.data(), &dxv, &dwv, db.data());
  }
  EXPECT_TRUE(rel_close("backward.grad_input", dx, ref.dx, tolerance));
  EXPECT_TRUE(rel_close("backward.grad_weight", dw, ref.dw, tolerance));
  EXPECT_TRUE(rel_close("backward.grad_bias", db, ref.db, tolerance));

  // backward with one output at a time (the others null)
  {
    auto dx1 = nan_filled<T>(d.input_size());
    auto dxv = out_view(dx1, d.input_shape());
    pl.backward(pr.gv(), nullptr, ws.data(), &dxv, nullptr, nullptr);
    EXPECT_TRUE(rel_close("backward(grad_input only)", dx1, ref.dx, tolerance));
  }
  {
    auto dw1 = nan_filled<T>(d.weight_size());
    auto dwv = out_view(dw1, d.weight_shape());
    pl.backward(pr.gv(), xs.data(), nullptr, nullptr, &dwv, nullptr);
    EXPECT_TRUE(rel_close("backward(grad_weight only)", dw1, ref.dw, tolerance));
  }
  {
    auto db1 = nan_filled<T>(d.F);
    pl.backward(pr.gv(), nullptr, nullptr, nullptr, nullptr, db1.data());
    EXPECT_TRUE(rel_close("backward(grad_bias only)", db1, ref.db, tolerance));
  }

  // separate entry points, spectra computed on their own
  std::vector<T> xs2 = nan_filled<T>(xs_n), ws2 = nan_filled<T>(ws_n);
  pl.input_spectrum(pr.xv(), xs2.data());
  pl.weight_spectrum(pr.wv(), ws2.data());
  auto y2 = nan_filled<T>(d.output_size());
  pl.forward_spectra(xs2.data(), ws2.data(), pr.bt.data(), out_view(y2, d.output_shape()));
  EXPECT_TRUE(rel_close("forward_spectra(bias)", y2, ref.y, tolerance));
  auto y3 = nan_filled<T>(d.output_size());
  pl.forward_spectra(xs2.data(), ws2.data(), nullptr, out_view(y3, d.output_shape()));
  EXPECT_TRUE(rel_close("forward_spectra(no bias)", y3, ref.y_nobias, tolerance));

  auto dx2 = nan_filled<T>(d.input_size());
  pl.input_grad(pr.gv(), ws2.data(), out_view(dx2, d.input_shape()));
  EXPECT_TRUE(rel_close("input_grad", dx2, ref.dx, tolerance));
  auto dw2 = nan_filled<T>(d.weight_size());
  pl.weight_grad(pr.gv(), xs2.data(), out_view(dw2, d.weight_shape()));
  EXPECT_TRUE(rel_close("weight_grad", dw2, ref.dw, tolerance));
  auto db2 = nan_filled<T>(d.F);
  pl.bias_grad(pr.gv(), db2.data());
  EXPECT_TRUE(rel_close("bias_grad", db2, ref.db, tolerance));

  // backward from the weight itself (no weight spectrum kept)
  {
    auto dx4 = nan_filled<T>(d.input_size());
    auto dw4 = nan_filled<T>(d.weight_size());
    auto db4 = nan_filled<T>(d.F);
    auto dxv = out_view(dx4, d.input_shape());
    auto dwv = out_view(dw4, d.weight_shape());
    pl.backward_with_weight(pr.gv(), xs.data(), pr.wv(), &dxv, &dwv, db4.data());
    EXPECT_TRUE(rel_close("backward_with_weight.grad_input", dx4, ref.dx, tolerance));
    EXPECT_TRUE(rel_close("backward_with_weight.grad_weight", dw4, ref.dw, tolerance));
    EXPECT_TRUE(rel_close("backward_with_weight.grad_bias", db4, ref.db, tolerance));
  }

  // The same geometry with the weight side mixed from the taps, and through whole spectra
  // (plan_options::mixing; automatic picks taps only for large weight spectra, which the test
  // problems do not have).
  for (auto mixing : {blfft::weight_mixing::taps, blfft::weight_mixing::spectrum}) {
    SCOPED_TRACE(mixing == blfft::weight_mixing::taps ? "mixing=taps" : "mixing=spectrum");
    blfft::plan_options o;
    o.mixing = mixing;
    const blfft::plan<T> alt(geo, o);
    auto y5 = nan_filled<T>(d.output_size());
    std::vector<T> xs5 = nan_filled<T>(xs_n);
    alt.forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y5, d.output_shape()), xs5.data());
    EXPECT_TRUE(rel_close("forward(no w_spectrum)", y5, ref.y, tolerance));
    auto dx5 = nan_filled<T>(d.input_size());
    auto dw5 = nan_filled<T>(d.weight_size());
    auto dxv = out_view(dx5, d.input_shape());
    auto dwv = out_view(dw5, d.weight_shape());
    alt.backward_with_weight(pr.gv(), xs5.data(), pr.wv(), &dxv, &dwv, nullptr);
    EXPECT_TRUE(rel_close("backward_with_weight.grad_input", dx5, ref.dx, tolerance));
    EXPECT_TRUE(rel_close("backward_with_weight.grad_weight", dw5, ref.dw, tolerance));
    auto dw6 = nan_filled<T>(d.weight_size());
    alt.weight_grad(pr.gv(), xs.data(), out_view(dw6, d.weight_shape()));
    EXPECT_TRUE(rel_close("weight_grad", dw6, ref.dw, tolerance));
  }

  // spectra from forward and from the separate calls are interchangeable
  auto dx3 = nan_filled<T>(d.input_size());
  pl.input_grad(pr.gv(), ws.data(), out_view(dx3, d.input_shape()));
  EXPECT_TRUE(rel_close("input_grad(forward's w_spectrum)", dx3, ref.dx, tolerance));
  auto dw3 = nan_filled<T>(d.weight_size());
  pl.weight_grad(pr.gv(), xs.data(), out_view(dw3, d.weight_shape()));
  EXPECT_TRUE(rel_close("weight_grad(forward's x_spectrum)", dw3, ref.dw, tolerance));
}

/// Parameter for the dtype-parametrized tests.
enum class dtype { f32, f64 };
inline const char* dtype_name(dtype t) { return t == dtype::f32 ? "f32" : "f64"; }

/// The transform engines: every correctness test runs on both (automatic picks matmul for
/// grids <= 64, so without this the FFTW path would hardly be tested).
using blfft::transform_method;
inline const std::vector<transform_method>& methods() {
  static const std::vector<transform_method> m{transform_method::fft, transform_method::matmul};
  return m;
}
inline const char* method_name(transform_method m) {
  switch (m) {
    case transform_method::fft: return "fft";
    case transform_method::matmul: return "matmul";
    default: return "auto";
  }
}
inline blfft::plan_options options(transform_method m) {
  blfft::plan_options o;
  o.method = m;
  return o;
}

}  // namespace bt
