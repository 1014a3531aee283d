// blfft._cuda: the Python binding of the CUDA backend (blfft::cuda, include/blfft/cuda.hpp).
//
// A module of its own (docs/design.md 2), so that the CPU path (blfft._core) never depends on it:
// it is built only where the CUDA backend is (nvcc and cuFFT found), links the CUDA runtime
// statically and finds cuFFT through its RPATH, and imports on machines without a GPU or a
// driver (then device_count() is 0 and every compute call raises blfft.BlfftError, code
// "unsupported").
//
// The same entry points as blfft._core, with the same signatures (python/src/entry_points.hpp),
// on CUDA tensors; `stream` is the cudaStream_t to enqueue on, as an int
// (torch.cuda.current_stream(device).cuda_stream; 0 is the legacy default stream), passed
// explicitly by the caller on every call. Every tensor of a call must be device memory of one and
// the same GPU; that GPU runs the call. Outputs and saved spectra are allocated by the caller
// (torch.empty on the device); nothing here synchronises, except select_by_energy / energy_map,
// which return host data. The GIL is released while the backend enqueues its work. A call's
// temporaries come from the allocator registered with set_allocator (blfft._backends registers
// torch's caching allocator), else from the backend's default (cudaMallocAsync). Conversion of
// tensors, checks and error mapping: dlpack_adaptor.hpp, shared with blfft._core. The geometry
// types (ConvParams, Compression, EnergySelection) are blfft._core's: this module imports it and
// takes and returns its objects.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "blfft/blfft.hpp"
#include "blfft/cuda.hpp"
#include "dlpack_adaptor.hpp"
#include "entry_points.hpp"

namespace py = pybind11;
using namespace blfft_py;

#ifndef BLFFT_PY_CUDA_ARCHITECTURES
#define BLFFT_PY_CUDA_ARCHITECTURES ""
#endif

namespace {

bool is_cuda_memory(int32_t device_type) {
  return device_type == dl::device_cuda || device_type == dl::device_cuda_managed;
}

[[noreturn]] void refuse_device(const char* name, const dl::device& d) {
  fail(error_code::type_mismatch,
       std::string(name) + " is on " + device_name(d) +
           ": blfft._cuda takes CUDA tensors (device memory of one GPU); tensors on the CPU go "
           "to blfft._core");
}

/// The device policy of this module: every tensor of a call is CUDA memory of the device of the
/// first tensor checked (which is then the device the call runs on).
class one_cuda_device {
 public:
  void operator()(const imported& a) {
    const auto& d = a.raw().dev;
    if (!is_cuda_memory(d.device_type)) refuse_device(a.name(), d);
    if (first_ == nullptr) {
      first_ = &a;
      return;
    }
    const auto& f = first_->raw().dev;
    if (d.device_id != f.device_id) {
      fail(error_code::type_mismatch, std::string(a.name()) + " is on " + device_name(d) + " but " +
                                          first_->name() + " is on " + device_name(f) +
                                          ": all tensors of a call must be on "
                                          "one device");
    }
  }
  int device() const { return first_ ? first_->raw().dev.device_id : 0; }

