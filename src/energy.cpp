// Energy-based selection of the kept set (docs/design.md 1.7).

#include "blfft/energy.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>

#include "call_checks.hpp"
#include "check.hpp"
#include "parallel.hpp"
#include "pruned_transform.hpp"
#include "shared_cache.hpp"
#include "workspace.hpp"

namespace blfft {
namespace {

/// Energy inside the band {|k_h| <= i_h - 1} x {k_w <= i_w - 1}, from the energies `e` of the
/// kept bins of `g` (a band containing it, or the whole grid), summed row by row in grid order:
/// on the whole grid the full band reproduces the total exactly.
double band_energy(const geometry& g, const std::vector<double>& e, int64_t i_h, int64_t i_w) {
  const int64_t Lh = g.grid[0], nc = static_cast<int64_t>(g.kept_cols.size());
  double s = 0;
  for (std::size_t ri = 0; ri < g.kept_rows.size(); ++ri) {
    const int64_t r = g.kept_rows[ri];
    const int64_t signed_r = r <= Lh / 2 ? r : Lh - r;
    if (signed_r > i_h - 1) continue;
    const int64_t row = static_cast<int64_t>(ri) * nc;
    for (int64_t c = 0; c < std::min(i_w, nc); ++c) s += e[static_cast<size_t>(row + c)];
  }
  return s;
}

}  // namespace

namespace {
/// Bound on the full spectrum of one chunk of samples in energy_map.
constexpr int64_t energy_chunk_bytes = 8 << 20;
/// The energy map is made the same way for any thread count, so that the selection it feeds
/// cannot change with the thread count (plan_options::deterministic).
plan_options deterministic_options() {
  plan_options o;
  o.deterministic = true;
  return o;
}

}  // namespace

namespace {

template <class T>
void check_input(const geometry& g, const tensor_view<const T>& x) {
  const auto shape = g.input_shape();
  BLFFT_EXPECTS(x.data != nullptr, error_code::invalid_argument, "input data pointer is null");
  BLFFT_EXPECTS(x.shape == shape && x.strides.size() == shape.size(), error_code::shape_mismatch,
                "input shape/strides do not match the conv_params");
  for (int64_t s : x.strides)
    BLFFT_EXPECTS(s >= 0, error_code::invalid_argument, "input strides must be non-negative");
}

/// Adds to `e` the energy of each kept bin of `g` in `spec`, a spectrum of `nb` images in the
/// plans' layout ([k][re | im][b * C + c]), summed sample by sample in batch order, a column that
/// stands for a conjugate pair counted twice. Bins are independent, so they run in parallel.
template <class T>
void add_energies(const geometry& g, const T* spec, int64_t nb, std::vector<double>& e) {
  const int64_t Lw = g.grid[1], C = g.params.in_channels;
  const int64_t nc = static_cast<int64_t>(g.kept_cols.size());
  // (A few MB of spectrum before a second thread pays: at a high rate the sums are a fraction of
  // a millisecond, less than waking the team under load.)
  const bool parallel = 2 * g.kept * nb * C >= (int64_t{1} << 20);
  detail::parallel_for(g.kept, parallel ? detail::thread_count() : 1, parallel, [&](int64_t k) {
    const int64_t col = g.kept_cols[static_cast<size_t>(k % nc)];
    // Columns other than DC and Nyquist stand for a conjugate pair.
    const double weight = (col == 0 || 2 * col == Lw) ? 1.0 : 2.0;
    const T* re = spec + 2 * k * nb * C;
    const T* im = re + nb * C;
    double acc = e[static_cast<size_t>(k)];
    for (int64_t b = 0; b < nb; ++b) {
      double s = 0;
      for (int64_t c = b * C; c < (b + 1) * C; ++c)
        s += double(re[c]) * double(re[c]) + double(im[c]) * double(im[c]);
      acc += weight * s;
    }
    e[static_cast<size_t>(k)] = acc;
  });
}

/// Energy of each kept bin of `g` (kept frequency k = row index * kept columns + column index),
/// summed over batch and channels: the energy map's, made the same way for any thread count.
template <class T>
std::vector<double> kept_energies(const geometry& g, const tensor_view<const T>& x) {
  check_input(g, x);
  const auto& q = g.params;
  const detail::layer_placements at(g);
  const int64_t C = q.in_channels;
  // Samples are transformed in chunks: one sample at a time made tiny transforms (the selection
  // cost 40% of a whole forward and backward), the whole batch at once would hold its whole
  // spectrum. A chunk's spectrum stays within energy_chunk_bytes (at least one sample).
  const int64_t per_sample = detail::checked_mul(2 * g.kept, C, "energy spectrum size");
  const int64_t chunk = std::clamp<int64_t>(
      energy_chunk_bytes / (per_sample * static_cast<int64_t>(sizeof(T))), 1, q.batch);
  auto spec = detail::take_workspace<T>(detail::checked_mul(per_sample, chunk, "energy spectrum"),
                                        "energy spectrum");
  std::vector<double> e(static_cast<size_t>(g.kept), 0.0);
  std::optional<detail::pruned_transform<T>> full_chunk, tail_chunk;
  for (int64_t n0 = 0; n0 < q.batch; n0 += chunk) {
    const int64_t nb = std::min(chunk, q.batch - n0);
    auto& t = nb == chunk ? full_chunk : tail_chunk;
    if (!t)
      t.emplace(g, detail::transform_direction::analyse, nb, C, at.x_h, at.x_w,
                deterministic_options());
    auto img = detail::as_image(x);
    img.data += n0 * img.stride_b;
    t->analyse(img, spec.data());
    add_energies(g, spec.data(), nb, e);
  }
  return e;
}

/// The rate family's band limits {i_h, i_w}, from the largest compression down (rate 0 last):
/// the family changes its kept set only where (L/2+1) * (1-r)^(1/nd) crosses an integer on some
/// axis, so those rates are the candidates.
struct candidate {
  double rate;
  int64_t i_h, i_w;
};
std::vector<candidate> candidates(const geometry& full) {
  const int nd = full.params.ndim;
  const int64_t half_h = full.grid[0] / 2 + 1, half_w = full.bins_w;
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
  std::vector<candidate> out;
  for (double r : rates)
    out.push_back(
        {r, nd == 1 ? 1 : band_limit(full.grid[0], r, nd), band_limit(full.grid[1], r, nd)});
  return out;
}

energy_selection selection(const conv_params& p, const candidate& c, double kept, double total) {
  energy_selection s;
  s.chosen = compression::band(c.i_h, c.i_w);
  s.rate = c.rate;
  s.limits = {c.i_h, c.i_w};
  s.achieved_rate = make_geometry(p, s.chosen).achieved_rate;
  s.energy_kept = total > 0 ? std::min(1.0, kept / total) : 1.0;
  return s;
}

/// The input's spectra at bands of the family, each from the input transform of the forward
/// plan at that band (the plan cache's, with the caller's options): a spectrum the forward at
/// the chosen band can take over (plan::forward_with_input_spectrum), and energies that are the
/// same bits whichever band the search transformed first, i.e. whatever the calls before (the
/// hints). Into buffers from the caller's allocator where given (the last one holds the last band
/// transformed), else into a workspace.
template <class T>
class band_spectra {
 public:
  band_spectra(const conv_params& p, const tensor_view<const T>& x, const plan_options& options,
               const spectrum_allocator<T>& allocate)
      : p_(p), x_(x), options_(options), allocate_(allocate) {}

