// Energy-based compression (docs/design.md 1.7): the energy map (Parseval-exact, conjugate-pair
// columns counted twice) and select_by_energy (the smallest kept set of the rate family that
// holds at least a fraction E of the energy).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "oracles.hpp"

namespace {

using namespace bt;

/// The rate family of kept sets (docs/design.md 1.4) as a chain of band limits {i_h, i_w}, smallest
/// first. Limits depend on the rate only through s = (1-r)^(1/ndim) in (0, 1] and change only
/// where B*s crosses an integer, so the distinct pairs are those at s = j/B (plus s -> 0).
std::vector<std::array<i64, 2>> rate_family(std::array<i64, 2> grid, int ndim) {
  const i64 bh = grid[0] / 2 + 1, bw = grid[1] / 2 + 1;
  auto limit = [](i64 b, double s) {
    return std::min(b, std::max<i64>(1, static_cast<i64>(std::floor(b * s + 1e-9))));
  };
  std::vector<double> ss{1e-12};
  for (i64 j = 1; j <= bw; ++j) ss.push_back(static_cast<double>(j) / bw);
  if (ndim == 2)
    for (i64 j = 1; j <= bh; ++j) ss.push_back(static_cast<double>(j) / bh);
  std::sort(ss.begin(), ss.end());
  std::vector<std::array<i64, 2>> chain;
  for (double s : ss) {
    const std::array<i64, 2> l{ndim == 1 ? 1 : limit(bh, s), limit(bw, s)};
    if (chain.empty() || chain.back() != l) chain.push_back(l);
  }
  return chain;
}

double kept_fraction(const vec& map, std::array<i64, 2> grid, std::array<i64, 2> limits) {
  const i64 bw = grid[1] / 2 + 1;
  double total = 0;
  for (double e : map) total += e;
  return kept_energy(map, bw, ref_kept_rows(grid[0], limits[0]), ref_kept_cols(limits[1])) / total;
}

template <class T>
void check_energy_map(const conv_params& p) {
  problem<T> pr(p, 101);
  const auto grid = p.grid[0] ? p.grid : ref_default_grid(p);
  const vec e = blfft::energy_map<T>(p, pr.xv());
  ASSERT_EQ(static_cast<i64>(e.size()), grid[0] * (grid[1] / 2 + 1));
  double sum = 0, sumsq = 0;
  for (double v : e) {
    ASSERT_TRUE(std::isfinite(v));
    EXPECT_GE(v, 0.0);
    sum += v;
  }
  for (double v : pr.x) sumsq += v * v;
  const double parseval = static_cast<double>(grid[0] * grid[1]) * sumsq;
  EXPECT_NEAR(sum, parseval, tol<T>::energy * parseval) << "Parseval";
  // Per bin, against the naive DFT.
  EXPECT_LE(rel_l2(e, ref_energy_map(p, grid, pr.x)), tol<T>::energy);
}

const std::vector<conv_params>& energy_geometries() {
  static const std::vector<conv_params> g = {
      make2d(2, 3, 4, {8, 8}, {3, 3}, {1, 1}, {1, 1}),   // grid 10 x 10 (even)
      make2d(1, 2, 1, {7, 13}, {3, 3}, {1, 1}, {1, 1}),  // grid 9 x 15 (odd)
      make2d(2, 1, 1, {16, 16}, {1, 1}),                 // grid 16 x 16, no padding
      make1d(2, 3, 1, 20, 3, 1, 1),                      // grid 1 x 24
      make1d(1, 2, 1, 13, 3, 1, 0),                      // grid 1 x 14
      with_grid(make2d(1, 2, 1, {6, 6}, {3, 3}, {1, 1}, {1, 1}), {11, 12}),
  };
  return g;
}

TEST(EnergyMap, ParsevalAndPerBinF32) {
  for (const auto& p : energy_geometries()) {
    SCOPED_TRACE(name_of(p));
    check_energy_map<float>(p);
  }
}
TEST(EnergyMap, ParsevalAndPerBinF64) {
  for (const auto& p : energy_geometries()) {
    SCOPED_TRACE(name_of(p));
    check_energy_map<double>(p);
  }
}

// select_by_energy: E is reached, and the next smaller set of the family misses it.
TEST(SelectByEnergy, SmallestSetOfTheFamilyHoldingE) {
  for (const auto& p : energy_geometries()) {
    problem<double> pr(p, 111);
    // Shift the data so that low frequencies dominate, as in natural images.
    for (auto& v : pr.x) v += 0.7;
    pr.xt = cast<double>(pr.x);
    const auto grid = p.grid[0] ? p.grid : ref_default_grid(p);
    const vec map = blfft::energy_map<double>(p, pr.xv());
    const auto chain = rate_family(grid, p.ndim);
    for (double E : {1e-9, 0.3, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 1.0}) {
      SCOPED_TRACE(name_of(p) + " E=" + std::to_string(E));
      const auto sel = blfft::select_by_energy(p, map, E);
      // The chosen set is a member of the family...
      const auto it = std::find(chain.begin(), chain.end(), sel.limits);
      ASSERT_NE(it, chain.end()) << "limits {" << sel.limits[0] << "," << sel.limits[1]
                                 << "} are not in the rate family";
      // ...holding at least E (recomputed with our own mask)...
      const double kept = kept_fraction(map, grid, sel.limits);
      EXPECT_GE(kept, E);
      EXPECT_NEAR(sel.energy_kept, kept, 1e-12);
      // ...and the next smaller member of the family holds less than E.
      if (it != chain.begin()) {
        EXPECT_LT(kept_fraction(map, grid, *(it - 1)), E);
      }
      // Reported rate, kept set and achieved rate are consistent.
      EXPECT_GE(sel.rate, 0.0);
      EXPECT_LT(sel.rate, 1.0);
      EXPECT_EQ(blfft::band_limit(grid[1], sel.rate, p.ndim), sel.limits[1]);
      if (p.ndim == 2) {
        EXPECT_EQ(blfft::band_limit(grid[0], sel.rate, 2), sel.limits[0]);
      }
      EXPECT_EQ(sel.chosen.kind, compression::kind_type::band);
      EXPECT_EQ(sel.chosen.limits, sel.limits);
      const i64 kept_bins =
          static_cast<i64>(ref_kept_rows(grid[0], sel.limits[0]).size()) * sel.limits[1];
      const double total_bins = static_cast<double>(grid[0] * (grid[1] / 2 + 1));
      EXPECT_DOUBLE_EQ(sel.achieved_rate, 1.0 - kept_bins / total_bins);
      const auto geo_band = blfft::make_geometry(p, sel.chosen);
      EXPECT_EQ(geo_band.kept, kept_bins);
      const auto geo_rate = blfft::make_geometry(p, compression::rate(sel.rate));
      EXPECT_EQ(geo_rate.kept_rows, geo_band.kept_rows);
      EXPECT_EQ(geo_rate.kept_cols, geo_band.kept_cols);
      // The one-call overload agrees.
      const auto sel2 = blfft::select_by_energy<double>(p, pr.xv(), E);
      EXPECT_EQ(sel2.limits, sel.limits);
    }
  }
}

TEST(SelectByEnergy, FloatInputOverload) {
  const auto p = make2d(2, 3, 1, {12, 10}, {3, 3}, {1, 1}, {1, 1});
  problem<float> pr(p, 121);
  const auto grid = ref_default_grid(p);
  const auto chain = rate_family(grid, 2);
  const vec map = ref_energy_map(p, grid, pr.x);
  for (double E : {0.4, 0.9}) {
    const auto sel = blfft::select_by_energy<float>(p, pr.xv(), E);
    const auto it = std::find(chain.begin(), chain.end(), sel.limits);
    ASSERT_NE(it, chain.end());
    EXPECT_GE(kept_fraction(map, grid, sel.limits), E - 1e-6);
    if (it != chain.begin()) {
      EXPECT_LT(kept_fraction(map, grid, *(it - 1)), E + 1e-6);
    }
  }
}

// A random (broadband) input needs every bin for E = 1; a tiny E needs only DC.
TEST(SelectByEnergy, ExtremesOnBroadbandInput) {
  const auto p = make2d(2, 2, 1, {9, 10}, {3, 3}, {1, 1}, {1, 1});  // grid 12 x 12
  problem<double> pr(p, 131);
  const auto full = blfft::select_by_energy<double>(p, pr.xv(), 1.0);
  EXPECT_EQ(full.limits, (std::array<i64, 2>{7, 7}));
  EXPECT_DOUBLE_EQ(full.achieved_rate, 0.0);
  const auto dc = blfft::select_by_energy<double>(p, pr.xv(), 1e-12);
  EXPECT_EQ(dc.limits, (std::array<i64, 2>{1, 1}));
}

// E = 1 on an exactly band-limited input: rows |k_h| <= 1 and columns k_w <= 2 carry all the
// energy (all other bins are zero up to rounding), so the chosen set is the smallest family
// member containing them: band(3, 3) on the 16 x 16 grid (15 of 144 bins), not the full grid.
TEST(SelectByEnergy, FullEnergyOfBandLimitedInputChoosesSmallSet) {
  const auto p = make2d(2, 2, 1, {16, 16}, {1, 1});  // grid 16 x 16, no padding
  const dims d = dims_of(p);
  const double pi = std::acos(-1.0);
  vec x(static_cast<size_t>(d.input_size()));
  for (i64 n = 0; n < d.N; ++n)
    for (i64 c = 0; c < d.C; ++c)
      for (i64 h = 0; h < d.H; ++h)
        for (i64 w = 0; w < d.W; ++w)
          x[d.xi(n, c, h, w)] = 0.5 + n + c + 0.8 * std::cos(2 * pi * h / 16.0 + 0.3 * c) +
                                0.6 * std::sin(2 * pi * 2 * w / 16.0 + 0.2 * n) +
                                0.3 * std::cos(2 * pi * (h / 16.0 + w / 8.0));
  const auto xv = in_view(x, d.input_shape());
  const auto sel = blfft::select_by_energy<double>(p, xv, 1.0);
  EXPECT_EQ(sel.limits, (std::array<i64, 2>{3, 3}))
      << "chosen rate " << sel.rate << ", energy_kept " << sel.energy_kept;
  EXPECT_NEAR(sel.energy_kept, 1.0, 1e-12);
  EXPECT_GT(sel.achieved_rate, 0.85);
  // Our own map agrees that everything lies inside band(3, 3).
  const vec map = ref_energy_map(p, {16, 16}, x);
  EXPECT_NEAR(kept_fraction(map, {16, 16}, {3, 3}), 1.0, 1e-14);
  EXPECT_LT(kept_fraction(map, {16, 16}, {2, 2}), 0.999);
}

/// A smooth input (low frequencies dominate, as in natural images) of p's shape: a few low
/// cosines per image plus a little noise.
template <class T>
std::vector<T> smooth_input(const conv_params& p, uint64_t seed) {
  const dims d = dims_of(p);
  const vec noise = random_vector(d.input_size(), seed);
  std::vector<T> x(static_cast<size_t>(d.input_size()));
  for (i64 n = 0; n < d.N; ++n)
    for (i64 c = 0; c < d.C; ++c)
      for (i64 h = 0; h < d.H; ++h)
        for (i64 w = 0; w < d.W; ++w) {
          const i64 i = d.xi(n, c, h, w);
          const double a = 0.1 * static_cast<double>((n + 2 * c) % 7);
          x[static_cast<size_t>(i)] = static_cast<T>(
              1.0 + std::cos(0.3 * h + a) + 0.5 * std::sin(0.5 * w - a) +
              0.3 * std::cos(0.9 * (h + w) + a) + 0.05 * noise[static_cast<size_t>(i)]);
        }
  return x;
}

// The staged search of the one-call overload (a band of the family first, where the previous call
// for the layer landed, the whole map only when needed) chooses what the whole map chooses,
// whatever the order of the calls (which moves its starting band up and down).
template <class T>
void check_staged_search(const conv_params& p) {
  const auto x = smooth_input<T>(p, 7);
  const auto xv = tensor_view<const T>::contiguous(x.data(), dims_of(p).input_shape());
  const vec map = blfft::energy_map<T>(p, xv);
  const std::vector<double> fractions{0.5, 0.9, 0.99, 0.3, 0.999, 0.9, 0.9, 1.0, 0.2, 0.95, 1e-9};
  for (double E : fractions) {
    SCOPED_TRACE(name_of(p) + " E=" + std::to_string(E));
    const auto want = blfft::select_by_energy(p, map, E);
    for (int repeat = 0; repeat < 2; ++repeat) {  // the second call starts at the first's choice
      const auto got = blfft::select_by_energy<T>(p, xv, E);
      EXPECT_EQ(got.limits, want.limits);
      EXPECT_EQ(got.rate, want.rate);
      EXPECT_NEAR(got.energy_kept, want.energy_kept, sizeof(T) == 4 ? 1e-5 : 1e-12);
      EXPECT_GE(got.energy_kept, std::min(E, 1.0) - (sizeof(T) == 4 ? 1e-5 : 1e-12));
    }
  }
}

TEST(SelectByEnergy, StagedSearchChoosesWhatTheWholeMapChooses) {
  for (const auto& p :
       {make2d(3, 4, 1, {24, 20}, {3, 3}, {1, 1}, {1, 1}),
        make2d(2, 2, 1, {15, 17}, {5, 3}, {1, 1}, {2, 1}), make1d(3, 4, 1, 60, 3, 1, 1)}) {
    check_staged_search<float>(p);
    check_staged_search<double>(p);
  }
}

// The map is made from chunks of samples (a bounded spectrum): a batch of several chunks and a
// tail gives the sum of its halves' maps, and Parseval's total.
TEST(EnergyMap, BatchOfSeveralChunks) {
  const auto p = make2d(600, 8, 1, {24, 24}, {3, 3}, {1, 1}, {1, 1});  // 25 KB of bins a sample
  const auto half = make2d(300, 8, 1, {24, 24}, {3, 3}, {1, 1}, {1, 1});
  const auto x = smooth_input<float>(p, 9);
  const auto shape = dims_of(p).input_shape();
  const vec whole =
      blfft::energy_map<float>(p, tensor_view<const float>::contiguous(x.data(), shape));
  const auto hs = dims_of(half).input_shape();
  const vec a = blfft::energy_map<float>(half, tensor_view<const float>::contiguous(x.data(), hs));
  const vec b = blfft::energy_map<float>(
      half, tensor_view<const float>::contiguous(x.data() + x.size() / 2, hs));
  vec sum(a.size());
  for (size_t k = 0; k < a.size(); ++k) sum[k] = a[k] + b[k];
  EXPECT_LE(rel_l2(whole, sum), 1e-6);
  double sumsq = 0, total = 0;
  for (float v : x) sumsq += double(v) * double(v);
  for (double v : whole) total += v;
  const auto grid = ref_default_grid(p);
  EXPECT_NEAR(total, static_cast<double>(grid[0] * grid[1]) * sumsq, 1e-5 * total);
}

/// `v` scaled by `s`, in T.
template <class T>
std::vector<T> scaled(const vec& v, double s) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<T>(s * v[i]);
  return out;
}

