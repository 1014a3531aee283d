"""Smoke test of ``python -m blfft.bench --quick``: it runs and writes its reports. Timings are not
asserted (the machine is shared and noisy); the structure and the bookkeeping are."""

import json

import pytest

from blfft import bench


@pytest.mark.parametrize("impls", ["blfft,torch,paper"])
def test_quick_bench_writes_reports(tmp_path, impls):
    assert bench.main(["--quick", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path),
                       "--impls", impls]) == 0
    data = json.loads((tmp_path / "bench.json").read_text())
    results = data["results"]
    assert data["meta"]["quick"] is True and data["meta"]["sgemm_gflops"] > 0
    layers = {r["layer"] for r in results}
    assert layers == {la.name for la in bench.QUICK}
    for r in results:
        assert r["fwd_ms"] > 0 and r["bwd_ms"] > 0 and r["fwd_bwd_ms"] > 0
        assert r["held_batch_bytes"] >= 0
    # blfft at rate 0.5 holds less for backward than at rate 0 (the compressed spectrum).
    held = {(r["layer"], r["rate"]): r["held_batch_bytes"] for r in results if r["impl"] == "blfft"}
    assert held[("quick 16ch 16x16", 0.5)] < held[("quick 16ch 16x16", 0.0)]
    assert all(r["gflops"] > 0 for r in results if r["impl"] == "blfft")
    md = (tmp_path / "bench.md").read_text()
    assert "blfft/torch" in md and "quick 16ch 16x16" in md
    # The transposed layer: blfft and torch measured, the paper's pipeline (none) skipped.
    up = {r["impl"] for r in results if r["layer"] == "quick up 16->8 k4 s2 p1 8x8"}
    assert up == {"blfft", "torch"}


def test_energy_rows_compare_with_the_rate_they_select(tmp_path):
    assert bench.main(["--quick", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path),
                       "--impls", "blfft,blfft_energy"]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())["results"]
    rows = {r["layer"]: r for r in results if r["impl"] == "blfft_energy"}
    # 1D and 2D convolutions only (no transposed layer: energy selection does not apply).
    assert set(rows) == {la.name for la in bench.QUICK if not la.transposed}
    for name, r in rows.items():
        layer = next(la for la in bench.QUICK if la.name == name)
        x, w = bench._inputs(layer)
        d, pad = layer.ndim, layer.explicit_padding()
        band, sel = bench.blfft._ops.select_band(
            x.detach(), w.shape, [layer.stride] * d, [pad] * d, [1] * d, 1, bench.ENERGY
        )
        assert r["selected_rate"] == sel.rate and list(r["selected_band"]) == band
        assert r["energy_fwd_bwd_ms"] > 0 and r["fixed_fwd_bwd_ms"] > 0
        assert r["energy_over_fixed"] == r["energy_fwd_bwd_ms"] / r["fixed_fwd_bwd_ms"]
    md = (tmp_path / "bench.md").read_text()
    assert "## Energy mode (energy=0.99)" in md and "quick fcn 8->16 k5 L64" in md


@pytest.mark.parametrize("layer", bench.UNET + [la for la in bench.QUICK if la.transposed])
def test_transposed_layers_match_torch_at_rate_zero(layer):
    import torch

    x, w = bench._inputs(layer, batch=2)
    x, w = x.double(), w.double()
    ref = bench._torch(x, w, layer, 0.0)
    assert ref.shape[-1] == 2 * layer.size  # up-sampling by 2
    torch.testing.assert_close(bench._blfft(x, w, layer, 0.0), ref, rtol=1e-9, atol=1e-9)
    # The geometry the report uses is that of the convolution it is the adjoint of.
    g = bench._geometry(layer, 0.5)
    assert tuple(g.input_shape[2:]) == tuple(ref.shape[2:])


def test_paper_pipeline_matches_torch_at_rate_zero():
    # The baseline must compute the same convolution, or the comparison means nothing.
    import torch
    import torch.nn.functional as F

    for layer in bench.QUICK:
        if layer.transposed:  # the paper's pipeline has no transposed convolution
            continue
        x, w = bench._inputs(layer)
        x, w = x.double(), w.double()
        ref = (F.conv2d if layer.ndim == 2 else F.conv1d)(x, w, None, layer.stride, layer.padding)
        got = bench._paper(x, w, layer, 0.0)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