  /// The geometry of candidate `c`'s band and the energies of its kept bins.
  std::pair<geometry, std::vector<double>> energies(const candidate& c) {
    const auto plan = get_plan<T>(p_, compression::band(c.i_h, c.i_w), options_);
    const geometry& g = plan->geometry();
    const int64_t n = g.x_spectrum_size();
    auto tmp = detail::take_workspace<T>(allocate_ ? 0 : n, "energy spectrum");
    T* spec = tmp.data();
    held_ = false;  // (until the transform is done)
    if (allocate_) {
      const spectrum_view<T> buf = allocate_(n);
      BLFFT_EXPECTS(buf.given(), error_code::invalid_argument,
                    "the spectrum allocator gave a null buffer for ", n, " scalars");
      BLFFT_EXPECTS(buf.size >= n, error_code::invalid_argument, "the spectrum allocator gave ",
                    buf.size, " scalars for ", n);
      spec = buf.data;
    }
    plan->input_spectrum(x_, {spec, n});
    held_ = static_cast<bool>(allocate_);
    held_rows_ = g.kept_rows;
    held_cols_ = g.kept_cols;
    std::vector<double> e(static_cast<size_t>(g.kept), 0.0);
    add_energies(g, spec, p_.batch, e);
    return {g, std::move(e)};
  }

