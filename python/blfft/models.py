"""Models of the paper's experiments, with every convolution a blfft layer.

- :func:`fcn`: the fully convolutional network for time series (Wang, Yan, Oates 2017) that the
  paper trains on the UCR archive: three blocks conv1d -> batch norm -> ReLU with 128/256/128
  filters of size 8/5/3 and 'same' padding, global average pooling, a linear classifier.
- :func:`resnet18`: ResNet-18 in its CIFAR form (3x3 stem with stride 1, no max-pool, four stages
  of two basic blocks, 1x1 projection shortcuts); any number of input channels and any input
  size, so it also takes 1-channel 28x28 images (Fashion-MNIST: the stages see 28, 14, 7, 4).
  ``width`` scales the channels (64 in the paper).
- :func:`densenet`: DenseNet-BC for CIFAR-sized inputs (3x3 stem, bottleneck 1x1 -> 3x3 dense
  layers, transitions with compression 0.5 and 2x2 average pooling); small ``depth`` and
  ``growth_rate`` by default so that it trains on a CPU.

Every constructor takes, as keywords, the compression knobs of :class:`blfft.nn.Conv2d`
(``compress_rate``, ``inference_compress_rate``, ``energy``), passed to every convolution, and
``torch_conv=True`` to build the same model (same parameter names and shapes, same
initialisation for a given seed) with torch's own ``Conv1d`` / ``Conv2d``, for time and memory
comparisons. Rates can be changed
later with :func:`blfft.set_compression`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from . import nn as blnn

__all__ = ["FCN", "ResNet", "DenseNet", "fcn", "resnet18", "densenet", "conv_layers"]


class _ConvFactory:
    """Builds the convolutions of one model: blfft layers with the given knobs, or torch's."""

    def __init__(
        self,
        compress_rate: float = 0.0,
        inference_compress_rate: Optional[float] = None,
        energy: Optional[float] = None,
        torch_conv: bool = False,
    ) -> None:
        self.torch_conv = bool(torch_conv)
        self.knobs = dict(
            compress_rate=compress_rate,
            inference_compress_rate=inference_compress_rate,
            energy=energy,
        )
        if not self.torch_conv:
            # Validate once, with blfft's own messages, before building anything.
            blnn.Conv1d(1, 1, 1, device="meta", **self.knobs)

    def conv1d(self, *args, **kwargs) -> nn.Module:
        if self.torch_conv:
            if kwargs.get("padding") == "same":
                kwargs["padding"] = 0
                return _SamePadConv1d(*args, **kwargs)
            return nn.Conv1d(*args, **kwargs)
        return blnn.Conv1d(*args, **kwargs, **self.knobs)

    def conv2d(self, *args, **kwargs) -> nn.Module:
        if self.torch_conv:
            return nn.Conv2d(*args, **kwargs)
        return blnn.Conv2d(*args, **kwargs, **self.knobs)


class _SamePadConv1d(nn.Conv1d):
    """torch's Conv1d with 'same' padding done by an explicit pad (torch warns for even kernels
    with padding='same'); the extra zero goes on the right, as torch and blfft do."""

    def forward(self, x: Tensor) -> Tensor:
        total = self.dilation[0] * (self.kernel_size[0] - 1)
        x = nn.functional.pad(x, (total // 2, total - total // 2))
        return super().forward(x)


def _pooled_logits(linear: nn.Linear, features: Tensor) -> Tensor:
    """The classifier head of the 2D models: global average pooling, then `linear`."""
    return linear(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))


def conv_layers(model: nn.Module):
    """The convolution modules of `model` (blfft's or torch's), in order."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]


# ------------------------------------------------------------------------------------------------
# FCN for time series
# ------------------------------------------------------------------------------------------------


class FCN(nn.Module):
    """Fully convolutional network for univariate (or multivariate) time series: (N, C, L) ->
    (N, num_classes) logits."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels=(128, 256, 128),
        kernels=(8, 5, 3),
        factory: Optional[_ConvFactory] = None,
    ) -> None:
        super().__init__()
        factory = factory or _ConvFactory()
        layers = []
        c = in_channels
        for f, k in zip(channels, kernels):
            layers += [factory.conv1d(c, f, k, padding="same"), nn.BatchNorm1d(f), nn.ReLU()]
            c = f
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean(dim=-1))


def fcn(
    num_classes: int,
    in_channels: int = 1,
    *,
    channels=(128, 256, 128),
    kernels=(8, 5, 3),
    **knobs,
) -> FCN:
    """The paper's FCN (channels 128/256/128, kernels 8/5/3, 'same' padding). ``knobs``:
    ``compress_rate``, ``inference_compress_rate``, ``energy``, ``torch_conv`` (module doc)."""
    return FCN(in_channels, num_classes, channels, kernels, _ConvFactory(**knobs))


# ------------------------------------------------------------------------------------------------
# ResNet-18 (CIFAR form)
# ------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, factory: _ConvFactory, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = factory.conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = factory.conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                factory.conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self,
        blocks=(2, 2, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        factory: Optional[_ConvFactory] = None,
    ) -> None:
        super().__init__()
        factory = factory or _ConvFactory()
        self.conv1 = factory.conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(factory, cin, cout, stride))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return _pooled_logits(self.linear, out)


def resnet18(
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    width: int = 64,
    **knobs,
) -> ResNet:
    """CIFAR-style ResNet-18 (3x3 stem, no max-pool); ``width=64`` is the paper's model.
    ``knobs``: as for :func:`fcn`."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, _ConvFactory(**knobs))


# ------------------------------------------------------------------------------------------------
# DenseNet-BC (CIFAR form)
# ------------------------------------------------------------------------------------------------


class _DenseLayer(nn.Module):
    def __init__(self, factory: _ConvFactory, cin: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = factory.conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = factory.conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(torch.relu(self.bn1(x)))
        out = self.conv2(torch.relu(self.bn2(out)))
        return torch.cat([x, out], 1)


class _Transition(nn.Module):
    def __init__(self, factory: _ConvFactory, cin: int, cout: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = factory.conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.avg_pool2d(self.conv(torch.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        reduction: float = 0.5,
        num_classes: int = 10,
        in_channels: int = 3,
        factory: Optional[_ConvFactory] = None,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"DenseNet-BC depth must be 6n+4 with n >= 1, got {depth}")
        factory = factory or _ConvFactory()
        n = (depth - 4) // 6  # bottleneck layers per dense block
        c = 2 * growth_rate
        self.conv1 = factory.conv2d(in_channels, c, 3, padding=1, bias=False)
        blocks = []
        for b in range(3):
            layers = []
            for _ in range(n):
                layers.append(_DenseLayer(factory, c, growth_rate))
                c += growth_rate
            blocks.append(nn.Sequential(*layers))
            if b < 2:
                cout = int(c * reduction)
                blocks.append(_Transition(factory, c, cout))
                c = cout
        self.features = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c)
        self.linear = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.features(self.conv1(x))
        return _pooled_logits(self.linear, torch.relu(self.bn(out)))


def densenet(
    num_classes: int = 100,
    in_channels: int = 3,
    *,
    depth: int = 40,
    growth_rate: int = 12,
    **knobs,
) -> DenseNet:
    """DenseNet-BC for 32x32 inputs (the paper's DenseNet on CIFAR-100 is DenseNet-121-sized;
    the defaults here, depth 40 and growth 12, are the small CIFAR variant that trains on a
    CPU). ``knobs``: as for :func:`fcn`."""
    f = _ConvFactory(**knobs)
    return DenseNet(depth, growth_rate, 0.5, num_classes, in_channels, f)
