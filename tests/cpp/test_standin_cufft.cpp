// The cuFFT stand-ins (standin_cufft.cpp) on their own, against hand-computed DFTs: the layouts,
// sizes, normalisation and side effects that cuFFT documents, and the errors the stand-in reports.
// The emulation tests (test_cuda_emulation.cpp) then run the backend's own cuFFT calls on them.

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <vector>

#include "standin_cufft.hpp"
#include "standin_runtime.hpp"

namespace {

using cd = std::complex<double>;
const double r3 = std::sqrt(3.0);

/// A plan made with cufftMakePlanMany64 (advanced layout when the embeds are given).
struct made_plan {
  cufftHandle h = 0;
  std::size_t work = 0;
  cufftResult made = CUFFT_INTERNAL_ERROR;
  made_plan(int rank, std::vector<long long> n, long long* inembed, long long istride,
            long long idist, long long* onembed, long long ostride, long long odist, cufftType type,
            long long batch, bool auto_alloc = true) {
    EXPECT_EQ(cufftCreate(&h), CUFFT_SUCCESS);
    if (!auto_alloc) {
      EXPECT_EQ(cufftSetAutoAllocation(h, 0), CUFFT_SUCCESS);
    }
    made = cufftMakePlanMany64(h, rank, n.data(), inembed, istride, idist, onembed, ostride, odist,
                               type, batch, &work);
  }
  ~made_plan() { cufftDestroy(h); }
};

template <class T>
void expect_near(T got, double want, double tol = 1e-5) {
  EXPECT_NEAR(static_cast<double>(got), want, tol);
}

TEST(StandinCufft, C2CForwardAndInverseAreUnnormalised) {
  // DFT of [1, 2, 3, 4]: [10, -2+2i, -2, -2-2i]; the inverse of that is 4 * [1, 2, 3, 4].
  long long emb = 4;
  made_plan p(1, {4}, &emb, 1, 4, &emb, 1, 4, CUFFT_C2C, 1);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  std::vector<float> x{1, 0, 2, 0, 3, 0, 4, 0}, y(8, -1);
  ASSERT_EQ(cufftExecC2C(p.h, reinterpret_cast<cufftComplex*>(x.data()),
                         reinterpret_cast<cufftComplex*>(y.data()), CUFFT_FORWARD),
            CUFFT_SUCCESS);
  const double want[8] = {10, 0, -2, 2, -2, 0, -2, -2};
  for (int i = 0; i < 8; ++i) expect_near(y[i], want[i]);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(x[2 * i], i + 1) << "c2c must not modify its input";
  // in place, inverse
  ASSERT_EQ(cufftExecC2C(p.h, reinterpret_cast<cufftComplex*>(y.data()),
                         reinterpret_cast<cufftComplex*>(y.data()), CUFFT_INVERSE),
            CUFFT_SUCCESS);
  for (int i = 0; i < 4; ++i) {
    expect_near(y[2 * i], 4.0 * (i + 1));
    expect_near(y[2 * i + 1], 0.0);
  }
}

TEST(StandinCufft, R2CWritesHalfPlusOneBins) {
  // n = 4: [1, 2, 3, 4] -> [10, -2+2i, -2] (3 = 4/2+1 outputs); n = 5, a unit impulse at 1:
  // X[k] = exp(-2 pi i k / 5) for k = 0, 1, 2 (3 = 5/2+1 outputs). The slot after the last bin
  // stays untouched.
  long long ie = 4, oe = 3;
  made_plan p(1, {4}, &ie, 1, 4, &oe, 1, 3, CUFFT_D2Z, 1);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  std::vector<double> x{1, 2, 3, 4}, y(8, 99);
  ASSERT_EQ(cufftExecD2Z(p.h, x.data(), reinterpret_cast<cufftDoubleComplex*>(y.data())),
            CUFFT_SUCCESS);
  const double want[6] = {10, 0, -2, 2, -2, 0};
  for (int i = 0; i < 6; ++i) expect_near(y[i], want[i], 1e-12);
  EXPECT_EQ(y[6], 99);
  EXPECT_EQ(y[7], 99);

  long long ie5 = 5, oe5 = 3;
  made_plan q(1, {5}, &ie5, 1, 5, &oe5, 1, 3, CUFFT_R2C, 1);
  ASSERT_EQ(q.made, CUFFT_SUCCESS);
  std::vector<float> u{0, 1, 0, 0, 0}, v(6, 99);
  ASSERT_EQ(cufftExecR2C(q.h, u.data(), reinterpret_cast<cufftComplex*>(v.data())), CUFFT_SUCCESS);
  for (int k = 0; k < 3; ++k) {
    expect_near(v[2 * k], std::cos(-2 * M_PI * k / 5));
    expect_near(v[2 * k + 1], std::sin(-2 * M_PI * k / 5));
  }
}

TEST(StandinCufft, C2ROverwritesItsInputOutOfPlace) {
  // The half spectrum of [1, 2, 3, 4] back to 4 * [1, 2, 3, 4]; the input is garbage afterwards
  // (cuFFT may overwrite the input of an out-of-place C2R); in place it is the output.
  long long ie = 3, oe = 4;
  made_plan p(1, {4}, &ie, 1, 3, &oe, 1, 4, CUFFT_C2R, 1);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  std::vector<float> X{10, 0, -2, 2, -2, 0}, y(4, -1);
  ASSERT_EQ(cufftExecC2R(p.h, reinterpret_cast<cufftComplex*>(X.data()), y.data()), CUFFT_SUCCESS);
  for (int i = 0; i < 4; ++i) expect_near(y[i], 4.0 * (i + 1));
  for (float v : X) EXPECT_TRUE(std::isnan(v)) << "the C2R input was not overwritten";

  // Odd length, double: the half spectrum of [1, 0, 0, 0, 0] is [1, 1, 1]; C2R gives 5 * x.
  long long ie5 = 3, oe5 = 5;
  made_plan q(1, {5}, &ie5, 1, 3, &oe5, 1, 5, CUFFT_Z2D, 1);
  ASSERT_EQ(q.made, CUFFT_SUCCESS);
  std::vector<double> H{1, 0, 1, 0, 1, 0}, z(5, -1);
  ASSERT_EQ(cufftExecZ2D(q.h, reinterpret_cast<cufftDoubleComplex*>(H.data()), z.data()),
            CUFFT_SUCCESS);
  for (int i = 0; i < 5; ++i) expect_near(z[i], i == 0 ? 5.0 : 0.0, 1e-12);
  EXPECT_EQ(blfft_standin::cufft_stats().non_hermitian, 0);
}

TEST(StandinCufft, C2RCountsNonHermitianInput) {
  // An imaginary DC part is not the spectrum of a real signal: counted, as cuFFT's result is
  // unspecified there.
  long long ie = 3, oe = 4;
  made_plan p(1, {4}, &ie, 1, 3, &oe, 1, 4, CUFFT_Z2D, 1);
  std::vector<double> X{10, 5, -2, 2, -2, 0}, y(4);
  const auto before = blfft_standin::cufft_stats().non_hermitian;
  ASSERT_EQ(cufftExecZ2D(p.h, reinterpret_cast<cufftDoubleComplex*>(X.data()), y.data()),
            CUFFT_SUCCESS);
  EXPECT_EQ(blfft_standin::cufft_stats().non_hermitian, before + 1);
}

TEST(StandinCufft, AdvancedLayout1DStridesAndDistances) {
  // Two transforms of length 3: element i of transform b at in[b * 7 + i * 2], written at
  // out[b * 1 + k * 4] (interleaved batches). Every other slot keeps its sentinel.
  long long ie = 3, oe = 3;
  made_plan p(1, {3}, &ie, 2, 7, &oe, 4, 1, CUFFT_Z2Z, 2);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  const double s = -5;
  std::vector<cd> in(14, cd(s, s)), out(12, cd(s, s));
  const cd x[2][3] = {{1, 2, 3}, {cd(0, 1), 0, 0}};
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 3; ++i) in[b * 7 + i * 2] = x[b][i];
  ASSERT_EQ(cufftExecZ2Z(p.h, reinterpret_cast<cufftDoubleComplex*>(in.data()),
                         reinterpret_cast<cufftDoubleComplex*>(out.data()), CUFFT_FORWARD),
            CUFFT_SUCCESS);
  // [1, 2, 3] -> [6, -1.5 + (sqrt3/2) i, -1.5 - (sqrt3/2) i]; [i, 0, 0] -> [i, i, i]
  const cd want[2][3] = {{6, cd(-1.5, r3 / 2), cd(-1.5, -r3 / 2)}, {cd(0, 1), cd(0, 1), cd(0, 1)}};
  for (int b = 0; b < 2; ++b)
    for (int k = 0; k < 3; ++k) EXPECT_LT(std::abs(out[b + k * 4] - want[b][k]), 1e-12);
  for (int j = 0; j < 12; ++j) {
    if (j % 4 > 1) {
      EXPECT_EQ(out[j], cd(s, s)) << "slot " << j << " written";
    }
  }
}

