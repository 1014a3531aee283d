"""blfft.nn modules and the model tools: state_dicts, convert, rates, set_compression, report."""

import copy
import io

import pytest
import torch
import torch.nn as tnn

import blfft
from helpers import assert_close
from reference import band_limit, dense_conv, fast_size

# torch itself warns that its 'same' padding with even kernels copies the input.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")


class BasicBlock(tnn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(cout)
        self.conv2 = tnn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = tnn.Sequential(
                tnn.Conv2d(cin, cout, 1, stride=stride, bias=False), tnn.BatchNorm2d(cout)
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class SmallResNet(tnn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.stem = tnn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = tnn.BatchNorm2d(8)
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.head = tnn.Linear(16, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.head(x.mean(dim=(2, 3)))


class Small1d(tnn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = tnn.Conv1d(2, 4, 5, padding=2)
        self.c2 = tnn.Conv1d(4, 4, 3, stride=2, groups=2)

    def forward(self, x):
        return self.c2(torch.tanh(self.c1(x)))


def _n_convs(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


# --- modules -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ndim, args, kwargs",
    [
        (2, (3, 6, 3), dict(padding=1)),
        (2, (4, 6, (3, 2)), dict(stride=(2, 1), dilation=2, groups=2, bias=False)),
        (2, (3, 4, 4), dict(padding="same")),
        (1, (3, 6, 5), dict(padding=2, stride=2)),
        (1, (4, 4, 4), dict(padding="same", groups=4)),
    ],
)
def test_state_dict_round_trip_and_equal_outputs(ndim, args, kwargs):
    tcls, bcls = (tnn.Conv1d, blfft.nn.Conv1d) if ndim == 1 else (tnn.Conv2d, blfft.nn.Conv2d)
    t = tcls(*args, **kwargs, dtype=torch.float64)
    b = bcls(*args, **kwargs, dtype=torch.float64, compress_rate=0.0)
    assert isinstance(b, tcls)
    assert [(k, v.shape) for k, v in b.state_dict().items()] == [
        (k, v.shape) for k, v in t.state_dict().items()
    ]
    b.load_state_dict(t.state_dict())  # torch -> blfft (strict)
    x = torch.randn(2, args[0], *((11,) if ndim == 1 else (9, 10)), dtype=torch.float64)
    ref = t(x)
    assert_close(b(x), ref, torch.float64)
    t2 = tcls(*args, **kwargs, dtype=torch.float64)
    t2.load_state_dict(b.state_dict())  # blfft -> torch (strict)
    for k, v in t2.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    # Through a file, as a checkpoint would.
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    t2.load_state_dict(torch.load(buf))


def test_repr_shows_rates():
    m = blfft.nn.Conv2d(3, 8, 3, padding=1, compress_rate=0.5, inference_compress_rate=0.25)
    r = repr(m)
    assert r.startswith("Conv2d(3, 8, kernel_size=(3, 3)")
    assert "compress_rate=0.5" in r and "inference_compress_rate=0.25" in r
    m.energy = 0.9
    assert "energy=0.9" in repr(m)
    assert "compress_rate=0.0" in repr(blfft.nn.Conv1d(2, 2, 3))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("ndim", [1, 2])
def test_padding_modes(mode, ndim):
    tcls, bcls = (tnn.Conv1d, blfft.nn.Conv1d) if ndim == 1 else (tnn.Conv2d, blfft.nn.Conv2d)
    t = tcls(3, 4, 3, padding=2, padding_mode=mode, dtype=torch.float64)
    b = bcls(3, 4, 3, padding=2, padding_mode=mode, dtype=torch.float64)
    b.load_state_dict(t.state_dict())
    x = torch.randn(2, 3, *((10,) if ndim == 1 else (7, 9)), dtype=torch.float64)
    assert_close(b(x), t(x), torch.float64)
    # 'same' with a padding mode.
    t = tcls(3, 4, 3, padding="same", padding_mode=mode, dtype=torch.float64)
    b = bcls(3, 4, 3, padding="same", padding_mode=mode, dtype=torch.float64)
    b.load_state_dict(t.state_dict())
    assert_close(b(x), t(x), torch.float64)


def test_train_and_inference_rates():
    m = blfft.nn.Conv2d(
        3, 4, 3, padding=1, dtype=torch.float64, compress_rate=0.5, inference_compress_rate=0.0
    )
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    y_train = m(x)
    assert_close(y_train, dense_conv(x, m.weight, m.bias, padding=1, rate=0.5), torch.float64)
    m.eval()
    assert m.active_compress_rate == 0.0
    assert_close(m(x), tnn.functional.conv2d(x, m.weight, m.bias, padding=1), torch.float64)
    # The inference rate follows the training rate by default.
    m2 = blfft.nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64, compress_rate=0.3)
    assert m2.inference_compress_rate == 0.3
    m2.compress_rate = 0.6
    assert m2.inference_compress_rate == 0.6
    m2.eval()
    assert_close(m2(x), dense_conv(x, m2.weight, m2.bias, padding=1, rate=0.6), torch.float64)


def test_energy_module_and_invalid_knobs():
    m = blfft.nn.Conv1d(2, 3, 3, padding=1, energy=0.95, dtype=torch.float64)
    x = torch.randn(2, 2, 30, dtype=torch.float64).cumsum(-1)
    m(x).sum().backward()
    rep = blfft.compression_report(m)
    assert rep[0]["energy"] == 0.95 and rep[0]["energy_kept"] >= 0.95
    with pytest.raises(ValueError, match="compress_rate must be in"):
        blfft.nn.Conv2d(3, 3, 3, compress_rate=1.0)
    with pytest.raises(ValueError, match="energy must be in"):
        blfft.nn.Conv2d(3, 3, 3, energy=0.0)
    with pytest.raises(TypeError, match="compress_rate must be a float"):
        m.compress_rate = "high"
    with pytest.raises(ValueError):
        blfft.nn.Conv2d(3, 3, 3, padding_mode="mirror")


def test_deepcopy_and_pickle():
    m = blfft.nn.Conv2d(3, 4, 3, compress_rate=0.4, inference_compress_rate=0.1)
    for m2 in (copy.deepcopy(m), _pickled(m)):
        assert m2.compress_rate == 0.4 and m2.inference_compress_rate == 0.1
        x = torch.randn(1, 3, 8, 8)
        assert torch.equal(m2(x), m(x))


def _pickled(m):
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


# --- convert -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_convert_resnet_keeps_outputs_at_rate_zero(dtype):
    model = SmallResNet().to(dtype)
    x = torch.randn(2, 3, 16, 16, dtype=dtype)
    model.train()
    model(x)  # BatchNorm statistics that are not trivial
    model.eval()
    ref = model(x)
    params = {n: p for n, p in model.named_parameters()}
    converted = blfft.convert(copy.deepcopy(model), compress_rate=0.0)
    assert _n_convs(converted, blfft.nn.Conv2d) == 6
    assert all(
        isinstance(m, blfft.nn.Conv2d) for m in converted.modules() if isinstance(m, tnn.Conv2d)
    )
    assert not converted.training and not converted.stem.training
    assert_close(converted(x), ref, dtype, "resnet output")
    # In place, parameters shared (optimizer state survives), device and dtype kept.
    same = blfft.convert(model, compress_rate=0.0)
    assert same is model
    for n, p in model.named_parameters():
        assert p is params[n]
        assert p.dtype == dtype
    # Gradients flow to the shared parameters.
    model.train()
    model(x).square().sum().backward()
    assert model.stem.weight.grad is not None


def test_convert_filters_and_types():
    model = SmallResNet()
    blfft.convert(model, compress_rate=0.5, include="layer*", exclude=["*.down.*"])
    assert not isinstance(model.stem, blfft.nn.Conv2d)
    assert isinstance(model.layer1.conv1, blfft.nn.Conv2d)
    assert isinstance(model.layer2.conv2, blfft.nn.Conv2d)
    assert not isinstance(model.layer2.down[0], blfft.nn.Conv2d)
    assert model.layer1.conv1.compress_rate == 0.5
    # Already converted layers get the new settings.
    blfft.convert(model, compress_rate=0.2, include=lambda name, m: name.startswith("layer1"))
    assert model.layer1.conv1.compress_rate == 0.2 and model.layer2.conv1.compress_rate == 0.5
    m1 = Small1d()
    blfft.convert(m1, types=(tnn.Conv2d,))
    assert _n_convs(m1, blfft.nn.Conv1d) == 0
    x = torch.randn(2, 2, 20)
    ref = m1(x)
    blfft.convert(m1, types=tnn.Conv1d)
    assert _n_convs(m1, blfft.nn.Conv1d) == 2
    assert_close(m1(x).double(), ref.double(), torch.float32)
    root = blfft.convert(tnn.Conv2d(2, 2, 3), compress_rate=0.1)
    assert isinstance(root, blfft.nn.Conv2d) and root.compress_rate == 0.1
    with pytest.raises(ValueError, match="types may only hold"):
        blfft.convert(SmallResNet(), types=(tnn.Linear,))
    with pytest.raises(ValueError, match="compress_rate must be in"):
        blfft.convert(SmallResNet(), compress_rate=-0.1)
    with pytest.raises(TypeError, match="include must be"):
        blfft.convert(SmallResNet(), include=3)


def test_convert_matches_classes_exactly():
    class Standardized(tnn.Conv2d):  # a subclass with its own forward is left alone
        def forward(self, x):
            w = (self.weight - self.weight.mean()) / self.weight.std()
            return self._conv_forward(x, w, self.bias)

    model = tnn.Sequential(tnn.Conv2d(2, 2, 3), Standardized(2, 2, 3))
    blfft.convert(model)
    assert type(model[0]) is blfft.nn.Conv2d and type(model[1]) is Standardized
    blfft.convert(model, types=(Standardized,))
    assert type(model[1]) is blfft.nn.Conv2d


def test_convert_keeps_hooks():
    conv = tnn.Conv2d(2, 3, 3)
    seen = []
    conv.register_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
    new = blfft.convert(tnn.Sequential(conv))[0]
    new(torch.randn(1, 2, 5, 5))
    assert seen == ["Conv2d"] and isinstance(new, blfft.nn.Conv2d)


# --- set_compression and the report ---------------------------------------------------------------


def test_set_compression_modes():
    model = blfft.convert(SmallResNet(), compress_rate=0.5)
    convs = [m for m in model.modules() if isinstance(m, blfft.nn.Conv2d)]
    assert blfft.set_compression(model, 0.3) == 6
    assert all(c.compress_rate == 0.3 and c.inference_compress_rate == 0.3 for c in convs)
    blfft.set_compression(model, 0.7, mode="train")
    assert all(c.compress_rate == 0.7 and c.inference_compress_rate == 0.3 for c in convs)
    blfft.set_compression(model, 0.1, mode="inference")
    assert all(c.compress_rate == 0.7 and c.inference_compress_rate == 0.1 for c in convs)
    blfft.set_compression(model, None, mode="inference")
    assert all(c.inference_compress_rate == 0.7 for c in convs)
    assert blfft.set_compression(model, 0.2, include="layer2.*") == 3
    assert model.layer2.conv1.compress_rate == 0.2 and model.stem.compress_rate == 0.7
    blfft.set_compression(model, energy=0.9)
    assert all(c.energy == 0.9 for c in convs)
    blfft.set_compression(model, 0.5)  # a rate switches energy off
    assert all(c.energy is None for c in convs)
    with pytest.raises(ValueError, match="mode must be"):
        blfft.set_compression(model, 0.5, mode="eval")
    with pytest.raises(ValueError, match="compress_rate must be in"):
        blfft.set_compression(model, 1.5)


def test_compression_report():
    model = blfft.convert(SmallResNet(), compress_rate=0.5, inference_compress_rate=0.25)
    rep = blfft.compression_report(model)
    assert [r["name"] for r in rep] == [
        "stem",
        "layer1.conv1",
        "layer1.conv2",
        "layer2.conv1",
        "layer2.conv2",
        "layer2.down.0",
    ]
    assert all(r["achieved_rate"] is None for r in rep)  # no input seen yet
    x = torch.randn(2, 3, 16, 16)
    model(x)
    rep = blfft.compression_report(model)
    stem = rep[0]
    lh = fast_size(18)
    i = band_limit(lh, 0.5, 2)
    kept = (2 * i - 1) * i
    assert stem["mode"] == "train" and stem["input_shape"] == (2, 3, 16, 16)
    assert stem["grid"] == (lh, lh) and stem["kept"] == kept
    assert stem["total"] == lh * (lh // 2 + 1)
    assert stem["requested_rate"] == 0.5
    assert stem["achieved_rate"] == pytest.approx(1 - kept / stem["total"])
    down = rep[-1]  # 1x1 stride-2 on 16x16: no padding
    assert down["grid"] == (16, 16) and down["input_shape"] == (2, 8, 16, 16)
    model.eval()
    model(x)
    rep = blfft.compression_report(model)
    assert rep[0]["mode"] == "eval" and rep[0]["requested_rate"] == 0.25
    text = str(rep)
    assert "layer2.down.0" in text and "achieved" in text
    assert blfft.compression_report(tnn.Sequential(tnn.Linear(2, 2))) == []


def test_cached_weight_spectrum_in_inference():
    m = blfft.nn.Conv2d(
        3, 4, 3, padding=1, compress_rate=0.5, dtype=torch.float64, cache_weight_spectrum=True
    )
    ref = blfft.nn.Conv2d(3, 4, 3, padding=1, compress_rate=0.5, dtype=torch.float64)
    ref.load_state_dict(m.state_dict())
    assert "cache_weight_spectrum=True" in repr(m)
    cache = m._blfft_weight_cache
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    with torch.no_grad():
        for n in (2, 5, 1):  # the spectrum does not depend on the batch
            xb = torch.randn(n, 3, 10, 10, dtype=torch.float64)
            assert_close(m(xb), ref(xb), torch.float64)
    assert (cache.misses, cache.hits) == (1, 2) and cache.nbytes > 0
    # With gradients on, the cached spectrum serves forward and backward alike (the weight is
    # unchanged: a hit; tests/py/test_weight_cache.py has the rest).
    m(x).sum().backward()
    assert cache.hits == 3 and m.weight.grad is not None
    # An optimizer step changes the weight in place: the spectrum is recomputed.
    torch.optim.SGD(m.parameters(), lr=0.5).step()
    ref.load_state_dict(m.state_dict())
    with torch.inference_mode():
        assert_close(m(x), ref(x), torch.float64)
        assert cache.misses == 2
        assert_close(m(x[:, :, :8]), ref(x[:, :, :8]), torch.float64)  # another input size
        assert cache.misses == 3
    with torch.no_grad():
        m.weight.mul_(2)
        assert_close(m(x), dense_conv(x, m.weight, m.bias, padding=1, rate=0.5), torch.float64)
    assert isinstance(_pickled(m)._blfft_weight_cache.nbytes, int)
    model = blfft.convert(SmallResNet(), cache_weight_spectrum=True)
    assert all(c.cache_weight_spectrum for c in model.modules() if isinstance(c, blfft.nn.Conv2d))
