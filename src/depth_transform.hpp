#pragma once
// The transforms of the CPU plan for 1D, 2D and 3D layers. 1D and 2D: the pruned 2D transform
// (pruned_transform.hpp) as it is. 3D (docs/design.md 1, "3D"): the depth axis is an outer axis.
//
// analyse:    every depth slice that holds data is a batch of B x CH images of H x W; the pruned
//             2D transform takes each to its kept (row, column) bins, then a pruned DFT along
//             depth (a small complex matrix, kept depths x slices) gives the kept depths:
//             S[kd][k2][re|im][image], which is the frequency-major layout of blfft::geometry
//             with k = kd * kept2 + k2 (so the channel mixing is the same code as for 2D).
// synthesise: the inverse depth DFT to the slices the output needs (crop, stride), each of them
//             a 2D half spectrum of a real slice (the kept depths are a symmetric set), then the
//             pruned 2D synthesis of every slice.
// Depth placements are those of the other axes (layer.hpp): input offset padding, step 1;
// weight offset 0, step dilation; output (gradient) offset 0, step stride. The depth DFT is one
// real GEMM per block of kept (row, column) frequencies, with the real and imaginary parts of the
// DFT matrix stacked: [Re M; Im M] x slices, recombined as (Re M x re - Im M x im, Re M x im +
// Im M x re). Blocks are fixed by the geometry (not the thread count): reproducible results.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "blas.hpp"
#include "dft_matrix.hpp"
#include "layer.hpp"
#include "parallel.hpp"
#include "pruned_transform.hpp"
#include "workspace.hpp"

namespace blfft::detail {

template <class T>
class volume_transform {
 public:
  using direction = transform_direction;

  /// B x CH images (volumes in 3D) placed on the grid of `g` along depth, height and width.
  volume_transform(const geometry& g, direction dir, int64_t B, int64_t CH, placement d,
                   placement h, placement w, const plan_options& options)
      : plane_(g, dir, B, CH, h, w, options), volume_(g.params.ndim == 3), dir_(dir), d_(d) {
    if (!volume_) return;
    nd_ = static_cast<int64_t>(g.kept_depth.size());
    kept2_ = static_cast<int64_t>(g.kept_rows.size() * g.kept_cols.size());
    J_ = B * CH;
    slice_ = 2 * kept2_ * J_;
    const int64_t Ld = g.depth_grid, n = d_.count;
    // Analysis: (2 nd x n), rows [Re; Im] of exp(-2 pi i kd (offset + step i) / Ld).
    // Synthesis: (2 n x nd), rows [Re; Im] of exp(+2 pi i kd (offset + step t) / Ld).
    const bool fwd = dir == direction::analyse;
    const int64_t rows = fwd ? nd_ : n, cols = fwd ? n : nd_;
    dft_.resize(static_cast<size_t>(2 * rows * cols));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t q = fwd ? r : c, i = fwd ? c : r;
        const auto e = dft_twiddle(g.kept_depth[static_cast<size_t>(q)], d_.offset + d_.step * i,
                                   Ld, fwd ? -1.0 : 1.0);
        dft_[static_cast<size_t>(r * cols + c)] = static_cast<T>(e.real());
        dft_[static_cast<size_t>((rows + r) * cols + c)] = static_cast<T>(e.imag());
      }
    // Blocks of kept 2D frequencies: about 256 KiB of products each.
    const int64_t per_k2 = 2 * rows * 2 * J_ * static_cast<int64_t>(sizeof(T));
    block_ = std::clamp<int64_t>((int64_t(256) << 10) / std::max<int64_t>(per_k2, 1), 1, kept2_);
  }

  // 3D only: the two halves of analyse and synthesise, for the plan's depth-taps mixing
  // (plan.cpp), which applies the depth DFT of the weight frequency by frequency instead.

