#pragma once
/// @file harness.hpp
/// Runs every entry point of a blfft::plan on one problem and compares with reference results.

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
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

inline reference dense_results(const dense_reference& ref, const vec& x, const vec& w, const vec& b,
                               const vec& g) {
  return {ref.forward(x, w, b.data()), ref.forward(x, w, nullptr), ref.input_grad(g, w),
          ref.weight_grad(g, x), ref.bias_grad(g)};
}

/// Which gradients a backward call writes (a bit mask).
enum grad_bits : int { grad_x = 1, grad_w = 2, grad_b = 4, grad_all = 7 };

/// NaN-filled buffers for the gradients of one call, with views; `expect` checks the ones the
/// call wrote against `ref`.
template <class T>
struct gradients {
  std::vector<T> dx, dw, db;
  tensor_view<T> dxv, dwv;

  explicit gradients(const dims& d)
      : dx(nan_filled<T>(d.input_size())), dw(nan_filled<T>(d.weight_size())),
        db(nan_filled<T>(d.F)), dxv(out_view(dx, d.input_shape())),
        dwv(out_view(dw, d.weight_shape())) {}
  gradients(const gradients&) = delete;  // the views point into this object's buffers

  void expect(const std::string& call, int which, const reference& ref, double tolerance) const {
    // Braces: EXPECT_TRUE is an if-else, which a bare `if` around it would make ambiguous.
    if (which & grad_x) {
      EXPECT_TRUE(rel_close(call + ".grad_input", dx, ref.dx, tolerance));
    }
    if (which & grad_w) {
      EXPECT_TRUE(rel_close(call + ".grad_weight", dw, ref.dw, tolerance));
    }
    if (which & grad_b) {
      EXPECT_TRUE(rel_close(call + ".grad_bias", db, ref.db, tolerance));
    }
  }
};

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
  const auto forward = [&](const std::string& call, const vec& expected, auto&& run) {
    auto y = nan_filled<T>(d.output_size());
    run(out_view(y, d.output_shape()));
    EXPECT_TRUE(rel_close(call, y, expected, tolerance));
  };

  // forward, saving the spectra (map reuse), with bias; without bias and saving nothing
  std::vector<T> xs = nan_filled<T>(xs_n), ws = nan_filled<T>(ws_n);
  forward("forward(bias)", ref.y,
          [&](auto y) { pl.forward(pr.xv(), pr.wv(), pr.bt.data(), y, spec(xs), spec(ws)); });
  forward("forward(no bias)", ref.y_nobias,
          [&](auto y) { pl.forward(pr.xv(), pr.wv(), nullptr, y); });

  // backward with all three outputs from the saved spectra, then one output at a time (the
  // others null)
  {
    gradients<T> gr(d);
    pl.backward(pr.gv(), spec(xs), spec(ws), &gr.dxv, &gr.dwv, gr.db.data());
    gr.expect("backward", grad_all, ref, tolerance);
  }
  {
    gradients<T> gr(d);
    pl.backward(pr.gv(), nullptr, spec(ws), &gr.dxv, nullptr, nullptr);
    gr.expect("backward(grad_input only)", grad_x, ref, tolerance);
  }
  {
    gradients<T> gr(d);
    pl.backward(pr.gv(), spec(xs), nullptr, nullptr, &gr.dwv, nullptr);
    gr.expect("backward(grad_weight only)", grad_w, ref, tolerance);
  }
  {
    gradients<T> gr(d);
    pl.backward(pr.gv(), nullptr, nullptr, nullptr, nullptr, gr.db.data());
    gr.expect("backward(grad_bias only)", grad_b, ref, tolerance);
  }

  // separate entry points, spectra computed on their own
  std::vector<T> xs2 = nan_filled<T>(xs_n), ws2 = nan_filled<T>(ws_n);
  pl.input_spectrum(pr.xv(), spec(xs2));
  pl.weight_spectrum(pr.wv(), spec(ws2));
  forward("forward_spectra(bias)", ref.y,
          [&](auto y) { pl.forward_spectra(spec(xs2), spec(ws2), pr.bt.data(), y); });
  forward("forward_spectra(no bias)", ref.y_nobias,
          [&](auto y) { pl.forward_spectra(spec(xs2), spec(ws2), nullptr, y); });
  {
    gradients<T> gr(d);
    pl.input_grad(pr.gv(), spec(ws2), gr.dxv);
    pl.weight_grad(pr.gv(), spec(xs2), gr.dwv);
    pl.bias_grad(pr.gv(), gr.db.data());
    gr.expect("input_grad, weight_grad, bias_grad", grad_all, ref, tolerance);
  }

  // backward from the weight itself (no weight spectrum kept)
  {
    gradients<T> gr(d);
    pl.backward_with_weight(pr.gv(), spec(xs), pr.wv(), &gr.dxv, &gr.dwv, gr.db.data());
    gr.expect("backward_with_weight", grad_all, ref, tolerance);
  }

  // The same geometry with the weight side mixed from the taps, and through whole spectra
  // (plan_options::mixing; automatic picks taps only for large weight spectra, which the test
  // problems do not have).
  for (auto mixing : {blfft::weight_mixing::taps, blfft::weight_mixing::spectrum}) {
    SCOPED_TRACE(mixing == blfft::weight_mixing::taps ? "mixing=taps" : "mixing=spectrum");
    blfft::plan_options o;
    o.mixing = mixing;
    const blfft::plan<T> alt(geo, o);
    std::vector<T> xs5 = nan_filled<T>(xs_n);
    forward("forward(no w_spectrum)", ref.y,
            [&](auto y) { alt.forward(pr.xv(), pr.wv(), pr.bt.data(), y, spec(xs5)); });
    gradients<T> gr(d);
    alt.backward_with_weight(pr.gv(), spec(xs5), pr.wv(), &gr.dxv, &gr.dwv, nullptr);
    gr.expect("backward_with_weight", grad_x | grad_w, ref, tolerance);
    gradients<T> gr2(d);
    alt.weight_grad(pr.gv(), spec(xs), gr2.dwv);
    gr2.expect("weight_grad", grad_w, ref, tolerance);
  }

  // Passes fused per chunk of kept columns (plan_options::fusion = on; off by default): forward
  // saving both spectra (the caller's weight spectrum is an output there), backward from them
  // and from the weight itself. No effect on 1D layers and the fft engine.
  {
    SCOPED_TRACE("fusion=on");
    blfft::plan_options o;
    o.method = blfft::transform_method::matmul;
    o.fusion = blfft::pass_fusion::on;
    const blfft::plan<T> alt(geo, o);
    std::vector<T> xs6 = nan_filled<T>(xs_n), ws6 = nan_filled<T>(ws_n);
    forward("forward(saving spectra)", ref.y,
            [&](auto y) { alt.forward(pr.xv(), pr.wv(), pr.bt.data(), y, spec(xs6), spec(ws6)); });
    gradients<T> gr6(d);
    alt.backward(pr.gv(), spec(xs6), spec(ws6), &gr6.dxv, &gr6.dwv, gr6.db.data());
    gr6.expect("backward(forward's spectra)", grad_all, ref, tolerance);
    gradients<T> gr7(d);
    alt.backward_with_weight(pr.gv(), spec(xs6), pr.wv(), &gr7.dxv, &gr7.dwv, nullptr);
    gr7.expect("backward_with_weight", grad_x | grad_w, ref, tolerance);
  }

  // spectra from forward and from the separate calls are interchangeable
  gradients<T> gr(d);
  pl.input_grad(pr.gv(), spec(ws), gr.dxv);
  pl.weight_grad(pr.gv(), spec(xs), gr.dwv);
  gr.expect("input_grad, weight_grad (forward's spectra)", grad_x | grad_w, ref, tolerance);
}

