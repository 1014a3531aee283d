#pragma once
// The CUDA plan's host orchestration, written once and templated on an executor, so that the CPU
// tests run exactly the pipeline that the GPU runs (docs/design.md section 3):
//   device_executor (device_executor.hpp): kernel launches, cuFFT, a stream-ordered memory pool;
//   host emulator (tests/cpp/cuda_emulator.hpp): loops over each launch grid running the same
//   __host__ __device__ kernel code, and a reference DFT in place of cuFFT.
//
// The pipeline mirrors the CPU backend (src/plan.cpp, src/pruned_transform.cpp's fft engine):
//   analyse     pack placed rows -> batched r2c rows -> gather the kept columns into contiguous
//               columns -> batched c2c columns -> gather the kept rows into the frequency-major
//               planar spectrum S[k][re|im][image];
//   mix         per kept frequency and group, one complex GEMM: the own kernel (kernels.hpp:
//               mix_kernel) or one strided batched real GEMM on cuBLAS in the stacked form
//               (cublas_forward / _input_grad / _weight_grad), by the rule of mix_cost;
//   synthesise  scatter the kept bins onto zeroed columns -> c2c inverse -> scatter the rows the
//               output needs onto zeroed half-spectrum rows -> c2r -> crop, stride, scale, bias.
// The all-zero rows of the padded grid are never transformed, only kept columns go through the
// column pass, and the inverse produces only the rows the (cropped, strided) output needs: the
// full spectrum is never materialised.
//
// Why pack/unpack kernels and not cuFFT callbacks: legacy callbacks need the static cuFFT
// library and relocatable device code (the nvidia-cufft wheel ships only libcufft.so), LTO
// callbacks need nvJitLink at run time; callbacks would not prune the row and column passes
// anyway, and plain kernels are what the CPU emulation can run. The gathers are shared-memory
// tile transposes so both their loads and their stores are coalesced.
//
// An executor `Exec` provides (all const, thread-safe):
//   auto activate(bool nothrow = false)   makes the executor's device current while it lives
//   void check_stream(void* stream)       throws unless the stream belongs to that device
//   template <class U> temp<U> make_temp(int64_t n, void* stream)   stream-ordered scratch, .get()
//   table upload(const std::vector<int64_t>&)                        persistent index table, .get()
//   template <class K> void launch(const launch_dims&, const K&, void* stream)
//   void fft(const fft_desc&, const void* in, void* out, void* stream)
//   void gemm(const gemm_desc&, const void* a, const void* b, void* c, void* stream)  (cuBLAS)
//   void check_pointer(const void* p, const char* what)      throws unless p is usable memory
//   void zero(void* p, std::size_t bytes, void* stream)
//   void copy_to_host(void* dst, const void* src, std::size_t bytes, void* stream)  (synchronous)

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "blfft/cuda.hpp"
#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"
#include "call_checks.hpp"  // src/common/: the plan skeleton and checks shared with the CPU plan
#include "check.hpp"
#include "fft_desc.hpp"
#include "gemm_desc.hpp"
#include "kernels.hpp"
#include "layer.hpp"
#include "volume_stage.hpp"

namespace blfft::cuda::detail {

using blfft::detail::as_image;
using blfft::detail::cat;
using blfft::detail::checked_add;
using blfft::detail::checked_mul;
using blfft::detail::fail;
using blfft::detail::layer_placements;
using blfft::detail::layer_transforms;
using blfft::detail::nd;
using blfft::detail::placement;
using blfft::detail::transform_direction;

// ---------------------------------------------------------------------------------------------
// Argument checks: the CPU plan's (src/common/call_checks.hpp), with the executor's pointer check
// (device memory of the plan's device)
// ---------------------------------------------------------------------------------------------

template <class Exec>
struct on_device {
  const Exec* ex;
  void operator()(const void* p, const char* name) const { ex->check_pointer(p, name); }
};

template <class Exec>
blfft::detail::call_checks<on_device<Exec>> checks_for(const Exec& ex, const geometry& g) {
  return {g, on_device<Exec>{&ex}};
}

// ---------------------------------------------------------------------------------------------
// Pruned transforms
// ---------------------------------------------------------------------------------------------

/// How a transform stage runs: one fused kernel (dft_analyse / dft_synthesise), or the cuFFT
/// chain (pack, r2c, gather, c2c, gather and back); automatic: fused where it fits in shared
/// memory (fused_images_per_block), cuFFT for the large grids.
enum class transform_engine { automatic, fused, cufft };

/// Scalars per scratch buffer above which the images of one transform are processed in chunks.
constexpr int64_t default_chunk_scalars = int64_t(1) << 26;
constexpr int64_t max_chunk_images = int64_t(1) << 20;

/// B x CH images placed on the grid of a geometry, to or from its compressed spectrum.
template <class T, class Exec>
class transform_stage {
 public:
  using direction = transform_direction;

  transform_stage(const Exec& ex, const geometry& g, direction dir, int64_t B, int64_t CH,
                  placement h, placement w, int64_t chunk_scalars = default_chunk_scalars,
                  transform_engine engine = transform_engine::automatic)
      : dir_(dir), Lh_(g.grid[0]), Lw_(g.grid[1]), bins_(g.bins_w),
        nr_(static_cast<int64_t>(g.kept_rows.size())),
        nc_(static_cast<int64_t>(g.kept_cols.size())), J_(checked_mul(B, CH, "images")), CH_(CH),
        h_(h), w_(w) {
    BLFFT_EXPECTS(J_ < max_flat_index && Lw_ < max_flat_index && Lh_ < max_flat_index,
                  error_code::unsupported, "CUDA backend: ", J_, " images on a ", Lh_, " x ", Lw_,
                  " grid exceed its 32-bit index limits");
    const int64_t per_image =
        std::max({h.count * Lw_, 2 * h.count * bins_, Lh_ > 1 ? 2 * nc_ * Lh_ : int64_t(0)});
    BLFFT_EXPECTS(per_image < max_flat_index / 2, error_code::unsupported,
                  "CUDA backend: one image's rows (", per_image,
                  " scalars) exceed the 32-bit index limits");
    chunk_ = std::clamp<int64_t>(chunk_scalars / per_image, 1, std::min(J_, max_chunk_images));
    chunk_ = std::min(chunk_, (max_flat_index / 2) / per_image);

    // Index tables, concatenated into one upload; offsets are in scalars (interleaved complex
    // counts 2 per element), negative = absent (read as zero).
    std::vector<int64_t> t;
    const auto segment = [&t](std::vector<int64_t> v) {
      const auto at = static_cast<int64_t>(t.size());
      t.insert(t.end(), v.begin(), v.end());
      return at;
    };
    std::vector<int64_t> row_of_kept(static_cast<size_t>(Lh_), -1);    // grid row -> a
    std::vector<int64_t> col_of_kept(static_cast<size_t>(bins_), -1);  // rfft column -> q
    for (int64_t a = 0; a < nr_; ++a) row_of_kept[static_cast<size_t>(g.kept_rows[a])] = a;
    for (int64_t q = 0; q < nc_; ++q) col_of_kept[static_cast<size_t>(g.kept_cols[q])] = q;
    // The fused engine (one kernel, DFT matrices in shared memory) where a block's matrices and
    // images fit in shared memory: small maps and kernels; cuFFT for the large grids.
    const int64_t G =
        fused_images_per_block<T>(h.count, w.count, nr_, nc_, dir == direction::analyse);
    fused_ = engine == transform_engine::fused || (engine == transform_engine::automatic && G > 0);
    BLFFT_EXPECTS(!fused_ || G > 0, error_code::unsupported, "CUDA backend: a ", h.count, " x ",
                  w.count, " fused transform does not fit in shared memory");
    fused_images_ = G;
    kept_rows_raw_at_ = segment(std::vector<int64_t>(g.kept_rows.begin(), g.kept_rows.end()));
    kept_cols_raw_at_ = segment(std::vector<int64_t>(g.kept_cols.begin(), g.kept_cols.end()));
    if (dir == direction::analyse) {
      std::vector<int64_t> cols(static_cast<size_t>(nc_)), rows(static_cast<size_t>(nr_));
      for (int64_t q = 0; q < nc_; ++q) cols[q] = 2 * g.kept_cols[q];
      for (int64_t a = 0; a < nr_; ++a) rows[a] = 2 * g.kept_rows[a];
      std::vector<int64_t> data_row(static_cast<size_t>(Lh_), -1);  // grid row -> row buffer
      for (int64_t r = 0; r < h.count; ++r) data_row[h.offset + h.step * r] = 2 * r * bins_;
      kept_cols_at_ = segment(cols);
      kept_rows_at_ = segment(rows);
      data_rows_at_ = segment(data_row);
    } else {
      const int64_t two_j = 2 * J_;
      std::vector<int64_t> spec_row(static_cast<size_t>(Lh_)), col_src(static_cast<size_t>(bins_));
      for (int64_t r = 0; r < Lh_; ++r) {
        const int64_t a = row_of_kept[r];
        spec_row[r] = a < 0 ? -1 : a * nc_ * two_j;
      }
      for (int64_t c = 0; c < bins_; ++c) {
        const int64_t q = col_of_kept[c];
        // 2D: into contiguous columns (q * Lh complex); 1D: straight from the spectrum.
        col_src[c] = q < 0 ? -1 : (Lh_ > 1 ? 2 * q * Lh_ : q * two_j);
      }
      spec_rows_at_ = segment(spec_row);
      col_src_at_ = segment(col_src);
    }
    tables_ = ex.upload(t);
  }