/// The code of the blfft::error that `f` throws, or none.
template <class F>
std::optional<blfft::error_code> error_of(F&& f) {
  try {
    f();
  } catch (const blfft::error& e) {
    return e.code();
  }
  return std::nullopt;
}

// Review of #15: a float32 input whose spectrum overflows float32 (values near 1e37: finite, but
// no kept set can be chosen) is refused by the whole map; the staged search, whose total comes
// from Parseval in double, picked the largest compression from infinite band energies instead.
TEST(SelectByEnergy, StagedSearchRefusesWhatTheWholeMapRefuses) {
  const auto p = make2d(2, 3, 1, {12, 12}, {3, 3}, {1, 1}, {1, 1});
  const auto shape = dims_of(p).input_shape();
  for (double scale : {3e37, 1e35}) {
    SCOPED_TRACE(scale);
    const auto x = scaled<float>(random_vector(dims_of(p).input_size(), 5), scale);
    const auto xv = tensor_view<const float>::contiguous(x.data(), shape);
    for (double E : {0.5, 0.99}) {
      std::optional<blfft::energy_selection> want;
      const auto map_error =
          error_of([&] { want = blfft::select_by_energy(p, blfft::energy_map<float>(p, xv), E); });
      std::optional<blfft::energy_selection> got;
      const auto staged_error = error_of([&] { got = blfft::select_by_energy<float>(p, xv, E); });
      EXPECT_EQ(staged_error, map_error);
      if (want && got) {
        EXPECT_EQ(got->limits, want->limits);
      }
    }
    if (scale > 1e36) {  // the map itself is made: its total is what refuses
      EXPECT_EQ(error_of([&] { blfft::energy_map<float>(p, xv); }), std::nullopt);
    }
  }
}