  /// Whether the caller's last buffer holds the spectrum of `g`'s kept set.
  bool holds(const geometry& g) const {
    return held_ && g.kept_rows == held_rows_ && g.kept_cols == held_cols_;
  }

  /// The energy held by candidate `c`'s band, from that band's own transform (`e`, the energies
  /// of `g`'s bins, when `g` is that band).
  double kept(const candidate& c, const geometry& g, const std::vector<double>& e) {
    const geometry gc = make_geometry(p_, compression::band(c.i_h, c.i_w));
    if (gc.kept_rows == g.kept_rows && gc.kept_cols == g.kept_cols)
      return band_energy(g, e, c.i_h, c.i_w);
    const auto [own, own_e] = energies(c);
    return band_energy(own, own_e, c.i_h, c.i_w);
  }

  /// Makes the caller's last buffer, if any, hold candidate `c`'s spectrum.
  void hand_over(const candidate& c) {
    if (allocate_ && !holds(make_geometry(p_, compression::band(c.i_h, c.i_w)))) energies(c);
  }

 private:
  const conv_params& p_;
  const tensor_view<const T>& x_;
  plan_options options_;
  const spectrum_allocator<T>& allocate_;
  bool held_ = false;
  std::vector<int64_t> held_rows_, held_cols_;
};

/// Sum of v[i]^2 over n contiguous values, in double (a long 1D row summed in T would lose the
/// margin of the staged search), in 8 independent partial sums: one sum's chain of dependent
/// additions made this pass latency-bound, slower than the input transform it precedes.
template <class T>
double contiguous_sum_of_squares(const T* v, int64_t n) {
  constexpr int lanes = 8;
  double part[lanes] = {};
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    for (int l = 0; l < lanes; ++l) part[l] += double(v[i + l]) * double(v[i + l]);
  double s = 0;
  for (; i < n; ++i) s += double(v[i]) * double(v[i]);
  for (double p : part) s += p;
  return s;
}

/// Sum of x^2 over the input (double): the spectrum's energy is Lh Lw times this (Parseval).
/// Image by image, in a fixed order: the same bits for any thread count.
template <class T>
double sum_of_squares(const geometry& g, const tensor_view<const T>& x) {
  const auto& q = g.params;
  const auto img = detail::as_image(x);
  const int64_t images = q.batch * q.in_channels, H = q.input[0], W = q.input[1];
  std::vector<double> per_image(static_cast<size_t>(images));
  const bool parallel = images * H * W >= 65536;
  detail::parallel_for(images, parallel ? detail::thread_count() : 1, parallel, [&](int64_t j) {
    const T* base =
        img.data + (j / q.in_channels) * img.stride_b + (j % q.in_channels) * img.stride_ch;
    double s = 0;
    if (img.stride_w == 1 && img.stride_h == W) {
      s = contiguous_sum_of_squares(base, H * W);  // (a contiguous image: one span)
    } else if (img.stride_w == 1) {
      for (int64_t h = 0; h < H; ++h) s += contiguous_sum_of_squares(base + h * img.stride_h, W);
    } else {
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) {
          const double v = base[h * img.stride_h + w * img.stride_w];
          s += v * v;
        }
    }
    per_image[static_cast<size_t>(j)] = s;
  });
  double s = 0;
  for (double v : per_image) s += v;
  return s;
}

/// Where select_by_energy (on an input) last landed for a layer and fraction: the next call
/// starts its search there. Only what the search costs depends on it, never what it selects.
class selection_hints {
 public:
  std::optional<std::size_t> get(const std::vector<int64_t>& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = hints_.find(key);
    if (it == hints_.end()) return std::nullopt;
    return it->second;
  }
  void put(std::vector<int64_t> key, std::size_t index) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (hints_.size() >= 256) hints_.clear();  // a bound; hints are only a head start
    hints_[std::move(key)] = index;
  }

