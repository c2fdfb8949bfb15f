"""BAR0 (GTTMMADR): MMIO registers below 2 MiB, the GGTT from 8 MiB.

Accesses are 4 or 8 bytes wide and naturally aligned; anything else is ignored on write and
reads as 0 (logged once per kind), as is everything between the registers and the GGTT.
"""

from __future__ import annotations

import logging

from devmodel.device.registers import RegisterFile

from .gtt.ggtt import Ggtt
from .mmio import regs

__all__ = ["Bar0"]

log = logging.getLogger(__name__)


class Bar0:
    def __init__(self, registers: RegisterFile, ggtt: Ggtt) -> None:
        self.registers = registers
        self.ggtt = ggtt
        self.ignored_accesses = 0
        self._warned: set[str] = set()

    def _ignore(self, kind: str, offset: int, count: int) -> None:
        self.ignored_accesses += 1
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("BAR0: ignoring %s access at %#x (%d bytes); further ones not logged", kind, offset, count)

    def read(self, offset: int, count: int) -> bytes:
        if count not in (4, 8) or offset & (count - 1):
            self._ignore("unaligned or odd-sized", offset, count)
            return bytes(count)
        if offset >= regs.GGTT_OFFSET:
            rel = offset - regs.GGTT_OFFSET
            return self.ggtt.read(rel >> 3, count, bool(rel & 4)).to_bytes(count, "little")
        if offset + count <= regs.MMIO_SIZE:
            rf = self.registers
            value = rf.read32(offset)
            if count == 8:
                value |= rf.read32(offset + 4) << 32
            return value.to_bytes(count, "little")
        self._ignore("unbacked", offset, count)
        return bytes(count)

    def write(self, offset: int, data: bytes) -> None:
        count = len(data)
        if count not in (4, 8) or offset & (count - 1):
            self._ignore("unaligned or odd-sized", offset, count)
            return
        value = int.from_bytes(data, "little")
        if offset >= regs.GGTT_OFFSET:
            rel = offset - regs.GGTT_OFFSET
            self.ggtt.write(rel >> 3, value, count, bool(rel & 4))
        elif offset + count <= regs.MMIO_SIZE:
            self.registers.write32(offset, value & 0xFFFFFFFF)
            if count == 8:
                self.registers.write32(offset + 4, value >> 32)
        else:
            self._ignore("unbacked", offset, count)
