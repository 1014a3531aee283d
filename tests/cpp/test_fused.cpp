// Passes fused per chunk of kept columns (plan_options::fusion, src/fused_pass.hpp): every entry
// point against direct convolution on layers whose kept columns split into several chunks (one a
// shorter tail), with stride and groups; and deterministic plans bitwise equal for any thread
// count. (Every layer of test_compressed / test_uncompressed also runs fused: harness.hpp.)

#include <gtest/gtest.h>

#include <vector>

#include "harness.hpp"
#include "oracles.hpp"

namespace {

using namespace bt;

blfft::plan_options fused(bool deterministic = false) {
  blfft::plan_options o;
  o.method = blfft::transform_method::matmul;
  o.fusion = blfft::pass_fusion::on;
  o.deterministic = deterministic;
  return o;
}

// 24x24 on a 27x27 grid keeps 14 columns at r = 0; with 128 images a chunk holds 12 of them
// (fused_chunk_bytes), so the columns run as a chunk of 12 and a tail of 2. The second layer
// adds stride 2 (a synthesis placement with step 2), 4 groups and unequal channel counts.
std::vector<conv_params> layers() {
  return {make2d(8, 16, 16, {24, 24}, {3, 3}, {1, 1}, {1, 1}),
          make2d(4, 16, 24, {23, 21}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, 4)};
}

template <class T>
void against_direct(const conv_params& p) {
  problem<T> pr(p, 7);
  const blfft::plan<T> pl(p, compression::none(), fused());
  SCOPED_TRACE(pl.geometry().describe());
  ASSERT_GE(pl.geometry().kept_cols.size(), 13u);
  check_all_entry_points(pl, pr, direct_reference(p, pr.x, pr.w, pr.b, pr.g), tol<T>::direct);
}

TEST(FusedPasses, MatchDirectConvolutionF64) {
  for (const auto& p : layers()) against_direct<double>(p);
}
TEST(FusedPasses, MatchDirectConvolutionF32) {
  for (const auto& p : layers()) against_direct<float>(p);
}

/// Forward (saving both spectra) and backward of a deterministic fused plan: the outputs and
/// the saved spectra, in one vector.
std::vector<float> run_all(const conv_params& p, double rate, int threads) {
  blfft::set_num_threads(threads);
  const problem<float> pr(p, 3);
  const blfft::plan<float> pl(p, compression::rate(rate), fused(true));
  const auto& g = pl.geometry();
  std::vector<float> y(g.output_size()), xs(g.x_spectrum_size()), ws(g.w_spectrum_size());
  gradients<float> gr(pr.d);
  pl.forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, pr.d.output_shape()), spec(xs), spec(ws));
  pl.backward(pr.gv(), spec(xs), spec(ws), &gr.dxv, &gr.dwv, gr.db.data());
  blfft::set_num_threads(0);
  std::vector<float> all = y;
  for (const auto* v : {&xs, &ws, &gr.dx, &gr.dw}) all.insert(all.end(), v->begin(), v->end());
  return all;
}

TEST(FusedPasses, DeterministicBitwiseForAnyThreadCount) {
  for (const auto& p : layers())
    for (double rate : {0.0, 0.5}) {
      const auto one = run_all(p, rate, 1);
      for (int threads : {2, 3, 5}) {
        const auto more = run_all(p, rate, threads);
        ASSERT_EQ(more.size(), one.size());
        size_t differ = 0;
        for (size_t i = 0; i < one.size(); ++i) differ += more[i] != one[i];
        EXPECT_EQ(differ, 0u) << name_of(p) << " rate " << rate << ", " << threads << " threads";
      }
    }
}

// A fused plan's output-gradient spectrum, which the weight gradient reads, is made by the fused
// input-gradient pass where the input gradient is asked for (its column chunks round otherwise
// than the whole-spectrum analysis): the weight gradient alone must be the same bits.
template <class T>
void weight_gradient_alone(const conv_params& p, double rate) {
  const problem<T> pr(p, 5);
  const blfft::plan<T> pl(p, compression::rate(rate), fused());
  const auto& g = pl.geometry();
  std::vector<T> y(g.output_size()), xs(g.x_spectrum_size()), ws(g.w_spectrum_size());
  pl.forward(pr.xv(), pr.wv(), nullptr, out_view(y, pr.d.output_shape()), spec(xs), spec(ws));
  gradients<T> both(pr.d), alone(pr.d);
  pl.backward(pr.gv(), spec(xs), spec(ws), &both.dxv, &both.dwv, nullptr);
  pl.backward(pr.gv(), spec(xs), spec(ws), nullptr, &alone.dwv, nullptr);
  size_t differ = 0;
  for (size_t i = 0; i < both.dw.size(); ++i) differ += both.dw[i] != alone.dw[i];
  EXPECT_EQ(differ, 0u) << name_of(p) << " rate " << rate << ", " << sizeof(T) << "-byte";
}

TEST(FusedPasses, WeightGradientTheSameWithOrWithoutInputGradient) {
  auto all = layers();
  all.push_back(make2d(1, 1, 1, {24, 20}, {3, 3}, {1, 1}, {1, 1}));
  all.push_back(make2d(3, 4, 2, {24, 20}, {3, 3}, {1, 1}, {1, 1}));
  for (const auto& p : all)
    for (double rate : {0.0, 0.5}) {
      weight_gradient_alone<float>(p, rate);
      weight_gradient_alone<double>(p, rate);
    }
}

}  // namespace
