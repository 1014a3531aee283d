// Global-memory traffic and launch counts of the CUDA pipeline, measured without a GPU (issue
// #11): the pipeline of cuda/pipeline.hpp runs under the CPU emulator of the tests
// (tests/cpp/cuda_emulator.hpp), which records every launch's footprint (distinct addresses read
// plus distinct addresses written, in bytes) through the kernels' gload / gstore and the cuFFT /
// cuBLAS stand-ins' operand accesses. Float32 throughout.
//
//   blfft_cuda_traffic [--quick] [--full-batch] [--layers SUBSTRING] [--detail] [--out FILE]
//                      [--tf32 on|off] [--out-cublas FILE] [--batch N]
//
// Mixing engines (blfft::cuda::mix_engine): every case is emulated with the mixing forced onto
// the own kernel and forced onto cuBLAS; the records of --out are, pass by pass, those of the
// engine the plan's rule picks at the layer's batch (pipeline::use_cublas / taps_path, with
// TF32 as --tf32 says: default on, torch's default for torch.backends.cudnn.allow_tf32), and
// --out-cublas writes the cuBLAS-forced ones. "engine" says which ran.
//
// Prints (or writes) a JSON list of records {layer, rate, pass, weight, launches, global_bytes,
// compulsory_bytes, ...} for the ResNet-18 CIFAR layers (batch 32) and the FCN layers (batch 16)
// at rates 0 / 0.5 / 0.75, passes forward / input_grad / weight_grad, weight "changed" (the
// calls with the weight, as the Python side makes them when the weight spectrum is not kept:
// forward() and backward_with_weight(), which make the weight spectrum or mix from the taps) and
// "unchanged" (the cheaper of that and mixing from a cached weight spectrum; "mixed_from" says
// which):
//   forward      x analysis, mixing, synthesis of y; x's spectrum saved for the backward;
//   input_grad   g analysis, mixing, synthesis of dx;
//   weight_grad  g analysis, mixing with the saved x spectrum, synthesis of dw (no weight
//                spectrum: the same in both cases).
// The g analysis is counted in both backward passes (each pass on its own).
// sector_bytes: the same footprint counted in whole 32-byte sectors (DRAM's least transfer):
// above global_bytes where a launch's accesses leave sectors partly unused.
// compulsory_bytes: the pass's tensors read and written once (forward x, w, y; input_grad g, w,
// dx; weight_grad g, x, dw). A cuFFT execution counts as one launch reading its input and
// writing its output once (a single-pass kernel; work areas not counted).
//
// Batch: every footprint here is affine in the batch (the weight, its spectrum and the index
// tables do not grow with it; everything else is linear, and no transform is chunked at these
// sizes), so by default each case is emulated at batches 1 and 2 and extrapolated exactly to the
// layer's batch (records say "measured_at"). --full-batch emulates at the layer's batch instead;
// --check-scaling runs both on the first layer and fails unless they agree (and unless forward()
// and backward_with_weight() cost exactly their parts, see pass_costs).

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_emulator.hpp"

