#pragma once
// The backend's side of the cuFFT API boundary: how a transform of the pipeline (fft_desc) becomes
// a cuFFT plan (the arguments of cufftMakePlanMany64), how it is executed (cufftSetStream,
// cufftSetWorkArea, cufftExec*), and the cache of plans.
//
// Header-only and free of the CUDA runtime (cufft.h only), so that the same code runs in two
// builds: the GPU executor (device_executor.cpp) against the real libcufft, and the CPU
// emulation tests (tests/cpp/cuda_emulator.hpp) against the cuFFT stand-ins
// (tests/cpp/standin_cufft.cpp), which implement these cuFFT functions on the CPU from NVIDIA's
// documented semantics. What is tested without a GPU is therefore this translation itself, not a
// reference DFT that reads fft_desc.
//
// Plans are cached per (device, transform), not per stream: a plan is a pure function of the
// transform, and the stream and the work area are set on it right before each execution, under the
// plan's mutex (held from cufftSetStream to the return of cufftExec*, which only enqueues). Two
// streams never share a work area: each execution takes its own, stream-ordered, from the
// executor. (PyTorch's cuFFT plan cache works the same way.) Keying by device and geometry only
// also keeps the plan count bounded by the layers, and lets a plan made before CUDA graph capture
// serve the captured stream.

#include <cufft.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "cufft_error.hpp"
#include "fft_desc.hpp"

namespace blfft::cuda::detail {

/// The arguments of cufftMakePlanMany64 for one fft_desc: rank 1, advanced layout (non-null
/// inembed / onembed, so istride / idist / ostride / odist are honoured; for rank 1 the embed
/// values do not enter the addresses), r2c writing n/2+1 and c2r reading n/2+1 complex elements.
struct cufft_plan_args {
  int rank = 1;
  long long n = 1, inembed = 1, onembed = 1;
  long long istride = 1, idist = 1, ostride = 1, odist = 1, batch = 1;
  cufftType type = CUFFT_C2C;
};

inline cufft_plan_args cufft_args_of(const fft_desc& d) {
  cufft_plan_args a;
  const bool real_in = d.type == fft_type::r2c, real_out = d.type == fft_type::c2r;
  a.n = d.n;
  a.inembed = real_out ? d.n / 2 + 1 : d.n;
  a.onembed = real_in ? d.n / 2 + 1 : d.n;
  a.istride = d.istride;
  a.idist = d.idist;
  a.ostride = d.ostride;
  a.odist = d.odist;
  a.batch = d.batch;
  switch (d.type) {
    case fft_type::r2c: a.type = d.double_precision ? CUFFT_D2Z : CUFFT_R2C; break;
    case fft_type::c2r: a.type = d.double_precision ? CUFFT_Z2D : CUFFT_C2R; break;
    default: a.type = d.double_precision ? CUFFT_Z2Z : CUFFT_C2C; break;
  }
  return a;
}

/// Makes the cuFFT plan of d on an empty handle, auto-allocation off; returns the work-area size.
/// The plan's device must be current.
inline std::size_t make_cufft_plan(cufftHandle h, const fft_desc& d) {
  BLFFT_CUFFT_CHECK(cufftSetAutoAllocation(h, 0));
  cufft_plan_args a = cufft_args_of(d);
  std::size_t work = 0;
  BLFFT_CUFFT_CHECK(cufftMakePlanMany64(h, a.rank, &a.n, &a.inembed, a.istride, a.idist, &a.onembed,
                                        a.ostride, a.odist, a.type, a.batch, &work));
  return work;
}

/// Enqueues one execution of the plan of d (stream and work area already set on it).
inline void exec_cufft_plan(cufftHandle h, const fft_desc& d, const void* in, void* out) {
  void* i = const_cast<void*>(in);  // cuFFT's signatures take non-const input (c2r may clobber it)
  switch (d.type) {
    case fft_type::r2c:
      if (d.double_precision)
        BLFFT_CUFFT_CHECK(cufftExecD2Z(h, static_cast<cufftDoubleReal*>(i),
                                       static_cast<cufftDoubleComplex*>(out)));
      else
        BLFFT_CUFFT_CHECK(
            cufftExecR2C(h, static_cast<cufftReal*>(i), static_cast<cufftComplex*>(out)));
      break;
    case fft_type::c2r:
      if (d.double_precision)
        BLFFT_CUFFT_CHECK(cufftExecZ2D(h, static_cast<cufftDoubleComplex*>(i),
                                       static_cast<cufftDoubleReal*>(out)));
      else
        BLFFT_CUFFT_CHECK(
            cufftExecC2R(h, static_cast<cufftComplex*>(i), static_cast<cufftReal*>(out)));
      break;
    case fft_type::c2c_forward:
    case fft_type::c2c_inverse: {
      const int dir = d.type == fft_type::c2c_forward ? CUFFT_FORWARD : CUFFT_INVERSE;
      if (d.double_precision)
        BLFFT_CUFFT_CHECK(cufftExecZ2Z(h, static_cast<cufftDoubleComplex*>(i),
                                       static_cast<cufftDoubleComplex*>(out), dir));
      else
        BLFFT_CUFFT_CHECK(
            cufftExecC2C(h, static_cast<cufftComplex*>(i), static_cast<cufftComplex*>(out), dir));
      break;
    }
  }
}

/// Process-wide cuFFT plans per (device, transform). `DeviceGuard(device, nothrow)` makes a device
/// current for its lifetime (device_guard on a GPU, the emulated one in the tests): a plan is
/// destroyed with its device current.
template <class DeviceGuard>
class cufft_plan_cache {
 public:
  struct plan {
    std::mutex mutex;  // held from cufftSetStream to the return of cufftExec*
    cufftHandle handle = 0;
    bool created = false;
    std::size_t work = 0;
    int device = 0;
    plan() = default;
    plan(const plan&) = delete;
    plan& operator=(const plan&) = delete;
    ~plan() {
      if (!created) return;
      DeviceGuard guard(device, true);
      cufftDestroy(handle);  // errors ignored: destructors never throw
    }
  };

