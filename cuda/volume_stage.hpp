#pragma once
// The CUDA plan's transforms for 1D, 2D and 3D layers: the CPU's volume_transform
// (src/depth_transform.hpp) on the device (docs/design.md 1.9).
//   1D, 2D      one transform_stage as it is (fused kernels or the cuFFT chain, by its rule);
//   3D analyse  every depth slice that holds data is a batch of B x CH images of H x W: the 2D
//               stage takes each to its kept (row, column) bins, then one depth_dft launch takes
//               the slices to the kept depths (k = depth index * kept2 + k2: the frequency-major
//               layout of 2D, so the mixing is unchanged), in the block form where asked;
//   3D synth.   one depth_dft launch to the slices the result needs (from the stacked products
//               where asked), each a 2D half spectrum of a real slice (the kept depths are a
//               symmetric set), then the 2D synthesis of every slice.
//   3D halves   the same steps one at a time, the depth DFT on a chunk of kept depths (and
//               accumulating in synthesis), for the mixing from the weight's depth slices
//               (pipeline.hpp: for_depth_chunks, weight_grad_to_slices).
// Depth placements (layer_placements: x_d, w_d, y_d) and the depth DFT's entries
// (dft_matrix.hpp) are the CPU's.

#include <algorithm>
#include <cstdint>

#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"
#include "call_checks.hpp"
#include "check.hpp"
#include "kernels.hpp"
#include "layer.hpp"

namespace blfft::cuda::detail {

/// `Plane`: the 2D stage (pipeline.hpp: transform_stage), built from (ex, g, dir, B, CH, h, w,
/// plane_args...); it provides images(), analyse(ex, image, spectrum, stream, block_form) and
/// synthesise(ex, spectrum, image, scale, bias, stream, stacked), templates over the images'
/// element type X (T, or a 16-bit type computed in T); the depth DFT works on T spectra only.
template <class T, class Exec, class Plane>
class volume_stage {
 public:
  using direction = blfft::detail::transform_direction;
  using placement = blfft::detail::placement;

  template <class... PlaneArgs>
  volume_stage(const Exec& ex, const geometry& g, direction dir, int64_t B, int64_t CH, placement d,
               placement h, placement w, PlaneArgs... plane_args)
      : plane_(ex, g, dir, B, CH, h, w, plane_args...), volume_(g.params.ndim == 3), dir_(dir),
        d_(d) {
    if (!volume_) return;
    nd_ = static_cast<int64_t>(g.kept_depth.size());
    kept2_ = static_cast<int64_t>(g.kept_rows.size() * g.kept_cols.size());
    J_ = plane_.images();
    CH_ = CH;
    Ld_ = g.depth_grid;
    slice_ = 2 * kept2_ * J_;
    // The block form of a kept-depths spectrum is the largest index space of a launch.
    const int64_t rows = std::max(nd_, d_.count);
    BLFFT_EXPECTS(2 * rows * slice_ < max_flat_index, error_code::unsupported,
                  "CUDA backend: a 3D spectrum of ", rows, " x ", slice_,
                  " scalars exceeds the 32-bit index limits");
    kept_depth_ = ex.upload(g.kept_depth);
  }

  /// spectrum[k][plane][j] (or its block form) for all kept k; `src` a rank 3, 4 or 5 view.
  template <class X>
  void analyse(const Exec& ex, const tensor_view<const X>& src, T* spectrum, void* stream,
               bool block_form = false) const {
    if (!volume_)
      return plane_.analyse(ex, blfft::detail::as_image(src), spectrum, stream, block_form);
    auto slices = ex.template make_temp<T>(d_.count * slice_, stream);
    for (int64_t i = 0; i < d_.count; ++i)
      plane_.analyse(ex, blfft::detail::depth_slice(src, i), slices.get() + i * slice_, stream);
    launch_depth(ex, slices.get(), spectrum, false, block_form, stream);
  }

  /// dst = scale * inverse(spectrum) at the placed samples, plus bias[ch] where bias is given.
  /// `stacked`: the spectrum is the forward's stacked products.
  template <class X>
  void synthesise(const Exec& ex, const T* spectrum, const tensor_view<X>& dst, T scale,
                  const blfft::detail::nd<X>* bias, void* stream, bool stacked = false) const {
    if (!volume_)
      return plane_.synthesise(ex, spectrum, blfft::detail::as_image(dst), scale, bias, stream,
                               stacked);
    auto slices = ex.template make_temp<T>(d_.count * slice_, stream);
    launch_depth(ex, spectrum, slices.get(), stacked, false, stream);
    for (int64_t t = 0; t < d_.count; ++t)
      plane_.synthesise(ex, slices.get() + t * slice_, blfft::detail::depth_slice(dst, t), scale,
                        bias, stream);
  }

