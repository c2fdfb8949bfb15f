"""BAR0 (GTTMMADR): MMIO registers below 2 MiB, the GGTT from 8 MiB.

Access widths follow contract v2 §2, as GVT-g's MMIO emulation does: register accesses are
1, 2, 4 or 8 bytes, naturally aligned. A narrower read returns those bytes of the 32-bit
register; a narrower write merges into the register and then acts as a 4-byte write; an
8-byte access is the two 4-byte registers, low first. GGTT accesses are 4 or 8 bytes.
Anything else is ignored on write and reads as 0 (logged once per kind), as is everything
between the registers and the GGTT.
"""

from __future__ import annotations

import logging

from devmodel.device.registers import RegisterFile
from devmodel.logbound import OncePerReason

from .gtt.ggtt import Ggtt
from .mmio import regs
from .trace_events import GGTT_WRITE, MMIO_READ, MMIO_WRITE

__all__ = ["Bar0", "TracedBar0", "traced"]

log = logging.getLogger(__name__)

_REGISTER_WIDTHS = (1, 2, 4, 8)
_GGTT_WIDTHS = (4, 8)


class Bar0:
    def __init__(self, registers: RegisterFile, ggtt: Ggtt) -> None:
        self.registers = registers
        self.ggtt = ggtt
        self.ignored_accesses = 0
        self._once = OncePerReason(log)

    def _ignore(self, kind: str, offset: int, count: int) -> None:
        self.ignored_accesses += 1
        self._once.warn(kind, "BAR0: ignoring %s access at %#x (%d bytes)", kind, offset, count)

    def _accepted(self, offset: int, count: int) -> bool:
        """Whether the width and alignment are ones the contract serves (logs the rest)."""
        widths = _GGTT_WIDTHS if offset >= regs.GGTT_OFFSET else _REGISTER_WIDTHS
        if count not in widths or offset & (count - 1):
            self._ignore("unaligned or odd-sized", offset, count)
            return False
        if regs.MMIO_SIZE <= offset < regs.GGTT_OFFSET:
            self._ignore("unbacked", offset, count)
            return False
        return True

    def read(self, offset: int, count: int) -> bytes:
        if not self._accepted(offset, count):
            return bytes(count)
        if offset >= regs.GGTT_OFFSET:
            rel = offset - regs.GGTT_OFFSET
            return self.ggtt.read(rel >> 3, count, bool(rel & 4)).to_bytes(count, "little")
        rf = self.registers
        if count == 8:
            return (rf.read32(offset) | rf.read32(offset + 4) << 32).to_bytes(8, "little")
        aligned = offset & ~3
        shift = offset & 3
        return rf.read32(aligned).to_bytes(4, "little")[shift : shift + count]

    def write(self, offset: int, data: bytes) -> None:
        count = len(data)
        if not self._accepted(offset, count):
            return
        value = int.from_bytes(data, "little")
        if offset >= regs.GGTT_OFFSET:
            rel = offset - regs.GGTT_OFFSET
            self.ggtt.write(rel >> 3, value, count, bool(rel & 4))
            return
        rf = self.registers
        if count == 8:
            rf.write32(offset, value & 0xFFFFFFFF)
            rf.write32(offset + 4, value >> 32)
        elif count == 4:
            rf.write32(offset, value)
        else:
            aligned = offset & ~3
            shift = 8 * (offset & 3)
            field = ((1 << 8 * count) - 1) << shift
            rf.write32(aligned, self._untouched(aligned) & ~field | value << shift)

    def _untouched(self, aligned: int) -> int:
        """What the bytes a narrow write leaves alone contribute to the 4-byte write: the
        register's stored value, except write-1-to-clear bits and a masked register's mask
        half, which count as 0 so that bytes the guest did not write change nothing."""
        value = self.registers.get(aligned)
        reg = self.registers.regs.get(aligned)
        if reg is not None:
            value &= ~reg.w1c
            if reg.masked:
                value &= 0xFFFF
        return value


class TracedBar0:
    """BAR0 with the mmio_* and ggtt_write trace events: each access as the guest made it,
    the register named from the table. The device serves BAR0 through this, and not through
    the compiled accelerator, when one of those events is on as it is built; otherwise no
    BAR0 access looks at a trace event at all."""

    def __init__(self, bar0: Bar0) -> None:
        self.bar0 = bar0
        self.registers = bar0.registers

    def _name(self, offset: int) -> str:
        reg = self.registers.regs.get(offset & ~3)
        name = reg.name if reg is not None else "unlisted"
        return f"{name}+{offset & 3}" if offset & 3 else name

    def read(self, offset: int, count: int) -> bytes:
        data = self.bar0.read(offset, count)
        if offset < regs.MMIO_SIZE and MMIO_READ.on:
            MMIO_READ(self._name(offset), offset, int.from_bytes(data, "little"))
        return data

    def write(self, offset: int, data: bytes) -> None:
        value = int.from_bytes(data, "little")
        if offset >= regs.GGTT_OFFSET:
            if GGTT_WRITE.on:
                rel = offset - regs.GGTT_OFFSET
                GGTT_WRITE(rel >> 3, "" if len(data) == 8 else ".hi" if rel & 4 else ".lo", value)
        elif offset < regs.MMIO_SIZE and MMIO_WRITE.on:
            MMIO_WRITE(self._name(offset), offset, value)
        self.bar0.write(offset, data)


def traced() -> bool:
    """Whether an event TracedBar0 emits is on."""
    return MMIO_READ.on or MMIO_WRITE.on or GGTT_WRITE.on
