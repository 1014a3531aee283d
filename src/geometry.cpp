// Shapes, grids and kept sets: the one place where they are derived.

#include "blfft/geometry.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "check.hpp"

namespace blfft {

using detail::cat;
using detail::checked_add;
using detail::checked_mul;

conv_params conv_params::conv1d(int64_t batch, int64_t in_channels, int64_t out_channels,
                                int64_t length, int64_t kernel, int64_t stride, int64_t padding,
                                int64_t dilation, int64_t groups) {
  // 1D is 2D with a height-1 input and kernel (geometry.hpp).
  conv_params p = conv2d(batch, in_channels, out_channels, {1, length}, {1, kernel}, {1, stride},
                         {0, padding}, {1, dilation}, groups);
  p.ndim = 1;
  return p;
}

conv_params conv_params::conv2d(int64_t batch, int64_t in_channels, int64_t out_channels,
                                std::array<int64_t, 2> input, std::array<int64_t, 2> kernel,
                                std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                                std::array<int64_t, 2> dilation, int64_t groups) {
  conv_params p;
  p.ndim = 2;
  p.batch = batch;
  p.in_channels = in_channels;
  p.out_channels = out_channels;
  p.input = input;
  p.kernel = kernel;
  p.stride = stride;
  p.padding = padding;
  p.dilation = dilation;
  p.groups = groups;
  return p;
}

conv_params conv_params::conv3d(int64_t batch, int64_t in_channels, int64_t out_channels,
                                std::array<int64_t, 3> input, std::array<int64_t, 3> kernel,
                                std::array<int64_t, 3> stride, std::array<int64_t, 3> padding,
                                std::array<int64_t, 3> dilation, int64_t groups) {
  // The depth axis sits outside the two of a 2D layer (geometry.hpp).
  conv_params p =
      conv2d(batch, in_channels, out_channels, {input[1], input[2]}, {kernel[1], kernel[2]},
             {stride[1], stride[2]}, {padding[1], padding[2]}, {dilation[1], dilation[2]}, groups);
  p.ndim = 3;
  p.depth.input = input[0];
  p.depth.kernel = kernel[0];
  p.depth.stride = stride[0];
  p.depth.padding = padding[0];
  p.depth.dilation = dilation[0];
  return p;
}

int64_t fast_size(int64_t n) {
  BLFFT_EXPECTS(n >= 1, error_code::invalid_argument, "fast_size: n must be >= 1, got ", n);
  BLFFT_EXPECTS(n <= (int64_t(1) << 60), error_code::overflow, "fast_size: n (", n,
                ") is too large");
  // The smallest 2^a 3^b 5^c 7^d >= n: for every 3^b 5^c 7^d below 2n, the power of two that
  // lifts it to n or just above. About (log n)^3 / 6 candidates (~15000 at 2^60), no scanning.
  const int64_t limit = 2 * n;
  const auto times = [limit](int64_t p, int64_t f) { return p < limit / f ? p * f : limit; };
  int64_t best = int64_t(1) << 61;  // a power of two >= n
  for (int64_t p7 = 1; p7 < limit; p7 = times(p7, 7))
    for (int64_t p5 = p7; p5 < limit; p5 = times(p5, 5))
      for (int64_t p3 = p5; p3 < limit; p3 = times(p3, 3)) {
        int64_t m = p3;
        while (m < n) m *= 2;
        best = std::min(best, m);
      }
  return best;
}

int64_t band_limit(int64_t grid_length, double rate, int ndim) {
  BLFFT_EXPECTS(grid_length >= 1, error_code::invalid_argument,
                "band_limit: grid length must be >= 1, got ", grid_length);
  BLFFT_EXPECTS(ndim >= 1 && ndim <= 3, error_code::invalid_argument,
                "band_limit: ndim must be 1, 2 or 3, got ", ndim);
  BLFFT_EXPECTS(std::isfinite(rate) && rate >= 0.0 && rate < 1.0, error_code::invalid_argument,
                "compress rate must be in [0, 1), got ", rate);
  const int64_t half = grid_length / 2 + 1;
  // 3D: pow(1 - r, 1/3), as Python's (1 - r) ** (1 / 3) computes it.
  const double keep = ndim == 1   ? (1.0 - rate)
                      : ndim == 2 ? std::sqrt(1.0 - rate)
                                  : std::pow(1.0 - rate, 1.0 / 3.0);
  const auto i = static_cast<int64_t>(std::floor(static_cast<double>(half) * keep + 1e-9));
  return std::clamp<int64_t>(i, 1, half);
}

namespace {

const char* axis_name(int ndim, int axis) {
  if (ndim == 1) return "length";
  return axis == 0 ? "height" : "width";
}

void validate_params(const conv_params& p) {
  using E = error_code;
  BLFFT_EXPECTS(p.ndim >= 1 && p.ndim <= 3, E::invalid_argument, "ndim must be 1, 2 or 3, got ",
                p.ndim);
  BLFFT_EXPECTS(p.batch >= 1, E::invalid_argument, "batch must be >= 1, got ", p.batch);
  BLFFT_EXPECTS(p.in_channels >= 1, E::invalid_argument, "in_channels must be >= 1, got ",
                p.in_channels);
  BLFFT_EXPECTS(p.out_channels >= 1, E::invalid_argument, "out_channels must be >= 1, got ",
                p.out_channels);
  BLFFT_EXPECTS(p.groups >= 1, E::invalid_argument, "groups must be >= 1, got ", p.groups);
  BLFFT_EXPECTS(p.in_channels % p.groups == 0, E::invalid_argument, "in_channels (", p.in_channels,
                ") must be divisible by groups (", p.groups, ")");
  BLFFT_EXPECTS(p.out_channels % p.groups == 0, E::invalid_argument, "out_channels (",
                p.out_channels, ") must be divisible by groups (", p.groups, ")");
  if (p.ndim == 1) {
    // 1D is stored as 2D with a trivial height axis; anything else there is a caller mistake.
    BLFFT_EXPECTS(p.input[0] == 1 && p.kernel[0] == 1 && p.stride[0] == 1 && p.padding[0] == 0 &&
                      p.dilation[0] == 1 && p.grid[0] <= 1,
                  E::invalid_argument,
                  "a 1D conv_params must have input[0] = kernel[0] = stride[0] = dilation[0] = "
                  "1, padding[0] = 0 and grid[0] in {0, 1} (use conv_params::conv1d)");
  }
  const depth_axis& d = p.depth;
  if (p.ndim != 3) {
    BLFFT_EXPECTS(d.input == 1 && d.kernel == 1 && d.stride == 1 && d.padding == 0 &&
                      d.dilation == 1 && d.grid <= 1,
                  E::invalid_argument,
                  "a 1D or 2D conv_params must have the trivial depth axis (depth.input = "
                  "kernel = stride = dilation = 1, padding = 0, grid in {0, 1}; use "
                  "conv_params::conv3d for 3D)");
  } else {
    BLFFT_EXPECTS(d.input >= 1, E::invalid_argument, "input depth must be >= 1, got ", d.input);
    BLFFT_EXPECTS(d.kernel >= 1, E::invalid_argument, "kernel depth must be >= 1, got ", d.kernel);
    BLFFT_EXPECTS(d.stride >= 1, E::invalid_argument, "stride depth must be >= 1, got ", d.stride);
    BLFFT_EXPECTS(d.padding >= 0, E::invalid_argument, "padding depth must be >= 0, got ",
                  d.padding);
    BLFFT_EXPECTS(d.dilation >= 1, E::invalid_argument, "dilation depth must be >= 1, got ",
                  d.dilation);
    BLFFT_EXPECTS(d.grid >= 0, E::invalid_argument, "grid depth must be >= 0 (0: default), got ",
                  d.grid);
  }
  for (int a = 0; a < 2; ++a) {
    const char* ax = axis_name(p.ndim, a);
    BLFFT_EXPECTS(p.input[a] >= 1, E::invalid_argument, "input ", ax, " must be >= 1, got ",
                  p.input[a]);
    BLFFT_EXPECTS(p.kernel[a] >= 1, E::invalid_argument, "kernel ", ax, " must be >= 1, got ",
                  p.kernel[a]);
    BLFFT_EXPECTS(p.stride[a] >= 1, E::invalid_argument, "stride ", ax, " must be >= 1, got ",
                  p.stride[a]);
    BLFFT_EXPECTS(p.padding[a] >= 0, E::invalid_argument, "padding ", ax, " must be >= 0, got ",
                  p.padding[a]);
    BLFFT_EXPECTS(p.dilation[a] >= 1, E::invalid_argument, "dilation ", ax, " must be >= 1, got ",
                  p.dilation[a]);
    BLFFT_EXPECTS(p.grid[a] >= 0, E::invalid_argument, "grid ", ax,
                  " must be >= 0 (0: default), got ", p.grid[a]);
  }
}

std::vector<int64_t> band_rows(int64_t Lh, int64_t i_h) {
  std::vector<int64_t> rows;
  if (2 * i_h - 1 >= Lh) {
    for (int64_t r = 0; r < Lh; ++r) rows.push_back(r);
    return rows;
  }
  for (int64_t r = 0; r < i_h; ++r) rows.push_back(r);
  for (int64_t r = Lh - i_h + 1; r < Lh; ++r) rows.push_back(r);
  return rows;
}

std::vector<int64_t> prefix(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = i;
  return v;
}

void check_index_list(const std::vector<int64_t>& idx, int64_t bound, const char* what) {
  for (size_t i = 0; i < idx.size(); ++i) {
    BLFFT_EXPECTS(idx[i] >= 0 && idx[i] < bound, error_code::invalid_argument, "kept ", what,
                  " index ", idx[i], " is outside [0, ", bound, ")");
    BLFFT_EXPECTS(i == 0 || idx[i] > idx[i - 1], error_code::invalid_argument, "kept ", what,
                  " must be strictly ascending (no duplicates)");
  }
}

}  // namespace

geometry make_geometry(const conv_params& params, const compression& c) {
  using E = error_code;
  validate_params(params);
  geometry g;
  g.params = params;
  const conv_params& p = g.params;
  g.in_per_group = p.in_channels / p.groups;
  g.out_per_group = p.out_channels / p.groups;
  for (int a = 0; a < 2; ++a) {
    const char* ax = axis_name(p.ndim, a);
    g.padded[a] = checked_add(p.input[a], checked_mul(2, p.padding[a], "padding"), "padded input");
    g.dilated[a] = checked_add(checked_mul(p.dilation[a], p.kernel[a] - 1, "dilated kernel"), 1,
                               "dilated kernel");
    BLFFT_EXPECTS(g.dilated[a] <= g.padded[a], E::invalid_argument, "kernel ", ax,
                  " (dilated extent ", g.dilated[a], ") is larger than the padded input ", ax, " (",
                  g.padded[a], ")");
    g.full_out[a] = g.padded[a] - g.dilated[a] + 1;
    // ceil(full_out / stride), written so that a stride near 2^63 cannot overflow (the sum
    // full_out + stride - 1 wrapped, gave a zero-sized output and a division by zero later).
    g.output[a] = 1 + (g.full_out[a] - 1) / p.stride[a];
    if (p.grid[a] == 0) {
      g.grid[a] = fast_size(g.padded[a]);
    } else {
      BLFFT_EXPECTS(p.grid[a] >= g.padded[a], E::invalid_argument, "grid ", ax, " (", p.grid[a],
                    ") must be >= the padded input ", ax, " (", g.padded[a], ")");
      g.grid[a] = p.grid[a];
    }
  }
  g.params.grid = g.grid;
  if (p.ndim == 3) {
    const depth_axis& d = p.depth;
    g.depth_padded = checked_add(d.input, checked_mul(2, d.padding, "padding"), "padded input");
    g.depth_dilated =
        checked_add(checked_mul(d.dilation, d.kernel - 1, "dilated kernel"), 1, "dilated kernel");
    BLFFT_EXPECTS(g.depth_dilated <= g.depth_padded, E::invalid_argument,
                  "kernel depth (dilated extent ", g.depth_dilated,
                  ") is larger than the padded input depth (", g.depth_padded, ")");
    g.depth_full_out = g.depth_padded - g.depth_dilated + 1;
    g.depth_output = 1 + (g.depth_full_out - 1) / d.stride;
    if (d.grid == 0) {
      g.depth_grid = fast_size(g.depth_padded);
    } else {
      BLFFT_EXPECTS(d.grid >= g.depth_padded, E::invalid_argument, "grid depth (", d.grid,
                    ") must be >= the padded input depth (", g.depth_padded, ")");
      g.depth_grid = d.grid;
    }
    g.params.depth.grid = g.depth_grid;
  }
  const int64_t Ld = g.depth_grid, Lh = g.grid[0], Lw = g.grid[1];
  const auto grid_text = [&] {
    return p.ndim == 3 ? cat(Ld, " x ", Lh, " x ", Lw) : p.ndim == 2 ? cat(Lh, " x ", Lw) : cat(Lw);
  };
  const auto padded_text = [&] {
    return p.ndim == 3   ? cat(g.depth_padded, " x ", g.padded[0], " x ", g.padded[1])
           : p.ndim == 2 ? cat(g.padded[0], " x ", g.padded[1])
                         : cat(g.padded[1]);
  };
  BLFFT_EXPECTS(Lh <= max_grid_points / Lw && Ld <= max_grid_points / (Lh * Lw),
                E::invalid_argument, "the FFT grid (", grid_text(),
                " points, from the padded input ", padded_text(), ") exceeds blfft's limit of ",
                max_grid_points,
                " points (blfft::max_grid_points); check the padding and input size");
  g.bins_w = Lw / 2 + 1;
  g.total = checked_mul(Ld, checked_mul(Lh, g.bins_w, "spectrum size"), "spectrum size");

  switch (c.kind) {
    case compression::kind_type::rate: {
      BLFFT_EXPECTS(std::isfinite(c.rate_value) && c.rate_value >= 0.0 && c.rate_value < 1.0,
                    E::invalid_argument, "compress rate must be in [0, 1), got ", c.rate_value);
      g.limits = {p.ndim == 1 ? 1 : band_limit(Lh, c.rate_value, p.ndim),
                  band_limit(Lw, c.rate_value, p.ndim)};
      if (p.ndim == 3) g.depth_limit = band_limit(Ld, c.rate_value, p.ndim);
      break;
    }
    case compression::kind_type::band: {
      const int64_t max_h = Lh / 2 + 1;
      BLFFT_EXPECTS(c.limits[0] >= 1 && c.limits[0] <= max_h, E::invalid_argument,
                    "band limit i_h must be in [1, ", max_h, "] for grid height ", Lh, ", got ",
                    c.limits[0]);
      BLFFT_EXPECTS(c.limits[1] >= 1 && c.limits[1] <= g.bins_w, E::invalid_argument,
                    "band limit i_w must be in [1, ", g.bins_w, "] for grid width ", Lw, ", got ",
                    c.limits[1]);
      g.limits = c.limits;
      if (p.ndim == 3) {
        const int64_t max_d = Ld / 2 + 1;
        BLFFT_EXPECTS(c.depth_limit >= 1 && c.depth_limit <= max_d, E::invalid_argument,
                      "band limit i_d must be in [1, ", max_d, "] for grid depth ", Ld, ", got ",
                      c.depth_limit, " (3D layers: compression::band3)");
        g.depth_limit = c.depth_limit;
      }
      break;
    }
    case compression::kind_type::indices: {
      BLFFT_EXPECTS(p.ndim != 3, E::unsupported,
                    "explicit kept indices are not supported for 3D convolutions; use a rate or "
                    "compression::band3");
      check_index_list(c.rows, Lh, "rows");
      check_index_list(c.cols, g.bins_w, "cols");
      // The set must be closed under k -> -k so the masked operator stays real
      // (docs/design.md 1.4).
      for (int64_t r : c.rows) {
        const int64_t mirror = (Lh - r) % Lh;
        BLFFT_EXPECTS(std::binary_search(c.rows.begin(), c.rows.end(), mirror), E::invalid_argument,
                      "kept rows must be symmetric: row ", r, " is kept but its mirror ", mirror,
                      " is not");
      }
      g.limits = {0, 0};
      g.kept_rows = c.rows.empty() ? prefix(Lh) : c.rows;
      g.kept_cols = c.cols.empty() ? prefix(g.bins_w) : c.cols;
      break;
    }
  }
  if (c.kind != compression::kind_type::indices) {
    g.kept_rows = band_rows(Lh, g.limits[0]);
    g.kept_cols = prefix(g.limits[1]);
  }
  if (p.ndim == 3) g.kept_depth = band_rows(Ld, g.depth_limit);
  g.kept = static_cast<int64_t>(g.kept_depth.size() * g.kept_rows.size() * g.kept_cols.size());
  g.achieved_rate = 1.0 - static_cast<double>(g.kept) / static_cast<double>(g.total);
  g.requested_rate = c.kind == compression::kind_type::rate ? c.rate_value : g.achieved_rate;

  const int64_t spatial_in =
      checked_mul(p.depth.input, checked_mul(p.input[0], p.input[1], "input size"), "input size");
  g.input_size_ =
      checked_mul(checked_mul(p.batch, p.in_channels, "input size"), spatial_in, "input size");
  g.weight_size_ =
      checked_mul(checked_mul(p.out_channels, g.in_per_group, "weight size"),
                  checked_mul(p.depth.kernel, checked_mul(p.kernel[0], p.kernel[1], "weight size"),
                              "weight size"),
                  "weight size");
  g.output_size_ =
      checked_mul(checked_mul(p.batch, p.out_channels, "output size"),
                  checked_mul(g.depth_output, checked_mul(g.output[0], g.output[1], "output size"),
                              "output size"),
                  "output size");
  const int64_t two_kept = checked_mul(2, g.kept, "spectrum size");
  g.x_spectrum_size_ = checked_mul(two_kept, checked_mul(p.batch, p.in_channels, "x spectrum size"),
                                   "x spectrum size");
  g.w_spectrum_size_ = checked_mul(
      two_kept, checked_mul(p.out_channels, g.in_per_group, "w spectrum size"), "w spectrum size");
  g.y_spectrum_size_ = checked_mul(
      two_kept, checked_mul(p.batch, p.out_channels, "y spectrum size"), "y spectrum size");
  // Work buffers index with int64 too; the full padded grid per image must also fit.
  checked_mul(checked_mul(p.batch, std::max(p.in_channels, p.out_channels), "grid size"),
              checked_mul(Ld, checked_mul(Lh, Lw, "grid size"), "grid size"), "grid size");
  return g;
}

namespace {
std::vector<int64_t> spatial_shape(int ndim, int64_t a, int64_t b, int64_t d,
                                   std::array<int64_t, 2> s) {
  if (ndim == 1) return {a, b, s[1]};
  if (ndim == 3) return {a, b, d, s[0], s[1]};
  return {a, b, s[0], s[1]};
}
}  // namespace

std::vector<int64_t> geometry::input_shape() const {
  return spatial_shape(params.ndim, params.batch, params.in_channels, params.depth.input,
                       params.input);
}
std::vector<int64_t> geometry::weight_shape() const {
  return spatial_shape(params.ndim, params.out_channels, in_per_group, params.depth.kernel,
                       params.kernel);
}
std::vector<int64_t> geometry::output_shape() const {
  return spatial_shape(params.ndim, params.batch, params.out_channels, depth_output, output);
}

std::string geometry::describe() const {
  std::ostringstream os;
  const auto& p = params;
  os << "conv" << p.ndim << "d N=" << p.batch << " C=" << p.in_channels << " F=" << p.out_channels
     << " groups=" << p.groups << " input=";
  if (p.ndim == 3) os << p.depth.input << "x";
  if (p.ndim >= 2) os << p.input[0] << "x";
  os << p.input[1] << " kernel=";
  if (p.ndim == 3) os << p.depth.kernel << "x";
  if (p.ndim >= 2) os << p.kernel[0] << "x";
  os << p.kernel[1] << " grid=";
  if (p.ndim == 3) os << depth_grid << "x";
  if (p.ndim >= 2) os << grid[0] << "x";
  os << grid[1] << " kept=" << kept << "/" << total << " (";
  if (p.ndim == 3) os << kept_depth.size() << " depths x ";
  os << kept_rows.size() << " rows x " << kept_cols.size()
     << " cols) rate requested=" << requested_rate << " achieved=" << achieved_rate;
  return os.str();
}

}  // namespace blfft
