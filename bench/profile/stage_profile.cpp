// Per-stage profile of one fwd+bwd of blfft's CPU core, and the floors it implies (issue #15).
//
// For each layer and rate: the time of every stage of the training step the Python layer runs
// (forward keeping both spectra, then backward from them; from the weight's taps where the plan
// mixes from taps), median of N runs, with the real multiply-adds each stage does (counted from
// the plan's geometry) and the bytes it must at least read and write (its inputs + outputs).
// Alongside: the rate BLIS reaches on exactly the GEMM shapes of each stage (the mixing's
// per-frequency products, the transforms' DFT products per chunk), the large-sgemm rate and the
// DRAM bandwidth, all on the same threads. bench/profile/floors.py turns this into the floor
// table of bench/NOTES.md. Build (against a build of libblfft; README in this folder):
//
//   bash bench/profile/build.sh [BUILD_DIR]   (one g++ line; BUILD_DIR default build-floors)
//
//   stage_profile [--threads T] [--repeats N] [--layer SUBSTRING] [--measure] [--machine-only]
//   (--measure: FFTW_MEASURE plans, plan_options::rigor; default estimate, as the Python layer)
//
// What the public API cannot call alone is measured on a stand-in plan or derived by differences
// (each noted in the JSON):
//   analysis of grad_out = input_spectrum of N x F output-sized images on the same grid
//                          (input_grad + weight_grad - backward is kept as a check)
//   synthesis of y       = forward_spectra of the same layer with C = 1 (mixing 1/C of the real)
//   synthesis of dx      = input_grad of the same layer with F = 1 (analysis + mixing 1/F)
//   synthesis of dw      = weight_grad of the same layer with N = 1 (analysis + mixing 1/N)
//   each mixing          = its pass - the analysis and synthesis above.

#include <blfft/blfft.hpp>
#include <fftw3.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

// From src/ (header-only, read-only here): the engine choice and flop counts of the pruned
// transforms, and where each tensor's samples sit on the grid. One source of truth: the
// profile counts what the library would choose, not a copy of its rules.
#include "engine_choice.hpp"
#include "layer.hpp"

extern "C" void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b,
                       const int* ldb, const float* beta, float* c, const int* ldc);

