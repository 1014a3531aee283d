// The CUDA backend with float16 / bfloat16 tensors, emulated on the CPU (issue #11): the 16-bit
// conversions (cuda/storage.hpp) against independent oracles, and a layer's forward and
// gradients with 16-bit x, w, bias, y and gradients against the float32 pipeline on the rounded
// inputs: computed in float from the same values, every result must be exactly the float
// result rounded once to the 16-bit type. Both transform engines; 1D, 2D and 3D layers.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda_emulator.hpp"
#include "harness.hpp"
#include "oracles.hpp"
#include "oracles3d.hpp"
#include "plan_calls.hpp"
#include "storage.hpp"

namespace {

using namespace bt;
namespace cdx = blfft::cuda::detail;
using blfft::cuda::bfloat16;
using blfft::cuda::half;

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// Floats that stress the roundings: random ones over the whole range, and exact halfway points
/// and their neighbours around every 16-bit value's spacing (both formats), subnormal bounds,
/// overflow bounds, infinities, NaN.
std::vector<float> stress_floats() {
  std::vector<float> v = {0.0f,
                          -0.0f,
                          65504.0f,
                          65519.996f,
                          65520.0f,
                          65536.0f,
                          1e-8f,
                          2.98e-8f,
                          2.9802322e-8f,
                          5.96e-8f,
                          6.1035156e-5f,
                          6.1e-5f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(),
                          std::numeric_limits<float>::max(),
                          std::numeric_limits<float>::denorm_min()};
  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) v.push_back(float_of(rng()));
  for (uint32_t h = 0; h < 0x10000u; h += 7) {  // bfloat16 halfway points and neighbours
    const uint32_t mid = (h << 16) | 0x8000u;
    for (uint32_t d : {0u, 1u, 0xffffffffu}) v.push_back(float_of(mid + d));
  }
  for (uint32_t e = 0; e < 0x7f800000u; e += 0x00123457u) {  // binary16 halfway (13 low bits)
    const uint32_t mid = (e & ~0x1fffu) | 0x1000u;
    for (uint32_t d : {0u, 1u, 0xffffffffu}) v.push_back(float_of(mid + d));
  }
  return v;
}

TEST(CudaHalf, Float16ConversionsMatchTheCompiler) {
  // _Float16 (GCC / Clang on x86-64): IEEE binary16 with round to nearest even.
#if defined(__FLT16_MAX__)
  for (uint32_t b = 0; b < 0x10000u; ++b) {  // every binary16 value to float, exactly
    _Float16 h;
    const auto u = static_cast<uint16_t>(b);
    std::memcpy(&h, &u, 2);
    const float want = static_cast<float>(h), got = cdx::to_float(half{u});
    if (std::isnan(want))
      ASSERT_TRUE(std::isnan(got)) << b;
    else
      ASSERT_EQ(bits_of(got), bits_of(want)) << b;
  }
  for (float f : stress_floats()) {
    const _Float16 h = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &h, 2);
    const uint16_t got = cdx::to_half(f).bits;
    if (std::isnan(f))
      ASSERT_TRUE((got & 0x7c00u) == 0x7c00u && (got & 0x3ffu) != 0) << "NaN stays NaN";
    else
      ASSERT_EQ(got, want) << "float bits " << std::hex << bits_of(f);
  }
#else
  GTEST_SKIP() << "no _Float16 in this compiler: the binary16 oracle is missing (not a pass)";
#endif
}

