#pragma once
// The CUDA backend's kernels, as __host__ __device__ code (docs/design.md section 3).
//
// Each kernel is a small struct holding its arguments, in one of two forms:
// - simple: `operator()(block, thread)` does one thread's work (one output element);
// - phased (uses shared memory): `phase(p, shared, regs, block, thread)` for p in
//   [0, phase_count(block)), with a __syncthreads() between consecutive phases. `shared` is the
//   block's shared memory, `regs` one thread's registers that live across phases.
// kernels.cu wraps each in a __global__ shell (a loop over the phases for the phased ones); the
// C++ tests run the very same code on the CPU by looping over the launch grid, phase by phase over
// all threads of a block (tests/cpp/cuda_emulator.hpp). The launch geometry of every kernel comes
// from a host function here, next to the kernel.
//
// The index math is 32-bit where it divides; the host functions check that every flattened index
// space of a launch stays below 2^31, and addresses are 64-bit.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common.hpp"
#include "dft_matrix.hpp"  // src/common/: the pruned DFT matrices' entries, shared with the CPU
#include "image.hpp"       // src/common/: image_view, shared with the CPU backend
#include "storage.hpp"     // the tensors' element types (16-bit ones too)

namespace blfft::cuda::detail {

using blfft::detail::image_view;  // a strided (b, ch, h, w) view, element strides

// ---------------------------------------------------------------------------------------------
// Flat, one-thread-per-element kernels
// ---------------------------------------------------------------------------------------------

/// What every kernel declares for its launch (kernels.cu, the emulator): simple or phased,
/// threads a block, and the blocks an SM should at least hold (__launch_bounds__).
template <bool Phased, unsigned Threads, unsigned MinBlocks = 1>
struct kernel_traits {
  static constexpr bool phased = Phased;
  static constexpr unsigned threads = Threads, min_blocks = MinBlocks;
};

constexpr unsigned flat_threads = 256;
/// A simple kernel over flat_dims.
using flat_kernel = kernel_traits<false, flat_threads>;

/// Grid of 1D blocks of `flat_threads` covering n elements (n < 2^31).
inline launch_dims flat_dims(int64_t n) {
  launch_dims d;
  d.grid.x = static_cast<unsigned>(ceil_div(n, flat_threads));
  d.grid.y = d.grid.z = 1;
  d.block.x = flat_threads;
  d.block.y = d.block.z = 1;
  return d;
}

/// The element handled by thread t of block b in a flat launch over n elements, if any.
BLFFT_HD_INLINE bool flat_item(idx3 b, idx3 t, uint32_t n, uint32_t& i) {
  const uint64_t g = uint64_t(b.x) * flat_threads + t.x;
  if (g >= n) return false;
  i = static_cast<uint32_t>(g);
  return true;
}

/// Where the rows buffer of the row transforms holds a chunk's samples (pack_rows,
/// unpack_rows): Rh data rows of Lw grid columns per image, for images j0, j0 + 1, ... (image
/// j = b * CH + ch); a row's Rw samples at grid columns off_w + step_w * i.
struct row_layout {
  uint32_t Lw = 1, Rh = 1, Rw = 1, CH = 1, j0 = 0;
  int32_t off_w = 0, step_w = 1;

  /// Whether grid column c holds a sample, and which (i).
  BLFFT_HD_INLINE bool sample_at(uint32_t c, uint32_t& i) const {
    const int32_t d = static_cast<int32_t>(c) - off_w;
    if (d < 0 || d % step_w != 0 || static_cast<uint32_t>(d / step_w) >= Rw) return false;
    i = static_cast<uint32_t>(d / step_w);
    return true;
  }
  /// The offset in view v of sample i of the data row that row `row` of the buffer holds; the
  /// image's channel in ch.
  template <class View>
  BLFFT_HD_INLINE int64_t sample(const View& v, uint32_t row, uint32_t i, uint32_t& ch) const {
    const uint32_t jl = row / Rh, j = j0 + jl, r = row - jl * Rh, b = j / CH;
    ch = j - b * CH;
    return int64_t(b) * v.stride_b + int64_t(ch) * v.stride_ch + int64_t(r) * v.stride_h +
           int64_t(i) * v.stride_w;
  }
};

/// Row packing for the row r2c transforms (layout rl): rows[(jl * Rh + r) * Lw + c] = the sample of
/// image j0 + jl, row r, that is placed at grid column c (c = off_w + step_w * i), else 0. Images
/// are j = b * CH + ch. One thread per element of the rows buffer (rows of the zero-padded grid
/// that hold data; the all-zero rows are never built). X: the source's element type.
template <class T, class X = T>
struct pack_rows : flat_kernel {
  static constexpr const char* name = "pack_rows";

  image_view<const X> src;
  T* rows = nullptr;
  uint32_t n = 0;  ///< images in this chunk * Rh * Lw
  row_layout rl;

  BLFFT_HD_INLINE void operator()(idx3 b, idx3 t) const {
    uint32_t i, s, ch;
    if (!flat_item(b, t, n, i)) return;
    const uint32_t row = i / rl.Lw, c = i - row * rl.Lw;
    T v = T(0);
    if (rl.sample_at(c, s)) v = load_as<T>(src.data + rl.sample(src, row, s, ch));
    gstore(rows + i, v);
  }
};

/// Row unpacking after the row c2r transforms (layout rl): dst(b, ch, r, i) = rows[(jl * Rh + r) *
/// Lw + off_w + step_w * i] * scale + bias[ch] (bias may be null). One thread per output element.
template <class T, class X = T>
struct unpack_rows : flat_kernel {
  static constexpr const char* name = "unpack_rows";

  const T* rows = nullptr;
  image_view<X> dst;  ///< and bias: X, the output's element type
  const X* bias = nullptr;
  T scale = T(1);
  uint32_t n = 0;  ///< images in this chunk * Rh * Rw
  row_layout rl;

  BLFFT_HD_INLINE void operator()(idx3 b, idx3 t) const {
    uint32_t e, ch;
    if (!flat_item(b, t, n, e)) return;
    const uint32_t row = e / rl.Rw, i = e - row * rl.Rw;
    const T v = gload(rows + (int64_t(row) * rl.Lw + rl.off_w + int64_t(rl.step_w) * i));
    const int64_t o = rl.sample(dst, row, i, ch);
    store_as(dst.data + o, v * scale + (bias ? load_as<T>(bias + ch) : T(0)));
  }
};

/// Whether a view's channels are adjacent in memory (channels_last), so that consecutive images
/// j = b * CH + ch of a batch are: the kernels that touch tensors then walk the image index
/// fastest (coalesced), else the width index.
template <class View>
BLFFT_HD_INLINE bool channels_adjacent(const View& v, uint32_t CH) {
  return v.stride_ch == 1 && CH > 1;
}

/// The channels_last forms of pack_rows / unpack_rows (channels_adjacent views): a block moves a
/// tile of 32 images x 32 columns of one data row r through shared memory, the tensor side with
/// the image index fastest, the rows buffer with the column fastest, so that both stay coalesced
/// (the flat kernels walk the width fastest: 32 sectors a warp on a channels_last tensor). Same
/// values, same arithmetic as the flat kernels: bit for bit their results. Block x =
/// (image tile * Rh + r) * tiles + column tile; 32 x 8 threads, 4 steps per phase.
constexpr unsigned row_tile = 32, row_tile_rows = 8;
struct row_tile_kernel : kernel_traits<true, row_tile * row_tile_rows> {
  struct regs {};
  uint32_t images = 0;  ///< in this chunk
  uint32_t tiles = 1;   ///< column tiles per row: ceil(Lw / 32) to pack, ceil(Rw / 32) to unpack
  row_layout rl;

  BLFFT_HD_INLINE int phase_count(idx3) const { return 2; }
  /// Block b's first chunk image jl0, data row r, first column c0.
  BLFFT_HD_INLINE void origin(idx3 b, uint32_t& jl0, uint32_t& r, uint32_t& c0) const {
    const uint32_t ir = b.x / tiles, q = ir / rl.Rh;
    r = ir - q * rl.Rh;
    jl0 = q * row_tile;
    c0 = (b.x - ir * tiles) * row_tile;
  }
  /// Step s of phase p for thread t: the tile's image g and column cc (image fastest in the
  /// tensor's phase, column fastest in the rows buffer's).
  BLFFT_HD_INLINE static void slot(idx3 t, unsigned s, bool images_fastest, uint32_t& g,
                                   uint32_t& cc) {
    g = images_fastest ? t.x : t.y + s * row_tile_rows;
    cc = images_fastest ? t.y + s * row_tile_rows : t.x;
  }
};

/// Launch geometry of a row_tile_kernel over a chunk; fills k.tiles (columns: Lw or Rw).
template <class K>
launch_dims row_tile_dims(K& k, uint32_t columns) {
  k.tiles = static_cast<uint32_t>(ceil_div(columns, row_tile));
  launch_dims d;
  d.grid.x = static_cast<unsigned>(ceil_div(k.images, row_tile) * k.rl.Rh * k.tiles);
  d.grid.y = d.grid.z = 1;
  d.block.x = row_tile;
  d.block.y = row_tile_rows;
  d.block.z = 1;
  return d;
}

/// pack_rows for channels_adjacent sources: phase 0 loads the tile from the tensor (zero where a
/// column holds no sample), phase 1 stores it into the rows buffer.
template <class T, class X = T>
struct pack_rows_tiled : row_tile_kernel {
  static constexpr const char* name = "pack_rows_tiled";
  struct shared {
    T v[row_tile][row_tile + 1];  // [column][image]
  };