  int64_t chunk() const { return chunk_; }
  int64_t images() const { return J_; }

  /// spectrum[k][plane][j] for all kept k and the J images of src; with `block_form`, the
  /// 2 x 2 real block form of each frequency's (B x CH) matrix instead (stacked_store: twice the
  /// size), for the backward's mixing on cuBLAS.
  /// X: the images' element type (T, or a 16-bit type computed in T).
  template <class X>
  void analyse(const Exec& ex, const image_view<const X>& src, T* spectrum, void* stream,
               bool block_form = false) const {
    if (fused_) {
      dft_analyse<T, X> k;
      k.src = src;
      k.spectrum = spectrum;
      k.block_form = block_form;
      return launch_fused(ex, k, stream);
    }
    if (block_form) {  // the cuFFT chain writes the planar form: restack it
      auto planar = ex.template make_temp<T>(2 * nr_ * nc_ * J_, stream);
      analyse(ex, src, planar.get(), stream);
      return launch_restack(ex, planar.get(), spectrum, true, stream);
    }
    const auto [rows, half, cols] = make_scratch(ex, stream);
    const int64_t* tab = tables_.get();
    for (int64_t j0 = 0; j0 < J_; j0 += chunk_) {
      const int64_t m = std::min(chunk_, J_ - j0);
      if (channels_adjacent(src, static_cast<uint32_t>(CH_))) {
        pack_rows_tiled<T, X> pk;
        pk.src = src;
        pk.rows = rows.get();
        pk.images = static_cast<uint32_t>(m);
        pk.rl = rows_from(j0);
        ex.launch(row_tile_dims(pk, pk.rl.Lw), pk, stream);
      } else {
        pack_rows<T, X> pk;
        pk.src = src;
        pk.rows = rows.get();
        pk.n = static_cast<uint32_t>(m * h_.count * Lw_);
        pk.rl = rows_from(j0);
        ex.launch(flat_dims(pk.n), pk, stream);
      }

      ex.fft(row_fft(fft_type::r2c, m), rows.get(), half.get(), stream);

      if (Lh_ > 1) {
        // Kept columns of the rows that hold data -> contiguous full-height columns
        // cols[j][q][t] (zero at the rows without data).
        tile_copy<T> b;
        b.src = half.get();
        b.src_z = 2 * h_.count * bins_;
        b.src_u = offset_map::from(tab + kept_cols_at_);
        b.src_v = offset_map::from(tab + data_rows_at_);
        b.dst = cols.get();
        b.dst_z = 2 * nc_ * Lh_;
        b.dst_u = offset_map::affine(2 * Lh_);
        b.dst_v = offset_map::affine(2);
        launch_copy(ex, b, m, nc_, Lh_, stream);

        ex.fft(col_fft(fft_type::c2c_forward, m), cols.get(), cols.get(), stream);

        // Kept rows -> spectrum[(a * nc + q)][plane][j0 + j]; z = q, u = a, v = j.
        tile_copy<T> c;
        c.src = cols.get();
        c.src_z = 2 * Lh_;
        c.src_u = offset_map::from(tab + kept_rows_at_);
        c.src_v = offset_map::affine(2 * nc_ * Lh_);
        c.dst = spectrum + j0;
        c.dst_z = 2 * J_;
        c.dst_im = J_;
        c.dst_u = offset_map::affine(nc_ * 2 * J_);
        c.dst_v = offset_map::affine(1);
        launch_copy(ex, c, nc_, nr_, m, stream);
      } else {
        // One grid row: the row transform is the whole transform. u = q, v = j.
        tile_copy<T> c;
        c.src = half.get();
        c.src_u = offset_map::from(tab + kept_cols_at_);
        c.src_v = offset_map::affine(2 * bins_);
        c.dst = spectrum + j0;
        c.dst_im = J_;
        c.dst_u = offset_map::affine(2 * J_);
        c.dst_v = offset_map::affine(1);
        launch_copy(ex, c, 1, nc_, m, stream);
      }
    }
  }

  /// dst = scale * inverse(spectrum) at the placed samples, plus bias[ch] when bias is non-null.
  /// `stacked`: the spectrum is the forward's stacked products (stacked_load combines them).
  template <class X>
  void synthesise(const Exec& ex, const T* spectrum, const image_view<X>& dst, T scale,
                  const nd<X>* bias, void* stream, bool stacked = false) const {
    if (fused_) {
      dft_synthesise<T, X> k;
      k.spectrum = spectrum;
      k.dst = dst;
      k.bias = bias;
      k.scale = scale;
      k.stacked = stacked;
      return launch_fused(ex, k, stream);
    }
    if (stacked) {  // the cuFFT chain reads the planar form: combine into it first
      auto planar = ex.template make_temp<T>(2 * nr_ * nc_ * J_, stream);
      launch_restack(ex, spectrum, planar.get(), false, stream);
      return synthesise(ex, planar.get(), dst, scale, bias, stream);
    }
    const auto [rows, half, cols] = make_scratch(ex, stream);
    const int64_t* tab = tables_.get();
    for (int64_t j0 = 0; j0 < J_; j0 += chunk_) {
      const int64_t m = std::min(chunk_, J_ - j0);
      if (Lh_ > 1) {
        // Spectrum -> full-height columns cols[j][q][t], zero at the rows not kept.
        // z = q, u = j (contiguous in the spectrum), v = t (contiguous in the columns).
        tile_copy<T> c;
        c.src = spectrum + j0;
        c.src_z = 2 * J_;
        c.src_im = J_;
        c.src_u = offset_map::affine(1);
        c.src_v = offset_map::from(tab + spec_rows_at_);
        c.dst = cols.get();
        c.dst_z = 2 * Lh_;
        c.dst_u = offset_map::affine(2 * nc_ * Lh_);
        c.dst_v = offset_map::affine(2);
        launch_copy(ex, c, nc_, m, Lh_, stream);

        ex.fft(col_fft(fft_type::c2c_inverse, m), cols.get(), cols.get(), stream);

        // The rows the output needs -> half-spectrum rows, zero at the columns not kept.
        // z = j, u = r, v = c.
        tile_copy<T> b;
        b.src = cols.get();
        b.src_z = 2 * nc_ * Lh_;
        b.src_u = offset_map::affine(2 * h_.step, 2 * h_.offset);
        b.src_v = offset_map::from(tab + col_src_at_);
        b.dst = half.get();
        b.dst_z = 2 * h_.count * bins_;
        b.dst_u = offset_map::affine(2 * bins_);
        b.dst_v = offset_map::affine(2);
        launch_copy(ex, b, m, h_.count, bins_, stream);
      } else {
        // u = j, v = c.
        tile_copy<T> c;
        c.src = spectrum + j0;
        c.src_im = J_;
        c.src_u = offset_map::affine(1);
        c.src_v = offset_map::from(tab + col_src_at_);
        c.dst = half.get();
        c.dst_u = offset_map::affine(2 * bins_);
        c.dst_v = offset_map::affine(2);
        launch_copy(ex, c, 1, m, bins_, stream);
      }

      ex.fft(row_fft(fft_type::c2r, m), half.get(), rows.get(), stream);

      if (channels_adjacent(dst, static_cast<uint32_t>(CH_))) {
        unpack_rows_tiled<T, X> up;
        up.rows = rows.get();
        up.dst = dst;
        up.bias = bias;
        up.scale = scale;
        up.images = static_cast<uint32_t>(m);
        up.rl = rows_from(j0);
        ex.launch(row_tile_dims(up, up.rl.Rw), up, stream);
      } else {
        unpack_rows<T, X> up;
        up.rows = rows.get();
        up.dst = dst;
        up.bias = bias;
        up.scale = scale;
        up.n = static_cast<uint32_t>(m * h_.count * w_.count);
        up.rl = rows_from(j0);
        ex.launch(flat_dims(up.n), up, stream);
      }
    }
  }

