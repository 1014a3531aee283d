#pragma once
/// @file cuda.hpp
/// The CUDA backend: the same operator (docs/design.md section 1) and the same plan API as the CPU
/// backend (blfft/plan.hpp), on NVIDIA GPUs. Link blfft::cuda (library blfft_cuda).
///
/// This header includes no CUDA header: a stream is passed as `void*` (a cudaStream_t; nullptr
/// is the legacy default stream), last and defaulted, so code that includes it compiles with a
/// plain C++ compiler. All data pointers of tensor views and spectra are device pointers on the
/// plan's device (cudaMalloc'ed or managed memory). Every call enqueues its work on `stream` and
/// returns without synchronising (energy_map / select_by_energy excepted: they return host data);
/// temporaries come from a stream-ordered memory pool that blfft keeps per device.

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

/// Tile shape of the channel-mixing kernels (complex GEMMs, one per kept frequency and group).
enum class mix_tile {
  automatic,  ///< large unless that leaves too few thread blocks to fill the GPU
  small,      ///< 32 x 64 outputs per block
  large,      ///< 64 x 64 outputs per block
};

/// Options of a CUDA plan (the CPU plan's are blfft::plan_options).
struct cuda_plan_options {
  mix_tile tile = mix_tile::automatic;

  /// Every field, for the plan cache's key: a field missing here would share cache entries.
  std::vector<int64_t> key() const { return {static_cast<int64_t>(tile)}; }
};

namespace detail {
template <class T>
class plan_impl;
}

/// Band-limited convolution for one geometry on one CUDA device, for T = float (double is
/// supported too, mainly for tests). Mirrors blfft::plan<T> method for method; see there for the
/// semantics. Spectra are device buffers in the layout described on blfft::geometry.
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

  /// y = band-limited conv(x, w) + bias. `bias` may be null. Non-null `x_spectrum` /
  /// `w_spectrum` receive the compressed spectra for backward (map reuse).
  void forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const T* bias,
               const tensor_view<T>& y, T* x_spectrum = nullptr, T* w_spectrum = nullptr,
               void* stream = nullptr) const;

  void input_spectrum(const tensor_view<const T>& x, T* x_spectrum, void* stream = nullptr) const;
  void weight_spectrum(const tensor_view<const T>& w, T* w_spectrum,
                       void* stream = nullptr) const;

  void forward_spectra(const T* x_spectrum, const T* w_spectrum, const T* bias,
                       const tensor_view<T>& y, void* stream = nullptr) const;

  /// All gradients from one transform of grad_out; each output may be null to skip it.
  void backward(const tensor_view<const T>& grad_out, const T* x_spectrum, const T* w_spectrum,
                const tensor_view<T>* grad_input, const tensor_view<T>* grad_weight,
                T* grad_bias, void* stream = nullptr) const;

  /// backward() with the weight itself instead of its spectrum, for callers that did not keep
  /// the spectrum; the weight spectrum is recomputed for the call (no taps path on the GPU).
  void backward_with_weight(const tensor_view<const T>& grad_out, const T* x_spectrum,
                            const tensor_view<const T>& weight, const tensor_view<T>* grad_input,
                            const tensor_view<T>* grad_weight, T* grad_bias,
                            void* stream = nullptr) const;

  void input_grad(const tensor_view<const T>& grad_out, const T* w_spectrum,
                  const tensor_view<T>& grad_input, void* stream = nullptr) const;
  void weight_grad(const tensor_view<const T>& grad_out, const T* x_spectrum,
                   const tensor_view<T>& grad_weight, void* stream = nullptr) const;
  void bias_grad(const tensor_view<const T>& grad_out, T* grad_bias,
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
/// Drops every cached plan and cuFFT plan, and returns the memory pools' idle memory to the
/// driver. Plans still held by callers stay valid.
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

/// Bytes of device memory in blfft's stream-ordered pool of one device: what is reserved from
/// the driver, what is in use right now, and the peaks since the last reset_pool_peaks.
struct pool_stats {
  std::size_t reserved = 0, used = 0, reserved_peak = 0, used_peak = 0;
};
BLFFT_CUDA_API pool_stats memory_pool_stats(int device = 0);
BLFFT_CUDA_API void reset_pool_peaks(int device = 0);

}  // namespace blfft::cuda