  image_view<const X> src;
  T* rows = nullptr;

  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    uint32_t jl0, r, c0;
    origin(b, jl0, r, c0);
    for (unsigned s = 0; s < row_tile / row_tile_rows; ++s) {
      uint32_t g, cc;
      slot(t, s, p == 0, g, cc);
      const uint32_t jl = jl0 + g, c = c0 + cc;
      if (jl >= images || c >= rl.Lw) continue;
      const uint32_t row = jl * rl.Rh + r;
      if (p == 0) {
        uint32_t i, ch;
        T v = T(0);
        if (rl.sample_at(c, i)) v = load_as<T>(src.data + rl.sample(src, row, i, ch));
        sh.v[cc][g] = v;
      } else {
        gstore(rows + (int64_t(row) * rl.Lw + c), sh.v[cc][g]);
      }
    }
  }
};

/// unpack_rows for channels_adjacent destinations: phase 0 loads the tile's samples from the
/// rows buffer, phase 1 stores them (scaled, plus bias) into the tensor.
template <class T, class X = T>
struct unpack_rows_tiled : row_tile_kernel {
  static constexpr const char* name = "unpack_rows_tiled";
  struct shared {
    T v[row_tile][row_tile + 1];  // [sample][image]
  };

  const T* rows = nullptr;
  image_view<X> dst;
  const X* bias = nullptr;
  T scale = T(1);

  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    uint32_t jl0, r, c0;
    origin(b, jl0, r, c0);
    for (unsigned s = 0; s < row_tile / row_tile_rows; ++s) {
      uint32_t g, ii;
      slot(t, s, p == 1, g, ii);
      const uint32_t jl = jl0 + g, i = c0 + ii;
      if (jl >= images || i >= rl.Rw) continue;
      const uint32_t row = jl * rl.Rh + r;
      if (p == 0) {
        sh.v[ii][g] = gload(rows + (int64_t(row) * rl.Lw + rl.off_w + int64_t(rl.step_w) * i));
      } else {
        uint32_t ch;
        const int64_t o = rl.sample(dst, row, i, ch);
        store_as(dst.data + o, sh.v[ii][g] * scale + (bias ? load_as<T>(bias + ch) : T(0)));
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Tiled complex gather / transpose
// ---------------------------------------------------------------------------------------------

/// Offset (in scalars) of index i along one axis: a table (negative entry = no such element,
/// read as zero), or base + i * stride.
struct offset_map {
  const int64_t* table = nullptr;
  int64_t base = 0, stride = 0;
  BLFFT_HD_INLINE int64_t operator()(uint32_t i) const {
    return table ? gload(table + i) : base + int64_t(i) * stride;
  }
  static offset_map affine(int64_t stride, int64_t base = 0) { return {nullptr, base, stride}; }
  static offset_map from(const int64_t* table) { return {table, 0, 0}; }
};

/// dst[z, u, v] = src[z, u, v] for a 3D index space Z x U x V of complex numbers, where each side
/// places element (z, u, v) at scalar offset z * zs + map_u(u) + map_v(v) (imaginary part at
/// + im: 1 for interleaved complex, a plane size for planar spectra). A source element whose map
/// entry is negative is zero. 32 x 32 tiles through shared memory: loads run along u (coalesced
/// when the source is contiguous in u), stores along v (coalesced when the destination is
/// contiguous in v). This one kernel does every gather and scatter of the pruned transforms:
/// kept columns into contiguous columns, kept rows into the frequency-major spectrum, and back.
template <class T>
struct tile_copy : kernel_traits<true, 32 * 8> {
  static constexpr unsigned tile = 32, rows = 8;
  static_assert(threads == tile * rows, "tile x rows threads a block");
  static constexpr const char* name = "tile_copy";
  struct shared {
    T re[tile][tile + 1];
    T im[tile][tile + 1];
  };
  struct regs {};

  const T* src = nullptr;
  int64_t src_z = 0, src_im = 1;
  offset_map src_u, src_v;
  T* dst = nullptr;
  int64_t dst_z = 0, dst_im = 1;
  offset_map dst_u, dst_v;
  uint32_t Z = 1, U = 1, V = 1;
  uint32_t tiles_v = 1;  ///< ceil(V / tile); block.x = z * tiles_v + tile index along v

  BLFFT_HD_INLINE int phase_count(idx3) const { return 2; }

  /// Coordinates of block b: z, and the first u and v of its tile.
  BLFFT_HD_INLINE void block_origin(idx3 b, uint32_t& z, uint32_t& u0, uint32_t& v0) const {
    z = b.x / tiles_v;
    v0 = (b.x - z * tiles_v) * tile;
    u0 = b.y * tile;
  }
  /// Phase 0, step s (< tile / rows): thread t loads (u0 + lu, v0 + lv) into shared[lv][lu].
  BLFFT_HD_INLINE static void load_slot(idx3 t, unsigned s, uint32_t& lu, uint32_t& lv) {
    lu = t.x;
    lv = t.y + s * rows;
  }
  /// Phase 1, step s: thread t stores (u0 + lu, v0 + lv) from shared[lv][lu].
  BLFFT_HD_INLINE static void store_slot(idx3 t, unsigned s, uint32_t& lu, uint32_t& lv) {
    lv = t.x;
    lu = t.y + s * rows;
  }

  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    uint32_t z, u0, v0;
    block_origin(b, z, u0, v0);
    for (unsigned s = 0; s < tile / rows; ++s) {
      uint32_t lu, lv;
      if (p == 0) {
        load_slot(t, s, lu, lv);
        const uint32_t u = u0 + lu, v = v0 + lv;
        T re = T(0), im = T(0);
        if (u < U && v < V) {
          const int64_t ou = src_u(u), ov = src_v(v);
          if (ou >= 0 && ov >= 0) {
            const int64_t o = int64_t(z) * src_z + ou + ov;
            re = gload(src + o);
            im = gload(src + o + src_im);
          }
        }
        sh.re[lv][lu] = re;
        sh.im[lv][lu] = im;
      } else {
        store_slot(t, s, lu, lv);
        const uint32_t u = u0 + lu, v = v0 + lv;
        if (u < U && v < V) {
          const int64_t o = int64_t(z) * dst_z + dst_u(u) + dst_v(v);
          gstore(dst + o, sh.re[lv][lu]);
          gstore(dst + o + dst_im, sh.im[lv][lu]);
        }
      }
    }
  }
};

/// Launch geometry of a tile_copy over Z x U x V; fills k.tiles_v. Returns false when the index
/// space exceeds the grid limits (the caller reports it).
template <class T>
bool tile_copy_dims(tile_copy<T>& k, launch_dims& d) {
  const int64_t tu = ceil_div(k.U, tile_copy<T>::tile), tv = ceil_div(k.V, tile_copy<T>::tile);
  if (tu > max_grid_yz || int64_t(k.Z) * tv > max_grid_x) return false;
  k.tiles_v = static_cast<uint32_t>(tv);
  d.grid.x = static_cast<unsigned>(k.Z * tv);
  d.grid.y = static_cast<unsigned>(tu);
  d.grid.z = 1;
  d.block.x = tile_copy<T>::tile;
  d.block.y = tile_copy<T>::rows;
  d.block.z = 1;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Stacked real forms of a spectrum, for the mixing on cuBLAS (pipeline.hpp: cublas_forward ...)
// ---------------------------------------------------------------------------------------------

/// Per kept frequency k, a spectrum of J = R x CH images (j = r * CH + ch; R images of CH
/// channels) as one real (2R) x (2CH) row-major matrix of 4J scalars. Entry (pr, r; pc, ch) sits
/// at k * 4J + (pr * R + r) * 2CH + pc * CH + ch = stacked_offset(k, j) + pr * 2J + pc * CH.
BLFFT_HD_INLINE int64_t stacked_offset(uint32_t J, uint32_t CH, uint32_t k, uint32_t j) {
  const uint32_t r = j / CH;
  return int64_t(k) * 4 * J + int64_t(j) + int64_t(r) * CH;
}

/// Block form of a complex matrix Z (R x CH): [[Re Z, -Im Z], [Im Z, Re Z]]. With G the grad's
/// spectrum (B x F), Gb = block(G) gives dX = G W as Gb [Wr; Wi] and dW = G^H X as
/// Gb^T [Xr; Xi], both straight into the planar layout: one real GEMM per pass.
template <class T>
BLFFT_HD_INLINE void stacked_store(T* s, uint32_t J, uint32_t CH, uint32_t k, uint32_t j, T re,
                                   T im) {
  T* o = s + stacked_offset(J, CH, k, j);
  gstore(o, re);
  gstore(o + CH, -im);
  gstore(o + 2 * int64_t(J), im);
  gstore(o + 2 * int64_t(J) + CH, re);
}

/// The forward's stacked products P = [Xr; Xi] [Wr; Wi]^T (rows (p_x, b), columns (p_w, f)) ->
/// Y = X W^H: Re Y = Xr Wr^T + Xi Wi^T, Im Y = Xi Wr^T - Xr Wi^T (the consumer's combine).
template <class T>
BLFFT_HD_INLINE void stacked_load(const T* s, uint32_t J, uint32_t CH, uint32_t k, uint32_t j,
                                  T& re, T& im) {
  const T* o = s + stacked_offset(J, CH, k, j);
  re = gload(o) + gload(o + 2 * int64_t(J) + CH);
  im = gload(o + 2 * int64_t(J)) - gload(o + CH);
}

/// Between the planar spectrum S[k][re|im][j] and a stacked form, for the cuFFT transform chain
/// (the fused kernels read and write the stacked forms themselves): `to_block`: S -> block form
/// (stacked_store); else stacked products -> S (stacked_load). One thread per (k, j).
template <class T>
struct restack : flat_kernel {
  static constexpr const char* name = "restack";

  const T* src = nullptr;
  T* dst = nullptr;
  uint32_t n = 0;  ///< kept * J
  uint32_t J = 1, CH = 1;
  bool to_block = true;

  BLFFT_HD_INLINE void operator()(idx3 b, idx3 t) const {
    uint32_t i;
    if (!flat_item(b, t, n, i)) return;
    const uint32_t k = i / J, j = i - k * J;
    const int64_t planar = int64_t(k) * 2 * J + j;
    if (to_block) {
      stacked_store(dst, J, CH, k, j, gload(src + planar), gload(src + planar + J));
    } else {
      T re, im;
      stacked_load(src, J, CH, k, j, re, im);
      gstore(dst + planar, re);
      gstore(dst + planar + J, im);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The depth axis of 3D layers (docs/design.md 1.9; pipeline: volume_stage)
// ---------------------------------------------------------------------------------------------

/// The pruned DFT along depth of a 3D layer, between the 2D spectra of its depth slices and the
/// frequency-major spectrum (k = depth index * kept2 + k2), as the CPU's volume_transform
/// (src/depth_transform.hpp): output row r = sum over input rows s of
/// exp(sign 2 pi i kd t / Ld) x row s, with kd = kept_depth[q] and t = offset + step * i, where
/// (q, i) = (r, s) when analysing (sign -1: the slices that hold data -> the kept depths) and
/// (s, r) when synthesising (sign +1: the kept depths -> the slices the result needs). Each row
/// is kept2 planar blocks of J images (J re, then J im).
/// `q0`: the kept-depth rows are kept depths q0, q0 + 1, ... (a chunk of them, for the mixing
/// from the weight's depth slices); `accumulate`: dst += the result (a chunk's share of a sum).
/// Block (x, y): output row y, elements (k2, j) from x * threads, one per thread (coalesced over
/// j). Phases alternate over chunks of `threads` input rows: the block computes the chunk's
/// twiddles into shared memory (dft_matrix.hpp, the CPU's entries: once per block, not per
/// thread), then each thread accumulates its element in registers; the last phase stores.
constexpr unsigned depth_dft_threads = 256;
template <class T>
struct depth_dft : kernel_traits<true, depth_dft_threads> {
  static constexpr const char* name = "depth_dft";
  struct shared {
    T re[depth_dft_threads], im[depth_dft_threads];
  };
  struct regs {
    T re, im;
  };

  const T* src = nullptr;
  T* dst = nullptr;
  const int64_t* kept_depth = nullptr;  ///< the geometry's kept depth grid indices
  uint32_t in_rows = 1, out_rows = 1, kept2 = 1, J = 1, CH = 1, q0 = 0;
  int64_t Ld = 1, offset = 0, step = 1;  ///< depth grid; the placement of the samples
  bool analyse = true;
  bool accumulate = false;  ///< dst += the result (planar dst only)
  bool stacked_in = false;  ///< src holds the forward's stacked products (stacked_load)
  bool block_out = false;   ///< dst gets the block form (stacked_store)

  BLFFT_HD_INLINE uint32_t chunks() const { return (in_rows + threads - 1) / threads; }
  BLFFT_HD_INLINE int phase_count(idx3) const { return static_cast<int>(2 * chunks() + 1); }

  BLFFT_HD_INLINE void phase(int p, shared& sh, regs& acc, idx3 b, idx3 t) const {
    const uint32_t r = b.y, per_row = kept2 * J;
    const uint64_t e64 = uint64_t(b.x) * threads + t.x;
    const bool mine = e64 < per_row;
    const uint32_t e = mine ? static_cast<uint32_t>(e64) : 0, k2 = e / J, j = e - k2 * J;
    const uint32_t c = static_cast<uint32_t>(p) / 2, s0 = c * threads;
    if (p == 0) acc.re = acc.im = T(0);
    if (c == chunks()) {  // the last phase
      if (!mine) return;
      const uint32_t k = r * kept2 + k2;
      if (block_out) {
        stacked_store(dst, J, CH, k, j, acc.re, acc.im);
      } else {
        T* o = dst + int64_t(k) * 2 * J + j;
        if (accumulate) {
          acc.re += gload(static_cast<const T*>(o));
          acc.im += gload(static_cast<const T*>(o + J));
        }
        gstore(o, acc.re);
        gstore(o + J, acc.im);
      }
      return;
    }
    if (p % 2 == 0) {  // the twiddles of input rows s0 .. s0 + threads
      const uint32_t s = s0 + t.x;
      if (s >= in_rows) return;
      const uint32_t q = q0 + (analyse ? r : s), at = analyse ? s : r;
      const auto w = blfft::detail::dft_twiddle(gload(kept_depth + q), offset + step * at, Ld,
                                                analyse ? -1.0 : 1.0);
      sh.re[t.x] = static_cast<T>(w.re);
      sh.im[t.x] = static_cast<T>(w.im);
      return;
    }
    if (!mine) return;
    const uint32_t s1 = in_rows - s0 < threads ? in_rows : s0 + threads;
    for (uint32_t s = s0; s < s1; ++s) {
      const uint32_t k = s * kept2 + k2;
      T xr, xi;
      if (stacked_in) {
        stacked_load(src, J, CH, k, j, xr, xi);
      } else {
        const T* q = src + int64_t(k) * 2 * J + j;
        xr = gload(q);
        xi = gload(q + J);
      }
      const T wr = sh.re[s - s0], wi = sh.im[s - s0];
      acc.re += wr * xr - wi * xi;
      acc.im += wr * xi + wi * xr;
    }
  }
};

/// Launch geometry of a depth DFT; false when its rows or elements exceed the grid limits.
template <class T>
bool depth_dft_dims(const depth_dft<T>& k, launch_dims& d) {
  const int64_t per_row = int64_t(k.kept2) * k.J;
  if (k.out_rows > max_grid_yz || per_row >= max_flat_index) return false;
  d.grid.x = static_cast<unsigned>(ceil_div(per_row, depth_dft_threads));
  d.grid.y = k.out_rows;
  d.grid.z = 1;
  d.block.x = depth_dft_threads;
  d.block.y = d.block.z = 1;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Fused pruned transforms: samples <-> kept bins in one kernel, DFT matrices in shared memory
// ---------------------------------------------------------------------------------------------

/// Shared memory of a fused transform block: the two pruned DFT matrices, computed by the block
/// itself (dft_matrix.hpp, the CPU matmul engine's entries), and the G images it works on.
constexpr unsigned fused_threads = 256;
constexpr unsigned fused_shared_bytes = 46 * 1024;  // static shared memory is at most 48 KiB
constexpr unsigned fused_max_images = 32;
/// A fused transform kernel: its shared memory one array of scalars, nothing kept in registers
/// across phases.
template <class T>
struct fused_kernel : kernel_traits<true, fused_threads> {
  struct shared {
    T s[fused_shared_bytes / sizeof(T)];
  };
  struct regs {};
};

/// The sizes a fused transform works with. Analysis: Rh x Rw samples placed at grid rows
/// off_h + step_h * r and columns off_w + step_w * i -> the nr x nc kept bins (grid rows
/// kept_rows[a], rfft columns kept_cols[q]). Synthesis: the reverse, for the Rh x Rw samples the
/// output needs (crop and stride are the placement). Images j = b * CH + ch of the view.
struct fused_shape {
  uint32_t Rh = 1, Rw = 1, nr = 1, nc = 1, Lh = 1, Lw = 1, CH = 1, J = 1;
  int32_t off_h = 0, step_h = 1, off_w = 0, step_w = 1;
  uint32_t G = 1;                      ///< images per block
  const int64_t* kept_rows = nullptr;  ///< device table: grid row of kept row a
  const int64_t* kept_cols = nullptr;  ///< device table: rfft column of kept column q

  /// Scalars of shared memory a block needs: both matrices (complex) and, per image, its
  /// samples and the half-transformed rows (Rh x nc complex); synthesis holds the image's kept
  /// bins instead of its samples.
  BLFFT_HD_INLINE static int64_t scalars(int64_t Rh, int64_t Rw, int64_t nr, int64_t nc, int64_t G,
                                         bool analyse) {
    const int64_t per_image = (analyse ? Rh * Rw : 2 * nr * nc) + 2 * Rh * nc;
    return 2 * nc * Rw + 2 * nr * Rh + G * per_image;
  }
  BLFFT_HD_INLINE int64_t image_offset(const int64_t sb, const int64_t sch, uint32_t j) const {
    const uint32_t bb = j / CH, ch = j - bb * CH;
    return int64_t(bb) * sb + int64_t(ch) * sch;
  }
  /// Sample (g, r, i) that thread element e of a block's G images loads or stores: the width
  /// index fastest, or, where the view's channels are adjacent in memory (channels_last: a
  /// block's consecutive images are), the image index fastest, so that a warp's accesses stay
  /// coalesced either way.
  BLFFT_HD_INLINE void sample_of(uint32_t e, uint32_t G, bool images_fastest, uint32_t& g,
                                 uint32_t& r, uint32_t& i) const {
    if (images_fastest) {
      const uint32_t px = e / G;
      g = e - px * G;
      r = px / Rw;
      i = px - r * Rw;
      return;
    }
    const uint32_t row = e / Rw;
    i = e - row * Rw;
    g = row / Rh;
    r = row - g * Rh;
  }
};

/// Fills a block's pruned DFT matrix m (complex, interleaved): the entry of kept frequency a
/// (kept[a], a < nk) and sample t (grid index off + step * t, t < nt) is
/// e^{sign i 2 pi kept[a] (off + step t) / L}, times half_spectrum_weight(kept[a], L) when
/// `weighted` (the width axis of a synthesis); stored at a * nt + t (`frequency_major`) or
/// t * nk + a. Threads tid, tid + threads, ... of the block.
template <class T>
BLFFT_HD_INLINE void fill_dft_matrix(T* m, uint32_t nk, uint32_t nt, const int64_t* kept,
                                     int32_t off, int32_t step, uint32_t L, double sign,
                                     bool frequency_major, bool weighted, unsigned tid) {
  for (uint32_t e = tid; e < nk * nt; e += fused_threads) {
    const uint32_t a = frequency_major ? e / nt : e % nk, t = frequency_major ? e % nt : e / nk;
    const int64_t k = gload(kept + a);
    const auto c = blfft::detail::dft_twiddle(k, off + int64_t(step) * t, L, sign);
    const double w = weighted ? blfft::detail::half_spectrum_weight(k, L) : 1.0;
    m[2 * e] = static_cast<T>(w * c.re);
    m[2 * e + 1] = static_cast<T>(w * c.im);
  }
}

/// Images per block for a fused transform of this shape, or 0 when even one image's matrices and
/// work arrays do not fit in shared memory (then the transform takes the cuFFT path).
template <class T>
inline int64_t fused_images_per_block(int64_t Rh, int64_t Rw, int64_t nr, int64_t nc,
                                      bool analyse) {
  const int64_t cap = fused_shared_bytes / sizeof(T);
  int64_t G = 0;
  while (G < fused_max_images && fused_shape::scalars(Rh, Rw, nr, nc, G + 1, analyse) <= cap) ++G;
  return G;
}

/// Analysis in one kernel: spectrum[(a * nc + q)][re|im][j] = sum over the image's samples of
/// x(r, i) e^{-i 2 pi (kr_a t_r / Lh + kc_q t_i / Lw)}, for the G images j0 + G * block.x + g.
/// Phase 0: the block computes the width matrix Fw (nc x Rw) and the height matrix Fh (nr x Rh)
/// into shared memory and loads its images' samples (zero padding and dilation are the
/// placement: never materialised); phase 1: T = X Fw^T per image row (real x complex); phase 2:
/// S = Fh T, stored with the image index fastest, so G consecutive images make one contiguous
/// run per kept bin and plane.
template <class T, class X = T>
struct dft_analyse : fused_kernel<T> {
  using typename fused_kernel<T>::shared;
  using typename fused_kernel<T>::regs;
  using fused_kernel<T>::threads;
  static constexpr const char* name = "dft_analyse";

  image_view<const X> src;  ///< X: the images' element type
  T* spectrum = nullptr;
  fused_shape f;
  uint32_t j0 = 0, images = 0;  ///< this launch: images [j0, j0 + images)
  bool block_form = false;      ///< write the 2 x 2 real block form (stacked_offset) instead

  BLFFT_HD_INLINE int phase_count(idx3) const { return 3; }
  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    T* fw = sh.s;                   // [q][i][re, im]
    T* fh = fw + 2 * f.nc * f.Rw;   // [a][r][re, im]
    T* x = fh + 2 * f.nr * f.Rh;    // [g][r][i]
    T* tr = x + f.G * f.Rh * f.Rw;  // [g][r][q][re, im]
    const uint32_t first = j0 + b.x * f.G;
    const uint32_t G = first + f.G <= j0 + images ? f.G : j0 + images - first;
    if (p == 0) {
      fill_dft_matrix(fw, f.nc, f.Rw, f.kept_cols, f.off_w, f.step_w, f.Lw, -1.0, true, false, t.x);
      fill_dft_matrix(fh, f.nr, f.Rh, f.kept_rows, f.off_h, f.step_h, f.Lh, -1.0, true, false, t.x);
      // Samples, coalesced along the view's rows or, channels_last, along its channels.
      const bool images_fastest = channels_adjacent(src, f.CH);
      for (uint32_t e = t.x; e < G * f.Rh * f.Rw; e += threads) {
        uint32_t g, r, i;
        f.sample_of(e, G, images_fastest, g, r, i);
        x[(g * f.Rh + r) * f.Rw + i] =
            load_as<T>(src.data + (f.image_offset(src.stride_b, src.stride_ch, first + g) +
                                   int64_t(r) * src.stride_h + int64_t(i) * src.stride_w));
      }
    } else if (p == 1) {
      for (uint32_t e = t.x; e < G * f.Rh * f.nc; e += threads) {
        const uint32_t row = e / f.nc, q = e - row * f.nc;  // row = g * Rh + r
        const T* xs = x + row * f.Rw;
        const T* w = fw + 2 * q * f.Rw;
        T re = T(0), im = T(0);
        for (uint32_t i = 0; i < f.Rw; ++i) {
          re += xs[i] * w[2 * i];
          im += xs[i] * w[2 * i + 1];
        }
        tr[2 * e] = re;
        tr[2 * e + 1] = im;
      }
    } else {
      const int64_t per_k = 2 * int64_t(f.J);
      for (uint32_t e = t.x; e < f.nr * f.nc * G; e += threads) {
        const uint32_t k = e / G, g = e - k * G, a = k / f.nc, q = k - a * f.nc;
        const T* h = fh + 2 * a * f.Rh;
        const T* z = tr + 2 * (g * f.Rh * f.nc + q);
        T re = T(0), im = T(0);
        for (uint32_t r = 0; r < f.Rh; ++r) {
          const T hr = h[2 * r], hi = h[2 * r + 1], zr = z[2 * r * f.nc], zi = z[2 * r * f.nc + 1];
          re += hr * zr - hi * zi;
          im += hr * zi + hi * zr;
        }
        if (block_form) {
          stacked_store(spectrum, f.J, f.CH, k, first + g, re, im);
          continue;
        }
        T* out = spectrum + int64_t(k) * per_k + first + g;
        gstore(out, re);
        gstore(out + f.J, im);
      }
    }
  }
};

/// Synthesis in one kernel: dst(b, ch, r, i) = scale * sum over kept bins of
/// weight_q Re(S[a][q] e^{+i 2 pi (kr_a t_r / Lh + kc_q t_i / Lw)}) + bias[ch], the real inverse
/// that scatter + c2c + c2r computes (weight_q: half_spectrum_weight), only at the Rh x Rw
/// samples the output needs: crop, stride (output), taps and undilation (weight gradient) are
/// the placement. Phase 0: matrices Eh (Rh x nr), Ew (nc x Rw, weighted) and the G images' kept
/// bins (contiguous runs of G images per bin and plane); phase 1: Z = Eh S per image; phase 2:
/// the rows' real inverse, scale and bias, stored coalesced (fused_shape::sample_of).
template <class T, class X = T>
struct dft_synthesise : fused_kernel<T> {
  using typename fused_kernel<T>::shared;
  using typename fused_kernel<T>::regs;
  using fused_kernel<T>::threads;
  static constexpr const char* name = "dft_synthesise";

  const T* spectrum = nullptr;
  image_view<X> dst;  ///< and bias: X, the output's element type
  const X* bias = nullptr;
  T scale = T(1);
  fused_shape f;
  uint32_t j0 = 0, images = 0;
  bool stacked = false;  ///< spectrum holds the forward's stacked products (stacked_load)

  BLFFT_HD_INLINE int phase_count(idx3) const { return 3; }
  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    T* ew = sh.s;                       // [q][i][re, im], weighted
    T* eh = ew + 2 * f.nc * f.Rw;       // [r][a][re, im]
    T* sp = eh + 2 * f.nr * f.Rh;       // [k][g][re, im]
    T* z = sp + 2 * f.nr * f.nc * f.G;  // [g][r][q][re, im]
    const uint32_t first = j0 + b.x * f.G;
    const uint32_t G = first + f.G <= j0 + images ? f.G : j0 + images - first;
    if (p == 0) {
      fill_dft_matrix(ew, f.nc, f.Rw, f.kept_cols, f.off_w, f.step_w, f.Lw, 1.0, true, true, t.x);
      fill_dft_matrix(eh, f.nr, f.Rh, f.kept_rows, f.off_h, f.step_h, f.Lh, 1.0, false, false, t.x);
      const int64_t per_k = 2 * int64_t(f.J);
      for (uint32_t e = t.x; e < f.nr * f.nc * G; e += threads) {
        const uint32_t k = e / G, g = e - k * G;
        if (stacked) {
          stacked_load(spectrum, f.J, f.CH, k, first + g, sp[2 * (k * f.G + g)],
                       sp[2 * (k * f.G + g) + 1]);
          continue;
        }
        const T* in = spectrum + int64_t(k) * per_k + first + g;
        sp[2 * (k * f.G + g)] = gload(in);
        sp[2 * (k * f.G + g) + 1] = gload(in + f.J);
      }
    } else if (p == 1) {
      for (uint32_t e = t.x; e < G * f.Rh * f.nc; e += threads) {
        const uint32_t row = e / f.nc, q = e - row * f.nc, g = row / f.Rh, r = row - g * f.Rh;
        const T* h = eh + 2 * r * f.nr;
        T re = T(0), im = T(0);
        for (uint32_t a = 0; a < f.nr; ++a) {
          const T* s = sp + 2 * ((a * f.nc + q) * f.G + g);
          re += h[2 * a] * s[0] - h[2 * a + 1] * s[1];
          im += h[2 * a] * s[1] + h[2 * a + 1] * s[0];
        }
        z[2 * e] = re;
        z[2 * e + 1] = im;
      }
    } else {
      const bool images_fastest = channels_adjacent(dst, f.CH);
      for (uint32_t e = t.x; e < G * f.Rh * f.Rw; e += threads) {
        uint32_t g, r, i;
        f.sample_of(e, G, images_fastest, g, r, i);
        const T* zr = z + 2 * (g * f.Rh + r) * f.nc;
        T v = T(0);
        for (uint32_t q = 0; q < f.nc; ++q)  // Re(Z e^{i theta}) = Zr cos - Zi sin
          v += zr[2 * q] * ew[2 * (q * f.Rw + i)] - zr[2 * q + 1] * ew[2 * (q * f.Rw + i) + 1];
        const uint32_t j = first + g, ch = j % f.CH;
        store_as(dst.data + (f.image_offset(dst.stride_b, dst.stride_ch, j) +
                             int64_t(r) * dst.stride_h + int64_t(i) * dst.stride_w),
                 v * scale + (bias ? load_as<T>(bias + ch) : T(0)));
      }
    }
  }
};

/// One block per G images.
inline launch_dims fused_dims(int64_t images, int64_t G) {
  launch_dims d;
  d.grid.x = static_cast<unsigned>(ceil_div(images, G));
  d.grid.y = d.grid.z = 1;
  d.block.x = fused_threads;
  d.block.y = d.block.z = 1;
  return d;
}

// ---------------------------------------------------------------------------------------------
// Channel mixing: complex GEMMs, Gauss's three-multiplication trick, tiled
// ---------------------------------------------------------------------------------------------

/// One planar complex operand of a per-frequency product. Element (i, k) of the operand of
/// frequency f and group g is (re, im) = (p[o], p[o + im]) with o = f * freq + g * group +
/// i * s_outer + k * s_inner, conjugated when sign = -1.
template <class T>
struct mix_operand {
  const T* p = nullptr;
  int64_t s_outer = 0, s_inner = 0, im = 0, freq = 0, group = 0;
  T sign = T(1);
};

/// The planar complex result of a per-frequency product: element (m, n) of frequency f and group
/// g is (re, im) at (p[o], p[o + im]) with o = f * freq + g * group + m * s_m + n * s_n.
template <class T>
struct mix_result {
  T* p = nullptr;
  int64_t s_m = 0, s_n = 0, im = 0, freq = 0, group = 0;
};

constexpr uint32_t mix_max_taps = 32;  ///< per axis, for the taps path

/// The weight operand of the forward and input-gradient mixing computed from the kernel's taps
/// instead of read from its spectrum (the CPU backend's taps path): the element at plane offset
/// o = f * Cg + c (f across groups) of kept frequency (a, q) is
/// sum over taps (u, v) of w(f, c, u, v) e^{-i 2 pi (kept_rows[a] u dh / Lh + kept_cols[q] v dw /
/// Lw)}. The weight spectrum, 2 kept / (KH KW) times the weight's size, is then never written or
/// read. X: the weight's element type (read with load_as, so 16-bit weights mix from their taps
/// too).
template <class X>
struct mix_taps {
  image_view<const X> w;  ///< (F, Cg, KH, KW)
  const int64_t* kept_rows = nullptr;
  const int64_t* kept_cols = nullptr;
  uint32_t Cg = 1, KH = 1, KW = 1, nc = 1, Lh = 1, Lw = 1;
  int32_t dil_h = 1, dil_w = 1;
};

/// C[z] (M x N) = opA[z] (M x K) * opB[z] (K x N) for every z = frequency * groups + group, all
/// planar complex (see blfft::geometry for the layout):
///   forward      Y_k = X_k W_k^H   input grad  dX_k = G_k W_k   weight grad  dW_k = G_k^H X_k
/// Block (x, y, z) computes the BM x BN tile (y, x) of product z0 + z, TM x TN outputs per thread
/// (register blocking). Phases alternate: load a BK-deep slice of A and B into shared memory
/// (re, im and the Gauss sum re + sign * im, zero-filled past the edges), then accumulate the
/// three real products T1 = Ar Br, T2 = Ai Bi, T3 = (Ar + sa Ai)(Br + sb Bi) over the slice:
/// 3 multiply-adds per complex product instead of 4. The last phase also writes
/// Re = T1 - sa sb T2, Im = T3 - T1 - sa sb T2. Every loaded coefficient is reused by TM (or TN)
/// outputs of a thread and by BM / TM (or BN / TN) threads of the block.
/// With `b_from_taps`, a first phase computes the block's frequency's tap twiddles into shared
/// memory and B's slices are computed from the taps (mix_taps) rather than loaded; X is the
/// taps' element type (the spectra are T either way).
template <class T, int BM, int BN, int BK, int TM, int TN, class X = T>
struct mix_kernel {
  static constexpr bool phased = true;
  static constexpr unsigned threads = (BM / TM) * (BN / TN);
  // Two blocks per SM for float (caps registers at 128 a thread); double is for tests.
  static constexpr unsigned min_blocks = sizeof(T) == 4 ? 2 : 1;
  static constexpr const char* name = "mix";
  static constexpr int bm = BM, bn = BN, bk = BK, tm = TM, tn = TN;
  static constexpr int pad = 4;  // keeps rows 16-byte aligned and spreads the transposed stores
  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split evenly over threads");
  struct shared {
    alignas(16) T a[3][BK][BM + pad];
    alignas(16) T b[3][BK][BN + pad];
    T tw[2][mix_max_taps][2];  // taps path: [height | width][tap][re | im]
  };
  struct regs {
    T acc[3][TM][TN];
  };

  mix_operand<T> A, B;  ///< A: s_outer = m stride, s_inner = k; B: s_outer = n, s_inner = k
  mix_result<T> C;
  uint32_t M = 1, N = 1, K = 1, groups = 1, z0 = 0;
  mix_taps<X> taps;
  bool b_from_taps = false;

  BLFFT_HD_INLINE int phase_count(idx3) const {
    return 2 * static_cast<int>((K + BK - 1) / BK) + (b_from_taps ? 1 : 0);
  }
  /// Thread t's first output row and column inside the block tile (then + i, + j).
  BLFFT_HD_INLINE static void thread_origin(idx3 t, uint32_t& m, uint32_t& n) {
    const uint32_t tx = t.x % (BN / TN), ty = t.x / (BN / TN);
    m = ty * TM;
    n = tx * TN;
  }
  /// Loader mapping: element e of a (rows x BK) slice, k fastest when the operand is contiguous
  /// in k, else the row index fastest (coalesced global loads either way).
  BLFFT_HD_INLINE static void slice_item(uint32_t e, uint32_t rows, bool k_fast, uint32_t& row,
                                         uint32_t& k) {
    if (k_fast) {
      k = e % BK;
      row = e / BK;
    } else {
      row = e % rows;
      k = e / rows;
    }
  }

  BLFFT_HD_INLINE void phase(int p, shared& sh, regs& r, idx3 b, idx3 t) const {
    const uint32_t z = z0 + b.z, freq = z / groups, grp = z - freq * groups;
    if (b_from_taps) {
      if (p == 0) return tap_twiddles(freq, t.x, sh);
      --p;
    }
    const uint32_t m0 = b.y * BM, n0 = b.x * BN, k0 = static_cast<uint32_t>(p / 2) * BK;
    if (p % 2 == 0) {
      if (p == 0) zero(r);
      load_slice(A, BM, M, m0, k0, freq, grp, t.x, sh.a, nullptr);
      load_slice(B, BN, N, n0, k0, freq, grp, t.x, sh.b, b_from_taps ? &sh : nullptr);
      return;
    }
    multiply_slice(sh, r, t);
    if (k0 + BK < K) return;  // not the last slice
    uint32_t tm0, tn0;
    thread_origin(t, tm0, tn0);
    T* base = C.p + int64_t(freq) * C.freq + int64_t(grp) * C.group;
    for (int i = 0; i < TM; ++i)
      for (int j = 0; j < TN; ++j) {
        const uint32_t m = m0 + tm0 + i, n = n0 + tn0 + j;
        if (m >= M || n >= N) continue;
        T re, im;
        result_at(r, i, j, re, im);
        const int64_t o = int64_t(m) * C.s_m + int64_t(n) * C.s_n;
        gstore(base + o, re);
        gstore(base + o + C.im, im);
      }
  }

 protected:
  BLFFT_HD_INLINE static void zero(regs& r) {
    for (int q = 0; q < 3; ++q)
      for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) r.acc[q][i][j] = T(0);
  }

  /// Accumulates the three real products of the slice in shared memory onto thread t's outputs.
  BLFFT_HD_INLINE static void multiply_slice(const shared& sh, regs& r, idx3 t) {
    uint32_t tm0, tn0;
    thread_origin(t, tm0, tn0);
#if defined(__CUDA_ARCH__)
#pragma unroll 4
#endif
    for (int kk = 0; kk < BK; ++kk) {
      T ar[TM], ai[TM], as[TM], br[TN], bi[TN], bs[TN];
      for (int i = 0; i < TM; ++i) {
        ar[i] = sh.a[0][kk][tm0 + i];
        ai[i] = sh.a[1][kk][tm0 + i];
        as[i] = sh.a[2][kk][tm0 + i];
      }
      for (int j = 0; j < TN; ++j) {
        br[j] = sh.b[0][kk][tn0 + j];
        bi[j] = sh.b[1][kk][tn0 + j];
        bs[j] = sh.b[2][kk][tn0 + j];
      }
      for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) {
          r.acc[0][i][j] += ar[i] * br[j];
          r.acc[1][i][j] += ai[i] * bi[j];
          r.acc[2][i][j] += as[i] * bs[j];
        }
    }
  }

  /// Output (i, j) of the thread from its three accumulated real products (Gauss's combine).
  BLFFT_HD_INLINE void result_at(const regs& r, int i, int j, T& re, T& im) const {
    const T t1 = r.acc[0][i][j], st2 = A.sign * B.sign * r.acc[1][i][j];
    re = t1 - st2;
    im = r.acc[2][i][j] - t1 - st2;
  }

  /// Taps path, first phase: e^{-i 2 pi kr u dh / Lh} (u < KH) and e^{-i 2 pi kc v dw / Lw}
  /// (v < KW) of the block's frequency, one thread each.
  BLFFT_HD_INLINE void tap_twiddles(uint32_t freq, uint32_t tid, shared& sh) const {
    const uint32_t a = freq / taps.nc, q = freq - a * taps.nc;
    const bool height = tid < taps.KH;
    const uint32_t u = height ? tid : tid - taps.KH;
    if (u >= (height ? taps.KH : taps.KW)) return;
    const auto c = height ? blfft::detail::dft_twiddle(gload(taps.kept_rows + a),
                                                       int64_t(u) * taps.dil_h, taps.Lh, -1.0)
                          : blfft::detail::dft_twiddle(gload(taps.kept_cols + q),
                                                       int64_t(u) * taps.dil_w, taps.Lw, -1.0);
    sh.tw[height ? 0 : 1][u][0] = static_cast<T>(c.re);
    sh.tw[height ? 0 : 1][u][1] = static_cast<T>(c.im);
  }

  /// The weight spectrum's element at plane offset o (group included), from the taps.
  BLFFT_HD_INLINE void from_taps(int64_t o, const shared& sh, T& re, T& im) const {
    const int64_t f = o / taps.Cg, c = o - f * taps.Cg;
    const X* w = taps.w.data + f * taps.w.stride_b + c * taps.w.stride_ch;
    re = im = T(0);
    for (uint32_t u = 0; u < taps.KH; ++u) {
      T sr = T(0), si = T(0);
      for (uint32_t v = 0; v < taps.KW; ++v) {
        const T x = load_as<T>(w + int64_t(u) * taps.w.stride_h + int64_t(v) * taps.w.stride_w);
        sr += x * sh.tw[1][v][0];
        si += x * sh.tw[1][v][1];
      }
      const T hr = sh.tw[0][u][0], hi = sh.tw[0][u][1];
      re += hr * sr - hi * si;
      im += hr * si + hi * sr;
    }
  }

  /// Loads rows [r0, r0 + rows) x k [k0, k0 + BK) of one operand into shared memory, k-major;
  /// computed from the taps when `taps_sh` (the block's twiddles) is given.
  template <int R>
  BLFFT_HD_INLINE void load_slice(const mix_operand<T>& op, uint32_t rows, uint32_t extent,
                                  uint32_t r0, uint32_t k0, uint32_t freq, uint32_t grp,
                                  uint32_t tid, T (&dst)[3][BK][R], const shared* taps_sh) const {
    const T* p = taps_sh ? nullptr : op.p + int64_t(freq) * op.freq + int64_t(grp) * op.group;
    const bool k_fast = op.s_inner == 1;
    for (uint32_t e = tid; e < rows * BK; e += threads) {
      uint32_t row, k;
      slice_item(e, rows, k_fast, row, k);
      T re = T(0), im = T(0);
      if (r0 + row < extent && k0 + k < K) {
        const int64_t o = int64_t(r0 + row) * op.s_outer + int64_t(k0 + k) * op.s_inner;
        if (taps_sh) {
          from_taps(int64_t(grp) * op.group + o, *taps_sh, re, im);
        } else {
          re = gload(p + o);
          im = gload(p + o + op.im);
        }
      }
      dst[0][k][row] = re;
      dst[1][k][row] = im;
      dst[2][k][row] = re + op.sign * im;
    }
  }
};

/// The two tile shapes (mix_tile::small / large). Double precision uses a shallower slice so the
/// shared arrays stay well within the 48 KB of static shared memory.
template <class T, class X = T>
using mix_large = mix_kernel<T, 64, 64, sizeof(T) == 4 ? 16 : 8, 4, 4, X>;
template <class T, class X = T>
using mix_small = mix_kernel<T, 32, 64, sizeof(T) == 4 ? 16 : 8, 2, 4, X>;

/// Launch geometry of a mix kernel over `count` products starting at k.z0 (count <= 65535: the
/// caller splits larger counts into several launches). False when M is too large for grid.y.
template <class K>
bool mix_dims(const K& k, int64_t count, launch_dims& d) {
  const int64_t tiles_m = ceil_div(k.M, K::bm), tiles_n = ceil_div(k.N, K::bn);
  if (tiles_m > max_grid_yz || tiles_n > max_grid_x || count > max_grid_yz || count < 1)
    return false;
  d.grid.x = static_cast<unsigned>(tiles_n);
  d.grid.y = static_cast<unsigned>(tiles_m);
  d.grid.z = static_cast<unsigned>(count);
  d.block.x = K::threads;
  d.block.y = d.block.z = 1;
  return true;
}

/// The large tile unless it leaves fewer than `min_blocks` blocks (or M is small): small maps at
/// small batch then still fill the GPU.
inline bool prefer_small_mix_tile(int64_t M, int64_t N, int64_t products,
                                  int64_t min_blocks = 264) {
  if (M <= 32) return true;
  return ceil_div(M, 64) * ceil_div(N, 64) * products < min_blocks;
}

// ---------------------------------------------------------------------------------------------
// Weight gradient fused into its mixing: dW_k = G_k^H X_k reduced to the taps as it is made
// ---------------------------------------------------------------------------------------------

/// Where a weight gradient's taps come from in the fused pass: the kept frequencies cut into
/// `slices` runs of `per_slice`; each block reduces its run to tap partial sums. slices == 1: the
/// blocks write the gradient itself (scaled) into `dst`; else partial[s][f][c][t] (t = u KW + v,
/// f across groups), summed by tap_sum.
template <class T, class X = T>
struct tap_output {
  image_view<X> dst;  ///< (F, Cg, KH, KW), in the weight's element type X
  T* partial = nullptr;
  T scale = T(1);
  uint32_t F = 1, slices = 1, per_slice = 1, kept = 1;
};

/// The weight gradient's mixing and synthesis in one kernel (issue #11): block (x, y, z) owns the
/// BM x BN tile (y, x) of (f, c) of group z % groups and the kept frequencies of slice
/// z / groups. Per frequency it accumulates dW_k = G_k^H X_k over the batch as mix_kernel does
/// (Gauss's three real products), then adds Re(E_t,k dW_k) for every tap t to the tile's tap
/// sums in shared memory, E_t,k = weight_q e^{+i 2 pi (kr_a u dh / Lh + kc_q v dw / Lw)} (the
/// synthesis of dft_synthesise, cropped to the taps and undilated). The dW spectrum (2 kept
/// scalars per (f, c)) is never written; a frequency's E column is made by the first threads in
/// the load phase that starts the frequency. Fixed summation order: deterministic.
template <class T, int BM, int BN, int BK, int TM, int TN, class X = T>
struct mix_to_taps : mix_kernel<T, BM, BN, BK, TM, TN> {
  using base = mix_kernel<T, BM, BN, BK, TM, TN>;
  using base::threads;
  using typename base::regs;
  static constexpr const char* name = "mix_to_taps";
  /// Taps whose sums fit next to the GEMM's slices in static shared memory (9 for float and
  /// double with the tiles below: 3 x 3 kernels).
  static constexpr uint32_t max_taps =
      (fused_shared_bytes - sizeof(typename base::shared)) / ((BM * BN + 2) * sizeof(T));
  static_assert(max_taps >= 1 && max_taps <= threads, "one thread per tap makes E's column");
  struct shared {
    typename base::shared mix;
    T sums[max_taps][BM][BN];
    T e[max_taps][2];  // the current frequency's E column
  };

  tap_output<T, X> out;

  /// Frequencies of the block's slice, and the GEMM's depth slices per frequency.
  BLFFT_HD_INLINE uint32_t frequencies(idx3 b) const {
    const uint32_t s = b.z / this->groups, first = s * out.per_slice;
    return first + out.per_slice <= out.kept ? out.per_slice : out.kept - first;
  }
  BLFFT_HD_INLINE uint32_t depth_slices() const {
    const uint32_t d = (this->K + BK - 1) / BK;
    return d > 0 ? d : 1;  // an empty batch still writes its zeros
  }
  BLFFT_HD_INLINE int phase_count(idx3 b) const {
    return static_cast<int>(2 * frequencies(b) * depth_slices()) + 1;
  }

  BLFFT_HD_INLINE void phase(int p, shared& sh, regs& r, idx3 b, idx3 t) const {
    const uint32_t grp = b.z % this->groups, s = b.z / this->groups;
    const uint32_t m0 = b.y * BM, n0 = b.x * BN, taps = this->taps.KH * this->taps.KW;
    const uint32_t ds = depth_slices(), step = static_cast<uint32_t>(p) / 2;
    uint32_t tm0, tn0;
    base::thread_origin(t, tm0, tn0);
    if (step == frequencies(b) * ds) return store(sh, b, t.x, grp, s, taps);
    const uint32_t freq = s * out.per_slice + step / ds, k0 = (step % ds) * BK;
    if (p % 2 == 0) {
      if (p == 0)  // the thread's own tap sums
        for (uint32_t u = 0; u < taps; ++u)
          for (int i = 0; i < TM; ++i)
            for (int j = 0; j < TN; ++j) sh.sums[u][tm0 + i][tn0 + j] = T(0);
      if (k0 == 0) {
        base::zero(r);
        if (t.x < taps) e_entry(freq, t.x, sh.e[t.x]);
      }
      this->load_slice(this->A, BM, this->M, m0, k0, freq, grp, t.x, sh.mix.a, nullptr);
      this->load_slice(this->B, BN, this->N, n0, k0, freq, grp, t.x, sh.mix.b, nullptr);
      return;
    }
    base::multiply_slice(sh.mix, r, t);
    if (k0 + BK < this->K) return;  // not the frequency's last depth slice
    for (int i = 0; i < TM; ++i)
      for (int j = 0; j < TN; ++j) {
        T re, im;
        this->result_at(r, i, j, re, im);
        for (uint32_t u = 0; u < taps; ++u)
          sh.sums[u][tm0 + i][tn0 + j] += sh.e[u][0] * re - sh.e[u][1] * im;
      }
  }

 private:
  /// E_t,k for tap t = u KW + v of kept frequency k = a nc + q.
  BLFFT_HD_INLINE void e_entry(uint32_t k, uint32_t tap, T (&e)[2]) const {
    const auto& g = this->taps;
    const uint32_t a = k / g.nc, q = k - a * g.nc, u = tap / g.KW, v = tap - u * g.KW;
    const int64_t kr = gload(g.kept_rows + a), kc = gload(g.kept_cols + q);
    const auto h = blfft::detail::dft_twiddle(kr, int64_t(u) * g.dil_h, g.Lh, 1.0);
    const auto w = blfft::detail::dft_twiddle(kc, int64_t(v) * g.dil_w, g.Lw, 1.0);
    const double wq = blfft::detail::half_spectrum_weight(kc, g.Lw);
    e[0] = static_cast<T>(wq * (h.re * w.re - h.im * w.im));
    e[1] = static_cast<T>(wq * (h.re * w.im + h.im * w.re));
  }

  /// Last phase: the tile's tap sums, every thread of the block over all of them (taps fastest,
  /// then c: contiguous runs in the partial sums and in a contiguous gradient).
  BLFFT_HD_INLINE void store(const shared& sh, idx3 b, uint32_t tid, uint32_t grp, uint32_t s,
                             uint32_t taps) const {
    const uint32_t m0 = b.y * BM, n0 = b.x * BN, Cg = this->taps.Cg;
    for (uint32_t e = tid; e < BM * BN * taps; e += threads) {
      const uint32_t row = e / (BN * taps), rest = e - row * (BN * taps), col = rest / taps,
                     u = rest - col * taps, m = m0 + row, n = n0 + col;
      if (m >= this->M || n >= this->N) continue;
      const uint32_t f = grp * this->M + m;
      const T v = sh.sums[u][row][col];
      if (out.slices > 1) {
        gstore(out.partial + ((int64_t(s) * out.F + f) * Cg + n) * taps + u, v);
        continue;
      }
      const uint32_t kh = u / this->taps.KW, kw = u - kh * this->taps.KW;
      store_as(out.dst.data + (int64_t(f) * out.dst.stride_b + int64_t(n) * out.dst.stride_ch +
                               int64_t(kh) * out.dst.stride_h + int64_t(kw) * out.dst.stride_w),
               v * out.scale);
    }
  }
};

/// The two tile shapes of the fused weight gradient: large 32 x 32 (128 threads), small 16 x 16
/// (64 threads) where the large leaves the GPU short of blocks. Double (tests) takes shallower
/// slices and a 16 x 32 large tile so that 3 x 3 taps still fit.
template <class T, class X = T>
using mix_to_taps_large = std::conditional_t<sizeof(T) == 4, mix_to_taps<T, 32, 32, 8, 2, 4, X>,
                                             mix_to_taps<T, 16, 32, 4, 2, 4, X>>;
template <class T, class X = T>
using mix_to_taps_small = mix_to_taps<T, 16, 16, sizeof(T) == 4 ? 8 : 4, 2, 2, X>;

/// The fused weight gradient's launch: tile, slices of the kept frequencies.
struct tap_launch {
  bool small = false;
  int64_t slices = 1, per_slice = 1;  ///< slices x per_slice >= kept > (slices - 1) x per_slice
};

/// The tile and slice count for an M x N (per group) gradient of `taps` taps over `kept`
/// frequencies: enough blocks to fill an H200 (132 SMs) where possible, but partial sums of at
/// most a quarter of the dW spectrum they replace (slices x taps <= kept / 2), since each slice's
/// sums are written and read back once; one slice writes the gradient directly.
inline tap_launch choose_tap_launch(int64_t M, int64_t N, int64_t groups, int64_t kept,
                                    int64_t taps, int64_t target_blocks = 132) {
  const int64_t cap = std::max<int64_t>(1, kept / (2 * taps));
  const auto slices_for = [&](int64_t tiles) {
    return std::clamp<int64_t>(ceil_div(target_blocks, tiles), 1, cap);
  };
  const int64_t large = ceil_div(M, 32) * ceil_div(N, 32) * groups;
  tap_launch l;
  l.small = large * slices_for(large) < target_blocks;
  const int64_t tiles = l.small ? ceil_div(M, 16) * ceil_div(N, 16) * groups : large;
  // Equal runs of the kept frequencies, none empty, at least as many as wanted within the cap.
  int64_t per = std::max<int64_t>(1, kept / slices_for(tiles));
  if (ceil_div(kept, per) > cap) per = ceil_div(kept, cap);
  l.per_slice = per;
  l.slices = ceil_div(kept, per);
  return l;
}

/// grad_weight(f, c, u, v) = scale * sum over s of partial[s][f][c][u KW + v], s in order
/// (deterministic). One thread per tap.
template <class T, class X = T>
struct tap_sum : flat_kernel {
  static constexpr const char* name = "tap_sum";

  const T* partial = nullptr;
  image_view<X> dst;
  T scale = T(1);
  uint32_t n = 0;  ///< F * Cg * taps
  uint32_t slices = 1, Cg = 1, KW = 1, taps = 1;

  BLFFT_HD_INLINE void operator()(idx3 b, idx3 t) const {
    uint32_t i;
    if (!flat_item(b, t, n, i)) return;
    T v = T(0);
    for (uint32_t s = 0; s < slices; ++s) v += gload(partial + int64_t(s) * n + i);
    const uint32_t fc = i / taps, u = i - fc * taps, f = fc / Cg, c = fc - f * Cg, kh = u / KW,
                   kw = u - kh * KW;
    store_as(dst.data + (int64_t(f) * dst.stride_b + int64_t(c) * dst.stride_ch +
                         int64_t(kh) * dst.stride_h + int64_t(kw) * dst.stride_w),
             v * scale);
  }
};

// ---------------------------------------------------------------------------------------------
// Reductions (one block per output, double accumulation, a fixed-order tree: deterministic)
// ---------------------------------------------------------------------------------------------

constexpr unsigned reduce_threads = 256;
constexpr int reduce_steps = 8;  // log2(reduce_threads)

/// Phases of a block reduction: 0 = each thread sums its share into shared[t]; 1..8 = tree steps
/// (step s adds shared[t + 256 >> s] into shared[t] for t < 256 >> s); the last one also writes.
struct reduce_shared {
  double sum[reduce_threads];
};
BLFFT_HD_INLINE void reduce_step(int p, reduce_shared& sh, unsigned t) {
  const unsigned half = reduce_threads >> p;
  if (t < half) sh.sum[t] += sh.sum[t + half];
}

/// A block reduction kernel (reduce_dims): one block per output.
struct reduce_kernel : kernel_traits<true, reduce_threads> {
  using shared = reduce_shared;
  struct regs {};
};

inline launch_dims reduce_dims(int64_t outputs) {
  launch_dims d;
  d.grid.x = static_cast<unsigned>(outputs);
  d.grid.y = d.grid.z = 1;
  d.block.x = reduce_threads;
  d.block.y = d.block.z = 1;
  return d;
}

/// The bias gradient's split of the P = N D Ho Wo pixels (n, d, h, w, flattened in that order)
/// into `slices` runs of `len` pixels, from the shapes only, never the layout or the device, so
/// both kernels sum in the same order. The rule: want = min(ceil(bias_target_blocks / channel
/// tiles of bias_channels), floor(P / bias_min_slice)) runs, about 4 blocks a SM of a 132-SM GPU
/// for the channels_adjacent kernel (the contiguous one has 16x more blocks) while a run keeps
/// at least bias_min_slice pixels (4 KB of float a contiguous block, 64 KB a channels_adjacent
/// one); len = floor(P / want) rounded down to a multiple of reduce_threads, so there are
/// want to 1.25 want + 1 runs. Small layers (want = 1): one run, one launch.
constexpr unsigned bias_channels = 16, bias_lanes = reduce_threads / bias_channels;
constexpr int64_t bias_target_blocks = 512, bias_min_slice = 4 * reduce_threads;
struct bias_slicing {
  uint32_t slices = 1;
  int64_t len = 1;  // (one run of a huge layer may pass 2^32 pixels)
};
inline bias_slicing bias_slicing_of(int64_t pixels, int64_t F) {
  const int64_t want =
      std::min(ceil_div(bias_target_blocks, ceil_div(F, bias_channels)), pixels / bias_min_slice);
  if (want <= 1) return {1, ceil_div(pixels, reduce_threads) * reduce_threads};
  const int64_t len = pixels / want / reduce_threads * reduce_threads;
  return {static_cast<uint32_t>(ceil_div(pixels, len)), len};
}
/// A bias gradient kernel's grid: `tiles` channel tiles (x) by the runs (y).
inline launch_dims bias_dims(int64_t tiles, const bias_slicing& s) {
  launch_dims d = reduce_dims(tiles);
  d.grid.y = s.slices;
  return d;
}

/// What the bias gradient reads: grad_out (slice 0 of D depth slices, stride_d apart) and N;
/// the pixels' split (blockIdx.y is the run). With one run a block writes the gradient; with
/// more, its run's double sum to partial[f * slices + run] and bias_grad_sum adds them.
template <class X>
struct bias_grad_args {
  image_view<const X> g;  ///< and out: X, the gradients' element type
  X* out = nullptr;
  double* partial = nullptr;  ///< F x slices doubles when slices > 1
  uint32_t N = 1, Ho = 1, Wo = 1;
  uint32_t D = 1;        ///< depth slices (3D; g is slice 0)
  int64_t stride_d = 0;  ///< element stride between them
  int64_t pixels = 1;    ///< N D Ho Wo
  bias_slicing split;

  /// Element e (h * Wo + w) of channel f, batch-and-depth index nd = n * D + d.
  BLFFT_HD_INLINE const X* at(uint32_t f, uint32_t nd, uint32_t e) const {
    const uint32_t n = nd / D, d = nd - n * D, h = e / Wo, w = e - h * Wo;
    return g.data + (int64_t(n) * g.stride_b + int64_t(f) * g.stride_ch + int64_t(d) * stride_d +
                     int64_t(h) * g.stride_h + int64_t(w) * g.stride_w);
  }
  /// The end of the run from pixel `first` (no std::min in device code).
  BLFFT_HD_INLINE int64_t run_end(int64_t first) const {
    return first + split.len < pixels ? first + split.len : pixels;
  }
  /// The one summation order of both kernels: lane l of reduce_threads sums channel f's pixels
  /// run_start + l + reduce_threads i of the run in order of i (a pixel's (nd, e) is stepped,
  /// not divided out, per element); the fixed tree over the lanes follows.
  BLFFT_HD_INLINE double lane_sum(uint32_t f, uint32_t run, unsigned l) const {
    const int64_t first = int64_t(run) * split.len, end = run_end(first);
    if (first + l >= end) return 0;
    const uint32_t hw = Ho * Wo;
    uint32_t nd = static_cast<uint32_t>((first + l) / hw),
             e = static_cast<uint32_t>((first + l) % hw);
    double s = 0;
    for (int64_t p = first + l; p < end; p += reduce_threads) {
      s += load_as<double>(at(f, nd, e));
      e += reduce_threads;
      if (e >= hw) nd += e / hw, e %= hw;
    }
    return s;
  }
  /// Channel f's sum over the run: the gradient (one run) or the run's partial.
  template <class T>
  BLFFT_HD_INLINE void put(uint32_t f, uint32_t run, double v) const {
    if (split.slices == 1)
      store_as(out + f, static_cast<T>(v));
    else
      gstore(partial + int64_t(f) * split.slices + run, v);
  }
};

/// grad_bias[f] = sum over n, (d,) h, w of grad_out(n, f, (d,) h, w). Block (f, run), thread t
/// is lane t (bias_grad_args::lane_sum), then the fixed tree; coalesced for contiguous maps.
template <class T, class X = T>
struct bias_grad_kernel : reduce_kernel, bias_grad_args<X> {
  static constexpr const char* name = "bias_grad";

  BLFFT_HD_INLINE int phase_count(idx3) const { return 1 + reduce_steps; }
  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    if (p == 0) {
      sh.sum[t.x] = this->lane_sum(b.x, b.y, t.x);
      return;
    }
    reduce_step(p, sh, t.x);
    if (p == reduce_steps && t.x == 0) this->template put<T>(b.x, b.y, sh.sum[0]);
  }
};

/// bias_grad_kernel for channels_adjacent gradients: block (b, run) sums the 16 channels from
/// 16 b, a warp's lanes over 16 adjacent channels of 2 pixels (coalesced; one channel a block
/// reads 1 of every 8 floats of a sector). Thread (c, q) = (t % 16, t / 16) holds lanes
/// q + 16 i of channel c, each summed as bias_grad_kernel's lane, stepping the 16 together a
/// pixel group at a time, and the tree is its tree per channel: bit for bit the same gradient.
template <class T, class X = T>
struct bias_grad_tiled : kernel_traits<true, reduce_threads>, bias_grad_args<X> {
  static constexpr const char* name = "bias_grad_tiled";
  struct shared {
    double sum[bias_channels][reduce_threads];
  };
  struct regs {};
  uint32_t F = 1;

  BLFFT_HD_INLINE int phase_count(idx3) const { return 1 + reduce_steps; }
  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    const uint32_t f0 = b.x * bias_channels;
    if (p == 0) {
      const uint32_t c = t.x % bias_channels, q = t.x / bias_channels, hw = this->Ho * this->Wo;
      double s[bias_lanes];
      for (unsigned i = 0; i < bias_lanes; ++i) s[i] = 0;
      const int64_t first = int64_t(b.y) * this->split.len, end = this->run_end(first);
      if (f0 + c < F) {
        // (nd, e) of pixel base + q, stepped by reduce_threads; lane i's pixel is 16 i further.
        uint32_t nd = static_cast<uint32_t>((first + q) / hw),
                 e = static_cast<uint32_t>((first + q) % hw);
        for (int64_t base = first; base + q < end; base += reduce_threads) {
          uint32_t ndi = nd, ei = e;
          for (unsigned i = 0; i < bias_lanes && base + q + bias_lanes * i < end; ++i) {
            s[i] += load_as<double>(this->at(f0 + c, ndi, ei));
            ei += bias_lanes;
            if (ei >= hw) ndi += ei / hw, ei %= hw;
          }
          e += reduce_threads;
          if (e >= hw) nd += e / hw, e %= hw;
        }
      }
      for (unsigned i = 0; i < bias_lanes; ++i) sh.sum[c][q + bias_lanes * i] = s[i];
      return;
    }
    const unsigned half = reduce_threads >> p;  // reduce_step for every channel of the block
    for (unsigned e = t.x; e < bias_channels * half; e += reduce_threads) {
      const unsigned c = e / half, i = e - c * half;
      sh.sum[c][i] += sh.sum[c][i + half];
      if (p == reduce_steps && f0 + c < F) this->template put<T>(f0 + c, b.y, sh.sum[c][0]);
    }
  }
};

/// The bias gradient from the runs' partials (bias_grad_args, slices > 1): block f, thread t
/// sums runs t, t + 256, ... in order, then the fixed tree; the same for either layout.
template <class T, class X = T>
struct bias_grad_sum : reduce_kernel {
  static constexpr const char* name = "bias_grad_sum";
  const double* partial = nullptr;
  X* out = nullptr;
  uint32_t slices = 1;

