#pragma once
/// @file energy.hpp
/// Energy-based compression (docs/design.md 1.7): the largest compression whose kept set holds at
/// least a fraction E of the input spectrum's energy.

#include <array>
#include <functional>
#include <vector>

#include "blfft/export.hpp"
#include "blfft/geometry.hpp"
#include "blfft/plan.hpp"
#include "blfft/tensor.hpp"

namespace blfft {

/// What select_by_energy chose.
struct energy_selection {
  compression chosen;               ///< compression::band(i_h, i_w): pass it to a plan
  double rate = 0.0;                ///< the rate in [0, 1) whose band limits these are
  std::array<int64_t, 2> limits{};  ///< {i_h, i_w}
  double achieved_rate = 0.0;       ///< 1 - kept / total for that set
  double energy_kept = 0.0;         ///< fraction of the energy inside the kept set
  /// Only from the overloads with buffers (an allocator or `x_spectrum`): a buffer holds the
  /// input's spectrum at the chosen kept set (always, once they return).
  bool x_spectrum = false;
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

/// energy_map then select_by_energy (the staged search of src/energy.cpp makes the same choice
/// from fewer bins). The report depends neither on the calls before nor on the thread count.
template <class T>
BLFFT_API energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                            double fraction);

/// Gives select_by_energy a buffer of at least `scalars` scalars for an input spectrum it may hand
/// over (caller-owned memory; it must stay valid until select_by_energy returns).
template <class T>
using spectrum_allocator = std::function<spectrum_view<T>(int64_t scalars)>;

/// The same choice, and the input's spectrum at the chosen kept set for the forward at that set:
/// every band the search transforms is transformed by the input transform of the plan that
/// get_plan<T>(p, compression::band(i_h, i_w), options) gives, into a buffer from `allocate`, so
/// that the buffer `allocate` gave last holds, in its first geometry().x_spectrum_size() scalars,
/// exactly the bits that plan's input_spectrum() makes (the same thread count):
/// plan::forward_with_input_spectrum then skips the input transform. The report depends on
/// `options` only through the rounding of energy_kept (thread-count independent with
/// options.deterministic; the three-argument overload is this one with it and no allocator).
template <class T>
BLFFT_API energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                            double fraction, const plan_options& options,
                                            const spectrum_allocator<T>& allocate = {});

/// The same with one buffer, `x_spectrum`, of at least make_geometry(p, compression::none())
/// .x_spectrum_size() scalars (the largest kept set's), which receives the chosen set's spectrum.
template <class T>
BLFFT_API energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                            double fraction, const plan_options& options,
                                            spectrum_view<T> x_spectrum);

}  // namespace blfft
