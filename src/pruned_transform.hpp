#pragma once
// Pruned 2D real FFTs between strided spatial images and compressed, frequency-major spectra.
//
// A spatial image of R_h x R_w samples sits on the Lh x Lw FFT grid at rows off_h + step_h * i
// and columns off_w + step_w * j; the rest of the grid is zero. This one placement describes every
// pass (docs/design.md 1.5-1.6):
//   input x:        offset = padding, step 1      weight w:     offset 0, step = dilation
//   output grad g:  offset 0, step = stride       (and the same placements for what comes back)
//
// analyse:    image -> spectrum at the kept bins. Rows-then-columns: r2c only on the R_h rows
//             that hold data, then column FFTs only for the kept columns; never the full spectrum.
// synthesise: kept bins -> image samples. Column inverse FFTs for the kept columns, then c2r only
//             on the grid rows the image needs (zeros synthesised for the dropped columns).
//
// Two engines compute the same thing (plan_options::method): FFTW line transforms, or real GEMMs
// with small DFT matrices that map exactly the data-holding samples to exactly the kept bins (and
// back), which is faster for the small grids of CNN layers. Work is split into chunks of images
// whose buffers fit in L2; chunks run in parallel.
//
// Spectra are planar and frequency-major: S[k][re|im][image], image = b * CH + ch (see
// blfft::geometry), so one kept frequency is a contiguous (B x CH) matrix per plane.

#include <complex>
#include <cstdint>
#include <memory>
#include <vector>

#include "blfft/geometry.hpp"
#include "blfft/plan.hpp"
#include "fft.hpp"
#include "image.hpp"
#include "layer.hpp"

namespace blfft::detail {

/// The engines live in pruned_transform_fft.cpp and pruned_transform_matmul.cpp; construction,
/// the scratch layout and the parallel loop over chunks in pruned_transform.cpp.
template <class T>
class pruned_transform {
 public:
  using direction = transform_direction;

  /// B x CH images placed on the grid of `g` as described by `h` and `w`.
  pruned_transform(const geometry& g, direction dir, int64_t B, int64_t CH, placement h,
                   placement w, const plan_options& options);

  /// spectrum[k][plane][b * CH + ch] for all kept k; 2 * kept * B * CH scalars.
  void analyse(const image_view<const T>& src, T* spectrum) const;

  /// dst = scale * inverse(spectrum) at the placed samples, plus bias[ch] when bias is non-null.
  void synthesise(const T* spectrum, const image_view<T>& dst, T scale, const T* bias) const;

  // ---- Split stages, for the fused per-column pipeline (fused_pass.hpp) ----
  // The matmul engine's two axes run apart: the width stage over all images into a row-domain
  // array rows[r][q][re|im][j] (sample row r, kept column q, image j), the height stage per
  // chunk of kept columns [q0, q0 + qc), which holds every kept row's bins of those columns.

  /// Whether the split stages exist: matmul engine on a 2D grid.
  bool splits() const { return matmul_ && Lh_ > 1; }
  /// Scalars of the row-domain array: Rh x nc x 2 x J.
  int64_t row_domain_size() const { return h_.count * nc_ * 2 * J_; }
  /// Scalars of work one column-stage call of qc columns needs.
  int64_t column_work_size(int64_t qc) const {
    return 2 * static_cast<int64_t>(pairs_.size()) * 2 * qc * J_;
  }
  int64_t kept_columns() const { return nc_; }
  /// Analysis, width stage of every image (parallel over image chunks).
  void analyse_rows(const image_view<const T>& src, T* rows) const;
  /// Analysis, height stage of columns [q0, q0 + qc) into the whole spectrum at their bins.
  void analyse_columns(const T* rows, int64_t q0, int64_t qc, T* spectrum, T* work) const;
  /// Synthesis, height stage of columns [q0, q0 + qc) from `chunk`, which holds bin (row a,
  /// column q0 + i) at frequency index a * qc + i ([re | im] of J images each), into rows.
  void synthesise_columns(const T* chunk, int64_t q0, int64_t qc, T* rows, T* work) const;
  /// Synthesis, width stage of every image: dst = scale * rows' inverse + bias[ch].
  void synthesise_rows(const T* rows, const image_view<T>& dst, T scale, const T* bias) const;

