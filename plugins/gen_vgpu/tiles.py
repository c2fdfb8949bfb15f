"""The tile layouts of GEN8/GEN9 (PRM vol. 5, "Memory Views"), declared once for everything
that walks a tiled surface: the blitter and the fenced aperture (engine/tiling.py,
aperture.py) and the render engine's surfaces (render/surface.py).

A tiled surface is a row-major grid of 4 KiB tiles, ``pitch / tile width`` tiles per row of
tiles. X tiles are 8 rows of 512 bytes, row after row. Y tiles are 32 rows of 128 bytes stored
as eight 16-byte columns (OWords), each column's 32 rows one after the other. Neither is
swizzled: on BDW and SKL, i915 sets bit-6 swizzling to none without reading a register
(``detect_bit_6_swizzle``: "On BDW+, swizzling is not used"), and the device does none.
accel/dm_blit.c holds the same layouts for its copies (DM_TILE_*, the values of ``Tiling``);
the tests check both against a detiler of their own.

It sits beside ``platform.py``, below the folders that use it.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

__all__ = ["OWORD", "TILE_BYTES", "Tiling", "locate", "offset"]

TILE_BYTES = 4096
OWORD = 16  # a Y tile's column width

_Index = TypeVar("_Index", int, Any)  # an int, or a numpy integer array (one offset per element)


class Tiling(enum.IntEnum):
    """The value is accel/dm_blit.h's DM_TILE_*."""

    LINEAR = 0
    X = 1
    Y = 2

    @property
    def width(self) -> int:
        """Bytes per row of a tile (0: linear)."""
        return _WIDTH[self]

    @property
    def height(self) -> int:
        """Rows of a tile (1: linear)."""
        return _HEIGHT[self]


_WIDTH = {Tiling.LINEAR: 0, Tiling.X: 512, Tiling.Y: 128}
_HEIGHT = {Tiling.LINEAR: 1, Tiling.X: 8, Tiling.Y: 32}


def offset(tiling: Tiling, pitch: int, x: _Index, y: _Index) -> _Index:
    """The offset from the surface's address of byte ``x`` of row ``y``: ints, or numpy
    integer arrays of them (the render engine's many texels at once). ``x`` is inside the
    pitch."""
    if tiling is Tiling.LINEAR:
        return y * pitch + x
    w, h = _WIDTH[tiling], _HEIGHT[tiling]
    tile = (y // h) * (pitch // w) + x // w
    in_x, in_y = x % w, y % h
    if tiling is Tiling.X:
        return tile * TILE_BYTES + in_y * w + in_x
    return tile * TILE_BYTES + (in_x // OWORD) * (h * OWORD) + in_y * OWORD + in_x % OWORD


def locate(tiling: Tiling, pitch: int, x: int, y: int) -> tuple[int, int]:
    """Byte x of row y of a surface: its offset from the surface's address, and how many bytes
    of the row from there are contiguous in memory (to the end of the tile's row or OWord;
    a linear row is contiguous to its end)."""
    if tiling is Tiling.LINEAR:
        return y * pitch + x, 1 << 62
    w = _WIDTH[tiling]
    tiles = pitch // w
    in_x = x % w
    if x // w >= tiles:  # past the pitch (a guest's error): kept inside the row of tiles
        x = max(tiles - 1, 0) * w + in_x
    run = w - in_x if tiling is Tiling.X else OWORD - in_x % OWORD
    return offset(tiling, pitch, x, y), run
