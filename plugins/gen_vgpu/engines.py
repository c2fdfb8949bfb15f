"""The four engines, declared once: name, MMIO base, interrupt bank and shift, the master
IRQ status bit of its half-bank, and its GDRST bit (contract §4, §4.3, §4.4).

It sits beside ``platform.py``, below every folder: the register table (``mmio/``), the
interrupts, the command scanner (which names engines with the same enum, ``cmd/engines.py``)
and the execlists (``engine/``) all read it, and it reads none of them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BLT_RING_BASE", "ENGINES", "ENGINE_MMIO_PAGE", "RENDER_RING_BASE", "EngineId", "EngineInfo", "engine_by_id"]

# Each engine's registers sit in one 4 KiB page from its base (RING_*, ELSP, CSB, timestamps,
# the RCS pipeline-statistics and GPR registers).
ENGINE_MMIO_PAGE = 0x1000
RENDER_RING_BASE = 0x2000
BLT_RING_BASE = 0x22000


class EngineId(enum.IntEnum):
    """An engine; the value indexes per-engine tables (the scanner's dispatch tables)."""

    RCS = 0
    BCS = 1
    VCS0 = 2
    VECS0 = 3


@dataclass(frozen=True)
class EngineInfo:
    id: EngineId
    name: str
    base: int
    irq_bank: int  # GT interrupt bank n: ISR/IMR/IIR/IER at 0x44300 + 0x10n
    irq_shift: int  # the engine's 16 bits within the bank
    master_bit: int  # GEN8_MASTER_IRQ status bit that reports this half-bank
    gdrst_bit: int

    def reg(self, offset: int) -> int:
        """The BAR0 offset of one of this engine's registers."""
        return self.base + offset


ENGINES: tuple[EngineInfo, ...] = (
    EngineInfo(EngineId.RCS, "rcs", RENDER_RING_BASE, 0, 0, 0, 1),
    EngineInfo(EngineId.BCS, "bcs", BLT_RING_BASE, 0, 16, 1, 3),
    EngineInfo(EngineId.VCS0, "vcs0", 0x12000, 1, 0, 2, 2),
    EngineInfo(EngineId.VECS0, "vecs0", 0x1A000, 3, 0, 6, 4),
)

_BY_ID = {e.id: e for e in ENGINES}


def engine_by_id(engine_id: EngineId) -> EngineInfo:
    return _BY_ID[engine_id]
