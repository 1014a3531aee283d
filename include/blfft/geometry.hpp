#pragma once
/// @file geometry.hpp
/// The one source of truth for shapes: FFT grid, kept sets, output sizes, spectrum and workspace
/// sizes. The CPU backend, the CUDA backend and the Python layer all ask this code; none of them
/// re-derives a size.
///
/// Everything is stored as 2D. A 1D convolution is a 2D one with a height-1 input and kernel
/// (ndim = 1): the grid has one row, and the rate maps to the single axis with exponent 1.
/// A 3D convolution (ndim = 3) adds a depth axis outside the two: conv_params::depth and the
/// geometry's depth_* fields and kept_depth; for 1D and 2D they are trivial (one depth sample,
/// a one-point depth grid, kept_depth = {0}).

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "blfft/export.hpp"

namespace blfft {

/// The depth axis of a 3D convolution (conv_params::depth); the defaults are the trivial axis
/// of 1D and 2D layers.
struct depth_axis {
  int64_t input = 1;     ///< D
  int64_t kernel = 1;    ///< KD
  int64_t stride = 1;    ///< >= 1
  int64_t padding = 0;   ///< zeros added on both sides
  int64_t dilation = 1;  ///< >= 1
  int64_t grid = 0;      ///< FFT grid Ld; 0 means the default (smallest 7-smooth >= D + 2 pad)
};

/// One convolution layer in PyTorch's conventions (cross-correlation, NCHW / NCL / NCDHW,
/// weight (F, C/groups, [KD,] KH, KW)). Index 0 of each pair is the height axis, 1 the width
/// axis; a 3D layer's depth axis is in `depth`.
struct BLFFT_API conv_params {
  int ndim = 2;                           ///< 1, 2 or 3 spatial dimensions
  int64_t batch = 1;                      ///< N
  int64_t in_channels = 1;                ///< C
  int64_t out_channels = 1;               ///< F
  std::array<int64_t, 2> input{1, 1};     ///< {H, W}; 1D: {1, L}
  std::array<int64_t, 2> kernel{1, 1};    ///< {KH, KW}; 1D: {1, K}
  std::array<int64_t, 2> stride{1, 1};    ///< per axis, >= 1
  std::array<int64_t, 2> padding{0, 0};   ///< zeros added on both sides, per axis
  std::array<int64_t, 2> dilation{1, 1};  ///< per axis, >= 1
  int64_t groups = 1;                     ///< C and F divisible by it
  /// FFT grid {Lh, Lw}; 0 means the default: the smallest 7-smooth size >= the padded input.
  std::array<int64_t, 2> grid{0, 0};
  depth_axis depth;  ///< 3D only; trivial (the defaults) for 1D and 2D

  static conv_params conv1d(int64_t batch, int64_t in_channels, int64_t out_channels,
                            int64_t length, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
                            int64_t dilation = 1, int64_t groups = 1);
  static conv_params conv2d(int64_t batch, int64_t in_channels, int64_t out_channels,
                            std::array<int64_t, 2> input, std::array<int64_t, 2> kernel,
                            std::array<int64_t, 2> stride = {1, 1},
                            std::array<int64_t, 2> padding = {0, 0},
                            std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1);
  /// 3D: input {D, H, W}, kernel {KD, KH, KW}, and stride, padding, dilation per axis.
  static conv_params conv3d(int64_t batch, int64_t in_channels, int64_t out_channels,
                            std::array<int64_t, 3> input, std::array<int64_t, 3> kernel,
                            std::array<int64_t, 3> stride = {1, 1, 1},
                            std::array<int64_t, 3> padding = {0, 0, 0},
                            std::array<int64_t, 3> dilation = {1, 1, 1}, int64_t groups = 1);
};

/// Which Fourier coefficients are kept. Three ways to say it:
/// - `rate(r)`: discard the fraction r in [0, 1) (docs/design.md 1.4 maps it to per-axis band
///   limits);
/// - `band(i_h, i_w)`: keep |k_h| <= i_h - 1 and rfft columns k_w <= i_w - 1 (1D: band(1, i));
/// - `indices(rows, cols)`: explicit kept rows (signed-symmetric set of grid rows) and rfft
///   columns. Empty `rows` means all rows; empty `cols` means all columns. 1D and 2D only.
/// 3D layers: `rate(r)` (exponent 1/3 per axis), or `band3(i_d, i_h, i_w)` (also keeps
/// |k_d| <= i_d - 1).
struct BLFFT_API compression {
  enum class kind_type { rate, band, indices };
  kind_type kind = kind_type::rate;  ///< which of the three ways (Python: Compression.kind)
  double rate_value = 0.0;           ///< for kind_type::rate
  std::array<int64_t, 2> limits{};   ///< for kind_type::band: {i_h, i_w}
  int64_t depth_limit = 0;           ///< for kind_type::band of a 3D layer: i_d (0: not given)
  std::vector<int64_t> rows;         ///< for kind_type::indices
  std::vector<int64_t> cols;         ///< for kind_type::indices