TEST(StandinCufft, AdvancedLayout2DWithEmbed) {
  // The documented 2D formula input[b * idist + ((x * inembed[1] + y) * istride)]: a 2 x 3
  // transform stored in rows of 4 (one padding element per row), idist 8, two batches; the
  // second batch is twice the first. x = [[1, 2, 3], [4, 5, 6]]:
  //   X[0][0] = 21, X[0][1] = -3 + sqrt3 i, X[0][2] = -3 - sqrt3 i, X[1][0] = -9, X[1][1..2] = 0.
  // R2C: 2 x (3/2+1) = 2 x 2 outputs per batch, stored densely (onembed {2, 2}).
  long long ie[2] = {2, 4}, oe[2] = {2, 2};
  made_plan p(2, {2, 3}, ie, 1, 8, oe, 1, 4, CUFFT_D2Z, 2);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  std::vector<double> in(16, 1e6);  // the padding must not be read
  for (int b = 0; b < 2; ++b)
    for (int x = 0; x < 2; ++x)
      for (int y = 0; y < 3; ++y) in[b * 8 + (x * 4 + y)] = (b + 1) * (1 + 3 * x + y);
  std::vector<cd> out(8, cd(-7, -7));
  ASSERT_EQ(cufftExecD2Z(p.h, in.data(), reinterpret_cast<cufftDoubleComplex*>(out.data())),
            CUFFT_SUCCESS);
  const cd want[4] = {21, cd(-3, r3), -9, 0};
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 4; ++i) EXPECT_LT(std::abs(out[b * 4 + i] - (b + 1.0) * want[i]), 1e-12);

  // C2C of the same data, complex, with an output stride of 2 (onembed {2, 3}).
  long long ce[2] = {2, 4}, co[2] = {2, 3};
  made_plan c(2, {2, 3}, ce, 1, 8, co, 2, 12, CUFFT_Z2Z, 1);
  ASSERT_EQ(c.made, CUFFT_SUCCESS);
  std::vector<cd> cin(8, cd(1e6, 1e6)), cout(12, cd(-7, -7));
  for (int x = 0; x < 2; ++x)
    for (int y = 0; y < 3; ++y) cin[x * 4 + y] = 1 + 3 * x + y;
  ASSERT_EQ(cufftExecZ2Z(c.h, reinterpret_cast<cufftDoubleComplex*>(cin.data()),
                         reinterpret_cast<cufftDoubleComplex*>(cout.data()), CUFFT_FORWARD),
            CUFFT_SUCCESS);
  const cd full[6] = {21, cd(-3, r3), cd(-3, -r3), -9, 0, 0};
  for (int i = 0; i < 6; ++i) {
    EXPECT_LT(std::abs(cout[2 * i] - full[i]), 1e-12) << i;
    EXPECT_EQ(cout[2 * i + 1], cd(-7, -7));
  }
}

