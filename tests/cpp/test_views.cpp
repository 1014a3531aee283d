// Strided views: inputs are never modified; non-contiguous inputs (transposed, channels-last,
// a channel slice of a bigger tensor, a stride-0 broadcast batch, every other element) and
// non-contiguous outputs give the results of contiguous ones; outputs write exactly their
// elements and nothing in the gaps.

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "harness.hpp"
#include "oracles.hpp"

namespace {

using namespace bt;

/// A copy of a contiguous tensor in another memory layout.
template <class T>
struct strided {
  std::vector<T> buf;
  std::vector<i64> shape, strides;
  i64 offset = 0;

  tensor_view<T> view() { return tensor_view<T>(buf.data() + offset, shape, strides); }
  tensor_view<const T> cview() const {
    return tensor_view<const T>(buf.data() + offset, shape, strides);
  }
  i64 count() const {
    i64 n = 1;
    for (i64 s : shape) n *= s;
    return n;
  }
  /// Memory position of the element with C-order flat index i.
  i64 pos(i64 i) const {
    i64 p = offset;
    for (size_t k = shape.size(); k-- > 0;) {
      p += (i % shape[k]) * strides[k];
      i /= shape[k];
    }
    return p;
  }
  std::vector<T> gather() const {
    std::vector<T> out(static_cast<size_t>(count()));
    for (i64 i = 0; i < count(); ++i) out[i] = buf[pos(i)];
    return out;
  }
  /// Buffer positions that no element maps to all still hold `fill`.
  bool gaps_hold(T fill) const {
    std::vector<char> used(buf.size(), 0);
    for (i64 i = 0; i < count(); ++i) used[pos(i)] = 1;
    for (size_t k = 0; k < buf.size(); ++k)
      if (!used[k] && std::memcmp(&buf[k], &fill, sizeof(T)) != 0) return false;
    return true;
  }
};

/// Lay `src` (C-order, `shape`) out with dims ordered `order` (outermost first), `extra`
/// unused elements after each dim's extent, `step` between consecutive innermost elements and
/// `offset` elements before the first; gaps hold `fill`.
template <class T>
strided<T> layout(const std::vector<T>& src, std::vector<i64> shape, std::vector<int> order,
                  std::vector<i64> extra = {}, i64 step = 1, i64 offset = 0, T fill = T(-777)) {
  strided<T> s;
  s.shape = shape;
  s.strides.assign(shape.size(), 0);
  s.offset = offset;
  if (extra.empty()) extra.assign(shape.size(), 0);
  i64 run = step;
  for (size_t k = order.size(); k-- > 0;) {
    s.strides[order[k]] = run;
    run *= shape[order[k]] + extra[order[k]];
  }
  s.buf.assign(static_cast<size_t>(run + offset + step), fill);
  if (!src.empty())
    for (i64 i = 0; i < s.count(); ++i) s.buf[s.pos(i)] = src[i];
  return s;
}

std::vector<int> iota_order(size_t n) {
  std::vector<int> o(n);
  for (size_t i = 0; i < n; ++i) o[i] = static_cast<int>(i);
  return o;
}
/// Channels last: N, spatial..., C.
std::vector<int> channels_last(size_t rank) {
  std::vector<int> o{0};
  for (size_t k = 2; k < rank; ++k) o.push_back(static_cast<int>(k));
  o.push_back(1);
  return o;
}
/// Spatial axes reversed (the transpose of an image) for rank 4; (N, L, C) for rank 3.
std::vector<int> transposed(size_t rank) {
  return rank == 4 ? std::vector<int>{0, 1, 3, 2} : std::vector<int>{0, 2, 1};
}

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// ---------------------------------------------------------------------------------------------

template <class T>
void check_inputs_not_modified(const conv_params& p, double rate, transform_method m) {
  SCOPED_TRACE(name_of(p) + " r=" + std::to_string(rate) + " " + method_name(m));
  problem<T> pr(p, 201);
  auto pl = blfft::get_plan<T>(p, compression::rate(rate), options(m));
  const auto& geo = pl->geometry();
  const dims& d = pr.d;
  const auto x0 = pr.xt, w0 = pr.wt, b0 = pr.bt, g0 = pr.gt;
  std::vector<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
  std::vector<T> y(d.output_size()), dx(d.input_size()), dw(d.weight_size()), db(d.F);

  pl->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, d.output_shape()), spec(xs), spec(ws));
  EXPECT_TRUE(same_bytes(pr.xt, x0) && same_bytes(pr.wt, w0) && same_bytes(pr.bt, b0))
      << "forward modified an input";
  const auto xs0 = xs, ws0 = ws;

  auto dxv = out_view(dx, d.input_shape());
  auto dwv = out_view(dw, d.weight_shape());
  pl->backward(pr.gv(), spec(xs), spec(ws), &dxv, &dwv, db.data());
  EXPECT_TRUE(same_bytes(pr.gt, g0)) << "backward modified grad_out";
  EXPECT_TRUE(same_bytes(xs, xs0) && same_bytes(ws, ws0)) << "backward modified the spectra";

  pl->input_grad(pr.gv(), spec(ws), dxv);
  pl->weight_grad(pr.gv(), spec(xs), dwv);
  pl->bias_grad(pr.gv(), db.data());
  pl->forward_spectra(spec(xs), spec(ws), pr.bt.data(), out_view(y, d.output_shape()));
  EXPECT_TRUE(same_bytes(pr.gt, g0)) << "a gradient call modified grad_out";
  EXPECT_TRUE(same_bytes(xs, xs0) && same_bytes(ws, ws0)) << "a call modified the spectra";
  EXPECT_TRUE(same_bytes(pr.bt, b0)) << "forward_spectra modified the bias";

  std::vector<T> xs2(xs.size()), ws2(ws.size());
  pl->input_spectrum(pr.xv(), spec(xs2));
  pl->weight_spectrum(pr.wv(), spec(ws2));
  (void)blfft::energy_map<T>(p, pr.xv());
  EXPECT_TRUE(same_bytes(pr.xt, x0) && same_bytes(pr.wt, w0)) << "a spectrum call modified x/w";
}

