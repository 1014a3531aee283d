// The process-wide plan cache (FINUFFT threadsafe_execute.cpp style): sizes and clearing, and a
// thread hammer: many threads asking for plans of the same and different geometries, rates and
// dtypes while running forward, one thread clearing the cache now and then; every result must
// equal the single-threaded one.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "oracles.hpp"

namespace {

using namespace bt;

TEST(PlanCache, SizeAndClear) {
  blfft::clear_plan_cache();
  EXPECT_EQ(blfft::plan_cache_size(), 0u);
  const auto p = make2d(1, 2, 3, {8, 8}, {3, 3}, {1, 1}, {1, 1});
  auto a = blfft::get_plan<float>(p, compression::rate(0.5));
  EXPECT_EQ(blfft::plan_cache_size(), 1u);
  auto b = blfft::get_plan<float>(p, compression::rate(0.5));
  EXPECT_EQ(a.get(), b.get()) << "same geometry, rate and dtype must share one plan";
  EXPECT_EQ(blfft::plan_cache_size(), 1u);
  auto c = blfft::get_plan<double>(p, compression::rate(0.5));
  EXPECT_EQ(blfft::plan_cache_size(), 2u);
  auto d = blfft::get_plan<float>(p, compression::rate(0.9));
  EXPECT_NE(a.get(), d.get());
  EXPECT_EQ(blfft::plan_cache_size(), 3u);
  auto e = blfft::get_plan<float>(make2d(1, 2, 3, {9, 8}, {3, 3}, {1, 1}, {1, 1}),
                                  compression::rate(0.5));
  EXPECT_EQ(blfft::plan_cache_size(), 4u);
  // Options are part of the key.
  auto f = blfft::get_plan<float>(p, compression::rate(0.5), options(transform_method::fft));
  auto g = blfft::get_plan<float>(p, compression::rate(0.5), options(transform_method::matmul));
  EXPECT_NE(f.get(), g.get());
  // (automatic may or may not share its entry with the method it resolves to: 5 or 6.)
  const std::size_t n = blfft::plan_cache_size();
  EXPECT_GE(n, 5u);
  EXPECT_LE(n, 6u);
  EXPECT_EQ(
      f.get(),
      blfft::get_plan<float>(p, compression::rate(0.5), options(transform_method::fft)).get());
  EXPECT_EQ(blfft::plan_cache_size(), n);
  blfft::clear_plan_cache();
  EXPECT_EQ(blfft::plan_cache_size(), 0u);

  // Plans handed out before clearing stay valid.
  problem<float> pr(p, 1);
  auto y1 = nan_filled<float>(pr.d.output_size());
  a->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y1, pr.d.output_shape()));
  auto a2 = blfft::get_plan<float>(p, compression::rate(0.5));
  EXPECT_EQ(blfft::plan_cache_size(), 1u);
  auto y2 = nan_filled<float>(pr.d.output_size());
  a2->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y2, pr.d.output_shape()));
  EXPECT_EQ(y1, y2);
  blfft::clear_plan_cache();
}

// One job of the hammer: a geometry, a rate and a dtype, with its inputs and expected output.
struct job {
  conv_params p;
  double rate;
  bool dbl;
  transform_method m;
  problem<float> pf;
  problem<double> pd;
  std::vector<float> yf;
  std::vector<double> yd;
  job(const conv_params& prm, double r, bool d, transform_method tm, uint64_t seed)
      : p(prm), rate(r), dbl(d), m(tm), pf(prm, seed), pd(prm, seed) {}

  /// Runs forward through the cache and returns true if it equals `expected` (or fills it).
  bool run(bool fill) {
    if (dbl) {
      auto pl = blfft::get_plan<double>(p, compression::rate(rate), options(m));
      std::vector<double> y(static_cast<size_t>(pd.d.output_size()));
      std::vector<double> xs(pl->geometry().x_spectrum_size());
      std::vector<double> ws(pl->geometry().w_spectrum_size());
      pl->forward(pd.xv(), pd.wv(), pd.bt.data(), out_view(y, pd.d.output_shape()), spec(xs),
                  spec(ws));
      if (fill) yd = y;
      return y == yd;
    }
    auto pl = blfft::get_plan<float>(p, compression::rate(rate), options(m));
    std::vector<float> y(static_cast<size_t>(pf.d.output_size()));
    pl->forward(pf.xv(), pf.wv(), pf.bt.data(), out_view(y, pf.d.output_shape()));
    if (fill) yf = y;
    return y == yf;
  }
};