TEST(StandinCufft, NullEmbedMeansBasicLayoutAndIgnoresStrides) {
  // inembed = NULL: the basic (dense) layout; the absurd strides passed are ignored.
  made_plan p(1, {4}, nullptr, 99, 99, nullptr, 99, 99, CUFFT_R2C, 2);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  std::vector<float> x{1, 2, 3, 4, 1, 1, 1, 1}, y(12, 7);
  ASSERT_EQ(cufftExecR2C(p.h, x.data(), reinterpret_cast<cufftComplex*>(y.data())), CUFFT_SUCCESS);
  const double want[12] = {10, 0, -2, 2, -2, 0, 4, 0, 0, 0, 0, 0};
  for (int i = 0; i < 12; ++i) expect_near(y[i], want[i]);
}

TEST(StandinCufft, WorkAreaIsTheCallersAndIsUsed) {
  long long e = 8;
  made_plan p(1, {8}, &e, 1, 8, &e, 1, 8, CUFFT_C2C, 3, /*auto_alloc=*/false);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  EXPECT_GT(p.work, 0u) << "the stand-in always asks for a work area";
  std::vector<float> x(48, 1), y(48);
  // without a work area: refused
  EXPECT_EQ(cufftExecC2C(p.h, reinterpret_cast<cufftComplex*>(x.data()),
                         reinterpret_cast<cufftComplex*>(y.data()), CUFFT_FORWARD),
            CUFFT_NO_WORKSPACE);
  std::vector<unsigned char> work(p.work + 16, 0x11);
  ASSERT_EQ(cufftSetWorkArea(p.h, work.data()), CUFFT_SUCCESS);
  ASSERT_EQ(cufftExecC2C(p.h, reinterpret_cast<cufftComplex*>(x.data()),
                         reinterpret_cast<cufftComplex*>(y.data()), CUFFT_FORWARD),
            CUFFT_SUCCESS);
  for (std::size_t i = 0; i < p.work; ++i) ASSERT_NE(work[i], 0x11) << "work byte " << i;
  for (std::size_t i = p.work; i < work.size(); ++i) EXPECT_EQ(work[i], 0x11) << "past the end";
  expect_near(y[0], 8.0);
  blfft_standin::cufft_plan_info info;
  ASSERT_TRUE(blfft_standin::cufft_plan_info_of(p.h, &info));
  EXPECT_FALSE(info.auto_allocation);
  EXPECT_EQ(info.work_area, work.data());
}

