// Energy-based selection of the kept set (docs/design.md 1.7).

#include "blfft/energy.hpp"

#include <algorithm>
#include <cmath>

#include "call_checks.hpp"
#include "check.hpp"
#include "pruned_transform.hpp"
#include "workspace.hpp"

namespace blfft {
namespace {

/// Energy inside the band {|k_h| <= i_h - 1} x {k_w <= i_w - 1}. Summed in the same order as the
/// total so that the full band reproduces the total exactly.
double band_energy(const geometry& g, const std::vector<double>& e, int64_t i_h, int64_t i_w) {
  const int64_t Lh = g.grid[0], bins = g.bins_w;
  double s = 0;
  for (int64_t r = 0; r < Lh; ++r) {
    const int64_t signed_r = r <= Lh / 2 ? r : Lh - r;
    if (signed_r > i_h - 1) continue;
    for (int64_t c = 0; c < std::min(i_w, bins); ++c) s += e[r * bins + c];
  }
  return s;
}

}  // namespace

namespace {
/// The energy map is made the same way for any thread count, so that the selection it feeds
/// cannot change with the thread count (plan_options::deterministic).
plan_options deterministic_options() {
  plan_options o;
  o.deterministic = true;
  return o;
}

}  // namespace

template <class T>
std::vector<double> energy_map(const conv_params& p, const tensor_view<const T>& x) {
  detail::refuse_energy_3d(p);
  const geometry g = make_geometry(p, compression::indices({}, {}));  // the full spectrum
  const auto shape = g.input_shape();
  BLFFT_EXPECTS(x.data != nullptr, error_code::invalid_argument, "input data pointer is null");
  BLFFT_EXPECTS(x.shape == shape && x.strides.size() == shape.size(), error_code::shape_mismatch,
                "input shape/strides do not match the conv_params");
  for (int64_t s : x.strides)
    BLFFT_EXPECTS(s >= 0, error_code::invalid_argument, "input strides must be non-negative");
  const auto& q = g.params;
  // One sample at a time bounds the memory to one sample's full spectrum.
  const detail::layer_placements at(g);
  detail::pruned_transform<T> t(g, detail::transform_direction::analyse, 1, q.in_channels, at.x_h,
                                at.x_w, deterministic_options());
  auto spec = detail::take_workspace<T>(
      detail::checked_mul(2 * g.total, q.in_channels, "energy spectrum size"), "energy spectrum");
  std::vector<double> e(static_cast<size_t>(g.total), 0.0);
  const int64_t Lw = g.grid[1], C = q.in_channels;
  for (int64_t n = 0; n < q.batch; ++n) {
    auto img = detail::as_image(x);  // one sample at a time
    img.data += n * img.stride_b;
    img.stride_b = 0;
    t.analyse(img, spec.data());
    for (int64_t k = 0; k < g.total; ++k) {
      const int64_t col = k % g.bins_w;
      // Columns other than DC and Nyquist stand for a conjugate pair.
      const double weight = (col == 0 || 2 * col == Lw) ? 1.0 : 2.0;
      const T* re = spec.data() + 2 * k * C;
      const T* im = re + C;
      double s = 0;
      for (int64_t c = 0; c < C; ++c)
        s += double(re[c]) * double(re[c]) + double(im[c]) * double(im[c]);
      e[static_cast<size_t>(k)] += weight * s;
    }
  }
  return e;
}

energy_selection select_by_energy(const conv_params& p, const std::vector<double>& energy,
                                  double fraction) {
  detail::refuse_energy_3d(p);
  BLFFT_EXPECTS(std::isfinite(fraction) && fraction > 0.0 && fraction <= 1.0,
                error_code::invalid_argument, "energy fraction must be in (0, 1], got ", fraction);
  const geometry full = make_geometry(p, compression::none());
  BLFFT_EXPECTS(static_cast<int64_t>(energy.size()) == full.total, error_code::shape_mismatch,
                "energy map has ", energy.size(), " bins, the grid has ", full.total);
  const int nd = p.ndim;
  const int64_t half_h = full.grid[0] / 2 + 1, half_w = full.bins_w;
  // The rate family changes its kept set only where (L/2+1) * (1-r)^(1/nd) crosses an integer on
  // some axis: those rates are the candidates, tried from the largest compression down.
  std::vector<double> rates{0.0};
  const auto add = [&](int64_t half) {
    for (int64_t j = 1; j < half; ++j) {
      const double s = static_cast<double>(j) / static_cast<double>(half);
      rates.push_back(1.0 - (nd == 1 ? s : s * s));
    }
  };
  add(half_w);
  if (nd == 2) add(half_h);
  std::sort(rates.rbegin(), rates.rend());
  const double total = band_energy(full, energy, half_h, half_w);
  BLFFT_EXPECTS(std::isfinite(total), error_code::invalid_argument,
                "energy selection needs a finite input: the input's spectral energy is ", total,
                " (the input holds NaN or Inf, or values too large to square)");
  for (double r : rates) {
    const int64_t i_h = nd == 1 ? 1 : band_limit(full.grid[0], r, nd);
    const int64_t i_w = band_limit(full.grid[1], r, nd);
    const double kept = band_energy(full, energy, i_h, i_w);
    if (kept >= fraction * total) {
      energy_selection s;
      s.chosen = compression::band(i_h, i_w);
      s.rate = r;
      s.limits = {i_h, i_w};
      s.achieved_rate = make_geometry(p, s.chosen).achieved_rate;
      s.energy_kept = total > 0 ? kept / total : 1.0;
      return s;
    }
  }
  // Unreachable: rate 0 keeps everything.
  detail::fail(error_code::backend, "energy selection found no kept set");
}

template <class T>
energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                  double fraction) {
  BLFFT_EXPECTS(std::isfinite(fraction) && fraction > 0.0 && fraction <= 1.0,
                error_code::invalid_argument, "energy fraction must be in (0, 1], got ", fraction);
  return select_by_energy(p, energy_map<T>(p, x), fraction);
}

template BLFFT_API std::vector<double> energy_map<float>(const conv_params&,
                                                         const tensor_view<const float>&);
template BLFFT_API std::vector<double> energy_map<double>(const conv_params&,
                                                          const tensor_view<const double>&);
template BLFFT_API energy_selection select_by_energy<float>(const conv_params&,
                                                            const tensor_view<const float>&,
                                                            double);
template BLFFT_API energy_selection select_by_energy<double>(const conv_params&,
                                                             const tensor_view<const double>&,
                                                             double);

}  // namespace blfft
