"""TF32 per call (issue #11): CUDA calls carry ``tf32=torch.backends.cudnn.allow_tf32``.

Without a GPU: the dispatch's keywords follow torch's flag at every call (blfft._backends.tf32_kw,
through _settings.deterministic_kw, which every compute call of _ops uses), and the bindings
accept the keyword (the CPU core ignores it; the CUDA module turns it into
blfft::cuda::scoped_tf32 for the call). A stand-in for the CUDA module that forwards to the CPU
core records what a call of the ops hands it.
"""

import contextlib

import pytest
import torch

import blfft.functional as BF
from blfft import _backends, _core, _ops, _settings


@contextlib.contextmanager
def _allow_tf32(flag: bool):
    """torch.backends.cudnn.allow_tf32 = flag inside, through torch's flags() context manager
    (plain assignment raises once torch.testing has frozen the global flags, as the OpInfo
    tests of this suite do); the other cuDNN flags keep their values."""
    cudnn = torch.backends.cudnn
    with cudnn.flags(
        enabled=cudnn.enabled,
        benchmark=cudnn.benchmark,
        deterministic=cudnn.deterministic,
        allow_tf32=flag,
    ):
        yield


class _Recorder:
    """Looks like blfft._cuda to the dispatch (it is not _core), runs the CPU core, and records
    each compute call's keywords."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        fn = getattr(_core, name)

        def call(*args, **kwargs):
            self.calls.append((name, dict(kwargs)))
            return fn(*args, **kwargs)

        return call


def test_tf32_keyword_follows_torch_flag():
    fake_cuda = object()
    for flag in (True, False, True):
        with _allow_tf32(flag):
            assert _backends.tf32_kw(fake_cuda) == {"tf32": flag}
            assert _settings.deterministic_kw(fake_cuda) == {"tf32": flag}
    assert _backends.tf32_kw(_core) == {}
    assert "tf32" not in _settings.deterministic_kw(_core)


def test_bindings_take_the_tf32_keyword():
    for name in ("forward", "input_spectrum", "weight_spectrum", "forward_spectra", "backward"):
        assert "tf32: bool = False" in getattr(_core, name).__doc__, name
        if _backends.cuda_module is not None:
            assert "tf32: bool = False" in getattr(_backends.cuda_module, name).__doc__, name


@pytest.mark.parametrize("flag", [True, False])
def test_dispatch_hands_the_flag_to_every_compute_call(monkeypatch, flag):
    rec = _Recorder()
    monkeypatch.setattr(_ops, "backend_for", lambda t, name, *others: (rec, ()))
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    with _allow_tf32(flag):
        y = BF.conv2d(x, w, padding=1, compress_rate=0.5)
        y.sum().backward()
    names = [n for n, _ in rec.calls]
    assert "forward" in names and "backward" in names, names
    for name, kw in rec.calls:
        assert kw.get("tf32") is flag, (name, kw)
        assert "deterministic" not in kw, (name, kw)
    # The results are the CPU core's: the keyword changed nothing there.
    ref = BF.conv2d(x.detach(), w.detach(), padding=1, compress_rate=0.5)
    assert torch.equal(y.detach(), ref)
