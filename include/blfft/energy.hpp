#pragma once
/// @file energy.hpp
/// Energy-based compression (docs/design.md 1.7): the largest compression whose kept set holds at
/// least a fraction E of the input spectrum's energy.

#include <array>
#include <vector>

#include "blfft/export.hpp"
#include "blfft/geometry.hpp"
#include "blfft/tensor.hpp"

namespace blfft {

/// What select_by_energy chose.
struct energy_selection {
  compression chosen;               ///< compression::band(i_h, i_w): pass it to a plan
  double rate = 0.0;                ///< the rate in [0, 1) whose band limits these are
  std::array<int64_t, 2> limits{};  ///< {i_h, i_w}
  double achieved_rate = 0.0;       ///< 1 - kept / total for that set
  double energy_kept = 0.0;         ///< fraction of the energy inside the kept set
};

/// Energy per rfft bin of the padded input on the plan's grid, summed over batch and channels,
/// row-major (Lh x (Lw/2+1)). A column that stands for a conjugate pair counts twice, so the
/// total equals Lh * Lw * sum(x^2) (Parseval). `x` has the geometry's input shape.
template <class T>
BLFFT_API std::vector<double> energy_map(const conv_params& p, const tensor_view<const T>& x);

/// Choose among the rate family of kept sets (docs/design.md 1.4) the smallest one holding at least
/// `fraction` (in (0, 1]) of the energy in `energy` (as from energy_map).
BLFFT_API energy_selection select_by_energy(const conv_params& p, const std::vector<double>& energy,
                                            double fraction);

/// energy_map then select_by_energy.
template <class T>
BLFFT_API energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                            double fraction);

}  // namespace blfft
