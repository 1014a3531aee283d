// The CUDA backend on a GPU, against the oracles and the CPU backend.
//
// CudaDevice* tests need a GPU: where blfft::cuda::device_count() is 0 they are skipped with
// GTEST_SKIP (reported as skipped, not as passed). CudaDeviceSmall.* is the small case that
// tools/gpu_check.sh runs under compute-sanitizer. CudaNoDevice.* is the opposite: it checks, on
// a machine without a GPU (CI), that the backend refuses cleanly, and is skipped where a GPU is.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "blfft/cuda.hpp"
#include "cuda_harness.hpp"
#include "harness.hpp"
#include "oracles.hpp"
#include "storage.hpp"

namespace {

using namespace bt;
using blfft::cuda::mix_tile;

bool have_device() {
  return blfft::cuda::device_count() > 0;
}

#define REQUIRE_DEVICE()                                                                           \
  do {                                                                                             \
    if (!have_device()) GTEST_SKIP() << "no CUDA device: GPU test skipped (not a pass)";           \
  } while (0)

#define CUDA_OK(call) ASSERT_EQ((call), cudaSuccess) << #call

/// Device buffers for the harness, on a non-default (non-blocking) stream. Every copy is enqueued
/// on that stream, so it is ordered with the plan's work there. (A synchronous cudaMemcpy goes on
/// the legacy default stream, which a non-blocking stream does not wait for; and from pageable
/// memory it may return before the data has reached the device: a race with the kernels.)
template <class T>
struct device_memory {
  struct buffer {
    T* p = nullptr;
    buffer() = default;
    explicit buffer(i64 n) {
      EXPECT_EQ(cudaMalloc(&p, sizeof(T) * static_cast<size_t>(std::max<i64>(n, 1))), cudaSuccess);
    }
    buffer(buffer&& o) noexcept : p(o.p) { o.p = nullptr; }
    buffer& operator=(buffer&& o) noexcept {
      std::swap(p, o.p);
      return *this;
    }
    ~buffer() {
      if (p) cudaFree(p);
    }
    T* get() const { return p; }
    i64 n = 0;
  };
  cudaStream_t s = nullptr;
  device_memory() { EXPECT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess); }
  ~device_memory() {
    cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
  }

  buffer upload(const std::vector<T>& h) {
    buffer b(static_cast<i64>(h.size()));
    b.n = static_cast<i64>(h.size());
    EXPECT_EQ(cudaMemcpyAsync(b.p, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice, s),
              cudaSuccess);
    // h may be a temporary: wait until the copy has read it.
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    return b;
  }
  buffer nan_buffer(i64 n) { return upload(nan_filled<T>(n)); }
  std::vector<T> download(const buffer& b) {
    std::vector<T> h(static_cast<size_t>(b.n));
    EXPECT_EQ(cudaMemcpyAsync(h.data(), b.p, sizeof(T) * h.size(), cudaMemcpyDeviceToHost, s),
              cudaSuccess);
    EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    return h;
  }
  void* stream() { return s; }
};

template <class T>
void run_problem(const conv_params& p, const compression& c,
                 const blfft::cuda::cuda_plan_options& o = {}) {
  const auto geo = blfft::make_geometry(p, c);
  SCOPED_TRACE(name_of(p) + " " + geo.describe());
  const blfft::cuda::plan<T> gpu(geo, 0, o);
  device_memory<T> mem;
  check_cuda_problem<T>(gpu, mem, p, geo);
}