 private:
  std::mutex mutex_;
  std::map<std::vector<int64_t>, std::size_t> hints_;
};
selection_hints& hints() {
  static selection_hints h;
  return h;
}

}  // namespace

template <class T>
std::vector<double> energy_map(const conv_params& p, const tensor_view<const T>& x) {
  detail::refuse_energy_3d(p);  // 1D/2D only (README: Limitations)
  return kept_energies<T>(make_geometry(p, compression::indices({}, {})), x);  // every bin
}

energy_selection select_by_energy(const conv_params& p, const std::vector<double>& energy,
                                  double fraction) {
  detail::refuse_energy_3d(p);  // 1D/2D only (README: Limitations)
  BLFFT_EXPECTS(std::isfinite(fraction) && fraction > 0.0 && fraction <= 1.0,
                error_code::invalid_argument, "energy fraction must be in (0, 1], got ", fraction);
  const geometry full = make_geometry(p, compression::none());
  BLFFT_EXPECTS(static_cast<int64_t>(energy.size()) == full.total, error_code::shape_mismatch,
                "energy map has ", energy.size(), " bins, the grid has ", full.total);
  const double total = band_energy(full, energy, full.grid[0], full.bins_w);
  BLFFT_EXPECTS(std::isfinite(total), error_code::invalid_argument,
                "energy selection needs a finite input: the input's spectral energy is ", total,
                " (the input holds NaN or Inf, or values too large to square)");
  for (const candidate& c : candidates(full)) {
    const double kept = band_energy(full, energy, c.i_h, c.i_w);
    if (kept >= fraction * total) return selection(p, c, kept, total);
  }
  // Unreachable: rate 0 keeps everything.
  detail::fail(error_code::backend, "energy selection found no kept set");
}

template <class T>
energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                  double fraction) {
  plan_options o;
  o.deterministic = true;  // a report independent of the thread count
  return select_by_energy<T>(p, x, fraction, o);
}

template <class T>
energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                  double fraction, const plan_options& options,
                                  spectrum_view<T> x_spectrum) {
  const int64_t whole = make_geometry(p, compression::none()).x_spectrum_size();
  BLFFT_EXPECTS(x_spectrum.given() && x_spectrum.size >= whole, error_code::invalid_argument,
                "x_spectrum has ", x_spectrum.size,
                " scalars, fewer than the whole grid's input spectrum (", whole,
                ", make_geometry(p, compression::none()).x_spectrum_size())");
  return select_by_energy<T>(p, x, fraction, options,
                             [&](int64_t n) { return spectrum_view<T>(x_spectrum.data, n); });
}

