"""Issue #13: the command lines' --help, the progress bar away from a terminal, the Wilcoxon test
against scipy, and what the package declares (py.typed, build_info, help())."""

from __future__ import annotations

import io
import pydoc
import time
from pathlib import Path

import numpy as np
import pytest

import blfft
from blfft.experiments import EXPERIMENTS, common
from blfft.experiments import __main__ as experiments_main


def _help(parser, argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        parser.parse_args(argv)
    assert e.value.code == 0
    return capsys.readouterr().out


def test_experiments_help_and_each_experiments_help(capsys):
    p = experiments_main.parser()
    top = _help(p, ["--help"], capsys)
    for name in EXPERIMENTS:
        assert name in top
    assert "50%" in top  # ucr_full_vs_half's summary: a '%' argparse must not choke on
    for name in EXPERIMENTS:
        text = _help(experiments_main.parser(), [name, "--help"], capsys)
        assert "--quick" in text and "--no-progress" in text, name


def test_blfft_cli_help(capsys):
    from blfft import __main__ as cli

    build = getattr(cli, "parser", None) or getattr(cli, "_parser", None)
    if build is None:  # the CLI builds its parser inside main()
        for argv in (["--help"], ["demo", "--help"]):
            with pytest.raises(SystemExit) as e:
                cli.main(argv)
            assert e.value.code == 0
    else:
        assert "demo" in _help(build(), ["--help"], capsys)
        assert "--quick" in _help(build(), ["demo", "--help"], capsys)


class _Log(io.StringIO):
    def isatty(self) -> bool:  # a log file, CI
        return False


def test_progress_logs_lines_away_from_a_terminal():
    assert common.Progress.LOG_EVERY <= 30.0
    stream = _Log()
    bar = common.Progress(4, "train", stream=stream, log_every=0.01)
    for i in range(4):
        time.sleep(0.02)
        bar.update(1, f"loss {i}")
    bar.close("done")
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 4 and "\r" not in stream.getvalue()
    assert lines[0].startswith("train [") and "1/4" in lines[0] and "loss 0" in lines[0]
    assert lines[-1] == "train done"
    # Nothing until log_every has passed; disabled prints nothing at all.
    quiet = _Log()
    bar = common.Progress(3, "x", stream=quiet, log_every=3600)
    bar.update(1)
    assert quiet.getvalue() == ""
    off = _Log()
    bar = common.Progress(3, "x", stream=off, enabled=False, log_every=0)
    bar.update(1)
    bar.close("done")
    assert off.getvalue() == ""


def test_wilcoxon_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    # Exact p-values where scipy computes them exactly: no ties, no zeros.
    for n in (5, 9, 17, 25):
        a = rng.normal(size=n)
        b = a + rng.normal(0.3, 1.0, size=n)
        ours = common.wilcoxon_signed_rank(a, b)
        ref = stats.wilcoxon(a, b, method="exact")
        assert ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12), n
        assert min(ours["w_plus"], ours["w_minus"]) == pytest.approx(ref.statistic)
    # Ties and zero differences (counts of correct answers): the normal approximation with tie
    # correction, zeros dropped (Wilcoxon's method), no continuity correction. Integers, so that
    # scipy's exact comparisons and our 1e-12 tolerance see the same ties.
    a = rng.integers(0, 20, size=40).astype(float)
    b = np.clip(a + rng.integers(-2, 4, size=40), 0, 20)
    ours = common.wilcoxon_signed_rank(a, b)
    ref = stats.wilcoxon(a, b, zero_method="wilcox", correction=False, method="approx")
    assert ours["p_normal"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert 0.0 <= ours["p_value"] <= 1.0


def test_py_typed_is_shipped():
    assert (Path(blfft.__file__).parent / "py.typed").is_file()


def test_build_info_says_why_cuda_is_absent():
    info = blfft.build_info()
    if info["cuda_built"]:
        assert info["cuda_import_error"] is None
    else:
        # Either it failed to load (the error says why) or it was not built (the build says why).
        reason = info.get("cuda_import_error") or info.get("cuda_build")
        assert reason, info


def test_build_info_names_the_blas_and_scipy_openblas_runs_on_one_thread():
    """build_info() names the BLAS; with scipy-openblas32 (pthreads OpenBLAS) also the core it
    picked, and after a call its pool is at one thread (src/blas.cpp: blfft's own threads are the
    parallelism; more would oversubscribe the cores and change bits with the thread count)."""
    import ctypes
    import os

    import torch

    blfft.functional.conv2d(torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3), compress_rate=0.5)
    info = blfft.build_info()
    assert info["blas"], info  # recorded by python/CMakeLists.txt
    if not info["blas"].startswith("scipy-openblas32"):
        assert info["blas_core"] is None, info
        return
    assert info["blas_core"], info  # e.g. "SkylakeX", "Haswell"
    lib = ctypes.CDLL("libscipy_openblas.so", mode=os.RTLD_NOLOAD)
    assert lib.scipy_openblas_get_num_threads() == 1


def test_help_of_conv2d_shows_every_blfft_argument():
    text = pydoc.render_doc(blfft.nn.Conv2d, renderer=pydoc.plaintext)
    for arg in (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "bias",
        "padding_mode",
        "compress_rate",
        "inference_compress_rate",
        "energy",
        "cache_weight_spectrum",
    ):
        assert arg in text, arg