namespace {

using clock_type = std::chrono::steady_clock;
using blfft::detail::placement;
using blfft::detail::transform_shape;

/// Row-major C (M x N) = op(A) op(B), the same call shape as blfft's (src/blas.cpp).
void gemm(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
          float* C, int ldc) {
  const float one = 1, zero = 0;
  const char fa = tb ? 'T' : 'N', fb = ta ? 'T' : 'N';
  sgemm_(&fa, &fb, &N, &M, &K, &one, B, &ldb, A, &lda, &zero, C, &ldc);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Median and minimum milliseconds of a call; the minimum is the run least disturbed by the
/// other processes of a loaded machine.
struct timing {
  double med = 0, min = 0;
  timing operator+(const timing& o) const { return {med + o.med, min + o.min}; }
  timing operator-(const timing& o) const { return {med - o.med, min - o.min}; }
};

/// Times `calls` round-robin, `repeats` rounds after one warm-up round: load that comes and goes
/// hits every call alike, so the differences between them (derived stages) stay meaningful.
std::vector<timing> time_round_robin(int repeats, const std::vector<std::function<void()>>& calls) {
  for (const auto& f : calls) f();
  std::vector<std::vector<double>> t(calls.size());
  for (int i = 0; i < repeats; ++i)
    for (std::size_t j = 0; j < calls.size(); ++j) {
      const auto t0 = clock_type::now();
      calls[j]();
      t[j].push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
    }
  std::vector<timing> out;
  for (auto& v : t) out.push_back({median(v), *std::min_element(v.begin(), v.end())});
  return out;
}

timing time_ms(int repeats, const std::function<void()>& f) {
  return time_round_robin(repeats, {f})[0];
}

std::vector<float> randn(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = normal(rng);
  return v;
}

// ---- machine rates ------------------------------------------------------------------------

/// Large sgemm: each of `threads` threads multiplies its own n x n matrices (BLIS serial: blfft
/// runs one BLAS call per thread, so this is the rate open to it). GFLOP/s over all threads.
/// Rates are {at the median time, at the best time}.
struct rate_pair {
  double med, best;
};
rate_pair large_sgemm_gflops(int threads, int n, int repeats) {
  std::vector<std::vector<float>> a, b, c;
  for (int t = 0; t < threads; ++t) {
    a.push_back(randn(int64_t(n) * n, 1 + t));
    b.push_back(randn(int64_t(n) * n, 11 + t));
    c.emplace_back(static_cast<std::size_t>(n) * n);
  }
  const timing ms = time_ms(repeats, [&] {
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      gemm(false, false, n, n, n, a[t].data(), n, b[t].data(), n, c[t].data(), n);
    }
  });
  return {2.0 * n * n * n * threads / ms.med / 1e6, 2.0 * n * n * n * threads / ms.min / 1e6};
}

/// DRAM bandwidth: a[i] = b[i] + s c[i] on arrays far larger than the caches (3 x 512 MiB),
/// counting 3 x 4 bytes per element (the write-allocate read of a not counted). GB/s.
rate_pair triad_gbs(int threads, int repeats) {
  const int64_t n = int64_t(128) << 20;
  std::vector<float> a(n), b(n, 1.0f), c(n, 2.0f);
#pragma omp parallel for num_threads(threads)
  for (int64_t i = 0; i < n; ++i) a[i] = 0;  // first touch on the threads that use it
  const timing ms = time_ms(repeats, [&] {
#pragma omp parallel for num_threads(threads)
    for (int64_t i = 0; i < n; ++i) a[i] = b[i] + 3.0f * c[i];
  });
  return {3.0 * 4.0 * n / ms.med / 1e6, 3.0 * 4.0 * n / ms.min / 1e6};
}

// ---- GEMM rates on a stage's own shapes ---------------------------------------------------

/// One GEMM shape of a stage, called `count` times on operands laid out as `count` consecutive
/// blocks (as the stage's spectra are): the BLAS rate the stage's arithmetic can reach.
struct gemm_shape {
  bool ta, tb;
  int M, N, K;
  int64_t count;
  double flops() const { return 2.0 * M * N * K * count; }
};

/// Milliseconds for all the shapes' calls, split over `threads` (whole calls per thread).
timing gemm_shapes_ms(const std::vector<gemm_shape>& shapes, int threads, int repeats) {
  struct buffers {
    std::vector<float> a, b, c;
  };
  std::vector<buffers> bufs;
  for (const auto& s : shapes) {
    bufs.push_back({randn(int64_t(s.M) * s.K * s.count, 3), randn(int64_t(s.K) * s.N * s.count, 4),
                    std::vector<float>(static_cast<std::size_t>(s.M) * s.N * s.count + 64)});
  }
  return time_ms(repeats, [&] {
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const auto& s = shapes[i];
      auto& b = bufs[i];
      const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N;
#pragma omp parallel for num_threads(threads) schedule(static)
      for (int64_t j = 0; j < s.count; ++j)
        gemm(s.ta, s.tb, s.M, s.N, s.K, b.a.data() + j * s.M * s.K, lda, b.b.data() + j * s.K * s.N,
             ldb, b.c.data() + j * s.M * s.N, s.N);
    }
  });
}

