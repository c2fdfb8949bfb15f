"""Surfaces: SURFACE_STATE decoded, texel addresses for linear, X- and Y-tiled layouts, and
gathers and scatters of many texels at once through an address space (a page at a time,
never outside what the shadow tables map).

The tile layouts are tiles.py's; SURFACE_STATE names them with its own codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..gtt.space import AddressSpace
from ..tiles import TILE_BYTES, Tiling, offset
from .errors import RenderRefused

__all__ = ["FORMATS", "Format", "Surface", "gather", "scatter"]

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

PAGE = 4096
# SURFACE_STATE DW0 bits 13:12 (1 is W tiling, not modelled)
_SURFACE_TILING = {0: Tiling.LINEAR, 2: Tiling.X, 3: Tiling.Y}
SURFTYPE_2D, SURFTYPE_BUFFER, SURFTYPE_NULL = 1, 4, 7


@dataclass(frozen=True)
class Format:
    name: str
    bpp: int  # bytes per texel
    channels: tuple[int | None, int | None, int | None, int | None]  # byte of R, G, B, A


# UNORM 8-bit formats; a missing channel reads 0 (colour) or 1 (alpha) and is not written.
FORMATS: dict[int, Format] = {
    0x0C0: Format("B8G8R8A8_UNORM", 4, (2, 1, 0, 3)),
    0x0C7: Format("R8G8B8A8_UNORM", 4, (0, 1, 2, 3)),
    0x0E9: Format("B8G8R8X8_UNORM", 4, (2, 1, 0, None)),
    0x0EB: Format("R8G8B8X8_UNORM", 4, (0, 1, 2, None)),
    0x106: Format("R8G8_UNORM", 2, (0, 1, None, None)),
    0x140: Format("R8_UNORM", 1, (0, None, None, None)),
}


@dataclass(frozen=True)
class Surface:
    base: int
    width: int
    height: int
    pitch: int
    tiling: Tiling
    format: Format

    @classmethod
    def from_state(cls, dw: list[int], where: str) -> Surface:
        """A 2D surface from the 16 dwords of a GEN8 SURFACE_STATE."""
        stype = dw[0] >> 29 & 7
        fmt_code = dw[0] >> 18 & 0x1FF
        code = dw[0] >> 12 & 3
        if stype != SURFTYPE_2D:
            raise RenderRefused(f"{where}: surface type {stype} is not modelled (2D only)")
        fmt = FORMATS.get(fmt_code)
        if fmt is None:
            raise RenderRefused(f"{where}: surface format {fmt_code:#x} is not modelled")
        tiling = _SURFACE_TILING.get(code)
        if tiling is None:
            raise RenderRefused(f"{where}: W tiling is not modelled")
        width = (dw[2] & 0x3FFF) + 1
        height = (dw[2] >> 16 & 0x3FFF) + 1
        pitch = (dw[3] & 0x3FFFF) + 1
        depth = (dw[3] >> 21 & 0x7FF) + 1
        if depth != 1:
            raise RenderRefused(f"{where}: surface depth/array size {depth} is not modelled")
        if dw[4] & 0x38:
            raise RenderRefused(f"{where}: multisampled surfaces are not modelled")
        base = dw[8] | (dw[9] & 0xFFFF) << 32
        if base % fmt.bpp:
            raise RenderRefused(f"{where}: base {base:#x} not aligned to its {fmt.bpp}-byte texels")
        if width * fmt.bpp > pitch:
            raise RenderRefused(f"{where}: width {width} x {fmt.bpp} bytes exceeds pitch {pitch}")
        if tiling is not Tiling.LINEAR and pitch % tiling.width:
            raise RenderRefused(f"{where}: pitch {pitch} is not a whole number of tiles")
        if tiling is not Tiling.LINEAR and base % TILE_BYTES:
            raise RenderRefused(f"{where}: tiled surface base {base:#x} is not 4 KiB aligned")
        return cls(base, width, height, pitch, tiling, fmt)

    def offsets(self, xb: Any, y: Any) -> I64:
        """Byte offsets from the base of byte column ``xb`` (bytes into the row) of row ``y``."""
        out: I64 = offset(self.tiling, self.pitch, np.asarray(xb, dtype=np.int64), np.asarray(y, dtype=np.int64))
        return out

    def texel_addresses(self, x: Any, y: Any) -> I64:
        return self.base + self.offsets(np.asarray(x, dtype=np.int64) * self.format.bpp, y)

    def to_rgba(self, texels: U8) -> F32:
        """(n, bpp) bytes to (n, 4) floats in [0, 1]."""
        out = np.zeros((texels.shape[0], 4), dtype=np.float32)
        out[:, 3] = 1.0
        have = [c for c, b in enumerate(self.format.channels) if b is not None]
        src = [b for b in self.format.channels if b is not None]
        out[:, have] = texels[:, src] * np.float32(1 / 255)
        return out

    def from_rgba(self, rgba: F32, old: U8 | None) -> U8:
        """(n, 4) floats to texel bytes (UNORM: NaN and negatives 0, clamped to 1, rounded to
        nearest); bytes of the texel no channel covers keep ``old``."""
        fmt = self.format
        have = [c for c, b in enumerate(fmt.channels) if b is not None]
        dst = [b for b in fmt.channels if b is not None]
        v = rgba[:, have]
        q = (np.where(v > 0, np.minimum(v, 1), 0) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
        if len(dst) == fmt.bpp and dst == list(range(fmt.bpp)):
            return q
        out = np.zeros((rgba.shape[0], fmt.bpp), dtype=np.uint8) if old is None else old.copy()
        out[:, dst] = q
        return out


# A set of pages is translated with one walk of the shadow tables when it is this dense
# (pages wanted / pages in its range) and at most this long; otherwise a page at a time.
_DENSE = 4
_RANGE = 1024


def _views(space: AddressSpace, pages: list[int], write: bool) -> dict[int, memoryview | None]:
    """Each page's view (None: scratch), translating ranges of pages at once."""
    out: dict[int, memoryview | None] = {}
    k = 0
    while k < len(pages):
        first = pages[k]
        last = k
        while (
            last + 1 < len(pages)
            and pages[last + 1] - first < _RANGE
            and (last + 2 - k) * _DENSE >= pages[last + 1] - first + 1
        ):
            last += 1
        end = pages[last] + 1
        for span in space.spans(first << 12, (end - first) << 12, write):
            for page in range(span.start >> 12, (span.end + PAGE - 1) >> 12):
                if span.view is None:
                    out[page] = None
                else:
                    off = (page << 12) - span.start
                    out[page] = span.view[off : off + PAGE]
        k = last + 1
    return out


