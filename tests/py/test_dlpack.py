"""The binding layer: DLPack in both directions (legacy and versioned capsules, strides,
byte_offset, devices, flags, the consumer protocol), errors, the GIL."""

import ctypes
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import blfft
from blfft import _core
from helpers import assert_close

# ------------------------------------------------------------------------------------------------
# A hand-made DLPack producer (ctypes), to reach what torch never produces: byte_offset, NULL
# strides with a non-zero offset, CUDA devices without a GPU, read-only and copied flags, a
# future major version.
# ------------------------------------------------------------------------------------------------


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", DELETER)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", DELETER),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


_new_capsule = ctypes.pythonapi.PyCapsule_New
_new_capsule.restype = ctypes.py_object
_new_capsule.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_NAMES = {False: ctypes.c_char_p(b"dltensor"), True: ctypes.c_char_p(b"dltensor_versioned")}


class Producer:
    """Exports `base` (a torch CPU tensor, kept alive here) with the given DLPack fields."""

    def __init__(
        self,
        base,
        shape,
        *,
        byte_offset=0,
        strides=None,
        device=(1, 0),
        dtype=None,
        versioned=True,
        version=(1, 0),
        flags=0,
    ):
        self.base = base
        self.deleted = 0
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.strides = None if strides is None else (ctypes.c_int64 * len(strides))(*strides)
        if dtype is None:
            dtype = (2, base.element_size() * 8, 1)
        t = DLTensor(
            ctypes.c_void_p(base.data_ptr()),
            DLDevice(*device),
            len(shape),
            DLDataType(*dtype),
            self.shape,
            self.strides,
            byte_offset,
        )

        def deleter(_ptr):
            self.deleted += 1

        self._deleter = DELETER(deleter)
        if versioned:
            self.managed = DLManagedTensorVersioned(
                DLPackVersion(*version), None, self._deleter, flags, t
            )
        else:
            self.managed = DLManagedTensor(t, None, self._deleter)
        self.versioned = versioned

    def capsule(self):
        return _new_capsule(ctypes.addressof(self.managed), _NAMES[self.versioned], None)

    def __dlpack__(self, **_kw):
        return self.capsule()


def _conv_args(dtype=torch.float64):
    x = torch.randn(2, 3, 8, 9, dtype=dtype)
    w = torch.randn(4, 3, 3, 3, dtype=dtype)
    p = _core.ConvParams.conv2d(2, 3, 4, (8, 9), (3, 3), padding=(1, 1))
    return x, w, p


# ------------------------------------------------------------------------------------------------


def test_legacy_and_versioned_capsules_are_zero_copy():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)[:, :, 1:, ::2]
    legacy = torch.utils.dlpack.to_dlpack(x)
    versioned = x.__dlpack__(max_version=(1, 0))
    info_l = _core.dlpack_info(legacy)
    info_v = _core.dlpack_info(versioned)
    for info, is_v in ((info_l, False), (info_v, True)):
        assert info["versioned"] is is_v
        assert info["device"] == "cpu"
        assert info["dtype"] == "float64"
        assert info["shape"] == list(x.shape)
        assert info["strides"] == list(x.stride())
        assert info["data"] == x.data_ptr()  # the tensor's own memory: no copy
    # An object with __dlpack__ is asked for a versioned capsule.
    assert _core.dlpack_info(x)["versioned"] is True
    assert _core.dlpack_info(Producer(x, [1], versioned=False))["versioned"] is False


@pytest.mark.parametrize("kind", ["tensor", "legacy", "versioned", "numpy"])
def test_forward_through_each_kind_of_argument(kind):
    x, w, p = _conv_args()
    b = torch.randn(4, dtype=torch.float64)
    y = torch.zeros(2, 4, 8, 9, dtype=torch.float64)
    wrap = {
        "tensor": lambda t: t,
        "legacy": torch.utils.dlpack.to_dlpack,
        "versioned": lambda t: t.__dlpack__(max_version=(1, 0)),
        "numpy": lambda t: t.numpy(),
    }[kind]
    x0 = x.clone()
    _core.forward(p, _core.Compression.none(), wrap(x), wrap(w), wrap(b), wrap(y))
    assert_close(y, F.conv2d(x, w, b, padding=1), torch.float64)  # written in place
    assert torch.equal(x, x0)


def test_consumer_protocol_renames_and_deletes_once():
    x, w, p = _conv_args()
    for versioned in (False, True):
        prod = Producer(x, list(x.shape), versioned=versioned)
        cap = prod.capsule()
        _core.dlpack_info(cap)
        assert prod.deleted == 1
        with pytest.raises(ValueError, match="already consumed"):
            _core.dlpack_info(cap)
        del cap
        assert prod.deleted == 1


def test_byte_offset_and_null_strides():
    x, w, p = _conv_args()
    buf = torch.randn(5 + x.numel(), dtype=torch.float64)
    buf[5:] = x.reshape(-1)
    prod = Producer(buf, list(x.shape), byte_offset=5 * 8, strides=None)
    y = torch.empty(2, 4, 8, 9, dtype=torch.float64)
    _core.forward(p, _core.Compression.none(), prod, w, None, y)
    assert_close(y, F.conv2d(x, w, padding=1), torch.float64)
    assert prod.deleted == 1
    # Explicit (non-contiguous) strides from the producer.
    xt = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    prod = Producer(xt, [2, 3, 8, 9], strides=[xt.stride(0), xt.stride(1), 1, 8])
    _core.forward(p, _core.Compression.none(), prod, w, None, y)
    assert_close(y, F.conv2d(xt.transpose(2, 3), w, padding=1), torch.float64)


