// Benchmark of the C++ core on the CPU: the layers of bench.py (ResNet-18 CIFAR, the paper's FCN)
// at several rates, with both transform engines, forward and backward medians, and the sizes of
// the saved spectra. Writes JSON (one object per measurement) to the path given, or stdout.
//
//   blfft_bench_core [--quick] [--repeats N] [--out FILE] [--method fft|matmul|auto|both]
//                    [--layer SUBSTRING] [--rate R]   (only the layers / the rate named)

#include <blfft/blfft.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct layer {
  const char* name;
  blfft::conv_params params;
};

std::vector<layer> layers(bool quick) {
  using blfft::conv_params;
  if (quick)
    return {{"quick 16ch 16x16", conv_params::conv2d(4, 16, 16, {16, 16}, {3, 3}, {1, 1}, {1, 1})},
            {"quick fcn 8->16 k5 L64", conv_params::conv1d(4, 8, 16, 64, 5, 1, 2)}};
  return {
      {"r18 64ch 32x32", conv_params::conv2d(32, 64, 64, {32, 32}, {3, 3}, {1, 1}, {1, 1})},
      {"r18 128ch 16x16", conv_params::conv2d(32, 128, 128, {16, 16}, {3, 3}, {1, 1}, {1, 1})},
      {"r18 256ch 8x8", conv_params::conv2d(32, 256, 256, {8, 8}, {3, 3}, {1, 1}, {1, 1})},
      {"r18 512ch 4x4", conv_params::conv2d(32, 512, 512, {4, 4}, {3, 3}, {1, 1}, {1, 1})},
      {"r18 64->128 s2 32x32", conv_params::conv2d(32, 64, 128, {32, 32}, {3, 3}, {2, 2}, {1, 1})},
      {"r18 128->256 s2 16x16",
       conv_params::conv2d(32, 128, 256, {16, 16}, {3, 3}, {2, 2}, {1, 1})},
      {"r18 256->512 s2 8x8", conv_params::conv2d(32, 256, 512, {8, 8}, {3, 3}, {2, 2}, {1, 1})},
      // The FCN's k=8 'same' pads 3 left and 4 right; the core pads symmetrically, so this
      // measures padding 4 (one extra output column), the closest symmetric layer.
      {"fcn 1->128 k8 L500", conv_params::conv1d(16, 1, 128, 500, 8, 1, 4)},
      {"fcn 128->256 k5 L500", conv_params::conv1d(16, 128, 256, 500, 5, 1, 2)},
      {"fcn 256->128 k3 L500", conv_params::conv1d(16, 256, 128, 500, 3, 1, 1)},
  };
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

const char* method_name(blfft::transform_method m) {
  switch (m) {
    case blfft::transform_method::fft: return "fft";
    case blfft::transform_method::matmul: return "matmul";
    default: return "auto";
  }
}

std::string measure(const layer& l, double rate, blfft::transform_method method, int repeats) {
  using clock = std::chrono::steady_clock;
  blfft::plan_options options;
  options.method = method;
  const blfft::plan<float> plan(l.params, blfft::compression::rate(rate), options);
  const auto& g = plan.geometry();
  std::mt19937 rng(0);
  std::normal_distribution<float> normal;
  std::vector<float> x(g.input_size()), w(g.weight_size()), y(g.output_size()), go(g.output_size()),
      dx(g.input_size()), dw(g.weight_size()), db(l.params.out_channels), xs(g.x_spectrum_size()),
      ws(g.w_spectrum_size());
  for (auto* v : {&x, &w, &go})
    for (auto& e : *v) e = normal(rng);
  const auto xv = blfft::tensor_view<const float>::contiguous(x.data(), g.input_shape());
  const auto wv = blfft::tensor_view<const float>::contiguous(w.data(), g.weight_shape());
  const auto yv = blfft::tensor_view<float>::contiguous(y.data(), g.output_shape());
  const auto gv = blfft::tensor_view<const float>::contiguous(go.data(), g.output_shape());
  const auto dxv = blfft::tensor_view<float>::contiguous(dx.data(), g.input_shape());
  const auto dwv = blfft::tensor_view<float>::contiguous(dw.data(), g.weight_shape());
  const blfft::spectrum_view<float> xsv(xs.data(), g.x_spectrum_size());
  const blfft::spectrum_view<float> wsv(ws.data(), g.w_spectrum_size());
  std::vector<double> fwd, bwd;
  for (int i = 0; i < repeats + 2; ++i) {
    const auto t0 = clock::now();
    plan.forward(xv, wv, nullptr, yv, xsv, wsv);
    const auto t1 = clock::now();
    plan.backward(gv, xsv, wsv, &dxv, &dwv, db.data());
    const auto t2 = clock::now();
    if (i < 2) continue;  // warm-up
    fwd.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    bwd.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::vector<double> both(fwd.size());
  for (size_t i = 0; i < fwd.size(); ++i) both[i] = fwd[i] + bwd[i];
  std::ostringstream os;
  os << "{\"layer\": \"" << l.name << "\", \"rate\": " << rate << ", \"method\": \""
     << method_name(method) << "\", \"achieved_rate\": " << g.achieved_rate
     << ", \"kept\": " << g.kept << ", \"total\": " << g.total << ", \"grid\": [" << g.grid[0]
     << ", " << g.grid[1] << "], \"fwd_ms\": " << median(fwd) << ", \"bwd_ms\": " << median(bwd)
     << ", \"fwd_bwd_ms\": " << median(both)
     << ", \"x_spectrum_bytes\": " << g.x_spectrum_size() * 4
     << ", \"w_spectrum_bytes\": " << g.w_spectrum_size() * 4
     << ", \"input_bytes\": " << g.input_size() * 4 << "}";
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int repeats = 7;
  std::string out, which = "both", layer_filter;
  double only_rate = -1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
      repeats = 2;
    } else if (a == "--repeats" && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--out" && i + 1 < argc) {
      out = argv[++i];
    } else if (a == "--method" && i + 1 < argc) {
      which = argv[++i];
    } else if (a == "--layer" && i + 1 < argc) {
      layer_filter = argv[++i];
    } else if (a == "--rate" && i + 1 < argc) {
      only_rate = std::atof(argv[++i]);
    } else {
      std::cerr << "usage: " << argv[0]
                << " [--quick] [--repeats N] [--out FILE] [--method fft|matmul|auto|both]"
                   " [--layer SUBSTRING] [--rate R]\n";
      return 2;
    }
  }
  std::vector<blfft::transform_method> methods;
  if (which == "both" || which == "fft") methods.push_back(blfft::transform_method::fft);
  if (which == "both" || which == "matmul") methods.push_back(blfft::transform_method::matmul);
  if (which == "auto") methods.push_back(blfft::transform_method::automatic);
  std::vector<std::string> rows;
  for (const auto& l : layers(quick))
    for (double rate : {0.0, 0.25, 0.5, 0.75})
      for (auto m : methods) {
        if (std::string(l.name).find(layer_filter) == std::string::npos) continue;
        if (only_rate >= 0 && rate != only_rate) continue;
        rows.push_back(measure(l, rate, m, repeats));
        std::cerr << rows.back() << "\n";
      }
  std::ostringstream json;
  json << "{\"threads\": " << blfft::get_num_threads() << ", \"repeats\": " << repeats
       << ", \"version\": \"" << BLFFT_VERSION_STRING << "\", \"results\": [\n";
  for (size_t i = 0; i < rows.size(); ++i)
    json << "  " << rows[i] << (i + 1 < rows.size() ? ",\n" : "\n");
  json << "]}\n";
  if (out.empty()) {
    std::cout << json.str();
  } else {
    std::ofstream(out) << json.str();
  }
  return 0;
}
