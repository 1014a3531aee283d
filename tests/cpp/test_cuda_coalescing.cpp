// Coalesced tensor accesses of the CUDA kernels, emulated (issue #11): the emulator's
// coalescing meter (cuda_emulator.hpp) against hand counts, the channels_last forms of the cuFFT
// engine's pack / unpack against the width-first walk they replace, every kernel's requests to a
// layer's tensors (x, w, bias, y and the gradients; contiguous and channels_last; 1D, 2D, 3D; both
// transform engines; float and float16) within a stated bound, and channels_last results bit for
// bit the contiguous ones; the bias gradient's runs of pixels (grid, oracle, footprints).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
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

/// Tensors 256-byte aligned, as cudaMalloc's and torch's caching allocator's are (a heap vector's
/// 16 would shift every warp's run across a sector boundary).
template <class V>
struct aligned256 {
  using value_type = V;
  aligned256() = default;
  template <class U>
  aligned256(const aligned256<U>&) {}
  V* allocate(std::size_t n) {
    return static_cast<V*>(::operator new(n * sizeof(V), std::align_val_t(256)));
  }
  void deallocate(V* p, std::size_t) { ::operator delete(p, std::align_val_t(256)); }
  template <class U>
  bool operator==(const aligned256<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const aligned256<U>&) const {
    return false;
  }
};
template <class V>
using avec = std::vector<V, aligned256<V>>;

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
  avec<V> src(size_t(n) * stride + 8), dst(n);
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
  // 512 threads = 16 warps, one read each; src 256-byte aligned.
  {
    const auto t = copy_reads<float>(512, 1);  // 128 contiguous bytes a warp: 4 sectors
    EXPECT_EQ(t.requests, 16);
    EXPECT_EQ(t.ideal, 16 * 4);
    EXPECT_EQ(t.sectors, 16 * 4);
  }
  {
    const auto t = copy_reads<float>(512, 8);  // 32 bytes apart: a sector a lane
    EXPECT_EQ(t.requests, 16);
    EXPECT_EQ(t.sectors, 16 * 32);
    EXPECT_EQ(t.ideal, 16 * 4);
    EXPECT_DOUBLE_EQ(t.excess(), 8.0);
  }
  {
    const auto t = copy_reads<half>(512, 1);  // 64 bytes a warp: 2 sectors
    EXPECT_EQ(t.ideal, 16 * 2);
    EXPECT_EQ(t.sectors, 16 * 2);
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
    EXPECT_EQ(t.sectors, 4 + 1);
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
avec<V> to_channels_last(const avec<V>& v, const std::vector<i64>& s) {
  avec<V> o(v.size());
  const i64 C = s[1], S = spatial_of(s);
  for (i64 n = 0; n < s[0]; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 e = 0; e < S; ++e) o[(n * S + e) * C + c] = v[(n * C + c) * S + e];
  return o;
}
template <class V>
avec<V> from_channels_last(const avec<V>& v, const std::vector<i64>& s) {
  avec<V> o(v.size());
  const i64 C = s[1], S = spatial_of(s);
  for (i64 n = 0; n < s[0]; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 e = 0; e < S; ++e) o[(n * C + c) * S + e] = v[(n * S + e) * C + c];
  return o;
}

template <class V>
avec<V> random_values(i64 n, unsigned seed) {
  std::mt19937 rng(seed);
  avec<V> v(static_cast<size_t>(n));
  if constexpr (std::is_same_v<V, double>) {  // every bit of the mantissa
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    for (auto& e : v) e = u(rng);
  } else {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& e : v) e = cdx::to_storage<V>(u(rng));
  }
  return v;
}

template <class Vec>
uintptr_t address(const Vec& v, size_t i = 0) {
  return reinterpret_cast<uintptr_t>(v.data() + i);
}
template <class Vec>
coalescing_meter::range watch(const Vec& v, std::string what) {
  return {address(v), address(v, v.size()), std::move(what)};
}

/// One layer's forward (bias, spectra saved), backward (every gradient) and
/// backward_with_weight (the taps path; float only), with X tensors contiguous or channels_last (x,
/// y and the gradients of the activations; `weights_too`: w and grad_weight as well). Results in
/// the contiguous order; the coalescing log when `meter`.
template <class X>
struct layer_run {
  std::vector<avec<X>> results;  // y, grad_input, grad_weight, grad_bias, grad_input (taps)
  std::vector<host_executor::counters::coalescing_record> log;

