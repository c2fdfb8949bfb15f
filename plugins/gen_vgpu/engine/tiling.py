"""Tiled surface layouts of GEN8/GEN9 (PRM vol. 5, "Tiling"), for the blitter and the fences.

A tiled surface is a row-major grid of 4 KiB tiles, ``pitch / tile width`` tiles per row of
tiles. X tiles are 8 rows of 512 bytes, row after row. Y tiles are 32 rows of 128 bytes stored
as eight 16-byte columns (OWords), each column's 32 rows one after the other. Neither is
swizzled: on BDW and SKL, i915 sets bit-6 swizzling to none without reading a register
(``detect_bit_6_swizzle``: "On BDW+, swizzling is not used"), and the device does none.

The legacy blitter takes tiling per surface from XY_*_BLT DW0 (bit 11 destination, bit 15
source) and the tile walk from BCS_SWCTRL (bit 0: the source is Y-tiled, bit 1: the
destination; X otherwise), which i915 and IGT load with MI_LOAD_REGISTER_IMM before a Y-tiled
blit. accel/dm_blit.c holds the same layouts for its copies (DM_TILE_*); the tests check both
against a detiler of their own.
"""

from __future__ import annotations

import enum

from ..mmio.engine_regs import BCS_SWCTRL, SWCTRL_DST_Y, SWCTRL_SRC_Y

__all__ = ["BCS_SWCTRL", "SWCTRL_DST_Y", "SWCTRL_SRC_Y", "TILE_BYTES", "Tiling", "blit_tiling", "locate", "rows_span"]

TILE_BYTES = 4096


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


def blit_tiling(tiled: bool, swctrl: int, y_bit: int) -> Tiling:
    if not tiled:
        return Tiling.LINEAR
    return Tiling.Y if swctrl & y_bit else Tiling.X


def locate(tiling: Tiling, pitch: int, x: int, y: int) -> tuple[int, int]:
    """Byte x of row y of a surface: its offset from the surface's address, and how many bytes
    of the row from there are contiguous in memory (to the end of the tile's row or OWord;
    a linear row is contiguous to its end)."""
    if tiling is Tiling.LINEAR:
        return y * pitch + x, 1 << 62
    w, h = _WIDTH[tiling], _HEIGHT[tiling]
    tiles = pitch // w
    tx, in_x = divmod(x, w)
    if tx >= tiles:  # past the pitch (a guest's error): kept inside the row of tiles
        tx = max(tiles - 1, 0)
    tile = ((y // h) * tiles + tx) * TILE_BYTES
    if tiling is Tiling.X:
        return tile + (y % h) * w + in_x, w - in_x
    return tile + (in_x >> 4) * (h * 16) + (y % h) * 16 + (in_x & 15), 16 - (in_x & 15)


def rows_span(tiling: Tiling, pitch: int, x: int, y: int, width: int, rows: int) -> tuple[int, int]:
    """[first, end) offsets from the surface's address holding bytes [x, x + width) of rows
    [y, y + rows): whole rows of tiles when tiled."""
    if tiling is Tiling.LINEAR:
        return y * pitch + x, (y + rows - 1) * pitch + x + width
    h = _HEIGHT[tiling]
    return (y // h) * pitch * h, ((y + rows - 1) // h + 1) * pitch * h
