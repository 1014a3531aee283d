// GPU benchmark of blfft::cuda: forward + backward (all three gradients, from the spectra saved
// by forward) on the ResNet-18 CIFAR layer shapes (64ch@32x32, 128ch@16x16, 256ch@8x8,
// 512ch@4x4; 3x3, padding 1) at batch 32 and 128, rates 0, 0.5, 0.75. Median times per iteration
// from CUDA events, and peak device memory (the caller's tensors plus the peak of blfft's
// temporaries, blfft::cuda::memory_stats; reported as pool_peak_bytes).
// One JSON object per line on stdout (or --out FILE); bench/cudnn_bench.py measures cuDNN the
// same way, tools/gpu_report.py makes the report. Run by tools/gpu_check.sh.
//
//   blfft_gpu_bench [--out FILE] [--iters N] [--warmup N] [--quick]
//   (--quick: batch 32 only, at most 15 iterations)

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "blfft/cuda.hpp"
#include "blfft/error.hpp"

namespace {

#define CHECK(call)                                                                                \
  do {                                                                                             \
    const cudaError_t e_ = (call);                                                                 \
    if (e_ != cudaSuccess) {                                                                       \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #call, cudaGetErrorString(e_), __FILE__,     \
                   __LINE__);                                                                      \
      std::exit(2);                                                                                \
    }                                                                                              \
  } while (0)

struct device_array {
  float* p = nullptr;
  size_t n = 0;
  explicit device_array(size_t count, std::mt19937& rng, bool random = true) : n(count) {
    CHECK(cudaMalloc(&p, sizeof(float) * std::max<size_t>(n, 1)));
    std::vector<float> h(n, 0.0f);
    if (random) {
      std::uniform_real_distribution<float> d(-1.0f, 1.0f);
      for (auto& v : h) v = d(rng);
    }
    CHECK(cudaMemcpy(p, h.data(), sizeof(float) * n, cudaMemcpyHostToDevice));
    // From pageable memory cudaMemcpy may return before the data reached the device, and the
    // benchmark runs on a non-blocking stream: wait for the copy.
    CHECK(cudaDeviceSynchronize());
  }
  ~device_array() { cudaFree(p); }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  size_t bytes() const { return sizeof(float) * n; }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

struct layer {
  const char* name;
  int64_t channels, size;
};

}  // namespace