// A view holds its shape and strides inline: making, copying and checking one allocates nothing
// (they were std::vectors, two allocations a view, on every call). More axes than fit are refused.
TEST(Views, ShapeAndStridesAreInline) {
  static_assert(std::is_trivially_copyable_v<tensor_view<float>>, "a view owns no heap memory");
  static_assert(std::is_trivially_copyable_v<spectrum_view<const double>>);
  float data[1] = {};
  const auto v = tensor_view<float>::contiguous(data, {2, 3, 4, 5, 6});
  EXPECT_EQ(v.rank(), 5);
  EXPECT_EQ(v.strides.to_vector(), (std::vector<i64>{360, 120, 30, 6, 1}));
  const tensor_view<const float> c = v;  // read-only view of the same memory
  EXPECT_TRUE(c.shape == v.shape && c.strides == v.strides && c.data == v.data);
  try {
    (void)tensor_view<float>::contiguous(data, {1, 2, 3, 4, 5, 6});
    ADD_FAILURE() << "a rank-6 view was accepted";
  } catch (const blfft::error& e) {
    EXPECT_EQ(e.code(), blfft::error_code::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("rank 6"), std::string::npos) << e.what();
  }
}

TEST(Views, InputsNotModified) {
  for (auto m : methods())
    for (double r : {0.0, 0.5}) {
      check_inputs_not_modified<float>(make2d(2, 4, 6, {9, 8}, {3, 3}, {1, 2}, {1, 1}, {1, 1}, 2),
                                       r, m);
      check_inputs_not_modified<double>(make2d(2, 3, 2, {7, 10}, {2, 3}, {2, 1}, {0, 1}), r, m);
      check_inputs_not_modified<double>(make1d(2, 3, 4, 12, 3, 2, 1, 2), r, m);
    }
}

