"""Weight spectra kept between calls (``cache_weight_spectrum=True`` layers).

What it costs: each caching layer holds its compressed weight spectrum (``2 * kept *
out_channels * in_channels/groups`` scalars, e.g. 8.6-31.5 MB per ResNet-18 layer at rate 0.5 on
32x32 inputs, one to two orders of magnitude more than the weight) and a copy of the weight,
between calls, until :func:`blfft.clear_caches` or the layer goes. What it saves: one weight
transform per call in evaluation and inference (one per weight update instead), and in training
the weight transform of backward's input gradient (forward and backward share the spectrum: one
per step; microbatches with the same weight share it too). Opt-in, not the default: the default
``"auto"`` saving mode (:func:`blfft.set_weight_spectrum_saving`) keeps a weight spectrum for
backward only while a layer holds no more than torch's convolution would, and a default cache
would hold a spectrum per layer all the time.
"""

import torch
from torch import Tensor

from . import _memory
from ._backends import backend_for, dl, eager_only, is_cpu
from ._geometry import geometry
from ._memory import alloc
from ._settings import deterministic_kw

_BITS_OF = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def _same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether a and b (same shape and dtype) hold the same values bit for bit (NaNs with the
    same payload equal, -0.0 and 0.0 differ)."""
    bits = _BITS_OF.get(a.element_size())
    if bits is None or a.is_complex():
        return torch.equal(a, b)
    return torch.equal(a.view(bits), b.view(bits))


class WeightSpectrumCache:
    """One layer's compressed weight spectrum, kept between inference calls.

    The spectrum depends on the weight's values, the grid (input size, padding), the kept set and
    the dtype and device, not on the batch. The entry is reused only while all of these are the
    same: the cache keeps a copy of the weight it was made from and compares it bit for bit with
    the weight of every call (``torch.equal`` on the integer view). A version counter would not
    do: writes through ``weight.data`` (``m.weight.data.mul_(2)``, optimizers that update
    ``p.data``) do not move the parameter's counter, and a different tensor object or storage
    may hold the same values or other ones. The comparison reads the weight once, far less work
    than its transform (each tap goes into every kept frequency), and the copy costs the weight's
    memory, small against the spectrum's. Not pickled; emptied by :func:`blfft.clear_caches`.
    """

    def __init__(self) -> None:
        self._entry = None
        self.hits = 0
        self.misses = 0
        _memory.register_cache(self)

    def clear(self) -> None:
        self._entry = None

    def __getstate__(self):
        return {"_entry": None, "hits": 0, "misses": 0}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        _memory.register_cache(self)

    @property
    def nbytes(self) -> int:
        """Bytes held: the spectrum and the copy of the weight it was made from."""
        e = self._entry
        if e is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (e[1], e[2]))

    def serves_training(self, x: Tensor, weight: Tensor, conf) -> bool:
        """Whether a call with gradients on takes its weight spectrum from the cache (else it
        goes the ordinary way: conv_forward, spectra kept by the saving modes). Not for
        float16 / bfloat16 tensors or under autocast (their casts belong to the ops' autocast
        rules), not for 3D layers (a whole 3D weight spectrum is large; the core mixes from the
        weight's depth slices), and not where the CPU core mixes from the weight's taps (faster
        without any spectrum)."""
        if x.dim() == 5 or weight.dtype not in (torch.float32, torch.float64):
            return False
        if x.dtype != weight.dtype or torch.is_autocast_enabled(x.device.type):
            return False
        be, _ = backend_for(weight, "weight")
        if not is_cpu(be):
            return True
        _, _, g = geometry(tuple(x.shape), tuple(weight.shape), *conf)
        return not be.mixes_from_taps(g, weight.dtype == torch.float64)

    @eager_only
    def get(self, x_shape, weight: Tensor, stride, padding, dilation, groups, rate, band) -> Tensor:
        be, stream = backend_for(weight, "weight")
        det = deterministic_kw(be)
        shape = (1,) + tuple(int(s) for s in x_shape[1:])
        key = (
            shape,
            tuple(weight.shape),
            weight.dtype,
            weight.device,
            tuple(stride),
            tuple(padding),
            tuple(dilation),
            int(groups),
            float(rate),
            tuple(band),
            bool(det.get("deterministic", False)),
        )
        w = weight.detach()
        e = self._entry
        if e is not None and e[0] == key and _same_bits(e[1], w):
            self.hits += 1
            return e[2]
        self.misses += 1
        self._entry = None  # let the old spectrum go before the new one is allocated
        p, c, g = geometry(shape, weight.shape, stride, padding, dilation, groups, rate, band)
        snapshot = w.clone(memory_format=torch.contiguous_format)
        # float16 / bfloat16 weights: to blfft._cuda as they are (read as float32 there, no float32
        # copy), else up-cast (the CPU core computes float32 / float64); a float32 spectrum either
        # way, the same values. (Imported here: _ops imports this module.)
        from ._ops import _compute_dtype, _native16, _up

        src = snapshot if _native16(be, snapshot) else _up(snapshot)
        ws = alloc(src, (g.w_spectrum_size,), "weight spectrum", dtype=_compute_dtype(src.dtype))
        be.weight_spectrum(p, c, dl(src), dl(ws), *stream, **det)
        self._entry = (key, snapshot, ws)
        return ws