blfft::cuda::cuda_plan_options tile(mix_tile t) {
  blfft::cuda::cuda_plan_options o;
  o.tile = t;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Without a device
// ---------------------------------------------------------------------------------------------

TEST(CudaNoDevice, PlansAreRefusedCleanly) {
  if (have_device()) GTEST_SKIP() << "a CUDA device is present: this checks the no-device path";
  EXPECT_TRUE(blfft::cuda::compiled());
  EXPECT_EQ(blfft::cuda::device_count(), 0);
  const auto p = make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  expect_refused([&] { blfft::cuda::plan<float>(p, compression::rate(0.5)); },
                 blfft::error_code::unsupported, "no CUDA device",
                 "a CUDA plan was built without a device");
  // 3D layers are planned like the others (no "CPU backend only" refusal any more).
  expect_refused([&] { blfft::cuda::plan<float>(cuda_problems_3d()[0], compression::rate(0.5)); },
                 blfft::error_code::unsupported, "no CUDA device",
                 "a 3D CUDA plan was built without a device");
  EXPECT_THROW(blfft::cuda::get_plan<float>(p, compression::rate(0.0)), blfft::error);
  EXPECT_THROW(blfft::cuda::memory_stats(), blfft::error);
  std::vector<float> x(2 * 3 * 9 * 7);
  EXPECT_THROW(blfft::cuda::energy_map<float>(
                   p, tensor_view<const float>::contiguous(x.data(), {2, 3, 9, 7})),
               blfft::error);
  EXPECT_EQ(blfft::cuda::plan_cache_size(), 0u);
  blfft::cuda::clear_plan_cache();  // harmless without a device
}

// ---------------------------------------------------------------------------------------------
// On a device
// ---------------------------------------------------------------------------------------------

TEST(CudaDeviceSmall, ForwardBackward) {
  // Small enough for compute-sanitizer; float at r = 0 and r > 0, 2D and 1D.
  REQUIRE_DEVICE();
  run_problem<float>(make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1}), compression::rate(0.5));
  run_problem<float>(make2d(2, 4, 6, {11, 10}, {3, 2}, {2, 3}, {1, 0}, {2, 1}, 2),
                     compression::rate(0.0));
  run_problem<float>(make1d(3, 4, 2, 30, 5, 3, 2, 2, 2), compression::rate(0.5));
  run_problem<float>(cuda_problems_3d()[1], compression::rate(0.5));  // 3D: the depth DFT
}

template <class T>
void run_rates() {
  for (const auto& p : cuda_problems())
    for (double r : {0.0, 0.5, 0.8}) run_problem<T>(p, compression::rate(r));
}
TEST(CudaDevice, RatesFloat) {
  REQUIRE_DEVICE();
  run_rates<float>();
}
TEST(CudaDevice, RatesDouble) {
  REQUIRE_DEVICE();
  run_rates<double>();
}

TEST(CudaDevice, BothMixTilesAndLargerChannels) {
  REQUIRE_DEVICE();
  for (auto t : {mix_tile::small, mix_tile::large}) {
    run_problem<float>(make2d(3, 70, 40, {6, 5}, {3, 3}, {1, 1}, {1, 1}), compression::rate(0.5),
                       tile(t));
    run_problem<double>(make2d(2, 36, 66, {5, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 3),
                        compression::rate(0.3), tile(t));
  }
}

TEST(CudaDevice, MixingOnCublas) {
  // The mixing forced onto cuBLAS (stacked real GEMMs, FP32 / FP64: no scoped_tf32), every
  // problem, and the own kernel forced, for the engine rule's other side.
  REQUIRE_DEVICE();
  blfft::cuda::cuda_plan_options blas, own;
  blas.engine = blfft::cuda::mix_engine::cublas;
  own.engine = blfft::cuda::mix_engine::own;
  for (const auto& p : cuda_problems()) {
    run_problem<double>(p, compression::rate(0.5), blas);
    run_problem<float>(p, compression::rate(0.0), blas);
    run_problem<float>(p, compression::rate(0.5), own);
  }
  run_problem<float>(make2d(3, 70, 40, {6, 5}, {3, 3}, {1, 1}, {1, 1}), compression::rate(0.5),
                     blas);
}

TEST(CudaDevice, Conv3d) {
  // 3D layers (volume_stage: the 2D stages per depth slice, the depth DFT kernel) against direct
  // 3D convolution at r = 0 and the CPU backend at r > 0, on both mixing engines.
  REQUIRE_DEVICE();
  blfft::cuda::cuda_plan_options blas;
  blas.engine = blfft::cuda::mix_engine::cublas;
  for (const auto& p : cuda_problems_3d()) {
    for (double r : {0.0, 0.5, 0.75}) {
      run_problem<float>(p, compression::rate(r));
      run_problem<double>(p, compression::rate(r));
    }
    run_problem<double>(p, compression::rate(0.5), blas);
    run_problem<float>(p, compression::rate(0.0), blas);
  }
  // A larger layer: larger slices, several mixing tiles.
  run_problem<float>(conv_params::conv3d(2, 24, 40, {6, 40, 36}, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}),
                     compression::rate(0.5));
}