TEST(PlanCache, ThreadHammer) {
  blfft::clear_plan_cache();
  const std::vector<conv_params> geos = {
      make2d(1, 2, 3, {8, 8}, {3, 3}, {1, 1}, {1, 1}),
      make2d(2, 2, 2, {7, 9}, {3, 2}, {2, 1}, {1, 0}),
      make2d(1, 4, 4, {6, 6}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, 4),
      make1d(2, 3, 2, 20, 3, 1, 1),
      make1d(1, 2, 4, 15, 4, 2, 2, 2, 2),
  };
  std::vector<job> jobs;
  uint64_t seed = 1;
  for (const auto& p : geos)
    for (double r : {0.0, 0.5, 0.9})
      for (bool dbl : {false, true})
        for (auto m : methods()) jobs.emplace_back(p, r, dbl, m, seed++);

  // Single-threaded reference results.
  for (auto& j : jobs) ASSERT_TRUE(j.run(true));
  const std::size_t cached = blfft::plan_cache_size();
  EXPECT_EQ(cached, jobs.size());
  blfft::clear_plan_cache();

  constexpr int kThreads = 8, kIters = 150;
  std::atomic<int> mismatches{0}, exceptions{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int it = 0; it < kIters; ++it) {
        // Threads start on the same job (same geometry at the same time), then diverge.
        const size_t k = (it < 10) ? static_cast<size_t>(it) % jobs.size()
                                   : (static_cast<size_t>(t) * 7 + it * 13) % jobs.size();
        try {
          if (!jobs[k].run(false)) ++mismatches;
        } catch (...) {
          ++exceptions;
        }
      }
    });
  // A thread that keeps clearing the cache, so plans get rebuilt concurrently.
  std::thread clearer([&] {
    while (!stop.load()) {
      blfft::clear_plan_cache();
      (void)blfft::plan_cache_size();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  for (auto& th : threads) th.join();
  stop = true;
  clearer.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(exceptions.load(), 0);

  // The cache is still coherent afterwards.
  blfft::clear_plan_cache();
  EXPECT_EQ(blfft::plan_cache_size(), 0u);
  for (auto& j : jobs) EXPECT_TRUE(j.run(false));
  EXPECT_EQ(blfft::plan_cache_size(), jobs.size());
  blfft::clear_plan_cache();
}

// One plan shared by many threads at once (every method is const and thread-safe).
TEST(PlanCache, OnePlanManyThreads) {
  const auto p = make2d(2, 3, 4, {10, 9}, {3, 3}, {1, 2}, {1, 1});
  problem<double> pr(p, 7);
  auto pl = blfft::get_plan<double>(p, compression::rate(0.5));
  const auto& geo = pl->geometry();
  std::vector<double> xs(geo.x_spectrum_size()), ws(geo.w_spectrum_size());
  std::vector<double> y0(pr.d.output_size()), dx0(pr.d.input_size()), dw0(pr.d.weight_size());
  pl->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y0, pr.d.output_shape()), spec(xs),
              spec(ws));
  pl->input_grad(pr.gv(), spec(ws), out_view(dx0, pr.d.input_shape()));
  pl->weight_grad(pr.gv(), spec(xs), out_view(dw0, pr.d.weight_shape()));

  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int it = 0; it < 40; ++it) {
        std::vector<double> xs1(xs.size()), ws1(ws.size());
        std::vector<double> y(y0.size()), dx(dx0.size()), dw(dw0.size());
        pl->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, pr.d.output_shape()), spec(xs1),
                    spec(ws1));
        auto dxv = out_view(dx, pr.d.input_shape());
        auto dwv = out_view(dw, pr.d.weight_shape());
        pl->backward(pr.gv(), spec(xs1), spec(ws1), &dxv, &dwv, nullptr);
        if (y != y0 || dx != dx0 || dw != dw0) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(PlanCache, NumThreadsSetting) {
  const int before = blfft::get_num_threads();
  EXPECT_GE(before, 1);
  const auto p = make2d(4, 3, 4, {10, 9}, {3, 3}, {1, 2}, {1, 1});
  problem<double> pr(p, 9);
  const vec ref = direct_forward(p, pr.x, pr.w, pr.b.data());
  for (int n : {1, 2, 3}) {
    blfft::set_num_threads(n);
    EXPECT_EQ(blfft::get_num_threads(), n);
    auto pl = blfft::get_plan<double>(p, compression::none());
    auto y = nan_filled<double>(pr.d.output_size());
    pl->forward(pr.xv(), pr.wv(), pr.bt.data(), out_view(y, pr.d.output_shape()));
    EXPECT_TRUE(
        rel_close("forward with " + std::to_string(n) + " threads", y, ref, tol<double>::direct));
  }
  blfft::set_num_threads(before);
}

}  // namespace
