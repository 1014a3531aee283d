#pragma once
/// @file plan.hpp
/// Plans: one layer geometry, built once, executed many times on caller-owned buffers.

#include <cstddef>
#include <memory>
#include <vector>

#include "blfft/export.hpp"
#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"

namespace blfft {

/// How hard FFTW searches for fast transforms when a new transform size is first seen.
enum class fft_rigor { estimate, measure };

/// How the pruned 2D transforms are computed.
/// - fft: FFTW row and column transforms (O(L log L) per line), pruned to the rows and columns
///   that hold data or are kept;
/// - matmul: the same pruned transforms as real matrix products with small DFT matrices, which
///   evaluate only the kept outputs from only the non-zero inputs; for the small maps of CNNs
///   this runs at GEMM speed and beats many tiny FFT calls;
/// - automatic: chosen per transform (input, weight, gradient): matmul when every grid axis is
///   at most `matmul_max_grid`, or when its flops are within a small factor of the FFTs' (the
///   weight transforms of 1D layers: a few taps on a long grid); fft otherwise.
enum class transform_method { automatic, fft, matmul };

/// Where the weight's side of the channel mixing comes from when the caller keeps no weight
/// spectrum (forward without w_spectrum, backward_with_weight) and for the weight gradient:
/// - spectrum: a whole weight spectrum is computed (and the weight gradient synthesised from a
///   whole gradient spectrum);
/// - taps: each kept frequency's weight matrix is made from the taps right where it is used,
///   and the weight gradient folded into the taps frequency by frequency; no weight-sized
///   spectrum exists (pays off when that spectrum would be large and the taps are few);
/// - automatic: taps when the weight spectrum would be at least 16 MiB, the weight at most
///   2 MiB and the taps few (at most 6, and 2 taps <= 3 batch): 1D layers with small kernels;
///   else spectrum.
enum class weight_mixing { automatic, spectrum, taps };

/// Whether the forward and input-gradient passes of 2D layers whose two transforms both run the
/// matmul engine are fused per chunk of kept columns: the height transform, the channel mixing
/// and the inverse height transform of each chunk back to back while it is in cache, instead of
/// one whole-spectrum stage after another (src/fused_pass.hpp; bench/NOTES.md, seventh round).
/// - on: wherever possible; off: never;
/// - automatic: not fused for now. With the default BLAS (scipy-openblas32 0.3.30) it measured
///   even (0.97-1.03x fwd+bwd); with BLIS 0.9 it took 0.84-0.94x on 32x32 maps at rate 0 and was
///   even on maps of 8x8 and smaller, so `on` pays there for layers whose grid keeps >= 8
///   columns.
/// Results differ from the unfused passes by rounding only; deterministic plans stay bitwise
/// thread-count independent either way.
enum class pass_fusion { automatic, on, off };

struct plan_options {
  fft_rigor rigor = fft_rigor::estimate;
  transform_method method = transform_method::automatic;
  int64_t matmul_max_grid = 64;  ///< automatic picks matmul for grids up to this length
  weight_mixing mixing = weight_mixing::automatic;
  /// Bitwise-reproducible results for any thread count: work is split into pieces that do not
  /// depend on the number of threads, and reductions run in a fixed order. Off by default
  /// (results are then reproducible for a fixed thread count only); Python turns it on under
  /// torch.use_deterministic_algorithms(True) or blfft.set_deterministic(True).
  bool deterministic = false;
  pass_fusion fusion = pass_fusion::automatic;

  /// Every field, for the plan cache's key: a field missing here would share cache entries.
  std::vector<int64_t> key() const {
    return {
        static_cast<int64_t>(rigor),  static_cast<int64_t>(method), matmul_max_grid,
        static_cast<int64_t>(mixing), deterministic ? 1 : 0,        static_cast<int64_t>(fusion)};
  }
};

namespace detail {
template <class T>
class plan_impl;
}

/// Band-limited convolution for one geometry on the CPU backend, for T = float or double.
///
/// Every method is const and thread-safe: one plan may run on many threads at once. Spectrum
/// buffers are caller-owned, in the layout described on blfft::geometry, passed as spectrum_view
/// of exactly geometry().x_spectrum_size() / w_spectrum_size() scalars (checked; a wrong length
/// is an invalid_argument error naming the argument). Inputs are never modified.
/// Non-copyable (a plan is shared through std::shared_ptr, see get_plan), movable.
template <class T>
class BLFFT_API plan {
 public:
  explicit plan(const geometry& g, const plan_options& options = {});
  plan(const conv_params& p, const compression& c, const plan_options& options = {});
  ~plan();
  plan(plan&&) noexcept;
  plan& operator=(plan&&) noexcept;
  plan(const plan&) = delete;
  plan& operator=(const plan&) = delete;

  const blfft::geometry& geometry() const;

  /// y = band-limited conv(x, w) + bias. `bias` may be null. Given `x_spectrum` / `w_spectrum`
  /// receive the compressed spectra, to be passed to backward (map reuse).
  void forward(const tensor_view<const T>& x, const tensor_view<const T>& w, const T* bias,
               const tensor_view<T>& y, spectrum_view<T> x_spectrum = {},
               spectrum_view<T> w_spectrum = {}) const;

  /// The compressed spectrum of the (padded) input or of the (dilated) weight.
  void input_spectrum(const tensor_view<const T>& x, spectrum_view<T> x_spectrum) const;
  void weight_spectrum(const tensor_view<const T>& w, spectrum_view<T> w_spectrum) const;