 private:
  const imported* first_ = nullptr;
};

/// The `stream` argument of obj.__dlpack__ for an object that is not a capsule yet (DLPack's
/// stream protocol: 1 means the legacy default stream, whose handle is 0), after checking with
/// __dlpack_device__ that it is a CUDA tensor at all (so that a host tensor gets this module's
/// error, naming the argument, rather than its producer's reaction to a stream). None for
/// capsules: they were exported already (torch.utils.dlpack.to_dlpack makes no stream promise;
/// blfft's Python layer enqueues on the tensors' current stream, so none is needed).
py::object consumer_stream(const py::handle& obj, const char* name, std::uintptr_t stream) {
  if (PyCapsule_CheckExact(obj.ptr()) || !py::hasattr(obj, "__dlpack__")) return py::none();
  if (py::hasattr(obj, "__dlpack_device__")) {
    const auto d = obj.attr("__dlpack_device__")().cast<std::pair<int32_t, int32_t>>();
    if (!is_cuda_memory(d.first)) refuse_device(name, dl::device{d.first, d.second});
  }
  return py::int_(stream == 0 ? std::uintptr_t(1) : stream);
}

void* as_stream(std::uintptr_t s) {
  return reinterpret_cast<void*>(s);
}

// ---- temporaries from a Python allocator (torch's caching allocator) --------------------------

/// alloc(nbytes, device, stream) -> address (int) and free(address), as
/// torch.cuda.caching_allocator_alloc / caching_allocator_delete.
struct python_allocator_fns {
  py::object alloc, free;
};

/// The registered pair, read by calls without the GIL. A pair once registered is never freed
/// (set_allocator is called once per process, by blfft._backends): a call that read it may still
/// be running when another pair is registered.
std::atomic<const python_allocator_fns*> registered_allocator{nullptr};

/// Takes the GIL for each allocation (the calls run without it). Memory from torch's caching
/// allocator is counted by torch.cuda.memory_allocated, reused by torch, and, during CUDA graph
/// capture on `stream`, comes from the graph's private pool.
class python_allocator final : public blfft::cuda::allocator {
 public:
  explicit python_allocator(const python_allocator_fns& f) : f_(f) {}
  void* allocate(std::size_t bytes, int device, void* stream) override {
    py::gil_scoped_acquire gil;
    // A Python exception (torch.OutOfMemoryError) propagates as itself, through the backend.
    const auto addr =
        f_.alloc(bytes, device, reinterpret_cast<std::uintptr_t>(stream)).cast<std::uintptr_t>();
    if (addr == 0)
      fail(error_code::out_of_memory,
           "blfft: the registered allocator returned 0 for " + std::to_string(bytes) + " bytes");
    return reinterpret_cast<void*>(addr);
  }
  void deallocate(void* p, std::size_t, int, void*) noexcept override {
    py::gil_scoped_acquire gil;
    try {
      f_.free(reinterpret_cast<std::uintptr_t>(p));
    } catch (py::error_already_set& e) {
      e.discard_as_unraisable("blfft: giving back a temporary to the registered allocator");
    } catch (...) {  // deallocate must not throw
    }
  }

 private:
  const python_allocator_fns& f_;
};

/// f() with the registered allocator as the calling thread's scoped_allocator (when there is one),
/// through an arena: a call's ~17 temporaries then cost one or two trips into Python (each takes
/// the GIL) instead of ~34. The first slab is the previous call's peak on this thread, so that
/// one slab usually serves a whole call.
thread_local std::size_t last_peak = 0;  // the last call's arena peak on this thread

template <class F>
decltype(auto) with_registered_allocator(F&& f) {
  const python_allocator_fns* fns = registered_allocator.load();
  if (fns == nullptr) return f();
  python_allocator a(*fns);
  blfft::cuda::arena_allocator arena(a, last_peak);
  blfft::cuda::scoped_allocator use(arena);
  struct remember_peak {
    const blfft::cuda::arena_allocator& arena;
    ~remember_peak() { last_peak = arena.peak_bytes(); }
  } remember{arena};
  return f();
}

void set_allocator(const py::object& alloc, const py::object& free) {
  if (alloc.is_none() != free.is_none())
    throw py::type_error("blfft: set_allocator takes both alloc and free, or neither (None)");
  if (alloc.is_none()) {
    registered_allocator.store(nullptr);
    return;
  }
  if (!PyCallable_Check(alloc.ptr()) || !PyCallable_Check(free.ptr()))
    throw py::type_error("blfft: set_allocator's alloc and free must be callables");
  registered_allocator.store(new python_allocator_fns{alloc, free});  // never freed, see above
}

/// The CUDA backend of the shared entry points (entry_points.hpp).
struct cuda_backend {
  using device_policy = one_cuda_device;
  /// float16 / bfloat16 tensors go to plan<float>'s 16-bit overloads (float32 spectra).
  using half = blfft::cuda::half;
  using bfloat16 = blfft::cuda::bfloat16;
  static void take(opt_imported& slot, const py::object& obj, const char* name,
                   std::uintptr_t stream) {
    if (!obj.is_none()) slot.emplace(obj, name, consumer_stream(obj, name, stream));
  }
  static void need(opt_imported& slot, const py::object& obj, const char* name,
                   std::uintptr_t stream) {
    take(slot, obj, name, stream);
  }
  static void present(const char* what, std::initializer_list<const opt_imported*> slots) {
    for (const opt_imported* s : slots)
      if (!*s) fail(error_code::invalid_argument, what);
  }
  /// `deterministic` is accepted for the same signature as blfft._core's: the CUDA kernels
  /// reduce in a fixed order (no atomics), so results never depend on timing.
  template <class T>
  static std::shared_ptr<const blfft::cuda::plan<T>>
  plan(const blfft::conv_params& p, const blfft::compression& c, const device_policy& dev, bool) {
    return blfft::cuda::get_plan<T>(p, c, dev.device());
  }
  template <class P, class F>
  static void call(const P& plan, std::uintptr_t stream, F&& f) {
    with_registered_allocator([&] { f(plan, as_stream(stream)); });
  }
  /// The `tf32` keyword of every compute call (blfft._backends passes
  /// torch.backends.cudnn.allow_tf32): TF32 for the call's float mixing on cuBLAS.
  static blfft::cuda::scoped_tf32 tf32_scope(bool allow) { return blfft::cuda::scoped_tf32(allow); }
  template <class T>
  static blfft::energy_selection
  select_by_energy(const blfft::conv_params& p, const blfft::tensor_view<const T>& x,
                   double fraction, const device_policy& dev, std::uintptr_t stream) {
    return with_registered_allocator([&] {
      return blfft::cuda::select_by_energy<T>(p, x, fraction, dev.device(), as_stream(stream));
    });
  }
  template <class T>
  static std::vector<double> energy_map(const blfft::conv_params& p,
                                        const blfft::tensor_view<const T>& x,
                                        const device_policy& dev, std::uintptr_t stream) {
    return with_registered_allocator(
        [&] { return blfft::cuda::energy_map<T>(p, x, dev.device(), as_stream(stream)); });
  }
};

py::dict memory_stats(int device) {
  const auto st = blfft::cuda::memory_stats(device);
  py::dict d;
  d["in_use"] = st.in_use;
  d["peak"] = st.peak;
  d["allocations"] = st.allocations;
  return d;
}

std::vector<std::string> architectures() {
  std::vector<std::string> archs;
  std::stringstream ss(BLFFT_PY_CUDA_ARCHITECTURES);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) archs.push_back(item);
  return archs;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "blfft._cuda: binding of blfft's CUDA backend (blfft::cuda); CUDA tensors only";