// ---------------------------------------------------------------------------------------------

/// Results of every entry point for given input views, outputs contiguous.
template <class T>
struct results {
  std::vector<T> y, dx, dw, db, dx2, dw2, db2;
  vec energy;
};

template <class T>
results<T> run(const blfft::plan<T>& pl, const conv_params& p, const tensor_view<const T>& x,
               const tensor_view<const T>& w, const T* bias, const tensor_view<const T>& g) {
  const dims d = dims_of(p);
  const auto& geo = pl.geometry();
  results<T> r;
  std::vector<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
  r.y = nan_filled<T>(d.output_size());
  r.dx = nan_filled<T>(d.input_size());
  r.dw = nan_filled<T>(d.weight_size());
  r.db = nan_filled<T>(d.F);
  pl.forward(x, w, bias, out_view(r.y, d.output_shape()), spec(xs), spec(ws));
  auto dxv = out_view(r.dx, d.input_shape());
  auto dwv = out_view(r.dw, d.weight_shape());
  pl.backward(g, spec(xs), spec(ws), &dxv, &dwv, r.db.data());
  // Separate entry points, spectra from input_spectrum / weight_spectrum.
  std::vector<T> xs2(xs.size()), ws2(ws.size());
  pl.input_spectrum(x, spec(xs2));
  pl.weight_spectrum(w, spec(ws2));
  r.dx2 = nan_filled<T>(d.input_size());
  r.dw2 = nan_filled<T>(d.weight_size());
  r.db2 = nan_filled<T>(d.F);
  pl.input_grad(g, spec(ws2), out_view(r.dx2, d.input_shape()));
  pl.weight_grad(g, spec(xs2), out_view(r.dw2, d.weight_shape()));
  pl.bias_grad(g, r.db2.data());
  r.energy = blfft::energy_map<T>(p, x);
  return r;
}

/// The setup of a layout check: the trace, the problem, its plan and the results from contiguous
/// views, which every other layout must reproduce.
template <class T>
struct layout_case {
  ::testing::ScopedTrace trace;
  conv_params p;
  double rate;
  problem<T> pr;
  const dims& d = pr.d;
  std::shared_ptr<const blfft::plan<T>> pl;
  results<T> base;
  layout_case(const conv_params& prm, double r, transform_method m, uint64_t seed)
      : trace(__FILE__, __LINE__, name_of(prm) + " r=" + std::to_string(r) + " " + method_name(m)),
        p(prm), rate(r), pr(prm, seed),
        pl(blfft::get_plan<T>(prm, compression::rate(r), options(m))),
        base(run(*pl, prm, pr.xv(), pr.wv(), pr.bt.data(), pr.gv())) {}

  void check_noncontiguous_inputs() const;
  void check_noncontiguous_outputs() const;
};

/// Non-contiguous views must give the results of contiguous ones. The data are the same, so the
/// only admissible difference is rounding from another evaluation order: relative l2 1e-6
/// (float) and 1e-13 (double), far below any indexing error.
template <class T>
double same_results_tol() {
  return std::is_same<T, float>::value ? 1e-6 : 1e-13;
}

template <class T>
void expect_same(const results<T>& a, const results<T>& b, const std::string& what) {
  const double t = same_results_tol<T>();
  EXPECT_TRUE(rel_close(what + " y", a.y, widen(b.y), t));
  EXPECT_TRUE(rel_close(what + " dx", a.dx, widen(b.dx), t));
  EXPECT_TRUE(rel_close(what + " dw", a.dw, widen(b.dw), t));
  EXPECT_TRUE(rel_close(what + " db", a.db, widen(b.db), t));
  EXPECT_TRUE(rel_close(what + " input_grad", a.dx2, widen(b.dx2), t));
  EXPECT_TRUE(rel_close(what + " weight_grad", a.dw2, widen(b.dw2), t));
  EXPECT_TRUE(rel_close(what + " bias_grad", a.db2, widen(b.db2), t));
  EXPECT_LE(rel_l2(a.energy, b.energy), t) << what << " energy_map";
}