def _pages(addrs: I64) -> tuple[list[int], I64]:
    """The distinct pages of ``addrs`` (ascending) and each address's index among them.
    Addresses of a batch are near each other: their pages are counted in a table over the
    range, no sort; a wide range falls back to a sort."""
    pages = addrs >> 12
    low = int(pages.min())
    span = int(pages.max()) - low + 1
    if span <= 1 << 16:
        rel = pages - low
        present = np.zeros(span, dtype=np.bool_)
        present[rel] = True
        distinct = np.flatnonzero(present)
        slot = np.cumsum(present) - 1
        index: I64 = slot[rel]
        return (distinct + low).tolist(), index
    uniq, inverse = np.unique(pages, return_inverse=True)
    return uniq.tolist(), inverse.reshape(-1)


def gather(space: AddressSpace, addrs: I64, size: int) -> U8:
    """(n, size) bytes at each address (none crosses a page); unmapped pages read zeros."""
    if addrs.size == 0:
        return np.zeros((0, size), dtype=np.uint8)
    pages, index = _pages(addrs)
    buf = np.zeros((len(pages), PAGE), dtype=np.uint8)
    views = _views(space, pages, False)
    for k, p in enumerate(pages):
        view = views.get(p)
        if view is not None:
            buf[k] = np.frombuffer(view, dtype=np.uint8)
    flat = buf.reshape(-1)
    at = index * PAGE + (addrs & (PAGE - 1))
    out: U8 = flat[at[:, None] + np.arange(size)] if size > 1 else flat[at][:, None]
    return out


def scatter(space: AddressSpace, addrs: I64, data: U8) -> None:
    """Write ``data[i]`` at ``addrs[i]`` (none crosses a page); a page without a writable
    mapping drops its writes."""
    if addrs.size == 0:
        return
    size = data.shape[1]
    pages, index = _pages(addrs)
    # A stable radix sort of the small page indices groups each page's writes.
    order = np.argsort(index.astype(np.uint16) if len(pages) < 1 << 16 else index, kind="stable")
    index = index[order]
    offsets = (addrs[order] & (PAGE - 1))[:, None] + np.arange(size)
    data = data[order]
    bounds = np.searchsorted(index, np.arange(len(pages) + 1)).tolist()
    views = _views(space, pages, True)
    for k, p in enumerate(pages):
        view = views.get(p)
        if view is None:
            continue
        s, e = bounds[k], bounds[k + 1]
        np.frombuffer(view, dtype=np.uint8)[offsets[s:e].reshape(-1)] = data[s:e].reshape(-1)
