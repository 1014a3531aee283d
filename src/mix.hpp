#pragma once
// Channel mixing in the Fourier domain: at each kept frequency and group, one small complex
// matrix product on the planar spectra (layout on blfft::geometry).
//   forward:      Y_k = X_k W_k^H       (N x C/g)(C/g x F/g)
//   input grad:   dX_k = G_k W_k        (N x F/g)(F/g x C/g)
//   weight grad:  dW_k = G_k^H X_k      (F/g x N)(N x C/g)
// Large products use Gauss's trick (three real GEMMs instead of four); tiny ones (depthwise,
// batch 1) use a direct loop where BLAS call overhead would dominate.

#include "blfft/geometry.hpp"

namespace blfft::detail {

template <class T>
void mix_forward(const geometry& g, const T* x_spec, const T* w_spec, T* y_spec);
template <class T>
void mix_input_grad(const geometry& g, const T* g_spec, const T* w_spec, T* dx_spec);
template <class T>
void mix_weight_grad(const geometry& g, const T* g_spec, const T* x_spec, T* dw_spec);

}  // namespace blfft::detail
