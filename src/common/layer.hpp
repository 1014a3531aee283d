#pragma once
// The plan skeleton both backends build (src/plan.cpp, cuda/pipeline.hpp): the six transforms of
// a layer, each a batch of images placed on the layer's FFT grid, and the caller's tensors seen as
// strided images (docs/design.md 2).

#include <memory>
#include <type_traits>
#include <utility>

#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"
#include "image.hpp"

namespace blfft::detail {

/// A rank-3 (b, ch, w) or rank-4 (b, ch, h, w) view as an image view (rank 3: one row). Rank-5
/// (b, ch, d, h, w) views are cut into depth slices first (src/depth_transform.hpp).
template <class T>
image_view<T> as_image(const tensor_view<T>& v) {
  if (v.rank() == 3) return {v.data, v.strides[0], v.strides[1], 0, v.strides[2]};
  return {v.data, v.strides[0], v.strides[1], v.strides[2], v.strides[3]};
}

/// Depth slice i of a rank-5 (b, ch, d, h, w) view, as an image view: how both backends cut a
/// 3D tensor into the 2D images their transforms take (docs/design.md 1.9).
template <class T>
image_view<T> depth_slice(const tensor_view<T>& v, int64_t i) {
  return {v.data + i * v.strides[2], v.strides[0], v.strides[1], v.strides[3], v.strides[4]};
}

/// Where the samples of each tensor of a layer sit on its grid, per axis (h, w).
struct layer_placements {
  placement x_h, x_w;       ///< input (and grad_input): offset padding, step 1
  placement w_h, w_w;       ///< weight (and grad_weight): offset 0, step dilation
  placement y_h, y_w;       ///< output (and grad_output): offset 0, step stride
  placement x_d, w_d, y_d;  ///< the same along depth (3D; one sample for 1D and 2D)

  explicit layer_placements(const geometry& g)
      : x_h{g.params.input[0], g.params.padding[0], 1},
        x_w{g.params.input[1], g.params.padding[1], 1},
        w_h{g.params.kernel[0], 0, g.params.dilation[0]},
        w_w{g.params.kernel[1], 0, g.params.dilation[1]}, y_h{g.output[0], 0, g.params.stride[0]},
        y_w{g.output[1], 0, g.params.stride[1]},
        x_d{g.params.depth.input, g.params.depth.padding, 1},
        w_d{g.params.depth.kernel, 0, g.params.depth.dilation},
        y_d{g.depth_output, 0, g.params.depth.stride} {}
};

/// Whether a pass whose caller neither gives nor asks for the weight spectrum mixes from the 2D
/// spectra of the weight's KD depth slices (CPU: src/depth_mix.hpp; CUDA: cuda/pipeline.hpp)
/// instead of a whole weight spectrum, and folds the weight gradient into those slices. 3D
/// layers, always: the whole spectrum holds kept depths x kept2 matrices of F x C/g where the
/// slices hold KD x kept2, and at small batches it dwarfs everything else a pass touches (a
/// 64-channel 3x3x3 layer on 16x56x56 maps: 1.1 GB at rate 0 for a 442 KB weight).
inline bool mixes_from_depth_slices(const geometry& g) {
  return g.params.ndim == 3;
}

enum class transform_direction { analyse, synthesise };

/// The six transforms of a layer: three analyses (input, weight, output gradient -> spectra) and
/// three syntheses (output, input gradient, weight gradient <- spectra). `Transform` is the
/// backend's; `make(direction, images B, channels CH, placement h, placement w)` builds one and
/// returns a std::unique_ptr<Transform>. A `make` that also takes the depth placement
/// (direction, B, CH, placement d, placement h, placement w) gets it (3D layers).
template <class Transform>
struct layer_transforms {
  std::unique_ptr<Transform> x_in, w_in, g_in, y_out, dx_out, dw_out;

  template <class Make>
  layer_transforms(const geometry& g, Make&& make) {
    const layer_placements at(g);
    const auto& p = g.params;
    const int64_t N = p.batch, C = p.in_channels, F = p.out_channels, Cg = g.in_per_group;
    using dir = transform_direction;
    const auto build = [&](dir d, int64_t B, int64_t CH, placement pd, placement ph, placement pw) {
      if constexpr (std::is_invocable_v<Make&, dir, int64_t, int64_t, placement, placement,
                                        placement>)
        return make(d, B, CH, pd, ph, pw);
      else
        return make(d, B, CH, ph, pw);
    };
    x_in = build(dir::analyse, N, C, at.x_d, at.x_h, at.x_w);
    w_in = build(dir::analyse, F, Cg, at.w_d, at.w_h, at.w_w);
    g_in = build(dir::analyse, N, F, at.y_d, at.y_h, at.y_w);
    y_out = build(dir::synthesise, N, F, at.y_d, at.y_h, at.y_w);
    dx_out = build(dir::synthesise, N, C, at.x_d, at.x_h, at.x_w);
    dw_out = build(dir::synthesise, F, Cg, at.w_d, at.w_h, at.w_w);
  }

  /// Destroys the transforms now (the CUDA plan frees their tables with its device current).
  void reset() {
    for (auto* t : {&x_in, &w_in, &g_in, &y_out, &dx_out, &dw_out}) t->reset();
  }
};

}  // namespace blfft::detail