 private:
  /// The rows buffer of the row transforms for the chunk from image j0.
  row_layout rows_from(int64_t j0) const {
    row_layout l;
    l.Lw = static_cast<uint32_t>(Lw_);
    l.Rh = static_cast<uint32_t>(h_.count);
    l.Rw = static_cast<uint32_t>(w_.count);
    l.CH = static_cast<uint32_t>(CH_);
    l.j0 = static_cast<uint32_t>(j0);
    l.off_w = static_cast<int32_t>(w_.offset);
    l.step_w = static_cast<int32_t>(w_.step);
    return l;
  }
  /// The cuFFT chain's scratch for one chunk: data rows, their half spectra, kept columns (2D).
  struct scratch {
    typename Exec::template temp<T> rows, half, cols;
  };
  scratch make_scratch(const Exec& ex, void* stream) const {
    return {ex.template make_temp<T>(chunk_ * h_.count * Lw_, stream),
            ex.template make_temp<T>(2 * chunk_ * h_.count * bins_, stream),
            ex.template make_temp<T>(Lh_ > 1 ? 2 * chunk_ * nc_ * Lh_ : 0, stream)};
  }

  void launch_restack(const Exec& ex, const T* src, T* dst, bool to_block, void* stream) const {
    const int64_t n = nr_ * nc_ * J_;
    BLFFT_EXPECTS(4 * n < max_flat_index, error_code::unsupported, "CUDA backend: a stacked ",
                  "spectrum of ", 4 * n, " scalars exceeds the 32-bit index limits");
    restack<T> k;
    k.src = src;
    k.dst = dst;
    k.n = static_cast<uint32_t>(n);
    k.J = static_cast<uint32_t>(J_);
    k.CH = static_cast<uint32_t>(CH_);
    k.to_block = to_block;
    ex.launch(flat_dims(n), k, stream);
  }

  /// One launch of a fused kernel over all images (no scratch, no chunks).
  template <class K>
  void launch_fused(const Exec& ex, K& k, void* stream) const {
    k.f = fused(tables_.get());
    k.j0 = 0;
    k.images = static_cast<uint32_t>(J_);
    ex.launch(fused_dims(J_, fused_images_), k, stream);
  }

  fused_shape fused(const int64_t* tab) const {
    fused_shape f;
    f.Rh = static_cast<uint32_t>(h_.count);
    f.Rw = static_cast<uint32_t>(w_.count);
    f.nr = static_cast<uint32_t>(nr_);
    f.nc = static_cast<uint32_t>(nc_);
    f.Lh = static_cast<uint32_t>(Lh_);
    f.Lw = static_cast<uint32_t>(Lw_);
    f.CH = static_cast<uint32_t>(CH_);
    f.J = static_cast<uint32_t>(J_);
    f.off_h = static_cast<int32_t>(h_.offset);
    f.step_h = static_cast<int32_t>(h_.step);
    f.off_w = static_cast<int32_t>(w_.offset);
    f.step_w = static_cast<int32_t>(w_.step);
    f.G = static_cast<uint32_t>(fused_images_);
    f.kept_rows = tab + kept_rows_raw_at_;
    f.kept_cols = tab + kept_cols_raw_at_;
    return f;
  }
  /// `batch` contiguous transforms of length n in T's precision, idist / odist apart.
  static fft_desc lines(fft_type type, int64_t n, int64_t batch, int64_t idist, int64_t odist) {
    fft_desc d;
    d.type = type;
    d.double_precision = sizeof(T) == 8;
    d.n = n;
    d.batch = batch;
    d.idist = idist;
    d.odist = odist;
    return d;
  }
  /// The row transforms of m images (r2c or c2r: Lw samples, bins_ bins a row).
  fft_desc row_fft(fft_type type, int64_t m) const {
    const bool r2c = type == fft_type::r2c;
    return lines(type, Lw_, m * h_.count, r2c ? Lw_ : bins_, r2c ? bins_ : Lw_);
  }
  /// The column transforms of m images (the nc_ kept columns, full height).
  fft_desc col_fft(fft_type type, int64_t m) const { return lines(type, Lh_, m * nc_, Lh_, Lh_); }
  static void launch_copy(const Exec& ex, tile_copy<T>& k, int64_t Z, int64_t U, int64_t V,
                          void* stream) {
    k.Z = static_cast<uint32_t>(Z);
    k.U = static_cast<uint32_t>(U);
    k.V = static_cast<uint32_t>(V);
    launch_dims d;
    BLFFT_EXPECTS(Z < max_flat_index && U < max_flat_index && V < max_flat_index &&
                      tile_copy_dims(k, d),
                  error_code::unsupported, "CUDA backend: a ", Z, " x ", U, " x ", V,
                  " gather exceeds the grid limits");
    ex.launch(d, k, stream);
  }