TEST(CudaHalf, Bfloat16ConversionsRoundToNearestEven) {
  // Oracle: the two bfloat16 neighbours of f (truncated, and one unit above), the nearer in
  // double, ties to the even one.
  for (float f : stress_floats()) {
    const uint16_t got = cdx::to_bfloat16(f).bits;
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(cdx::to_float(bfloat16{got}))) << "NaN stays NaN";
      continue;
    }
    const uint32_t lo = bits_of(f) & 0xffff0000u, hi = lo + 0x10000u;
    // Above the largest finite bfloat16 the next value is infinity, which rounding treats as
    // 2^128 (the next power of two with an unbounded exponent).
    const auto value = [](uint32_t u) {
      const float v = float_of(u);
      return std::isinf(v) ? std::copysign(std::ldexp(1.0, 128), double(v)) : double(v);
    };
    const double dl = std::fabs(double(f) - value(lo)), dh = std::fabs(double(f) - value(hi));
    uint32_t want = dl < dh ? lo : dh < dl ? hi : ((lo >> 16) & 1u) ? hi : lo;
    if (std::isinf(f)) want = bits_of(f);
    ASSERT_EQ(got, static_cast<uint16_t>(want >> 16)) << "float bits " << std::hex << bits_of(f);
    ASSERT_EQ(bits_of(cdx::to_float(bfloat16{got})), want & 0xffff0000u);
  }
}

/// A tensor's values rounded to X, as X and as float.
template <class X>
struct rounded16 {
  std::vector<X> h;
  std::vector<float> f;
  explicit rounded16(const std::vector<float>& v) {
    for (float a : v) {
      h.push_back(cdx::to_storage<X>(a));
      f.push_back(cdx::to_compute<float>(h.back()));
    }
  }
};

template <class X>
void expect_rounded_from(const std::vector<X>& got, const std::vector<float>& want,
                         const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (got[i].bits != cdx::to_storage<X>(want[i]).bits) ++bad;
  EXPECT_EQ(bad, 0) << what << ": elements that are not the float result rounded once";
}

/// One layer through every entry point in X against float32 on the rounded values.
/// `Problem`: problem<float> (1D, 2D) or problem3<float> (3D: the volume stage's slices in X).
template <class X, class Problem>
void half_case(const conv_params& p, cdx::transform_engine engine) {
  using T = float;
  SCOPED_TRACE(name_of(p) + (engine == cdx::transform_engine::cufft ? " cufft" : " fused"));
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const Problem pr(p, 3);
  const auto& d = pr.d;
  const rounded16<X> x(pr.xt), w(pr.wt), b(pr.bt), g(pr.gt);
  host_executor ex;
  const cdx::plan_calls<T, host_executor> pl(ex, geo, blfft::cuda::cuda_plan_options{},
                                             cdx::default_chunk_scalars, engine);
  // float32 on the rounded values
  std::vector<T> y(d.output_size()), dx(d.input_size()), dw(d.weight_size()), db(d.F),
      xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
  pl.forward(in_view(x.f, d.input_shape()), in_view(w.f, d.weight_shape()), b.f.data(),
             out_view(y, d.output_shape()), spec(xs), spec(ws), nullptr);
  auto dxv = out_view(dx, d.input_shape()), dwv = out_view(dw, d.weight_shape());
  pl.backward(in_view(g.f, d.output_shape()), spec(xs), spec(ws), &dxv, &dwv, db.data(), nullptr);
  // the same in X
  std::vector<X> yh(d.output_size()), dxh(d.input_size()), dwh(d.weight_size()), dbh(d.F);
  std::vector<T> xs2(geo.x_spectrum_size()), ws2(geo.w_spectrum_size());
  pl.forward(in_view(x.h, d.input_shape()), in_view(w.h, d.weight_shape()), b.h.data(),
             out_view(yh, d.output_shape()), spec(xs2), spec(ws2), nullptr);
  EXPECT_EQ(xs2, xs) << "the spectra of the same values";
  EXPECT_EQ(ws2, ws);
  auto dxhv = out_view(dxh, d.input_shape()), dwhv = out_view(dwh, d.weight_shape());
  pl.backward(in_view(g.h, d.output_shape()), spec(xs2), spec(ws2), &dxhv, &dwhv, dbh.data(),
              nullptr);
  expect_rounded_from(yh, y, "y");
  expect_rounded_from(dxh, dx, "grad_input");
  expect_rounded_from(dwh, dw, "grad_weight");
  expect_rounded_from(dbh, db, "grad_bias");
  // forward_spectra and the spectra calls
  std::vector<X> y2(d.output_size());
  pl.forward_spectra(spec(xs), spec(ws), b.h.data(), out_view(y2, d.output_shape()), nullptr);
  expect_rounded_from(y2, y, "forward_spectra");
  std::fill(xs2.begin(), xs2.end(), T(0));
  pl.input_spectrum(in_view(x.h, d.input_shape()), spec(xs2), nullptr);
  EXPECT_EQ(xs2, xs);
  std::fill(ws2.begin(), ws2.end(), T(0));
  pl.weight_spectrum(in_view(w.h, d.weight_shape()), spec(ws2), nullptr);
  EXPECT_EQ(ws2, ws);
}