/// The GEMMs of the matmul engine for B x CH images of one transform (pruned_transform_matmul.cpp):
/// per chunk of mc images, Rh row products (2nc x mc x Rw) and one column product
/// (2np x 2nc mc x Rh); on a one-row grid, two (nc x mc x Rw). The chunk size follows
/// pruned_transform.cpp's rule (1 MiB of scratch per chunk, at least one chunk per thread).
std::vector<gemm_shape> transform_gemms(const transform_shape& s, int64_t images, int threads) {
  const int64_t nr = s.kept_rows, nc = s.kept_cols, np = (nr + 1) / 2;
  const int64_t lines = std::max({nr, s.Rh, 2 * np});
  const int64_t per_image = s.Rh * s.Rw + 3 * lines * 2 * nc;
  const int64_t by_cache = std::max<int64_t>(1, (1 << 20) / (per_image * 4));
  int64_t mc = std::max<int64_t>(1, std::min(by_cache, (images + threads - 1) / threads));
  if (images * per_image * 4 <= 64 * 1024) mc = images;
  const int64_t chunks = (images + mc - 1) / mc;
  const int M = static_cast<int>(mc);
  if (s.Lh == 1)
    return {{true, false, static_cast<int>(nc), M, static_cast<int>(s.Rw), 2 * chunks}};
  return {{true, true, static_cast<int>(2 * nc), M, static_cast<int>(s.Rw), s.Rh * chunks},
          {false, false, static_cast<int>(2 * np), static_cast<int>(2 * nc * mc),
           static_cast<int>(s.Rh), chunks}};
}

/// The FFTs of the fft engine for B x CH images of one transform (pruned_transform_fft.cpp), run
/// on FFTW alone with measured plans and contiguous batches: Rh real line transforms of length Lw
/// per image (r2c to analyse, c2r to synthesise), then on 2D grids nc complex column transforms
/// of length Lh. Milliseconds for all images, split over `threads` (one batch per thread).
timing fft_lines_ms(const transform_shape& s, int64_t images, bool analyse, int threads,
                    int repeats) {
  struct batch {
    int n, howmany, complex_len;
    bool real;
  };
  std::vector<batch> batches = {{static_cast<int>(s.Lw),
                                 static_cast<int>((images * s.Rh + threads - 1) / threads),
                                 static_cast<int>(s.Lw / 2 + 1), true}};
  if (s.Lh > 1)
    batches.push_back({static_cast<int>(s.Lh),
                       static_cast<int>((images * s.kept_cols + threads - 1) / threads),
                       static_cast<int>(s.Lh), false});
  struct work {
    fftwf_plan plan;
    std::vector<fftwf_complex*> in, out;  // per thread
  };
  std::vector<work> works;
  for (const auto& b : batches) {
    work w{};
    const std::size_t cplx = static_cast<std::size_t>(b.complex_len) * b.howmany;
    for (int t = 0; t < threads; ++t) {
      w.in.push_back(fftwf_alloc_complex(cplx));
      w.out.push_back(fftwf_alloc_complex(cplx));
      std::fill_n(reinterpret_cast<float*>(w.in.back()), 2 * cplx, 0.5f);
    }
    auto* in = w.in[0];
    auto* out = w.out[0];
    if (!b.real)
      w.plan = fftwf_plan_many_dft(1, &b.n, b.howmany, in, nullptr, 1, b.n, out, nullptr, 1, b.n,
                                   analyse ? FFTW_FORWARD : FFTW_BACKWARD, FFTW_MEASURE);
    else if (analyse)
      w.plan = fftwf_plan_many_dft_r2c(1, &b.n, b.howmany, reinterpret_cast<float*>(in), nullptr, 1,
                                       b.n, out, nullptr, 1, b.complex_len, FFTW_MEASURE);
    else
      w.plan =
          fftwf_plan_many_dft_c2r(1, &b.n, b.howmany, in, nullptr, 1, b.complex_len,
                                  reinterpret_cast<float*>(out), nullptr, 1, b.n, FFTW_MEASURE);
    works.push_back(std::move(w));
  }
  const timing t = time_ms(repeats, [&] {
    for (std::size_t i = 0; i < batches.size(); ++i) {
      const auto& b = batches[i];
      auto& w = works[i];
#pragma omp parallel num_threads(threads)
      {
        const int me = omp_get_thread_num();
        if (!b.real)
          fftwf_execute_dft(w.plan, w.in[me], w.out[me]);
        else if (analyse)
          fftwf_execute_dft_r2c(w.plan, reinterpret_cast<float*>(w.in[me]), w.out[me]);
        else
          fftwf_execute_dft_c2r(w.plan, w.in[me], reinterpret_cast<float*>(w.out[me]));
      }
    }
  });
  for (auto& w : works) {
    fftwf_destroy_plan(w.plan);
    for (auto* p : w.in) fftwf_free(p);
    for (auto* p : w.out) fftwf_free(p);
  }
  return t;
}