  direction dir_;
  int64_t Lh_, Lw_, bins_, nr_, nc_, J_, CH_;
  placement h_, w_;
  int64_t chunk_ = 1;
  typename Exec::table tables_;
  int64_t kept_cols_at_ = 0, kept_rows_at_ = 0, data_rows_at_ = 0;  // analyse
  int64_t spec_rows_at_ = 0, col_src_at_ = 0;                       // synthesise
  bool fused_ = false;        // one dft_analyse / dft_synthesise launch instead of the chain
  int64_t fused_images_ = 0;  // images per block of the fused kernels
  int64_t kept_rows_raw_at_ = 0, kept_cols_raw_at_ = 0;  // grid rows / rfft columns, as indices
};

// ---------------------------------------------------------------------------------------------
// The mixing engines' cost model
// ---------------------------------------------------------------------------------------------

enum class mix_pass { forward, input_grad, weight_grad };

/// What the engine rule needs to know about one mixing pass.
struct mix_cost_inputs {
  mix_pass pass = mix_pass::forward;
  int64_t kept = 1, batch = 1, in_channels = 1, out_channels = 1, in_per_group = 1, groups = 1;
  /// KH KW when the own kernel would mix from the taps (forward, input grad) or reduce the
  /// weight gradient to them (mix_to_taps), else 0
  int64_t taps = 0;
  int64_t tap_slices = 1;  ///< mix_to_taps: slices of partial tap sums (1: the gradient itself)
  int64_t scalar_bytes = 4;
  bool tf32 = false;
};

/// The inputs for one pass of the layer of `g`: `taps`, the own kernel would mix from the
/// weight's taps; T's size in `scalar_bytes`; `tf32`, TF32 is allowed.
inline mix_cost_inputs mix_cost_inputs_of(const geometry& g, mix_pass pass, bool taps,
                                          int64_t scalar_bytes, bool tf32) {
  const auto& p = g.params;
  mix_cost_inputs in;
  in.pass = pass;
  in.kept = g.kept;
  in.batch = p.batch;
  in.in_channels = p.in_channels;
  in.out_channels = p.out_channels;
  in.in_per_group = g.in_per_group;
  in.groups = p.groups;
  in.taps = taps ? p.kernel[0] * p.kernel[1] : 0;
  in.scalar_bytes = scalar_bytes;
  in.tf32 = tf32;
  return in;
}

/// The H200 figures the rule models with (NVIDIA's H200 datasheet, dense): HBM3e 4.8 TB/s peak,
/// 4.0 TB/s taken as reachable; FP32 on CUDA cores 67 TFLOP/s (the own kernel, and cuBLAS with
/// CUBLAS_COMPUTE_32F); TF32 tensor cores 495 TFLOP/s; FP64 34 TFLOP/s on CUDA cores, 67 on
/// tensor cores (cuBLAS DGEMM); about 4 us per launch.
struct gpu_model {
  static constexpr double bytes_per_s = 4.0e12, fp32 = 67e12, tf32 = 495e12, fp64 = 34e12,
                          fp64_tensor = 67e12, launch_s = 4e-6;
};

/// Modelled seconds of one pass's mixing on an engine, counting what the choice changes: its
/// operands' global traffic (the output spectrum written and read back by the synthesis; for
/// cuBLAS the forward's stacked products are twice the output spectrum, and the grad's block
/// form doubles what its analysis writes and the mixing reads; mixing from the taps reads no
/// weight spectrum, while cuBLAS then makes one: the weight read, its spectrum written),
/// max(bytes / bandwidth, flops / rate) plus the launches (cuBLAS with groups: 2 per group).
/// Own kernel: 3 real multiply-adds per complex one (Gauss), plus the taps' twiddling; cuBLAS:
/// 4, at the tensor-core rate when TF32 is allowed.
inline double mix_cost(const mix_cost_inputs& in, bool cublas) {
  const double k = static_cast<double>(in.kept), n = static_cast<double>(in.batch),
               c = static_cast<double>(in.in_channels), f = static_cast<double>(in.out_channels),
               cg = static_cast<double>(in.in_per_group);
  const double sx = 2 * k * n * c, sw = 2 * k * f * cg, sy = 2 * k * n * f;  // spectra, scalars
  const double products = k * n * f * cg;                                    // complex MACs
  double scalars = 0, flops = 0, launches = 1;
  const bool taps = in.taps > 0;
  const double w = f * cg * static_cast<double>(in.taps);  // the weight's taps
  const double s_out = in.pass == mix_pass::forward      ? sy
                       : in.pass == mix_pass::input_grad ? sx
                                                         : sw;
  if (!cublas && in.pass == mix_pass::weight_grad && taps) {
    // Fused with the synthesis: no dW spectrum; partial tap sums written and read back when
    // sliced; the taps' inverse DFT in the epilogue (2 multiply-adds per tap and frequency);
    // one launch less (the synthesis), one more for tap_sum.
    const double slices = static_cast<double>(in.tap_slices);
    scalars = sy + sx + (in.tap_slices > 1 ? 2 * slices * w : 0);
    flops = 6 * products + 4 * k * f * cg * static_cast<double>(in.taps);
    launches = in.tap_slices > 1 ? 1 : 0;
  } else if (!cublas) {
    const double operands = in.pass == mix_pass::forward      ? sx + (taps ? w : sw)
                            : in.pass == mix_pass::input_grad ? sy + (taps ? w : sw)
                                                              : sy + sx;
    scalars = operands + 2 * s_out;
    flops = 6 * products;
    // The taps path twiddles the weight per block row (64 outputs per block).
    if (taps) flops += 8 * static_cast<double>((in.batch + 63) / 64) * k * f * cg * in.taps;
  } else {
    const double made_w = taps ? w + sw : 0;  // the weight spectrum the taps path avoided
    if (in.pass == mix_pass::forward)
      scalars = sx + sw + made_w + 2 * (2 * s_out);
    else if (in.pass == mix_pass::input_grad)
      scalars = 3 * sy + sw + made_w + 2 * s_out;
    else
      scalars = 3 * sy + sx + 2 * s_out;
    flops = 8 * products;
    if (in.groups > 1) launches = 2 * static_cast<double>(in.groups);
    if (taps && in.pass != mix_pass::weight_grad) launches += 1;
  }
  const bool dbl = in.scalar_bytes == 8;
  const double rate = cublas ? (dbl       ? gpu_model::fp64_tensor
                                : in.tf32 ? gpu_model::tf32
                                          : gpu_model::fp32)
                             : (dbl ? gpu_model::fp64 : gpu_model::fp32);
  const double bytes = scalars * static_cast<double>(in.scalar_bytes);
  return std::max(bytes / gpu_model::bytes_per_s, flops / rate) + launches * gpu_model::launch_s;
}

// ---------------------------------------------------------------------------------------------
// The plan pipeline
// ---------------------------------------------------------------------------------------------

template <class T, class Exec>
class pipeline {
  // 1D and 2D: the 2D stage as it is; 3D: it on every depth slice, and the depth DFT.
  using stage = volume_stage<T, Exec, transform_stage<T, Exec>>;

  static layer_transforms<stage> make_stages(const Exec& ex, const geometry& g, int64_t chunk,
                                             transform_engine engine) {
    const auto on = ex.activate();  // the index tables live on the executor's device
    return layer_transforms<stage>(g, [&](transform_direction d, int64_t B, int64_t CH,
                                          placement pd, placement h, placement w) {
      return std::make_unique<stage>(ex, g, d, B, CH, pd, h, w, chunk, engine);
    });
  }

  static const geometry& checked_counts(const geometry& g) {
    const auto& p = g.params;
    BLFFT_EXPECTS(p.batch < max_flat_index && p.in_channels < max_flat_index &&
                      p.out_channels < max_flat_index,
                  error_code::unsupported, "CUDA backend: batch and channel counts must be < 2^31");
    return g;
  }

 public:
  /// `chunk_scalars`: scratch size per transform above which images go in chunks (tests lower
  /// it to exercise the chunked path); `engine`: the transforms' engine (tests force each one).
  pipeline(const Exec& ex, const geometry& geo, const cuda_plan_options& o = {},
           int64_t chunk_scalars = default_chunk_scalars,
           transform_engine engine = transform_engine::automatic)
      : ex_(ex), g_(checked_counts(geo)), tile_(o.tile), engine_(o.engine),
        fuse_weight_grad_(o.fuse_weight_grad), stages_(make_stages(ex_, g_, chunk_scalars, engine)),
        kept_(upload_kept(ex_, g_)),
        scale_(T(1) / static_cast<T>(g_.depth_grid * g_.grid[0] * g_.grid[1])) {}

  ~pipeline() {
    const auto on = ex_.activate(true);  // tables are freed with their device current
    stages_.reset();
    kept_ = typename Exec::table();
  }
  pipeline(const pipeline&) = delete;
  pipeline& operator=(const pipeline&) = delete;

  const geometry& geo() const { return g_; }
  const Exec& executor() const { return ex_; }

  // Every public call makes the plan's device current for its duration (and restores the
  // caller's), whatever device the caller had current, and checks that the stream is that
  // device's, then runs the CPU plan's argument checks with this executor's pointer check.

  // X: the tensors' element type, T's or (T = float) half / bfloat16, read and written as X and
  // computed in T; spectra are T. The taps path reads X weights, so the taps / spectrum choice
  // (taps_path) is the same for every X.

  template <class X>
  void input_spectrum(const tensor_view<const X>& x, T* xs, void* stream) const {
    const auto on = ex_.activate();
    ex_.check_stream(stream);
    checks().input_spectrum(x, xs);
    stages_.x_in->analyse(ex_, x, xs, stream);
  }

  template <class X>
  void weight_spectrum(const tensor_view<const X>& w, T* ws, void* stream) const {
    const auto on = ex_.activate();
    ex_.check_stream(stream);
    checks().weight_spectrum(w, ws);
    stages_.w_in->analyse(ex_, w, ws, stream);
  }

  template <class X>
  void forward(const tensor_view<const X>& x, const tensor_view<const nd<X>>& w, const nd<X>* bias,
               const tensor_view<nd<X>>& y, T* xs, T* ws, void* stream) const {
    const auto on = ex_.activate();
    ex_.check_stream(stream);
    checks().forward(x, w, bias, y, xs, ws);
    auto x_tmp = ex_.template make_temp<T>(xs ? 0 : g_.x_spectrum_size(), stream);
    if (!xs) xs = x_tmp.get();
    stages_.x_in->analyse(ex_, x, xs, stream);
    if (!ws && taps_path(mix_pass::forward)) {  // no weight spectrum asked for: from the taps
      auto ys = ex_.template make_temp<T>(g_.y_spectrum_size(), stream);
      mix_forward(xs, nullptr, ys.get(), stream, &w);
      stages_.y_out->synthesise(ex_, ys.get(), y, scale_, bias, stream);
      return;
    }
    if (!ws && blfft::detail::mixes_from_depth_slices(g_)) {  // 3D: from the weight's slices
      const auto [N, C, F, Cg, Fg] = counts();
      const bool blas = use_cublas(mix_pass::forward, false);
      auto ys = ex_.template make_temp<T>((blas ? 2 : 1) * g_.y_spectrum_size(), stream);
      for_depth_chunks(w, stream, [&](const T* wc, int64_t k0, int64_t kn) {
        if (blas)
          cublas_forward(xs + k0 * 2 * N * C, wc, ys.get() + k0 * 4 * N * F, stream, kn);
        else
          mix_forward<T>(xs + k0 * 2 * N * C, wc, ys.get() + k0 * 2 * N * F, stream, nullptr, kn);
      });
      stages_.y_out->synthesise(ex_, ys.get(), y, scale_, bias, stream, blas);
      return;
    }
    auto w_tmp = ex_.template make_temp<T>(ws ? 0 : g_.w_spectrum_size(), stream);
    if (!ws) ws = w_tmp.get();
    stages_.w_in->analyse(ex_, w, ws, stream);
    run_forward_spectra(xs, ws, bias, y, stream);
  }