template <class T>
void layout_case<T>::check_noncontiguous_inputs() const {
  if (rate == 0.0) {  // base is right in the first place
    EXPECT_TRUE(rel_close("contiguous forward", base.y, direct_forward(p, pr.x, pr.w, pr.b.data()),
                          tol<T>::direct));
  }
  const size_t rank = d.input_shape().size();
  const auto xs = d.input_shape(), ws = d.weight_shape(), gs = d.output_shape();
  struct variant {
    std::string name;
    strided<T> x, w, g;
  };
  std::vector<i64> chan_extra(rank, 0);
  chan_extra[1] = 3;  // a channel slice of a tensor with C + 3 channels
  std::vector<i64> row_gap(rank, 0);
  row_gap[rank - 2] = 2;  // padding after every row / every channel (1D)
  std::vector<variant> vs;
  vs.push_back({"transposed", layout(pr.xt, xs, transposed(rank)),
                layout(pr.wt, ws, transposed(rank)), layout(pr.gt, gs, transposed(rank))});
  vs.push_back({"channels_last", layout(pr.xt, xs, channels_last(rank)),
                layout(pr.wt, ws, channels_last(rank)), layout(pr.gt, gs, channels_last(rank))});
  vs.push_back({"channel_slice", layout(pr.xt, xs, iota_order(rank), chan_extra, 1, d.W * d.H),
                layout(pr.wt, ws, iota_order(rank), chan_extra, 1, 5),
                layout(pr.gt, gs, iota_order(rank), chan_extra, 1, 7)});
  vs.push_back({"every_other_element", layout(pr.xt, xs, iota_order(rank), {}, 2),
                layout(pr.wt, ws, iota_order(rank), {}, 3),
                layout(pr.gt, gs, iota_order(rank), row_gap, 2)});
  // Weight stored (K..., C/g, F): the layout of some frameworks' filters.
  {
    std::vector<int> wo;
    for (size_t k = 2; k < rank; ++k) wo.push_back(static_cast<int>(k));
    wo.push_back(1);
    wo.push_back(0);
    vs.push_back({"weight_kernel_major", layout(pr.xt, xs, iota_order(rank)), layout(pr.wt, ws, wo),
                  layout(pr.gt, gs, iota_order(rank))});
  }
  for (auto& v : vs) {
    SCOPED_TRACE(v.name);
    const auto r = run(*pl, p, v.x.cview(), v.w.cview(), pr.bt.data(), v.g.cview());
    expect_same(r, base, v.name);
  }

  // A stride-0 batch: every image is image 0.
  {
    std::vector<T> x0(pr.xt.begin(), pr.xt.begin() + d.C * d.H * d.W);
    std::vector<T> xrep;
    for (i64 n = 0; n < d.N; ++n) xrep.insert(xrep.end(), x0.begin(), x0.end());
    auto xb = tensor_view<const T>::contiguous(x0.data(), xs);
    xb.strides[0] = 0;
    const auto r = run(*pl, p, xb, pr.wv(), pr.bt.data(), pr.gv());
    const auto rb = run(*pl, p, in_view(xrep, xs), pr.wv(), pr.bt.data(), pr.gv());
    expect_same(r, rb, "broadcast batch");
  }
}

TEST(Views, NonContiguousInputsF32) {
  for (auto m : methods())
    for (double r : {0.0, 0.5})
      for (const auto& p : {make2d(2, 4, 6, {9, 8}, {3, 2}, {1, 2}, {1, 1}, {1, 1}, 2),
                            make1d(2, 3, 4, 12, 3, 2, 1, 2)})
        layout_case<float>(p, r, m, 301).check_noncontiguous_inputs();
}
TEST(Views, NonContiguousInputsF64) {
  for (auto m : methods())
    for (double r : {0.0, 0.75})
      for (const auto& p :
           {make2d(3, 2, 4, {7, 10}, {2, 3}, {2, 1}, {0, 1}), make1d(2, 4, 2, 11, 4, 1, 2, 1, 2)})
        layout_case<double>(p, r, m, 301).check_noncontiguous_inputs();
}