namespace {

namespace cdx = blfft::cuda::detail;
using blfft::compression;
using blfft::conv_params;
using blfft::geometry;
using blfft::tensor_view;

struct layer_spec {
  std::string name;
  conv_params p;
};

std::vector<layer_spec> layers(bool quick) {
  const auto r18 = [](const char* name, int64_t c, int64_t f, int64_t hw, int64_t s) {
    return layer_spec{name, conv_params::conv2d(32, c, f, {hw, hw}, {3, 3}, {s, s}, {1, 1})};
  };
  // 'same' padding as blfft.functional does it: (k - 1) / 2 on both sides, the odd extra zero of
  // an even kernel appended to the input (so k8 runs on 501 samples).
  const auto fcn = [](const char* name, int64_t c, int64_t f, int64_t k) {
    const int64_t total = k - 1, extra = total % 2;
    return layer_spec{name, conv_params::conv1d(16, c, f, 500 + extra, k, 1, total / 2)};
  };
  if (quick)
    return {{"quick 16ch 16x16", conv_params::conv2d(4, 16, 16, {16, 16}, {3, 3}, {1, 1}, {1, 1})},
            {"quick fcn 8->16 k5 L64", conv_params::conv1d(4, 8, 16, 64, 5, 1, 2)}};
  return {
      r18("r18 64ch 32x32", 64, 64, 32, 1),        r18("r18 128ch 16x16", 128, 128, 16, 1),
      r18("r18 256ch 8x8", 256, 256, 8, 1),        r18("r18 512ch 4x4", 512, 512, 4, 1),
      r18("r18 64->128 s2 32x32", 64, 128, 32, 2), r18("r18 128->256 s2 16x16", 128, 256, 16, 2),
      r18("r18 256->512 s2 8x8", 256, 512, 8, 2),  fcn("fcn 1->128 k8 L500", 1, 128, 8),
      fcn("fcn 128->256 k5 L500", 128, 256, 5),    fcn("fcn 256->128 k3 L500", 256, 128, 3)};
}

/// Launches and footprint of one measured piece of work.
struct cost {
  int64_t launches = 0, kernels = 0, ffts = 0, bytes = 0;
  int64_t sector_bytes = 0;  // the footprint in whole 32-byte sectors
  int64_t gemms = 0;         // cuBLAS launches (in `launches`)
  cost operator+(const cost& o) const {
    return {launches + o.launches, kernels + o.kernels,           ffts + o.ffts,
            bytes + o.bytes,       sector_bytes + o.sector_bytes, gemms + o.gemms};
  }
};

/// The costs of every pass of one layer at one rate and batch: the calls with the weight
/// (forward() without keeping the weight spectrum, backward_with_weight(): the pipeline mixes
/// from the taps where it can) and with a cached weight spectrum (input_spectrum +
/// forward_spectra, backward with ws). The weight's analysis (independent of the batch) is
/// measured once, at batch 1: forward() keeping the spectrum costs exactly it plus the cached
/// calls (checked by --check-scaling).
struct pass_costs {
  cost forward_cached_w, w_analysis, input_grad_cached_w, weight_grad;
  cost forward_with_w, input_grad_with_w;
  cost forward_keeping_w;           // forward() writing the weight spectrum, when checked
  std::vector<std::string> detail;  // per launch: "pass: name read ... write ..."
};

blfft::cuda::cuda_plan_options with_engine(blfft::cuda::mix_engine e) {
  blfft::cuda::cuda_plan_options o;
  o.engine = e;
  return o;
}

pass_costs measure(const conv_params& p, const compression& c, bool with_weight, bool whole,
                   bool detail, blfft::cuda::mix_engine engine) {
  using T = float;
  const geometry g = blfft::make_geometry(p, c);
  bt::host_executor ex;
  ex.measure_traffic();
  const cdx::pipeline<T, bt::host_executor> pl(ex, g, with_engine(engine));
  // Values do not matter for the traffic; finite ones keep the stand-ins' checks quiet.
  const auto filled = [](int64_t n) {
    std::vector<T> v(static_cast<size_t>(n));
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(std::sin(0.1 * double(i)));
    return v;
  };
  const auto x = filled(g.input_size()), w = filled(g.weight_size()), gy = filled(g.output_size());
  std::vector<T> y(static_cast<size_t>(g.output_size())), dx(static_cast<size_t>(g.input_size())),
      dw(static_cast<size_t>(g.weight_size()));
  std::vector<T> xs(static_cast<size_t>(g.x_spectrum_size())),
      ws(static_cast<size_t>(g.w_spectrum_size()));
  const auto cv = [](const std::vector<T>& v, const std::vector<int64_t>& shape) {
    return tensor_view<const T>::contiguous(v.data(), shape);
  };
  const auto mv = [](std::vector<T>& v, const std::vector<int64_t>& shape) {
    return tensor_view<T>::contiguous(v.data(), shape);
  };
  const auto xv = cv(x, g.input_shape()), wv = cv(w, g.weight_shape()),
             gv = cv(gy, g.output_shape());
  const auto yv = mv(y, g.output_shape()), dxv = mv(dx, g.input_shape()),
             dwv = mv(dw, g.weight_shape());

  pass_costs r;
  const auto run = [&](const char* what, const std::function<void()>& f) {
    ex.stats() = {};
    f();
    const auto& s = ex.stats();
    if (detail)
      for (const auto& l : s.launch_log)
        r.detail.push_back(std::string(what) + ": " + l.name + " read " +
                           std::to_string(l.read_bytes) + " write " +
                           std::to_string(l.write_bytes));
    return cost{s.launches(), s.kernels, s.ffts, s.global_bytes(), s.sector_bytes, s.gemms};
  };
  if (with_weight)
    r.w_analysis = run("weight_spectrum", [&] { pl.weight_spectrum(wv, ws.data(), nullptr); });
  r.forward_cached_w =
      run("forward: input_spectrum", [&] { pl.input_spectrum(xv, xs.data(), nullptr); }) +
      run("forward: forward_spectra",
          [&] { pl.forward_spectra(xs.data(), ws.data(), nullptr, yv, nullptr); });
  r.input_grad_cached_w = run(
      "input_grad", [&] { pl.backward(gv, nullptr, ws.data(), &dxv, nullptr, nullptr, nullptr); });
  r.forward_with_w =
      run("forward()", [&] { pl.forward(xv, wv, nullptr, yv, xs.data(), nullptr, nullptr); });
  r.input_grad_with_w = run("backward_with_weight()", [&] {
    pl.backward_with_weight(gv, nullptr, wv, &dxv, nullptr, nullptr, nullptr);
  });
  r.weight_grad = run(
      "weight_grad", [&] { pl.backward(gv, xs.data(), nullptr, nullptr, &dwv, nullptr, nullptr); });
  if (whole)
    r.forward_keeping_w = run("forward(keeping ws)", [&] {
      pl.forward(xv, wv, nullptr, yv, xs.data(), ws.data(), nullptr);
    });
  return r;
}

/// a + (b - a) * (n - n1) / (n2 - n1), exact for the affine footprints (checked to be integral).
int64_t extrapolate(int64_t a, int64_t b, int64_t n1, int64_t n2, int64_t n) {
  const int64_t num = (b - a) * (n - n1);
  if (num % (n2 - n1) != 0) throw std::runtime_error("footprint not affine in the batch");
  return a + num / (n2 - n1);
}
cost extrapolate(const cost& a, const cost& b, int64_t n1, int64_t n2, int64_t n) {
  if (a.launches != b.launches || a.kernels != b.kernels || a.ffts != b.ffts)
    throw std::runtime_error("launch counts depend on the batch: extrapolation does not hold");
  return {a.launches,
          a.kernels,
          a.ffts,
          extrapolate(a.bytes, b.bytes, n1, n2, n),
          extrapolate(a.sector_bytes, b.sector_bytes, n1, n2, n),
          a.gemms};
}

pass_costs at_batch(conv_params p, const compression& c, bool full, bool whole, bool detail,
                    std::string& measured_at, blfft::cuda::mix_engine engine) {
  if (full) {
    measured_at = std::to_string(p.batch);
    return measure(p, c, true, whole, detail, engine);
  }
  const int64_t n = p.batch;
  p.batch = 1;
  const pass_costs a = measure(p, c, true, whole, false, engine);
  p.batch = 2;
  pass_costs b = measure(p, c, false, whole, detail, engine);
  measured_at = "1,2 (extrapolated)";
  pass_costs r;
  r.w_analysis = a.w_analysis;
  r.forward_cached_w = extrapolate(a.forward_cached_w, b.forward_cached_w, 1, 2, n);
  r.input_grad_cached_w = extrapolate(a.input_grad_cached_w, b.input_grad_cached_w, 1, 2, n);
  r.weight_grad = extrapolate(a.weight_grad, b.weight_grad, 1, 2, n);
  r.forward_with_w = extrapolate(a.forward_with_w, b.forward_with_w, 1, 2, n);
  r.input_grad_with_w = extrapolate(a.input_grad_with_w, b.input_grad_with_w, 1, 2, n);
  if (whole) r.forward_keeping_w = extrapolate(a.forward_keeping_w, b.forward_keeping_w, 1, 2, n);
  r.detail = std::move(b.detail);
  return r;
}

/// Pass by pass, the costs of the engine the plan's rule picks at the layer's own batch (the
/// emulated batches 1 and 2 would pick by their own sizes): `own` and `blas` are the two forced
/// runs; `used_blas` says, per record of pass_costs (forward cached / with w, input grad cached /
/// with w, weight grad), which was taken; `wg_fused`, whether the own weight gradient is
/// mix_to_taps (mixing and synthesis in one kernel).
pass_costs by_rule(const conv_params& p, const compression& c, const pass_costs& own,
                   const pass_costs& blas, bool used_blas[5], bool& wg_fused) {
  const geometry g = blfft::make_geometry(p, c);
  bt::host_executor ex;
  const cdx::pipeline<float, bt::host_executor> pl(ex, g);  // the rule only; nothing runs
  using cdx::mix_pass;
  used_blas[0] = pl.use_cublas(mix_pass::forward, false);
  used_blas[1] = !pl.taps_path(mix_pass::forward) && pl.use_cublas(mix_pass::forward, false);
  used_blas[2] = pl.use_cublas(mix_pass::input_grad, false);
  used_blas[3] = !pl.taps_path(mix_pass::input_grad) && pl.use_cublas(mix_pass::input_grad, false);
  used_blas[4] = pl.use_cublas(mix_pass::weight_grad, false);
  wg_fused = pl.weight_grad_fused();
  pass_costs r = own;
  r.forward_cached_w = used_blas[0] ? blas.forward_cached_w : own.forward_cached_w;
  r.forward_with_w = used_blas[1] ? blas.forward_with_w : own.forward_with_w;
  r.input_grad_cached_w = used_blas[2] ? blas.input_grad_cached_w : own.input_grad_cached_w;
  r.input_grad_with_w = used_blas[3] ? blas.input_grad_with_w : own.input_grad_with_w;
  r.weight_grad = used_blas[4] ? blas.weight_grad : own.weight_grad;
  return r;
}

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') o += '\\';
    o += ch;
  }
  return o + "\"";
}