def test_cuda_device_is_refused_clearly():
    x, w, p = _conv_args()
    y = torch.empty(2, 4, 8, 9, dtype=torch.float64)
    prod = Producer(x, list(x.shape), device=(2, 0))  # kDLCUDA: never dereferenced
    # _core is the CPU backend whether or not blfft._cuda exists (the Python layer sends CUDA
    # tensors there; test_cuda.py).
    with pytest.raises(blfft.BlfftError, match="blfft._core is the CPU backend") as e:
        _core.forward(p, _core.Compression.none(), prod, w, None, y)
    assert e.value.code == "unsupported"
    assert isinstance(e.value, RuntimeError)
    assert prod.deleted == 1  # released even on error
    with pytest.raises(blfft.BlfftError, match="runs on the CPU and on CUDA devices"):
        _core.forward(
            p, _core.Compression.none(), Producer(x, list(x.shape), device=(7, 0)), w, None, y
        )


def test_flags_dtypes_and_versions():
    x, w, p = _conv_args()
    y = torch.empty(2, 4, 8, 9, dtype=torch.float64)
    none = _core.Compression.none()
    with pytest.raises(ValueError, match="output is read-only"):
        _core.forward(p, none, x, w, None, Producer(y, list(y.shape), flags=1))
    with pytest.raises(ValueError, match="output was exported as a copy"):
        _core.forward(p, none, x, w, None, Producer(y, list(y.shape), flags=2))
    # A read-only input is fine.
    _core.forward(p, none, Producer(x, list(x.shape), flags=1), w, None, y)
    with pytest.raises(TypeError, match="input must be float32 or float64, got int64"):
        _core.forward(p, none, Producer(x, list(x.shape), dtype=(0, 64, 1)), w, None, y)
    with pytest.raises(TypeError, match="got bfloat16"):
        _core.forward(p, none, Producer(x, list(x.shape), dtype=(4, 16, 1)), w, None, y)
    with pytest.raises(TypeError, match="float64x2"):
        _core.forward(p, none, Producer(x, list(x.shape), dtype=(2, 64, 2)), w, None, y)
    prod = Producer(x, list(x.shape), version=(2, 0))
    with pytest.raises(TypeError, match="DLPack 2.0"):
        _core.forward(p, none, prod, w, None, y)
    assert prod.deleted == 1
    with pytest.raises(TypeError, match="weight is float32 but input is float64"):
        _core.forward(p, none, x, w.float(), None, y)
    with pytest.raises(TypeError, match="must be a tensor"):
        _core.forward(p, none, [1.0], w, None, y)


def test_core_errors_map_to_python_exceptions():
    x, w, p = _conv_args()
    none = _core.Compression.none()
    with pytest.raises(ValueError, match="output has shape"):  # shape_mismatch
        _core.forward(p, none, x, w, None, torch.empty(2, 4, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="compress rate must be in"):  # invalid_argument
        _core.make_geometry(p, _core.Compression.rate(1.0))
    with pytest.raises(ValueError, match="overflow"):  # overflow
        _core.make_geometry(_core.ConvParams.conv2d(2**40, 2**20, 1, (2**20, 1), (1, 1)))
    with pytest.raises(ValueError, match="x_spectrum has 3 elements"):
        _core.forward(
            p,
            none,
            x,
            w,
            None,
            torch.empty(2, 4, 8, 9, dtype=torch.float64),
            torch.empty(3, dtype=torch.float64),
        )


def test_energy_map_is_exported_by_dlpack():
    x, _, p = _conv_args()
    g = _core.make_geometry(p)
    buf = _core.energy_map(p, x)
    e = torch.from_dlpack(buf)  # versioned path
    assert e.dtype == torch.float64 and tuple(e.shape) == (g.grid[0], g.bins_w)
    # Parseval: the total equals Lh * Lw * sum(x^2).
    assert e.sum().item() == pytest.approx(g.grid[0] * g.grid[1] * x.square().sum().item())
    legacy = buf.__dlpack__()  # legacy capsule for old consumers
    e2 = torch.utils.dlpack.from_dlpack(legacy)
    assert torch.equal(e, e2)
    assert e.data_ptr() != e2.data_ptr() or True  # each call may share or not; both valid
    e3 = np.from_dlpack(buf)
    assert np.array_equal(e3, e.numpy())
    # An unconsumed capsule is freed by its destructor (no leak, no crash).
    del legacy
    cap = buf.__dlpack__(max_version=(1, 0))
    del cap
    with pytest.raises(BufferError):
        buf.__dlpack__(dl_device=(2, 0))


def test_gil_is_released_during_compute():
    x = torch.randn(8, 32, 48, 48)
    w = torch.randn(32, 32, 5, 5)
    p = _core.ConvParams.conv2d(8, 32, 32, (48, 48), (5, 5), padding=(2, 2))
    y = torch.empty(8, 32, 48, 48)
    none = _core.Compression.none()
    _core.forward(p, none, x, w, None, y)  # plan built outside the measurement
    done = threading.Event()
    calls = []

    def work():
        t0 = time.perf_counter()
        for _ in range(3):
            _core.forward(p, none, x, w, None, y)
        calls.append(time.perf_counter() - t0)
        done.set()

    count = 0
    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        count += 1
    t.join()
    # With the GIL held for the whole compute this loop could not run meanwhile.
    assert count > 1000, (count, calls)


def test_threads_share_plans_safely():
    x, w, p = _conv_args(torch.float32)
    ref = F.conv2d(x, w, padding=1)
    errors = []

    def work():
        try:
            for _ in range(20):
                y = torch.empty(2, 4, 8, 9)
                _core.forward(p, _core.Compression.rate(0.0), x, w, None, y)
                if (y - ref).abs().max() > 1e-4:
                    errors.append("mismatch")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