int main(int argc, char** argv) {
  std::string out_path;
  int iters = 30, warmup = 5;
  bool quick = false, tf32 = true;  // TF32: torch's default for convolutions (cudnn_tf32 rows)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--out" && i + 1 < argc)
      out_path = argv[++i];
    else if (a == "--iters" && i + 1 < argc)
      iters = std::atoi(argv[++i]);
    else if (a == "--warmup" && i + 1 < argc)
      warmup = std::atoi(argv[++i]);
    else if (a == "--quick")
      quick = true;
    else if (a == "--tf32" && i + 1 < argc)
      tf32 = std::string(argv[++i]) != "off";
    else {
      std::fprintf(stderr,
                   "usage: %s [--out FILE] [--iters N] [--warmup N] [--quick] [--tf32 on|off]\n",
                   argv[0]);
      return 2;
    }
  }
  // The mixing may use TF32 (cuBLAS) exactly as the cuDNN rows it is compared with do.
  const blfft::cuda::scoped_tf32 tf32_scope(tf32);
  if (blfft::cuda::device_count() == 0) {
    std::fprintf(stderr, "blfft_gpu_bench: no CUDA device\n");
    return 3;
  }
  FILE* out = out_path.empty() ? stdout : std::fopen(out_path.c_str(), "w");
  if (!out) {
    std::perror(out_path.c_str());
    return 2;
  }
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t e0, e1, e2;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  CHECK(cudaEventCreate(&e2));

  std::vector<layer> layers{{"64ch@32x32", 64, 32},
                            {"128ch@16x16", 128, 16},
                            {"256ch@8x8", 256, 8},
                            {"512ch@4x4", 512, 4}};
  std::vector<int64_t> batches{32, 128};
  std::vector<double> rates{0.0, 0.5, 0.75};
  if (quick) {  // the GPU check (tools/gpu_check.sh): every layer shape, batch 32
    batches = {32};
    iters = std::min(iters, 15);
  }
  std::mt19937 rng(1234);
  for (const auto& L : layers)
    for (int64_t N : batches)
      for (double r : rates) {
        const auto p = blfft::conv_params::conv2d(N, L.channels, L.channels, {L.size, L.size},
                                                  {3, 3}, {1, 1}, {1, 1});
        try {
          const auto plan = blfft::cuda::get_plan<float>(p, blfft::compression::rate(r));
          const auto& g = plan->geometry();
          device_array x(g.input_size(), rng), w(g.weight_size(), rng), b(L.channels, rng),
              y(g.output_size(), rng, false), dy(g.output_size(), rng),
              dx(g.input_size(), rng, false), dw(g.weight_size(), rng, false),
              db(L.channels, rng, false), xs(g.x_spectrum_size(), rng, false),
              ws(g.w_spectrum_size(), rng, false);
          using cv = blfft::tensor_view<const float>;
          using v = blfft::tensor_view<float>;
          const auto xv = cv::contiguous(x.p, g.input_shape());
          const auto wv = cv::contiguous(w.p, g.weight_shape());
          const auto yv = v::contiguous(y.p, g.output_shape());
          const auto dyv = cv::contiguous(dy.p, g.output_shape());
          const auto dxv = v::contiguous(dx.p, g.input_shape());
          const auto dwv = v::contiguous(dw.p, g.weight_shape());
          const blfft::spectrum_view<float> xsv(xs.p, g.x_spectrum_size()),
              wsv(ws.p, g.w_spectrum_size());
          const auto step = [&](bool timed, std::vector<double>* f, std::vector<double>* bw) {
            if (timed) CHECK(cudaEventRecord(e0, stream));
            plan->forward(xv, wv, b.p, yv, xsv, wsv, stream);
            if (timed) CHECK(cudaEventRecord(e1, stream));
            plan->backward(dyv, xsv, wsv, &dxv, &dwv, db.p, stream);
            if (timed) {
              CHECK(cudaEventRecord(e2, stream));
              CHECK(cudaEventSynchronize(e2));
              float a = 0, c = 0;
              CHECK(cudaEventElapsedTime(&a, e0, e1));
              CHECK(cudaEventElapsedTime(&c, e1, e2));
              f->push_back(a);
              bw->push_back(c);
            }
          };
          for (int i = 0; i < warmup; ++i) step(false, nullptr, nullptr);
          CHECK(cudaStreamSynchronize(stream));
          blfft::cuda::reset_memory_peak();
          std::vector<double> fwd, bwd, tot;
          for (int i = 0; i < iters; ++i) step(true, &fwd, &bwd);
          for (size_t i = 0; i < fwd.size(); ++i) tot.push_back(fwd[i] + bwd[i]);
          const auto pool = blfft::cuda::memory_stats();  // blfft's temporaries
          // Where the time goes: each entry point on its own (input_grad and weight_grad each
          // transform grad_out again, so they add up to more than backward).
          const auto part = [&](auto&& call) {
            std::vector<double> t;
            for (int i = 0; i < iters; ++i) {
              CHECK(cudaEventRecord(e0, stream));
              call();
              CHECK(cudaEventRecord(e1, stream));
              CHECK(cudaEventSynchronize(e1));
              float ms = 0;
              CHECK(cudaEventElapsedTime(&ms, e0, e1));
              t.push_back(ms);
            }
            return median(t);
          };
          const double t_xs = part([&] { plan->input_spectrum(xv, xsv, stream); });
          const double t_ws = part([&] { plan->weight_spectrum(wv, wsv, stream); });
          const double t_fs = part([&] { plan->forward_spectra(xsv, wsv, b.p, yv, stream); });
          const double t_dx = part([&] { plan->input_grad(dyv, wsv, dxv, stream); });
          const double t_dw = part([&] { plan->weight_grad(dyv, xsv, dwv, stream); });
          const double t_db = part([&] { plan->bias_grad(dyv, db.p, stream); });
          const size_t tensors = x.bytes() + w.bytes() + b.bytes() + y.bytes() + dy.bytes() +
                                 dx.bytes() + dw.bytes() + db.bytes() + xs.bytes() + ws.bytes();
          std::fprintf(out,
                       "{\"impl\": \"blfft\", \"tf32\": %s, \"device\": \"%s\", \"layer\": \"%s\", "
                       "\"channels\": %lld, \"size\": %lld, \"batch\": %lld, \"rate\": %.2f, "
                       "\"achieved_rate\": %.4f, \"grid\": [%lld, %lld], \"kept\": %lld, "
                       "\"fwd_ms\": %.4f, \"bwd_ms\": %.4f, \"total_ms\": %.4f, "
                       "\"min_total_ms\": %.4f, \"iters\": %d, \"peak_bytes\": %zu, "
                       "\"tensor_bytes\": %zu, \"pool_peak_bytes\": %zu, \"parts_ms\": "
                       "{\"input_spectrum\": %.4f, \"weight_spectrum\": %.4f, "
                       "\"forward_spectra\": %.4f, \"input_grad\": %.4f, "
                       "\"weight_grad\": %.4f, \"bias_grad\": %.4f}}\n",
                       tf32 ? "true" : "false", prop.name, L.name,
                       static_cast<long long>(L.channels), static_cast<long long>(L.size),
                       static_cast<long long>(N), r, g.achieved_rate,
                       static_cast<long long>(g.grid[0]), static_cast<long long>(g.grid[1]),
                       static_cast<long long>(g.kept), median(fwd), median(bwd), median(tot),
                       *std::min_element(tot.begin(), tot.end()), iters, tensors + pool.peak,
                       tensors, pool.peak, t_xs, t_ws, t_fs, t_dx, t_dw, t_db);
          std::fflush(out);
        } catch (const blfft::error& e) {
          std::fprintf(stderr, "blfft_gpu_bench: %s N=%lld r=%.2f: %s\n", L.name,
                       static_cast<long long>(N), r, e.what());
          std::fprintf(out,
                       "{\"impl\": \"blfft\", \"layer\": \"%s\", \"batch\": %lld, \"rate\": %.2f, "
                       "\"error\": \"blfft::error\"}\n",
                       L.name, static_cast<long long>(N), r);
        }
        blfft::cuda::clear_plan_cache();  // one layer's plans at a time
      }
  if (out != stdout) std::fclose(out);
  return 0;
}