template <class T>
void layout_case<T>::check_noncontiguous_outputs() const {
  const size_t rank = d.input_shape().size();
  const T fill = T(-777);
  const double t = same_results_tol<T>();
  std::vector<i64> chan_extra(rank, 0);
  chan_extra[1] = 2;

  std::vector<T> xs(pl->geometry().x_spectrum_size()), ws(pl->geometry().w_spectrum_size());
  pl->input_spectrum(pr.xv(), spec(xs));
  pl->weight_spectrum(pr.wv(), spec(ws));

  struct lay {
    std::string name;
    std::vector<int> order;
    std::vector<i64> extra;
    i64 step, offset;
  };
  for (const lay& L : {lay{"channels_last", channels_last(rank), {}, 1, 0},
                       lay{"transposed", transposed(rank), {}, 1, 3},
                       lay{"channel_slice", iota_order(rank), chan_extra, 1, 4},
                       lay{"every_other_element", iota_order(rank), {}, 2, 1}}) {
    SCOPED_TRACE(L.name);
    // An output buffer of `shape` in this layout, every element (and gap) `fill`.
    const auto blank = [&](const std::vector<i64>& shape) {
      return layout(std::vector<T>{}, shape, L.order, L.extra, L.step, L.offset, fill);
    };
    auto y = blank(d.output_shape());
    auto dx = blank(d.input_shape());
    auto dw = blank(d.weight_shape());
    pl->forward(pr.xv(), pr.wv(), pr.bt.data(), y.view());
    EXPECT_TRUE(rel_close("forward into a strided y", y.gather(), widen(base.y), t));
    EXPECT_TRUE(y.gaps_hold(fill)) << "forward wrote outside y's elements";

    auto dxv = dx.view();
    auto dwv = dw.view();
    pl->backward(pr.gv(), spec(xs), spec(ws), &dxv, &dwv, nullptr);
    EXPECT_TRUE(rel_close("backward grad_input", dx.gather(), widen(base.dx), t));
    EXPECT_TRUE(rel_close("backward grad_weight", dw.gather(), widen(base.dw), t));
    EXPECT_TRUE(dx.gaps_hold(fill) && dw.gaps_hold(fill)) << "backward wrote into gaps";

    auto y2 = blank(d.output_shape());
    auto dx2 = blank(d.input_shape());
    auto dw2 = blank(d.weight_shape());
    pl->forward_spectra(spec(xs), spec(ws), pr.bt.data(), y2.view());
    pl->input_grad(pr.gv(), spec(ws), dx2.view());
    pl->weight_grad(pr.gv(), spec(xs), dw2.view());
    EXPECT_TRUE(rel_close("forward_spectra", y2.gather(), widen(base.y), t));
    EXPECT_TRUE(rel_close("input_grad", dx2.gather(), widen(base.dx2), t));
    EXPECT_TRUE(rel_close("weight_grad", dw2.gather(), widen(base.dw2), t));
    EXPECT_TRUE(y2.gaps_hold(fill) && dx2.gaps_hold(fill) && dw2.gaps_hold(fill))
        << "a separate entry point wrote into gaps";
  }
}

