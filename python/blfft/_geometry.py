"""Layer geometries from the C++ core, cached.

A geometry (``_core.make_geometry``) is everything the core derives from a call's shapes and
kept set: the grid, the kept rows and columns, the sizes of the spectra, the output shape. Python
never re-derives one; it asks :func:`geometry`, which keeps the recent ones in a cache bounded in
entries and bytes (emptied by ``blfft.clear_caches``).
"""

import collections
import threading
from typing import Sequence, Tuple

from . import _core, _memory


def make_geometry(
    x_shape: Tuple[int, ...],
    w_shape: Tuple[int, ...],
    stride: Tuple[int, ...],
    padding: Tuple[int, ...],
    dilation: Tuple[int, ...],
    groups: int,
    rate: float,
    band: Tuple[int, ...],
):
    ndim = len(x_shape) - 2
    n, c = x_shape[0], x_shape[1]
    f = w_shape[0]
    if ndim == 1:
        p = _core.ConvParams.conv1d(
            n, c, f, x_shape[2], w_shape[2], stride[0], padding[0], dilation[0], groups
        )
    elif ndim == 2:
        p = _core.ConvParams.conv2d(
            n, c, f, tuple(x_shape[2:]), tuple(w_shape[2:]), stride, padding, dilation, groups
        )
    elif ndim == 3:
        p = _core.ConvParams.conv3d(
            n, c, f, tuple(x_shape[2:]), tuple(w_shape[2:]), stride, padding, dilation, groups
        )
    else:
        raise ValueError(f"blfft: input must have 1, 2 or 3 spatial dimensions, got {ndim}")
    if band and len(band) == 3:  # 3D: [i_d, i_h, i_w]
        comp = _core.Compression.band3(band[0], band[1], band[2])
    elif band:
        comp = _core.Compression.band(band[0], band[1])
    else:
        comp = _core.Compression.rate(rate)
    return p, comp, _core.make_geometry(p, comp)  # releases the GIL while it works


class GeometryCache:
    """A least-recently-used cache of ``(ConvParams, Compression, Geometry)`` bounded in entries
    and in bytes.

    A geometry holds its kept row and column indices (8 bytes each): a 1D layer of length L up to
    ~4 L bytes, so a cache bounded in entries alone grows with the lengths seen (the former
    ``lru_cache(4096)`` kept ~270 MiB after 4000 distinct 1D lengths). Each entry is charged an
    upper bound of its index bytes (grid rows + rfft columns) plus a fixed overhead; the least
    recently used entries go once either bound is passed. Thread-safe; the geometry is made
    outside the lock (and without the GIL), so two threads may both make a missing one.
    """

    ENTRY_OVERHEAD = 1024  # the Python and C++ objects of one entry, roughly (bytes)

    def __init__(self, max_entries: int = 512, max_bytes: int = 8 << 20) -> None:
        self.max_entries = int(max_entries)
        self.max_bytes = int(max_bytes)
        self._d: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _cost(g) -> int:
        grid = g.grid
        depth = int(g.depth_grid)  # 3D: the kept depths (1 for 1D and 2D)
        return 8 * (int(grid[0]) + int(g.bins_w) + depth) + GeometryCache.ENTRY_OVERHEAD

    def __call__(self, *key):
        d = self._d
        with self._lock:
            e = d.get(key)
            if e is not None:
                d.move_to_end(key)
                self.hits += 1
                return e[0]
        value = make_geometry(*key)
        cost = self._cost(value[2])
        with self._lock:
            self.misses += 1
            if key not in d:
                d[key] = (value, cost)
                self._bytes += cost
                while d and (len(d) > self.max_entries or self._bytes > self.max_bytes):
                    _, (_, old_cost) = d.popitem(last=False)
                    self._bytes -= old_cost
        return value

    def cache_clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    clear = cache_clear  # what blfft.clear_caches calls

    def cache_info(self) -> dict:
        """hits, misses, entries, bytes (the estimate the bound applies to) and the bounds."""
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "entries": len(self._d),
                "bytes": self._bytes,
                "max_entries": self.max_entries,
                "max_bytes": self.max_bytes,
            }


geometry_cache = GeometryCache()
_memory.register_cache(geometry_cache)


def geometry(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    rate: float = 0.0,
    band: Sequence[int] = (),
):
    """(ConvParams, Compression, Geometry) for one call, from the C++ core (cached)."""
    return geometry_cache(
        tuple(int(s) for s in x_shape),
        tuple(int(s) for s in w_shape),
        tuple(int(s) for s in stride),
        tuple(int(s) for s in padding),
        tuple(int(s) for s in dilation),
        int(groups),
        float(rate),
        tuple(int(b) for b in band),
    )
