#pragma once
/// @file cuda_harness.hpp
/// Runs every entry point of a CUDA plan, or of the same pipeline under the CPU emulator, on one
/// problem and checks the results against reference results and against the CPU backend.
///
/// `Plan` has blfft::cuda::plan's methods (spectra as spectrum_view, stream last, passed
/// explicitly): the plan itself, or plan_calls over the emulated pipeline. `Mem` says where the
/// plan's buffers live: host vectors for the emulator, device memory for a GPU. It provides
///   buffer upload(const std::vector<T>&), buffer nan_buffer(i64 n),
///   std::vector<T> download(const buffer&), void* stream(), and buffer::get().

#include <gtest/gtest.h>

#include <vector>

#include "harness.hpp"
#include "oracles.hpp"
#include "oracles3d.hpp"

namespace bt {

/// Checks one CUDA plan (or emulated pipeline) against `ref` and against the CPU plan `cpu` of
/// the same geometry: every entry point, spectra from forward and from the separate calls, and
/// spectra exchanged with the CPU backend (the compressed layout is one contract for both).
/// `Problem`: problem<T> (1D, 2D) or problem3<T> (3D).
template <class T, class Plan, class Mem, class Problem>
void check_cuda_entry_points(const Plan& pl, Mem& mem, const Problem& pr, const reference& ref,
                             double tolerance, const blfft::plan<T>& cpu) {
  const auto& d = pr.d;
  const auto& geo = cpu.geometry();
  const i64 xs_n = geo.x_spectrum_size(), ws_n = geo.w_spectrum_size();
  void* s = mem.stream();
  const auto x = mem.upload(pr.xt), w = mem.upload(pr.wt), b = mem.upload(pr.bt),
             g = mem.upload(pr.gt);
  using cview = tensor_view<const T>;
  using view = tensor_view<T>;
  const cview xv(x.get(), d.input_shape(), cview::contiguous(nullptr, d.input_shape()).strides);
  const cview wv(w.get(), d.weight_shape(), cview::contiguous(nullptr, d.weight_shape()).strides);
  const cview gv(g.get(), d.output_shape(), cview::contiguous(nullptr, d.output_shape()).strides);
  const auto out = [](auto& buf, std::vector<i64> shape) {
    return view::contiguous(buf.get(), std::move(shape));
  };
  // Spectra are passed with their lengths (spectrum_view), as to the CPU plan.
  const auto xsv = [&](const auto& buf) { return blfft::spectrum_view<T>(buf.get(), xs_n); };
  const auto wsv = [&](const auto& buf) { return blfft::spectrum_view<T>(buf.get(), ws_n); };

  // forward with bias, saving the spectra
  auto xs = mem.nan_buffer(xs_n), ws = mem.nan_buffer(ws_n);
  auto y = mem.nan_buffer(d.output_size());
  pl.forward(xv, wv, b.get(), out(y, d.output_shape()), xsv(xs), wsv(ws), s);
  EXPECT_TRUE(rel_close("forward(bias)", mem.download(y), ref.y, tolerance));

  // the saved spectra equal the CPU backend's
  std::vector<T> cpu_xs(static_cast<size_t>(xs_n)), cpu_ws(static_cast<size_t>(ws_n));
  cpu.input_spectrum(pr.xv(), {cpu_xs.data(), xs_n});
  cpu.weight_spectrum(pr.wv(), {cpu_ws.data(), ws_n});
  EXPECT_TRUE(rel_close("x_spectrum vs CPU", mem.download(xs), widen(cpu_xs), tolerance));
  EXPECT_TRUE(rel_close("w_spectrum vs CPU", mem.download(ws), widen(cpu_ws), tolerance));

  // forward without bias and without saving spectra
  auto y0 = mem.nan_buffer(d.output_size());
  pl.forward(xv, wv, nullptr, out(y0, d.output_shape()), nullptr, nullptr, s);
  EXPECT_TRUE(rel_close("forward(no bias)", mem.download(y0), ref.y_nobias, tolerance));

  // backward, all outputs
  auto dx = mem.nan_buffer(d.input_size()), dw = mem.nan_buffer(d.weight_size()),
       db = mem.nan_buffer(d.F);
  {
    const auto dxv = out(dx, d.input_shape());
    const auto dwv = out(dw, d.weight_shape());
    pl.backward(gv, xsv(xs), wsv(ws), &dxv, &dwv, db.get(), s);
  }
  EXPECT_TRUE(rel_close("backward.grad_input", mem.download(dx), ref.dx, tolerance));
  EXPECT_TRUE(rel_close("backward.grad_weight", mem.download(dw), ref.dw, tolerance));
  EXPECT_TRUE(rel_close("backward.grad_bias", mem.download(db), ref.db, tolerance));

  // backward, one output at a time
  {
    auto dx1 = mem.nan_buffer(d.input_size());
    const auto dxv = out(dx1, d.input_shape());
    pl.backward(gv, nullptr, wsv(ws), &dxv, nullptr, nullptr, s);
    EXPECT_TRUE(rel_close("backward(grad_input only)", mem.download(dx1), ref.dx, tolerance));
  }
  {
    auto dw1 = mem.nan_buffer(d.weight_size());
    const auto dwv = out(dw1, d.weight_shape());
    pl.backward(gv, xsv(xs), nullptr, nullptr, &dwv, nullptr, s);
    EXPECT_TRUE(rel_close("backward(grad_weight only)", mem.download(dw1), ref.dw, tolerance));
  }
  {  // from the weight itself, its spectrum recomputed (as the CPU plan's backward_with_weight)
    auto dx1 = mem.nan_buffer(d.input_size());
    const auto dxv = out(dx1, d.input_shape());
    pl.backward_with_weight(gv, nullptr, wv, &dxv, nullptr, nullptr, s);
    EXPECT_TRUE(rel_close("backward_with_weight", mem.download(dx1), ref.dx, tolerance));
  }

  // separate entry points
  auto xs2 = mem.nan_buffer(xs_n), ws2 = mem.nan_buffer(ws_n);
  pl.input_spectrum(xv, xsv(xs2), s);
  pl.weight_spectrum(wv, wsv(ws2), s);
  auto y2 = mem.nan_buffer(d.output_size());
  pl.forward_spectra(xsv(xs2), wsv(ws2), b.get(), out(y2, d.output_shape()), s);
  EXPECT_TRUE(rel_close("forward_spectra(bias)", mem.download(y2), ref.y, tolerance));
  auto dx2 = mem.nan_buffer(d.input_size());
  pl.input_grad(gv, wsv(ws2), out(dx2, d.input_shape()), s);
  EXPECT_TRUE(rel_close("input_grad", mem.download(dx2), ref.dx, tolerance));
  auto dw2 = mem.nan_buffer(d.weight_size());
  pl.weight_grad(gv, xsv(xs2), out(dw2, d.weight_shape()), s);
  EXPECT_TRUE(rel_close("weight_grad", mem.download(dw2), ref.dw, tolerance));
  auto db2 = mem.nan_buffer(d.F);
  pl.bias_grad(gv, db2.get(), s);
  EXPECT_TRUE(rel_close("bias_grad", mem.download(db2), ref.db, tolerance));

  // spectra made by the CPU backend work here (one layout contract)
  const auto cxs = mem.upload(cpu_xs), cws = mem.upload(cpu_ws);
  auto y3 = mem.nan_buffer(d.output_size());
  pl.forward_spectra(xsv(cxs), wsv(cws), b.get(), out(y3, d.output_shape()), s);
  EXPECT_TRUE(rel_close("forward_spectra(CPU spectra)", mem.download(y3), ref.y, tolerance));
  auto dx3 = mem.nan_buffer(d.input_size()), dw3 = mem.nan_buffer(d.weight_size());
  {
    const auto dxv = out(dx3, d.input_shape());
    const auto dwv = out(dw3, d.weight_shape());
    pl.backward(gv, xsv(cxs), wsv(cws), &dxv, &dwv, nullptr, s);
  }
  EXPECT_TRUE(rel_close("backward(CPU spectra).grad_input", mem.download(dx3), ref.dx, tolerance));
  EXPECT_TRUE(rel_close("backward(CPU spectra).grad_weight", mem.download(dw3), ref.dw, tolerance));
}

/// check_cuda_entry_points for `pl`, the plan of `geo` (made from p), on p's problem of seed 7
/// against its oracle: the direct convolution when every bin is kept, else the dense band-limited
/// reference of the kept rows and columns.
/// 3D layers: the direct 3D convolution (oracles3d.hpp) when every bin is kept, else the CPU
/// backend's results in double (a 3D dense reference is Python's: tests/py/reference.py).
template <class T, class Plan, class Mem>
void check_cuda_problem3(const Plan& pl, Mem& mem, const conv_params& p,
                         const blfft::geometry& geo) {
  problem3<T> pr(p, 7);
  reference ref;
  double tolerance;
  if (geo.kept == geo.total) {
    const direct3 with = direct3d(pr.d, pr.x, pr.w, pr.b, pr.g);
    const direct3 without = direct3d(pr.d, pr.x, pr.w, vec(pr.b.size(), 0.0), pr.g);
    ref = {with.y, without.y, with.dx, with.dw, with.db};
    tolerance = tol<T>::direct;
  } else {
    const blfft::plan<double> cpu(geo);
    vec xs(static_cast<size_t>(geo.x_spectrum_size())),
        ws(static_cast<size_t>(geo.w_spectrum_size()));
    ref.y.resize(static_cast<size_t>(geo.output_size()));
    ref.y_nobias = ref.y;
    ref.dx.resize(pr.x.size());
    ref.dw.resize(pr.w.size());
    ref.db.resize(pr.b.size());
    const auto in = [](const vec& v, const std::vector<i64>& shape) {
      return tensor_view<const double>::contiguous(v.data(), shape);
    };
    const auto xv = in(pr.x, geo.input_shape()), wv = in(pr.w, geo.weight_shape());
    const spectrum_view<double> xsv(xs.data(), geo.x_spectrum_size()),
        wsv(ws.data(), geo.w_spectrum_size());
    cpu.forward(xv, wv, pr.b.data(), out_view(ref.y, geo.output_shape()), xsv, wsv);
    cpu.forward(xv, wv, nullptr, out_view(ref.y_nobias, geo.output_shape()));
    const auto dxv = out_view(ref.dx, geo.input_shape()),
               dwv = out_view(ref.dw, geo.weight_shape());
    cpu.backward(in(pr.g, geo.output_shape()), {xs.data(), geo.x_spectrum_size()},
                 {ws.data(), geo.w_spectrum_size()}, &dxv, &dwv, ref.db.data());
    tolerance = tol<T>::dense;
  }
  const blfft::plan<T> cpu(geo);
  check_cuda_entry_points(pl, mem, pr, ref, tolerance, cpu);
}

template <class T, class Plan, class Mem>
void check_cuda_problem(const Plan& pl, Mem& mem, const conv_params& p,
                        const blfft::geometry& geo) {
  if (p.ndim == 3) return check_cuda_problem3<T>(pl, mem, p, geo);
  problem<T> pr(p, 7);
  reference ref;
  double tolerance;
  if (geo.kept == geo.total) {
    ref = direct_reference(p, pr.x, pr.w, pr.b, pr.g);
    tolerance = tol<T>::direct;
  } else {
    ref = dense_results(dense_reference(p, geo.grid, geo.kept_rows, geo.kept_cols), pr.x, pr.w,
                        pr.b, pr.g);
    tolerance = tol<T>::dense;
  }
  const blfft::plan<T> cpu(geo);
  check_cuda_entry_points(pl, mem, pr, ref, tolerance, cpu);
}

/// The strided-views check of both CUDA tests: a forward call with x channels-last and y every
/// other element of a buffer twice its size. The results must equal the contiguous ones and the
/// gaps of the output (-777) stay untouched.
template <class T>
struct strided_forward_case {
  const conv_params p = make2d(2, 3, 4, {6, 5}, {3, 3}, {1, 1}, {1, 1});
  const blfft::geometry geo = blfft::make_geometry(p, compression::rate(0.5));
  const problem<T> pr{p, 3};
  const dims& d = pr.d;