  layer_run(const conv_params& p, engine e, bool nhwc, bool weights_too, bool meter,
            int64_t chunk_scalars = cdx::default_chunk_scalars) {
    using T = float;
    const auto geo = blfft::make_geometry(p, compression::rate(0.5));
    const auto xs_shape = geo.input_shape(), ys_shape = geo.output_shape(),
               ws_shape = geo.weight_shape();
    const std::vector<i64> xsh(xs_shape.begin(), xs_shape.end()),
        ysh(ys_shape.begin(), ys_shape.end()), wsh(ws_shape.begin(), ws_shape.end());
    const auto layout = [&](const avec<X>& v, const std::vector<i64>& s, bool cl) {
      return cl ? to_channels_last(v, s) : v;
    };
    const bool wcl = nhwc && weights_too;
    const auto x = layout(random_values<X>(geo.input_size(), 1), xsh, nhwc);
    const auto w = layout(random_values<X>(geo.weight_size(), 2), wsh, wcl);
    const auto g = layout(random_values<X>(geo.output_size(), 3), ysh, nhwc);
    const auto bias = random_values<X>(p.out_channels, 4);
    avec<X> y(static_cast<size_t>(geo.output_size())), dx(x.size()), dw(w.size()), db(bias.size()),
        dx2(x.size());
    avec<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
    const auto strides = [&](const std::vector<i64>& s, bool cl) {
      if (cl) return channels_last_strides(s);
      const auto c = tensor_view<X>::contiguous(nullptr, s).strides;
      return std::vector<i64>(c.begin(), c.end());
    };
    const auto in = [&](const avec<X>& v, const std::vector<i64>& s, bool cl) {
      return tensor_view<const X>(v.data(), s, strides(s, cl));
    };
    const auto out = [&](avec<X>& v, const std::vector<i64>& s, bool cl) {
      return tensor_view<X>(v.data(), s, strides(s, cl));
    };
    host_executor ex;
    if (meter)
      ex.watch_coalescing({watch(x, "x"), watch(w, "w"), watch(bias, "bias"), watch(y, "y"),
                           watch(g, "grad_output"), watch(dx, "grad_input"),
                           watch(dw, "grad_weight"), watch(db, "grad_bias"),
                           watch(dx2, "grad_input (taps)")});
    const cdx::plan_calls<T, host_executor> pl(ex, geo, blfft::cuda::cuda_plan_options{},
                                               chunk_scalars, e);
    pl.forward(in(x, xsh, nhwc), in(w, wsh, wcl), bias.data(), out(y, ysh, nhwc), spec(xs),
               spec(ws), nullptr);
    const auto dxv = out(dx, xsh, nhwc), dwv = out(dw, wsh, wcl), dx2v = out(dx2, xsh, nhwc);
    pl.backward(in(g, ysh, nhwc), spec(xs), spec(ws), &dxv, &dwv, db.data(), nullptr);
    if constexpr (std::is_same_v<X, T>)  // (no 16-bit overload: Python up-casts there)
      pl.backward_with_weight(in(g, ysh, nhwc), nullptr, in(w, wsh, wcl), &dx2v, nullptr, nullptr,
                              nullptr);
    const auto back = [&](const avec<X>& v, const std::vector<i64>& s, bool cl) {
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

template <class Vec>
std::vector<uint16_t> bits16(const Vec& v) {
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
      for (size_t i = 0; i < a.results.size(); ++i)
        EXPECT_EQ(b.results[i], a.results[i]) << names[i];
      const layer_run<half> ah(p, e, false, false, false), bh(p, e, true, false, false);
      for (size_t i = 0; i < ah.results.size(); ++i)
        EXPECT_EQ(bits16(bh.results[i]), bits16(ah.results[i])) << "float16 " << names[i];
    }
}

TEST(CudaCoalescing, ChannelsLastHostileShapesBitwise) {
  // The tiled kernels' edges: channel counts far from 16 / 32 (partial image tiles of the pack /
  // unpack, partial channel blocks of bias_grad_tiled), rows wider than a column tile (70),
  // stride and dilation along the width (samples every other grid column), groups, batch 1,
  // 1-pixel and 1-wide maps, C == 1 (the flat pack beside the tiled unpack), and chunks of one
  // image or a few (tiles starting at chunk images j0 that are not multiples of 32): each
  // channels_last result is the contiguous one's bit for bit, on the cuFFT engine (the tiled
  // kernels) and the fused one.
  const char* names[] = {"y", "grad_input", "grad_weight", "grad_bias", "grad_input (taps)"};
  const std::vector<conv_params> hostile = {
      make2d(3, 5, 7, {6, 70}, {3, 3}, {1, 2}, {1, 1}, {1, 2}),
      make2d(2, 6, 9, {5, 33}, {2, 3}, {2, 3}, {0, 2}, {1, 1}, 3),
      make2d(1, 70, 17, {3, 2}, {1, 2}, {1, 1}, {0, 0}),
      make2d(2, 3, 5, {1, 1}, {1, 1}, {1, 1}, {0, 0}),
      make2d(2, 1, 18, {4, 5}, {3, 3}, {1, 1}, {1, 1}),
      make1d(1, 33, 17, 1, 1, 1, 0),
      make1d(2, 20, 35, 41, 4, 3, 2)};
  for (const auto& p : hostile)
    for (auto e : {engine::cufft, engine::fused})
      for (int64_t chunk : {int64_t(1), int64_t(3000), cdx::default_chunk_scalars}) {
        SCOPED_TRACE(name_of(p) + (e == engine::fused ? " fused" : " cufft") + " chunk " +
                     std::to_string(chunk));
        const layer_run<float> a(p, e, false, false, false, chunk),
            b(p, e, true, true, false, chunk);
        for (size_t i = 0; i < a.results.size(); ++i)
          EXPECT_EQ(b.results[i], a.results[i]) << names[i];
        const layer_run<half> ah(p, e, false, false, false, chunk),
            bh(p, e, true, false, false, chunk);
        for (size_t i = 0; i < ah.results.size(); ++i)
          EXPECT_EQ(bits16(bh.results[i]), bits16(ah.results[i])) << "float16 " << names[i];
      }
}

/// The largest excess (sectors over the fewest possible) of any kernel's requests to the
/// watched ranges named in `whats`, and where.
template <class Log>
std::pair<double, std::string> worst(const Log& log, const std::vector<std::string>& whats) {
  std::pair<double, std::string> w{1.0, "none"};
  for (const auto& c : log) {
    if (std::find(whats.begin(), whats.end(), c.what) == whats.end()) continue;
    if (c.tally.excess() > w.first)
      w = {c.tally.excess(), c.name + " " + (c.write ? "writing " : "reading ") + c.what};
  }
  return w;
}

TEST(CudaCoalescing, ActivationTensorsNearIdealOnBothEngines) {
  // Every kernel's requests to x, y, bias and the activations' gradients, contiguous and
  // channels_last (32+ channels), 1D/2D/3D, both transform engines, float and float16: at most
  // 1.5x the fewest sectors that hold the bytes for float, 2x for float16 (a warp's run crossing
  // a sector boundary; the small maps' rows of 5 to 9 samples, which in 3D depth slices of a
  // contiguous tensor are runs of 40 bytes). The width-first walk of channels_last is 4x and more
  // (PackUnpackTiledAgainstWidthFirst). Weights are not bounded here: w and grad_weight are read
  // and written through L2 by every block (the taps path reads each weight element per
  // frequency) and are small. bias_grad_tiled's reads are bounded here too (grad_output).
  const std::vector<std::string> activations = {"x",           "y",          "bias",
                                                "grad_output", "grad_input", "grad_input (taps)"};
  for (const auto& p : layers())
    for (auto e : {engine::fused, engine::cufft})
      for (bool nhwc : {false, true}) {
        SCOPED_TRACE(name_of(p) + (e == engine::fused ? " fused" : " cufft") +
                     (nhwc ? " channels_last" : " contiguous"));
        const layer_run<float> r(p, e, nhwc, true, true);
        const auto [excess, where] = worst(r.log, activations);
        EXPECT_LE(excess, 1.5) << where;
        const layer_run<half> h(p, e, nhwc, true, true);
        const auto [excess16, where16] = worst(h.log, activations);
        EXPECT_LE(excess16, 2.0) << "float16: " << where16;
        // the tensor kernels of the engine ran (the log is not empty by accident)
        const char* pack = e == engine::fused ? "dft_analyse"
                           : nhwc             ? "pack_rows_tiled"
                                              : "pack_rows";
        EXPECT_TRUE(std::any_of(r.log.begin(), r.log.end(), [&](const auto& c) {
          return c.name == pack && c.what == "x";
        })) << pack;
      }
}

/// The rows buffer the flat and the tiled pack make of a channels_last (N, C, H, W) float tensor,
/// and the tally of their reads of it.
struct pack_result {
  avec<float> rows;
  coalescing_meter::tally reads, writes;
};
pack_result pack_with(bool tiled, const avec<float>& x, const cdx::row_layout& rl, uint32_t images,
                      const cdx::image_view<const float>& v) {
  pack_result out;
  out.rows.assign(size_t(images) * rl.Rh * rl.Lw, -1.0f);
  host_executor ex;
  ex.watch_coalescing({watch(x, "x"), watch(out.rows, "rows")});
  if (tiled) {
    cdx::pack_rows_tiled<float> k;
    k.src = v;
    k.rows = out.rows.data();
    k.images = images;
    k.rl = rl;
    ex.launch(cdx::row_tile_dims(k, rl.Lw), k, nullptr);
  } else {
    cdx::pack_rows<float> k;
    k.src = v;
    k.rows = out.rows.data();
    k.n = images * rl.Rh * rl.Lw;
    k.rl = rl;
    ex.launch(cdx::flat_dims(k.n), k, nullptr);
  }
  for (const auto& c : ex.stats().coalescing_log) (c.write ? out.writes : out.reads) = c.tally;
  return out;
}

TEST(CudaCoalescing, PackUnpackTiledAgainstWidthFirst) {
  // A channels_last (2, 64, 5, 60) tensor padded onto 64-column rows (offset 2, every column
  // that holds data): the flat pack walks the width fastest, 64 floats apart, so each lane of a
  // warp touches its own sector (the meter must see that: excess 8); the tiled pack reads the
  // channels fastest and writes the columns fastest, near-ideal both ways, and makes the same
  // buffer bit for bit. Then unpack (scale, bias) the buffer back: same bits, same contrast.
  const uint32_t N = 2, C = 64, H = 5, W = 60;
  const auto x = random_values<float>(N * C * H * W, 5);
  const cdx::image_view<const float> v{x.data(), H * W * C, 1, W * C, C};
  cdx::row_layout rl;
  rl.Lw = 64;
  rl.Rh = H;
  rl.Rw = W;
  rl.CH = C;
  rl.off_w = 2;
  const auto flat = pack_with(false, x, rl, N * C, v), tiled = pack_with(true, x, rl, N * C, v);
  EXPECT_EQ(tiled.rows, flat.rows);
  // (7.5, not 8: the lanes at padding columns load nothing)
  EXPECT_GE(flat.reads.excess(), 7.5) << "the width-first walk of channels_last";
  EXPECT_LE(tiled.reads.excess(), 1.05);
  EXPECT_LE(tiled.writes.excess(), 1.25);  // runs of 128 bytes, aligned or not
  EXPECT_LE(flat.writes.excess(), 1.25);

  const auto bias = random_values<float>(C, 6);
  const auto unpack = [&](bool tiled_kernel) {
    avec<float> y(x.size(), -1.0f);
    const cdx::image_view<float> yv{y.data(), H * W * C, 1, W * C, C};
    host_executor ex;
    ex.watch_coalescing({watch(y, "y")});
    if (tiled_kernel) {
      cdx::unpack_rows_tiled<float> k;
      k.rows = flat.rows.data();
      k.dst = yv;
      k.bias = bias.data();
      k.scale = 0.37f;
      k.images = N * C;
      k.rl = rl;
      ex.launch(cdx::row_tile_dims(k, rl.Rw), k, nullptr);
    } else {
      cdx::unpack_rows<float> k;
      k.rows = flat.rows.data();
      k.dst = yv;
      k.bias = bias.data();
      k.scale = 0.37f;
      k.n = N * C * H * W;
      k.rl = rl;
      ex.launch(cdx::flat_dims(k.n), k, nullptr);
    }
    return std::make_pair(y, ex.stats().coalescing_log.at(0).tally);
  };
  const auto [y_flat, t_flat] = unpack(false);
  const auto [y_tiled, t_tiled] = unpack(true);
  EXPECT_EQ(y_tiled, y_flat);
  for (size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(y_flat[i], x[i] * 0.37f + bias[i % C]) << i;  // the round trip, by hand
  EXPECT_GE(t_flat.excess(), 7.9);
  EXPECT_LE(t_tiled.excess(), 1.05);
}

// ---------------------------------------------------------------------------------------------
// The bias gradient: runs of pixels (bias_slicing_of), partials, their fixed-order sum
// ---------------------------------------------------------------------------------------------

/// The bias gradient alone of grad_output g (contiguous values, stored channels_last when `nhwc`).
template <class X>
struct bias_run {
  avec<X> db;
  host_executor::counters stats;
  bias_run(const conv_params& p, const avec<X>& g, bool nhwc, bool meter = false,
           bool traffic = false) {
    const auto geo = blfft::make_geometry(p, compression::rate(0.5));
    const auto ys = geo.output_shape();
    const std::vector<i64> s(ys.begin(), ys.end());
    const auto gl = nhwc ? to_channels_last(g, s) : g;
    std::vector<i64> st = channels_last_strides(s);
    if (!nhwc) {
      const auto c = tensor_view<X>::contiguous(nullptr, s).strides;
      st.assign(c.begin(), c.end());
    }
    db.assign(static_cast<size_t>(p.out_channels), cdx::to_storage<X>(-7.0f));
    host_executor ex;
    if (meter) ex.watch_coalescing({watch(gl, "grad_output"), watch(db, "grad_bias")});
    if (traffic) ex.measure_traffic();
    using T = std::conditional_t<std::is_same_v<X, double>, double, float>;
    const cdx::plan_calls<T, host_executor> pl(ex, geo, blfft::cuda::cuda_plan_options{},
                                               cdx::default_chunk_scalars, engine::cufft);
    // backward() with grad_bias only: bias_grad() alone, 16-bit tensors too
    pl.backward(tensor_view<const X>(gl.data(), s, st), nullptr, nullptr, nullptr, nullptr,
                db.data(), nullptr);
    stats = ex.stats();
  }
};

/// Pixels (n, d, h, w) of a layer's output.
int64_t pixels_of(const conv_params& p) {
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const auto s = geo.output_shape();
  return s[0] * spatial_of(std::vector<i64>(s.begin(), s.end()));
}

/// The double-precision sum per channel of contiguous g: the oracle.
template <class X>
std::vector<double> bias_oracle(const conv_params& p, const avec<X>& g, std::vector<double>& abs) {
  const int64_t F = p.out_channels, S = pixels_of(p) / p.batch;
  std::vector<double> o(static_cast<size_t>(F)), a(o.size());
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t e = 0; e < S; ++e) {
        const double v = cdx::to_compute<double>(g[static_cast<size_t>((n * F + f) * S + e)]);
        o[f] += v;
        a[f] += std::abs(v);
      }
  abs = a;
  return o;
}

TEST(CudaBiasGrad, SlicingRuleCoversThePixelsInWholeLaneRuns) {
  // The runs tile [0, P) with lengths a multiple of the lanes, at least bias_min_slice pixels
  // (unless one run takes everything), and at least the rule's want runs (enough for
  // bias_target_blocks blocks of the channels_adjacent kernel where the pixels allow), at most
  // 1.25 want + 1.
  for (int64_t P : std::vector<int64_t>{1, 49, 255, 256, 1023, 1025, 5000, 100352, 3211264,
                                        int64_t(1) << 30, int64_t(1) << 33})
    for (int64_t F : {1, 3, 16, 17, 64, 512, 4096, 8192}) {
      SCOPED_TRACE(std::to_string(P) + " pixels, F " + std::to_string(F));
      const auto s = cdx::bias_slicing_of(P, F);
      ASSERT_GE(s.slices, 1u);
      EXPECT_EQ(s.len % cdx::reduce_threads, 0);
      EXPECT_GE(int64_t(s.slices) * s.len, P);
      EXPECT_LT(int64_t(s.slices - 1) * s.len, P);  // no empty run
      if (s.slices > 1) {
        EXPECT_GE(int64_t(s.len), cdx::bias_min_slice);
      }
      const int64_t tiles = cdx::ceil_div(F, cdx::bias_channels);
      const int64_t want = std::min(cdx::ceil_div(cdx::bias_target_blocks, tiles),
                                    std::max<int64_t>(1, P / cdx::bias_min_slice));
      EXPECT_GE(int64_t(s.slices), want) << "under-filled";
      EXPECT_LE(double(s.slices), 1.25 * want + 1);
    }
}

TEST(CudaBiasGrad, ReviewersShapeFillsAnH200) {
  // N = 32, F = 64, 56 x 56 (25.7 MB of float): the channels_adjacent kernel ran ceil(64 / 16)
  // = 4 blocks and the contiguous one 64; now both at least 2 blocks per SM of a 132-SM GPU,
  // then bias_grad_sum. Both layouts bit for bit equal, within float rounding of the oracle.
  const auto p = make2d(32, 3, 64, {56, 56}, {1, 1}, {1, 1}, {0, 0});
  const int64_t F = p.out_channels;
  const auto g = random_values<float>(pixels_of(p) * F, 11);
  std::vector<double> abs;
  const auto want = bias_oracle(p, g, abs);
  const bias_run<float> a(p, g, false), b(p, g, true);
  EXPECT_EQ(b.db, a.db);
  for (const auto* r : {&a, &b}) {
    ASSERT_EQ(r->stats.grid_log.size(), 2u);
    const auto& d = r->stats.grid_log[0].dims;
    EXPECT_GE(int64_t(d.grid.x) * d.grid.y, 2 * 132) << r->stats.grid_log[0].name;
    EXPECT_EQ(r->stats.grid_log[1].name, std::string("bias_grad_sum"));
  }
  EXPECT_EQ(b.stats.grid_log[0].name, std::string("bias_grad_tiled"));
  // the rule by hand: min(ceil(512 / 4), floor(100352 / 1024)) = 98 runs of 1024 pixels
  EXPECT_EQ(b.stats.grid_log[0].dims.grid.x, 4u);
  EXPECT_EQ(b.stats.grid_log[0].dims.grid.y, 98u);
  EXPECT_EQ(a.stats.grid_log[0].dims.grid.x, 64u);
  for (int64_t f = 0; f < F; ++f)  // float rounding of the result, double sums (1e-12)
    EXPECT_NEAR(a.db[f], want[f], 0x1p-24 * std::abs(want[f]) + 1e-12 * abs[f]) << f;
}

TEST(CudaBiasGrad, HostileShapesBitwiseAcrossLayoutsAndNearTheOracle) {
  // F not a multiple of 16 or 32, F = 1, 1x1 maps, batch 1, 3D depth slices, runs that end in
  // a partial lane row and cross images mid-row; one run and several; float and float16. Each
  // channels_last gradient is the contiguous one bit for bit, deterministic (a second call), and
  // within the result's rounding (float 2^-24, float16 2^-11 after float: 2^-11 + 2^-24,
  // relative) plus 1e-12 of the absolute sum of the oracle's double sum. float64 too, where the
  // double sums come back unrounded (a float result would hide most orders' differences).
  const std::vector<conv_params> shapes = {
      make2d(3, 2, 17, {37, 45}, {1, 1}, {1, 1}, {0, 0}),  // 4995 pixels: 5 runs, a tail
      make2d(1, 2, 1, {61, 83}, {1, 1}, {1, 1}, {0, 0}),   // F = 1, batch 1
      make2d(2, 3, 33, {9, 7}, {3, 3}, {1, 1}, {1, 1}),    // one run, F = 33
      make2d(3000, 1, 5, {1, 1}, {1, 1}, {1, 1}, {0, 0}),  // 1x1 maps, 3 runs
      make1d(7, 2, 40, 300, 1, 1, 0),
      conv_params::conv3d(2, 2, 18, {6, 11, 20}, {1, 1, 1}, {1, 1, 1}, {0, 0, 0})};
  int multi = 0;
  for (const auto& p : shapes) {
    SCOPED_TRACE(name_of(p));
    const int64_t F = p.out_channels;
    const auto runs = cdx::bias_slicing_of(pixels_of(p), F).slices;
    multi += runs > 1;
    const auto check = [&](auto zero, double rel) {
      using X = decltype(zero);
      const auto g = random_values<X>(pixels_of(p) * F, 12);
      std::vector<double> abs;
      const auto want = bias_oracle(p, g, abs);
      const bias_run<X> a(p, g, false), b(p, g, true), a2(p, g, false);
      EXPECT_EQ(a.stats.kernels, runs > 1 ? 2 : 1);
      for (int64_t f = 0; f < F; ++f) {
        const double ga = cdx::to_compute<double>(a.db[f]), gb = cdx::to_compute<double>(b.db[f]);
        EXPECT_EQ(std::memcmp(&a.db[f], &b.db[f], sizeof(X)), 0) << f << ": " << ga << " " << gb;
        EXPECT_EQ(std::memcmp(&a.db[f], &a2.db[f], sizeof(X)), 0) << f;
        EXPECT_NEAR(ga, want[f], rel * std::abs(want[f]) + 1e-12 * abs[f]) << f;
      }
    };
    check(double{}, 0.0);  // the double sums' bits: any difference of order shows
    check(float{}, 0x1p-24);
    check(half{}, 0x1p-11 + 0x1p-24);
  }
  EXPECT_EQ(multi, 5) << "shapes of several runs";
}

TEST(CudaTraffic, BiasGradReadsTheGradientOnceAndItsPartials) {
  // Several runs: the first launch reads grad_output once and writes F x runs double partials;
  // bias_grad_sum reads them and writes the gradient. Both layouts. One run: one launch.
  const auto p = make2d(3, 2, 17, {37, 45}, {1, 1}, {1, 1}, {0, 0});
  const int64_t F = p.out_channels, P = pixels_of(p);
  const auto runs = cdx::bias_slicing_of(P, F).slices;
  ASSERT_GT(runs, 1u);
  const auto g = random_values<float>(P * F, 13);
  for (bool nhwc : {false, true}) {
    const bias_run<float> r(p, g, nhwc, false, true);
    const auto& log = r.stats.launch_log;
    ASSERT_EQ(log.size(), 2u);
    EXPECT_EQ(log[0].read_bytes, int64_t(sizeof(float)) * P * F);
    EXPECT_EQ(log[0].write_bytes, int64_t(sizeof(double)) * F * runs);
    EXPECT_EQ(log[1].read_bytes, int64_t(sizeof(double)) * F * runs);
    EXPECT_EQ(log[1].write_bytes, int64_t(sizeof(float)) * F);
    EXPECT_EQ(r.stats.temp_bytes, int64_t(sizeof(double)) * F * runs);
  }
  const auto small = make2d(2, 3, 33, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  const bias_run<float> one(small, random_values<float>(pixels_of(small) * 33, 14), true, false,
                            true);
  ASSERT_EQ(one.stats.launch_log.size(), 1u);
  EXPECT_EQ(one.stats.launch_log[0].write_bytes, int64_t(sizeof(float)) * 33);
  EXPECT_EQ(one.stats.temps, 0);
}

TEST(CudaCoalescing, BiasGradRunsCoalescedInBothLayouts) {
  // Several runs (F = 32 and 48, maps of 56 x 56 and 28 x 28), float and float16: grad_output's
  // requests within 1.5x (float) / 2x (float16) of the fewest sectors, as the layer bound.
  for (const auto& p : {make2d(4, 1, 32, {28, 28}, {1, 1}, {1, 1}, {0, 0}),
                        make2d(2, 1, 48, {56, 56}, {1, 1}, {1, 1}, {0, 0})})
    for (bool nhwc : {false, true}) {
      SCOPED_TRACE(name_of(p) + (nhwc ? " channels_last" : " contiguous"));
      ASSERT_GT(cdx::bias_slicing_of(pixels_of(p), p.out_channels).slices, 1u);
      const int64_t n = pixels_of(p) * p.out_channels;
      const bias_run<float> r(p, random_values<float>(n, 15), nhwc, true);
      const auto [excess, where] = worst(r.stats.coalescing_log, {"grad_output"});
      EXPECT_LE(excess, 1.5) << where;
      const bias_run<half> h(p, random_values<half>(n, 15), nhwc, true);
      const auto [excess16, where16] = worst(h.stats.coalescing_log, {"grad_output"});
      EXPECT_LE(excess16, 2.0) << where16;
      EXPECT_FALSE(r.stats.coalescing_log.empty());
    }
}

}  // namespace
