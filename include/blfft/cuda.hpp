#pragma once
/// @file cuda.hpp
/// The CUDA backend: the same operator (docs/design.md section 1) and the same plan API as the CPU
/// backend (blfft/plan.hpp), on NVIDIA GPUs. Link blfft::cuda (library blfft_cuda).
///
/// This header includes no CUDA header: a stream is passed as `void*` (a cudaStream_t; nullptr
/// is the legacy default stream), last and defaulted, so code that includes it compiles with a
/// plain C++ compiler. All data pointers of tensor views and spectra are device pointers on the
/// plan's device (cudaMalloc'ed or managed memory). Every call enqueues its work on `stream` and
/// returns without synchronising (energy_map / select_by_energy excepted: they return host data).
///
/// Memory: a call's temporaries (spectra it is not given, transform scratch, cuFFT work areas)
/// come from an allocator, stream-ordered on the call's stream, and are given back before the
/// call returns (their last use is enqueued by then); blfft holds no device memory between calls
/// beyond its plans (their index tables and cuFFT plans). The allocator is default_allocator()
/// (cudaMallocAsync) unless the caller installs its own with scoped_allocator (blfft's Python
/// module installs torch's caching allocator that way).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "blfft/energy.hpp"
#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"

#if defined(BLFFT_STATIC_DEFINE) || defined(_WIN32)
#define BLFFT_CUDA_API
#else
#define BLFFT_CUDA_API __attribute__((visibility("default")))
#endif

namespace blfft::cuda {

/// True: this library was built with the CUDA backend (a CPU-only build has no blfft_cuda).
BLFFT_CUDA_API bool compiled() noexcept;

/// Number of CUDA devices usable by this process: 0 without a driver or a GPU. Never throws.
BLFFT_CUDA_API int device_count() noexcept;

/// 16-bit floating-point storage for the tensors of a plan<float> (computed in float): IEEE
/// binary16 (torch.float16, CUDA's __half) and bfloat16 (float's upper 16 bits, torch.bfloat16,
/// CUDA's __nv_bfloat16), bit for bit. Conversions round to nearest even.
struct half {
  std::uint16_t bits;
};
struct bfloat16 {
  std::uint16_t bits;
};

/// Tile shape of the channel-mixing kernels (complex GEMMs, one per kept frequency and group).
enum class mix_tile {
  automatic,  ///< large unless that leaves too few thread blocks to fill the GPU
  small,      ///< 32 x 64 outputs per block
  large,      ///< 64 x 64 outputs per block
};

/// Engine of the channel mixing (one product per kept frequency and group).
enum class mix_engine {
  automatic,  ///< per call, the faster by a traffic and flop model (own kernel for the taps path)
  own,        ///< blfft's kernel (Gauss's 3 real products per complex one, CUDA cores)
  cublas,     ///< one strided batched real GEMM per pass (cuBLAS, tensor cores with TF32)
};

/// Options of a CUDA plan (the CPU plan's are blfft::plan_options).
struct cuda_plan_options {
  mix_tile tile = mix_tile::automatic;
  mix_engine engine = mix_engine::automatic;
  /// The weight gradient's mixing reduces each kept frequency's product to the kernel's taps as
  /// it goes (one kernel, no dW spectrum; own engine, kernels of up to 9 taps in float) where
  /// the rule keeps the own engine; false: the dW spectrum, then its synthesis.
  bool fuse_weight_grad = true;

  /// Every field, for the plan cache's key: a field missing here would share cache entries.
  std::vector<int64_t> key() const {
    return {static_cast<int64_t>(tile), static_cast<int64_t>(engine),
            static_cast<int64_t>(fuse_weight_grad)};
  }
};

/// TF32 for the calls of the calling thread while it lives: float mixing on cuBLAS may round its
/// inputs to TF32 (tensor cores) when `allow` is true, as torch does for convolutions under
/// torch.backends.cudnn.allow_tf32 (blfft's Python layer passes that flag per call). Without a
/// scope, FP32. Double is never rounded.
class BLFFT_CUDA_API scoped_tf32 {
 public:
  explicit scoped_tf32(bool allow) noexcept;
  ~scoped_tf32();
  scoped_tf32(const scoped_tf32&) = delete;
  scoped_tf32& operator=(const scoped_tf32&) = delete;