 private:
  struct chunk_plans {
    std::shared_ptr<const fft_plan<T>> rows, cols;
  };
  /// One thread's scratch: three buffers, at aligned offsets (in scalars) from its start. The
  /// fft engine: padded rows (c Rh Lw), their half spectra (2 c Rh bins), full-height kept
  /// columns (2 c Lh nc); the matmul engine: samples (Rh c Rw), then two work arrays of
  /// (lines x c x 2nc) and (2 lines x c x 2nc), lines = max(nr, Rh, 2 pairs).
  struct scratch_layout {
    std::size_t second = 0, third = 0, total = 0;
  };
  scratch_layout layout_for(int64_t chunk) const;
  std::size_t per_thread_scalars() const { return scratch_.total; }
  void make_dft_matrices();
  // One chunk of mc images from image j0; `scratch` is the thread's per_thread_scalars() slice.
  void analyse_fft(const image_view<const T>& src, T* spectrum, int64_t j0, int64_t mc,
                   T* scratch) const;
  void analyse_matmul(const image_view<const T>& src, T* spectrum, int64_t j0, int64_t mc,
                      T* scratch) const;
  void synthesise_fft(const T* spectrum, const image_view<T>& dst, T scale, const T* bias,
                      int64_t j0, int64_t mc, T* scratch) const;
  void synthesise_matmul(const T* spectrum, const image_view<T>& dst, T scale, const T* bias,
                         int64_t j0, int64_t mc, T* scratch) const;

  direction dir_;
  int64_t Lh_, Lw_;
  std::vector<int64_t> kept_rows_, kept_cols_;
  int64_t B_, CH_;
  int64_t J_, nr_, nc_;  // images B * CH; kept rows and columns
  placement h_, w_;
  int64_t chunk_ = 1;       // images per work item
  scratch_layout scratch_;  // for chunk_ images
  int64_t row_len_ = 0;     // rfft bins per row (Lw / 2 + 1)
  /// A kept grid row k and its mirror -k (mod Lh), as indices into kept_rows_; the same index
  /// twice for rows that are their own mirror (0, and Lh/2 for even Lh). Kept sets are symmetric,
  /// and a real signal's spectrum at -k is the conjugate of the one at k, so the matmul engine's
  /// column DFTs only evaluate one row of each pair: half the work.
  struct row_pair {
    int64_t pos, neg;
  };
  std::vector<row_pair> pairs_;
  bool matmul_ = false;
  chunk_plans full_, tail_;  // fft engine: plans for a full chunk and for the last one
  std::vector<T> row_dft_;   // matmul engine: width-axis DFT matrix
  std::vector<T> col_dft_;   // matmul engine: height-axis DFT matrix (unused when Lh == 1)
  // Split stages: row_dft_ with its [re | im] parts interleaved per kept column (the width
  // products then order the row domain (q, re|im, j)); synthesis: [Re E | Im E], (Rh x 2np).
  std::vector<T> row_split_, col_split_;
  void make_split_matrices();
  void analyse_rows_chunk(const image_view<const T>& src, T* rows, int64_t j0, int64_t mc,
                          T* scratch) const;
  void synthesise_rows_chunk(const T* rows, const image_view<T>& dst, T scale, const T* bias,
                             int64_t j0, int64_t mc, T* scratch) const;

  /// The fft engine's plans and work areas for a chunk of mc images in a thread's scratch.
  struct fft_work {
    const chunk_plans& plans;
    std::complex<T>* rout;  // half spectra of the rows
    std::complex<T>* grid;  // full-height kept columns
  };
  fft_work fft_work_for(int64_t mc, T* scratch) const {
    return {mc == chunk_ ? full_ : tail_,
            reinterpret_cast<std::complex<T>*>(scratch + scratch_.second),
            reinterpret_cast<std::complex<T>*>(scratch + scratch_.third)};
  }
};

}  // namespace blfft::detail
