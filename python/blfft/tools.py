"""Model-level tools: convert a model's convolutions, change their compression, report it."""

import fnmatch
from typing import Callable, Iterable, Optional, Sequence, Tuple, Type, Union

import torch

from ._conv import check_energy, check_rate
from ._geometry import geometry
from .nn import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d

__all__ = ["convert", "set_compression", "compression_report", "CompressionReport"]

_Filter = Union[None, str, Sequence[str], Callable[[str, torch.nn.Module], bool]]
# The blfft layer for each torch layer it replaces.
_BLFFT_OF = {
    c._blfft_torch: c for c in (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d)
}
_TORCH_TYPES = tuple(_BLFFT_OF)
_BLFFT_TYPES = tuple(_BLFFT_OF.values())
_Layer = Union[Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d]
_UNSET = object()


def _matcher(spec: _Filter, what: str) -> Optional[Callable[[str, torch.nn.Module], bool]]:
    """None, a glob pattern on qualified module names ('layer1.*'), a list of them, or a
    predicate (name, module) -> bool."""
    if spec is None:
        return None
    if callable(spec):
        return spec
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, (list, tuple)) and all(isinstance(s, str) for s in spec):
        patterns = list(spec)
        return lambda name, _m: any(fnmatch.fnmatchcase(name, p) for p in patterns)
    raise TypeError(
        f"blfft: {what} must be None, a glob pattern, a list of patterns or a callable "
        f"(name, module) -> bool, got {spec!r}"
    )


def _selected(name: str, module, include, exclude) -> bool:
    if include is not None and not include(name, module):
        return False
    if exclude is not None and exclude(name, module):
        return False
    return True