TEST(CudaDevice, ExplicitKeptSets) {
  REQUIRE_DEVICE();
  const auto p = make2d(2, 3, 4, {9, 12}, {3, 4}, {2, 1}, {1, 2});
  run_problem<double>(p, compression::band(2, 5));
  run_problem<double>(p, compression::indices({0, 3, 9}, {1, 4, 8}));
  run_problem<float>(p, compression::indices({0, 1, 11}, {}));
  run_problem<double>(make1d(2, 3, 2, 20, 5, 2, 2), compression::indices({}, {0, 3, 7, 12}));
}

TEST(CudaDevice, ResNetLayerMatchesCpuBackend) {
  // 64 channels at 32x32, the paper's CIFAR layer, against the CPU backend (float both).
  REQUIRE_DEVICE();
  const auto p = make2d(8, 64, 64, {32, 32}, {3, 3}, {1, 1}, {1, 1});
  for (double r : {0.0, 0.5, 0.75}) {
    SCOPED_TRACE("rate " + std::to_string(r));
    const auto geo = blfft::make_geometry(p, compression::rate(r));
    problem<float> pr(p, 5);
    const blfft::plan<float> cpu(geo);
    std::vector<float> y(geo.output_size()), dx(geo.input_size()), dw(geo.weight_size()),
        db(p.out_channels), xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
    cpu.forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, pr.d.output_shape()), spec(xs),
                spec(ws));
    auto dxv = out_view(dx, pr.d.input_shape());
    auto dwv = out_view(dw, pr.d.weight_shape());
    cpu.backward(pr.gv(), spec(xs), spec(ws), &dxv, &dwv, db.data());
    const reference ref{widen(y), {}, widen(dx), widen(dw), widen(db)};

    const blfft::cuda::plan<float> gpu(geo);
    device_memory<float> mem;
    auto x = mem.upload(pr.xt), w = mem.upload(pr.wt), b = mem.upload(pr.bt), g = mem.upload(pr.gt);
    auto gy = mem.nan_buffer(geo.output_size()), gdx = mem.nan_buffer(geo.input_size()),
         gdw = mem.nan_buffer(geo.weight_size()), gdb = mem.nan_buffer(p.out_channels),
         gxs = mem.nan_buffer(geo.x_spectrum_size()), gws = mem.nan_buffer(geo.w_spectrum_size());
    using cv = tensor_view<const float>;
    using v = tensor_view<float>;
    gpu.forward(cv::contiguous(x.get(), pr.d.input_shape()),
                cv::contiguous(w.get(), pr.d.weight_shape()), b.get(),
                v::contiguous(gy.get(), pr.d.output_shape()), {gxs.get(), geo.x_spectrum_size()},
                {gws.get(), geo.w_spectrum_size()}, mem.s);
    const auto gdxv = v::contiguous(gdx.get(), pr.d.input_shape());
    const auto gdwv = v::contiguous(gdw.get(), pr.d.weight_shape());
    gpu.backward(cv::contiguous(g.get(), pr.d.output_shape()), {gxs.get(), geo.x_spectrum_size()},
                 {gws.get(), geo.w_spectrum_size()}, &gdxv, &gdwv, gdb.get(), mem.s);
    EXPECT_TRUE(rel_close("forward vs CPU", mem.download(gy), ref.y, tol<float>::direct));
    EXPECT_TRUE(rel_close("grad_input vs CPU", mem.download(gdx), ref.dx, tol<float>::direct));
    EXPECT_TRUE(rel_close("grad_weight vs CPU", mem.download(gdw), ref.dw, tol<float>::direct));
    EXPECT_TRUE(rel_close("grad_bias vs CPU", mem.download(gdb), ref.db, tol<float>::direct));
  }
}

TEST(CudaDevice, StridedViews) {
  // channels-last input, every-other-element output; the gaps must stay untouched.
  REQUIRE_DEVICE();
  using T = double;
  const strided_forward_case<T> c;
  device_memory<T> mem;
  auto x = mem.upload(c.x_channels_last()), w = mem.upload(c.pr.wt), b = mem.upload(c.pr.bt);
  auto ybuf = mem.upload(c.y_buffer());
  const blfft::cuda::plan<T> gpu(c.geo);
  gpu.forward(tensor_view<const T>(x.get(), c.d.input_shape(), c.x_strides()),
              tensor_view<const T>::contiguous(w.get(), c.d.weight_shape()), b.get(),
              tensor_view<T>(ybuf.get(), c.d.output_shape(), c.y_strides()), nullptr, nullptr,
              mem.s);
  c.check(mem.download(ybuf));
}