  // ConvParams, Compression, EnergySelection and BlfftError are blfft._core's.
  py::module_ core = py::module_::import("blfft._core");
  m.attr("BlfftError") = core.attr("BlfftError");
  install_error_translator(core.attr("BlfftError"));

  // --- build facts ------------------------------------------------------------------------------
  m.attr("__version__") = BLFFT_VERSION_STRING;
  m.attr("cuda_architectures") = architectures();
  m.attr("dlpack_version") = py::make_tuple(dl::abi_major, dl::abi_minor);
  m.def("compiled", &blfft::cuda::compiled, "True: the CUDA backend is compiled in.");
  m.def("device_count", &blfft::cuda::device_count,
        "CUDA devices usable by this process (0 without a driver or a GPU). Never raises.");

  // --- compute ----------------------------------------------------------------------------------
  // blfft._core's signatures (entry_points.hpp), except that `stream` has no default on purpose:
  // the caller names the stream of every call (torch.cuda.current_stream(device).cuda_stream).
  register_compute<cuda_backend>(m, py::arg("stream"));
  m.def("dlpack_info", &dlpack_info, py::arg("tensor"),
        "What the binding reads from a DLPack tensor (consumes a capsule).");

  register_dlpack_buffer(m, "A C++-owned host buffer; take it with torch.from_dlpack (no copy).");

  // --- runtime ----------------------------------------------------------------------------------
  m.def("plan_cache_size", &blfft::cuda::plan_cache_size);
  m.def("clear_plan_cache", &blfft::cuda::clear_plan_cache,
        "Drops the cached CUDA plans and the idle cuFFT plans (temporaries are never kept).");
  m.def("set_allocator", &set_allocator, py::arg("alloc"), py::arg("free"),
        "Where the temporaries of every later call come from: alloc(nbytes, device, stream) -> "
        "address and free(address), as torch.cuda.caching_allocator_alloc / "
        "caching_allocator_delete (which blfft registers on import); None, None: the backend's "
        "default, cudaMallocAsync on the call's stream.");
  m.def(
      "allocator_registered", [] { return registered_allocator.load() != nullptr; },
      "Whether set_allocator registered a Python allocator.");
  m.def("memory_stats", &memory_stats, py::arg("device") = 0,
        "What blfft asked the allocator for on one device: in_use (bytes not given back yet; 0 "
        "between calls), peak (since reset_memory_peak) and allocations (a count).");
  m.def("reset_memory_peak", &blfft::cuda::reset_memory_peak, py::arg("device") = 0);
}