// Review of #15: everything select_by_energy reports, energy_kept included, is the same bit for
// bit whatever the calls before it (the process-wide hints of the staged search, left by other
// inputs of the same geometry: other layers, other threads) and in whichever thread it runs.
template <class T>
void check_history_independence(const conv_params& p, double E) {
  const auto shape = dims_of(p).input_shape();
  const auto x = smooth_input<T>(p, 11);
  const auto xv = tensor_view<const T>::contiguous(x.data(), shape);
  std::vector<std::vector<T>> others;
  for (double s : {0.0, 1.0, 3.0})  // broadband noise added to a smooth input: other choices
    others.push_back(scaled<T>(random_vector(dims_of(p).input_size(), 3), s));
  for (auto& o : others)
    for (size_t i = 0; i < o.size(); ++i) o[i] += x[(i * 7) % x.size()];
  std::optional<blfft::energy_selection> first;
  for (const auto& o : others) {
    blfft::select_by_energy<T>(p, tensor_view<const T>::contiguous(o.data(), shape), E);
    const auto s = blfft::select_by_energy<T>(p, xv, E);
    if (!first) first = s;
    EXPECT_EQ(s.limits, first->limits);
    EXPECT_EQ(s.rate, first->rate);
    EXPECT_EQ(s.energy_kept, first->energy_kept);  // bitwise
  }
  // Two threads selecting on different inputs of the same geometry at once.
  std::vector<blfft::energy_selection> a(20), b(20);
  std::thread t1([&] {
    for (auto& s : a) s = blfft::select_by_energy<T>(p, xv, E);
  });
  std::thread t2([&] {
    for (auto& s : b)
      s = blfft::select_by_energy<T>(p, tensor_view<const T>::contiguous(others[2].data(), shape),
                                     E);
  });
  t1.join();
  t2.join();
  const auto other = blfft::select_by_energy(
      p, blfft::energy_map<T>(p, tensor_view<const T>::contiguous(others[2].data(), shape)), E);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].limits, first->limits);
    EXPECT_EQ(a[i].energy_kept, first->energy_kept);
    EXPECT_EQ(b[i].limits, other.limits);
  }
}

