#pragma once
// A pass (analysis -> mixing -> synthesis) fused per chunk of kept columns, for layers whose two
// transforms run the matmul engine on a 2D grid (issue #15, bench/NOTES.md "Seventh round").
//
// The whole-spectrum pipeline runs each stage over every image before the next starts, so the
// mixing reads spectra that the analysis wrote megabytes earlier, and writes an output spectrum
// that the synthesis reads back just as late. Here the width stages still run over all images
// (rows-domain arrays), but for each chunk of kept columns the height analysis, the mixing of
// that chunk's frequencies and the inverse height stage run back to back, on one thread, while
// the chunk's spectra are in its L2. The input spectrum is still written whole (the caller may
// keep it, and the backward pass needs the output gradient's for the weight gradient); the
// output spectrum exists only chunk by chunk.
//
// Measured (bench/NOTES.md, seventh round): the mixing runs no faster with its operands in cache
// (its small products are bound by the BLAS's rate, not by memory); what gained with BLIS, 3-16%
// of fwd+bwd on 32x32 maps, is the height analysis as one wide product per column chunk over all
// images. With scipy-openblas32 the passes are even, so plan_options::fusion is off by default.
//
// Chunks depend on the geometry only, never on the thread count, and every product keeps the
// shape it has whatever the thread count: deterministic mode stays bitwise thread-independent.

#include <algorithm>
#include <cstdint>

#include "blfft/geometry.hpp"
#include "image.hpp"
#include "parallel.hpp"
#include "pruned_transform.hpp"
#include "workspace.hpp"

namespace blfft::detail {

/// Per-thread bytes a column chunk's working set should stay under (the L2 of the CPUs measured
/// is 1-2 MB a core; one column of a 32 x 64-channel layer already takes 1.1-1.7 MB).
constexpr std::size_t fused_chunk_bytes = 1024 * 1024;

/// Whether a pass from `in` to `out` can run fused.
template <class T>
bool fusable(const pruned_transform<T>& in, const pruned_transform<T>& out) {
  return in.splits() && out.splits();
}

/// Kept columns per chunk: the chunk's input spectrum, work array and output spectrum within
/// fused_chunk_bytes (at least one column).
template <class T>
int64_t fused_columns(const geometry& g, const pruned_transform<T>& in,
                      const pruned_transform<T>& out, int64_t J_in, int64_t J_out) {
  const auto nr = static_cast<int64_t>(g.kept_rows.size());
  const int64_t per_column =
      2 * nr * (J_in + J_out) + std::max(in.column_work_size(1), out.column_work_size(1));
  const auto fit = static_cast<int64_t>(fused_chunk_bytes / (sizeof(T) * per_column));
  return std::clamp<int64_t>(fit, 1, in.kept_columns());
}

/// src --in--> in_spec (whole, written) --mix--> out chunk --out--> dst. Without `src` (null),
/// in_spec already holds the whole spectrum (as `in` makes it) and is only read: the same bits in
/// dst as from the source (plan::forward_with_input_spectrum).
/// `mix(k, in_k, out_k, scratch)` makes one kept frequency k's output block out_k (planar
/// [re | im] of J_out images) from in_k (the same of J_in) with `mix_scratch` scalars of scratch.
template <class T, class Mix>
void fused_pass(const geometry& g, const pruned_transform<T>& in, const image_view<const T>* src,
                int64_t J_in, T* in_spec, const pruned_transform<T>& out, const image_view<T>& dst,
                int64_t J_out, T scale, const T* bias, std::size_t mix_scratch, Mix&& mix) {
  const int64_t nc = in.kept_columns(), nr = static_cast<int64_t>(g.kept_rows.size());
  const int64_t qc = fused_columns(g, in, out, J_in, J_out);
  const int64_t chunks = (nc + qc - 1) / qc;
  auto rows_in = take_workspace<T>(src ? in.row_domain_size() : 0, "fused input rows");
  auto rows_out = take_workspace<T>(out.row_domain_size(), "fused output rows");
  if (src) in.analyse_rows(*src, rows_in.data());
  const int64_t work = std::max(in.column_work_size(qc), out.column_work_size(qc));
  const int64_t out_chunk = nr * qc * 2 * J_out;
  const auto per_thread = static_cast<std::size_t>(work + out_chunk) + mix_scratch;
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), chunks));
  const thread_slices<T> scratch(threads, per_thread, "fused pass scratch");
  parallel_for(chunks, threads, true, [&](int64_t c) {
    const int64_t q0 = c * qc, n = std::min(qc, nc - q0);
    T* w = scratch.mine();
    T* y = w + work;
    T* s = y + out_chunk;
    if (src) in.analyse_columns(rows_in.data(), q0, n, in_spec, w);
    for (int64_t a = 0; a < nr; ++a)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t k = a * nc + q0 + i;
        mix(k, in_spec + k * 2 * J_in, y + (a * n + i) * 2 * J_out, s);
      }
    out.synthesise_columns(y, q0, n, rows_out.data(), w);
  });
  out.synthesise_rows(rows_out.data(), dst, scale, bias);
}

/// fused_pass's analysis alone: in_spec with the bits fused_pass(src, ...) writes there (its
/// column chunks: a product's shape sets its rounding), for the plan's other paths to the same
/// spectrum (plan::input_spectrum, whose spectrum forward_with_input_spectrum takes).
template <class T>
void fused_analysis(const geometry& g, const pruned_transform<T>& in,
                    const image_view<const T>& src, int64_t J_in, T* in_spec,
                    const pruned_transform<T>& out, int64_t J_out) {
  const int64_t nc = in.kept_columns();
  const int64_t qc = fused_columns(g, in, out, J_in, J_out);
  const int64_t chunks = (nc + qc - 1) / qc;
  auto rows_in = take_workspace<T>(in.row_domain_size(), "fused input rows");
  in.analyse_rows(src, rows_in.data());
  const int threads = static_cast<int>(std::min<int64_t>(thread_count(), chunks));
  const thread_slices<T> scratch(threads, static_cast<std::size_t>(in.column_work_size(qc)),
                                 "fused analysis scratch");
  parallel_for(chunks, threads, true, [&](int64_t c) {
    const int64_t q0 = c * qc;
    in.analyse_columns(rows_in.data(), q0, std::min(qc, nc - q0), in_spec, scratch.mine());
  });
}

}  // namespace blfft::detail
