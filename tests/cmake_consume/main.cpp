// Consumer of an installed blfft: builds plans for a small conv2d and checks them.
//   rate 0:   equals a direct convolution (computed here in double) to float rounding;
//   rate 0.5: keeps some but not all coefficients and gives finite output.
// Exit status 0 on success.

#include <blfft/blfft.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

// y[n][f][i][j] = bias[f] + sum_{c,a,b} xpad[n][c][i+a][j+b] * w[f][c][a][b]  (stride 1)
std::vector<double> direct_conv2d(const blfft::geometry& g, const std::vector<float>& x,
                                  const std::vector<float>& w, const std::vector<float>& bias) {
  const blfft::conv_params& p = g.params;
  const int64_t N = p.batch, C = p.in_channels, F = p.out_channels;
  const int64_t H = p.input[0], W = p.input[1], KH = p.kernel[0], KW = p.kernel[1];
  const int64_t PH = p.padding[0], PW = p.padding[1];
  const int64_t HO = g.output[0], WO = g.output[1];
  std::vector<double> y(N * F * HO * WO);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t i = 0; i < HO; ++i)
        for (int64_t j = 0; j < WO; ++j) {
          double s = bias[f];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t a = 0; a < KH; ++a)
              for (int64_t b = 0; b < KW; ++b) {
                const int64_t h = i + a - PH, v = j + b - PW;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                s += double(x[((n * C + c) * H + h) * W + v]) *
                     double(w[((f * C + c) * KH + a) * KW + b]);
              }
          y[((n * F + f) * HO + i) * WO + j] = s;
        }
  return y;
}

}  // namespace

int main() {
  std::printf("blfft %s consumer\n", BLFFT_VERSION_STRING);
  const auto params = blfft::conv_params::conv2d(/*batch=*/2, /*in_channels=*/3,
                                                 /*out_channels=*/4, /*input=*/{9, 7},
                                                 /*kernel=*/{3, 3}, /*stride=*/{1, 1},
                                                 /*padding=*/{1, 1});

  // Deterministic inputs without <random>: a small linear congruential sequence in [-1, 1).
  uint32_t state = 12345u;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;
    return float(state >> 8) / float(1u << 23) - 1.0f;
  };

  try {
    const blfft::plan<float> exact(params, blfft::compression::rate(0.0));
    const blfft::geometry& g = exact.geometry();
    std::printf("%s\n", g.describe().c_str());

    std::vector<float> x(g.input_size()), w(g.weight_size()), bias(params.out_channels);
    for (float& v : x) v = next();
    for (float& v : w) v = next();
    for (float& v : bias) v = next();
    std::vector<float> y(g.output_size());

    using cview = blfft::tensor_view<const float>;
    const auto xv = cview::contiguous(x.data(), g.input_shape());
    const auto wv = cview::contiguous(w.data(), g.weight_shape());
    const auto yv = blfft::tensor_view<float>::contiguous(y.data(), g.output_shape());

    // Rate 0: ordinary convolution.
    exact.forward(xv, wv, bias.data(), yv);
    const std::vector<double> ref = direct_conv2d(g, x, w, bias);
    double num = 0.0, den = 0.0;
    bool finite = true;
    for (size_t i = 0; i < ref.size(); ++i) {
      finite = finite && std::isfinite(y[i]);
      num += (y[i] - ref[i]) * (y[i] - ref[i]);
      den += ref[i] * ref[i];
    }
    const double rel = std::sqrt(num / den);
    std::printf("rate 0: relative l2 error against direct convolution %.3e\n", rel);
    check(g.output[0] == 9 && g.output[1] == 7, "output size 9x7 with padding 1");
    check(g.kept == g.total, "rate 0 keeps every coefficient");
    check(finite && rel < 1e-4, "rate 0 matches direct convolution (rel. l2 < 1e-4)");

    // Rate 0.5: band-limited.
    const blfft::plan<float> half(params, blfft::compression::rate(0.5));
    const blfft::geometry& gh = half.geometry();
    std::printf("%s\n", gh.describe().c_str());
    half.forward(xv, wv, bias.data(), yv);
    finite = true;
    for (float v : y) finite = finite && std::isfinite(v);
    check(gh.kept > 0 && gh.kept < gh.total, "rate 0.5 keeps some, not all, coefficients");
    check(gh.achieved_rate > 0.0 && gh.achieved_rate < 1.0, "rate 0.5 achieved rate in (0, 1)");
    check(finite, "rate 0.5 output is finite");
  } catch (const blfft::error& e) {
    std::printf("FAIL: blfft::error: %s\n", e.what());
    return 1;
  }

  std::printf("%s\n", failures ? "FAILED" : "PASSED");
  return failures ? 1 : 0;
}