 private:
  bool previous_;
};
/// Whether the calling thread's innermost scoped_tf32 allows TF32 (false without one).
BLFFT_CUDA_API bool tf32_allowed() noexcept;

/// Where a call's temporaries come from. Implementations must be thread-safe when calls run on
/// several threads at once, and, for calls captured into a CUDA graph, legal during capture on
/// `stream` (cudaMallocAsync / cudaFreeAsync are: they become the graph's allocation nodes).
class BLFFT_CUDA_API allocator {
 public:
  virtual ~allocator() = default;
  /// `bytes` (> 0) of device memory of `device`, usable by work enqueued on `stream` from now on
  /// (stream-ordered, like cudaMallocAsync). `device` is current during the call. Throws on
  /// failure; never returns null.
  virtual void* allocate(std::size_t bytes, int device, void* stream) = 0;
  /// Gives back `p` from allocate(bytes, device, stream), same arguments, after blfft has
  /// enqueued its last use of it on `stream` (which may still be running: stream-ordered, like
  /// cudaFreeAsync). `device` is current during the call. Must not throw.
  virtual void deallocate(void* p, std::size_t bytes, int device, void* stream) noexcept = 0;
};

/// The allocator calls use unless a scoped_allocator says otherwise: cudaMallocAsync /
/// cudaFreeAsync on the call's stream, from the device's current memory pool (its default pool
/// unless the application set another with cudaDeviceSetMemPool; blfft never changes a pool's
/// attributes, so its release threshold stays what the application left: by default, freed
/// memory goes back to the driver at the next synchronisation). Where a device has no memory
/// pools: cudaMalloc / cudaFree. A failed allocation is error_code::out_of_memory.
BLFFT_CUDA_API allocator& default_allocator() noexcept;

/// While it lives, every blfft::cuda call the constructing thread makes takes its temporaries
/// from `a` (which must outlive the scope) instead of default_allocator(). Scopes nest; each must
/// end on the thread that made it, innermost first. Calls on other threads are not affected.
///
///   my_allocator a;                              // e.g. an application's own caching allocator
///   blfft::cuda::scoped_allocator use(a);
///   plan->forward(x, w, bias, y, {}, {}, stream);  // spectra and scratch from `a`
class BLFFT_CUDA_API scoped_allocator {
 public:
  explicit scoped_allocator(allocator& a) noexcept;
  ~scoped_allocator();
  scoped_allocator(const scoped_allocator&) = delete;
  scoped_allocator& operator=(const scoped_allocator&) = delete;

 private:
  allocator* previous_;
};

/// Serves temporaries from a few large blocks ("slabs") of another allocator, last in first out,
/// so that an allocator with a high cost per request is asked once or twice per call instead of
/// for each of a call's ~17 temporaries (blfft's Python module wraps torch's caching allocator,
/// reached through the GIL, in one arena per call). Make one per call, on the call's thread;
/// every block must be given back before the arena is destroyed, which gives the slabs back to
/// `base`. A block freed out of order is reused once the blocks above it are freed. Requests for
/// another device or stream than the arena's first go straight to `base`. The destructor gives
/// the slabs back with the arena's device and stream as arguments, but that device need not be
/// current then (a call restores the caller's device before its arena goes).
class BLFFT_CUDA_API arena_allocator final : public allocator {
 public:
  /// `slab_bytes`: the first slab's size when larger than the first request (for example the
  /// previous call's peak_bytes(), so that one slab serves the whole call); later slabs double.
  explicit arena_allocator(allocator& base, std::size_t slab_bytes = 0) noexcept;
  ~arena_allocator() override;
  arena_allocator(const arena_allocator&) = delete;
  arena_allocator& operator=(const arena_allocator&) = delete;

  void* allocate(std::size_t bytes, int device, void* stream) override;
  void deallocate(void* p, std::size_t bytes, int device, void* stream) noexcept override;

  /// Most bytes the slabs' block stack held at once (blocks rounded up to 256 bytes, the holes of
  /// blocks freed out of order included): a first slab this large serves the same sequence of
  /// requests alone. And the slabs taken so far.
  std::size_t peak_bytes() const noexcept { return peak_; }
  std::size_t slab_count() const noexcept { return slabs_.size(); }