  /// x channels-last, with x_strides() (H W C, 1, W C, C).
  std::vector<T> x_channels_last() const {
    std::vector<T> xcl(pr.xt.size());
    for (i64 n = 0; n < d.N; ++n)
      for (i64 c = 0; c < d.C; ++c)
        for (i64 h = 0; h < d.H; ++h)
          for (i64 w = 0; w < d.W; ++w)
            xcl[((n * d.H + h) * d.W + w) * d.C + c] = pr.xt[d.xi(n, c, h, w)];
    return xcl;
  }
  std::vector<i64> x_strides() const { return {d.H * d.W * d.C, 1, d.W * d.C, d.C}; }
  /// The output buffer, all gaps, and the strides of y in it.
  std::vector<T> y_buffer() const {
    return std::vector<T>(static_cast<size_t>(2 * d.output_size()), T(-777));
  }
  std::vector<i64> y_strides() const {
    std::vector<i64> ystr = tensor_view<T>::contiguous(nullptr, d.output_shape()).strides;
    for (auto& s : ystr) s *= 2;
    return ystr;
  }
  /// Checks the output buffer after the forward call with bias.
  void check(const std::vector<T>& ybuf) const {
    const auto ref = dense_results(dense_reference(p, geo.grid, geo.kept_rows, geo.kept_cols), pr.x,
                                   pr.w, pr.b, pr.g);
    std::vector<T> y(static_cast<size_t>(d.output_size()));
    for (i64 i = 0; i < d.output_size(); ++i) {
      y[i] = ybuf[2 * i];
      EXPECT_EQ(ybuf[2 * i + 1], T(-777)) << "gap " << i << " written";
    }
    EXPECT_TRUE(rel_close("forward(strided)", y, ref.y, tol<T>::dense));
  }
};

/// The 3D layers of the CUDA tests (emulated, and on a GPU): oracles3d.hpp's list.
inline std::vector<conv_params> cuda_problems_3d() {
  std::vector<conv_params> v;
  for (const auto& c : conv3d_cases()) v.push_back(params_of(c));
  return v;
}

/// The problems every CUDA correctness test runs (emulated, and on a GPU): 1D and 2D; stride,
/// padding, dilation, groups (depthwise too); odd and even grids; non-default grids.
inline std::vector<conv_params> cuda_problems() {
  return {
      make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1}),
      make2d(2, 4, 6, {11, 10}, {3, 2}, {2, 3}, {1, 0}, {2, 1}, 2),
      make2d(1, 6, 6, {8, 9}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 6),
      make2d(3, 2, 3, {5, 12}, {5, 4}, {1, 2}, {2, 1}),
      make2d(2, 3, 2, {6, 6}, {2, 2}, {2, 2}, {0, 0}, {2, 2}),
      with_grid(make2d(2, 2, 3, {7, 6}, {3, 3}, {1, 1}, {1, 1}), {12, 11}),
      make2d(2, 3, 5, {1, 9}, {1, 3}, {1, 2}, {0, 1}),
      make1d(2, 3, 4, 17, 3, 1, 1),
      make1d(3, 4, 2, 30, 5, 3, 2, 2, 2),
      make1d(1, 2, 2, 8, 8),
  };
}

}  // namespace bt