TEST(StandinCufft, StreamAndDevice) {
  long long e = 4;
  blfft_standin::device_scope on1(1);
  made_plan p(1, {4}, &e, 1, 4, &e, 1, 4, CUFFT_C2C, 1);
  ASSERT_EQ(p.made, CUFFT_SUCCESS);
  blfft_standin::cufft_plan_info info;
  ASSERT_TRUE(blfft_standin::cufft_plan_info_of(p.h, &info));
  EXPECT_EQ(info.device, 1);
  std::vector<float> x(8, 1), y(8);
  auto run = [&] {
    return cufftExecC2C(p.h, reinterpret_cast<cufftComplex*>(x.data()),
                        reinterpret_cast<cufftComplex*>(y.data()), CUFFT_FORWARD);
  };
  int s0 = 0, s1 = 0;
  blfft_standin::register_stream(&s0, 0);
  blfft_standin::register_stream(&s1, 1);
  ASSERT_EQ(cufftSetStream(p.h, reinterpret_cast<cudaStream_t>(&s1)), CUFFT_SUCCESS);
  EXPECT_EQ(run(), CUFFT_SUCCESS);
  ASSERT_TRUE(blfft_standin::cufft_plan_info_of(p.h, &info));
  EXPECT_EQ(info.stream, reinterpret_cast<cudaStream_t>(&s1));
  ASSERT_EQ(cufftSetStream(p.h, reinterpret_cast<cudaStream_t>(&s0)), CUFFT_SUCCESS);
  EXPECT_EQ(run(), CUFFT_INVALID_VALUE) << "a stream of device 0 for a plan of device 1";
  ASSERT_EQ(cufftSetStream(p.h, nullptr), CUFFT_SUCCESS);
  {
    blfft_standin::device_scope on0(0);
    EXPECT_EQ(run(), CUFFT_INVALID_DEVICE) << "executed with another device current";
  }
  EXPECT_EQ(run(), CUFFT_SUCCESS);
  blfft_standin::unregister_stream(&s0);
  blfft_standin::unregister_stream(&s1);
}