  template <class X>
  void forward_spectra(const T* xs, const T* ws, const nd<X>* bias, const tensor_view<X>& y,
                       void* stream) const {
    const auto on = ex_.activate();
    ex_.check_stream(stream);
    checks().forward_spectra(xs, ws, bias, y);
    run_forward_spectra(xs, ws, bias, y, stream);
  }

  template <class X>
  void backward(const tensor_view<const X>& grad_out, const T* xs, const T* ws,
                const tensor_view<nd<X>>* grad_input, const tensor_view<nd<X>>* grad_weight,
                nd<X>* grad_bias, void* stream) const {
    const auto on = ex_.activate();
    ex_.check_stream(stream);
    checks().backward(grad_out, xs, ws, nullptr, grad_input, grad_weight, grad_bias);
    run_backward(grad_out, xs, ws, nullptr, grad_input, grad_weight, grad_bias, stream);
  }

  /// backward() with the weight instead of its spectrum: the input gradient's mixing reads the
  /// taps (taps_path), or the spectrum is made for the call.
  template <class X>
  void backward_with_weight(const tensor_view<const X>& grad_out, const T* xs,
                            const tensor_view<const nd<X>>& weight,
                            const tensor_view<nd<X>>* grad_input,
                            const tensor_view<nd<X>>* grad_weight, nd<X>* grad_bias,
                            void* stream) const {
    const auto on = ex_.activate();
    ex_.check_stream(stream);
    checks().backward(grad_out, xs, nullptr, &weight, grad_input, grad_weight, grad_bias);
    run_backward(grad_out, xs, nullptr, &weight, grad_input, grad_weight, grad_bias, stream);
  }

  template <class X>
  void input_grad(const tensor_view<const X>& grad_out, const T* ws,
                  const tensor_view<nd<X>>& grad_input, void* stream) const {
    backward(grad_out, nullptr, ws, &grad_input, nullptr, nullptr, stream);
  }
  template <class X>
  void weight_grad(const tensor_view<const X>& grad_out, const T* xs,
                   const tensor_view<nd<X>>& grad_weight, void* stream) const {
    backward(grad_out, xs, nullptr, nullptr, &grad_weight, nullptr, stream);
  }
  template <class X>
  void bias_grad(const tensor_view<const X>& grad_out, nd<X>* grad_bias, void* stream) const {
    const auto on = ex_.activate();
    ex_.check_stream(stream);
    checks().bias_grad(grad_out, grad_bias);
    run_bias_grad(grad_out, grad_bias, stream);
  }

  // ---- the three mixing passes (public for the tests) ----------------------------------------

  // Each pass: A and B, then C (mix_operand, mix_result: the spectra as operand() and result()
  // lay them out), then the M, N, K of the product per kept frequency and group.

  // `weight`: the weight's spectrum is computed from its taps (X elements) inside the mixing (ws
  // unused). X is deduced from it; callers that pass a null one before `kept` name it (<T>).

  // `kept`: the number of kept frequencies from the pointers on (0: all of them).

  template <class X = T>
  void mix_forward(const T* xs, const T* ws, T* ys, void* stream,
                   const tensor_view<const X>* weight = nullptr, int64_t kept = 0) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const auto taps = weight ? taps_of(*weight) : mix_taps<X>{};
    const auto s = spectra(false);
    run_mix({operand(xs, s.x, false, T(1)), operand(ws, s.w, false, T(-1)), result(ys, s.y), N, Fg,
             Cg, kept},
            stream, weight ? &taps : nullptr);
  }

