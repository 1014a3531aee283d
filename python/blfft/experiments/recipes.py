"""The two training set-ups the experiments use, with their full and quick sizes.

- ``fcn``: the paper's FCN on one UCR data set (Adam, batch min(N/10, 16), a fixed budget of
  optimizer steps; see :func:`common.ucr_train_config`).
- ``resnet``: ResNet-18 (CIFAR form, reduced width) on Fashion-MNIST (a training subset; SGD with
  Nesterov momentum and a cosine decay).
- ``densenet``: DenseNet-BC (depth 22, growth rate 12) on Fashion-MNIST, trained as ``resnet``.

What was scaled down from the paper, and why, is in EXPERIMENTS.md; the numbers live here.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Optional, Tuple

from torch import nn

from blfft import data as _data
from blfft import models

from . import common

KINDS = ("fcn", "resnet", "densenet")


@dataclass(frozen=True)
class Scale:
    """How big one training run is."""

    # FCN on UCR
    ucr_steps: int = 250
    ucr_train_limit: Optional[int] = None  # subset of the training set (None: all)
    ucr_test_limit: Optional[int] = None
    fcn_channels: Tuple[int, int, int] = (128, 256, 128)  # the paper's
    # ResNet-18 on Fashion-MNIST
    fashion_train: Optional[int] = 10000
    fashion_test: Optional[int] = None  # None: the whole 10000-image test set
    fashion_epochs: int = 3
    resnet_width: int = 16
    densenet_depth: int = 22
    densenet_growth: int = 12
    fashion_batch: int = 64


FULL = Scale()
QUICK = Scale(
    ucr_steps=2,
    ucr_train_limit=16,
    ucr_test_limit=32,
    fcn_channels=(8, 16, 8),
    fashion_train=32,
    fashion_test=32,
    fashion_epochs=1,
    resnet_width=4,
    densenet_depth=10,
    densenet_growth=4,
    fashion_batch=16,
)


@functools.lru_cache(maxsize=64)
def _ucr(name: str):
    return _data.load_ucr(name)


@functools.lru_cache(maxsize=1)
def _fashion():
    return _data.load_fashion_mnist()


def scale_for(args) -> Scale:
    """FULL or QUICK, with the command line's overrides (``--steps``, ``--epochs``,
    ``--width``)."""
    scale = QUICK if args.quick else FULL
    changes = {}
    if getattr(args, "steps", None):
        changes["ucr_steps"] = args.steps
    if getattr(args, "epochs", None):
        changes["fashion_epochs"] = args.epochs
    if getattr(args, "width", None):
        changes["resnet_width"] = args.width
    return dataclasses.replace(scale, **changes) if changes else scale


def ucr(name: str, scale: Scale, seed: int = 0) -> _data.Dataset:
    d = _ucr(name)
    if scale.ucr_train_limit or scale.ucr_test_limit:
        d = d.subset(scale.ucr_train_limit, scale.ucr_test_limit, seed=seed)
    return d


def fashion(scale: Scale, seed: int = 0) -> _data.Dataset:
    return _fashion().subset(scale.fashion_train, scale.fashion_test, seed=seed)


def build(kind: str, d: _data.Dataset, scale: Scale, seed: int, **knobs) -> nn.Module:
    """A freshly initialised model (seeded) for data set `d`; knobs: compress_rate,
    inference_compress_rate, energy, torch_conv."""
    common.seed_everything(seed)
    if kind == "fcn":
        return models.fcn(d.num_classes, d.in_channels, channels=scale.fcn_channels, **knobs)
    if kind == "resnet":
        return models.resnet18(d.num_classes, d.in_channels, width=scale.resnet_width, **knobs)
    if kind == "densenet":
        return models.densenet(
            d.num_classes,
            d.in_channels,
            depth=scale.densenet_depth,
            growth_rate=scale.densenet_growth,
            **knobs,
        )
    raise ValueError(f"unknown model kind {kind!r} (fcn, resnet, densenet)")


def train_config(kind: str, d: _data.Dataset, scale: Scale, seed: int) -> common.TrainConfig:
    if kind == "fcn":
        return common.ucr_train_config(len(d.y_train), scale.ucr_steps, seed)
    return common.fashion_train_config(scale.fashion_epochs, seed, scale.fashion_batch)


def fit(
    kind: str,
    d: _data.Dataset,
    scale: Scale,
    seed: int,
    desc: str,
    progress: bool = True,
    **knobs,
) -> Tuple[nn.Module, dict]:
    """Builds and trains one model; returns it with the training record."""
    model = build(kind, d, scale, seed, **knobs)
    cfg = train_config(kind, d, scale, seed)
    record = common.train_model(model, d.x_train, d.y_train, cfg, desc=desc, progress=progress)
    record["config"] = cfg
    return model, record


def data_for(kind: str, name: Optional[str], scale: Scale, seed: int = 0) -> _data.Dataset:
    if kind == "fcn":
        return ucr(name, scale, seed)
    return fashion(scale, seed)


def models_and_data(args, scale: Scale, fcn_dataset: str, quick_dataset: str):
    """(kind, data set) for each model of ``--models`` (``--dataset`` or the default UCR data set
    for the FCN, Fashion-MNIST for the others); SystemExit for an unknown model."""
    for kind in [k for k in args.models.split(",") if k]:
        if kind not in KINDS:
            raise SystemExit(f"unknown model {kind!r} ({', '.join(KINDS)})")
        name = args.dataset or (quick_dataset if args.quick else fcn_dataset)
        yield kind, data_for(kind, name, scale, args.seed)


def fit_for(args, kind: str, d: _data.Dataset, scale: Scale, desc: str, **knobs):
    """:func:`fit` with the experiments' conventions: the same initialisation for every setting
    of a model and data set (``common.model_seed``), progress unless ``--no-progress``."""
    seed = common.model_seed(args.seed, kind, d.name)
    return fit(kind, d, scale, seed, desc, progress=not args.no_progress, **knobs)