// ---- the stages of one layer -----------------------------------------------------------------

struct stage {
  std::string name, how;  // how: "measured" or the difference it was derived from
  timing ms;
  double flops = 0, bytes = 0;
  std::string engine;       // matmul / fft / gemm (mixing) / taps
  timing shape_ms{-1, -1};  // the stage's GEMMs alone on BLIS (matmul and mixing stages)
  double shape_flops = 0;   // their flops
};

struct layer_spec {
  const char* name;
  blfft::conv_params params;
  std::vector<double> rates;
};

/// The layers of issue #15's unmet targets (bench.py's RESNET18 and FCN), at the rates named.
std::vector<layer_spec> target_layers() {
  using blfft::conv_params;
  return {
      {"r18 64ch 32x32",
       conv_params::conv2d(32, 64, 64, {32, 32}, {3, 3}, {1, 1}, {1, 1}),
       {0.0, 0.5}},
      {"r18 128ch 16x16",
       conv_params::conv2d(32, 128, 128, {16, 16}, {3, 3}, {1, 1}, {1, 1}),
       {0.0, 0.5}},
      {"r18 256ch 8x8",
       conv_params::conv2d(32, 256, 256, {8, 8}, {3, 3}, {1, 1}, {1, 1}),
       {0.0, 0.5}},
      {"r18 512ch 4x4",
       conv_params::conv2d(32, 512, 512, {4, 4}, {3, 3}, {1, 1}, {1, 1}),
       {0.0, 0.5}},
      {"r18 64->128 s2 32x32",
       conv_params::conv2d(32, 64, 128, {32, 32}, {3, 3}, {2, 2}, {1, 1}),
       {0.5}},
      {"r18 128->256 s2 16x16",
       conv_params::conv2d(32, 128, 256, {16, 16}, {3, 3}, {2, 2}, {1, 1}),
       {0.5}},
      {"r18 256->512 s2 8x8",
       conv_params::conv2d(32, 256, 512, {8, 8}, {3, 3}, {2, 2}, {1, 1}),
       {0.5}},
      // Padding 4 for torch's asymmetric 'same' (3, 4), as bench_core.cpp measures it.
      {"fcn 1->128 k8 L500", conv_params::conv1d(16, 1, 128, 500, 8, 1, 4), {0.5}},
      {"fcn 128->256 k5 L500", conv_params::conv1d(16, 128, 256, 500, 5, 1, 2), {0.0, 0.5}},
      {"fcn 256->128 k3 L500", conv_params::conv1d(16, 256, 128, 500, 3, 1, 1), {0.0, 0.5}},
  };
}

/// The buffers of one plan's pass: random x, w, grad_out; outputs and spectra.
struct tensors {
  const blfft::geometry& g;
  std::vector<float> x, w, go, y, dx, dw, xs, ws;
  explicit tensors(const blfft::plan<float>& p)
      : g(p.geometry()), x(randn(g.input_size(), 1)), w(randn(g.weight_size(), 2)),
        go(randn(g.output_size(), 3)), y(g.output_size()), dx(g.input_size()), dw(g.weight_size()),
        xs(g.x_spectrum_size()), ws(g.w_spectrum_size()) {}
  using cv = blfft::tensor_view<const float>;
  using mv = blfft::tensor_view<float>;
  cv xv() const { return cv::contiguous(x.data(), g.input_shape()); }
  cv wv() const { return cv::contiguous(w.data(), g.weight_shape()); }
  cv gv() const { return cv::contiguous(go.data(), g.output_shape()); }
  mv yv() { return mv::contiguous(y.data(), g.output_shape()); }
  mv dxv() { return mv::contiguous(dx.data(), g.input_shape()); }
  mv dwv() { return mv::contiguous(dw.data(), g.weight_shape()); }
  blfft::spectrum_view<float> xsv() { return {xs.data(), g.x_spectrum_size()}; }
  blfft::spectrum_view<float> wsv() { return {ws.data(), g.w_spectrum_size()}; }
};