/// 16-bit tensors on the GPU: forward and both gradients against the float plan on the rounded
/// inputs, to the final rounding (two units of X's last place, relative to the largest value).
template <class X>
void half_precision_layer(double ulp) {
  namespace cdx = blfft::cuda::detail;
  using T = float;
  const auto p = make2d(4, 16, 8, {12, 12}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const problem<T> pr(p, 5);
  const auto& d = pr.d;
  const auto round16 = [](const std::vector<T>& v, std::vector<X>& h, std::vector<T>& f) {
    for (T a : v) {
      h.push_back(cdx::to_storage<X>(a));
      f.push_back(cdx::to_compute<T>(h.back()));
    }
  };
  std::vector<X> xh, wh, bh, gh;
  std::vector<T> xf, wf, bf, gf;
  round16(pr.xt, xh, xf);
  round16(pr.wt, wh, wf);
  round16(pr.bt, bh, bf);
  round16(pr.gt, gh, gf);
  const blfft::cuda::plan<T> gpu(geo);
  device_memory<T> mf;
  device_memory<X> mh;
  const auto run = [&](auto& mem, const auto& x, const auto& w, const auto& b, const auto& g) {
    using V = typename std::decay_t<decltype(x)>::value_type;
    auto xd = mem.upload(x), wd = mem.upload(w), bd = mem.upload(b), gd = mem.upload(g);
    auto y = mem.upload(std::vector<V>(static_cast<size_t>(d.output_size()))),
         dx = mem.upload(std::vector<V>(static_cast<size_t>(d.input_size()))),
         dw = mem.upload(std::vector<V>(static_cast<size_t>(d.weight_size()))),
         db = mem.upload(std::vector<V>(static_cast<size_t>(d.F)));
    device_memory<T> spectra;
    auto xs = spectra.nan_buffer(geo.x_spectrum_size()),
         ws = spectra.nan_buffer(geo.w_spectrum_size());
    using cv = tensor_view<const V>;
    using v = tensor_view<V>;
    gpu.forward(cv::contiguous(xd.get(), d.input_shape()),
                cv::contiguous(wd.get(), d.weight_shape()), bd.get(),
                v::contiguous(y.get(), d.output_shape()), {xs.get(), geo.x_spectrum_size()},
                {ws.get(), geo.w_spectrum_size()}, mem.s);
    const auto dxv = v::contiguous(dx.get(), d.input_shape());
    const auto dwv = v::contiguous(dw.get(), d.weight_shape());
    gpu.backward(cv::contiguous(gd.get(), d.output_shape()), {xs.get(), geo.x_spectrum_size()},
                 {ws.get(), geo.w_spectrum_size()}, &dxv, &dwv, db.get(), mem.s);
    return std::vector<std::vector<V>>{mem.download(y), mem.download(dx), mem.download(dw),
                                       mem.download(db)};
  };
  const auto want = run(mf, xf, wf, bf, gf);
  const auto got = run(mh, xh, wh, bh, gh);
  const char* names[] = {"y", "grad_input", "grad_weight", "grad_bias"};
  for (size_t t = 0; t < want.size(); ++t) {
    double scale = 0;
    for (T a : want[t]) scale = std::max(scale, std::abs(double(a)));
    for (size_t i = 0; i < want[t].size(); ++i)
      ASSERT_LE(std::abs(double(cdx::to_compute<T>(got[t][i])) - double(want[t][i])),
                2 * ulp * std::max(std::abs(double(want[t][i])), 1e-3 * scale))
          << names[t] << " " << i;
  }
}

TEST(CudaDevice, HalfPrecisionTensors) {
  REQUIRE_DEVICE();
  half_precision_layer<blfft::cuda::half>(std::ldexp(1.0, -11));
  half_precision_layer<blfft::cuda::bfloat16>(std::ldexp(1.0, -8));
}

TEST(CudaDevice, StreamsAndThreadsGiveIdenticalResults) {
  // Four threads, each with its own stream, share one cached plan; every result must equal the
  // single-stream one (to 1e-6: the kernels are deterministic and so, in practice, is cuFFT; a
  // workspace shared between streams or a race would show as large errors or NaN).
  REQUIRE_DEVICE();
  using T = float;
  const auto p = make2d(4, 16, 16, {16, 16}, {3, 3}, {1, 1}, {1, 1});
  const auto plan = blfft::cuda::get_plan<T>(p, compression::rate(0.5));
  EXPECT_EQ(plan, blfft::cuda::get_plan<T>(p, compression::rate(0.5)));
  const auto& geo = plan->geometry();
  problem<T> pr(p, 9);
  const auto run = [&](device_memory<T>& mem, int iterations) {
    auto x = mem.upload(pr.xt), w = mem.upload(pr.wt), g = mem.upload(pr.gt);
    auto y = mem.nan_buffer(geo.output_size()), dx = mem.nan_buffer(geo.input_size()),
         dw = mem.nan_buffer(geo.weight_size()), xs = mem.nan_buffer(geo.x_spectrum_size()),
         ws = mem.nan_buffer(geo.w_spectrum_size());
    using cv = tensor_view<const T>;
    using v = tensor_view<T>;
    for (int i = 0; i < iterations; ++i) {
      plan->forward(cv::contiguous(x.get(), pr.d.input_shape()),
                    cv::contiguous(w.get(), pr.d.weight_shape()), nullptr,
                    v::contiguous(y.get(), pr.d.output_shape()), {xs.get(), geo.x_spectrum_size()},
                    {ws.get(), geo.w_spectrum_size()}, mem.s);
      const auto dxv = v::contiguous(dx.get(), pr.d.input_shape());
      const auto dwv = v::contiguous(dw.get(), pr.d.weight_shape());
      plan->backward(cv::contiguous(g.get(), pr.d.output_shape()),
                     {xs.get(), geo.x_spectrum_size()}, {ws.get(), geo.w_spectrum_size()}, &dxv,
                     &dwv, nullptr, mem.s);
    }
    std::vector<T> out = mem.download(y);
    const auto a = mem.download(dx), c = mem.download(dw);
    out.insert(out.end(), a.begin(), a.end());
    out.insert(out.end(), c.begin(), c.end());
    return out;
  };
  device_memory<T> ref_mem;
  const auto want = run(ref_mem, 1);
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      try {
        device_memory<T> mem;
        const auto got = run(mem, 10);
        if (!rel_close("stream result", got, widen(want), 1e-6)) ++mismatches;
      } catch (const std::exception&) {
        ++failures;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(CudaDevice, PlanCacheAndDevices) {
  REQUIRE_DEVICE();
  const auto p = make2d(2, 3, 4, {9, 7}, {3, 3});
  blfft::cuda::clear_plan_cache();
  auto a = blfft::cuda::get_plan<float>(p, compression::rate(0.5));
  auto b = blfft::cuda::get_plan<float>(p, compression::rate(0.5));
  auto c = blfft::cuda::get_plan<double>(p, compression::rate(0.5));
  EXPECT_EQ(a, b);
  EXPECT_EQ(blfft::cuda::plan_cache_size(), 2u);
  EXPECT_EQ(a->device(), 0);
  expect_refused(
      [&] { blfft::cuda::get_plan<float>(p, compression::rate(0.5), blfft::cuda::device_count()); },
      blfft::error_code::invalid_argument, "", "no error for a device index out of range");
  blfft::cuda::clear_plan_cache();
  EXPECT_EQ(blfft::cuda::plan_cache_size(), 0u);
  EXPECT_EQ(a->geometry().kept, b->geometry().kept);  // held plans stay valid
}

TEST(CudaDevice, HostPointersAreRejected) {
  REQUIRE_DEVICE();
  const auto p = make2d(2, 3, 4, {9, 7}, {3, 3});
  const blfft::cuda::plan<float> gpu(p, compression::rate(0.5));
  problem<float> pr(p, 1);
  device_memory<float> mem;
  auto w = mem.upload(pr.wt);
  auto y = mem.nan_buffer(pr.d.output_size());
  expect_refused(
      [&] {
        gpu.forward(pr.xv(), tensor_view<const float>::contiguous(w.get(), pr.d.weight_shape()),
                    nullptr, tensor_view<float>::contiguous(y.get(), pr.d.output_shape()));
      },
      blfft::error_code::type_mismatch, "input is host memory", "no error for a host input");
}

TEST(CudaDevice, EnergyMapMatchesCpu) {
  REQUIRE_DEVICE();
  for (const auto& p :
       {make2d(3, 4, 2, {9, 7}, {3, 3}, {1, 1}, {1, 1}), make1d(5, 2, 3, 20, 3, 1, 2)}) {
    SCOPED_TRACE(name_of(p));
    problem<double> pr(p, 11);
    device_memory<double> mem;
    auto x = mem.upload(pr.xt);
    const auto xv = tensor_view<const double>::contiguous(x.get(), pr.d.input_shape());
    const auto got = blfft::cuda::energy_map<double>(p, xv, 0, mem.s);
    EXPECT_TRUE(
        rel_close("energy map", got, blfft::energy_map<double>(p, pr.xv()), tol<double>::energy));
    EXPECT_EQ(blfft::cuda::select_by_energy<double>(p, xv, 0.9, 0, mem.s).limits,
              blfft::select_by_energy<double>(p, pr.xv(), 0.9).limits);
  }
}

// Issue #10 item 3: temporaries come from the caller's allocator (default: cudaMallocAsync from
// the device's default pool, its attributes untouched) and nothing stays allocated between calls.

/// The default pool's bytes in use and reserved, and cudaMemGetInfo's free bytes, after a
/// device synchronisation (when a release threshold of 0 hands freed memory back).
struct device_memory_state {
  uint64_t pool_used = 0, pool_reserved = 0, threshold = 0;
  size_t free = 0;
  static device_memory_state now() {
    device_memory_state m;
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    cudaMemPool_t pool = nullptr;
    EXPECT_EQ(cudaDeviceGetDefaultMemPool(&pool, 0), cudaSuccess);
    EXPECT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &m.pool_used),
              cudaSuccess);
    EXPECT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &m.pool_reserved),
              cudaSuccess);
    EXPECT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &m.threshold),
              cudaSuccess);
    size_t total = 0;
    EXPECT_EQ(cudaMemGetInfo(&m.free, &total), cudaSuccess);
    return m;
  }
};

