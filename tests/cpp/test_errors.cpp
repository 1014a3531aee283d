// Every bad argument throws blfft::error with the right code and a message naming the argument:
// invalid_argument for bad values (sizes, rates, fractions, band limits, indices, null
// pointers, negative or self-overlapping strides), shape_mismatch for views that do not match
// the plan (shape or rank), overflow for element counts that do not fit in int64.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "oracles.hpp"

namespace {

using namespace bt;
using blfft::error_code;

const char* code_name(error_code c) {
  return blfft::error_code_name(c);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

/// f() must throw blfft::error with `code` and a message containing one of `names`
/// (case-insensitive).
void expect_error(const std::string& what, const std::function<void()>& f, error_code code,
                  const std::vector<std::string>& names) {
  SCOPED_TRACE(what);
  try {
    f();
  } catch (const blfft::error& e) {
    EXPECT_STREQ(code_name(e.code()), code_name(code)) << "message: " << e.what();
    const std::string msg = lower(e.what());
    bool named = names.empty();
    for (const auto& n : names) named = named || msg.find(lower(n)) != std::string::npos;
    std::string list;
    for (const auto& n : names) list += " '" + n + "'";
    EXPECT_TRUE(named) << "message \"" << e.what() << "\" names none of" << list;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-blfft exception: " << e.what();
    return;
  } catch (...) {
    ADD_FAILURE() << "threw something that is not a std::exception";
    return;
  }
  ADD_FAILURE() << "did not throw (expected " << code_name(code) << ")";
}

/// As expect_error, accepting any of `codes`.
void expect_error_any(const std::string& what, const std::function<void()>& f,
                      const std::vector<error_code>& codes, const std::vector<std::string>& names) {
  SCOPED_TRACE(what);
  try {
    f();
  } catch (const blfft::error& e) {
    EXPECT_NE(std::find(codes.begin(), codes.end(), e.code()), codes.end())
        << "unexpected code " << code_name(e.code()) << ", message: " << e.what();
    const std::string msg = lower(e.what());
    bool named = false;
    for (const auto& n : names) named = named || msg.find(lower(n)) != std::string::npos;
    EXPECT_TRUE(named) << "message \"" << e.what() << "\" does not name the argument";
    return;
  } catch (...) {
    ADD_FAILURE() << "threw something other than blfft::error";
    return;
  }
  ADD_FAILURE() << "did not throw";
}

/// Bad conv_params / compression go through every entry point that validates them.
void expect_params_error(const std::string& what, const conv_params& p, const compression& c,
                         error_code code, const std::vector<std::string>& names) {
  expect_error(what + " [make_geometry]", [&] { (void)blfft::make_geometry(p, c); }, code, names);
  expect_error(
      what + " [get_plan<float>]", [&] { (void)blfft::get_plan<float>(p, c); }, code, names);
  expect_error(what + " [plan<double>]", [&] { blfft::plan<double> pl(p, c); }, code, names);
}

const conv_params good2d = make2d(2, 4, 6, {9, 10}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 2);
const conv_params good1d = make1d(2, 4, 6, 12, 3, 1, 1, 1, 2);

TEST(Errors, NonPositiveSizes) {
  // A field of a valid layer set to each bad value: the names a message may use for it.
  struct bad_field {
    std::string what;
    const conv_params& layer;
    std::function<void(conv_params&, i64)> set;
    std::vector<i64> values;
    std::vector<std::string> names;
  };
  using P = conv_params&;
  const std::vector<i64> non_positive = {0, -1};
  const std::vector<bad_field> fields = {
      {"batch", good2d, [](P p, i64 v) { p.batch = v; }, non_positive, {"batch"}},
      {"in_channels",
       good2d,
       [](P p, i64 v) { p.in_channels = v; },
       non_positive,
       {"in_channels", "channels"}},
      {"out_channels",
       good2d,
       [](P p, i64 v) { p.out_channels = v; },
       non_positive,
       {"out_channels", "channels"}},
      {"input H", good2d, [](P p, i64 v) { p.input[0] = v; }, non_positive, {"input"}},
      {"input W", good2d, [](P p, i64 v) { p.input[1] = v; }, non_positive, {"input"}},
      {"1D length", good1d, [](P p, i64 v) { p.input[1] = v; }, non_positive, {"input", "length"}},
      {"kernel KH", good2d, [](P p, i64 v) { p.kernel[0] = v; }, non_positive, {"kernel"}},
      {"1D kernel", good1d, [](P p, i64 v) { p.kernel[1] = v; }, non_positive, {"kernel"}},
      {"stride h", good2d, [](P p, i64 v) { p.stride[0] = v; }, non_positive, {"stride"}},
      {"1D stride", good1d, [](P p, i64 v) { p.stride[1] = v; }, non_positive, {"stride"}},
      {"dilation w", good2d, [](P p, i64 v) { p.dilation[1] = v; }, non_positive, {"dilation"}},
      {"groups", good2d, [](P p, i64 v) { p.groups = v; }, non_positive, {"groups"}},
      {"padding", good2d, [](P p, i64 v) { p.padding[0] = v; }, {-1}, {"padding"}},
      {"1D padding", good1d, [](P p, i64 v) { p.padding[1] = v; }, {-2}, {"padding"}},
      {"ndim", good2d, [](P p, i64 v) { p.ndim = static_cast<int>(v); }, {4, 0}, {"ndim"}},
  };
  for (const auto& f : fields)
    for (i64 bad : f.values) {
      conv_params p = f.layer;
      f.set(p, bad);
      expect_params_error(f.what + " = " + std::to_string(bad), p, compression::none(),
                          error_code::invalid_argument, f.names);
    }
}

TEST(Errors, OneDimensionalLayoutIsChecked) {
  // 1D means a height-1 input and kernel (geometry.hpp).
  auto p = good1d;
  p.input[0] = 2;
  expect_params_error("1D input height 2", p, compression::none(), error_code::invalid_argument,
                      {"input", "ndim"});
  p = good1d;
  p.kernel[0] = 2;
  expect_params_error("1D kernel height 2", p, compression::none(), error_code::invalid_argument,
                      {"kernel", "ndim"});
}

TEST(Errors, GroupsMustDivideChannels) {
  expect_params_error("in_channels % groups",
                      make2d(1, 3, 4, {8, 8}, {3, 3}, {1, 1}, {0, 0}, {1, 1}, 2),
                      compression::none(), error_code::invalid_argument, {"groups"});
  expect_params_error("out_channels % groups",
                      make2d(1, 4, 3, {8, 8}, {3, 3}, {1, 1}, {0, 0}, {1, 1}, 2),
                      compression::none(), error_code::invalid_argument, {"groups"});
  expect_params_error("1D in_channels % groups", make1d(1, 6, 4, 8, 3, 1, 0, 1, 4),
                      compression::none(), error_code::invalid_argument, {"groups"});
  expect_params_error("groups > channels", make1d(1, 2, 2, 8, 3, 1, 0, 1, 4), compression::none(),
                      error_code::invalid_argument, {"groups"});
}

TEST(Errors, KernelLargerThanPaddedInput) {
  const auto none = compression::none();
  expect_params_error("KH > Hp", make2d(1, 1, 1, {5, 5}, {6, 3}), none,
                      error_code::invalid_argument, {"kernel"});
  expect_params_error("KW > Wp", make2d(1, 1, 1, {5, 5}, {3, 8}, {1, 1}, {1, 1}), none,
                      error_code::invalid_argument, {"kernel"});
  expect_params_error("1D K > Lp", make1d(1, 1, 1, 4, 5), none, error_code::invalid_argument,
                      {"kernel"});
  expect_params_error("dilated kernel > Hp",
                      make2d(1, 1, 1, {5, 5}, {3, 3}, {1, 1}, {0, 0}, {3, 1}), none,
                      error_code::invalid_argument, {"kernel", "dilation"});
  // Fits thanks to padding: fine.
  EXPECT_NO_THROW((void)blfft::make_geometry(make1d(1, 1, 1, 4, 6, 1, 1), none));
  EXPECT_NO_THROW(
      (void)blfft::make_geometry(make2d(1, 1, 1, {4, 5}, {6, 7}, {1, 1}, {1, 1}), none));
}

TEST(Errors, GridSmallerThanPaddedInput) {
  expect_params_error("grid < Hp", with_grid(good2d, {10, 12}), compression::none(),
                      error_code::invalid_argument, {"grid"});
  expect_params_error("grid < Wp", with_grid(good2d, {11, 11}), compression::none(),
                      error_code::invalid_argument, {"grid"});
  expect_params_error("grid < 0", with_grid(good2d, {-12, 12}), compression::none(),
                      error_code::invalid_argument, {"grid"});
  expect_params_error("1D grid < Lp", with_grid(good1d, {1, 13}), compression::none(),
                      error_code::invalid_argument, {"grid"});
  EXPECT_NO_THROW((void)blfft::make_geometry(with_grid(good2d, {11, 13}), compression::none()));
}

TEST(Errors, RateOutsideZeroOne) {
  for (double r :
       {1.0, -0.1, 1.5, -1e-12, std::numeric_limits<double>::quiet_NaN(),
        std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
    expect_params_error("rate " + std::to_string(r), good2d, compression::rate(r),
                        error_code::invalid_argument, {"rate"});
    expect_params_error("1D rate " + std::to_string(r), good1d, compression::rate(r),
                        error_code::invalid_argument, {"rate"});
  }
  EXPECT_NO_THROW((void)blfft::make_geometry(good2d, compression::rate(0.999999)));
  EXPECT_NO_THROW((void)blfft::make_geometry(good2d, compression::rate(0.0)));
}

TEST(Errors, InvalidBandLimits) {
  // good2d: padded 11 x 12 -> grid 12 x 12: i_h, i_w in [1, 7]. good1d: grid 1 x 14: i in [1, 8].
  const std::vector<std::string> names{"band", "limit"};
  for (auto l : std::vector<std::array<i64, 2>>{{0, 3}, {3, 0}, {-1, 2}, {8, 2}, {2, 8}})
    expect_params_error("2D band(" + std::to_string(l[0]) + "," + std::to_string(l[1]) + ")",
                        good2d, compression::band(l[0], l[1]), error_code::invalid_argument, names);
  for (auto l : std::vector<std::array<i64, 2>>{{1, 0}, {1, 9}, {0, 3}, {2, 3}})
    expect_params_error("1D band(" + std::to_string(l[0]) + "," + std::to_string(l[1]) + ")",
                        good1d, compression::band(l[0], l[1]), error_code::invalid_argument, names);
  EXPECT_NO_THROW((void)blfft::make_geometry(good2d, compression::band(7, 7)));
  EXPECT_NO_THROW((void)blfft::make_geometry(good1d, compression::band(1, 8)));
}

TEST(Errors, InvalidIndices) {
  // grid 12 x 12: rows in [0, 12), rfft columns in [0, 7).
  using v = std::vector<i64>;
  const std::vector<std::string> rn{"rows", "indices"}, cn{"cols", "columns", "indices"};
  const auto bad = error_code::invalid_argument;
  expect_params_error("row out of range", good2d, compression::indices({0, 12}, {0}), bad, rn);
  expect_params_error("negative row", good2d, compression::indices({-1, 0, 1}, {0}), bad, rn);
  expect_params_error("unsorted rows", good2d, compression::indices({0, 11, 1}, {0}), bad, rn);
  expect_params_error("duplicate rows", good2d, compression::indices({0, 0}, {0}), bad, rn);
  expect_params_error("non-symmetric rows", good2d, compression::indices({0, 1}, {0}), bad, rn);
  expect_params_error("non-symmetric rows 2", good2d, compression::indices({0, 2, 11}, {0}), bad,
                      rn);
  expect_params_error("column out of range", good2d, compression::indices({0}, {0, 7}), bad, cn);
  expect_params_error("negative column", good2d, compression::indices({0}, {-1, 0}), bad, cn);
  expect_params_error("unsorted columns", good2d, compression::indices({0}, {2, 1}), bad, cn);
  expect_params_error("duplicate columns", good2d, compression::indices({0}, {1, 1}), bad, cn);
  expect_params_error("1D row 1", good1d, compression::indices({0, 1}, {0}), bad, rn);
  expect_params_error("1D column out of range", good1d, compression::indices({}, {0, 8}), bad, cn);
  EXPECT_NO_THROW((void)blfft::make_geometry(good2d, compression::indices(v{0, 1, 11}, v{0, 6})));
  EXPECT_NO_THROW((void)blfft::make_geometry(good2d, compression::indices(v{6}, v{3})));
  EXPECT_NO_THROW((void)blfft::make_geometry(good1d, compression::indices(v{0}, v{7})));
}

TEST(Errors, Overflow) {
  const auto none = compression::none();
  const i64 big = i64{1} << 40;
  expect_params_error("batch * channels", make2d(big, big, 1, {8, 8}, {3, 3}), none,
                      error_code::overflow, {});
  expect_params_error("out * in channels (weight)", make2d(1, big, big, {8, 8}, {3, 3}), none,
                      error_code::overflow, {});
  expect_params_error("batch * out channels (output)", make2d(big, 1, big, {8, 8}, {3, 3}), none,
                      error_code::overflow, {});
  expect_params_error("1D batch * channels", make1d(big, big, 1, 8, 3), none, error_code::overflow,
                      {});
  // Spatial tensors fit (2^62 elements) but the spectrum (2 * kept * N * C = 2^63) does not.
  const i64 half = i64{1} << 31;
  expect_params_error("spectrum only", make2d(half, half, 1, {1, 1}, {1, 1}), none,
                      error_code::overflow, {});
}

TEST(Errors, EnergyFractionOutsideZeroOne) {
  const auto p = make2d(1, 2, 1, {8, 8}, {3, 3}, {1, 1}, {1, 1});
  problem<double> pr(p, 3);
  problem<float> prf(p, 3);
  const vec map = blfft::energy_map<double>(p, pr.xv());
  for (double E : {0.0, -0.5, 1.0000001, 2.0, std::numeric_limits<double>::quiet_NaN(),
                   std::numeric_limits<double>::infinity()}) {
    const std::string s = "E = " + std::to_string(E);
    expect_error(s + " [map]", [&] { (void)blfft::select_by_energy(p, map, E); },
                 error_code::invalid_argument, {"fraction"});
    expect_error(s + " [double x]", [&] { (void)blfft::select_by_energy<double>(p, pr.xv(), E); },
                 error_code::invalid_argument, {"fraction"});
    expect_error(s + " [float x]", [&] { (void)blfft::select_by_energy<float>(p, prf.xv(), E); },
                 error_code::invalid_argument, {"fraction"});
  }
  EXPECT_NO_THROW((void)blfft::select_by_energy(p, map, 1.0));
  expect_error("energy map of the wrong size",
               [&] { (void)blfft::select_by_energy(p, vec(map.begin(), map.end() - 1), 0.5); },
               error_code::shape_mismatch, {"energy"});
  auto bad = p;
  bad.groups = 0;
  expect_error("energy_map with bad params", [&] { (void)blfft::energy_map<double>(bad, pr.xv()); },
               error_code::invalid_argument, {"groups"});
}

// ---------------------------------------------------------------------------------------------
// Views. Every view argument of every entry point: null data, a wrong extent, the wrong rank,
// a negative stride; output views also with self-overlapping strides. Buffers are oversized so
// that a missing check cannot write out of bounds.

enum class role { x, w, y, grad_out, grad_input, grad_weight };

std::vector<std::string> role_names(role r) {
  switch (r) {
    case role::x: return {"x", "input"};
    case role::w: return {"w", "weight"};
    case role::y: return {"y", "output"};
    case role::grad_out: return {"grad_out", "grad_output"};
    case role::grad_input: return {"grad_input"};
    case role::grad_weight: return {"grad_weight"};
  }
  return {};
}

template <class T>
struct view_ctx {
  conv_params p;
  dims d;
  std::shared_ptr<const blfft::plan<T>> pl;
  std::vector<T> x, w, b, y, g, dx, dw, db, xs, ws;

  explicit view_ctx(const conv_params& prm) : p(prm), d(dims_of(prm)) {
    pl = blfft::get_plan<T>(p, compression::rate(0.5));
    const auto& geo = pl->geometry();
    auto big = [](i64 n) { return std::vector<T>(static_cast<size_t>(4 * n + 64), T(0.5)); };
    x = big(d.input_size());
    w = big(d.weight_size());
    b = big(d.F);
    y = big(d.output_size());
    g = big(d.output_size());
    dx = big(d.input_size());
    dw = big(d.weight_size());
    db = big(d.F);
    xs = big(geo.x_spectrum_size());
    ws = big(geo.w_spectrum_size());
  }
  tensor_view<const T> xv() const { return in_view(x, d.input_shape()); }
  tensor_view<const T> wv() const { return in_view(w, d.weight_shape()); }
  tensor_view<const T> gv() const { return in_view(g, d.output_shape()); }
  tensor_view<T> yv() { return out_view(y, d.output_shape()); }
  tensor_view<T> dxv() { return out_view(dx, d.input_shape()); }
  tensor_view<T> dwv() { return out_view(dw, d.weight_shape()); }
  /// The spectra at the plan's lengths (the buffers are larger, like the others).
  spectrum_view<T> xsv() { return {xs.data(), pl->geometry().x_spectrum_size()}; }
  spectrum_view<T> wsv() { return {ws.data(), pl->geometry().w_spectrum_size()}; }

  std::vector<i64> shape_of(role r) const {
    switch (r) {
      case role::x:
      case role::grad_input: return d.input_shape();
      case role::w:
      case role::grad_weight: return d.weight_shape();
      default: return d.output_shape();
    }
  }
  T* buffer_of(role r) {
    switch (r) {
      case role::x: return x.data();
      case role::w: return w.data();
      case role::y: return y.data();
      case role::grad_out: return g.data();
      case role::grad_input: return dx.data();
      default: return dw.data();
    }
  }

  /// Every call that takes a view in role r, with that view replaced by v.
  std::vector<std::pair<std::string, std::function<void(const tensor_view<T>&)>>> calls(role r) {
    using fn = std::function<void(const tensor_view<T>&)>;
    auto c = [](const tensor_view<T>& v) {
      return tensor_view<const T>(v.data, v.shape, v.strides);
    };
    std::vector<std::pair<std::string, fn>> out;
    switch (r) {
      case role::x:
        out.push_back({"forward", [=](auto& v) { pl->forward(c(v), wv(), b.data(), yv()); }});
        out.push_back({"input_spectrum", [=](auto& v) { pl->input_spectrum(c(v), xsv()); }});
        out.push_back({"energy_map", [=](auto& v) { (void)blfft::energy_map<T>(p, c(v)); }});
        out.push_back(
            {"select_by_energy", [=](auto& v) { (void)blfft::select_by_energy<T>(p, c(v), 0.5); }});
        break;
      case role::w:
        out.push_back({"forward", [=](auto& v) { pl->forward(xv(), c(v), b.data(), yv()); }});
        out.push_back({"weight_spectrum", [=](auto& v) { pl->weight_spectrum(c(v), wsv()); }});
        break;
      case role::y:
        out.push_back({"forward", [=](auto& v) { pl->forward(xv(), wv(), b.data(), v); }});
        out.push_back(
            {"forward_spectra", [=](auto& v) { pl->forward_spectra(xsv(), wsv(), nullptr, v); }});
        break;
      case role::grad_out:
        out.push_back({"backward", [=](auto& v) {
                         auto a = dxv();
                         auto bw = dwv();
                         pl->backward(c(v), xsv(), wsv(), &a, &bw, db.data());
                       }});
        out.push_back({"input_grad", [=](auto& v) { pl->input_grad(c(v), wsv(), dxv()); }});
        out.push_back({"weight_grad", [=](auto& v) { pl->weight_grad(c(v), xsv(), dwv()); }});
        out.push_back({"bias_grad", [=](auto& v) { pl->bias_grad(c(v), db.data()); }});
        break;
      case role::grad_input:
        out.push_back({"backward", [=](auto& v) {
                         auto a = v;
                         pl->backward(gv(), xsv(), wsv(), &a, nullptr, nullptr);
                       }});
        out.push_back({"input_grad", [=](auto& v) { pl->input_grad(gv(), wsv(), v); }});
        break;
      case role::grad_weight:
        out.push_back({"backward", [=](auto& v) {
                         auto a = v;
                         pl->backward(gv(), xsv(), wsv(), nullptr, &a, nullptr);
                       }});
        out.push_back({"weight_grad", [=](auto& v) { pl->weight_grad(gv(), xsv(), v); }});
        break;
    }
    return out;
  }
};

template <class T>
void check_views(const conv_params& p) {
  view_ctx<T> ctx(p);
  for (role r : {role::x, role::w, role::y, role::grad_out, role::grad_input, role::grad_weight}) {
    const bool output = r == role::y || r == role::grad_input || r == role::grad_weight;
    const auto names = role_names(r);
    const auto shape = ctx.shape_of(r);
    T* data = ctx.buffer_of(r);
    for (auto& entry : ctx.calls(r)) {
      const std::string& call = entry.first;
      const auto& fn = entry.second;
      const std::string tag = names[0] + " in " + call + ": ";
      // The unmodified view is accepted (so the failures below are about the modification).
      EXPECT_NO_THROW(fn(tensor_view<T>::contiguous(data, shape))) << tag << "valid view";

      expect_error(
          tag + "null data", [&] { fn(tensor_view<T>::contiguous(nullptr, shape)); },
          error_code::invalid_argument, names);
      for (size_t dim = 0; dim < shape.size(); ++dim) {
        auto s = shape;
        s[dim] += 1;
        expect_error(
            tag + "extent of dim " + std::to_string(dim) + " + 1",
            [&] { fn(tensor_view<T>::contiguous(data, s)); }, error_code::shape_mismatch, names);
      }
      {
        auto s = shape;  // one rank less: merge the last two dims
        s[s.size() - 2] *= s.back();
        s.pop_back();
        expect_error(
            tag + "rank - 1", [&] { fn(tensor_view<T>::contiguous(data, s)); },
            error_code::shape_mismatch, names);
        auto s2 = shape;  // one rank more
        s2.insert(s2.begin() + 2, 1);
        expect_error(
            tag + "rank + 1", [&] { fn(tensor_view<T>::contiguous(data, s2)); },
            error_code::shape_mismatch, names);
      }
      {
        auto v = tensor_view<T>::contiguous(data, shape);
        v.strides.back() = -1;
        expect_error(tag + "negative stride", [&] { fn(v); }, error_code::invalid_argument,
                     {"stride"});
        auto v2 = tensor_view<T>::contiguous(data, shape);
        v2.strides.resize(v2.strides.size() - 1);
        // A malformed view: either code is a fair description.
        expect_error_any(
            tag + "strides shorter than shape", [&] { fn(v2); },
            {error_code::shape_mismatch, error_code::invalid_argument}, names);
      }
      if (output) {
        auto with_overlap = names;
        with_overlap.push_back("overlap");
        with_overlap.push_back("alias");
        // Zero stride on a dimension of extent > 1.
        for (size_t dim = 0; dim < shape.size(); ++dim) {
          if (shape[dim] < 2) continue;
          auto v = tensor_view<T>::contiguous(data, shape);
          v.strides[dim] = 0;
          expect_error(
              tag + "zero stride on dim " + std::to_string(dim), [&] { fn(v); },
              error_code::invalid_argument, with_overlap);
          break;
        }
        // Channel stride smaller than the spatial extent: channels overlap.
        if (shape[1] > 1) {
          auto v = tensor_view<T>::contiguous(data, shape);
          v.strides[1] = std::max<i64>(1, v.strides[1] / 2);
          if (v.strides[1] < tensor_view<T>::contiguous(data, shape).strides[1]) {
            v.strides[0] = v.strides[1] * shape[1];
            expect_error(
                tag + "overlapping channels", [&] { fn(v); }, error_code::invalid_argument,
                with_overlap);
          }
        }
        // Two dims with the same stride (a diagonal walk that revisits elements).
        {
          auto v = tensor_view<T>::contiguous(data, shape);
          const size_t last = shape.size() - 1;
          if (shape[last] > 1 && shape[last - 1] > 1) {
            v.strides[last - 1] = v.strides[last];
            expect_error(
                tag + "equal strides on the last two dims", [&] { fn(v); },
                error_code::invalid_argument, with_overlap);
          }
        }
      }
    }
  }
}

TEST(ErrorsViews, AllViews2D) {
  check_views<float>(make2d(2, 4, 6, {9, 8}, {3, 3}, {1, 2}, {1, 1}, {1, 1}, 2));
}
TEST(ErrorsViews, AllViews1D) {
  check_views<double>(make1d(2, 4, 6, 12, 3, 1, 1, 1, 2));
}

TEST(ErrorsViews, SpectrumAndBiasPointers) {
  view_ctx<float> ctx(make2d(2, 4, 6, {9, 8}, {3, 3}, {1, 2}, {1, 1}, {1, 1}, 2));
  auto& pl = *ctx.pl;
  const auto bad = error_code::invalid_argument;
  expect_error("input_spectrum(x, null)", [&] { pl.input_spectrum(ctx.xv(), nullptr); }, bad,
               {"x_spectrum", "spectrum"});
  expect_error("weight_spectrum(w, null)", [&] { pl.weight_spectrum(ctx.wv(), nullptr); }, bad,
               {"w_spectrum", "spectrum"});
  expect_error("forward_spectra(null x_spectrum)",
               [&] { pl.forward_spectra(nullptr, ctx.wsv(), nullptr, ctx.yv()); }, bad,
               {"x_spectrum"});
  expect_error("forward_spectra(null w_spectrum)",
               [&] { pl.forward_spectra(ctx.xsv(), nullptr, nullptr, ctx.yv()); }, bad,
               {"w_spectrum"});
  expect_error("input_grad(null w_spectrum)", [&] { pl.input_grad(ctx.gv(), nullptr, ctx.dxv()); },
               bad, {"w_spectrum"});
  expect_error("weight_grad(null x_spectrum)",
               [&] { pl.weight_grad(ctx.gv(), nullptr, ctx.dwv()); }, bad, {"x_spectrum"});
  expect_error("bias_grad(null)", [&] { pl.bias_grad(ctx.gv(), nullptr); }, bad,
               {"grad_bias", "bias"});
  expect_error("backward(grad_input without w_spectrum)",
               [&] {
                 auto v = ctx.dxv();
                 pl.backward(ctx.gv(), ctx.xsv(), nullptr, &v, nullptr, nullptr);
               },
               bad, {"w_spectrum"});
  expect_error("backward(grad_weight without x_spectrum)",
               [&] {
                 auto v = ctx.dwv();
                 pl.backward(ctx.gv(), nullptr, ctx.wsv(), nullptr, &v, nullptr);
               },
               bad, {"x_spectrum"});
  // Optional pointers really are optional.
  EXPECT_NO_THROW(pl.forward(ctx.xv(), ctx.wv(), nullptr, ctx.yv()));
  EXPECT_NO_THROW(pl.forward(ctx.xv(), ctx.wv(), nullptr, ctx.yv(), ctx.xsv(), nullptr));
  EXPECT_NO_THROW(pl.forward(ctx.xv(), ctx.wv(), nullptr, ctx.yv(), nullptr, ctx.wsv()));
  EXPECT_NO_THROW(pl.backward(ctx.gv(), nullptr, nullptr, nullptr, nullptr, nullptr));
}

// Spectra carry their length (spectrum_view), which every call checks against the geometry:
// one scalar short, one too many, an empty view of real memory or a negative length is refused
// naming the argument; the plan's length works. A spectrum that is given is checked even where
// the call does not read it (backward without grad_weight).
TEST(ErrorsViews, SpectrumLengths) {
  view_ctx<float> ctx(make2d(2, 4, 6, {9, 8}, {3, 3}, {1, 2}, {1, 1}, {1, 1}, 2));
  auto& pl = *ctx.pl;
  const i64 nx = pl.geometry().x_spectrum_size(), nw = pl.geometry().w_spectrum_size();
  auto dx = ctx.dxv();
  auto dw = ctx.dwv();
  using call = std::function<void(spectrum_view<float>)>;
  struct spectrum_case {
    std::string what, arg;
    std::vector<float>& buffer;
    i64 size;
    call fn;
  };
  const std::vector<spectrum_case> cases = {
      {"input_spectrum", "x_spectrum", ctx.xs, nx, [&](auto s) { pl.input_spectrum(ctx.xv(), s); }},
      {"weight_spectrum", "w_spectrum", ctx.ws, nw,
       [&](auto s) { pl.weight_spectrum(ctx.wv(), s); }},
      {"forward", "x_spectrum", ctx.xs, nx,
       [&](auto s) { pl.forward(ctx.xv(), ctx.wv(), nullptr, ctx.yv(), s, nullptr); }},
      {"forward", "w_spectrum", ctx.ws, nw,
       [&](auto s) { pl.forward(ctx.xv(), ctx.wv(), nullptr, ctx.yv(), nullptr, s); }},
      {"forward_spectra", "x_spectrum", ctx.xs, nx,
       [&](auto s) { pl.forward_spectra(s, ctx.wsv(), nullptr, ctx.yv()); }},
      {"forward_spectra", "w_spectrum", ctx.ws, nw,
       [&](auto s) { pl.forward_spectra(ctx.xsv(), s, nullptr, ctx.yv()); }},
      {"backward", "x_spectrum", ctx.xs, nx,
       [&](auto s) { pl.backward(ctx.gv(), s, ctx.wsv(), &dx, &dw, nullptr); }},
      {"backward", "w_spectrum", ctx.ws, nw,
       [&](auto s) { pl.backward(ctx.gv(), ctx.xsv(), s, &dx, &dw, nullptr); }},
      {"backward (x_spectrum not read)", "x_spectrum", ctx.xs, nx,
       [&](auto s) { pl.backward(ctx.gv(), s, ctx.wsv(), &dx, nullptr, nullptr); }},
      {"backward_with_weight", "x_spectrum", ctx.xs, nx,
       [&](auto s) { pl.backward_with_weight(ctx.gv(), s, ctx.wv(), &dx, &dw, nullptr); }},
      {"input_grad", "w_spectrum", ctx.ws, nw, [&](auto s) { pl.input_grad(ctx.gv(), s, dx); }},
      {"weight_grad", "x_spectrum", ctx.xs, nx, [&](auto s) { pl.weight_grad(ctx.gv(), s, dw); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what + ", " + c.arg);
    float* data = c.buffer.data();  // 4x the plan's length: the wrong lengths stay in bounds
    // -1: a negative length is refused too (it once passed as "length unknown", unchecked).
    for (i64 wrong : {c.size - 1, c.size + 1, i64(0), i64(-1)})
      expect_error("length " + std::to_string(wrong), [&] { c.fn({data, wrong}); },
                   error_code::invalid_argument, {c.arg + " has " + std::to_string(wrong)});
    EXPECT_NO_THROW(c.fn({data, c.size})) << "the plan's length";
  }
}

TEST(ErrorsViews, ViewOfAnotherGeometry) {
  // A 2D plan given a 1D problem's views and vice versa: rank mismatch.
  view_ctx<double> c2(make2d(2, 4, 6, {9, 8}, {3, 3}, {1, 1}, {1, 1}));
  view_ctx<double> c1(make1d(2, 4, 6, 12, 3, 1, 1));
  expect_error("1D x into 2D plan", [&] { c2.pl->forward(c1.xv(), c2.wv(), nullptr, c2.yv()); },
               error_code::shape_mismatch, {"x", "input"});
  expect_error("2D x into 1D plan", [&] { c1.pl->forward(c2.xv(), c1.wv(), nullptr, c1.yv()); },
               error_code::shape_mismatch, {"x", "input"});
}

}  // namespace