template <class X>
void half_layer(cdx::transform_engine engine) {
  for (const auto& p :
       {make2d(3, 5, 6, {9, 8}, {3, 3}, {1, 1}, {1, 1}),
        make2d(2, 4, 6, {11, 10}, {3, 2}, {2, 3}, {1, 0}, {2, 1}, 2), make1d(2, 3, 4, 17, 3, 1, 1)})
    half_case<X, problem<float>>(p, engine);
  // 3D: 16-bit depth slices into the 2D stage, bias over depth, the unfused weight gradient.
  for (const auto& p : {conv_params::conv3d(2, 3, 4, {5, 6, 7}, {3, 3, 3}, {2, 1, 1}, {1, 1, 1}),
                        conv_params::conv3d(1, 4, 2, {4, 5, 6}, {2, 3, 2}, {1, 2, 1}, {0, 1, 1})})
    half_case<X, problem3<float>>(p, engine);
}

TEST(CudaHalf, Float16LayerIsTheFloatResultRoundedOnce) {
  half_layer<half>(cdx::transform_engine::fused);
  half_layer<half>(cdx::transform_engine::cufft);
}
TEST(CudaHalf, Bfloat16LayerIsTheFloatResultRoundedOnce) {
  half_layer<bfloat16>(cdx::transform_engine::fused);
  half_layer<bfloat16>(cdx::transform_engine::cufft);
}

/// A layer's forward and input gradient without a weight spectrum (the taps path, where the rule
/// takes it for float) in X against float32 on the rounded values: the same result rounded once,
/// the same launches (no weight spectrum made for the 16-bit call), and the mixing reads the taps
/// as 2-byte elements.
template <class X>
void taps_case(const conv_params& p, cdx::transform_engine engine) {
  using T = float;
  SCOPED_TRACE(name_of(p) + (engine == cdx::transform_engine::cufft ? " cufft" : " fused"));
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const problem<float> pr(p, 5);
  const auto& d = pr.d;
  const rounded16<X> x(pr.xt), w(pr.wt), b(pr.bt), g(pr.gt);
  host_executor ex;
  ex.measure_traffic();
  const cdx::plan_calls<T, host_executor> pl(ex, geo, blfft::cuda::cuda_plan_options{},
                                             cdx::default_chunk_scalars, engine);
  ASSERT_TRUE(pl.pipe().taps_path(cdx::mix_pass::forward)) << "a layer of the taps path";
  ASSERT_TRUE(pl.pipe().taps_path(cdx::mix_pass::input_grad));
  const auto& log = ex.stats().launch_log;
  std::vector<T> y(d.output_size()), dx(d.input_size()), xs(geo.x_spectrum_size()),
      xs2(geo.x_spectrum_size());
  std::vector<X> yh(d.output_size()), dxh(d.input_size());
  const auto names = [&] {
    std::vector<std::string> n;
    for (const auto& r : log) n.push_back(r.name);
    return n;
  };
  const auto mix_reads = [&] {
    int64_t mixes = 0, bytes = 0;
    for (const auto& r : log)
      if (r.name == std::string("mix")) ++mixes, bytes = r.read_bytes;
    EXPECT_EQ(mixes, 1) << "one mixing launch";
    return bytes;
  };
  const int64_t weight_bytes_saved = 2 * d.weight_size();  // 4 - 2 bytes a tap
  // forward: float, then X
  ex.stats().launch_log.clear();
  pl.forward(in_view(x.f, d.input_shape()), in_view(w.f, d.weight_shape()), b.f.data(),
             out_view(y, d.output_shape()), spec(xs), {}, nullptr);
  const auto forward_names = names();
  const int64_t forward_mix = mix_reads();
  ex.stats().launch_log.clear();
  pl.forward(in_view(x.h, d.input_shape()), in_view(w.h, d.weight_shape()), b.h.data(),
             out_view(yh, d.output_shape()), spec(xs2), {}, nullptr);
  EXPECT_EQ(names(), forward_names) << "the 16-bit forward makes no weight spectrum either";
  EXPECT_EQ(forward_mix - mix_reads(), weight_bytes_saved) << "the taps read as 2-byte elements";
  EXPECT_EQ(xs2, xs);
  expect_rounded_from(yh, y, "y (taps)");
  if (engine == cdx::transform_engine::fused)
    EXPECT_EQ(log.size(), 3u) << "analysis of x, the mixing, synthesis";
  // input gradient from the weight: float, then X
  auto dxv = out_view(dx, d.input_shape());
  auto dxhv = out_view(dxh, d.input_shape());
  ex.stats().launch_log.clear();
  pl.backward_with_weight(in_view(g.f, d.output_shape()), {}, in_view(w.f, d.weight_shape()), &dxv,
                          nullptr, nullptr, nullptr);
  const auto input_grad_names = names();
  const int64_t input_grad_mix = mix_reads();
  ex.stats().launch_log.clear();
  pl.backward_with_weight(in_view(g.h, d.output_shape()), {}, in_view(w.h, d.weight_shape()), &dxhv,
                          nullptr, nullptr, nullptr);
  EXPECT_EQ(names(), input_grad_names) << "the 16-bit input gradient makes no weight spectrum";
  EXPECT_EQ(input_grad_mix - mix_reads(), weight_bytes_saved);
  expect_rounded_from(dxh, dx, "grad_input (taps)");
}