template <class T>
energy_selection select_by_energy(const conv_params& p, const tensor_view<const T>& x,
                                  double fraction, const plan_options& options,
                                  const spectrum_allocator<T>& allocate) {
  detail::refuse_energy_3d(p);  // 1D/2D only (README: Limitations)
  BLFFT_EXPECTS(std::isfinite(fraction) && fraction > 0.0 && fraction <= 1.0,
                error_code::invalid_argument, "energy fraction must be in (0, 1], got ", fraction);
  const geometry full = make_geometry(p, compression::none());
  check_input(full, x);
  const bool hand_over = static_cast<bool>(allocate);
  const auto family = candidates(full);
  const std::size_t last = family.size() - 1;  // rate 0: the whole grid
  std::vector<int64_t> key;
  detail::append_geometry_key(key, full);
  key.push_back(static_cast<int64_t>(sizeof(T)));
  int64_t fraction_bits = 0;
  std::memcpy(&fraction_bits, &fraction, sizeof fraction_bits);
  key.push_back(fraction_bits);
  // Staged search (the map of every bin costs a transform of the whole grid, more than the
  // forward at a high rate): first only the bins of one band of the family against the total from
  // Parseval: where the last call landed (the same choice again is then decided from its own
  // band, whose energy_kept needs no other transform, and whose spectrum the forward takes over),
  // then the next band after it; without a hint, the band at rate 3/4. A candidate inside a band
  // is decided there when it holds E, and every smaller one misses E, by more than the rounding
  // of those energies; anything closer, or beyond those bands, goes to the whole map (with a
  // buffer to hand over, first to the whole grid's band as one more stage: the forward at rate 0
  // takes it over). Either way the choice is the whole map's (up to that rounding), and
  // energy_kept comes from the chosen band's own transform: only the cost depends on the calls
  // before.
  const auto hint = hints().get(key);
  std::vector<std::size_t> stages;
  if (hint) {
    const std::size_t at = std::min(*hint, last);
    std::size_t next = at;
    const auto same = [&](std::size_t j) {  // (the family repeats some bands)
      return family[j].i_h == family[at].i_h && family[j].i_w == family[at].i_w;
    };
    while (next < last && same(next)) ++next;
    stages = {at};
    if (!same(next)) stages.push_back(next);
  } else {
    std::size_t stage = 0;
    while (stage < last && family[stage].rate > 0.75) ++stage;
    stages = {stage};
  }
  if (hand_over && stages.back() != last) stages.push_back(last);
  // Parseval's total (in double: the margin below, and energy_kept, are relative to it); not
  // needed by a family of one band (a grid of one bin: nothing to search, a pass over the input
  // saved).
  const double total = family.size() < 2 ? 0.0
                                         : static_cast<double>(full.grid[0] * full.grid[1]) *
                                               sum_of_squares<T>(full, x);
  // No bin of a T spectrum can overflow while the total stays below (max T / 2)^2 (each |X_k|^2
  // is at most the total); one that did would make the whole map refuse the input.
  const double max_bin = static_cast<double>(std::numeric_limits<T>::max()) / 2;
  const double target = fraction * total;
  const double margin = (sizeof(T) == sizeof(float) ? 1e-4 : 1e-10) * total;
  bool close = !(total < max_bin * max_bin);
  band_spectra<T> spectra(p, x, options, allocate);
  const auto chosen = [&](std::size_t j, double kept) {
    hints().put(std::move(key), j);
    spectra.hand_over(family[j]);
    energy_selection s = selection(p, family[j], kept, total);
    if (j == last) s.energy_kept = 1.0;  // the whole grid's band holds all of it, exactly
    s.x_spectrum = hand_over;
    return s;
  };
  for (std::size_t stage : stages) {
    // (Without a buffer, the whole grid's band is the map's: bounded by chunks, below.)
    if (close || family.size() < 2 || (stage == last && !hand_over)) break;
    const auto [g, e] = spectra.energies(family[stage]);
    for (std::size_t j = 0; j <= stage && !close; ++j) {
      const double kept = band_energy(g, e, family[j].i_h, family[j].i_w);
      if (kept >= target + margin) return chosen(j, spectra.kept(family[j], g, e));
      close = kept > target - margin;  // too close to call here
    }
  }
  const std::vector<double> map = energy_map<T>(p, x);
  const energy_selection s = select_by_energy(p, map, fraction);
  for (std::size_t j = 0; j < family.size(); ++j)
    if (family[j].i_h == s.limits[0] && family[j].i_w == s.limits[1]) {
      // energy_kept as the staged search reports it. (Only the last candidate, rate 0, is the
      // whole grid.)
      return chosen(j, j == last ? total : spectra.kept(family[j], full, map));
    }
  detail::fail(error_code::backend, "energy selection found no kept set");  // unreachable
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
template BLFFT_API energy_selection select_by_energy<float>(const conv_params&,
                                                            const tensor_view<const float>&, double,
                                                            const plan_options&,
                                                            spectrum_view<float>);
template BLFFT_API energy_selection select_by_energy<double>(const conv_params&,
                                                             const tensor_view<const double>&,
                                                             double, const plan_options&,
                                                             spectrum_view<double>);
template BLFFT_API energy_selection select_by_energy<float>(const conv_params&,
                                                            const tensor_view<const float>&, double,
                                                            const plan_options&,
                                                            const spectrum_allocator<float>&);
template BLFFT_API energy_selection select_by_energy<double>(const conv_params&,
                                                             const tensor_view<const double>&,
                                                             double, const plan_options&,
                                                             const spectrum_allocator<double>&);

}  // namespace blfft
