"""The blitter's view of tiled surfaces (the layouts are tiles.py's).

The legacy blitter takes tiling per surface from XY_*_BLT DW0 (bit 11 destination, bit 15
source) and the tile walk from BCS_SWCTRL (bit 0: the source is Y-tiled, bit 1: the
destination; X otherwise), which i915 and IGT load with MI_LOAD_REGISTER_IMM before a Y-tiled
blit.
"""

from __future__ import annotations

from ..mmio.engine_regs import BCS_SWCTRL, SWCTRL_DST_Y, SWCTRL_SRC_Y
from ..tiles import Tiling

__all__ = ["BCS_SWCTRL", "SWCTRL_DST_Y", "SWCTRL_SRC_Y", "blit_tiling", "rows_span"]


def blit_tiling(tiled: bool, swctrl: int, y_bit: int) -> Tiling:
    if not tiled:
        return Tiling.LINEAR
    return Tiling.Y if swctrl & y_bit else Tiling.X


def rows_span(tiling: Tiling, pitch: int, x: int, y: int, width: int, rows: int) -> tuple[int, int]:
    """[first, end) offsets from the surface's address holding bytes [x, x + width) of rows
    [y, y + rows): whole rows of tiles when tiled."""
    if tiling is Tiling.LINEAR:
        return y * pitch + x, (y + rows - 1) * pitch + x + width
    h = tiling.height
    return (y // h) * pitch * h, ((y + rows - 1) // h + 1) * pitch * h