def convert(
    model: torch.nn.Module,
    compress_rate: float = 0.0,
    inference_compress_rate: Optional[float] = None,
    energy: Optional[float] = None,
    include: _Filter = None,
    exclude: _Filter = None,
    types: Tuple[Type[torch.nn.Module], ...] = _TORCH_TYPES,
    *,
    cache_weight_spectrum: bool = False,
) -> torch.nn.Module:
    """Replace every ``torch.nn.Conv1d`` / ``Conv2d`` / ``Conv3d`` / ``ConvTranspose1d`` /
    ``ConvTranspose2d`` of `model` (in place) with its blfft counterpart, sharing the parameters
    (same objects: device, dtype and optimizer state carry over). Returns the model (the
    replacement when `model` itself is a convolution).

    `include` / `exclude` filter by qualified module name (glob patterns such as ``"layer1.*"``,
    or a callable ``(name, module) -> bool``); `types` lists the classes converted (each must be
    one of those torch classes or a subclass). Classes match exactly: a subclass of
    ``Conv2d`` (which may override ``forward``, e.g. weight standardisation or QAT) is converted
    only when listed itself, and then its own forward is replaced. Layers that already are blfft
    modules (of a listed base class) get the new compression settings instead.
    `cache_weight_spectrum` is passed to the modules (see :mod:`blfft.nn`); `energy` applies to
    the 1D and 2D convolutions only (transposed and 3D layers keep `compress_rate`).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"blfft.convert: model must be a torch.nn.Module, got {type(model).__name__}"
        )
    if isinstance(types, type):
        types = (types,)
    types = tuple(types)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, _TORCH_TYPES)):
            raise ValueError(
                f"blfft.convert: types may only hold torch.nn.Conv1d, Conv2d, Conv3d, "
                f"ConvTranspose1d, ConvTranspose2d or subclasses, got {t!r}"
            )
    inc = _matcher(include, "include")
    exc = _matcher(exclude, "exclude")
    # Validate the settings once, before touching the model.
    _validate_settings(compress_rate, inference_compress_rate, energy)

    def matches(m: torch.nn.Module) -> bool:
        if isinstance(m, _BLFFT_TYPES):
            return m._blfft_torch in types or type(m) in types
        return type(m) in types

    def replacement(name: str, m: torch.nn.Module):
        if not matches(m) or not _selected(name, m, inc, exc):
            return None
        if isinstance(m, _BLFFT_TYPES):
            m.compress_rate = compress_rate
            m.inference_compress_rate = inference_compress_rate
            if m._blfft_energy_ok:
                m.energy = energy
            m.cache_weight_spectrum = bool(cache_weight_spectrum)
            return None
        cls = next(c for t, c in _BLFFT_OF.items() if isinstance(m, t))
        return cls.from_torch(
            m,
            compress_rate=compress_rate,
            inference_compress_rate=inference_compress_rate,
            energy=energy if cls._blfft_energy_ok else None,
            cache_weight_spectrum=cache_weight_spectrum,
        )

    root = replacement("", model)
    if root is not None:
        return root
    # Collect first, then replace: never mutate while iterating named_modules().
    todo = []
    for name, m in model.named_modules():
        if name == "":
            continue
        new = replacement(name, m)
        if new is not None:
            todo.append((name, new))
    for name, new in todo:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)
    return model


def _validate_settings(rate, inference_rate, energy) -> None:
    check_rate(rate, "convert")
    if inference_rate is not None:
        check_rate(inference_rate, "convert")
    check_energy(energy, "convert")


def _blfft_layers(model: torch.nn.Module) -> Iterable[Tuple[str, _Layer]]:
    for name, m in model.named_modules():
        if isinstance(m, _BLFFT_TYPES):
            yield name, m


def set_compression(
    model: torch.nn.Module,
    rate: Optional[float] = None,
    *,
    mode: str = "both",
    energy=_UNSET,
    include: _Filter = None,
    exclude: _Filter = None,
) -> int:
    """Change the compression of every blfft layer in `model` (optionally filtered by name as in
    :func:`convert`). Returns the number of layers changed.

    - ``mode='both'``: training and inference rate become `rate` (inference follows training);
    - ``mode='train'``: only the training rate; the inference rate keeps its current value;
    - ``mode='inference'``: only the inference rate (``rate=None``: follow the training rate).

    Setting a rate switches the layers to rate-based compression (energy off) unless `energy` is
    also given; ``energy=<fraction>`` switches them to energy-based selection. Transposed layers
    take rates only: `energy` leaves them as they are (and alone, does not count them).
    """
    if mode not in ("both", "train", "inference"):
        raise ValueError(
            f"blfft.set_compression: mode must be 'both', 'train' or 'inference', got {mode!r}"
        )
    if rate is None and energy is _UNSET and mode != "inference":
        raise ValueError("blfft.set_compression: give a rate or energy")
    if rate is not None:
        rate = check_rate(rate, "set_compression")
    if energy is not _UNSET:
        energy = check_energy(energy, "set_compression")
    inc = _matcher(include, "include")
    exc = _matcher(exclude, "exclude")
    n = 0
    for name, m in _blfft_layers(model):
        if not _selected(name, m, inc, exc):
            continue
        if not m._blfft_energy_ok and rate is None and mode != "inference":
            continue  # a transposed layer given only energy: nothing changes
        if mode == "both" and rate is not None:
            m.compress_rate = rate
            m.inference_compress_rate = None
        elif mode == "train" and rate is not None:
            if m.inference_rate_follows_training:
                m.inference_compress_rate = m.compress_rate  # pin it
            m.compress_rate = rate
        elif mode == "inference":
            m.inference_compress_rate = rate
        if not m._blfft_energy_ok:  # a transposed layer: rates only
            pass
        elif energy is not _UNSET:
            m.energy = energy
        elif rate is not None:
            m.energy = None
        n += 1
    return n


class CompressionReport(list):
    """A list of per-layer dicts (see :func:`compression_report`) that prints as a table."""

    _COLUMNS = (
        ("name", "layer"),
        ("mode", "mode"),
        ("requested_rate", "requested"),
        ("achieved_rate", "achieved"),
        ("kept", "kept"),
        ("total", "total"),
        ("grid", "grid"),
        ("input_shape", "input"),
    )

    def __str__(self) -> str:
        def fmt(v):
            if v is None:
                return "-"
            if isinstance(v, float):
                return f"{v:.4f}"
            if isinstance(v, (tuple, list)):
                return "x".join(str(i) for i in v)
            return str(v)

        rows = [[h for _, h in self._COLUMNS]]
        for r in self:
            rows.append([fmt(r[k]) for k, _ in self._COLUMNS])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows
        )


def compression_report(model: torch.nn.Module) -> CompressionReport:
    """Per blfft layer: the configured rates, and for the last forward it ran (the input size
    decides the grid) the requested and achieved rates and the kept coefficients.

    Each entry: name, type, compress_rate, inference_compress_rate, energy, and from the last
    forward (None before the first): mode ('train'/'eval'), input_shape, requested_rate (the rate
    asked for, or the rate energy selection chose), achieved_rate (1 - kept/total), kept, total,
    kept_rows, kept_cols, grid, limits, energy_kept. For a transposed layer these describe the
    convolution it is the adjoint of: its input_shape is the transposed layer's output shape.
    """
    report = CompressionReport()
    for name, m in _blfft_layers(model):
        entry = {
            "name": name,
            "type": type(m).__name__,
            "compress_rate": m.compress_rate,
            "inference_compress_rate": m.inference_compress_rate,
            "energy": m.energy,
            "mode": None,
            "input_shape": None,
            "requested_rate": None,
            "achieved_rate": None,
            "kept": None,
            "total": None,
            "kept_rows": None,
            "kept_cols": None,
            "grid": None,
            "limits": None,
            "energy_kept": None,
        }
        last = m.last_call
        if last is not None:
            training, rec = last
            x_shape = rec.x_shape
            if x_shape[0] == 0:  # an empty batch: the geometry of one sample
                x_shape = (1,) + tuple(x_shape[1:])
            _, _, g = geometry(
                x_shape,
                rec.w_shape,
                rec.stride,
                rec.padding,
                rec.dilation,
                rec.groups,
                rec.rate,
                rec.band,
            )
            ndim = len(rec.x_shape) - 2
            entry.update(
                mode="train" if training else "eval",
                input_shape=tuple(rec.x_shape),
                requested_rate=float(rec.rate),
                achieved_rate=float(g.achieved_rate),
                kept=int(g.kept),
                total=int(g.total),
                kept_rows=list(g.kept_rows),
                kept_cols=list(g.kept_cols),
                grid=tuple(g.grid) if ndim == 2 else (int(g.grid[1]),),
                limits=tuple(g.limits) if ndim == 2 else (int(g.limits[1]),),
                energy_kept=None if rec.energy_kept is None else float(rec.energy_kept),
            )
        report.append(entry)
    return report