  /// `g_block`: dys holds the block form (stacked_store) rather than the planar spectrum.
  template <class X = T>
  void mix_input_grad(const T* dys, const T* ws, T* dxs, void* stream,
                      const tensor_view<const X>* weight = nullptr, bool g_block = false,
                      int64_t kept = 0) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const auto taps = weight ? taps_of(*weight) : mix_taps<X>{};
    const auto s = spectra(g_block);
    run_mix({operand(dys, s.y, false, T(1)), operand(ws, s.w, true, T(1)), result(dxs, s.x), N, Cg,
             Fg, kept},
            stream, weight ? &taps : nullptr);
  }

  void mix_weight_grad(const T* dys, const T* xs, T* dws, void* stream, bool g_block = false,
                       int64_t kept = 0) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const auto s = spectra(g_block);
    run_mix({operand(dys, s.y, true, T(-1)), operand(xs, s.x, true, T(1)), result(dws, s.w), Fg, Cg,
             N, kept},
            stream);
  }

  /// The weight gradient's mixing and synthesis in one pass (mix_to_taps): per kept frequency,
  /// dW_k = G_k^H X_k reduced to the taps at once; with several slices of the kept frequencies,
  /// their partial tap sums, then tap_sum. `g_block` as for mix_weight_grad.
  template <class X>
  void mix_weight_to_taps(const T* dys, const T* xs, const tensor_view<X>& dw, void* stream,
                          bool g_block = false) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const auto s = spectra(g_block);
    const auto l = tap_launch_of();
    const int64_t taps = g_.params.kernel[0] * g_.params.kernel[1];
    const int64_t n = checked_mul(F * Cg, taps, "weight taps");
    auto partial = ex_.template make_temp<T>(l.slices > 1 ? l.slices * n : 0, stream);
    tap_output<T, X> out;
    out.dst = as_image(dw);
    out.partial = partial.get();
    out.scale = scale_;
    out.F = static_cast<uint32_t>(F);
    out.slices = static_cast<uint32_t>(l.slices);
    out.per_slice = static_cast<uint32_t>(l.per_slice);
    out.kept = static_cast<uint32_t>(g_.kept);
    const mix_args a{operand(dys, s.y, true, T(-1)), operand(xs, s.x, true, T(1)), {}, Fg, Cg, N};
    if (l.small)
      launch_to_taps(mix_to_taps_small<T, X>{}, a, out, stream);
    else
      launch_to_taps(mix_to_taps_large<T, X>{}, a, out, stream);
    if (l.slices == 1) return;
    tap_sum<T, X> k;
    k.partial = partial.get();
    k.dst = out.dst;
    k.scale = scale_;
    k.n = static_cast<uint32_t>(n);
    k.slices = out.slices;
    k.Cg = static_cast<uint32_t>(Cg);
    k.KW = static_cast<uint32_t>(g_.params.kernel[1]);
    k.taps = static_cast<uint32_t>(taps);
    ex_.launch(flat_dims(n), k, stream);
  }

  /// Whether the weight gradient takes mix_weight_to_taps when its mixing is the own kernel: the
  /// plan allows it, the layer is 1D or 2D (mix_to_taps reduces to (row, column) taps; 3D layers
  /// fold dW into the weight's depth slices: weight_grad_to_slices), the taps fit the kernel's
  /// shared memory and the launch its grid.
  bool weight_grad_fused() const {
    if (!fuse_weight_grad_ || engine_ == mix_engine::cublas || g_.params.ndim == 3) return false;
    const auto& p = g_.params;
    const int64_t taps = p.kernel[0] * p.kernel[1];
    const auto l = tap_launch_of();
    const int64_t cap = l.small ? mix_to_taps_small<T>::max_taps : mix_to_taps_large<T>::max_taps;
    const int64_t tile = l.small ? 16 : 32;
    return taps <= cap && l.slices * p.groups <= max_grid_yz &&
           ceil_div(g_.out_per_group, tile) <= max_grid_yz && F_Cg_taps(taps) < max_flat_index;
  }

  /// The fused weight gradient's tile and slices (choose_tap_launch); the plan's mix_tile forces
  /// the tile (the 9-tap limit of the large one aside).
  tap_launch tap_launch_of() const {
    const auto& p = g_.params;
    const int64_t taps = p.kernel[0] * p.kernel[1];
    tap_launch l = choose_tap_launch(g_.out_per_group, g_.in_per_group, p.groups, g_.kept, taps);
    if (tile_ != mix_tile::automatic) l.small = tile_ == mix_tile::small;
    if (taps > mix_to_taps_large<T>::max_taps) l.small = true;
    return l;
  }
  int64_t F_Cg_taps(int64_t taps) const { return g_.params.out_channels * g_.in_per_group * taps; }

  // ---- the same passes on cuBLAS: one strided batched real GEMM each (groups > 1: one per
  // group and plane), batched over the kept frequencies ------------------------------------
  //
  // Per kept frequency, with the planar spectra read as real matrices: X_st = [Xr; Xi] (2N x C,
  // the two planes are adjacent), W_st = [Wr; Wi] (2F x Cg), and Gb = [[Gr, -Gi], [Gi, Gr]]
  // (2N x 2F, the grad's block form that its analysis writes: stacked_store):
  //   forward      P = X_st W_st^T (2N x 2F: Xr Wr^T, Xr Wi^T; Xi Wr^T, Xi Wi^T), combined by
  //                the synthesis as it loads (stacked_load): Y = X W^H;
  //   input grad   [dXr; dXi] = Gb W_st       (dX = G W, planar as it comes out);
  //   weight grad  [dWr; dWi] = Gb^T X_st     (dW = G^H X, planar as it comes out).
  // 4 real products per complex one (Gauss's kernel: 3), on tensor cores (TF32 when the call
  // allows it: scoped_tf32). With groups, W_st and Gb's columns are not one strided matrix per
  // group (the planes of a group are F rows apart): one GEMM per group and plane.

  // `kept` as for the own kernel's passes: the kept frequencies from the pointers on (0: all).

  /// ys: 2 y_spectrum_size() scalars (the stacked products).
  void cublas_forward(const T* xs, const T* ws, T* ys, void* stream, int64_t kept = 0) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const int64_t groups = g_.params.groups, nk = kept ? kept : g_.kept;
    if (groups == 1)
      return rm_gemm(2 * N, 2 * F, C, {xs, C, false, 2 * N * C}, {ws, C, true, 2 * F * C}, ys,
                     2 * F, 4 * N * F, 0, stream, nk);
    for (int64_t grp = 0; grp < groups; ++grp)
      for (int64_t pw = 0; pw < 2; ++pw)
        rm_gemm(2 * N, Fg, Cg, {xs + grp * Cg, C, false, 2 * N * C},
                {ws + pw * F * Cg + grp * Fg * Cg, Cg, true, 2 * F * Cg}, ys + pw * F + grp * Fg,
                2 * F, 4 * N * F, 0, stream, nk);
  }

  /// dys: the block form (2 y_spectrum_size() scalars).
  void cublas_input_grad(const T* dys, const T* ws, T* dxs, void* stream, int64_t kept = 0) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const int64_t groups = g_.params.groups, nk = kept ? kept : g_.kept;
    if (groups == 1)
      return rm_gemm(2 * N, C, 2 * F, {dys, 2 * F, false, 4 * N * F}, {ws, C, false, 2 * F * C},
                     dxs, C, 2 * N * C, 0, stream, nk);
    for (int64_t grp = 0; grp < groups; ++grp)
      for (int64_t pw = 0; pw < 2; ++pw)  // the second plane accumulates onto the first
        rm_gemm(2 * N, Cg, Fg, {dys + pw * F + grp * Fg, 2 * F, false, 4 * N * F},
                {ws + pw * F * Cg + grp * Fg * Cg, Cg, false, 2 * F * Cg}, dxs + grp * Cg, C,
                2 * N * C, pw, stream, nk);
  }

  /// dys: the block form (2 y_spectrum_size() scalars).
  void cublas_weight_grad(const T* dys, const T* xs, T* dws, void* stream, int64_t kept = 0) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const int64_t groups = g_.params.groups, nk = kept ? kept : g_.kept;
    if (groups == 1)
      return rm_gemm(2 * F, C, 2 * N, {dys, 2 * F, true, 4 * N * F}, {xs, C, false, 2 * N * C}, dws,
                     C, 2 * F * C, 0, stream, nk);
    for (int64_t grp = 0; grp < groups; ++grp)
      for (int64_t t = 0; t < 2; ++t)
        rm_gemm(Fg, Cg, 2 * N, {dys + t * F + grp * Fg, 2 * F, true, 4 * N * F},
                {xs + grp * Cg, C, false, 2 * N * C}, dws + t * F * Cg + grp * Fg * Cg, Cg,
                2 * F * Cg, 0, stream, nk);
  }

  /// Which engine a pass's mixing takes (mix_engine): forced by the plan's options, else the
  /// smaller modelled time (mix_cost). `taps`: the own kernel would mix from the weight's taps
  /// (then cuBLAS also pays for making the weight spectrum).
  /// For the weight gradient, the own engine is mix_to_taps where weight_grad_fused().
  bool use_cublas(mix_pass pass, bool taps) const {
    if (engine_ != mix_engine::automatic) return engine_ == mix_engine::cublas;
    const bool fused = pass == mix_pass::weight_grad && weight_grad_fused();
    auto in =
        mix_cost_inputs_of(g_, pass, taps || fused, sizeof(T), sizeof(T) == 4 && tf32_allowed());
    if (fused) in.tap_slices = tap_launch_of().slices;
    return mix_cost(in, true) < mix_cost(in, false);
  }

  /// The taps path for this pass: usable, not forced onto cuBLAS, and not slower by the model.
  bool taps_path(mix_pass pass) const {
    return taps_usable() && engine_ != mix_engine::cublas && !use_cublas(pass, true);
  }

 private:
  auto checks() const { return checks_for(ex_, g_); }

  struct rm_operand {
    const T* p;
    int64_t ld;     ///< row-major leading dimension
    bool trans;     ///< the operand is stored transposed (row-major K x M, or N x K)
    int64_t batch;  ///< stride between kept frequencies
  };

  /// Row-major C (M x N, ldc) = op(A) (M x K) op(B) (K x N) + beta C, per kept frequency (`kept`
  /// of them). cuBLAS is column-major: a row-major matrix is the column-major transpose with the
  /// same leading dimension, so cuBLAS computes C^T = op(B)^T op(A)^T, with the operands swapped.
  void rm_gemm(int64_t M, int64_t N, int64_t K, const rm_operand& a, const rm_operand& b, T* c,
               int64_t ldc, int64_t batch_c, int64_t beta, void* stream, int64_t kept) const {
    gemm_desc d;
    d.double_precision = sizeof(T) == 8;
    d.tf32 = sizeof(T) == 4 && tf32_allowed();
    d.m = N;
    d.n = M;
    d.k = K;
    d.op_a = b.trans ? gemm_op::t : gemm_op::n;
    d.lda = b.ld;
    d.stride_a = b.batch;
    d.op_b = a.trans ? gemm_op::t : gemm_op::n;
    d.ldb = a.ld;
    d.stride_b = a.batch;
    d.ldc = ldc;
    d.stride_c = batch_c;
    d.batch = kept;
    d.beta = static_cast<double>(beta);
    ex_.gemm(d, b.p, a.p, c, stream);
  }

  /// `ws` or, where it is null, `weight` for the input gradient.
  template <class X>
  void run_backward(const tensor_view<const X>& grad_out, const T* xs, const T* ws,
                    const tensor_view<const nd<X>>* weight, const tensor_view<nd<X>>* grad_input,
                    const tensor_view<nd<X>>* grad_weight, nd<X>* grad_bias, void* stream) const {
    if (grad_input || grad_weight) {
      // Engines first: the grad's spectrum is written in the block form when either mixing runs
      // on cuBLAS (the own kernel reads either form).
      const bool from_taps = grad_input && !ws && weight && taps_path(mix_pass::input_grad);
      const bool ig_blas = grad_input && !from_taps && use_cublas(mix_pass::input_grad, false);
      const bool wg_blas = grad_weight && use_cublas(mix_pass::weight_grad, false);
      const bool block = ig_blas || wg_blas;
      // The one new transform of the backward pass (docs/design.md 1.6).
      auto dys = ex_.template make_temp<T>((block ? 2 : 1) * g_.y_spectrum_size(), stream);
      stages_.g_in->analyse(ex_, grad_out, dys.get(), stream, block);
      if (grad_input) {
        const bool slices = !ws && !from_taps && blfft::detail::mixes_from_depth_slices(g_);
        auto w_tmp =
            ex_.template make_temp<T>(ws || from_taps || slices ? 0 : g_.w_spectrum_size(), stream);
        if (!ws && !from_taps && !slices) {
          stages_.w_in->analyse(ex_, *weight, w_tmp.get(), stream);
          ws = w_tmp.get();
        }
        auto dxs = ex_.template make_temp<T>(g_.x_spectrum_size(), stream);
        if (slices) {  // 3D: from the weight's depth slices, a chunk of kept depths at a time
          const auto [N, C, F, Cg, Fg] = counts();
          const int64_t gs = (block ? 4 : 2) * N * F;  // grad spectrum scalars per frequency
          for_depth_chunks(*weight, stream, [&](const T* wc, int64_t k0, int64_t kn) {
            if (ig_blas)
              cublas_input_grad(dys.get() + k0 * gs, wc, dxs.get() + k0 * 2 * N * C, stream, kn);
            else
              mix_input_grad<T>(dys.get() + k0 * gs, wc, dxs.get() + k0 * 2 * N * C, stream,
                                nullptr, block, kn);
          });
        } else if (ig_blas) {
          cublas_input_grad(dys.get(), ws, dxs.get(), stream);
        } else {
          mix_input_grad(dys.get(), ws, dxs.get(), stream, from_taps ? weight : nullptr, block);
        }
        stages_.dx_out->synthesise(ex_, dxs.get(), *grad_input, scale_, nullptr, stream);
      }
      if (grad_weight) {
        if (blfft::detail::mixes_from_depth_slices(g_)) {
          weight_grad_to_slices(dys.get(), xs, *grad_weight, wg_blas, block, stream);
        } else if (!wg_blas && weight_grad_fused()) {
          mix_weight_to_taps(dys.get(), xs, *grad_weight, stream, block);
        } else {
          auto dws = ex_.template make_temp<T>(g_.w_spectrum_size(), stream);
          if (wg_blas)
            cublas_weight_grad(dys.get(), xs, dws.get(), stream);
          else
            mix_weight_grad(dys.get(), xs, dws.get(), stream, block);
          stages_.dw_out->synthesise(ex_, dws.get(), *grad_weight, scale_, nullptr, stream);
        }
      }
    }
    if (grad_bias) run_bias_grad(grad_out, grad_bias, stream);
  }

  /// N, C, F, C/groups, F/groups.
  std::array<int64_t, 5> counts() const {
    const auto& p = g_.params;
    return {p.batch, p.in_channels, p.out_channels, g_.in_per_group, g_.out_per_group};
  }

  /// A planar spectrum of rows x cols per kept frequency (re plane, then im), the part of group
  /// g starting g * group scalars in.
  struct spectrum_layout {
    int64_t rows, cols, group;
  };
  /// x (N x C), w (F x Cg) and y (N x F; N x 2F in the block form of the grad, `g_block`).
  struct spectrum_layouts {
    spectrum_layout x, w, y;
  };
  spectrum_layouts spectra(bool g_block) const {
    const auto [N, C, F, Cg, Fg] = counts();
    return {{N, C, Cg}, {F, Cg, Fg * Cg}, {N, (g_block ? 2 : 1) * F, Fg}};
  }
  /// Spectrum p as a mixing operand: element (i, k) at row i and column k, or at row k and
  /// column i when `transposed`.
  static mix_operand<T> operand(const T* p, const spectrum_layout& s, bool transposed, T sign) {
    const int64_t plane = s.rows * s.cols;
    return {p, transposed ? 1 : s.cols, transposed ? s.cols : 1, plane, 2 * plane, s.group, sign};
  }
  static mix_result<T> result(T* p, const spectrum_layout& s) {
    const int64_t plane = s.rows * s.cols;
    return {p, s.cols, 1, plane, 2 * plane, s.group};
  }

  struct mix_args {
    mix_operand<T> A, B;
    mix_result<T> C;
    int64_t M = 1, N = 1, K = 1;
    int64_t kept = 0;  // kept frequencies from the operands' pointers (0: all)
  };

  /// Taps path (mix_taps): whenever the weight spectrum is neither given nor asked for, and the
  /// kernel's taps fit the mixing kernel's twiddle table; 2D taps only (3D layers mix from the
  /// weight's depth slices: for_depth_chunks).
  bool taps_usable() const {
    return g_.params.ndim != 3 && g_.params.kernel[0] <= mix_max_taps &&
           g_.params.kernel[1] <= mix_max_taps;
  }
  template <class X>
  mix_taps<X> taps_of(const tensor_view<const X>& w) const {
    auto t = taps_geometry<X>();
    t.w = as_image(w);
    return t;
  }
  /// The taps' geometry (kept lists, sizes, dilation) without a weight.
  template <class X = T>
  mix_taps<X> taps_geometry() const {
    mix_taps<X> t;
    t.kept_rows = kept_.get();
    t.kept_cols = kept_.get() + g_.kept_rows.size();
    t.Cg = static_cast<uint32_t>(g_.in_per_group);
    t.KH = static_cast<uint32_t>(g_.params.kernel[0]);
    t.KW = static_cast<uint32_t>(g_.params.kernel[1]);
    t.nc = static_cast<uint32_t>(g_.kept_cols.size());
    t.Lh = static_cast<uint32_t>(g_.grid[0]);
    t.Lw = static_cast<uint32_t>(g_.grid[1]);
    t.dil_h = static_cast<int32_t>(g_.params.dilation[0]);
    t.dil_w = static_cast<int32_t>(g_.params.dilation[1]);
    return t;
  }
  /// Kept grid rows, then kept rfft columns, on the executor's device (taps path).
  static typename Exec::table upload_kept(const Exec& ex, const geometry& g) {
    const auto on = ex.activate();
    std::vector<int64_t> v(g.kept_rows.begin(), g.kept_rows.end());
    v.insert(v.end(), g.kept_cols.begin(), g.kept_cols.end());
    return ex.upload(v);
  }

  /// `taps`: B from the weight's taps (X elements) instead of its spectrum.
  template <class X = T>
  void run_mix(const mix_args& a, void* stream, const mix_taps<X>* taps = nullptr) const {
    const int64_t products = (a.kept ? a.kept : g_.kept) * g_.params.groups;
    bool small = tile_ == mix_tile::small;
    if (tile_ == mix_tile::automatic) small = prefer_small_mix_tile(a.M, a.N, products);
    if (small)
      launch_mix(mix_small<T, X>{}, a, products, stream, taps);
    else
      launch_mix(mix_large<T, X>{}, a, products, stream, taps);
  }

  /// A mixing kernel's operands and sizes (mix_kernel and mix_to_taps).
  template <class K>
  void set_operands(K& k, const mix_args& a) const {
    k.A = a.A;
    k.B = a.B;
    k.C = a.C;
    k.M = static_cast<uint32_t>(a.M);
    k.N = static_cast<uint32_t>(a.N);
    k.K = static_cast<uint32_t>(a.K);
    k.groups = static_cast<uint32_t>(g_.params.groups);
  }

  template <class K>
  void launch_mix(K k, const mix_args& a, int64_t products, void* stream,
                  const decltype(K::taps)* taps) const {
    set_operands(k, a);
    if (taps) {
      k.taps = *taps;
      k.b_from_taps = true;
    }
    for (int64_t z0 = 0; z0 < products; z0 += max_grid_yz) {
      k.z0 = static_cast<uint32_t>(z0);
      launch_dims d;
      BLFFT_EXPECTS(products < max_flat_index &&
                        mix_dims(k, std::min(max_grid_yz, products - z0), d),
                    error_code::unsupported, "CUDA backend: a ", a.M, " x ", a.N,
                    " channel-mixing product exceeds the grid limits");
      ex_.launch(d, k, stream);
    }
  }

  template <class K>
  void launch_to_taps(K k, const mix_args& a, const decltype(K::out)& out, void* stream) const {
    set_operands(k, a);
    k.taps = taps_geometry();
    k.out = out;
    launch_dims d;
    d.grid.x = static_cast<unsigned>(ceil_div(a.N, K::bn));
    d.grid.y = static_cast<unsigned>(ceil_div(a.M, K::bm));
    d.grid.z = static_cast<unsigned>(out.slices * k.groups);
    d.block.x = K::threads;
    d.block.y = d.block.z = 1;
    ex_.launch(d, k, stream);
  }

  template <class X>
  void run_forward_spectra(const T* xs, const T* ws, const nd<X>* bias, const tensor_view<X>& y,
                           void* stream) const {
    const bool blas = use_cublas(mix_pass::forward, false);
    auto ys = ex_.template make_temp<T>((blas ? 2 : 1) * g_.y_spectrum_size(), stream);
    if (blas)
      cublas_forward(xs, ws, ys.get(), stream);
    else
      mix_forward(xs, ws, ys.get(), stream);
    stages_.y_out->synthesise(ex_, ys.get(), y, scale_, bias, stream, blas);
  }

  template <class X>
  void run_bias_grad(const tensor_view<const X>& grad_out, X* grad_bias, void* stream) const {
    BLFFT_EXPECTS(g_.output[0] * g_.output[1] < max_flat_index &&
                      g_.params.batch * g_.depth_output < max_flat_index,
                  error_code::unsupported, "CUDA backend: output maps of 2^31 or more elements");
    bias_grad_args<X> a;
    if (g_.params.ndim == 3) {  // slice 0 and the stride to the others
      a.g = blfft::detail::depth_slice(grad_out, 0);
      a.D = static_cast<uint32_t>(g_.depth_output);
      a.stride_d = grad_out.strides[2];
    } else {
      a.g = as_image(grad_out);
    }
    a.out = grad_bias;
    a.N = static_cast<uint32_t>(g_.params.batch);
    a.Ho = static_cast<uint32_t>(g_.output[0]);
    a.Wo = static_cast<uint32_t>(g_.output[1]);
    const int64_t F = g_.params.out_channels;
    a.pixels = int64_t(a.N) * a.D * a.Ho * a.Wo;
    a.split = bias_slicing_of(a.pixels, F);
    // Several runs: their partials (F x runs doubles), then bias_grad_sum; one: one launch.
    auto partial =
        ex_.template make_temp<double>(a.split.slices > 1 ? F * a.split.slices : 0, stream);
    a.partial = partial.get();
    if (channels_adjacent(a.g, static_cast<uint32_t>(F))) {
      bias_grad_tiled<T, X> k;
      static_cast<bias_grad_args<X>&>(k) = a;
      k.F = static_cast<uint32_t>(F);
      ex_.launch(bias_dims(ceil_div(F, bias_channels), a.split), k, stream);
    } else {
      bias_grad_kernel<T, X> k;
      static_cast<bias_grad_args<X>&>(k) = a;
      ex_.launch(bias_dims(F, a.split), k, stream);
    }
    if (a.split.slices == 1) return;
    bias_grad_sum<T, X> s;
    s.partial = a.partial;
    s.out = grad_bias;
    s.slices = a.split.slices;
    ex_.launch(reduce_dims(F), s, stream);
  }

  // ---- 3D layers without a whole weight spectrum (mixes_from_depth_slices; the CPU's
  // depth_mix.hpp): the weight's KD depth slices are analysed to their 2D spectra once, then
  // per chunk of kept depths the depth DFT makes that chunk's weight spectrum into one reused
  // buffer and the 2D mixing runs on the chunk's kept frequencies (k = depth * kept2 + k2 are
  // contiguous per depth). The weight gradient is the transpose: each chunk's dW spectrum is
  // folded into the KD slices by the inverse depth DFT (accumulating), then they are
  // synthesised. Chunks of KD kept depths: the weight spectrum held is at most the slices'
  // size (KD x kept2 matrices, as the weight's KD x KH x KW taps scale), not kept depths x
  // kept2; a pass's mixing takes 2 ceil(kept depths / KD) launches instead of 1 or 2.

  /// Kept depths per chunk.
  int64_t depth_chunk_rows() const {
    return std::min<int64_t>(g_.params.depth.kernel, static_cast<int64_t>(g_.kept_depth.size()));
  }

  /// body(wc, k0, kn) for every chunk: wc, the weight spectrum of kept frequencies k0 .. k0 + kn
  /// (planar, as the whole spectrum lays them out from k0 on).
  template <class W, class Body>
  void for_depth_chunks(const tensor_view<const W>& w, void* stream, Body&& body) const {
    const auto& st = *stages_.w_in;
    auto slices = ex_.template make_temp<T>(st.slice_count() * st.slice_size(), stream);
    st.analyse_slices(ex_, w, slices.get(), stream);
    const int64_t nd = static_cast<int64_t>(g_.kept_depth.size()), rows = depth_chunk_rows();
    const int64_t kept2 = g_.kept / nd;
    auto wc = ex_.template make_temp<T>(rows * st.slice_size(), stream);
    for (int64_t q0 = 0; q0 < nd; q0 += rows) {
      const int64_t n = std::min(rows, nd - q0);
      st.depth_rows(ex_, slices.get(), wc.get(), q0, n, stream);
      body(static_cast<const T*>(wc.get()), q0 * kept2, n * kept2);
    }
  }

  /// The weight gradient of a 3D layer through the slices: `blas`, its mixing on cuBLAS;
  /// `block`, dys is in the block form.
  template <class X>
  void weight_grad_to_slices(const T* dys, const T* xs, const tensor_view<X>& dw, bool blas,
                             bool block, void* stream) const {
    const auto [N, C, F, Cg, Fg] = counts();
    const auto& st = *stages_.dw_out;
    const int64_t nd = static_cast<int64_t>(g_.kept_depth.size()), rows = depth_chunk_rows();
    const int64_t kept2 = g_.kept / nd, gs = (block ? 4 : 2) * N * F;
    auto slices = ex_.template make_temp<T>(st.slice_count() * st.slice_size(), stream);
    auto dwc = ex_.template make_temp<T>(rows * st.slice_size(), stream);
    for (int64_t q0 = 0; q0 < nd; q0 += rows) {
      const int64_t n = std::min(rows, nd - q0), k0 = q0 * kept2;
      if (blas)
        cublas_weight_grad(dys + k0 * gs, xs + k0 * 2 * N * C, dwc.get(), stream, n * kept2);
      else
        mix_weight_grad(dys + k0 * gs, xs + k0 * 2 * N * C, dwc.get(), stream, block, n * kept2);
      st.depth_rows_to_slices(ex_, dwc.get(), slices.get(), q0, n, q0 > 0, stream);
    }
    st.synthesise_slices(ex_, slices.get(), dw, scale_, nullptr, stream);
  }

  Exec ex_;
  geometry g_;
  mix_tile tile_;
  mix_engine engine_;
  bool fuse_weight_grad_;
  layer_transforms<stage> stages_;
  typename Exec::table kept_;  // kept rows, then kept columns (taps path)
  T scale_ = T(1);
};