/// Parameter for the dtype-parametrized tests.
enum class dtype { f32, f64 };
inline const char* dtype_name(dtype t) {
  return t == dtype::f32 ? "f32" : "f64";
}

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

/// f(float{}) or f(double{}): runs a test template for the case's dtype.
template <class F>
void with_dtype(dtype t, F&& f) {
  if (t == dtype::f32)
    f(float{});
  else
    f(double{});
}

/// The layers the rate-parametrized operator tests (adjoint, compressed) share, then `more`:
/// 1D padded; 2D 3x3 padded; 2D with unequal stride, padding, dilation per axis and 2 groups.
inline std::vector<conv_params> shared_layers_and(const std::vector<conv_params>& more) {
  std::vector<conv_params> v = {
      make1d(2, 3, 4, 16, 3, 1, 1),
      make2d(2, 3, 4, {8, 8}, {3, 3}, {1, 1}, {1, 1}),
      make2d(2, 4, 6, {10, 6}, {2, 3}, {1, 3}, {0, 2}, {2, 1}, 2),
  };
  v.insert(v.end(), more.begin(), more.end());
  return v;
}

/// One case of the parametrized tests: a layer, a compression rate, a dtype, an engine.
struct layer_case {
  conv_params p;
  double rate;
  dtype t;
  transform_method m;
};
/// Every combination of `layers` and `rates` with both dtypes and both engines.
inline std::vector<layer_case> layer_cases(const std::vector<conv_params>& layers,
                                           const std::vector<double>& rates) {
  std::vector<layer_case> out;
  for (const auto& p : layers)
    for (double r : rates)
      for (dtype t : {dtype::f32, dtype::f64})
        for (auto m : methods()) out.push_back({p, r, t, m});
  return out;
}
inline std::string case_name(const ::testing::TestParamInfo<layer_case>& info) {
  const layer_case& c = info.param;
  return name_of(c.p) + "_r" + std::to_string(std::lround(c.rate * 100)) + "_" + dtype_name(c.t) +
         "_" + method_name(c.m);
}
inline void PrintTo(const layer_case& c, std::ostream* os) {
  *os << name_of(c.p) << " rate " << c.rate << " " << dtype_name(c.t) << " " << method_name(c.m);
}

/// f() must throw blfft::error with `code` and a message containing `text`; `missing` is the
/// failure when it does not throw.
template <class F>
void expect_refused(F&& f, blfft::error_code code, const std::string& text,
                    const std::string& missing = "no error") {
  try {
    f();
  } catch (const blfft::error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    return;
  }
  ADD_FAILURE() << missing;
}

}  // namespace bt