TEST(SelectByEnergy, ResultIndependentOfCallHistoryAndThreads) {
  for (const auto& p : {make2d(2, 1, 1, {20, 10}, {3, 3}, {1, 1}, {1, 1}),
                        make2d(3, 4, 1, {24, 20}, {3, 3}, {1, 1}, {1, 1}),
                        make1d(2, 2, 1, 7, 3, 1, 1), make1d(3, 2, 1, 15, 3, 1, 1)}) {
    for (double E : {0.5, 0.9, 0.95, 0.99}) {
      SCOPED_TRACE(name_of(p) + " E=" + std::to_string(E));
      check_history_independence<float>(p, E);
      check_history_independence<double>(p, E);
    }
  }
}

// Issue #15: the overload with a buffer hands the input's spectrum at the chosen kept set to the
// forward. It must be bit for bit what the forward plan of that set (the plan cache's, with the
// same options) makes, whichever band the staged search transformed first: the hint's band
// being the chosen one (the common case), or another one (the layer's last call landed
// elsewhere: the whole grid's band after a broadband input, a small band after a smooth one).
// forward_with_input_spectrum from it is then forward() on the input, bit for bit.
template <class T>
void check_hand_over(const conv_params& p, bool deterministic, bool fused = false) {
  blfft::plan_options o;
  o.deterministic = deterministic;
  if (fused) {  // both transforms on the matmul engine, the passes fused (fused_pass.hpp)
    o.method = blfft::transform_method::matmul;
    o.fusion = blfft::pass_fusion::on;
  }
  const auto shape = dims_of(p).input_shape();
  const auto smooth = smooth_input<T>(p, 13);
  const auto noise = scaled<T>(random_vector(dims_of(p).input_size(), 17), 1.0);
  const problem<T> pr(p, 19);  // weight and bias
  const int64_t whole = blfft::make_geometry(p, compression::none()).x_spectrum_size();
  // (input, E): a smooth input at E=0.9 selects a small band, noise at 0.99 a wide one (rate 0);
  // each one after the other moves the hint away from the other's choice.
  const std::vector<std::pair<const std::vector<T>*, double>> calls{
      {&smooth, 0.9}, {&smooth, 0.9}, {&noise, 0.99}, {&noise, 0.99},
      {&smooth, 0.9}, {&noise, 0.99}, {&smooth, 0.5}, {&smooth, 0.99}};
  std::vector<std::array<i64, 2>> chosen;
  for (const auto& [input, E] : calls) {
    SCOPED_TRACE(name_of(p) + " E=" + std::to_string(E) + (deterministic ? " det" : ""));
    const auto xv = tensor_view<const T>::contiguous(input->data(), shape);
    std::vector<T> buf(static_cast<size_t>(whole), std::numeric_limits<T>::quiet_NaN());
    const auto s = blfft::select_by_energy<T>(p, xv, E, o, {buf.data(), whole});
    const auto plain = blfft::select_by_energy<T>(p, xv, E, o);
    EXPECT_EQ(s.limits, plain.limits);  // the same choice, and the same report
    EXPECT_EQ(s.energy_kept, plain.energy_kept);
    EXPECT_EQ(s.limits, blfft::select_by_energy<T>(p, xv, E).limits);  // the documented overload's
    ASSERT_TRUE(s.x_spectrum);
    EXPECT_FALSE(plain.x_spectrum);
    chosen.push_back(s.limits);
    const auto plan = blfft::get_plan<T>(p, s.chosen, o);
    const auto& g = plan->geometry();
    std::vector<T> want(static_cast<size_t>(g.x_spectrum_size()));
    plan->input_spectrum(xv, {want.data(), g.x_spectrum_size()});
    ASSERT_EQ(0, std::memcmp(buf.data(), want.data(), want.size() * sizeof(T)));
    // The allocator overload: a buffer per band transformed, each of that band's size, the last
    // one holding the chosen set's spectrum.
    std::vector<std::vector<T>> bufs;
    const auto by_allocator = blfft::select_by_energy<T>(p, xv, E, o, [&](int64_t n) {
      bufs.emplace_back(static_cast<size_t>(n), std::numeric_limits<T>::quiet_NaN());
      return spectrum_view<T>(bufs.back().data(), n);
    });
    EXPECT_EQ(by_allocator.limits, s.limits);
    EXPECT_EQ(by_allocator.energy_kept, s.energy_kept);
    ASSERT_TRUE(by_allocator.x_spectrum);
    ASSERT_FALSE(bufs.empty());
    ASSERT_EQ(bufs.back().size(), want.size());
    EXPECT_EQ(0, std::memcmp(bufs.back().data(), want.data(), want.size() * sizeof(T)));
    // The forward from it against forward() on the input: output and weight spectrum.
    const int64_t ny = dims_of(p).output_size(), nw = g.w_spectrum_size();
    std::vector<T> y1(static_cast<size_t>(ny)), y2(y1.size()), ws1(static_cast<size_t>(nw)),
        ws2(ws1.size());
    const auto out = [&](std::vector<T>& y) {
      return tensor_view<T>::contiguous(y.data(), dims_of(p).output_shape());
    };
    plan->forward_with_input_spectrum({buf.data(), g.x_spectrum_size()}, pr.wv(), pr.bt.data(),
                                      out(y1), {ws1.data(), nw});
    std::vector<T> xs2(want.size());  // the spectrum forward() keeps: the same as handed over
    plan->forward(xv, pr.wv(), pr.bt.data(), out(y2), {xs2.data(), g.x_spectrum_size()},
                  {ws2.data(), nw});
    EXPECT_EQ(0, std::memcmp(xs2.data(), want.data(), want.size() * sizeof(T)));
    EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(T)));
    EXPECT_EQ(0, std::memcmp(ws1.data(), ws2.data(), ws1.size() * sizeof(T)));
    // Without a weight spectrum (a plan that mixes from the taps takes that path).
    plan->forward_with_input_spectrum({buf.data(), g.x_spectrum_size()}, pr.wv(), nullptr, out(y1));
    plan->forward(xv, pr.wv(), nullptr, out(y2));
    EXPECT_EQ(0, std::memcmp(y1.data(), y2.data(), y1.size() * sizeof(T)));
  }
  // The calls did move between a small band and a wide one (else the test tests less).
  EXPECT_NE(chosen[1], chosen[2]);
}