// ---------------------------------------------------------------------------------------------
// Energy map (docs/design.md 1.7) on the device
// ---------------------------------------------------------------------------------------------

/// Energy per rfft bin of the padded input (blfft::energy_map's result), batches in chunks whose
/// full spectrum stays under `max_spectrum_bytes`.
template <class T, class Exec>
std::vector<double> energy_map(const Exec& ex, const conv_params& p, const tensor_view<const T>& x,
                               void* stream, int64_t max_spectrum_bytes = int64_t(256) << 20) {
  blfft::detail::refuse_energy_3d(p);
  const geometry full = make_geometry(p, compression::indices({}, {}));
  const auto on = ex.activate();
  ex.check_stream(stream);
  checks_for(ex, full).input(x);
  const auto& q = full.params;
  const int64_t N = q.batch, C = q.in_channels;
  const int64_t per_sample = checked_mul(2 * full.total, C, "spectrum size");
  const int64_t nb = std::clamp<int64_t>(
      max_spectrum_bytes / (per_sample * static_cast<int64_t>(sizeof(T))), 1, N);
  BLFFT_EXPECTS(full.total < max_flat_index, error_code::unsupported,
                "CUDA backend: a grid of 2^31 or more bins");
  using stage = transform_stage<T, Exec>;
  const layer_placements at(full);
  const stage body(ex, full, transform_direction::analyse, nb, C, at.x_h, at.x_w);
  std::unique_ptr<stage> tail;
  if (N % nb != 0)
    tail =
        std::make_unique<stage>(ex, full, transform_direction::analyse, N % nb, C, at.x_h, at.x_w);

  auto acc = ex.template make_temp<double>(full.total, stream);
  ex.zero(acc.get(), sizeof(double) * static_cast<std::size_t>(full.total), stream);
  auto spec = ex.template make_temp<T>(nb * per_sample, stream);
  image_view<const T> img = as_image(x);
  for (int64_t n0 = 0; n0 < N; n0 += nb) {
    const stage& s = (N - n0 >= nb) ? body : *tail;
    image_view<const T> part = img;
    part.data = img.data + n0 * img.stride_b;
    s.analyse(ex, part, spec.get(), stream);
    energy_kernel<T> k;
    k.spec = spec.get();
    k.energy = acc.get();
    k.J = static_cast<uint32_t>(s.images());
    k.bins = static_cast<uint32_t>(full.bins_w);
    k.Lw = static_cast<uint32_t>(full.grid[1]);
    ex.launch(reduce_dims(full.total), k, stream);
  }
  std::vector<double> e(static_cast<size_t>(full.total));
  ex.copy_to_host(e.data(), acc.get(), sizeof(double) * e.size(), stream);
  return e;
}

}  // namespace blfft::cuda::detail