TEST(CudaDevice, NoDeviceMemoryHeldBetweenCalls) {
  REQUIRE_DEVICE();
  const auto p = make2d(4, 16, 16, {20, 18}, {3, 3}, {1, 1}, {1, 1});
  const auto geo = blfft::make_geometry(p, compression::rate(0.5));
  const blfft::plan<float> cpu(geo);
  problem<float> pr(p, 2);
  const reference ref = [&] {
    std::vector<float> y(geo.output_size()), dx(geo.input_size()), dw(geo.weight_size());
    auto dxv = out_view(dx, pr.d.input_shape()), dwv = out_view(dw, pr.d.weight_shape());
    cpu.forward(pr.xv(), pr.wv(), nullptr, out_view(y, pr.d.output_shape()));
    cpu.backward_with_weight(pr.gv(), {}, pr.wv(), &dxv, nullptr, nullptr);
    std::vector<float> xs(geo.x_spectrum_size());
    cpu.input_spectrum(pr.xv(), spec(xs));
    cpu.weight_grad(pr.gv(), spec(xs), dwv);
    return reference{widen(y), {}, widen(dx), widen(dw), {}};
  }();
  const blfft::cuda::plan<float> gpu(geo);
  device_memory<float> mem;
  auto x = mem.upload(pr.xt), w = mem.upload(pr.wt), g = mem.upload(pr.gt);
  auto y = mem.nan_buffer(geo.output_size()), dx = mem.nan_buffer(geo.input_size()),
       dw = mem.nan_buffer(geo.weight_size());
  using cv = tensor_view<const float>;
  using v = tensor_view<float>;
  const auto xv = cv::contiguous(x.get(), pr.d.input_shape());
  const auto wv = cv::contiguous(w.get(), pr.d.weight_shape());
  const auto gv = cv::contiguous(g.get(), pr.d.output_shape());
  const auto dxv = v::contiguous(dx.get(), pr.d.input_shape());
  const auto dwv = v::contiguous(dw.get(), pr.d.weight_shape());
  // Every temporary here is the plan's: spectra not given, recomputed weight spectrum.
  const auto calls = [&] {
    gpu.forward(xv, wv, nullptr, v::contiguous(y.get(), pr.d.output_shape()), {}, {}, mem.s);
    gpu.backward_with_weight(gv, {}, wv, &dxv, nullptr, nullptr, mem.s);
    auto xs = mem.nan_buffer(geo.x_spectrum_size());
    gpu.input_spectrum(xv, {xs.get(), geo.x_spectrum_size()}, mem.s);
    gpu.weight_grad(gv, {xs.get(), geo.x_spectrum_size()}, dwv, mem.s);
    ASSERT_EQ(cudaStreamSynchronize(mem.s), cudaSuccess);
  };
  calls();  // warm-up: cuFFT plans are made here and kept (plans may hold memory)
  const auto before = device_memory_state::now();
  EXPECT_EQ(before.threshold, 0u) << "the default pool's release threshold was changed";
  blfft::cuda::reset_memory_peak(0);
  const auto stats0 = blfft::cuda::memory_stats(0);
  calls();
  const auto after = device_memory_state::now();
  const auto stats1 = blfft::cuda::memory_stats(0);
  EXPECT_TRUE(rel_close("forward", mem.download(y), ref.y, tol<float>::dense));
  EXPECT_TRUE(rel_close("grad_input", mem.download(dx), ref.dx, tol<float>::dense));
  EXPECT_TRUE(rel_close("grad_weight", mem.download(dw), ref.dw, tol<float>::dense));
  // blfft asked for temporaries and gave every byte back.
  EXPECT_EQ(stats1.in_use, 0u);
  EXPECT_GE(stats1.peak, static_cast<size_t>(sizeof(float) * geo.x_spectrum_size()));
  EXPECT_GT(stats1.allocations, stats0.allocations);
  // From the default pool, which holds no more than before, and the device neither.
  EXPECT_EQ(after.pool_used, before.pool_used);
  EXPECT_LE(after.pool_reserved, before.pool_reserved);
  EXPECT_EQ(after.threshold, 0u);
  const size_t slack = size_t(2) << 20;  // driver bookkeeping, not blfft's
  EXPECT_GE(after.free + slack, before.free)
      << "device memory free before the calls: " << before.free << ", after: " << after.free;
}