  /// The 2D spectra of every depth slice: slices[i][k2][plane][b * CH + ch], count x
  /// slice_size() scalars.
  void analyse_slices(const tensor_view<const T>& src, T* slices) const {
    for (int64_t i = 0; i < d_.count; ++i) plane_.analyse(depth_slice(src, i), slices + i * slice_);
  }
  /// The 2D synthesis of every depth slice from slices as analyse_slices lays them out.
  void synthesise_slices(const T* slices, const tensor_view<T>& dst, T scale, const T* bias) const {
    for (int64_t t = 0; t < d_.count; ++t)
      plane_.synthesise(slices + t * slice_, depth_slice(dst, t), scale, bias);
  }
  /// The 2D transform (of each depth slice in 3D).
  const pruned_transform<T>& plane() const { return plane_; }
  /// Scalars per depth slice: 2 * kept2 * B * CH.
  int64_t slice_size() const { return slice_; }
  /// The depth DFT matrix, [Re; Im] stacked, row-major: analysis (2 kept depths x samples),
  /// synthesis (2 samples x kept depths).
  const T* depth_matrix() const { return dft_.data(); }

  /// spectrum[k][plane][b * CH + ch] for all kept k; `src` a rank 3, 4 or 5 view.
  void analyse(const tensor_view<const T>& src, T* spectrum) const {
    if (!volume_) {
      plane_.analyse(as_image(src), spectrum);
      return;
    }
    const int64_t n = d_.count;
    auto slices = take_workspace<T>(n * slice_, "depth slices");
    analyse_slices(src, slices.data());
    depth_dft(slices.data(), n, spectrum, nd_);
  }

  /// dst = scale * inverse(spectrum) at the placed samples, plus bias[ch] where bias is given.
  void synthesise(const T* spectrum, const tensor_view<T>& dst, T scale, const T* bias) const {
    if (!volume_) {
      plane_.synthesise(spectrum, as_image(dst), scale, bias);
      return;
    }
    const int64_t n = d_.count;
    auto slices = take_workspace<T>(n * slice_, "depth slices");
    depth_dft(spectrum, nd_, slices.data(), n);
    synthesise_slices(slices.data(), dst, scale, bias);
  }

 private:
  /// out[r] = sum_i M[r, i] in[i] over slices of slice_ scalars (complex, planar per kept 2D
  /// frequency), M the (out_rows x in_rows) complex matrix in dft_.
  void depth_dft(const T* in, int64_t in_rows, T* out, int64_t out_rows) const {
    const int64_t blocks = (kept2_ + block_ - 1) / block_;
    const int64_t max_cols = block_ * 2 * J_;
    const int threads = thread_count();
    const bool parallel = blocks > 1 && 2 * out_rows * in_rows * kept2_ * 2 * J_ >= 65536;
    const int used = parallel ? threads : 1;
    thread_slices<T> scratch(used, static_cast<std::size_t>(2 * out_rows * max_cols),
                             "depth DFT scratch");
    const T* re_m = dft_.data();
    parallel_for(blocks, used, parallel, [&](int64_t b) {
      const int64_t k0 = b * block_, k1 = std::min(kept2_, k0 + block_);
      const int64_t cols = (k1 - k0) * 2 * J_, c0 = k0 * 2 * J_;
      T* p = scratch.mine();
      gemm<T>(false, false, 2 * out_rows, cols, in_rows, T(1), re_m, in_rows, in + c0, slice_, T(0),
              p, cols);
      for (int64_t r = 0; r < out_rows; ++r)
        for (int64_t k = 0; k < k1 - k0; ++k) {
          const T* a = p + r * cols + k * 2 * J_;               // Re M x (re | im)
          const T* c = p + (out_rows + r) * cols + k * 2 * J_;  // Im M x (re | im)
          T* o = out + r * slice_ + c0 + k * 2 * J_;
#pragma omp simd
          for (int64_t j = 0; j < J_; ++j) {
            o[j] = a[j] - c[J_ + j];
            o[J_ + j] = a[J_ + j] + c[j];
          }
        }
    });
  }

  pruned_transform<T> plane_;
  bool volume_ = false;
  direction dir_;
  placement d_;
  int64_t nd_ = 1, kept2_ = 0, J_ = 0, slice_ = 0, block_ = 1;
  std::vector<T> dft_;  // [Re; Im] of the depth DFT matrix, row-major
};

}  // namespace blfft::detail
