// Consumer of an installed blfft::cuda: builds with a plain C++ compiler and runs with or without
// a GPU. Without a device, a plan must be refused with error_code::unsupported; with one, a plan
// is built (running it would need device memory, i.e. CUDA headers, which this test avoids).
// Exit status 0 on success.

#include <blfft/cuda.hpp>
#include <blfft/error.hpp>

#include <cstddef>
#include <cstdio>

int main() {
  if (!blfft::cuda::compiled()) {
    std::printf("FAIL: blfft::cuda::compiled() is false\n");
    return 1;
  }
  const int n = blfft::cuda::device_count();
  std::printf("blfft::cuda: %d device(s)\n", n);
  const auto p = blfft::conv_params::conv2d(2, 3, 4, {9, 7}, {3, 3}, {1, 1}, {1, 1});
  try {
    const blfft::cuda::plan<float> plan(p, blfft::compression::rate(0.5));
    if (n == 0) {
      std::printf("FAIL: a plan was built without a device\n");
      return 1;
    }
    std::printf("plan: %s\n", plan.geometry().describe().c_str());
  } catch (const blfft::error& e) {
    if (n == 0 && e.code() == blfft::error_code::unsupported) {
      std::printf("no device: plan refused as expected (%s)\n", e.what());
    } else {
      std::printf("FAIL: %s\n", e.what());
      return 1;
    }
  }
  // The allocator interface links from the installed library (exported symbols).
  struct null_allocator final : blfft::cuda::allocator {
    void* allocate(std::size_t, int, void*) override { return nullptr; }
    void deallocate(void*, std::size_t, int, void*) noexcept override {}
  } mine;
  {
    blfft::cuda::scoped_allocator use(mine);
    if (blfft::cuda::detail::scoped_allocator_or_null() != &mine) {
      std::printf("FAIL: scoped_allocator did not install the allocator\n");
      return 1;
    }
  }
  if (blfft::cuda::detail::scoped_allocator_or_null() != nullptr ||
      &blfft::cuda::default_allocator() == static_cast<blfft::cuda::allocator*>(&mine)) {
    std::printf("FAIL: scoped_allocator was not undone\n");
    return 1;
  }
  std::printf("PASSED\n");
  return 0;
}
