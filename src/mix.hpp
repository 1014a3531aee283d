#pragma once
// Channel mixing in the Fourier domain: at each kept frequency and group, one small complex
// matrix product on the planar spectra (layout on blfft::geometry).
//   forward:      Y_k = X_k W_k^H       (N x C/g)(C/g x F/g)
//   input grad:   dX_k = G_k W_k        (N x F/g)(F/g x C/g)
//   weight grad:  dW_k = G_k^H X_k      (F/g x N)(N x C/g)
// Large products use Gauss's trick (three real GEMMs instead of four); tiny ones (depthwise,
// batch 1) use a direct loop where BLAS call overhead would dominate.

#include <cstddef>
#include <cstdint>

#include "blfft/geometry.hpp"

namespace blfft::detail {

template <class T>
void mix_forward(const geometry& g, const T* x_spec, const T* w_spec, T* y_spec);
template <class T>
void mix_input_grad(const geometry& g, const T* dy_spec, const T* w_spec, T* dx_spec);
template <class T>
void mix_weight_grad(const geometry& g, const T* dy_spec, const T* x_spec, T* dw_spec);

/// Scratch scalars one thread needs for the products of any pass (Gauss's operand sums and its
/// third product): N C/g + F/g C/g + N F/g, the same for all three passes.
std::size_t mix_scratch_scalars(const geometry& g);

/// Whether the mixing of `g` runs in parallel: tiny problems (batch 1, few channels) finish
/// before a thread team would have started.
bool mix_in_parallel(const geometry& g);

// The same products for one kept frequency k and group gr, with that frequency's weight (or
// weight gradient) matrix given as planar (F x C/g) arrays instead of a slice of a spectrum: the
// whole-spectrum functions above run these, and so does the taps path (mix_taps.hpp), which
// makes the matrices itself. `scratch`: mix_scratch_scalars(g) scalars of the calling thread.
template <class T>
void mix_forward_at(const geometry& g, int64_t k, int64_t gr, const T* x_spec, const T* w_re,
                    const T* w_im, T* y_spec, T* scratch);
template <class T>
void mix_input_grad_at(const geometry& g, int64_t k, int64_t gr, const T* dy_spec, const T* w_re,
                       const T* w_im, T* dx_spec, T* scratch);
template <class T>
void mix_weight_grad_at(const geometry& g, int64_t k, int64_t gr, const T* dy_spec, const T* x_spec,
                        T* dw_re, T* dw_im, T* scratch);

}  // namespace blfft::detail