  /// The plan of d on `device` (which must be current), made on first use. When it is not cached
  /// yet and `may_create` is false, returns nullptr (the caller refuses, e.g. during capture).
  std::shared_ptr<plan> get(int device, const fft_desc& d, bool may_create = true) {
    const key k{device, d};
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(k);
    if (it != plans_.end()) return it->second;
    if (!may_create) return nullptr;
    if (plans_.size() >= trim_threshold) drop_idle_locked();
    auto p = std::make_shared<plan>();
    p->device = device;
    BLFFT_CUFFT_CHECK(cufftCreate(&p->handle));
    p->created = true;
    p->work = make_cufft_plan(p->handle, d);
    plans_.emplace(k, p);
    return p;
  }

  /// Drops the plans nobody is executing right now.
  void drop_idle() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    drop_idle_locked();
  }

  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return plans_.size();
  }

 private:
  static constexpr std::size_t trim_threshold = 512;
  struct key {
    int device;
    fft_desc desc;
    bool operator<(const key& o) const {
      if (device != o.device) return device < o.device;
      return desc < o.desc;
    }
  };
  void drop_idle_locked() noexcept {
    for (auto i = plans_.begin(); i != plans_.end();)
      i = i->second.use_count() == 1 ? plans_.erase(i) : std::next(i);
  }

  std::mutex mutex_;
  std::map<key, std::shared_ptr<plan>> plans_;
};

/// One execution of d on `stream`: the cached plan (made on first use, with `ex`'s device current),
/// a work area of the plan's size from the executor (`ex.make_temp<unsigned char>(bytes, stream)`,
/// stream-ordered, freed on the stream after the enqueue), cufftSetStream and cufftSetWorkArea,
/// then cufftExec*, all under the plan's mutex.
template <class Cache, class Exec>
void run_cufft(Cache& cache, const Exec& ex, int device, const fft_desc& d, const void* in,
               void* out, void* stream, bool may_create = true) {
  const auto p = cache.get(device, d, may_create);
  BLFFT_EXPECTS(p != nullptr, error_code::unsupported, "blfft: a new cuFFT plan (a ", d.n,
                "-point transform, batch ", d.batch,
                ") is needed while a CUDA graph is being captured; blfft makes its plans outside "
                "capture: run the layer once with the same shapes before capturing");
  std::lock_guard<std::mutex> lock(p->mutex);
  auto work = ex.template make_temp<unsigned char>(static_cast<int64_t>(p->work), stream);
  BLFFT_CUFFT_CHECK(cufftSetStream(p->handle, static_cast<cudaStream_t>(stream)));
  if (work.get()) BLFFT_CUFFT_CHECK(cufftSetWorkArea(p->handle, work.get()));
  exec_cufft_plan(p->handle, d, in, out);
}

}  // namespace blfft::cuda::detail