  /// forward() for an input whose spectrum this plan's input transform has made already
  /// (input_spectrum(), or select_by_energy handing it over): the same bits as forward() on that
  /// input with the same thread count, without its input transform. `w_spectrum` as in forward().
  void forward_with_input_spectrum(spectrum_view<const T> x_spectrum, const tensor_view<const T>& w,
                                   const T* bias, const tensor_view<T>& y,
                                   spectrum_view<T> w_spectrum = {}) const;

  /// Forward from spectra already computed.
  void forward_spectra(spectrum_view<const T> x_spectrum, spectrum_view<const T> w_spectrum,
                       const T* bias, const tensor_view<T>& y) const;

  /// Forward from the input and a weight spectrum computed earlier (weight_spectrum(), or a
  /// prepared_weight): no weight transform. A given `x_spectrum` receives the input's spectrum.
  void forward_prepared(const tensor_view<const T>& x, spectrum_view<const T> w_spectrum,
                        const T* bias, const tensor_view<T>& y,
                        spectrum_view<T> x_spectrum = {}) const;

  /// All gradients from one transform of grad_out. Each of grad_input, grad_weight, grad_bias
  /// may be null to skip it; grad_input needs w_spectrum, grad_weight needs x_spectrum.
  void backward(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                spectrum_view<const T> w_spectrum, const tensor_view<T>* grad_input,
                const tensor_view<T>* grad_weight, T* grad_bias) const;

  /// backward() with the weight itself instead of its spectrum, for callers that did not keep
  /// the spectrum: where the plan mixes from the weight taps (small kernels against the batch)
  /// no weight spectrum is made at all, else it is recomputed for the call.
  void backward_with_weight(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                            const tensor_view<const T>& weight, const tensor_view<T>* grad_input,
                            const tensor_view<T>* grad_weight, T* grad_bias) const;

  void input_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> w_spectrum,
                  const tensor_view<T>& grad_input) const;
  void weight_grad(const tensor_view<const T>& grad_out, spectrum_view<const T> x_spectrum,
                   const tensor_view<T>& grad_weight) const;
  void bias_grad(const tensor_view<const T>& grad_out, T* grad_bias) const;

 private:
  std::unique_ptr<detail::plan_impl<T>> impl_;
};

extern template class plan<float>;
extern template class plan<double>;

/// A weight spectrum kept by the caller across calls while the weight is unchanged: evaluation
/// pays one weight transform per weight update, training one per step (forward_prepared, then
/// backward with spectrum()). The caller names the weight's state by a version number that it
/// changes whenever it writes the weight (an optimizer step counter, a tensor version counter);
/// the spectrum is recomputed when the version or the plan's geometry (sizes but the batch, kept
/// set) changes.
/// Holds geometry().w_spectrum_size() scalars until clear() or destruction. Not thread-safe
/// (one per layer and thread of control).
template <class T>
class BLFFT_API prepared_weight {
 public:
  /// The spectrum of `w` on `p`: the kept one when made for the same geometry and `version`.
  spectrum_view<const T> update(const plan<T>& p, const tensor_view<const T>& w, uint64_t version);
  /// The spectrum made by the last update() (not given before one, or after clear()).
  spectrum_view<const T> spectrum() const;
  void clear();
  /// Weight transforms made so far (a new spectrum) and updates that kept the spectrum.
  int64_t transforms() const { return transforms_; }
  int64_t reuses() const { return reuses_; }

 private:
  std::vector<T> spectrum_;
  std::vector<int64_t> key_;  // the geometry it was made for
  uint64_t version_ = 0;
  int64_t transforms_ = 0, reuses_ = 0;
};

extern template class prepared_weight<float>;
extern template class prepared_weight<double>;

/// Whether a plan of `g` with `options` mixes from the weight's taps where it is given no weight
/// spectrum (plan_options::mixing; 1D/2D layers with few taps and large spectra): such a plan is
/// faster from the weight itself, so a caller gains nothing by keeping a weight spectrum for it.
/// `element_bytes`: 4 for plan<float>, 8 for plan<double>.
BLFFT_API bool mixes_from_taps(const geometry& g, const plan_options& options,
                               std::size_t element_bytes);

/// The process-wide plan cache: one plan per (geometry, kept set, dtype, options), shared.
/// Thread-safe. Changing the rate between calls just looks up (or builds) another plan.
template <class T>
BLFFT_API std::shared_ptr<const plan<T>> get_plan(const conv_params& p, const compression& c,
                                                  const plan_options& options = {});
/// Number of plans held by the cache, and a way to drop them all.
BLFFT_API std::size_t plan_cache_size();
BLFFT_API void clear_plan_cache();

/// Gives back all memory the CPU backend holds between calls: cached plans (and their FFT plans
/// and DFT tables) and the idle buffers of the workspace pool. Plans still held by a caller stay
/// valid. Thread-safe; calls running at the same time keep working.
BLFFT_API void release_memory();

/// The workspace pool keeps buffers of finished calls for reuse (fresh multi-megabyte buffers
/// cost page faults on every call), at most this many bytes in all (default 128 MiB); 0 keeps
/// none. Buffers in use by running calls are not counted.
BLFFT_API void set_max_idle_bytes(std::size_t bytes);
BLFFT_API std::size_t get_max_idle_bytes();
/// Bytes the pool holds idle right now.
BLFFT_API std::size_t idle_bytes();

/// The largest single buffer (spectrum or workspace) the CPU backend allocates; a call that
/// would need more is refused with error_code::out_of_memory before anything is allocated.
/// Default: the machine's physical memory. 0 restores the default.
BLFFT_API void set_max_buffer_bytes(std::size_t bytes);
BLFFT_API std::size_t get_max_buffer_bytes();

/// Threads used by the CPU backend (default: OpenMP's default, e.g. OMP_NUM_THREADS).
BLFFT_API void set_num_threads(int n);
BLFFT_API int get_num_threads();

}  // namespace blfft
