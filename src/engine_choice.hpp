#pragma once
// Which engine computes one pruned transform when plan_options::method is automatic.
//
// The matmul engine's cost grows with (data samples) x (kept bins) per axis, the FFT engine's
// with the grid length L log L per line. GEMMs with a small inner dimension run several times
// faster per flop than FFTW on short lines (and the FFT engine adds gathers to and from full
// grid lines), so matmul wins unless it does many times the arithmetic: always for the small
// grids of CNN layers, and for the weight transforms of 1D layers (a few taps on a long grid),
// never for a long 1D signal.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "blfft/plan.hpp"

namespace blfft::detail {

/// One pruned transform: R samples per axis placed on an L-point grid, `kept_*` bins kept.
struct transform_shape {
  int64_t Lh, Lw, Rh, Rw, kept_rows, kept_cols;
};

/// Real flops per image of the matmul engine: the row GEMM (Rh x Rw) * (Rw x 2 kept_cols), and
/// on 2D grids the column GEMM over conjugate row pairs, (kept_rows + 1) x Rh x 2 kept_cols.
inline double matmul_flops(const transform_shape& s) {
  const double row = 2.0 * s.Rh * s.Rw * 2.0 * s.kept_cols;
  const double col = s.Lh > 1 ? 2.0 * (s.kept_rows + 1) * s.Rh * 2.0 * s.kept_cols : 0.0;
  return row + col;
}

/// Real flops per image of the FFT engine (the usual 2.5 L log2 L per real line, 5 L log2 L per
/// complex one): Rh row transforms, then one column transform per kept column.
inline double fft_flops(const transform_shape& s) {
  const auto line = [](double L) { return L > 1 ? L * std::log2(L) : 0.0; };
  return 2.5 * s.Rh * line(static_cast<double>(s.Lw)) +
         5.0 * s.kept_cols * line(static_cast<double>(s.Lh));
}

/// How many times the FFT engine's flops the matmul engine may spend and still be chosen
/// (bench/NOTES.md: about 5x is still faster for 3x3 layers on 34x34 grids).
constexpr double matmul_flop_allowance = 8.0;

/// Scalars in the matmul engine's DFT matrices: (Rw x 2 kept_cols) and, on 2D grids, (2 pairs x
/// Rh). They are made when the plan is made and held with it.
inline double matmul_table_scalars(const transform_shape& s) {
  const double row = 2.0 * s.Rw * s.kept_cols;
  const double col = s.Lh > 1 ? 2.0 * (s.kept_rows + 1) * s.Rh : 0.0;
  return row + col;
}

/// The largest DFT tables automatic picks matmul for (scalars; 16 MiB of float32). Beyond that
/// the tables cost more to make and hold than the transforms they save: a 10-sample input with
/// a padding of 2^22 would need a 336 MB table.
constexpr double matmul_max_table_scalars = 4.0 * 1024 * 1024;

inline bool use_matmul(const transform_shape& s, const plan_options& o) {
  switch (o.method) {
    case transform_method::matmul: return true;
    case transform_method::fft: return false;
    case transform_method::automatic: break;
  }
  if (matmul_table_scalars(s) > matmul_max_table_scalars) return false;
  if (std::max(s.Lh, s.Lw) <= o.matmul_max_grid) return true;
  return matmul_flops(s) <= matmul_flop_allowance * fft_flops(s);
}

}  // namespace blfft::detail