TEST(StandinCufft, RefusesWhatCufftRefuses) {
  long long e = 4, small = 2;
  std::size_t work = 0;
  cufftHandle h;
  ASSERT_EQ(cufftCreate(&h), CUFFT_SUCCESS);
  long long n = 4, zero = 0;
  EXPECT_EQ(cufftMakePlanMany64(h, 4, &n, &e, 1, 4, &e, 1, 4, CUFFT_C2C, 1, &work),
            CUFFT_INVALID_SIZE);
  EXPECT_EQ(cufftMakePlanMany64(h, 1, &zero, &e, 1, 4, &e, 1, 4, CUFFT_C2C, 1, &work),
            CUFFT_INVALID_SIZE);
  EXPECT_EQ(cufftMakePlanMany64(h, 1, &n, &e, 1, 4, &e, 1, 4, CUFFT_C2C, 0, &work),
            CUFFT_INVALID_SIZE);
  EXPECT_EQ(cufftMakePlanMany64(h, 1, &n, &e, 1, 4, &e, 1, 4, static_cast<cufftType>(7), 1, &work),
            CUFFT_INVALID_TYPE);
  long long ie2[2] = {2, small}, oe2[2] = {2, 4}, n2[2] = {2, 4};
  EXPECT_EQ(cufftMakePlanMany64(h, 2, n2, ie2, 1, 8, oe2, 1, 8, CUFFT_C2C, 1, &work),
            CUFFT_INVALID_VALUE)
      << "inembed[1] smaller than n[1]";
  // 64-bit distances are accepted (nothing is addressed at plan time).
  ASSERT_EQ(cufftMakePlanMany64(h, 1, &n, &e, 1, 1ll << 33, &e, 1, 4, CUFFT_C2C, 1, &work),
            CUFFT_SUCCESS);
  EXPECT_EQ(cufftMakePlanMany64(h, 1, &n, &e, 1, 4, &e, 1, 4, CUFFT_C2C, 1, &work),
            CUFFT_INVALID_PLAN)
      << "a plan is made once";
  std::vector<float> x(8), y(8);
  EXPECT_EQ(cufftExecR2C(h, x.data(), reinterpret_cast<cufftComplex*>(y.data())),
            CUFFT_INVALID_TYPE)
      << "exec of another type";
  EXPECT_EQ(cufftExecC2C(h, reinterpret_cast<cufftComplex*>(x.data()),
                         reinterpret_cast<cufftComplex*>(y.data()), 0),
            CUFFT_INVALID_VALUE)
      << "direction";
  EXPECT_EQ(cufftExecC2C(h, reinterpret_cast<cufftComplex*>(x.data()),
                         reinterpret_cast<cufftComplex*>(x.data() + 2), CUFFT_FORWARD),
            CUFFT_INVALID_VALUE)
      << "overlapping out-of-place buffers";
  EXPECT_EQ(cufftDestroy(h), CUFFT_SUCCESS);
  EXPECT_EQ(cufftDestroy(h), CUFFT_INVALID_PLAN);
  EXPECT_EQ(cufftSetStream(h, nullptr), CUFFT_INVALID_PLAN);
  EXPECT_EQ(cufftExecC2C(h, reinterpret_cast<cufftComplex*>(x.data()),
                         reinterpret_cast<cufftComplex*>(y.data()), CUFFT_FORWARD),
            CUFFT_INVALID_PLAN);
}

TEST(StandinCufft, RoundTripOfARandomBatch) {
  // R2C then C2R with strided batches gives n * x (n = 6, even, and 7, odd).
  for (long long n : {6ll, 7ll}) {
    const long long h = n / 2 + 1, B = 3;
    long long ie = n, he = h;
    made_plan f(1, {n}, &ie, 1, n + 1, &he, 1, h, CUFFT_D2Z, B);
    made_plan g(1, {n}, &he, 1, h, &ie, 1, n + 1, CUFFT_Z2D, B);
    std::vector<double> x(static_cast<size_t>(B * (n + 1))), y(x.size(), 0);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(1.7 * i) + 0.1 * i;
    std::vector<cd> X(static_cast<size_t>(B * h));
    ASSERT_EQ(cufftExecD2Z(f.h, x.data(), reinterpret_cast<cufftDoubleComplex*>(X.data())),
              CUFFT_SUCCESS);
    ASSERT_EQ(cufftExecZ2D(g.h, reinterpret_cast<cufftDoubleComplex*>(X.data()), y.data()),
              CUFFT_SUCCESS);
    for (long long b = 0; b < B; ++b)
      for (long long i = 0; i < n; ++i)
        EXPECT_NEAR(y[b * (n + 1) + i], n * x[b * (n + 1) + i], 1e-10);
  }
}

}  // namespace