  // 3D only: the two halves of analyse and synthesise, for the plan's mixing from the weight's
  // depth slices (pipeline.hpp; the CPU's depth_mix.hpp), which takes the depth DFT of the
  // weight a chunk of kept depths at a time instead of making the whole weight spectrum.

  /// Scalars per depth slice (and per kept depth): 2 * kept2 * images().
  int64_t slice_size() const { return slice_; }
  /// Depth slices (analysis: that hold data; synthesis: that the result needs).
  int64_t slice_count() const { return d_.count; }

  /// The 2D spectra of every depth slice that holds data: slices[i] at i * slice_size().
  template <class X>
  void analyse_slices(const Exec& ex, const tensor_view<const X>& src, T* slices,
                      void* stream) const {
    for (int64_t i = 0; i < d_.count; ++i)
      plane_.analyse(ex, blfft::detail::depth_slice(src, i), slices + i * slice_, stream);
  }
  /// Analysis: kept depths q0 .. q0 + rows - 1 of the spectrum, from the slices (planar).
  void depth_rows(const Exec& ex, const T* slices, T* dst, int64_t q0, int64_t rows,
                  void* stream) const {
    launch_depth(ex, slices, dst, false, false, stream, q0, rows);
  }
  /// Synthesis: slices (+)= the inverse depth DFT's share of kept depths q0 .. q0 + rows - 1
  /// (src, planar); `accumulate`: add to what slices holds.
  void depth_rows_to_slices(const Exec& ex, const T* src, T* slices, int64_t q0, int64_t rows,
                            bool accumulate, void* stream) const {
    launch_depth(ex, src, slices, false, false, stream, q0, rows, accumulate);
  }
  /// dst = scale * the 2D synthesis of every slice (as analyse_slices lays them out), + bias.
  template <class X>
  void synthesise_slices(const Exec& ex, const T* slices, const tensor_view<X>& dst, T scale,
                         const blfft::detail::nd<X>* bias, void* stream) const {
    for (int64_t t = 0; t < d_.count; ++t)
      plane_.synthesise(ex, slices + t * slice_, blfft::detail::depth_slice(dst, t), scale, bias,
                        stream);
  }

 private:
  /// The depth DFT between the slices and kept depths q0 .. q0 + rows - 1 (rows < 0: all).
  void launch_depth(const Exec& ex, const T* src, T* dst, bool stacked_in, bool block_out,
                    void* stream, int64_t q0 = 0, int64_t rows = -1,
                    bool accumulate = false) const {
    const bool fwd = dir_ == direction::analyse;
    const int64_t kept_rows = rows < 0 ? nd_ : rows;
    depth_dft<T> k;
    k.src = src;
    k.dst = dst;
    k.kept_depth = kept_depth_.get();
    k.q0 = static_cast<uint32_t>(q0);
    k.accumulate = accumulate;
    k.in_rows = static_cast<uint32_t>(fwd ? d_.count : kept_rows);
    k.out_rows = static_cast<uint32_t>(fwd ? kept_rows : d_.count);
    k.kept2 = static_cast<uint32_t>(kept2_);
    k.J = static_cast<uint32_t>(J_);
    k.CH = static_cast<uint32_t>(CH_);
    k.Ld = Ld_;
    k.offset = d_.offset;
    k.step = d_.step;
    k.analyse = fwd;
    k.stacked_in = stacked_in;
    k.block_out = block_out;
    launch_dims dims;
    BLFFT_EXPECTS(depth_dft_dims(k, dims), error_code::unsupported, "CUDA backend: a depth DFT of ",
                  k.out_rows, " rows exceeds the grid limits");
    ex.launch(dims, k, stream);
  }

  Plane plane_;
  bool volume_ = false;
  direction dir_;
  placement d_;
  int64_t nd_ = 1, kept2_ = 0, J_ = 0, CH_ = 1, Ld_ = 1, slice_ = 0;
  typename Exec::table kept_depth_;
};

}  // namespace blfft::cuda::detail