 private:
  struct slab {
    char* base;
    std::size_t size, top;
  };
  struct block {
    char* p;
    std::size_t bytes;  // as requested
    int slab;           // -1: straight from base, on `device` and `stream`
    std::size_t offset;
    int device;
    void* stream;
    bool freed;
  };
  allocator& base_;
  std::size_t next_slab_, stack_ = 0, peak_ = 0;
  int device_ = -1;
  void* stream_ = nullptr;
  std::vector<slab> slabs_;
  std::vector<block> blocks_;  // live blocks, in allocation order
};

namespace detail {
template <class T>
class plan_impl;
/// The allocator of the calling thread's innermost scoped_allocator, or null (none).
BLFFT_CUDA_API allocator* scoped_allocator_or_null() noexcept;
}  // namespace detail

/// Band-limited convolution for one geometry on one CUDA device, for T = float (double is
/// supported too, mainly for tests). Mirrors blfft::plan<T> method for method, with a trailing
/// stream; see there for the semantics. Spectra are device buffers in the layout described on
/// blfft::geometry, passed as spectrum_view of exactly geometry().x_spectrum_size() /
/// w_spectrum_size() scalars (checked: a wrong length is error_code::invalid_argument).
///
/// Every method is const and thread-safe; calls on different streams may overlap. A plan's
/// methods make its device current for the duration of the call and restore the caller's.
/// Errors: blfft::error with error_code::backend for a failed CUDA / cuFFT call (the message
/// names the call and file:line), error_code::unsupported when there is no CUDA device,
/// error_code::type_mismatch for a pointer that is not device memory of the plan's device, and
/// the CPU plan's codes for shapes and arguments.
template <class T>
class BLFFT_CUDA_API plan {
 public:
  explicit plan(const geometry& g, int device = 0, const cuda_plan_options& options = {});
  plan(const conv_params& p, const compression& c, int device = 0,
       const cuda_plan_options& options = {});
  ~plan();
  plan(plan&&) noexcept;
  plan& operator=(plan&&) noexcept;
  plan(const plan&) = delete;
  plan& operator=(const plan&) = delete;

  const blfft::geometry& geometry() const;
  int device() const;

  /// y = band-limited conv(x, w) + bias. `bias` may be null. Given `x_spectrum` / `w_spectrum`
  /// receive the compressed spectra for backward (map reuse).
  void forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const T* bias,
               const tensor_view<T>& y, spectrum_view<T> x_spectrum = {},
               spectrum_view<T> w_spectrum = {}, void* stream = nullptr) const;

  void input_spectrum(const tensor_view<const T>& x, spectrum_view<T> x_spectrum,
                      void* stream = nullptr) const;
  void weight_spectrum(const tensor_view<const T>& w, spectrum_view<T> w_spectrum,
                       void* stream = nullptr) const;

  void forward_spectra(spectrum_view<const T> x_spectrum, spectrum_view<const T> w_spectrum,
                       const T* bias, const tensor_view<T>& y, void* stream = nullptr) const;

  /// All gradients from one transform of grad_out; each output may be null to skip it.
  void backward(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                spectrum_view<const T> w_spectrum, const tensor_view<T>* grad_input,
                const tensor_view<T>* grad_weight, T* grad_bias, void* stream = nullptr) const;

  /// backward() with the weight itself instead of its spectrum, for callers that did not keep
  /// the spectrum; the weight spectrum is recomputed for the call (no taps path on the GPU).
  void backward_with_weight(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                            const tensor_view<const T>& weight, const tensor_view<T>* grad_input,
                            const tensor_view<T>* grad_weight, T* grad_bias,
                            void* stream = nullptr) const;