TEST(SelectByEnergy, HandsTheForwardPlansOwnSpectrumOver) {
  for (const auto& p : {make2d(3, 4, 2, {24, 20}, {3, 3}, {1, 1}, {1, 1}),
                        make2d(2, 3, 2, {15, 17}, {5, 3}, {2, 1}, {2, 1}),
                        make1d(3, 4, 2, 60, 3, 1, 1), make1d(2, 2, 3, 200, 5, 1, 2)}) {
    for (bool det : {false, true}) {
      check_hand_over<float>(p, det);
      check_hand_over<double>(p, det);
    }
  }
}

// The same with fused passes: forward() then runs the fused pipeline, which the forward from the
// handed spectrum must equal bit for bit too (plan.hpp: "the same bits as forward()").
TEST(SelectByEnergy, HandsOverWithFusedPasses) {
  for (const auto& p : {make2d(3, 4, 2, {24, 20}, {3, 3}, {1, 1}, {1, 1}),
                        make2d(2, 3, 2, {15, 17}, {5, 3}, {2, 1}, {2, 1})}) {
    for (bool det : {false, true}) {
      check_hand_over<float>(p, det, true);
      check_hand_over<double>(p, det, true);
    }
  }
}

TEST(SelectByEnergy, HandOverBufferAndForwardArgumentsChecked) {
  const auto p = make2d(2, 3, 2, {12, 12}, {3, 3}, {1, 1}, {1, 1});
  const problem<float> pr(p, 3);
  const int64_t whole = blfft::make_geometry(p, compression::none()).x_spectrum_size();
  std::vector<float> buf(static_cast<size_t>(whole));
  const auto message = [](auto&& f) {
    try {
      f();
    } catch (const blfft::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] {
              blfft::select_by_energy<float>(p, pr.xv(), 0.9, {}, {buf.data(), whole - 1});
            }).find("x_spectrum has"),
            std::string::npos);
  // An allocator's null buffer is named as such (it was reported as "gave n scalars for n").
  const auto null_buffer = message([&] {
    blfft::select_by_energy<float>(p, pr.xv(), 0.9, {},
                                   [](int64_t n) { return spectrum_view<float>(nullptr, n); });
  });
  EXPECT_NE(null_buffer.find("null buffer"), std::string::npos) << null_buffer;
  EXPECT_NE(message([&] {
              blfft::select_by_energy<float>(p, pr.xv(), 0.9, {}, [&](int64_t n) {
                return spectrum_view<float>(buf.data(), n - 1);
              });
            }).find("the spectrum allocator gave"),
            std::string::npos);
  const auto plan = blfft::get_plan<float>(p, compression::rate(0.5));
  std::vector<float> y(static_cast<size_t>(dims_of(p).output_size()));
  const auto yv = tensor_view<float>::contiguous(y.data(), dims_of(p).output_shape());
  const int64_t n = plan->geometry().x_spectrum_size();
  EXPECT_NE(message([&] {
              plan->forward_with_input_spectrum({buf.data(), n + 1}, pr.wv(), nullptr, yv);
            }).find("x_spectrum has"),
            std::string::npos);
  EXPECT_NE(message([&] {
              plan->forward_with_input_spectrum({nullptr, 0}, pr.wv(), nullptr, yv);
            }).find("x_spectrum"),
            std::string::npos);
}

TEST(SelectByEnergy, OneDimensional) {
  const auto p = make1d(1, 1, 1, 32, 1);  // grid 1 x 32, bins 17
  const double pi = std::acos(-1.0);
  vec x(32);
  for (int i = 0; i < 32; ++i) x[i] = 1.0 + std::cos(2 * pi * 3 * i / 32.0);
  const auto sel = blfft::select_by_energy<double>(p, in_view(x, {1, 1, 32}), 1.0);
  EXPECT_EQ(sel.limits, (std::array<i64, 2>{1, 4}));
  const auto sel2 = blfft::select_by_energy<double>(p, in_view(x, {1, 1, 32}), 0.5);
  // DC holds 32^2 = 1024 of 1024 + 2 * 16^2 = 1536: two thirds.
  EXPECT_EQ(sel2.limits, (std::array<i64, 2>{1, 1}));
  EXPECT_NEAR(sel2.energy_kept, 2.0 / 3.0, 1e-12);
}

}  // namespace