  BLFFT_HD_INLINE int phase_count(idx3) const { return 1 + reduce_steps; }
  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    if (p == 0) {
      double s = 0;
      for (uint32_t r = t.x; r < slices; r += threads)
        s += gload(partial + int64_t(b.x) * slices + r);
      sh.sum[t.x] = s;
      return;
    }
    reduce_step(p, sh, t.x);
    if (p == reduce_steps && t.x == 0) store_as(out + b.x, static_cast<T>(sh.sum[0]));
  }
};

/// energy[k] += weight(k) * sum over images j of |S[k][.][j]|^2 for a full (every bin kept)
/// frequency-major spectrum of J images; weight 2 for rfft columns that stand for a conjugate
/// pair, 1 for DC and Nyquist. Block k.
template <class T>
struct energy_kernel : reduce_kernel {
  static constexpr const char* name = "energy";

  const T* spec = nullptr;
  double* energy = nullptr;
  uint32_t J = 1, bins = 1, Lw = 1;

  BLFFT_HD_INLINE int phase_count(idx3) const { return 1 + reduce_steps; }
  BLFFT_HD_INLINE void phase(int p, shared& sh, regs&, idx3 b, idx3 t) const {
    if (p == 0) {
      const T* re = spec + int64_t(b.x) * 2 * J;
      const T* im = re + J;
      double s = 0;
      for (uint32_t j = t.x; j < J; j += threads) {
        const double a = gload(re + j), c = gload(im + j);
        s += a * a + c * c;
      }
      sh.sum[t.x] = s;
      return;
    }
    reduce_step(p, sh, t.x);
    if (p == reduce_steps && t.x == 0) {
      const uint32_t col = b.x % bins;
      const double weight = (col == 0 || 2 * col == Lw) ? 1.0 : 2.0;
      gstore(energy + b.x, gload(energy + b.x) + weight * sh.sum[0]);
    }
  }
};

}  // namespace blfft::cuda::detail