  static compression none() { return rate(0.0); }
  static compression rate(double r) {
    compression c;
    c.kind = kind_type::rate;
    c.rate_value = r;
    return c;
  }
  static compression band(int64_t i_h, int64_t i_w) {
    compression c;
    c.kind = kind_type::band;
    c.limits = {i_h, i_w};
    return c;
  }
  static compression band3(int64_t i_d, int64_t i_h, int64_t i_w) {
    compression c = band(i_h, i_w);
    c.depth_limit = i_d;
    return c;
  }
  static compression indices(std::vector<int64_t> kept_rows, std::vector<int64_t> kept_cols) {
    compression c;
    c.kind = kind_type::indices;
    c.rows = std::move(kept_rows);
    c.cols = std::move(kept_cols);
    return c;
  }
};

/// Smallest integer >= n whose prime factors are all in {2, 3, 5, 7}, found directly (not by
/// scanning upward), for 1 <= n <= 2^60.
BLFFT_API int64_t fast_size(int64_t n);

/// The largest FFT grid a layer may have, in points (Lh * Lw; 1D: L; 3D: Ld * Lh * Lw): 2^26
/// (8192 x 8192, a 256 MiB float32 image). make_geometry refuses larger grids
/// (error_code::invalid_argument) at once: paddings or inputs that large are almost always a
/// mistake, and their transforms would run for a minute per call (a 10-sample conv1d with
/// padding 2^26, grid 1.3e8: 46 s, 8.8 GB).
constexpr int64_t max_grid_points = int64_t(1) << 26;

/// Per-axis band limit for rate r on an axis of grid length L:
/// max(1, floor((L/2 + 1) * (1 - r)^(1/ndim) + 1e-9)), capped at L/2 + 1 (ndim 1, 2 or 3).
BLFFT_API int64_t band_limit(int64_t grid_length, double rate, int ndim);

/// Everything derived from (conv_params, compression). Immutable once built; all sizes are
/// element counts (a complex number counts as 2 scalars where a size says "scalars").
///
/// Compressed spectra are stored frequency-major and planar: for each kept frequency k (row-major
/// over kept depths x kept rows x kept columns; one depth for 1D and 2D) a real plane then an
/// imaginary plane, each a row-major (images x channels) matrix. So spectrum[k][plane][b][ch],
/// `2 * kept * B * CH` scalars, where
///   X (input):  B = N, CH = C      W (weight): B = F, CH = C/groups
///   Y, G (output / output gradient): B = N, CH = F.
/// This layout makes channel mixing one small real GEMM triple per frequency (Gauss's trick).
struct BLFFT_API geometry {
  conv_params params;                 ///< as given, with the grid filled in
  int64_t in_per_group = 0;           ///< C / groups
  int64_t out_per_group = 0;          ///< F / groups
  std::array<int64_t, 2> padded{};    ///< {Hp, Wp}
  std::array<int64_t, 2> dilated{};   ///< dilated kernel extent {KH', KW'}
  std::array<int64_t, 2> full_out{};  ///< stride-1 output {Ho1, Wo1}
  std::array<int64_t, 2> output{};    ///< {Ho, Wo} = ceil(full_out / stride)
  std::array<int64_t, 2> grid{};      ///< FFT grid {Lh, Lw}
  int64_t bins_w = 0;                 ///< rfft columns: Lw / 2 + 1
  double requested_rate = 0.0;        ///< the rate asked for (kind_type::rate), else achieved_rate
  std::array<int64_t, 2> limits{};    ///< band limits {i_h, i_w} (kind_type::indices: 0, 0)
  std::vector<int64_t> kept_rows;     ///< kept grid rows, ascending
  std::vector<int64_t> kept_cols;     ///< kept rfft columns, ascending
  int64_t kept = 0;                   ///< kept_depth.size() * kept_rows.size() * kept_cols.size()
  int64_t total = 0;                  ///< Ld * Lh * bins_w
  double achieved_rate = 0.0;         ///< 1 - kept / total
  // The depth axis (3D; for 1D and 2D one sample on a one-point grid, kept_depth = {0}).
  int64_t depth_padded = 1;            ///< Dp
  int64_t depth_dilated = 1;           ///< KD'
  int64_t depth_full_out = 1;          ///< Do1
  int64_t depth_output = 1;            ///< Do = ceil(Do1 / stride)
  int64_t depth_grid = 1;              ///< Ld
  int64_t depth_limit = 1;             ///< band limit i_d
  std::vector<int64_t> kept_depth{0};  ///< kept depth grid indices, ascending, symmetric

  /// Scalars in the compressed spectrum of the input / weight / output(-gradient).
  int64_t x_spectrum_size() const { return x_spectrum_size_; }
  int64_t w_spectrum_size() const { return w_spectrum_size_; }
  int64_t y_spectrum_size() const { return y_spectrum_size_; }
  /// Element counts of the spatial tensors.
  int64_t input_size() const { return input_size_; }
  int64_t weight_size() const { return weight_size_; }
  int64_t output_size() const { return output_size_; }
  /// Shapes of the spatial tensors: rank ndim + 2 (NCL / NCHW / NCDHW; weight F, C/g, K...).
  std::vector<int64_t> input_shape() const;
  std::vector<int64_t> weight_shape() const;
  std::vector<int64_t> output_shape() const;

  std::string describe() const;  ///< one line: sizes, grid, kept counts, rates

  int64_t x_spectrum_size_ = 0, w_spectrum_size_ = 0, y_spectrum_size_ = 0;
  int64_t input_size_ = 0, weight_size_ = 0, output_size_ = 0;
};

/// Validates `p` and `c` (throws blfft::error naming the bad argument) and derives the geometry.
BLFFT_API geometry make_geometry(const conv_params& p, const compression& c = compression::none());

}  // namespace blfft