TEST(Views, NonContiguousOutputsF32) {
  for (auto m : methods()) {
    layout_case<float>(make2d(2, 4, 6, {9, 8}, {3, 2}, {1, 2}, {1, 1}, {1, 1}, 2), 0.5, m, 401)
        .check_noncontiguous_outputs();
    layout_case<float>(make1d(2, 3, 4, 12, 3, 2, 1, 2), 0.0, m, 401).check_noncontiguous_outputs();
  }
}
TEST(Views, NonContiguousOutputsF64) {
  for (auto m : methods()) {
    layout_case<double>(make2d(3, 2, 4, {7, 10}, {2, 3}, {2, 1}, {0, 1}), 0.0, m, 401)
        .check_noncontiguous_outputs();
    layout_case<double>(make1d(2, 4, 2, 11, 4, 1, 2, 1, 2), 0.75, m, 401)
        .check_noncontiguous_outputs();
  }
}

}  // namespace

namespace {

// prepared_weight and forward_prepared (issue #15): a weight spectrum kept across calls gives the
// results of the ordinary entry points bit for bit, is remade exactly when the caller's version or
// the plan's geometry changes, and forward_prepared at rate 0 is the exact convolution.
template <class T>
void check_prepared_weight(const conv_params& p) {
  SCOPED_TRACE(name_of(p));
  problem<T> pr(p, 501);
  const dims d = dims_of(p);
  const auto half = blfft::get_plan<T>(p, compression::rate(0.5));
  const auto& g = half->geometry();
  blfft::prepared_weight<T> pw;
  EXPECT_FALSE(pw.spectrum().given());
  const auto ws = pw.update(*half, pr.wv(), 7);
  EXPECT_EQ(pw.update(*half, pr.wv(), 7).data, ws.data);  // same version: kept
  EXPECT_EQ(pw.transforms(), 1);
  EXPECT_EQ(pw.reuses(), 1);
  std::vector<T> ws_ref(static_cast<size_t>(g.w_spectrum_size()));
  half->weight_spectrum(pr.wv(), spec(ws_ref));
  EXPECT_EQ(std::memcmp(ws.data, ws_ref.data(), ws_ref.size() * sizeof(T)), 0);

  std::vector<T> y(static_cast<size_t>(d.output_size())), y_ref(y.size());
  std::vector<T> xs(static_cast<size_t>(g.x_spectrum_size())), xs_ref(xs.size());
  half->forward_prepared(pr.xv(), pw.spectrum(), pr.bt.data(), out_view(y, d.output_shape()),
                         spec(xs));
  half->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y_ref, d.output_shape()), spec(xs_ref));
  EXPECT_TRUE(same_bytes(y, y_ref));
  EXPECT_TRUE(same_bytes(xs, xs_ref));
  // Without an x_spectrum to fill, the same output.
  std::vector<T> y2(y.size());
  half->forward_prepared(pr.xv(), pw.spectrum(), pr.bt.data(), out_view(y2, d.output_shape()));
  EXPECT_TRUE(same_bytes(y2, y_ref));
  // Backward reads the prepared spectrum: the input gradient as from a kept weight spectrum.
  std::vector<T> dx(static_cast<size_t>(d.input_size())), dx_ref(dx.size());
  auto dxv = out_view(dx, d.input_shape());
  auto dx_refv = out_view(dx_ref, d.input_shape());
  half->backward(pr.gv(), spec(xs), pw.spectrum(), &dxv, nullptr, nullptr);
  half->backward(pr.gv(), spec(xs_ref), spec(ws_ref), &dx_refv, nullptr, nullptr);
  EXPECT_TRUE(same_bytes(dx, dx_ref));

  // A new version, or a plan of another geometry, remakes it.
  pw.update(*half, pr.wv(), 8);
  EXPECT_EQ(pw.transforms(), 2);
  const auto full = blfft::get_plan<T>(p, compression::rate(0.0));
  const auto ws_full = pw.update(*full, pr.wv(), 8);
  EXPECT_EQ(pw.transforms(), 3);
  EXPECT_EQ(ws_full.size, full->geometry().w_spectrum_size());
  // At rate 0, the exact convolution (direct oracle, double accumulation).
  std::vector<T> y0(y.size());
  full->forward_prepared(pr.xv(), ws_full, pr.bt.data(), out_view(y0, d.output_shape()));
  EXPECT_LE(rel_l2(widen(y0), direct_forward(p, pr.x, pr.w, pr.b.data())), tol<T>::dense);
  // A spectrum of the wrong geometry is refused, naming the argument.
  try {
    half->forward_prepared(pr.xv(), ws_full, nullptr, out_view(y, d.output_shape()));
    ADD_FAILURE() << "a weight spectrum of another geometry was taken";
  } catch (const blfft::error& e) {
    EXPECT_NE(std::string(e.what()).find("w_spectrum"), std::string::npos) << e.what();
  }
  pw.clear();
  EXPECT_FALSE(pw.spectrum().given());
}

