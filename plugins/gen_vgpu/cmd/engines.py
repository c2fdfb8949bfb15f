"""The four engines of contract §4 as the command scanner names them, with their MMIO bases."""

from __future__ import annotations

import enum

from ..mmio.regs import BLT_RING_BASE, RENDER_RING_BASE

__all__ = ["ENGINE_MMIO_BASE", "ENGINE_MMIO_PAGE", "Engine"]


class Engine(enum.IntEnum):
    """An engine; the value indexes per-engine tables."""

    RCS = 0
    BCS = 1
    VCS0 = 2
    VECS0 = 3


ENGINE_MMIO_BASE: dict[Engine, int] = {
    Engine.RCS: RENDER_RING_BASE,
    Engine.BCS: BLT_RING_BASE,
    Engine.VCS0: 0x12000,
    Engine.VECS0: 0x1A000,
}

# Each engine's registers sit in one 4 KiB page from its base (RING_*, ELSP, CSB, timestamps,
# the RCS pipeline-statistics and GPR registers).
ENGINE_MMIO_PAGE = 0x1000