/// cudaMallocAsync with a ledger: what a caller's allocator sees.
class ledger_allocator final : public blfft::cuda::allocator {
 public:
  void* allocate(std::size_t bytes, int device, void* stream) override {
    int current = -1;
    EXPECT_EQ(cudaGetDevice(&current), cudaSuccess);
    EXPECT_EQ(current, device);
    void* p = nullptr;
    EXPECT_EQ(cudaMallocAsync(&p, bytes, static_cast<cudaStream_t>(stream)), cudaSuccess);
    std::lock_guard<std::mutex> lock(mutex);
    live[p] = {bytes, stream};
    streams.insert(stream);
    ++count;
    return p;
  }
  void deallocate(void* p, std::size_t bytes, int, void* stream) noexcept override {
    cudaFreeAsync(p, static_cast<cudaStream_t>(stream));
    std::lock_guard<std::mutex> lock(mutex);
    const auto it = live.find(p);
    // Given back with the size and on the stream it was allocated with.
    if (it == live.end() || it->second != std::make_pair(bytes, stream)) ++bad_frees;
    if (it != live.end()) live.erase(it);
  }
  std::mutex mutex;
  std::map<void*, std::pair<std::size_t, void*>> live;
  std::set<void*> streams;
  int64_t count = 0, bad_frees = 0;
};

TEST(CudaDevice, CallerAllocatorGetsEveryTemporaryBack) {
  REQUIRE_DEVICE();
  ledger_allocator a;
  const auto before = blfft::cuda::memory_stats(0);
  {
    blfft::cuda::scoped_allocator use(a);
    // Every entry point, against the oracle and the CPU backend, on the harness's own stream.
    run_problem<float>(make2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1}), compression::rate(0.5));
  }
  EXPECT_GT(a.count, 0);
  EXPECT_TRUE(a.live.empty()) << a.live.size() << " temporaries not given back";
  EXPECT_EQ(a.bad_frees, 0);
  EXPECT_EQ(a.streams.size(), 1u) << "temporaries on more than the call's stream";
  EXPECT_EQ(a.streams.count(nullptr), 0u) << "temporaries on the legacy stream, not the call's";
  const auto after = blfft::cuda::memory_stats(0);
  EXPECT_EQ(after.allocations - before.allocations, static_cast<uint64_t>(a.count));
  EXPECT_EQ(after.in_use, 0u);
}

}  // namespace
