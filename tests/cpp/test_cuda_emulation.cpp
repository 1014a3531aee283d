// The CUDA backend's kernels and host pipeline, run on the CPU (docs/design.md section 3): no GPU
// and no CUDA toolkit needed. cuda_emulator.hpp loops over each launch grid running the same
// __host__ __device__ kernel code that kernels.cu wraps; the pipeline is the one the CUDA plan
// runs. Checked here:
// - launch geometry: every output element covered exactly once, no index out of range, shared
//   memory slots written before they are read, for awkward sizes;
// - forward and backward against the oracles and against the CPU backend at r = 0 and r > 0,
//   1D and 2D, stride / padding / dilation / groups, explicit kept sets, both mixing tiles,
//   chunked transforms; spectra interchangeable with the CPU backend's;
// - the energy map against the CPU backend's;
// - how many launches a forward and a backward take.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_emulator.hpp"
#include "cuda_harness.hpp"
#include "harness.hpp"
#include "oracles.hpp"
#include "plan_calls.hpp"

namespace {

using namespace bt;
namespace cdx = blfft::cuda::detail;

// ---------------------------------------------------------------------------------------------
// Launch geometry
// ---------------------------------------------------------------------------------------------

/// Every (block, thread) of a launch, in order.
template <class F>
void for_each_thread(const cdx::launch_dims& d, F&& f) {
  for (unsigned bz = 0; bz < d.grid.z; ++bz)
    for (unsigned by = 0; by < d.grid.y; ++by)
      for (unsigned bx = 0; bx < d.grid.x; ++bx)
        for (unsigned tz = 0; tz < d.block.z; ++tz)
          for (unsigned ty = 0; ty < d.block.y; ++ty)
            for (unsigned tx = 0; tx < d.block.x; ++tx)
              f(cdx::idx3{bx, by, bz}, cdx::idx3{tx, ty, tz});
}

TEST(CudaLaunchGeometry, FlatCoversEveryElementOnce) {
  for (int64_t n : {1, 2, 255, 256, 257, 511, 1000, 4097, 65537}) {
    const auto d = cdx::flat_dims(n);
    std::vector<int> hits(static_cast<size_t>(n), 0);
    for_each_thread(d, [&](cdx::idx3 b, cdx::idx3 t) {
      uint32_t i;
      if (cdx::flat_item(b, t, static_cast<uint32_t>(n), i)) {
        ASSERT_LT(i, n);
        ++hits[i];
      }
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << "n = " << n << ", element " << i;
    EXPECT_LT((d.grid.x - 1) * cdx::flat_threads, n) << "a block with nothing to do";
  }
}

TEST(CudaLaunchGeometry, TileCopyCoversEveryElementOnce) {
  using K = cdx::tile_copy<float>;
  for (auto [Z, U, V] : std::vector<std::tuple<uint32_t, uint32_t, uint32_t>>{{1, 1, 1},
                                                                              {1, 31, 33},
                                                                              {3, 32, 32},
                                                                              {2, 33, 65},
                                                                              {5, 7, 100},
                                                                              {1, 100, 3},
                                                                              {4, 64, 1}}) {
    K k;
    k.Z = Z;
    k.U = U;
    k.V = V;
    cdx::launch_dims d;
    ASSERT_TRUE(cdx::tile_copy_dims(k, d));
    EXPECT_EQ(d.block.x * d.block.y, K::threads);
    std::map<std::tuple<uint32_t, uint32_t, uint32_t>, int> stores;
    // Per block: which shared slots phase 0 writes and phase 1 reads.
    std::map<unsigned, std::set<std::pair<uint32_t, uint32_t>>> loaded, read;
    for_each_thread(d, [&](cdx::idx3 b, cdx::idx3 t) {
      uint32_t z, u0, v0;
      k.block_origin(b, z, u0, v0);
      ASSERT_LT(z, Z);
      ASSERT_LT(u0, U);
      ASSERT_LT(v0, V);
      for (unsigned s = 0; s < K::tile / K::rows; ++s) {
        uint32_t lu, lv;
        K::load_slot(t, s, lu, lv);
        ASSERT_LT(lu, K::tile);
        ASSERT_LT(lv, K::tile);
        EXPECT_TRUE(loaded[b.y * d.grid.x + b.x].insert({lu, lv}).second) << "slot loaded twice";
        K::store_slot(t, s, lu, lv);
        read[b.y * d.grid.x + b.x].insert({lu, lv});
        if (u0 + lu < U && v0 + lv < V) ++stores[{z, u0 + lu, v0 + lv}];
      }
    });
    EXPECT_EQ(stores.size(), size_t(Z) * U * V) << Z << " x " << U << " x " << V;
    for (const auto& [at, n] : stores) ASSERT_EQ(n, 1);
    for (const auto& [blk, slots] : read) EXPECT_EQ(slots, loaded[blk]);
  }
}

template <class K>
void check_mix_geometry(uint32_t M, uint32_t N, uint32_t Kd, int64_t products) {
  SCOPED_TRACE(std::to_string(M) + " x " + std::to_string(N) + " x " + std::to_string(Kd) +
               ", tile " + std::to_string(K::bm) + " x " + std::to_string(K::bn));
  K k;
  k.M = M;
  k.N = N;
  k.K = Kd;
  cdx::launch_dims d;
  ASSERT_TRUE(cdx::mix_dims(k, products, d));
  EXPECT_EQ(d.block.x, K::threads);
  std::map<std::tuple<uint32_t, uint32_t, uint32_t>, int> outputs;
  for_each_thread(d, [&](cdx::idx3 b, cdx::idx3 t) {
    uint32_t m, n;
    K::thread_origin(t, m, n);
    ASSERT_LE(m + K::tm, static_cast<uint32_t>(K::bm));
    ASSERT_LE(n + K::tn, static_cast<uint32_t>(K::bn));
    for (int i = 0; i < K::tm; ++i)
      for (int j = 0; j < K::tn; ++j) {
        const uint32_t gm = b.y * K::bm + m + i, gn = b.x * K::bn + n + j;
        if (gm < M && gn < N) ++outputs[{b.z, gm, gn}];
      }
  });
  EXPECT_EQ(outputs.size(), size_t(products) * M * N);
  for (const auto& [at, n] : outputs) ASSERT_EQ(n, 1);
  // The slice loaders cover each (row, k) of a slice exactly once, in both orders.
  for (uint32_t rows : {static_cast<uint32_t>(K::bm), static_cast<uint32_t>(K::bn)})
    for (bool k_fast : {true, false}) {
      std::set<std::pair<uint32_t, uint32_t>> seen;
      for (uint32_t e = 0; e < rows * K::bk; ++e) {
        uint32_t row, kk;
        K::slice_item(e, rows, k_fast, row, kk);
        ASSERT_LT(row, rows);
        ASSERT_LT(kk, static_cast<uint32_t>(K::bk));
        EXPECT_TRUE(seen.insert({row, kk}).second);
      }
    }
}

TEST(CudaLaunchGeometry, MixCoversEveryOutputOnce) {
  for (auto [M, N, Kd, P] : std::vector<std::tuple<uint32_t, uint32_t, uint32_t, int64_t>>{
           {1, 1, 1, 1}, {32, 64, 16, 3}, {33, 65, 17, 2}, {100, 7, 3, 1}, {5, 130, 40, 2}}) {
    check_mix_geometry<cdx::mix_small<float>>(M, N, Kd, P);
    check_mix_geometry<cdx::mix_large<float>>(M, N, Kd, P);
    check_mix_geometry<cdx::mix_large<double>>(M, N, Kd, P);
  }
}

TEST(CudaLaunchGeometry, LimitsAreReported) {
  cdx::tile_copy<float> k;
  k.Z = 1;
  k.U = static_cast<uint32_t>(cdx::max_grid_yz * 32 + 1);
  k.V = 1;
  cdx::launch_dims d;
  EXPECT_FALSE(cdx::tile_copy_dims(k, d));
  cdx::mix_large<float> m;
  m.M = m.N = m.K = 1;
  EXPECT_FALSE(cdx::mix_dims(m, cdx::max_grid_yz + 1, d));
  m.M = static_cast<uint32_t>(cdx::max_grid_yz * 64 + 1);
  EXPECT_FALSE(cdx::mix_dims(m, 1, d));
}

TEST(CudaLaunchGeometry, ReductionPhasesReachEveryPartialSum) {
  // Simulate the tree on indices: after all steps, slot 0 must have absorbed all 256 slots once.
  std::vector<std::multiset<unsigned>> sum(cdx::reduce_threads);
  for (unsigned t = 0; t < cdx::reduce_threads; ++t) sum[t] = {t};
  for (int p = 1; p <= cdx::reduce_steps; ++p) {
    const unsigned half = cdx::reduce_threads >> p;
    for (unsigned t = 0; t < half; ++t) sum[t].insert(sum[t + half].begin(), sum[t + half].end());
  }
  std::multiset<unsigned> all;
  for (unsigned t = 0; t < cdx::reduce_threads; ++t) all.insert(t);
  EXPECT_EQ(sum[0], all);
}

// ---------------------------------------------------------------------------------------------
// The pipeline against the oracles and the CPU backend
// ---------------------------------------------------------------------------------------------

/// The emulator's buffers are plain host vectors.
template <class T>
struct host_memory {
  struct buffer {
    std::vector<T> v;
    T* get() const { return const_cast<T*>(v.data()); }
  };
  buffer upload(const std::vector<T>& h) { return {h}; }
  buffer nan_buffer(i64 n) { return {nan_filled<T>(n)}; }
  std::vector<T> download(const buffer& b) { return b.v; }
  void* stream() { return nullptr; }
};

template <class T>
using emulated = cdx::pipeline<T, host_executor>;
/// The GPU plan's own call path (cuda/plan_calls.hpp: spectrum_view arguments) on the emulation.
template <class T>
using emulated_plan = cdx::plan_calls<T, host_executor>;

template <class T>
void run_problem(const conv_params& p, const compression& c,
                 const blfft::cuda::cuda_plan_options& o,
                 int64_t chunk_scalars = cdx::default_chunk_scalars,
                 cdx::transform_engine engine = cdx::transform_engine::automatic) {
  const auto geo = blfft::make_geometry(p, c);
  SCOPED_TRACE(name_of(p) + " " + geo.describe() + " engine " +
               std::to_string(static_cast<int>(engine)));
  host_executor ex;
  const emulated_plan<T> pl(ex, geo, o, chunk_scalars, engine);
  host_memory<T> mem;
  check_cuda_problem<T>(pl, mem, p, geo);
}

using blfft::cuda::mix_tile;
blfft::cuda::cuda_plan_options tile(mix_tile t) {
  blfft::cuda::cuda_plan_options o;
  o.tile = t;
  return o;
}

using engine = cdx::transform_engine;

template <class T>
void run_rates() {
  // Both transform engines: the fused kernels and the cuFFT chain.
  for (const auto& p : cuda_problems())
    for (double r : {0.0, 0.5, 0.8})
      for (auto e : {engine::fused, engine::cufft})
        run_problem<T>(p, compression::rate(r), {}, cdx::default_chunk_scalars, e);
}

TEST(CudaEmulation, RatesFloat) {
  run_rates<float>();
}
TEST(CudaEmulation, RatesDouble) {
  run_rates<double>();
}

TEST(CudaEmulation, BothMixTiles) {
  for (const auto& p : {make2d(3, 6, 8, {9, 8}, {3, 3}, {1, 1}, {1, 1}),
                        make2d(2, 8, 4, {7, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 2)})
    for (auto t : {mix_tile::small, mix_tile::large}) {
      run_problem<float>(p, compression::rate(0.5), tile(t));
      run_problem<double>(p, compression::rate(0.0), tile(t));
    }
}

TEST(CudaEmulation, ExplicitKeptSets) {
  const auto p = make2d(2, 3, 4, {9, 12}, {3, 4}, {2, 1}, {1, 2});  // grid 12 x 16
  // band limits; rows and columns that are not a prefix; every row with few columns
  run_problem<double>(p, compression::band(2, 5), {});
  run_problem<double>(p, compression::indices({0, 3, 9}, {1, 4, 8}), {});
  run_problem<double>(p, compression::indices({}, {0, 2}), {});
  run_problem<float>(p, compression::indices({0, 1, 11}, {}), {});
  const auto p1 = make1d(2, 3, 2, 20, 5, 2, 2);
  run_problem<double>(p1, compression::indices({}, {0, 3, 7, 12}), {});
}

TEST(CudaEmulation, ChunkedTransforms) {
  // Scratch limits of a few images force several chunks and a shorter last one.
  for (int64_t chunk_scalars : {int64_t(1), int64_t(700), int64_t(3000)}) {
    SCOPED_TRACE("chunk_scalars " + std::to_string(chunk_scalars));
    run_problem<double>(make2d(3, 5, 4, {9, 7}, {3, 3}, {2, 1}, {1, 1}), compression::rate(0.5), {},
                        chunk_scalars, engine::cufft);
    run_problem<float>(make1d(5, 3, 4, 17, 3, 1, 1), compression::rate(0.0), {}, chunk_scalars,
                       engine::cufft);
  }
}

TEST(CudaEmulation, LargerChannelCounts) {
  // Several mixing tiles per product, partial tiles at every edge, groups.
  run_problem<float>(make2d(3, 70, 40, {6, 5}, {3, 3}, {1, 1}, {1, 1}), compression::rate(0.5),
                     tile(mix_tile::large));
  run_problem<float>(make2d(2, 36, 66, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 3),
                     compression::rate(0.3), tile(mix_tile::small));
}

TEST(CudaEmulation, StridedViews) {
  // Non-contiguous inputs and outputs (channels-last, every other element): the results equal
  // the contiguous ones and the gaps of the outputs stay untouched.
  using T = double;
  const strided_forward_case<T> c;
  host_executor ex;
  const emulated<T> pl(ex, c.geo);
  const std::vector<T> xcl = c.x_channels_last();
  std::vector<T> ybuf = c.y_buffer();
  pl.forward(tensor_view<const T>(xcl.data(), c.d.input_shape(), c.x_strides()), c.pr.wv(),
             c.pr.bt.data(), tensor_view<T>(ybuf.data(), c.d.output_shape(), c.y_strides()),
             nullptr, nullptr, nullptr);
  c.check(ybuf);
}

/// Bytes of a geometry's kept index lists (rows, then columns), which the kernels read.
int64_t kept_list_bytes(const blfft::geometry& geo) {
  return int64_t(sizeof(int64_t)) *
         static_cast<int64_t>(geo.kept_rows.size() + geo.kept_cols.size());
}
/// The dense band-limited reference of a problem at geo's kept set.
template <class T>
reference dense_of(const conv_params& p, const blfft::geometry& geo, const problem<T>& pr) {
  return dense_results(dense_reference(p, geo.grid, geo.kept_rows, geo.kept_cols), pr.x, pr.w, pr.b,
                       pr.g);
}

/// A contiguous (N, C, H, W) tensor's values laid out channels_last (N, H, W, C), and the strides
/// that view them with their NCHW shape.
template <class T>
std::vector<T> to_channels_last(const std::vector<T>& v, i64 N, i64 C, i64 H, i64 W) {
  std::vector<T> o(v.size());
  for (i64 n = 0; n < N; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 h = 0; h < H; ++h)
        for (i64 w = 0; w < W; ++w)
          o[static_cast<size_t>(((n * H + h) * W + w) * C + c)] =
              v[static_cast<size_t>(((n * C + c) * H + h) * W + w)];
  return o;
}
std::vector<i64> channels_last_strides(i64 C, i64 H, i64 W) {
  return {H * W * C, 1, W * C, C};
}

TEST(CudaEmulation, ChannelsLastEqualsContiguousBitwise) {
  // x, y, grad_output and grad_input channels_last (torch's NHWC): the fused kernels walk a
  // block's images fastest there (coalesced), the cuFFT chain through its strided pack / unpack.
  // Every result equals the contiguous call's exactly: only the order of the loads changes.
  // 7 channels with several images per block: blocks straddle samples.
  using T = float;
  for (auto e : {engine::fused, engine::cufft}) {
    SCOPED_TRACE(static_cast<int>(e));
    const auto p = make2d(3, 7, 5, {6, 5}, {3, 3}, {1, 1}, {1, 1});
    const auto geo = blfft::make_geometry(p, compression::rate(0.5));
    problem<T> pr(p, 5);
    const auto& d = pr.d;
    host_executor ex;
    const emulated<T> pl(ex, geo, {}, cdx::default_chunk_scalars, e);
    const auto run = [&](bool nhwc) {
      const std::vector<T> x = nhwc ? to_channels_last(pr.xt, d.N, d.C, d.H, d.W) : pr.xt,
                           g = nhwc ? to_channels_last(pr.gt, d.N, d.F, d.Ho, d.Wo) : pr.gt;
      const auto view = [&](auto* data, const std::vector<i64>& shape, i64 C, i64 H, i64 W) {
        using V = std::remove_pointer_t<decltype(data)>;
        return nhwc ? tensor_view<V>(data, shape, channels_last_strides(C, H, W))
                    : tensor_view<V>::contiguous(data, shape);
      };
      std::vector<T> y(d.output_size()), dx(d.input_size()), dw(d.weight_size()),
          xs(geo.x_spectrum_size());
      pl.forward(view(x.data(), d.input_shape(), d.C, d.H, d.W), pr.wv(), pr.bt.data(),
                 view(y.data(), d.output_shape(), d.F, d.Ho, d.Wo), xs.data(), nullptr, nullptr);
      const auto dxv = view(dx.data(), d.input_shape(), d.C, d.H, d.W);
      const auto dwv = tensor_view<T>::contiguous(dw.data(), d.weight_shape());
      pl.backward_with_weight(view(g.data(), d.output_shape(), d.F, d.Ho, d.Wo), xs.data(), pr.wv(),
                              &dxv, &dwv, nullptr, nullptr);
      if (nhwc) {  // back to NCHW order for the comparison
        std::vector<T> yc(y.size()), dxc(dx.size());
        for (i64 n = 0; n < d.N; ++n)
          for (i64 f = 0; f < d.F; ++f)
            for (i64 h = 0; h < d.Ho; ++h)
              for (i64 w = 0; w < d.Wo; ++w)
                yc[d.yi(n, f, h, w)] = y[((n * d.Ho + h) * d.Wo + w) * d.F + f];
        for (i64 n = 0; n < d.N; ++n)
          for (i64 c = 0; c < d.C; ++c)
            for (i64 h = 0; h < d.H; ++h)
              for (i64 w = 0; w < d.W; ++w)
                dxc[d.xi(n, c, h, w)] = dx[((n * d.H + h) * d.W + w) * d.C + c];
        y.swap(yc);
        dx.swap(dxc);
      }
      return std::vector<std::vector<T>>{y, dx, dw};
    };
    const auto contiguous = run(false), nhwc = run(true);
    EXPECT_EQ(nhwc[0], contiguous[0]) << "y";
    EXPECT_EQ(nhwc[1], contiguous[1]) << "grad_input";
    EXPECT_EQ(nhwc[2], contiguous[2]) << "grad_weight";
    EXPECT_TRUE(
        rel_close("forward (contiguous)", contiguous[0], dense_of(p, geo, pr).y, tol<T>::dense));
  }
}

TEST(CudaEmulation, ArgumentErrors) {
  using T = float;
  const auto p = make2d(2, 3, 4, {6, 5}, {3, 3});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  host_executor ex;
  const emulated<T> pl(ex, geo);
  problem<T> pr(p, 1);
  std::vector<T> y(static_cast<size_t>(pr.d.output_size()));
  auto bad_shape = tensor_view<T>::contiguous(y.data(), {2, 4, 4, 4});
  expect_refused(
      [&] { pl.forward(pr.xv(), pr.wv(), nullptr, bad_shape, nullptr, nullptr, nullptr); },
      blfft::error_code::shape_mismatch, "output", "no error for a wrong output shape");
  expect_refused(
      [&] {
        pl.forward_spectra(nullptr, nullptr, nullptr,
                           tensor_view<T>::contiguous(y.data(), pr.d.output_shape()), nullptr);
      },
      blfft::error_code::invalid_argument, "x_spectrum", "no error for a null spectrum");
}

// ---------------------------------------------------------------------------------------------
// Energy map and launch counts
// ---------------------------------------------------------------------------------------------

TEST(CudaEmulation, EnergyMapMatchesCpu) {
  for (const auto& p :
       {make2d(3, 4, 2, {9, 7}, {3, 3}, {1, 1}, {1, 1}), make1d(5, 2, 3, 20, 3, 1, 2)}) {
    SCOPED_TRACE(name_of(p));
    problem<double> pr(p, 11);
    const auto want = blfft::energy_map<double>(p, pr.xv());
    host_executor ex;
    // The whole batch at once, and one sample per chunk (several chunks and a tail).
    for (int64_t bytes : {int64_t(1) << 28, int64_t(1)}) {
      const auto got = cdx::energy_map<double>(ex, p, pr.xv(), nullptr, bytes);
      EXPECT_TRUE(rel_close("energy map", got, want, tol<double>::energy));
    }
    const auto sel =
        blfft::select_by_energy(p, cdx::energy_map<double>(ex, p, pr.xv(), nullptr), 0.9);
    EXPECT_EQ(sel.limits, blfft::select_by_energy<double>(p, pr.xv(), 0.9).limits);
  }
}

TEST(CudaEmulation, FewLaunches) {
  // Forward: 2 analyses + mix + 1 synthesis; backward: 1 analysis + 2 (mix + synthesis) + bias.
  // Fused engine: an analysis or synthesis is one kernel. cuFFT engine: 3 kernels and 2 cuFFT
  // executions (2D).
  const auto p = make2d(4, 8, 8, {8, 8}, {3, 3}, {1, 1}, {1, 1});
  problem<float> pr(p, 1);
  for (auto e : {engine::fused, engine::cufft}) {
    SCOPED_TRACE(static_cast<int>(e));
    const int per_transform = e == engine::fused ? 1 : 3, ffts = e == engine::fused ? 0 : 2;
    host_executor ex;
    const emulated<float> pl(ex, blfft::make_geometry(p, compression::rate(0.5)), {},
                             cdx::default_chunk_scalars, e);
    const auto& g = pl.geo();
    std::vector<float> xs(g.x_spectrum_size()), ws(g.w_spectrum_size()), y(g.output_size()),
        dx(g.input_size()), dw(g.weight_size()), db(p.out_channels);
    ex.stats() = {};
    pl.forward(pr.xv(), pr.wv(), pr.bt.data(),
               tensor_view<float>::contiguous(y.data(), pr.d.output_shape()), xs.data(), ws.data(),
               nullptr);
    EXPECT_EQ(ex.stats().kernels, 3 * per_transform + 1);
    EXPECT_EQ(ex.stats().ffts, 3 * ffts);
    ex.stats() = {};
    const auto dxv = tensor_view<float>::contiguous(dx.data(), pr.d.input_shape());
    const auto dwv = tensor_view<float>::contiguous(dw.data(), pr.d.weight_shape());
    pl.backward(pr.gv(), xs.data(), ws.data(), &dxv, &dwv, db.data(), nullptr);
    // The weight gradient's mixing and synthesis are one kernel (mix_to_taps; one slice here).
    ASSERT_EQ(pl.tap_launch_of().slices, 1);
    EXPECT_EQ(ex.stats().kernels, 2 * per_transform + 1 + 1 + 1);
    EXPECT_EQ(ex.stats().ffts, 2 * ffts);
    // Without a weight spectrum to keep, the mixing reads the taps: no weight analysis.
    ex.stats() = {};
    pl.forward(pr.xv(), pr.wv(), pr.bt.data(),
               tensor_view<float>::contiguous(y.data(), pr.d.output_shape()), xs.data(), nullptr,
               nullptr);
    EXPECT_EQ(ex.stats().kernels, 2 * per_transform + 1);
    EXPECT_EQ(ex.stats().ffts, 2 * ffts);
    ex.stats() = {};
    pl.backward_with_weight(pr.gv(), nullptr, pr.wv(), &dxv, nullptr, nullptr, nullptr);
    EXPECT_EQ(ex.stats().kernels, 2 * per_transform + 1);
    EXPECT_EQ(ex.stats().ffts, 2 * ffts);
  }
}

// ---------------------------------------------------------------------------------------------
// The weight gradient fused into its mixing (mix_to_taps, tap_sum)
// ---------------------------------------------------------------------------------------------

blfft::cuda::cuda_plan_options weight_grad_fusion(bool on, mix_tile t = mix_tile::automatic) {
  blfft::cuda::cuda_plan_options o;
  o.fuse_weight_grad = on;
  o.tile = t;
  return o;
}

TEST(CudaWeightTaps, SpectrumPathStillMatchesTheOracles) {
  // fuse_weight_grad = false: the dW spectrum, then its synthesis, on both transform engines.
  for (const auto& p : cuda_problems())
    for (auto e : {engine::fused, engine::cufft}) {
      run_problem<float>(p, compression::rate(0.5), weight_grad_fusion(false),
                         cdx::default_chunk_scalars, e);
      run_problem<double>(p, compression::rate(0.0), weight_grad_fusion(false),
                          cdx::default_chunk_scalars, e);
    }
}

TEST(CudaWeightTaps, OneOrSeveralSlicesBothTilesMatchTheOracles) {
  // Rate 0 on a 12 x 10 grid: 72 kept bins, several slices of partial tap sums (tap_sum adds
  // them); rate 0.8: too few bins for slices to pay, the blocks write the gradient directly.
  // Groups, a 5 x 4 kernel (20 taps: the small tile only), partial tiles.
  const std::vector<conv_params> ps = {
      make2d(3, 5, 6, {9, 8}, {3, 3}, {1, 1}, {1, 1}),
      make2d(2, 8, 4, {7, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 2),
      make2d(3, 2, 3, {5, 12}, {5, 4}, {1, 2}, {2, 1}),
      make2d(2, 40, 36, {5, 6}, {3, 3}, {1, 1}, {1, 1}),
  };
  bool several = false, one = false;
  for (const auto& p : ps)
    for (double r : {0.0, 0.8})
      for (auto t : {mix_tile::small, mix_tile::large}) {
        const auto geo = blfft::make_geometry(p, compression::rate(r));
        host_executor ex;
        const emulated<float> pl(ex, geo, weight_grad_fusion(true, t));
        ASSERT_TRUE(pl.weight_grad_fused()) << name_of(p);
        const auto l = pl.tap_launch_of();
        several |= l.slices > 1;
        one |= l.slices == 1;
        run_problem<float>(p, compression::rate(r), weight_grad_fusion(true, t));
        run_problem<double>(p, compression::rate(r), weight_grad_fusion(true, t));
      }
  EXPECT_TRUE(several && one) << "both the partial sums and the direct store are exercised";
}

TEST(CudaWeightTaps, SlicesFillTheGpuWithinAQuarterOfTheSpectrum) {
  // ResNet-18's stride-1 layers (CIFAR, batch 32) at rates 0, 0.5, 0.75.
  for (int64_t ch : {64, 128, 256, 512})
    for (double r : {0.0, 0.5, 0.75}) {
      const int64_t hw = 32 * 64 / ch;
      const auto geo = blfft::make_geometry(
          blfft::conv_params::conv2d(32, ch, ch, {hw, hw}, {3, 3}, {1, 1}, {1, 1}),
          compression::rate(r));
      const auto l = cdx::choose_tap_launch(ch, ch, 1, geo.kept, 9);
      SCOPED_TRACE(std::to_string(ch) + " channels, kept " + std::to_string(geo.kept));
      const int64_t tile = l.small ? 16 : 32,
                    tiles = cdx::ceil_div(ch, tile) * cdx::ceil_div(ch, tile);
      const int64_t cap = std::max<int64_t>(1, geo.kept / 18);
      EXPECT_LE(l.slices, cap);
      if (l.slices > 1) {
        EXPECT_LE(2 * l.slices * 9, geo.kept);  // partial sums <= spectrum / 4
      }
      EXPECT_TRUE(tiles * l.slices >= 132 || l.slices == cap) << tiles << " x " << l.slices;
      EXPECT_LT((l.slices - 1) * l.per_slice, geo.kept) << "an empty slice";
      EXPECT_GE(l.slices * l.per_slice, geo.kept) << "a frequency in no slice";
    }
  static_assert(cdx::mix_to_taps_large<float>::max_taps >= 9, "3 x 3 kernels on the large tile");
  static_assert(cdx::mix_to_taps_large<double>::max_taps >= 9, "and in double");
  static_assert(sizeof(cdx::mix_to_taps_large<float>::shared) <= 48 * 1024, "static shared");
  static_assert(sizeof(cdx::mix_to_taps_small<float>::shared) <= 48 * 1024, "static shared");
  static_assert(sizeof(cdx::mix_to_taps_large<double>::shared) <= 48 * 1024, "static shared");
  static_assert(sizeof(cdx::mix_to_taps_small<double>::shared) <= 48 * 1024, "static shared");
}

TEST(CudaWeightTaps, FallsBackWhereTheTapsDoNotFit) {
  // 7 x 7 taps exceed the shared tap sums: dW spectrum and synthesis, still correct.
  const auto p = make2d(2, 3, 4, {12, 11}, {7, 7}, {1, 1}, {3, 3});
  host_executor ex;
  const emulated<float> pl(ex, blfft::make_geometry(p, compression::rate(0.5)));
  EXPECT_FALSE(pl.weight_grad_fused());
  run_problem<float>(p, compression::rate(0.5), {});
  // Forcing cuBLAS takes the spectrum path too.
  blfft::cuda::cuda_plan_options o;
  o.engine = blfft::cuda::mix_engine::cublas;
  const emulated<float> blas(ex, blfft::make_geometry(p, compression::rate(0.5)), o);
  EXPECT_FALSE(blas.weight_grad_fused());
}

TEST(CudaTraffic, FusedWeightGradWritesNoSpectrum) {
  // weight_grad(): g's analysis, mix_to_taps (reads g's and x's spectra and the kept lists once,
  // writes slices x F x Cg x taps partial sums), tap_sum (reads them, writes the gradient).
  using T = float;
  const auto p = make2d(3, 5, 6, {9, 8}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.0));
  problem<T> pr(p, 4);
  host_executor ex;
  ex.measure_traffic();
  const emulated<T> pl(ex, geo, {}, cdx::default_chunk_scalars, engine::fused);
  const auto l = pl.tap_launch_of();
  ASSERT_GT(l.slices, 1);
  std::vector<T> xs(geo.x_spectrum_size()), dw(geo.weight_size());
  pl.input_spectrum(pr.xv(), xs.data(), nullptr);
  ex.stats() = {};
  pl.weight_grad(pr.gv(), xs.data(), tensor_view<T>::contiguous(dw.data(), pr.d.weight_shape()),
                 nullptr);
  const auto& log = ex.stats().launch_log;
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[1].name, std::string("mix_to_taps"));
  EXPECT_EQ(log[2].name, std::string("tap_sum"));
  const int64_t e = sizeof(T), partial = l.slices * geo.weight_size();
  EXPECT_EQ(log[1].read_bytes,
            e * (geo.y_spectrum_size() + geo.x_spectrum_size()) + kept_list_bytes(geo));
  EXPECT_EQ(log[1].write_bytes, e * partial);
  EXPECT_EQ(log[2].read_bytes, e * partial);
  EXPECT_EQ(log[2].write_bytes, e * geo.weight_size());
  EXPECT_TRUE(rel_close("weight_grad (fused)", dw, dense_of(p, geo, pr).dw, tol<T>::dense));
}

TEST(CudaTraffic, TapsPathReadsTheWeightOnce) {
  // forward() without a weight spectrum: analysis of x, the mixing (x's spectrum and the taps,
  // read once each; the kept index lists), synthesis. No weight spectrum is written or read.
  using T = float;
  const auto p = make2d(3, 6, 5, {8, 7}, {3, 3}, {1, 1}, {1, 1}, {2, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  problem<T> pr(p, 4);
  host_executor ex;
  ex.measure_traffic();
  const emulated<T> pl(ex, geo, {}, cdx::default_chunk_scalars, engine::fused);
  std::vector<T> xs(geo.x_spectrum_size()), y(geo.output_size());
  pl.forward(pr.xv(), pr.wv(), nullptr, tensor_view<T>::contiguous(y.data(), pr.d.output_shape()),
             xs.data(), nullptr, nullptr);
  const auto& log = ex.stats().launch_log;
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[1].name, std::string("mix"));
  const int64_t e = sizeof(T);
  EXPECT_EQ(log[1].read_bytes,
            e * (geo.x_spectrum_size() + geo.weight_size()) + kept_list_bytes(geo));
  EXPECT_EQ(log[1].write_bytes, e * geo.y_spectrum_size());
  EXPECT_TRUE(rel_close("forward (taps)", y, dense_of(p, geo, pr).y_nobias, tol<T>::dense));
}

TEST(CudaEmulation, TransformEngineRule) {
  // Fused where a block's DFT matrices and one image fit in shared memory; cuFFT for the large
  // grids (long 1D signals, large maps), which forcing the fused engine refuses clearly.
  EXPECT_GT(cdx::fused_images_per_block<float>(32, 32, 34, 18, true), 0);   // r18 32x32, rate 0
  EXPECT_GT(cdx::fused_images_per_block<double>(3, 3, 34, 18, true), 1);    // its weight
  EXPECT_EQ(cdx::fused_images_per_block<float>(1, 500, 1, 253, true), 0);   // FCN L = 500
  EXPECT_EQ(cdx::fused_images_per_block<float>(64, 64, 64, 33, false), 0);  // 64 x 64 maps
  static_assert(sizeof(cdx::dft_analyse<double>::shared) <= 48 * 1024, "static shared memory");
  static_assert(sizeof(cdx::dft_synthesise<float>::shared) <= 48 * 1024, "static shared memory");
  const auto big = make1d(2, 2, 2, 500, 5, 1, 2);
  const auto geo = blfft::make_geometry(big, compression::rate(0.0));
  host_executor ex;
  {
    const emulated<float> automatic(ex, geo);
    problem<float> pr(big, 2);
    std::vector<float> xs(geo.x_spectrum_size());
    ex.stats() = {};
    automatic.input_spectrum(pr.xv(), xs.data(), nullptr);
    EXPECT_EQ(ex.stats().ffts, 1) << "a 500-sample signal goes to cuFFT";
  }
  expect_refused([&] { emulated<float>(ex, geo, {}, cdx::default_chunk_scalars, engine::fused); },
                 blfft::error_code::unsupported, "shared memory");
}

// ---------------------------------------------------------------------------------------------
// Traffic: launch footprints (cuda/traffic.hpp, the emulator's footprint recorder)
// ---------------------------------------------------------------------------------------------

TEST(CudaTraffic, FootprintCountsDistinctAddressesOnce) {
  footprint f;
  float a[4] = {};
  double d[2] = {};
  f.read(&a[0], 4);
  f.read(&a[0], 4);  // reuse inside a launch: not counted again
  f.read(&a[3], 4);
  f.write(&a[0], 4);  // a write is traffic of its own
  f.read(&d[1], 8);
  EXPECT_EQ(f.read_bytes(), 4 + 4 + 8);
  EXPECT_EQ(f.write_bytes(), 4);
  f.clear();
  f.read(&a[0], 4);
  EXPECT_EQ(f.read_bytes(), 4);
  EXPECT_EQ(f.write_bytes(), 0);
  // Many pages, far apart.
  footprint g;
  std::vector<float> big(100000);
  for (int pass = 0; pass < 2; ++pass)
    for (size_t i = 0; i < big.size(); i += 3) g.read(&big[i], 4);
  EXPECT_EQ(g.read_bytes(), 4 * static_cast<int64_t>((big.size() + 2) / 3));
  // Sectors: every third float touches every 32-byte sector; a float per 64 bytes half of them.
  EXPECT_NEAR(static_cast<double>(g.read_sector_bytes()), 4.0 * static_cast<double>(big.size()),
              64.0);
  footprint h;
  for (size_t i = 0; i < big.size(); i += 16) h.read(&big[i], 4);
  EXPECT_EQ(h.read_bytes(), 4 * static_cast<int64_t>((big.size() + 15) / 16));
  EXPECT_EQ(h.read_sector_bytes(), 32 * static_cast<int64_t>((big.size() + 15) / 16));
}

TEST(CudaTraffic, FootprintsOfTheAnalysisLaunches) {
  // The launches of one input analysis, each against its hand count: pack reads x and writes
  // the data rows; the r2c reads them and writes n/2 + 1 complex bins a row; the last gather
  // writes the whole compressed spectrum once. Results are the same with the meter on.
  using T = float;
  const auto p = make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  problem<T> pr(p, 5);
  host_executor plain, metered;
  metered.measure_traffic();
  const emulated<T> a(plain, geo, {}, cdx::default_chunk_scalars, engine::cufft),
      b(metered, geo, {}, cdx::default_chunk_scalars, engine::cufft);
  std::vector<T> xs_a(geo.x_spectrum_size()), xs_b(geo.x_spectrum_size());
  a.input_spectrum(pr.xv(), xs_a.data(), nullptr);
  b.input_spectrum(pr.xv(), xs_b.data(), nullptr);
  EXPECT_EQ(xs_a, xs_b);
  EXPECT_EQ(plain.stats().global_bytes(), 0) << "traffic counted without measure_traffic()";

  const auto& log = metered.stats().launch_log;
  ASSERT_EQ(log.size(), 5u);  // pack, r2c, gather, c2c, gather
  const int64_t e = sizeof(T), J = p.batch * p.in_channels, rows = p.input[0];
  const int64_t Lw = geo.grid[1], bins = geo.bins_w;
  EXPECT_EQ(log[0].name, std::string("pack_rows"));
  EXPECT_EQ(log[0].read_bytes, e * geo.input_size());
  EXPECT_EQ(log[0].write_bytes, e * J * rows * Lw);
  EXPECT_EQ(log[1].name, std::string("cufft"));
  EXPECT_EQ(log[1].read_bytes, e * J * rows * Lw);
  EXPECT_EQ(log[1].write_bytes, 2 * e * J * rows * bins);
  EXPECT_EQ(log[4].name, std::string("tile_copy"));
  EXPECT_EQ(log[4].write_bytes, e * geo.x_spectrum_size());
  int64_t sum = 0;
  for (const auto& l : log) sum += l.read_bytes + l.write_bytes;
  EXPECT_EQ(sum, metered.stats().global_bytes());
  EXPECT_EQ(metered.stats().launches(), 5);

  // The fused engine: one launch reading x and the kept index tables once and writing the
  // spectrum once, nothing in between.
  host_executor fused;
  fused.measure_traffic();
  const emulated<T> c(fused, geo, {}, cdx::default_chunk_scalars, engine::fused);
  std::vector<T> xs_c(geo.x_spectrum_size());
  c.input_spectrum(pr.xv(), xs_c.data(), nullptr);
  EXPECT_TRUE(rel_close("fused vs cuFFT analysis", xs_c, widen(xs_a), tol<T>::direct));
  ASSERT_EQ(fused.stats().launch_log.size(), 1u);
  const auto kept_tables =
      int64_t(sizeof(int64_t)) * static_cast<int64_t>(geo.kept_rows.size() + geo.kept_cols.size());
  EXPECT_EQ(fused.stats().read_bytes, e * geo.input_size() + kept_tables);
  EXPECT_EQ(fused.stats().write_bytes, e * geo.x_spectrum_size());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The cuFFT API boundary: the backend's own cuFFT code over the stand-ins (standin_cufft.cpp)
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Mixing on cuBLAS: the stacked real form (pipeline.hpp: cublas_forward / _input_grad /
// _weight_grad), and the engine rule. On the cuBLAS stand-ins where they are built, else on the
// emulator's reference GEMM.
// ---------------------------------------------------------------------------------------------

using blfft::cuda::mix_engine;
blfft::cuda::cuda_plan_options with_engine(mix_engine e) {
  blfft::cuda::cuda_plan_options o;
  o.engine = e;
  return o;
}

TEST(CudaCublasMixing, OraclesDouble) {
  // Every problem (1D / 2D, odd sizes, stride, padding, dilation, groups and depthwise) through
  // every entry point, both transform engines (the cuFFT chain restacks in a kernel of its own).
  for (const auto& p : cuda_problems())
    for (double r : {0.0, 0.5})
      for (auto e : {engine::fused, engine::cufft})
        run_problem<double>(p, compression::rate(r), with_engine(mix_engine::cublas),
                            cdx::default_chunk_scalars, e);
}

TEST(CudaCublasMixing, OraclesFloat) {
  for (const auto& p : cuda_problems())
    for (double r : {0.0, 0.8})
      run_problem<float>(p, compression::rate(r), with_engine(mix_engine::cublas));
  run_problem<float>(make2d(3, 70, 40, {6, 5}, {3, 3}, {1, 1}, {1, 1}), compression::rate(0.5),
                     with_engine(mix_engine::cublas));
  run_problem<float>(make2d(2, 36, 66, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 3),
                     compression::rate(0.3), with_engine(mix_engine::cublas), 700, engine::cufft);
}

/// <A x, g> = <x, A^T g> for the operator in x and in w (no bias): the backward is the adjoint
/// of the forward on either mixing engine.
template <class T, class Problem = problem<T>>
void check_adjoint(const conv_params& p, const compression& c, mix_engine me) {
  const auto geo = blfft::make_geometry(p, c);
  SCOPED_TRACE(name_of(p) + " " + geo.describe() + " mix engine " +
               std::to_string(static_cast<int>(me)));
  Problem pr(p, 11);
  host_executor ex;
  const emulated<T> pl(ex, geo, with_engine(me));
  std::vector<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size()), y(geo.output_size()),
      dx(geo.input_size()), dw(geo.weight_size());
  pl.forward(pr.xv(), pr.wv(), nullptr, tensor_view<T>::contiguous(y.data(), pr.d.output_shape()),
             xs.data(), ws.data(), nullptr);
  const auto dxv = tensor_view<T>::contiguous(dx.data(), pr.d.input_shape());
  const auto dwv = tensor_view<T>::contiguous(dw.data(), pr.d.weight_shape());
  pl.backward(pr.gv(), xs.data(), ws.data(), &dxv, &dwv, nullptr, nullptr);
  const auto dot = [](const std::vector<T>& a, const std::vector<T>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
  };
  const auto norm = [&](const std::vector<T>& a) { return std::sqrt(dot(a, a)); };
  const double yg = dot(y, pr.gt), xdx = dot(pr.xt, dx), wdw = dot(pr.wt, dw);
  const double scale_x = norm(y) * norm(pr.gt) + norm(pr.xt) * norm(dx);
  const double scale_w = norm(y) * norm(pr.gt) + norm(pr.wt) * norm(dw);
  EXPECT_LE(std::abs(yg - xdx) / scale_x, 4 * tol<T>::adjoint) << yg << " vs " << xdx;
  EXPECT_LE(std::abs(yg - wdw) / scale_w, 4 * tol<T>::adjoint) << yg << " vs " << wdw;
}

TEST(CudaCublasMixing, Adjointness) {
  for (const auto& p : cuda_problems())
    for (auto me : {mix_engine::own, mix_engine::cublas}) {
      check_adjoint<double>(p, compression::rate(0.5), me);
      check_adjoint<float>(p, compression::rate(0.0), me);
    }
}

// ---------------------------------------------------------------------------------------------
// 3D layers (docs/design.md 1.9; cuda/volume_stage.hpp): the 2D stages on depth slices and the
// depth DFT kernel, against direct 3D convolution at r = 0 and the CPU backend at r > 0 (every
// entry point; spectra exchanged with the CPU backend), both transform and mixing engines
// ---------------------------------------------------------------------------------------------

TEST(CudaConv3d, RatesFloat) {
  for (const auto& p : cuda_problems_3d())
    for (double r : {0.0, 0.5, 0.75})
      run_problem<float>(p, compression::rate(r), {}, cdx::default_chunk_scalars, engine::fused);
}

TEST(CudaConv3d, RatesDouble) {
  for (const auto& p : cuda_problems_3d())
    for (double r : {0.0, 0.5, 0.75})
      for (auto e : {engine::fused, engine::cufft})
        run_problem<double>(p, compression::rate(r), {}, cdx::default_chunk_scalars, e);
}

TEST(CudaConv3d, MixingOnCublas) {
  // The forward's stacked products into the depth DFT, the grad's block form out of it.
  for (const auto& p : cuda_problems_3d()) {
    for (double r : {0.0, 0.5})
      run_problem<double>(p, compression::rate(r), with_engine(mix_engine::cublas),
                          cdx::default_chunk_scalars, engine::cufft);
    run_problem<float>(p, compression::rate(0.75), with_engine(mix_engine::cublas));
  }
}

TEST(CudaConv3d, ExplicitLimitsAndChunks) {
  const auto p = conv_params::conv3d(2, 3, 2, {6, 7, 5}, {3, 2, 3}, {1, 2, 1}, {1, 1, 0});
  run_problem<double>(p, compression::band3(2, 3, 2), {});
  run_problem<double>(p, compression::band3(1, 4, 3), {}, 700, engine::cufft);
  run_problem<float>(p, compression::rate(0.3), tile(mix_tile::large), 1, engine::cufft);
  // A long depth axis (300 samples, grid 315): the depth DFT's twiddles in two shared-memory
  // chunks of 256 input rows.
  const auto t = conv_params::conv3d(2, 2, 3, {300, 2, 3}, {3, 1, 2}, {1, 1, 1}, {1, 0, 0});
  run_problem<double>(t, compression::rate(0.0), {});
  run_problem<double>(t, compression::rate(0.5), {});
}

TEST(CudaConv3d, WeightGradientIsNotFused) {
  // mix_to_taps reduces to (row, column) taps only: a 3D layer's weight gradient takes the dW
  // spectrum and the volume synthesis even where the plan asks for the fused one, with both
  // tiles and both transform engines; its 2D cross-section would be fused.
  const auto p = conv_params::conv3d(2, 3, 4, {5, 6, 7}, {3, 3, 3}, {2, 1, 1}, {1, 1, 1});
  const auto p2 = make2d(2, 3, 4, {6, 7}, {3, 3}, {1, 1}, {1, 1});
  for (auto t : {mix_tile::small, mix_tile::large}) {
    host_executor ex;
    const auto o = weight_grad_fusion(true, t);
    EXPECT_FALSE(emulated<float>(ex, blfft::make_geometry(p, compression::rate(0.5)), o)
                     .weight_grad_fused());
    EXPECT_TRUE(emulated<float>(ex, blfft::make_geometry(p2, compression::rate(0.5)), o)
                    .weight_grad_fused());
    for (auto e : {engine::fused, engine::cufft}) {
      run_problem<float>(p, compression::rate(0.5), o, cdx::default_chunk_scalars, e);
      run_problem<double>(p, compression::rate(0.0), o, cdx::default_chunk_scalars, e);
    }
  }
}

TEST(CudaConv3d, Adjointness) {
  for (const auto& p : cuda_problems_3d())
    for (auto me : {mix_engine::own, mix_engine::cublas}) {
      check_adjoint<double, problem3<double>>(p, compression::rate(0.5), me);
      check_adjoint<float, problem3<float>>(p, compression::rate(0.75), me);
    }
}

TEST(CudaConv3d, LaunchesPerPass) {
  // Fused engine: an analysis is one kernel per depth slice that holds data plus the depth DFT;
  // a synthesis the depth DFT plus one kernel per slice the result needs.
  const auto p = conv_params::conv3d(2, 3, 4, {5, 6, 7}, {3, 3, 3}, {2, 1, 1}, {1, 1, 1});
  problem3<float> pr(p, 1);
  host_executor ex;
  const emulated<float> pl(ex, blfft::make_geometry(p, compression::rate(0.5)), {},
                           cdx::default_chunk_scalars, engine::fused);
  const auto& g = pl.geo();
  std::vector<float> xs(g.x_spectrum_size()), ws(g.w_spectrum_size()), y(g.output_size());
  ex.stats() = {};
  pl.forward(pr.xv(), pr.wv(), nullptr, tensor_view<float>::contiguous(y.data(), g.output_shape()),
             xs.data(), ws.data(), nullptr);
  const int64_t D = 5, KD = 3, Do = g.depth_output;
  EXPECT_EQ(ex.stats().kernels, (D + 1) + (KD + 1) + 1 + (1 + Do));
  EXPECT_EQ(ex.stats().ffts, 0);
  // Without a weight spectrum (mixes_from_depth_slices): the weight's KD slices, then per chunk
  // of KD kept depths (5 kept: chunks of 3 and 2) the depth DFT and the mixing.
  const int64_t chunks = 2;
  ASSERT_EQ(g.kept_depth.size(), 5u);
  ex.stats() = {};
  pl.forward(pr.xv(), pr.wv(), nullptr, tensor_view<float>::contiguous(y.data(), g.output_shape()),
             nullptr, nullptr, nullptr);
  EXPECT_EQ(ex.stats().kernels, (D + 1) + KD + 2 * chunks + (1 + Do));
}

TEST(CudaConv3d, PassesHoldNoWholeWeightSpectrum) {
  // A long depth axis against a 3-deep kernel (18 kept depths at rate 0, KD = 3) and more
  // channels than batch: the whole weight spectrum (18 x kept2 matrices of F x C) would be the
  // largest buffer of every pass. Where the caller neither gives nor asks for it, a pass holds
  // the weight's KD slice spectra and one chunk of KD kept depths instead: each pass's peak
  // scratch (the emulator's live temporaries) is the activations' spectra plus 2 KD slices,
  // under the whole weight spectrum's size alone, on both mixing engines. 6 chunks: the mixing
  // takes 12 launches (depth DFT + mixing per chunk) where it took 1 after one depth DFT.
  using T = float;
  const auto p = conv_params::conv3d(1, 8, 8, {16, 5, 5}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.0));
  const problem3<T> pr(p, 3);
  const int64_t nd = static_cast<int64_t>(geo.kept_depth.size()), KD = 3, D = 16;
  const int64_t Do = geo.depth_output, kept2 = geo.kept / nd;
  ASSERT_EQ(nd, 18);
  const int64_t e = sizeof(T), xs = geo.x_spectrum_size(), ys = geo.y_spectrum_size();
  const int64_t w_slice = geo.w_spectrum_size() / nd;  // one depth's F x C/g matrices
  const int64_t x_slice = 2 * kept2 * p.batch * p.in_channels;
  const int64_t y_slice = 2 * kept2 * p.batch * p.out_channels;
  const int64_t w_part = 2 * KD * w_slice;  // the slices and one chunk
  std::vector<T> y(geo.output_size()), dx(geo.input_size()), dw(geo.weight_size()),
      xsv(static_cast<size_t>(xs));
  const auto yv = tensor_view<T>::contiguous(y.data(), geo.output_shape());
  const auto dxv = tensor_view<T>::contiguous(dx.data(), geo.input_shape());
  const auto dwv = tensor_view<T>::contiguous(dw.data(), geo.weight_shape());
  for (auto me : {mix_engine::own, mix_engine::cublas}) {
    SCOPED_TRACE(me == mix_engine::own ? "own" : "cublas");
    host_executor ex;
    const emulated<T> pl(ex, geo, with_engine(me), cdx::default_chunk_scalars, engine::fused);
    pl.input_spectrum(pr.xv(), xsv.data(), nullptr);
    const int64_t b = me == mix_engine::cublas ? 2 : 1;  // stacked products, block-form grad
    // cuBLAS: each call's workspace (the stand-in's 64 KiB; none in builds without the
    // stand-ins, e.g. tools/sanitize.sh's) is live while it runs.
    const int64_t gemm_ws = me == mix_engine::cublas ? host_executor::gemm_workspace_bytes : 0;
    const auto peak = [&](auto&& call) {
      ex.stats() = {};
      call();
      return ex.stats().max_live_bytes - gemm_ws;
    };
    // forward: xs with x's slices, then xs, the weight's part and the products, then xs and
    // the products with y's slices
    const int64_t fwd =
        e * std::max({xs + D * x_slice, xs + w_part + b * ys, xs + b * ys + Do * y_slice});
    EXPECT_EQ(peak([&] { pl.forward(pr.xv(), pr.wv(), nullptr, yv, nullptr, nullptr, nullptr); }),
              fwd);
    // input gradient from the weight: the grad's spectrum with its slices, then with dx's
    // spectrum and the weight's part, then with dx's slices
    const int64_t ig =
        e * std::max({b * ys + Do * y_slice, b * ys + xs + w_part, b * ys + xs + D * x_slice});
    EXPECT_EQ(peak([&] {
                pl.backward_with_weight(pr.gv(), nullptr, pr.wv(), &dxv, nullptr, nullptr, nullptr);
              }),
              ig);
    // weight gradient: the grad's spectrum, then the dW slices and one chunk
    const int64_t wg = e * std::max(b * ys + Do * y_slice, b * ys + w_part);
    EXPECT_EQ(
        peak([&] { pl.backward(pr.gv(), xsv.data(), nullptr, nullptr, &dwv, nullptr, nullptr); }),
        wg);
    for (int64_t bytes : {fwd, ig, wg}) EXPECT_LT(bytes, e * geo.w_spectrum_size());
  }
}

TEST(CudaConv3d, DepthDftFootprints) {
  // The depth DFT reads every slice spectrum (or the kept-depths spectrum) once and writes its
  // result once, plus the kept depths table: no re-reads across its blocks' twiddle chunks.
  using T = float;
  const auto p = conv_params::conv3d(2, 3, 4, {5, 6, 7}, {3, 3, 3}, {2, 1, 1}, {1, 1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const problem3<T> pr(p, 5);
  host_executor ex;
  ex.measure_traffic();
  const emulated<T> pl(ex, geo, {}, cdx::default_chunk_scalars, engine::fused);
  const int64_t e = sizeof(T), D = p.depth.input, Do = geo.depth_output;
  const int64_t kept2 = static_cast<int64_t>(geo.kept_rows.size() * geo.kept_cols.size());
  const int64_t table = int64_t(sizeof(int64_t)) * static_cast<int64_t>(geo.kept_depth.size());
  std::vector<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size()), y(geo.output_size());
  pl.input_spectrum(pr.xv(), xs.data(), nullptr);
  {
    const auto& log = ex.stats().launch_log;
    ASSERT_EQ(log.size(), static_cast<size_t>(D + 1));  // a fused analysis per slice, the DFT
    EXPECT_EQ(log.back().name, std::string("depth_dft"));
    EXPECT_EQ(log.back().read_bytes, e * D * 2 * kept2 * p.batch * p.in_channels + table);
    EXPECT_EQ(log.back().write_bytes, e * geo.x_spectrum_size());
  }
  pl.weight_spectrum(pr.wv(), ws.data(), nullptr);
  ex.stats() = {};
  pl.forward_spectra(xs.data(), ws.data(), nullptr,
                     tensor_view<T>::contiguous(y.data(), geo.output_shape()), nullptr);
  const auto& log = ex.stats().launch_log;
  ASSERT_EQ(log.size(), static_cast<size_t>(1 + 1 + Do));  // mix, the DFT, a synthesis per slice
  EXPECT_EQ(log[1].name, std::string("depth_dft"));
  EXPECT_EQ(log[1].read_bytes, e * geo.y_spectrum_size() + table);
  EXPECT_EQ(log[1].write_bytes, e * Do * 2 * kept2 * p.batch * p.out_channels);
}

TEST(CudaConv3d, DepthChunkFootprints) {
  // The depth DFTs of the mixing from the weight's slices (18 kept depths, KD = 3: chunks of 3):
  // the forward's read the KD slice spectra once and write their chunk of kept depths once; the
  // weight gradient's read their chunk of the dW spectrum (and, after the first, the slices
  // they add to) and write the KD slices once. Each reads the kept depths of its chunk only.
  using T = float;
  const auto p = conv_params::conv3d(1, 8, 8, {16, 5, 5}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.0));
  const problem3<T> pr(p, 4);
  const int64_t e = sizeof(T), nd = static_cast<int64_t>(geo.kept_depth.size()), KD = 3;
  const int64_t w_slice = e * geo.w_spectrum_size() / nd, table = int64_t(sizeof(int64_t)) * KD;
  ASSERT_EQ(nd % KD, 0);
  const auto chunk_dfts = [](const auto& log) {  // the depth DFTs between the first and last
    std::vector<host_executor::counters::launch_record> v;
    for (const auto& r : log)
      if (r.name == std::string("depth_dft")) v.push_back(r);
    return std::vector<host_executor::counters::launch_record>(v.begin() + 1, v.end() - 1);
  };
  host_executor ex;
  ex.measure_traffic();
  const emulated<T> pl(ex, geo, {}, cdx::default_chunk_scalars, engine::fused);
  std::vector<T> xs(geo.x_spectrum_size()), y(geo.output_size()), dw(geo.weight_size());
  pl.forward(pr.xv(), pr.wv(), nullptr, tensor_view<T>::contiguous(y.data(), geo.output_shape()),
             xs.data(), nullptr, nullptr);
  auto fwd = chunk_dfts(ex.stats().launch_log);
  ASSERT_EQ(fwd.size(), static_cast<size_t>(nd / KD));
  for (const auto& r : fwd) {
    EXPECT_EQ(r.read_bytes, KD * w_slice + table);
    EXPECT_EQ(r.write_bytes, KD * w_slice);
  }
  ex.stats() = {};
  const auto dwv = tensor_view<T>::contiguous(dw.data(), geo.weight_shape());
  pl.backward(pr.gv(), xs.data(), nullptr, nullptr, &dwv, nullptr, nullptr);
  std::vector<host_executor::counters::launch_record> wg;
  for (const auto& r : ex.stats().launch_log)
    if (r.name == std::string("depth_dft")) wg.push_back(r);
  ASSERT_EQ(wg.size(), static_cast<size_t>(1 + nd / KD));  // the grad's analysis, the chunks
  for (size_t i = 1; i < wg.size(); ++i) {
    EXPECT_EQ(wg[i].read_bytes, KD * w_slice + table + (i > 1 ? KD * w_slice : 0)) << i;
    EXPECT_EQ(wg[i].write_bytes, KD * w_slice) << i;
  }
}

/// torch's channels_last_3d: the strides of (N, C, D, H, W) stored as N, D, H, W, C.
std::vector<i64> ndhwc_strides(const std::vector<i64>& s) {
  return {s[1] * s[2] * s[3] * s[4], 1, s[3] * s[4] * s[1], s[4] * s[1], s[1]};
}
/// A contiguous (N, C, D, H, W) tensor's values at their channels_last_3d positions.
template <class T>
std::vector<T> to_ndhwc(const std::vector<T>& v, const std::vector<i64>& s) {
  std::vector<T> out(v.size());
  const i64 C = s[1], dhw = s[2] * s[3] * s[4];
  for (i64 n = 0; n < s[0]; ++n)
    for (i64 c = 0; c < C; ++c)
      for (i64 e = 0; e < dhw; ++e) out[(n * dhw + e) * C + c] = v[(n * C + c) * dhw + e];
  return out;
}

TEST(CudaConv3d, StridedViews) {
  // Channels-last input (N, D, H, W, C in memory), output and gradients every other element of a
  // buffer: forward, backward and the bias gradient equal the contiguous ones; gaps untouched.
  using T = double;
  const auto p = conv_params::conv3d(2, 3, 4, {4, 5, 6}, {3, 2, 3}, {2, 1, 1}, {1, 1, 0});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const problem3<T> pr(p, 5);
  const auto& d = pr.d;
  host_executor ex;
  const emulated<T> pl(ex, geo);
  using cview = tensor_view<const T>;
  using view = tensor_view<T>;
  const auto run = [&](const cview& x, const cview& g, const view& y, const view& dx, T* db) {
    std::vector<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
    pl.forward(x, pr.wv(), pr.bt.data(), y, xs.data(), ws.data(), nullptr);
    pl.backward(g, xs.data(), ws.data(), &dx, nullptr, db, nullptr);
  };
  std::vector<T> y(d.output_size()), dx(d.input_size()), db(d.F);
  run(pr.xv(), pr.gv(), view::contiguous(y.data(), d.output_shape()),
      view::contiguous(dx.data(), d.input_shape()), db.data());

  const auto xcl = to_ndhwc(pr.xt, d.input_shape());
  const cview xv(xcl.data(), d.input_shape(), ndhwc_strides(d.input_shape()));
  const auto every_other = [](std::vector<T>& buf, const std::vector<i64>& shape) {
    auto strides = view::contiguous(nullptr, shape).strides;
    for (auto& s : strides) s *= 2;
    return view(buf.data(), shape, strides);
  };
  std::vector<T> ybuf(2 * y.size(), T(-777)), dxbuf(2 * dx.size(), T(-777)), db2(d.F);
  std::vector<T> gbuf(2 * pr.gt.size());
  for (size_t i = 0; i < pr.gt.size(); ++i) gbuf[2 * i] = pr.gt[i];
  const auto gs = every_other(gbuf, d.output_shape());
  run(xv, cview(gs.data, gs.shape, gs.strides), every_other(ybuf, d.output_shape()),
      every_other(dxbuf, d.input_shape()), db2.data());
  for (size_t i = 0; i < y.size(); ++i) {
    EXPECT_NEAR(ybuf[2 * i], y[i], 1e-12) << "y " << i;
    EXPECT_EQ(ybuf[2 * i + 1], T(-777)) << "gap " << i << " written";
  }
  for (size_t i = 0; i < dx.size(); ++i) {
    EXPECT_NEAR(dxbuf[2 * i], dx[i], 1e-12) << "dx " << i;
    EXPECT_EQ(dxbuf[2 * i + 1], T(-777)) << "gap " << i << " written";
  }
  EXPECT_TRUE(rel_close("grad_bias (strided)", db2, widen(db), 1e-13));
}

TEST(CudaConv3d, ChannelsLastEverywhere) {
  // torch's channels_last_3d (N, D, H, W, C in memory) for x, y, grad_out and grad_input: the
  // depth slices are NHWC images, which the fused stage walks channels-fastest. Equal to the
  // contiguous call on both transform engines, float (16-bit slices take the same views).
  using T = float;
  const auto p = conv_params::conv3d(2, 5, 3, {4, 5, 6}, {3, 2, 3}, {1, 2, 1}, {1, 1, 0});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const problem3<T> pr(p, 9);
  const auto& d = pr.d;
  for (auto e : {engine::fused, engine::cufft}) {
    SCOPED_TRACE(e == engine::fused ? "fused" : "cufft");
    host_executor ex;
    const emulated<T> pl(ex, geo, {}, cdx::default_chunk_scalars, e);
    std::vector<T> y(d.output_size()), dx(d.input_size()), dw(d.weight_size()), y2(y.size()),
        dx2(dx.size()), dw2(dw.size()), xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
    pl.forward(pr.xv(), pr.wv(), pr.bt.data(),
               tensor_view<T>::contiguous(y.data(), d.output_shape()), xs.data(), ws.data(),
               nullptr);
    auto dxv = tensor_view<T>::contiguous(dx.data(), d.input_shape());
    auto dwv = tensor_view<T>::contiguous(dw.data(), d.weight_shape());
    pl.backward(pr.gv(), xs.data(), ws.data(), &dxv, &dwv, nullptr, nullptr);

    const auto xl = to_ndhwc(pr.xt, d.input_shape()), gl = to_ndhwc(pr.gt, d.output_shape());
    pl.forward(tensor_view<const T>(xl.data(), d.input_shape(), ndhwc_strides(d.input_shape())),
               pr.wv(), pr.bt.data(),
               tensor_view<T>(y2.data(), d.output_shape(), ndhwc_strides(d.output_shape())),
               xs.data(), ws.data(), nullptr);
    auto dxl = tensor_view<T>(dx2.data(), d.input_shape(), ndhwc_strides(d.input_shape()));
    auto dwc = tensor_view<T>::contiguous(dw2.data(), d.weight_shape());
    pl.backward(tensor_view<const T>(gl.data(), d.output_shape(), ndhwc_strides(d.output_shape())),
                xs.data(), ws.data(), &dxl, &dwc, nullptr, nullptr);
    EXPECT_TRUE(
        rel_close("y (channels_last_3d)", widen(y2), widen(to_ndhwc(y, d.output_shape())), 1e-6));
    EXPECT_TRUE(rel_close("grad_input (channels_last_3d)", widen(dx2),
                          widen(to_ndhwc(dx, d.input_shape())), 1e-6));
    EXPECT_TRUE(rel_close("grad_weight (channels_last_3d inputs)", widen(dw2), widen(dw), 1e-6));
  }
}

TEST(CudaConv3d, IndexLimitsAreReported) {
  // 2^19 images of 8 x 144 kept bins: the block form of the spectrum exceeds 2^31 (refused at
  // plan construction, before any memory is touched).
  const auto p = conv_params::conv3d(512, 1024, 4, {8, 16, 16}, {3, 3, 3});
  host_executor ex;
  expect_refused([&] { emulated<float>(ex, blfft::make_geometry(p)); },
                 blfft::error_code::unsupported, "3D spectrum", "no error for a huge 3D layer");
}

TEST(CudaConv3d, EnergyIsRefused) {
  const auto p = conv_params::conv3d(1, 2, 2, {4, 4, 4}, {3, 3, 3});
  problem3<float> pr(p, 1);
  host_executor ex;
  expect_refused([&] { cdx::energy_map<float>(ex, p, pr.xv(), nullptr); },
                 blfft::error_code::unsupported, "not supported for 3D",
                 "no error for a 3D energy map");
}

TEST(CudaCublasMixing, GemmsPerPass) {
  // One GEMM a pass (batched over the kept frequencies); with groups, one per group and plane.
  // The own engine launches none. Forward keeping the spectra: 2 analyses, the GEMM, 1 synthesis.
  for (int64_t groups : {1, 2}) {
    const auto p = make2d(2, 4, 6, {7, 8}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, groups);
    problem<float> pr(p, 1);
    for (auto me : {mix_engine::own, mix_engine::cublas}) {
      SCOPED_TRACE("groups " + std::to_string(groups) + " engine " +
                   std::to_string(static_cast<int>(me)));
      host_executor ex;
      const emulated<float> pl(ex, blfft::make_geometry(p, compression::rate(0.5)), with_engine(me),
                               cdx::default_chunk_scalars, engine::fused);
      const auto& g = pl.geo();
      std::vector<float> xs(g.x_spectrum_size()), ws(g.w_spectrum_size()), y(g.output_size()),
          dx(g.input_size()), dw(g.weight_size());
      const int64_t per_pass = me == mix_engine::own ? 0 : (groups == 1 ? 1 : 2 * groups);
      ex.stats() = {};
      pl.forward(pr.xv(), pr.wv(), nullptr,
                 tensor_view<float>::contiguous(y.data(), pr.d.output_shape()), xs.data(),
                 ws.data(), nullptr);
      EXPECT_EQ(ex.stats().gemms, per_pass);
      EXPECT_EQ(ex.stats().launches(), 3 + (me == mix_engine::own ? 1 : per_pass));
      const auto dxv = tensor_view<float>::contiguous(dx.data(), pr.d.input_shape());
      const auto dwv = tensor_view<float>::contiguous(dw.data(), pr.d.weight_shape());
      ex.stats() = {};
      pl.backward(pr.gv(), xs.data(), ws.data(), &dxv, &dwv, nullptr, nullptr);
      EXPECT_EQ(ex.stats().gemms, 2 * per_pass);
      // Forced onto cuBLAS, forward() without a weight spectrum makes one (no taps path).
      ex.stats() = {};
      pl.forward(pr.xv(), pr.wv(), nullptr,
                 tensor_view<float>::contiguous(y.data(), pr.d.output_shape()), xs.data(), nullptr,
                 nullptr);
      EXPECT_EQ(ex.stats().kernels, 3);
      EXPECT_EQ(ex.stats().gemms, per_pass);
    }
  }
}

TEST(CudaCublasMixing, EngineRule) {
  // The model (cdx::mix_cost): cuBLAS where the mixing is compute-bound and TF32 is allowed;
  // the own kernel where bytes dominate (the stacked products and the grad's block form are
  // twice the planar spectra), without TF32 (then both run on CUDA cores and cuBLAS does 4 real
  // products where Gauss does 3), and with groups (2 GEMMs per group).
  const auto inputs = [](const conv_params& p, double rate, cdx::mix_pass pass, bool tf32,
                         bool taps = false) {
    return cdx::mix_cost_inputs_of(blfft::make_geometry(p, compression::rate(rate)), pass, taps,
                                   sizeof(float), tf32);
  };
  const auto blas = [](const cdx::mix_cost_inputs& in) {
    return cdx::mix_cost(in, true) < cdx::mix_cost(in, false);
  };
  const auto r18_512 = conv_params::conv2d(128, 512, 512, {4, 4}, {3, 3}, {1, 1}, {1, 1});
  const auto r18_64 = conv_params::conv2d(32, 64, 64, {32, 32}, {3, 3}, {1, 1}, {1, 1});
  for (auto pass : {cdx::mix_pass::forward, cdx::mix_pass::input_grad}) {
    EXPECT_TRUE(blas(inputs(r18_512, 0.5, pass, true)));
    EXPECT_FALSE(blas(inputs(r18_512, 0.5, pass, false)));
    EXPECT_FALSE(blas(inputs(r18_64, 0.5, pass, true)));
    // mixing from the taps reads 9 scalars per weight instead of 2 kept
    const auto taps = inputs(r18_512, 0.5, pass, true, true);
    ASSERT_EQ(taps.taps, 9);
    EXPECT_GT(cdx::mix_cost(taps, true), cdx::mix_cost(inputs(r18_512, 0.5, pass, true), true));
  }
  auto depthwise =
      inputs(conv_params::conv2d(128, 256, 256, {8, 8}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 256), 0.5,
             cdx::mix_pass::forward, true);
  EXPECT_FALSE(blas(depthwise));

  // The weight gradient fused with its synthesis (mix_to_taps): no dW spectrum, so the own
  // engine costs fewer bytes than with it, and more only by its partial sums when sliced;
  // cuBLAS (which keeps the spectrum path) still wins where the mixing is compute-bound under
  // TF32, and loses at batch 32 on the 64-channel layer.
  for (const auto& p : {r18_512, r18_64}) {
    const auto spectrum_path = inputs(p, 0.5, cdx::mix_pass::weight_grad, true);
    auto fused = inputs(p, 0.5, cdx::mix_pass::weight_grad, true, true);
    ASSERT_EQ(fused.taps, 9);
    EXPECT_LT(cdx::mix_cost(fused, false), cdx::mix_cost(spectrum_path, false));
    fused.tap_slices = 4;
    EXPECT_GT(cdx::mix_cost(fused, false),
              cdx::mix_cost(inputs(p, 0.5, cdx::mix_pass::weight_grad, true, true), false));
    EXPECT_EQ(cdx::mix_cost(fused, true), cdx::mix_cost(spectrum_path, true)) << "cuBLAS: the same";
  }
  EXPECT_TRUE(blas(inputs(r18_512, 0.5, cdx::mix_pass::weight_grad, true, true)));
  EXPECT_FALSE(blas(inputs(r18_64, 0.5, cdx::mix_pass::weight_grad, true, true)));

  // The pipeline follows the rule per call: TF32 allowed or not (scoped_tf32).
  const auto small = make2d(2, 4, 4, {6, 6}, {3, 3}, {1, 1}, {1, 1});
  host_executor ex;
  const emulated<float> pl(ex, blfft::make_geometry(small, compression::rate(0.5)));
  EXPECT_FALSE(pl.use_cublas(cdx::mix_pass::forward, false));
  EXPECT_FALSE(blfft::cuda::tf32_allowed());
  {
    const blfft::cuda::scoped_tf32 on(true);
    EXPECT_TRUE(blfft::cuda::tf32_allowed());
    {
      const blfft::cuda::scoped_tf32 off(false);
      EXPECT_FALSE(blfft::cuda::tf32_allowed());
    }
    EXPECT_TRUE(blfft::cuda::tf32_allowed());
  }
  EXPECT_FALSE(blfft::cuda::tf32_allowed());
  const emulated<float> forced(ex, blfft::make_geometry(small, compression::rate(0.5)),
                               with_engine(mix_engine::cublas));
  EXPECT_TRUE(forced.use_cublas(cdx::mix_pass::forward, true));
  EXPECT_FALSE(forced.taps_path(cdx::mix_pass::forward));
}

#if defined(BLFFT_TEST_CUFFT_STANDIN)
#include "standin_cufft.hpp"

namespace {

using namespace bt;
namespace cdx = blfft::cuda::detail;

/// Runs d through the backend's cuFFT path (cuda/cufft_plans.hpp: cufftMakePlanMany64's
/// arguments, cufftSetStream, cufftSetWorkArea, cufftExec*) on the stand-ins, and through
/// fft_desc's contract written out (host_executor::reference_fft); both must agree.
template <class T>
void check_translation(const cdx::fft_desc& d) {
  SCOPED_TRACE("type " + std::to_string(static_cast<int>(d.type)) + " n " + std::to_string(d.n) +
               " batch " + std::to_string(d.batch) + " istride " + std::to_string(d.istride) +
               " idist " + std::to_string(d.idist) + " ostride " + std::to_string(d.ostride) +
               " odist " + std::to_string(d.odist));
  const bool real_in = d.type == cdx::fft_type::r2c, real_out = d.type == cdx::fft_type::c2r;
  const int64_t in_n = real_out ? d.n / 2 + 1 : d.n, out_n = real_in ? d.n / 2 + 1 : d.n;
  const int64_t in_scalars =
      (real_in ? 1 : 2) * ((d.batch - 1) * d.idist + (in_n - 1) * d.istride + 1);
  const int64_t out_scalars =
      (real_out ? 1 : 2) * ((d.batch - 1) * d.odist + (out_n - 1) * d.ostride + 1);
  std::vector<T> in(static_cast<size_t>(in_scalars));
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<T>(std::sin(0.37 * i) + 0.05 * i);
  if (real_out) {
    // A Hermitian-consistent half spectrum: that of a real signal (imaginary DC / Nyquist zero).
    for (int64_t b = 0; b < d.batch; ++b) {
      in[2 * (b * d.idist) + 1] = 0;
      if (d.n % 2 == 0) in[2 * (b * d.idist + (d.n / 2) * d.istride) + 1] = 0;
    }
  }
  std::vector<T> want(static_cast<size_t>(out_scalars), T(-3)), got = want;
  host_executor::reference_fft<T>(d, in.data(), want.data());
  host_executor ex;
  const auto before = blfft_standin::cufft_stats();
  std::vector<T> in_copy = in;
  ex.fft(d, in_copy.data(), got.data(), nullptr);
  const auto after = blfft_standin::cufft_stats();
  EXPECT_EQ(after.failed, before.failed) << blfft_standin::cufft_last_error();
  EXPECT_EQ(after.exec, before.exec + 1);
  EXPECT_EQ(after.non_hermitian, before.non_hermitian);
  const double tol = sizeof(T) == 4 ? 1e-4 : 1e-11;
  double peak = 1;
  for (T v : want) peak = std::max(peak, std::abs(static_cast<double>(v)));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * peak) << "scalar " << i << " of the output";
}

TEST(CudaCufftBoundary, TranslationMatchesTheFftDescContract) {
  using ft = cdx::fft_type;
  for (ft t : {ft::r2c, ft::c2r, ft::c2c_forward, ft::c2c_inverse})
    // Mixed radices and primes too: the stand-in's FFT splits on the smallest prime factor.
    for (int64_t n : {1, 2, 5, 8, 9, 12, 17, 30, 98})
      for (bool dbl : {false, true}) {
        cdx::fft_desc d;
        d.type = t;
        d.double_precision = dbl;
        d.n = n;
        const int64_t in_n = t == ft::c2r ? n / 2 + 1 : n, out_n = t == ft::r2c ? n / 2 + 1 : n;
        // dense, as the pipeline uses them, and strided / interleaved batches
        for (auto [batch, is, id, os, od] :
             std::vector<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>>{
                 {3, 1, in_n, 1, out_n}, {2, 3, 3 * in_n + 1, 2, 1}, {4, 1, in_n + 2, 4, 1}}) {
          if (od == 1 && os < batch) os = batch;  // interleaved batches must not collide
          d.batch = batch;
          d.istride = is;
          d.idist = id;
          d.ostride = os;
          d.odist = od;
          (void)out_n;
          if (dbl)
            check_translation<double>(d);
          else
            check_translation<float>(d);
        }
      }
}

TEST(CudaCufftBoundary, PipelineCallsRunOnTheStandIns) {
  // A forward and a backward: every transform is a cuFFT execution of the stand-ins, with the
  // stream and a work area set each time, no failed call, C2R inputs Hermitian; the plans are
  // made with the advanced layout the backend intends and cached per (device, transform).
  const auto p = make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  host_executor ex;
  const emulated<float> pl(ex, geo, {}, cdx::default_chunk_scalars, cdx::transform_engine::cufft);
  problem<float> pr(p, 3);
  std::vector<float> y(geo.output_size()), xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size()),
      dx(geo.input_size()), dw(geo.weight_size());
  blfft_standin::reset_cufft_stats();
  ex.stats() = {};
  pl.forward(pr.xv(), pr.wv(), nullptr,
             tensor_view<float>::contiguous(y.data(), pr.d.output_shape()), xs.data(), ws.data(),
             nullptr);
  const auto dxv = tensor_view<float>::contiguous(dx.data(), pr.d.input_shape());
  const auto dwv = tensor_view<float>::contiguous(dw.data(), pr.d.weight_shape());
  pl.backward(pr.gv(), xs.data(), ws.data(), &dxv, &dwv, nullptr, nullptr);
  const auto st = blfft_standin::cufft_stats();
  EXPECT_EQ(st.exec, ex.stats().ffts);
  EXPECT_GT(st.exec, 0);
  EXPECT_EQ(st.set_stream, st.exec);
  EXPECT_EQ(st.set_work_area, st.exec);
  EXPECT_EQ(st.failed, 0) << blfft_standin::cufft_last_error();
  EXPECT_EQ(st.non_hermitian, 0);
  // The row r2c of the input analysis: n = Lw, batch = rows, idist Lw reals, odist Lw/2+1.
  cdx::fft_desc d;
  d.type = cdx::fft_type::r2c;
  d.n = geo.grid[1];
  d.batch = p.batch * p.in_channels * p.input[0];
  d.idist = geo.grid[1];
  d.odist = geo.bins_w;
  const auto plan = host_executor::cufft_cache().get(0, d, false);
  ASSERT_NE(plan, nullptr) << "no cached plan for the input rows' r2c";
  blfft_standin::cufft_plan_info info;
  ASSERT_TRUE(blfft_standin::cufft_plan_info_of(plan->handle, &info));
  EXPECT_TRUE(info.made);
  EXPECT_TRUE(info.advanced);
  EXPECT_EQ(info.type, CUFFT_R2C);
  EXPECT_EQ(info.rank, 1);
  EXPECT_EQ(info.n[0], geo.grid[1]);
  EXPECT_EQ(info.batch, d.batch);
  EXPECT_EQ(info.idist, geo.grid[1]);
  EXPECT_EQ(info.odist, geo.bins_w);
  EXPECT_FALSE(info.auto_allocation);
  EXPECT_EQ(plan->work, info.work_size);
  // Cached per (device, transform), not per stream: the same plan serves another stream.
  int other_stream = 0;
  const auto count = host_executor::cufft_cache().size();
  pl.forward(pr.xv(), pr.wv(), nullptr,
             tensor_view<float>::contiguous(y.data(), pr.d.output_shape()), nullptr, nullptr,
             &other_stream);
  EXPECT_EQ(host_executor::cufft_cache().size(), count);
  ASSERT_TRUE(blfft_standin::cufft_plan_info_of(plan->handle, &info));
  EXPECT_EQ(info.stream, reinterpret_cast<cudaStream_t>(&other_stream));
}

TEST(CudaCufftBoundary, MissingPlanDuringCaptureIsRefusedClearly) {
  // The GPU executor refuses to make a cuFFT plan while its stream is being captured
  // (may_create = false); the message says what to do.
  cdx::fft_desc d;
  d.n = 123;
  d.batch = 7;
  host_executor ex;
  std::vector<float> a(2 * 123 * 7), b(a.size());
  expect_refused(
      [&] {
        cdx::run_cufft(host_executor::cufft_cache(), ex, 0, d, a.data(), b.data(), nullptr, false);
      },
      blfft::error_code::unsupported, "before capturing");
}

// ---------------------------------------------------------------------------------------------
// The cuBLAS API boundary: the backend's own cuBLAS code (cuda/cublas_handles.hpp) over the
// stand-ins (standin_cublas.cpp)
// ---------------------------------------------------------------------------------------------

/// The planar spectrum S[k][re|im][rows][cols] as interleaved complex S[k][rows][cols].
template <class T>
std::vector<T> interleaved(const std::vector<T>& planar, int64_t kept, int64_t plane) {
  std::vector<T> out(planar.size());
  for (int64_t k = 0; k < kept; ++k)
    for (int64_t i = 0; i < plane; ++i) {
      out[2 * (k * plane + i)] = planar[2 * k * plane + i];
      out[2 * (k * plane + i) + 1] = planar[2 * k * plane + plane + i];
    }
  return out;
}

/// The forward mixing Y_k = X_k W_k^H of a layer (groups 1) as one complex strided batched GEMM
/// over the kept frequencies, on interleaved copies of the spectra: column-major, Y_k^T (F x N)
/// = conj(W_k) (F x C, W_k stored C x F: OP_C) times X_k^T (C x N, X_k stored row-major N x C).
/// Against the pipeline's own mix kernel.
template <class T>
void check_forward_mix_gemm(bool tf32) {
  const auto p = make2d(3, 5, 4, {7, 6}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  problem<T> pr(p, 9);
  host_executor ex;
  const emulated<T> pl(ex, geo);
  const int64_t N = p.batch, C = p.in_channels, F = p.out_channels, K = geo.kept;
  std::vector<T> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size()), ys(geo.y_spectrum_size());
  pl.input_spectrum(pr.xv(), xs.data(), nullptr);
  pl.weight_spectrum(pr.wv(), ws.data(), nullptr);
  pl.mix_forward(xs.data(), ws.data(), ys.data(), nullptr);

  const auto xi = interleaved(xs, K, N * C), wi = interleaved(ws, K, F * C);
  std::vector<T> yi(ys.size(), std::numeric_limits<T>::quiet_NaN());
  cdx::gemm_desc d;
  d.complex = true;
  d.double_precision = sizeof(T) == 8;
  d.tf32 = tf32;
  d.op_a = cdx::gemm_op::c;
  d.op_b = cdx::gemm_op::n;
  d.m = F, d.n = N, d.k = C;
  d.lda = C, d.ldb = C, d.ldc = F;
  d.stride_a = F * C, d.stride_b = N * C, d.stride_c = N * F, d.batch = K;
  ex.measure_traffic();
  ex.stats() = {};
  const auto before = blfft_standin::cublas_stats();
  ex.gemm(d, wi.data(), xi.data(), yi.data(), nullptr);
  const auto after = blfft_standin::cublas_stats();
  EXPECT_EQ(after.failed, before.failed) << blfft_standin::cublas_last_error();
  EXPECT_EQ(after.gemm, before.gemm + 1);
  EXPECT_EQ(after.tf32_rounded - before.tf32_rounded, tf32 && sizeof(T) == 4 ? 1 : 0);
  EXPECT_EQ(ex.stats().gemms, 1);
  // Footprint: every element of the three operands once, 2 scalars each.
  EXPECT_EQ(ex.stats().read_bytes, int64_t(sizeof(T)) * 2 * K * (F * C + N * C));
  EXPECT_EQ(ex.stats().write_bytes, int64_t(sizeof(T)) * 2 * K * N * F);
  // TF32 keeps 10 mantissa bits: a few parts in 1e4 of the products' size, here of order 1.
  const double tol = sizeof(T) == 8 ? 1e-12 : tf32 ? 3e-3 : 1e-5;
  EXPECT_TRUE(rel_close("cuBLAS forward mixing", yi, widen(interleaved(ys, K, N * F)), tol));
}

TEST(CudaCublasBoundary, ForwardMixingAsOneStridedBatchedGemm) {
  check_forward_mix_gemm<double>(false);
  check_forward_mix_gemm<double>(true);  // no TF32 for double, whatever the flag
  check_forward_mix_gemm<float>(false);
  check_forward_mix_gemm<float>(true);
}

TEST(CudaCublasBoundary, ArgumentsAndHandles) {
  cdx::gemm_desc d;
  d.m = 3, d.n = 2, d.k = 4, d.lda = 3, d.ldb = 4, d.ldc = 3;
  auto a = cdx::cublas_args_of(d);
  EXPECT_EQ(a.type, CUDA_R_32F);
  EXPECT_EQ(a.compute, CUBLAS_COMPUTE_32F);  // FP32 unless TF32 is allowed
  d.tf32 = true;
  EXPECT_EQ(cdx::cublas_args_of(d).compute, CUBLAS_COMPUTE_32F_FAST_TF32);
  d.double_precision = true;
  d.complex = true;
  a = cdx::cublas_args_of(d);
  EXPECT_EQ(a.type, CUDA_C_64F);
  EXPECT_EQ(a.compute, CUBLAS_COMPUTE_64F);
  d.m = int64_t(1) << 31;
  EXPECT_THROW(cdx::cublas_args_of(d), blfft::error);

  // One handle per device, kept; none made while capturing (may_create = false).
  auto& cache = host_executor::cublas_cache();
  const int live = blfft_standin::cublas_live_handles();
  {
    blfft_standin::device_scope on(5);
    const auto h1 = cache.get(5), h2 = cache.get(5);
    EXPECT_EQ(h1, h2);
  }
  EXPECT_EQ(blfft_standin::cublas_live_handles(), live + 1);
  cdx::gemm_desc g;
  g.m = g.n = g.k = g.lda = g.ldb = g.ldc = 2;
  std::vector<float> x(4, 1.f), y(4);
  host_executor ex(7);
  blfft_standin::device_scope on(7);
  expect_refused(
      [&] { cdx::run_cublas(cache, ex, 7, g, x.data(), x.data(), y.data(), nullptr, false); },
      blfft::error_code::unsupported, "before capturing");
}

}  // namespace
TEST(CudaCublasMixing, Tf32ExactlyWhenAsked) {
  // The stand-in rounds A and B to TF32 exactly when the compute type allows it: under
  // scoped_tf32(true) for float, never for double, never without the scope.
  const auto p = make2d(2, 8, 8, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  problem<float> pr(p, 3);
  host_executor ex;
  const emulated<float> pl(ex, geo, with_engine(mix_engine::cublas));
  const auto forward = [&] {
    std::vector<float> y(geo.output_size());
    pl.forward(pr.xv(), pr.wv(), nullptr,
               tensor_view<float>::contiguous(y.data(), pr.d.output_shape()), nullptr, nullptr,
               nullptr);
    return y;
  };
  blfft_standin::reset_cublas_stats();
  const auto y32 = forward();
  EXPECT_EQ(blfft_standin::cublas_stats().gemm, 1);
  EXPECT_EQ(blfft_standin::cublas_stats().tf32_rounded, 0);
  std::vector<float> ytf;
  {
    const blfft::cuda::scoped_tf32 allow(true);
    ytf = forward();
  }
  EXPECT_EQ(blfft_standin::cublas_stats().gemm, 2);
  EXPECT_EQ(blfft_standin::cublas_stats().tf32_rounded, 1);
  forward();  // the scope is gone: FP32 again
  EXPECT_EQ(blfft_standin::cublas_stats().tf32_rounded, 1);
  // TF32 results: close to FP32 (10-bit mantissas), but not the same.
  EXPECT_NE(y32, ytf);
  EXPECT_TRUE(rel_close("forward TF32 vs FP32", widen(ytf), widen(y32), 5e-3));

  problem<double> prd(p, 3);
  const emulated<double> pld(ex, geo, with_engine(mix_engine::cublas));
  std::vector<double> yd(geo.output_size());
  const blfft::cuda::scoped_tf32 allow(true);
  pld.forward(prd.xv(), prd.wv(), nullptr,
              tensor_view<double>::contiguous(yd.data(), prd.d.output_shape()), nullptr, nullptr,
              nullptr);
  EXPECT_EQ(blfft_standin::cublas_stats().tf32_rounded, 1);  // double: never
}

#endif  // BLFFT_TEST_CUFFT_STANDIN

// ---------------------------------------------------------------------------------------------
// Devices: a plan on a device other than the current one (issue #10, item 6)
// ---------------------------------------------------------------------------------------------

namespace {

using namespace bt;
namespace cdx = blfft::cuda::detail;

/// Host buffers registered as device memory of one emulated device, with a stream of it.
template <class T>
struct emulated_device_memory {
  struct buffer {
    std::vector<T> v;
    buffer() = default;
    buffer(std::vector<T> h, int dev) : v(std::move(h)) {
      blfft_standin::register_memory(v.data(), sizeof(T) * v.size(), dev);
    }
    buffer(buffer&& o) noexcept : v(std::move(o.v)) {}
    buffer& operator=(buffer&& o) noexcept {
      std::swap(v, o.v);
      return *this;
    }
    ~buffer() {
      if (!v.empty()) blfft_standin::unregister_memory(v.data());
    }
    T* get() const { return const_cast<T*>(v.data()); }
  };
  int device;
  int stream_tag = 0;
  explicit emulated_device_memory(int d) : device(d) {
    blfft_standin::register_stream(&stream_tag, d);
  }
  ~emulated_device_memory() { blfft_standin::unregister_stream(&stream_tag); }
  buffer upload(const std::vector<T>& h) { return buffer(h, device); }
  buffer nan_buffer(i64 n) { return buffer(nan_filled<T>(n), device); }
  std::vector<T> download(const buffer& b) { return b.v; }
  void* stream() { return &stream_tag; }
};

TEST(CudaDevices, EveryCallRunsOnThePlansDevice) {
  // Device 1's plan called while device 0 (then 2) is current, with device 1's memory and stream:
  // every kernel, cuFFT call and allocation runs with device 1 current (the executor counts any
  // that does not), the results are right, and the caller's device is current again afterwards.
  using T = double;
  const auto p = make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  problem<T> pr(p, 5);
  const auto ref = dense_results(dense_reference(p, geo.grid, geo.kept_rows, geo.kept_cols), pr.x,
                                 pr.w, pr.b, pr.g);
  const blfft::plan<T> cpu(geo);
  for (int caller : {0, 2}) {
    SCOPED_TRACE("caller's device " + std::to_string(caller));
    blfft_standin::device_scope current(caller);
    host_executor ex(1);
    {
      const emulated_plan<T> pl(ex, geo);
      EXPECT_EQ(blfft_standin::current_device(), caller);
      emulated_device_memory<T> mem(1);
      check_cuda_entry_points(pl, mem, pr, ref, tol<T>::dense, cpu);
      EXPECT_EQ(blfft_standin::current_device(), caller);
    }  // the plan's tables are freed with device 1 current
    EXPECT_EQ(ex.stats().wrong_device, 0);
    EXPECT_EQ(blfft_standin::current_device(), caller);
    // the energy map too
    emulated_device_memory<T> mem(1);
    auto x = mem.upload(pr.xt);
    const auto xv = tensor_view<const T>::contiguous(x.get(), pr.d.input_shape());
    const auto e = cdx::energy_map<T>(ex, p, xv, mem.stream());
    EXPECT_TRUE(rel_close("energy map", e, blfft::energy_map<T>(p, pr.xv()), tol<T>::energy));
    EXPECT_EQ(ex.stats().wrong_device, 0);
    EXPECT_EQ(blfft_standin::current_device(), caller);
  }
}

TEST(CudaDevices, MemoryOrStreamOfAnotherDeviceIsRefused) {
  using T = float;
  const auto p = make2d(2, 3, 4, {6, 5}, {3, 3});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  problem<T> pr(p, 1);
  host_executor ex(1);
  const emulated<T> pl(ex, geo);
  emulated_device_memory<T> dev0(0), dev1(1);
  auto x0 = dev0.upload(pr.xt);
  auto x1 = dev1.upload(pr.xt), w1 = dev1.upload(pr.wt);
  auto y1 = dev1.nan_buffer(pr.d.output_size());
  using cv = tensor_view<const T>;
  const auto yv = tensor_view<T>::contiguous(y1.get(), pr.d.output_shape());
  // x from `x`'s device, y on device 1, on `stream`
  const auto forward = [&](const auto& x, void* stream) {
    pl.forward(cv::contiguous(x.get(), pr.d.input_shape()),
               cv::contiguous(w1.get(), pr.d.weight_shape()), nullptr, yv, nullptr, nullptr,
               stream);
  };
  expect_refused([&] { forward(x0, dev1.stream()); }, blfft::error_code::type_mismatch,
                 "input is device memory of CUDA device 0", "no error for an input on device 0");
  expect_refused([&] { forward(x1, dev0.stream()); }, blfft::error_code::type_mismatch,
                 "stream belongs to CUDA device 0", "no error for a stream of device 0");
  EXPECT_EQ(blfft_standin::current_device(), 0);
  EXPECT_EQ(ex.stats().wrong_device, 0);
}

}  // namespace