template <class X>
void taps_layers(cdx::transform_engine engine) {
  // 1D (FCN-like: long signal, few taps, small channel counts), 2D with stride, padding,
  // dilation and groups: layers the taps rule takes.
  for (const auto& p :
       {make1d(2, 3, 4, 17, 3, 1, 1), make1d(2, 4, 6, 64, 5, 1, 2),
        make1d(3, 4, 2, 30, 5, 3, 2, 2, 2), make2d(3, 6, 5, {8, 7}, {3, 3}, {1, 1}, {1, 1}, {2, 1}),
        make2d(2, 4, 6, {11, 10}, {3, 2}, {2, 3}, {1, 0}, {2, 1}, 2)})
    taps_case<X>(p, engine);
}

TEST(CudaHalf, Float16WeightsMixFromTheTaps) {
  taps_layers<half>(cdx::transform_engine::fused);
  taps_layers<half>(cdx::transform_engine::cufft);
}
TEST(CudaHalf, Bfloat16WeightsMixFromTheTaps) {
  taps_layers<bfloat16>(cdx::transform_engine::fused);
  taps_layers<bfloat16>(cdx::transform_engine::cufft);
}

TEST(CudaHalf, AnalysisReadsTwoBytesAnElement) {
  // The traffic the emulation counts: x's analysis reads half the bytes of float32's.
  const auto p = make2d(2, 4, 3, {8, 8}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const problem<float> pr(p, 1);
  const rounded16<half> x(pr.xt);
  host_executor ex;
  ex.measure_traffic();
  const cdx::plan_calls<float, host_executor> pl(ex, geo);
  std::vector<float> xs(geo.x_spectrum_size());
  pl.input_spectrum(in_view(x.f, pr.d.input_shape()), spec(xs), nullptr);
  pl.input_spectrum(in_view(x.h, pr.d.input_shape()), spec(xs), nullptr);
  const auto& log = ex.stats().launch_log;
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].read_bytes - log[1].read_bytes, 2 * pr.d.input_size());
  EXPECT_EQ(log[0].write_bytes, log[1].write_bytes) << "the spectrum stays float";
}

}  // namespace
