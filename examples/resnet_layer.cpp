// A ResNet-style layer (batch 32, 64 -> 64 channels, 32x32 maps, 3x3 kernel, padding 1) run with
// band-limited convolution at several compression rates: forward, then the backward pass that
// reuses the compressed spectra saved by the forward pass.
//
//   blfft_example_resnet_layer [repetitions]     (default 5)
//
// For each rate it prints what the plan kept and the median time of forward and backward. The
// last column is how far the output moves from the uncompressed (rate 0) result. The inputs are
// white noise, whose energy is spread evenly over all frequencies: the worst case for
// band-limiting (natural images and feature maps keep most of their energy in the low band).

#include <blfft/blfft.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Milliseconds taken by f(), median over `reps` runs after one warm-up run.
template <class F>
double median_ms(int reps, F&& f) {
  f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = clock_type::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
  }
  return median(ms);
}

std::vector<float> random_vector(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

double relative_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num / den);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;

  // The layer, in PyTorch's conventions: conv2d(x (N,C,H,W), w (F,C,3,3), padding=1).
  const blfft::conv_params layer = blfft::conv_params::conv2d(
      /*batch=*/32, /*in_channels=*/64, /*out_channels=*/64, /*input=*/{32, 32},
      /*kernel=*/{3, 3}, /*stride=*/{1, 1}, /*padding=*/{1, 1});

  // Shapes do not depend on the rate: take them from an uncompressed geometry.
  const blfft::geometry g0 = blfft::make_geometry(layer);
  std::mt19937 rng(2019);
  const std::vector<float> x = random_vector(g0.input_size(), rng, 1.0f);
  const std::vector<float> w = random_vector(g0.weight_size(), rng, 1.0f / 24.0f);
  const std::vector<float> bias = random_vector(g0.params.out_channels, rng, 0.1f);
  const std::vector<float> grad_out = random_vector(g0.output_size(), rng, 1.0f);

  std::vector<float> y(g0.output_size()), y_uncompressed;
  std::vector<float> grad_x(g0.input_size()), grad_w(g0.weight_size());
  std::vector<float> grad_bias(g0.params.out_channels);

  // Views: pointer + shape + strides (here C-contiguous).
  using view = blfft::tensor_view<float>;
  using const_view = blfft::tensor_view<const float>;
  const const_view x_view = const_view::contiguous(x.data(), g0.input_shape());
  const const_view w_view = const_view::contiguous(w.data(), g0.weight_shape());
  const const_view g_view = const_view::contiguous(grad_out.data(), g0.output_shape());
  const view y_view = view::contiguous(y.data(), g0.output_shape());
  const view gx_view = view::contiguous(grad_x.data(), g0.input_shape());
  const view gw_view = view::contiguous(grad_w.data(), g0.weight_shape());

  std::printf("blfft %s: conv2d N=32 C=64 F=64 32x32 3x3 padding 1, %d threads, median of %d\n",
              BLFFT_VERSION_STRING, blfft::get_num_threads(), reps);
  std::printf("FFT grid %lldx%lld (%lld rfft bins)\n\n", static_cast<long long>(g0.grid[0]),
              static_cast<long long>(g0.grid[1]), static_cast<long long>(g0.total));
  std::printf("%6s %9s %11s %11s %12s %13s %16s\n", "rate", "achieved", "kept/total", "rows x cols",
              "forward ms", "backward ms", "rel. diff to 0");

  for (const double rate : {0.0, 0.25, 0.5, 0.75}) {
    // A plan is built once per geometry and rate, then executed many times.
    const blfft::plan<float> plan(layer, blfft::compression::rate(rate));
    const blfft::geometry& g = plan.geometry();

    // The compressed spectra of x and w, written by forward and read by backward; the plan
    // checks their lengths.
    std::vector<float> xs(g.x_spectrum_size()), ws(g.w_spectrum_size());
    const blfft::spectrum_view<float> x_spectrum(xs.data(), g.x_spectrum_size());
    const blfft::spectrum_view<float> w_spectrum(ws.data(), g.w_spectrum_size());

    const double forward_ms = median_ms(
        reps, [&] { plan.forward(x_view, w_view, bias.data(), y_view, x_spectrum, w_spectrum); });
    const double backward_ms = median_ms(reps, [&] {
      plan.backward(g_view, x_spectrum, w_spectrum, &gx_view, &gw_view, grad_bias.data());
    });

    if (rate == 0.0) y_uncompressed = y;
    char kept[32], rows_cols[32];
    std::snprintf(kept, sizeof kept, "%lld/%lld", static_cast<long long>(g.kept),
                  static_cast<long long>(g.total));
    std::snprintf(rows_cols, sizeof rows_cols, "%zu x %zu", g.kept_rows.size(), g.kept_cols.size());
    std::printf("%6.2f %9.3f %11s %11s %12.2f %13.2f %16.3e\n", rate, g.achieved_rate, kept,
                rows_cols, forward_ms, backward_ms, relative_l2(y, y_uncompressed));
  }
  return 0;
}