/// Flops of one transform of `images` images at placement (h, w) and whether it runs on the
/// matmul engine (the library's own rule, engine_choice.hpp).
struct transform_cost {
  transform_shape shape;
  bool matmul;
  double flops;
};
transform_cost transform_of(const blfft::geometry& g, placement h, placement w, int64_t images,
                            const blfft::plan_options& o) {
  const transform_shape s{g.grid[0],
                          g.grid[1],
                          h.count,
                          w.count,
                          static_cast<int64_t>(g.kept_rows.size()),
                          static_cast<int64_t>(g.kept_cols.size())};
  const bool mm = blfft::detail::use_matmul(s, o);
  const double per = mm ? blfft::detail::matmul_flops(s) : blfft::detail::fft_flops(s);
  return {s, mm, per * static_cast<double>(images)};
}

std::string json_stage(const stage& s) {
  std::ostringstream os;
  os << "{\"stage\": \"" << s.name << "\", \"how\": \"" << s.how << "\", \"engine\": \"" << s.engine
     << "\", \"ms\": " << s.ms.med << ", \"min_ms\": " << s.ms.min << ", \"flops\": " << s.flops
     << ", \"bytes\": " << s.bytes << ", \"shape_gemm_ms\": " << s.shape_ms.med
     << ", \"shape_gemm_min_ms\": " << s.shape_ms.min << ", \"shape_gemm_flops\": " << s.shape_flops
     << "}";
  return os.str();
}