int run_main(int argc, char** argv) {
  bool quick = false, full = false, detail = false, check_scaling = false, tf32 = true;
  std::string only, out, out_cublas;
  int64_t batch = 0;  // --batch: every layer at this batch instead of its own
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick")
      quick = true;
    else if (a == "--full-batch")
      full = true;
    else if (a == "--detail")
      detail = true;
    else if (a == "--check-scaling")
      check_scaling = true;
    else if (a == "--layers")
      only = value();
    else if (a == "--out")
      out = value();
    else if (a == "--out-cublas")
      out_cublas = value();
    else if (a == "--batch")
      batch = std::stoll(value());
    else if (a == "--tf32") {
      const std::string v = value();
      if (v != "on" && v != "off") throw std::runtime_error("--tf32 takes on or off");
      tf32 = v == "on";
    } else
      throw std::runtime_error("unknown argument " + a +
                               " (--quick --full-batch --check-scaling --layers S --detail --out F "
                               "--out-cublas F --tf32 on|off --batch N)");
  }
  // The rule and the GEMMs' compute type read the calling thread's TF32 scope, as in a call.
  const blfft::cuda::scoped_tf32 tf32_scope(tf32);
  using blfft::cuda::mix_engine;
  if (!bt::cufft_standins_linked)
    throw std::runtime_error("built without the cuFFT stand-ins (cufft.h not found): the cuFFT "
                             "executions' traffic would not be counted");

  auto list = layers(quick);
  if (batch > 0)
    for (auto& l : list) l.p.batch = batch;
  if (!only.empty()) {
    std::vector<layer_spec> keep;
    for (auto& l : list)
      if (l.name.find(only) != std::string::npos) keep.push_back(l);
    list = keep;
  }
  if (check_scaling && !list.empty()) {
    // On the first layer at rate 0.5: the extrapolation against an emulation at the full batch,
    // and the whole calls (forward(), backward_with_weight()) against the sums of their parts.
    std::string m1, m2;
    const auto c = compression::rate(0.5);
    const auto e = at_batch(list[0].p, c, false, true, false, m1, mix_engine::cublas);
    const auto f = at_batch(list[0].p, c, true, true, false, m2, mix_engine::cublas);
    const auto same = [](const cost& a, const cost& b) {
      return a.launches == b.launches && a.bytes == b.bytes;
    };
    const bool scaled =
        same(e.forward_cached_w, f.forward_cached_w) && same(e.w_analysis, f.w_analysis) &&
        same(e.input_grad_cached_w, f.input_grad_cached_w) && same(e.weight_grad, f.weight_grad) &&
        same(e.forward_with_w, f.forward_with_w) &&
        same(e.input_grad_with_w, f.input_grad_with_w) &&
        same(e.forward_keeping_w, f.forward_keeping_w);
    const bool parts = same(f.forward_keeping_w, f.forward_cached_w + f.w_analysis);
    std::fprintf(stderr,
                 "check on %s (batch %lld, rate 0.5): forward %lld bytes extrapolated, %lld "
                 "emulated: %s; whole calls = sums of their parts: %s\n",
                 list[0].name.c_str(), static_cast<long long>(list[0].p.batch),
                 static_cast<long long>(e.forward_with_w.bytes),
                 static_cast<long long>(f.forward_with_w.bytes), scaled ? "equal" : "DIFFERENT",
                 parts ? "yes" : "NO");
    if (!scaled || !parts) return 1;
  }

  std::ostringstream js, jb;
  js << "[";
  jb << "[";
  bool first = true;
  for (const auto& l : list) {
    for (double rate : {0.0, 0.5, 0.75}) {
      const auto t0 = std::chrono::steady_clock::now();
      std::string measured_at;
      const auto c = compression::rate(rate);
      const pass_costs own = at_batch(l.p, c, full, false, detail, measured_at, mix_engine::own);
      const pass_costs blas = at_batch(l.p, c, full, false, false, measured_at, mix_engine::cublas);
      bool used[5], wg_fused = false;
      const pass_costs pc = by_rule(l.p, c, own, blas, used, wg_fused);
      const geometry g = blfft::make_geometry(l.p, c);
      const int64_t e = sizeof(float);
      const int64_t xb = e * g.input_size(), wb = e * g.weight_size(), yb = e * g.output_size();
      // Flops per pass, for bench/cuda_model.py: the fused transforms (per image, Rh x Rw samples
      // <-> nr x nc kept bins: a real x complex product along the width, a complex one along
      // the height) and the mixing (Gauss: 3 real multiply-adds per complex one; cuBLAS: 4).
      const double nr = static_cast<double>(g.kept_rows.size()),
                   nc = static_cast<double>(g.kept_cols.size());
      const auto tf = [&](int64_t images, int64_t rh, int64_t rw) {
        return static_cast<double>(images) *
               (4.0 * double(rh) * double(rw) * nc + 8.0 * nr * nc * double(rh));
      };
      const auto& q = l.p;  // 1D: input {1, L}, kernel {1, K}
      const double t_x = tf(q.batch * q.in_channels, q.input[0], q.input[1]),
                   t_y = tf(q.batch * q.out_channels, g.output[0], g.output[1]),
                   t_w = tf(q.out_channels * g.in_per_group, q.kernel[0], q.kernel[1]);
      const double products =
          double(g.kept) * double(q.batch) * double(q.out_channels) * double(g.in_per_group);
      struct rec {
        const char* pass;
        const char* weight;
        cost k;
        int64_t compulsory;
        const char* path;
        bool blas;
      };
      const auto write = [&](std::ostringstream& o, const pass_costs& q, const bool* blas) {
        // Weight unchanged: the cheaper of mixing from a cached spectrum and from the taps.
        const bool cached_f = q.forward_cached_w.bytes < q.forward_with_w.bytes;
        const bool cached_i = q.input_grad_cached_w.bytes < q.input_grad_with_w.bytes;
        const rec recs[] = {
            {"forward", "changed", q.forward_with_w, xb + wb + yb, "weight", blas[1]},
            {"forward", "unchanged", cached_f ? q.forward_cached_w : q.forward_with_w, xb + wb + yb,
             cached_f ? "cached spectrum" : "weight", blas[cached_f ? 0 : 1]},
            {"input_grad", "changed", q.input_grad_with_w, yb + wb + xb, "weight", blas[3]},
            {"input_grad", "unchanged", cached_i ? q.input_grad_cached_w : q.input_grad_with_w,
             yb + wb + xb, cached_i ? "cached spectrum" : "weight", blas[cached_i ? 2 : 3]},
            {"weight_grad", "changed", q.weight_grad, yb + xb + wb, "x spectrum", blas[4]},
            {"weight_grad", "unchanged", q.weight_grad, yb + xb + wb, "x spectrum", blas[4]},
        };
        bool lead = first;  // the file's first record: no comma before it
        for (const auto& r : recs) {
          const std::string ps = r.pass;
          // A weight analysis where the pass mixes from the weight on cuBLAS (own: the taps).
          const double w_an = std::string(r.path) == "weight" && r.blas ? t_w : 0.0;
          // The own weight gradient fused (mix_to_taps): its synthesis is the mixing's
          // epilogue, 2 real multiply-adds per tap, kept bin and (f, c).
          const bool to_taps = ps == "weight_grad" && !r.blas && wg_fused;
          const double t_flops = ps == "forward"      ? t_x + t_y + w_an
                                 : ps == "input_grad" ? t_y + t_x + w_an
                                                      : t_y + (to_taps ? 0.0 : t_w);
          const double m_flops =
              (r.blas ? 8.0 : 6.0) * products +
              (to_taps ? 4.0 * double(g.kept) * double(l.p.out_channels) * double(g.in_per_group) *
                             double(l.p.kernel[0]) * double(l.p.kernel[1])
                       : 0.0);
          o << (lead ? "\n" : ",\n") << "  {\"layer\": " << json_string(l.name)
            << ", \"rate\": " << rate << ", \"pass\": \"" << r.pass << "\", \"weight\": \""
            << r.weight << "\", \"launches\": " << r.k.launches << ", \"kernels\": " << r.k.kernels
            << ", \"cufft_execs\": " << r.k.ffts << ", \"cublas_gemms\": " << r.k.gemms
            << ", \"global_bytes\": " << r.k.bytes << ", \"sector_bytes\": " << r.k.sector_bytes
            << ", \"compulsory_bytes\": " << r.compulsory
            << ", \"ratio\": " << double(r.k.bytes) / double(r.compulsory)
            << ", \"batch\": " << l.p.batch << ", \"kept\": " << g.kept
            << ", \"total_bins\": " << g.total << ", \"measured_at\": " << json_string(measured_at)
            << ", \"mixed_from\": " << json_string(r.path) << ", \"engine\": \""
            << (r.blas ? "cublas" : "own") << "\", \"tf32\": " << (tf32 ? "true" : "false")
            << ", \"transform_flops\": " << t_flops << ", \"mix_flops\": " << m_flops << "}";
          lead = false;
        }
      };
      const bool all_blas[5] = {true, true, true, true, true};
      write(js, pc, used);
      write(jb, blas, all_blas);
      first = false;
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr,
                   "%-24s rate %.2f: forward %7.1f MB (%lld launches), compulsory "
                   "%6.1f MB  [%.1f s]\n",
                   l.name.c_str(), rate, pc.forward_with_w.bytes / 1e6,
                   static_cast<long long>(pc.forward_with_w.launches), (xb + wb + yb) / 1e6, secs);
      for (const auto& d : pc.detail) std::fprintf(stderr, "    %s\n", d.c_str());
    }
  }
  js << "\n]\n";
  jb << "\n]\n";
  const auto save = [](const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + path);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  if (out.empty())
    std::cout << js.str();
  else
    save(out, js.str());
  if (!out_cublas.empty()) save(out_cublas, jb.str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "blfft_cuda_traffic: %s\n", e.what());
    return 2;
  }
}
