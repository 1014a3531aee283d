// Coalesced tensor accesses of the CUDA kernels, emulated (issue #11): the emulator's
// coalescing meter (cuda_emulator.hpp) against hand counts, the channels_last forms of the cuFFT
// engine's pack / unpack against the width-first walk they replace, every kernel's requests to a
// layer's tensors (x, w, bias, y and the gradients; contiguous and channels_last; 1D, 2D, 3D; both
// transform engines; float and float16) within a stated bound, and channels_last results bit for
// bit the contiguous ones.

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_emulator.hpp"
#include "harness.hpp"
#include "oracles.hpp"
#include "plan_calls.hpp"
#include "storage.hpp"

namespace {

using namespace bt;
namespace cdx = blfft::cuda::detail;
using blfft::cuda::half;
using engine = cdx::transform_engine;

// ---------------------------------------------------------------------------------------------
// The meter itself
// ---------------------------------------------------------------------------------------------

/// A flat kernel: thread i reads src[i * stride] (i < n) and writes it to dst[i].
template <class V>
struct strided_copy : cdx::flat_kernel {
  static constexpr const char* name = "strided_copy";
  const V* src = nullptr;
  V* dst = nullptr;
  uint32_t n = 0, stride = 1;
  void operator()(cdx::idx3 b, cdx::idx3 t) const {
    uint32_t i;
    if (!cdx::flat_item(b, t, n, i)) return;
    cdx::gstore(dst + i, cdx::gload(src + int64_t(i) * stride));
  }
};

/// Runs strided_copy over n elements and returns the tally of its reads of src.
template <class V>
coalescing_meter::tally copy_reads(uint32_t n, uint32_t stride) {
  std::vector<V> src(size_t(n) * stride + 8), dst(n);
  host_executor ex;
  ex.watch_coalescing({{reinterpret_cast<uintptr_t>(src.data()),
                        reinterpret_cast<uintptr_t>(src.data() + src.size()), "src"}});
  strided_copy<V> k;
  k.src = src.data();
  k.dst = dst.data();
  k.n = n;
  k.stride = stride;
  ex.launch(cdx::flat_dims(n), k, nullptr);
  const auto& log = ex.stats().coalescing_log;
  EXPECT_EQ(log.size(), 1u) << "dst is not watched";
  return log.empty() ? coalescing_meter::tally{} : log[0].tally;
}

TEST(CudaCoalescing, MeterCountsSectorsPerRequest) {
  // 512 threads = 16 warps, one read each. Vectors are 32-byte aligned (operator new: 16 at
  // least; hence the bounds, not equalities, on the first sector of a warp's run).
  {
    const auto t = copy_reads<float>(512, 1);  // 128 contiguous bytes a warp: 4 or 5 sectors
    EXPECT_EQ(t.requests, 16);
    EXPECT_EQ(t.ideal, 16 * 4);
    EXPECT_GE(t.sectors, 16 * 4);
    EXPECT_LE(t.sectors, 16 * 5);
  }
  {
    const auto t = copy_reads<float>(512, 8);  // 32 bytes apart: a sector a lane
    EXPECT_EQ(t.requests, 16);
    EXPECT_EQ(t.sectors, 16 * 32);
    EXPECT_EQ(t.ideal, 16 * 4);
    EXPECT_DOUBLE_EQ(t.excess(), 8.0);
  }
  {
    const auto t = copy_reads<half>(512, 1);  // 64 bytes a warp: 2 or 3 sectors
    EXPECT_EQ(t.ideal, 16 * 2);
    EXPECT_LE(t.sectors, 16 * 3);
  }
  {
    const auto t = copy_reads<float>(512, 0);  // every lane the same address: one sector
    EXPECT_EQ(t.requests, 16);
    EXPECT_EQ(t.sectors, 16);
    EXPECT_EQ(t.ideal, 16);
  }
  {
    const auto t = copy_reads<float>(40, 1);  // a partial warp: 8 active lanes, 32 bytes
    EXPECT_EQ(t.requests, 2);
    EXPECT_EQ(t.ideal, 4 + 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Layouts
// ---------------------------------------------------------------------------------------------

/// torch's channels_last (rank 3 to 5): a contiguous (N, C, spatial...) tensor's strides when
/// stored as (N, spatial..., C).
std::vector<i64> channels_last_strides(const std::vector<i64>& s) {
  std::vector<i64> st(s.size());
  st[1] = 1;
  i64 run = s[1];
  for (size_t a = s.size() - 1; a >= 2; --a) {
    st[a] = run;
    run *= s[a];
  }
  st[0] = run;
  return st;
}
i64 spatial_of(const std::vector<i64>& s) {
  i64 n = 1;
  for (size_t a = 2; a < s.size(); ++a) n *= s[a];
  return n;
}
/// Contiguous values -> their channels_last positions, and back.
template <class V>
std::vector<V> to_channels_last(const std::vector<V>& v, const std::vector<i64>& s) {
  std::vector<V> o(v.size());
  const i64 C = s[1], S = spatial_of(s);
  for (i64 n = 0; n < s[0]; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 e = 0; e < S; ++e) o[(n * S + e) * C + c] = v[(n * C + c) * S + e];
  return o;
}
template <class V>
std::vector<V> from_channels_last(const std::vector<V>& v, const std::vector<i64>& s) {
  std::vector<V> o(v.size());
  const i64 C = s[1], S = spatial_of(s);
  for (i64 n = 0; n < s[0]; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 e = 0; e < S; ++e) o[(n * C + c) * S + e] = v[(n * S + e) * C + c];
  return o;
}

template <class V>
std::vector<V> random_values(i64 n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<V> v(static_cast<size_t>(n));
  for (auto& e : v) e = cdx::to_storage<V>(u(rng));
  return v;
}

template <class V>
uintptr_t address(const std::vector<V>& v, size_t i = 0) {
  return reinterpret_cast<uintptr_t>(v.data() + i);
}
template <class V>
coalescing_meter::range watch(const std::vector<V>& v, std::string what) {
  return {address(v), address(v, v.size()), std::move(what)};
}

/// One layer's forward (bias, spectra saved), backward (every gradient) and
/// backward_with_weight (the taps path; float only), with X tensors contiguous or channels_last (x, y and the
/// gradients of the activations; `weights_too`: w and grad_weight as well). Results in the
/// contiguous order; the coalescing log when `meter`.
template <class X>
struct layer_run {
  std::vector<std::vector<X>> results;  // y, grad_input, grad_weight, grad_bias, grad_input (taps)
  std::vector<host_executor::counters::coalescing_record> log;

  layer_run(const conv_params& p, engine e, bool nhwc, bool weights_too, bool meter) {
    using T = float;
    const auto geo = blfft::make_geometry(p, compression::rate(0.5));
    const auto xs_shape = geo.input_shape(), ys_shape = geo.output_shape(),
               ws_shape = geo.weight_shape();
    const std::vector<i64> xsh(xs_shape.begin(), xs_shape.end()),
        ysh(ys_shape.begin(), ys_shape.end()), wsh(ws_shape.begin(), ws_shape.end());
    const auto layout = [&](const std::vector<X>& v, const std::vector<i64>& s, bool cl) {
      return cl ? to_channels_last(v, s) : v;
    };
    const bool wcl = nhwc && weights_too;
    const auto x = layout(random_values<X>(geo.input_size(), 1), xsh, nhwc);
    const auto w = layout(random_values<X>(geo.weight_size(), 2), wsh, wcl);
    const auto g = layout(random_values<X>(geo.output_size(), 3), ysh, nhwc);
    const auto bias = random_values<X>(p.out_channels, 4);
    std::vector<X> y(static_cast<size_t>(geo.output_size())), dx(x.size()),
        dw(w.size()), db(bias.size()), dx2(x.size());
    std::vector<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
    const auto strides = [&](const std::vector<i64>& s, bool cl) {
      if (cl) return channels_last_strides(s);
      const auto c = tensor_view<X>::contiguous(nullptr, s).strides;
      return std::vector<i64>(c.begin(), c.end());
    };
    const auto in = [&](const std::vector<X>& v, const std::vector<i64>& s, bool cl) {
      return tensor_view<const X>(v.data(), s, strides(s, cl));
    };
    const auto out = [&](std::vector<X>& v, const std::vector<i64>& s, bool cl) {
      return tensor_view<X>(v.data(), s, strides(s, cl));
    };
    host_executor ex;
    if (meter)
      ex.watch_coalescing({watch(x, "x"), watch(w, "w"), watch(bias, "bias"), watch(y, "y"),
                           watch(g, "grad_output"), watch(dx, "grad_input"),
                           watch(dw, "grad_weight"), watch(db, "grad_bias"),
                           watch(dx2, "grad_input (taps)")});
    const cdx::plan_calls<T, host_executor> pl(ex, geo, blfft::cuda::cuda_plan_options{},
                                               cdx::default_chunk_scalars, e);
    pl.forward(in(x, xsh, nhwc), in(w, wsh, wcl), bias.data(), out(y, ysh, nhwc), spec(xs),
               spec(ws), nullptr);
    const auto dxv = out(dx, xsh, nhwc), dwv = out(dw, wsh, wcl), dx2v = out(dx2, xsh, nhwc);
    pl.backward(in(g, ysh, nhwc), spec(xs), spec(ws), &dxv, &dwv, db.data(), nullptr);
    if constexpr (std::is_same_v<X, T>)  // (no 16-bit overload: Python up-casts there)
      pl.backward_with_weight(in(g, ysh, nhwc), nullptr, in(w, wsh, wcl), &dx2v, nullptr, nullptr,
                              nullptr);
    const auto back = [&](const std::vector<X>& v, const std::vector<i64>& s, bool cl) {
      return cl ? from_channels_last(v, s) : v;
    };
    results = {back(y, ysh, nhwc), back(dx, xsh, nhwc), back(dw, wsh, wcl), db,
               back(dx2, xsh, nhwc)};
    log = ex.stats().coalescing_log;
  }
};

/// The layers of the checks: channel counts of 32 and more (a warp's lanes on one pixel's
/// channels), 1D, 2D (stride, padding, dilation), 3D.
std::vector<conv_params> layers() {
  return {make2d(2, 32, 40, {7, 6}, {3, 3}, {1, 1}, {1, 1}),
          make2d(1, 40, 32, {9, 8}, {3, 3}, {2, 1}, {1, 0}, {1, 2}), make1d(2, 32, 33, 20, 3, 1, 1),
          conv_params::conv3d(1, 32, 32, {3, 4, 5}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1})};
}

template <class V>
std::vector<uint16_t> bits16(const std::vector<V>& v) {
  std::vector<uint16_t> b;
  for (const auto& e : v) b.push_back(e.bits);
  return b;
}

TEST(CudaCoalescing, ChannelsLastEqualsContiguousBitwise) {
  // The tiled pack / unpack (cuFFT engine) and the fused kernels' channels-fastest walk change
  // the order of the loads and stores only: every result, the bias gradient included, is the
  // contiguous call's bit for bit, float and float16, weights channels_last too.
  const char* names[] = {"y", "grad_input", "grad_weight", "grad_bias", "grad_input (taps)"};
  for (const auto& p : layers())
    for (auto e : {engine::fused, engine::cufft}) {
      SCOPED_TRACE(name_of(p) + (e == engine::fused ? " fused" : " cufft"));
      const layer_run<float> a(p, e, false, false, false), b(p, e, true, true, false);
      for (size_t i = 0; i < a.results.size(); ++i) EXPECT_EQ(b.results[i], a.results[i]) << names[i];
      const layer_run<half> ah(p, e, false, false, false), bh(p, e, true, false, false);
      for (size_t i = 0; i < ah.results.size(); ++i)
        EXPECT_EQ(bits16(bh.results[i]), bits16(ah.results[i])) << "float16 " << names[i];
    }
}

TEST(CudaCoalescing, Explore) {
  for (const auto& p : layers())
    for (auto e : {engine::fused, engine::cufft})
      for (bool nhwc : {false, true}) {
        const layer_run<float> r(p, e, nhwc, true, true);
        std::printf("== %s %s %s\n", name_of(p).c_str(), e == engine::fused ? "fused" : "cufft",
                    nhwc ? "nhwc" : "nchw");
        for (const auto& c : r.log)
          std::printf("  %-22s %-18s %s req %6ld sect/req %6.2f excess %5.2f\n", c.name.c_str(),
                      c.what.c_str(), c.write ? "W" : "R", long(c.tally.requests),
                      c.tally.sectors_per_request(), c.tally.excess());
      }
}

}  // namespace