std::string profile(const layer_spec& l, double rate, int threads, int repeats, bool measure) {
  blfft::plan_options opts;                             // automatic, as the Python layer uses
  if (measure) opts.rigor = blfft::fft_rigor::measure;  // FFTW's measured plans (--measure)
  const auto c = blfft::compression::rate(rate);
  const blfft::plan<float> plan(l.params, c, opts);
  const auto& g = plan.geometry();
  const bool taps = blfft::mixes_from_taps(g, opts, sizeof(float));
  tensors t(plan);
  const auto xv = t.xv(), wv = t.wv(), gv = t.gv();
  auto yv = t.yv(), dxv = t.dxv(), dwv = t.dwv();
  auto xsv = t.xsv(), wsv = t.wsv();
  const blfft::spectrum_view<const float> xsc(xsv), wsc(wsv);
  const blfft::spectrum_view<float> no_spectrum{};

  // Plans of the same grid and kept set whose mixing is 1/C, 1/F, 1/N of this one: their passes
  // are (nearly) the synthesis alone.
  const auto variant = [&](int64_t n, int64_t cin, int64_t cout) {
    auto p = l.params;
    p.batch = n;
    p.in_channels = cin;
    p.out_channels = cout;
    return blfft::plan<float>(p, c, opts);
  };
  const auto& P = l.params;
  const blfft::plan<float> v_y = variant(P.batch, 1, P.out_channels);
  const blfft::plan<float> v_dx = variant(P.batch, P.in_channels, 1);
  const blfft::plan<float> v_dw = variant(1, P.in_channels, P.out_channels);
  // The analysis of grad_out as an input analysis: N x F images of the output's size on the same
  // grid (so the same kept set). Both engines' cost depends on the sample counts, not on where
  // the samples sit (offset, step), so this is the same work.
  auto pg = l.params;
  pg.in_channels = P.out_channels;
  pg.out_channels = 1;
  pg.input = g.output;
  pg.kernel = {1, 1};
  pg.stride = {1, 1};
  pg.padding = {0, 0};
  pg.dilation = {1, 1};
  pg.grid = g.grid;
  const blfft::plan<float> v_g(pg, c, opts);
  tensors ty(v_y), tdx(v_dx), tdw(v_dw), tg(v_g);

  std::vector<std::function<void()>> calls = {
      // 0: the step the Python layer runs (bench.py's fwd+bwd, no bias).
      [&] {
        if (taps) {
          plan.forward(xv, wv, nullptr, yv, xsv, no_spectrum);
          plan.backward_with_weight(gv, xsc, wv, &dxv, &dwv, nullptr);
        } else {
          plan.forward(xv, wv, nullptr, yv, xsv, wsv);
          plan.backward(gv, xsc, wsc, &dxv, &dwv, nullptr);
        }
      },
      [&] { plan.input_spectrum(xv, xsv); },  // 1
      // 2: the weight spectrum (taps: none is made; timed as nothing).
      [&] {
        if (!taps) plan.weight_spectrum(wv, wsv);
      },
      // 3: forward's rest: mixing + synthesis of y (taps: with the analysis of x).
      [&] {
        if (taps)
          plan.forward(xv, wv, nullptr, yv, xsv, no_spectrum);
        else
          plan.forward_spectra(xsc, wsc, nullptr, yv);
      },
      // 4, 5, 6: backward, input gradient alone, weight gradient alone.
      [&] {
        if (taps)
          plan.backward_with_weight(gv, xsc, wv, &dxv, &dwv, nullptr);
        else
          plan.backward(gv, xsc, wsc, &dxv, &dwv, nullptr);
      },
      [&] {
        if (taps)
          plan.backward_with_weight(gv, {}, wv, &dxv, nullptr, nullptr);
        else
          plan.input_grad(gv, wsc, dxv);
      },
      [&] {
        if (taps)
          plan.backward_with_weight(gv, xsc, wv, nullptr, &dwv, nullptr);
        else
          plan.weight_grad(gv, xsc, dwv);
      },
      [&] { v_y.forward_spectra(ty.xsv(), ty.wsv(), nullptr, ty.yv()); },  // 7
      [&] { v_dx.input_grad(tdx.gv(), tdx.wsv(), tdx.dxv()); },            // 8
      // 9: taps plans fold the weight gradient into the taps: no synthesis of dw to separate.
      [&] {
        if (!taps) v_dw.weight_grad(tdw.gv(), tdw.xsv(), tdw.dwv());
      },
      [&] { v_g.input_spectrum(tg.xv(), tg.xsv()); },  // 10
  };
  const auto T = time_round_robin(repeats, calls);
  const timing step = T[0], a_x = T[1], a_w = T[2], bwd = T[4], ig = T[5], wg = T[6], s_y = T[7],
               s_dx = T[8], s_dw = T[9];
  const timing fwd_rest = taps ? T[3] - a_x : T[3];
  const timing a_g = T[10];
  const timing a_g_by_difference = ig + wg - bwd;  // a consistency check of the above

  // Counts from the geometry.
  const blfft::detail::layer_placements at(g);
  const int64_t N = P.batch, C = P.in_channels, F = P.out_channels;
  const auto tx = transform_of(g, at.x_h, at.x_w, N * C, opts);
  const auto tw = transform_of(g, at.w_h, at.w_w, F * C, opts);
  const auto ty_ = transform_of(g, at.y_h, at.y_w, N * F, opts);
  const double kept = static_cast<double>(g.kept);
  const double mix_flops = kept * 3.0 * 2.0 * N * C * F;  // Gauss: 3 real GEMMs per frequency
  // Mixing from taps also makes (and, for dW, folds back) each frequency's F x C weight matrix
  // from the KW taps: one complex-by-real multiply-add (4 flops) per tap and element.
  const double taps_flops = taps ? kept * F * C * P.kernel[1] * 4.0 : 0.0;
  const double B4 = 4.0;
  const double x_b = g.input_size() * B4, w_b = g.weight_size() * B4, y_b = g.output_size() * B4;
  const double xs_b = g.x_spectrum_size() * B4, ws_b = g.w_spectrum_size() * B4,
               ys_b = g.y_spectrum_size() * B4;
  const double w_in_mix = taps ? w_b : ws_b;  // what the mixing reads of the weight

  const auto eng = [](const transform_cost& tc) {
    return std::string(tc.matmul ? "matmul" : "fft");
  };
  // The transform's own arithmetic alone: its GEMMs on BLIS, or its FFTs on FFTW.
  const auto t_gemm = [&](const transform_cost& tc, int64_t images, bool analyse, stage& s) {
    if (!tc.matmul) {
      s.shape_ms = fft_lines_ms(tc.shape, images, analyse, threads, repeats);
      s.shape_flops = tc.flops;
      return;
    }
    const auto shapes = transform_gemms(tc.shape, images, threads);
    s.shape_ms = gemm_shapes_ms(shapes, threads, repeats);
    for (const auto& sh : shapes) s.shape_flops += sh.flops();
  };
  // The mixing's GEMMs at this layer's shapes (mix.cpp), 3 per kept frequency: forward
  // (N x C)(F x C)^T, input gradient (N x F)(F x C), weight gradient (N x F)^T (N x C).
  const int64_t K = g.kept;
  const std::vector<gemm_shape> mix_fwd = {{false, true, int(N), int(F), int(C), 3 * K}};
  const std::vector<gemm_shape> mix_ig = {{false, false, int(N), int(C), int(F), 3 * K}};
  const std::vector<gemm_shape> mix_wg = {{true, false, int(F), int(C), int(N), 3 * K}};
  const bool gemm_mix = N * C * F >= 4096;  // mix.cpp's blas_min_work: smaller is a loop
  const auto m_gemm = [&](const std::vector<gemm_shape>& shapes, stage& s) {
    if (!gemm_mix) return;
    s.shape_ms = gemm_shapes_ms(shapes, threads, repeats);
    for (const auto& sh : shapes) s.shape_flops += sh.flops();
  };

  std::vector<stage> st;
  st.push_back({"analysis x", "measured: input_spectrum", a_x, tx.flops, x_b + xs_b, eng(tx)});
  t_gemm(tx, N * C, true, st.back());
  if (!taps) {
    st.push_back({"analysis w", "measured: weight_spectrum", a_w, tw.flops, w_b + ws_b, eng(tw)});
    t_gemm(tw, F * C, true, st.back());
  }
  const std::string mix_engine = taps ? "taps" : (gemm_mix ? "gemm" : "loop");
  st.push_back({"mixing fwd",
                taps ? "forward(no w spectrum) - input_spectrum - synthesis y"
                     : "forward_spectra - synthesis y",
                fwd_rest - s_y, mix_flops + taps_flops, xs_b + w_in_mix + ys_b, mix_engine});
  m_gemm(mix_fwd, st.back());
  st.push_back({"synthesis y", "forward_spectra with C=1 (holds 1/C of the mixing)", s_y, ty_.flops,
                ys_b + y_b, eng(ty_)});
  t_gemm(ty_, N * F, false, st.back());
  st.push_back({"analysis grad_out", "input_spectrum of N x F output-sized images, same grid", a_g,
                ty_.flops, y_b + ys_b, eng(ty_)});
  t_gemm(ty_, N * F, true, st.back());
  st.push_back({"mixing dx", "input_grad - analysis grad_out - synthesis dx", ig - a_g - s_dx,
                mix_flops + taps_flops, ys_b + w_in_mix + xs_b, mix_engine});
  m_gemm(mix_ig, st.back());
  st.push_back({"synthesis dx", "input_grad with F=1 (holds 1/F of analysis and mixing)", s_dx,
                tx.flops, xs_b + x_b, eng(tx)});
  t_gemm(tx, N * C, false, st.back());
  st.push_back({"mixing dw",
                taps ? "weight_grad - analysis grad_out (taps: with the fold into the taps)"
                     : "weight_grad - analysis grad_out - synthesis dw",
                wg - a_g - s_dw, mix_flops + taps_flops, ys_b + xs_b + (taps ? w_b : ws_b),
                mix_engine});
  m_gemm(mix_wg, st.back());
  if (!taps) {
    st.push_back({"synthesis dw", "weight_grad with N=1 (holds 1/N of analysis and mixing)", s_dw,
                  tw.flops, ws_b + w_b, eng(tw)});
    t_gemm(tw, F * C, false, st.back());
  }

  std::ostringstream os;
  const auto tm = [](const timing& x) {
    std::ostringstream o;
    o << "{\"med\": " << x.med << ", \"min\": " << x.min << "}";
    return o.str();
  };
  os << "{\"layer\": \"" << l.name << "\", \"rate\": " << rate << ", \"threads\": " << threads
     << ", \"repeats\": " << repeats << ", \"ndim\": " << P.ndim << ", \"batch\": " << N
     << ", \"in_channels\": " << C << ", \"out_channels\": " << F << ", \"input\": [" << P.input[0]
     << ", " << P.input[1] << "], \"kernel\": [" << P.kernel[0] << ", " << P.kernel[1]
     << "], \"stride\": " << P.stride[1] << ", \"padding\": " << P.padding[1] << ", \"grid\": ["
     << g.grid[0] << ", " << g.grid[1] << "], \"kept\": " << g.kept
     << ", \"kept_rows\": " << g.kept_rows.size() << ", \"kept_cols\": " << g.kept_cols.size()
     << ", \"total\": " << g.total << ", \"achieved_rate\": " << g.achieved_rate
     << ", \"taps\": " << (taps ? "true" : "false") << ", \"step_ms\": " << tm(step)
     << ", \"passes_ms\": {\"input_spectrum\": " << tm(a_x) << ", \"weight_spectrum\": " << tm(a_w)
     << ", \"forward_rest\": " << tm(fwd_rest) << ", \"backward\": " << tm(bwd)
     << ", \"input_grad\": " << tm(ig) << ", \"weight_grad\": " << tm(wg)
     << ", \"variant_y\": " << tm(s_y) << ", \"variant_dx\": " << tm(s_dx)
     << ", \"variant_dw\": " << tm(s_dw) << ", \"grad_out_analysis\": " << tm(a_g)
     << ", \"grad_out_analysis_by_difference\": " << tm(a_g_by_difference) << "}, \"stages\": [";
  for (std::size_t i = 0; i < st.size(); ++i) os << (i ? ", " : "") << json_stage(st[i]);
  os << "]}";
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeats = 7;
  std::string filter;
  bool machine_only = false, measure = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--repeats" && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--layer" && i + 1 < argc) {
      filter = argv[++i];
    } else if (a == "--measure") {
      measure = true;
    } else if (a == "--machine-only") {
      machine_only = true;
    } else {
      std::cerr
          << "usage: " << argv[0]
          << " [--threads T] [--repeats N] [--layer SUBSTRING] [--measure] [--machine-only]\n";
      return 2;
    }
  }
  blfft::set_num_threads(threads);
  // One JSON object per line: the machine's rates, then one per layer and rate.
  const auto sgemm = large_sgemm_gflops(threads, 2048, 5);
  const auto triad = triad_gbs(threads, 5);
  std::cout << "{\"machine\": true, \"threads\": " << threads
            << ", \"sgemm_2048_gflops\": " << sgemm.med
            << ", \"sgemm_2048_best_gflops\": " << sgemm.best << ", \"triad_gbs\": " << triad.med
            << ", \"triad_best_gbs\": " << triad.best << "}" << std::endl;
  if (machine_only) return 0;
  for (const auto& l : target_layers()) {
    if (std::string(l.name).find(filter) == std::string::npos) continue;
    for (double r : l.rates) std::cout << profile(l, r, threads, repeats, measure) << std::endl;
  }
  return 0;
}