TEST(PreparedWeight, SharedAcrossCallsF32) {
  check_prepared_weight<float>(make2d(3, 4, 5, {9, 8}, {3, 3}, {1, 1}, {1, 1}));
  check_prepared_weight<float>(make1d(2, 3, 4, 20, 5, 1, 2));
}
TEST(PreparedWeight, SharedAcrossCallsF64) {
  check_prepared_weight<double>(make2d(3, 4, 5, {9, 8}, {3, 3}, {2, 1}, {1, 1}));
  check_prepared_weight<double>(make1d(2, 3, 4, 20, 5, 1, 2));
}

}  // namespace

namespace {

// Review of #15: a weight spectrum does not depend on the batch, so a prepared_weight updated
// for plans of two batch sizes (a training batch and the last, smaller one; evaluation with
// another batch) keeps its spectrum; forward_prepared from it is the other plan's forward bit for
// bit. A handle with no spectrum (never updated, cleared, or whose update failed) is refused, and
// an update after a failed one transforms again even at the same version.
TEST(PreparedWeight, KeptAcrossBatchSizesAndRefusedWhenEmpty) {
  const auto p = make2d(3, 4, 5, {9, 8}, {3, 3}, {1, 1}, {1, 1});
  const auto p1 = make2d(1, 4, 5, {9, 8}, {3, 3}, {1, 1}, {1, 1});
  problem<float> pr(p, 77), pr1(p1, 78);
  pr1.wt = pr.wt;  // one layer: the same weight
  const auto big = blfft::get_plan<float>(p, compression::rate(0.5));
  const auto one = blfft::get_plan<float>(p1, compression::rate(0.5));
  blfft::prepared_weight<float> pw;
  pw.update(*big, pr.wv(), 3);
  const auto ws = pw.update(*one, pr1.wv(), 3);
  EXPECT_EQ(pw.transforms(), 1);
  EXPECT_EQ(pw.reuses(), 1);
  const dims d1 = dims_of(p1);
  std::vector<float> y(static_cast<size_t>(d1.output_size())), y_ref(y.size());
  one->forward_prepared(pr1.xv(), ws, pr1.bt.data(), out_view(y, d1.output_shape()));
  one->forward(pr1.xv(), pr1.wv(), pr1.bt.data(), out_view(y_ref, d1.output_shape()));
  EXPECT_TRUE(same_bytes(y, y_ref));

  const auto refused = [&](blfft::spectrum_view<const float> s) {
    try {
      one->forward_prepared(pr1.xv(), s, nullptr, out_view(y, d1.output_shape()));
    } catch (const blfft::error& e) {
      return std::string(e.what()).find("w_spectrum") != std::string::npos;
    }
    return false;
  };
  pw.clear();
  EXPECT_TRUE(refused(pw.spectrum()));
  // A weight of the wrong shape: the update throws and leaves no spectrum behind.
  const auto bad_w = tensor_view<const float>::contiguous(pr1.wt.data(), {5, 4, 3, 2});
  EXPECT_THROW(pw.update(*one, bad_w, 4), blfft::error);
  EXPECT_TRUE(refused(pw.spectrum()));
  pw.update(*one, pr1.wv(), 4);
  EXPECT_EQ(pw.transforms(), 2);
  EXPECT_FALSE(refused(pw.spectrum()));
}

}  // namespace