  void input_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> w_spectrum,
                  const tensor_view<T>& grad_input, void* stream = nullptr) const;
  void weight_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                   const tensor_view<T>& grad_weight, void* stream = nullptr) const;
  void bias_grad(const tensor_view<const T>& grad_out, T* grad_bias, void* stream = nullptr) const;

  /// Half-precision tensors (plan<float>; plan<double> refuses them with
  /// error_code::type_mismatch): x, w, bias, y and the gradients in float16 or bfloat16, read and
  /// written in their type by the kernels (2 bytes an element), computed in float; spectra are
  /// float. Same semantics as the float calls above.
  void forward(const tensor_view<const half>& x, const tensor_view<const half>& w, const half* bias,
               const tensor_view<half>& y, spectrum_view<T> x_spectrum = {},
               spectrum_view<T> w_spectrum = {}, void* stream = nullptr) const;
  void forward(const tensor_view<const bfloat16>& x, const tensor_view<const bfloat16>& w,
               const bfloat16* bias, const tensor_view<bfloat16>& y,
               spectrum_view<T> x_spectrum = {}, spectrum_view<T> w_spectrum = {},
               void* stream = nullptr) const;
  void input_spectrum(const tensor_view<const half>& x, spectrum_view<T> x_spectrum,
                      void* stream = nullptr) const;
  void input_spectrum(const tensor_view<const bfloat16>& x, spectrum_view<T> x_spectrum,
                      void* stream = nullptr) const;
  void weight_spectrum(const tensor_view<const half>& w, spectrum_view<T> w_spectrum,
                       void* stream = nullptr) const;
  void weight_spectrum(const tensor_view<const bfloat16>& w, spectrum_view<T> w_spectrum,
                       void* stream = nullptr) const;
  void forward_spectra(spectrum_view<const T> x_spectrum, spectrum_view<const T> w_spectrum,
                       const half* bias, const tensor_view<half>& y, void* stream = nullptr) const;
  void forward_spectra(spectrum_view<const T> x_spectrum, spectrum_view<const T> w_spectrum,
                       const bfloat16* bias, const tensor_view<bfloat16>& y,
                       void* stream = nullptr) const;
  void backward(const tensor_view<const half>& grad_out, spectrum_view<const T> x_spectrum,
                spectrum_view<const T> w_spectrum, const tensor_view<half>* grad_input,
                const tensor_view<half>* grad_weight, half* grad_bias,
                void* stream = nullptr) const;
  void backward(const tensor_view<const bfloat16>& grad_out, spectrum_view<const T> x_spectrum,
                spectrum_view<const T> w_spectrum, const tensor_view<bfloat16>* grad_input,
                const tensor_view<bfloat16>* grad_weight, bfloat16* grad_bias,
                void* stream = nullptr) const;

 private:
  std::unique_ptr<detail::plan_impl<T>> impl_;
};

extern template class plan<float>;
extern template class plan<double>;

/// The process-wide CUDA plan cache: one plan per (geometry, kept set, dtype, device, options).
/// Thread-safe.
template <class T>
BLFFT_CUDA_API std::shared_ptr<const plan<T>> get_plan(const conv_params& p, const compression& c,
                                                       int device = 0,
                                                       const cuda_plan_options& options = {});
BLFFT_CUDA_API std::size_t plan_cache_size();
/// Drops every cached plan and the cuFFT plans nobody is executing, with their device memory.
/// Plans still held by callers stay valid. (Temporaries are never held between calls.)
BLFFT_CUDA_API void clear_plan_cache();

/// Energy per rfft bin of the padded input, as blfft::energy_map, computed on the GPU (pruned
/// transforms with every bin kept, then a reduction in double precision; batches are processed in
/// chunks so the full spectrum never needs more than about 256 MB). `x` is device memory.
/// Synchronises `stream` and returns host data.
template <class T>
BLFFT_CUDA_API std::vector<double> energy_map(const conv_params& p, const tensor_view<const T>& x,
                                              int device = 0, void* stream = nullptr);

/// energy_map on the GPU, then blfft::select_by_energy on the CPU (a search over at most
/// Lh/2 + Lw/2 candidate rates on Lh x (Lw/2+1) numbers).
template <class T>
BLFFT_CUDA_API energy_selection select_by_energy(const conv_params& p,
                                                 const tensor_view<const T>& x, double fraction,
                                                 int device = 0, void* stream = nullptr);

/// What blfft asked allocators for on one device (all allocators together, counted by blfft):
/// bytes of temporaries allocated and not given back yet (0 between calls), the most at any
/// time since the last reset_memory_peak(), and the number of allocations since the process
/// started. Host counters: they cost nothing on the device.
struct memory_usage {
  std::size_t in_use = 0, peak = 0;
  std::uint64_t allocations = 0;
};
BLFFT_CUDA_API memory_usage memory_stats(int device = 0);
BLFFT_CUDA_API void reset_memory_peak(int device = 0);

}  // namespace blfft::cuda
