"""PCI configuration space: a type-0 header, BAR sizing, a capability chain, MSI and INTx
masking (PCI 2.3: command bit 10 masks, status bit 3 reports the line)."""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "PciConfigSpace",
    "Bar",
    "BarKind",
    "PCI_COMMAND",
    "PCI_STATUS",
    "CMD_IO",
    "CMD_MEMORY",
    "CMD_MASTER",
    "CMD_INTX_DISABLE",
    "STATUS_INTERRUPT",
    "STATUS_CAP_LIST",
    "MSI_CAP_ID",
    "MSI_FLAGS_ENABLE",
]

PCI_VENDOR_ID = 0x00
PCI_DEVICE_ID = 0x02
PCI_COMMAND = 0x04
PCI_STATUS = 0x06
PCI_REVISION_ID = 0x08
PCI_CLASS_PROG = 0x09
PCI_HEADER_TYPE = 0x0E
PCI_BAR0 = 0x10
PCI_SUBSYSTEM_VENDOR_ID = 0x2C
PCI_SUBSYSTEM_ID = 0x2E
PCI_ROM_ADDRESS = 0x30
PCI_CAPABILITY_LIST = 0x34
PCI_INTERRUPT_LINE = 0x3C
PCI_INTERRUPT_PIN = 0x3D

CMD_IO = 1 << 0
CMD_MEMORY = 1 << 1
CMD_MASTER = 1 << 2
CMD_PARITY = 1 << 6
CMD_SERR = 1 << 8
CMD_INTX_DISABLE = 1 << 10
STATUS_INTERRUPT = 1 << 3
STATUS_CAP_LIST = 1 << 4
# Error bits of the status register are write-1-to-clear.
STATUS_RW1C = 0xF900

MSI_CAP_ID = 0x05
MSI_FLAGS_ENABLE = 0x1


class BarKind(enum.IntEnum):
    """The type bits of a BAR's low dword."""

    MEM32 = 0x0
    MEM64 = 0x4
    IO = 0x1


@dataclass(frozen=True)
class Bar:
    index: int
    size: int  # a power of two
    kind: BarKind = BarKind.MEM64
    prefetchable: bool = False

    @property
    def type_bits(self) -> int:
        if self.kind is BarKind.IO:
            return 0x1
        return self.kind.value | (0x8 if self.prefetchable else 0)


class PciConfigSpace:
    """256 bytes of config space with per-byte write masks.

    ``on_command`` is called with (old, new) after every change of the command register, so
    the device can react to bus mastering and INTx masking.
    """

    def __init__(
        self,
        vendor_id: int,
        device_id: int,
        revision: int,
        class_code: int,
        subsystem_vendor_id: int = 0,
        subsystem_id: int = 0,
        interrupt_pin: int = 1,
        size: int = 256,
    ) -> None:
        self.size = size
        self.data = bytearray(size)
        self.wmask = bytearray(size)
        self.w1cmask = bytearray(size)
        self.bars: dict[int, Bar] = {}
        self._cap_tail: int | None = None
        self.on_command: Callable[[int, int], None] | None = None
        struct.pack_into("<HH", self.data, PCI_VENDOR_ID, vendor_id, device_id)
        self.data[PCI_REVISION_ID] = revision
        self.data[PCI_CLASS_PROG : PCI_CLASS_PROG + 3] = class_code.to_bytes(3, "little")
        struct.pack_into("<HH", self.data, PCI_SUBSYSTEM_VENDOR_ID, subsystem_vendor_id, subsystem_id)
        self.data[PCI_INTERRUPT_PIN] = interrupt_pin
        self._set_wmask(PCI_COMMAND, 2, CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE)
        self._set_wmask(PCI_STATUS, 2, STATUS_RW1C, w1c=True)
        self._set_wmask(PCI_INTERRUPT_LINE, 1, 0xFF)
        self._set_wmask(0x0C, 1, 0xFF)  # cache line size
        self._power_on: bytearray | None = None
        self.msi_offset: int | None = None

    def _set_wmask(self, off: int, width: int, mask: int, w1c: bool = False) -> None:
        target = self.w1cmask if w1c else self.wmask
        target[off : off + width] = mask.to_bytes(width, "little")

    # --- construction ----------------------------------------------------------------------

    def add_bar(self, bar: Bar) -> None:
        if bar.size & (bar.size - 1) or bar.size < 16:
            raise ValueError("BAR sizes are powers of two of at least 16 bytes")
        off = PCI_BAR0 + 4 * bar.index
        self.bars[bar.index] = bar
        self.data[off : off + 4] = bar.type_bits.to_bytes(4, "little")
        mask = ~(bar.size - 1) & ((1 << 64) - 1)
        self._set_wmask(off, 4, mask & 0xFFFFFFF0 if bar.kind is not BarKind.IO else mask & 0xFFFFFFFC)
        if bar.kind is BarKind.MEM64:
            self._set_wmask(off + 4, 4, mask >> 32)

    def add_rom(self, size: int) -> None:
        """An expansion ROM BAR of ``size`` bytes (a power of two, at least 2 KiB): the
        address bits and the enable bit are writable, so sizing reads back the mask."""
        if size & (size - 1) or size < 0x800:
            raise ValueError("ROM sizes are powers of two of at least 2 KiB")
        self._set_wmask(PCI_ROM_ADDRESS, 4, (~(size - 1) & 0xFFFFF800) | 1)

    def add_capability(self, offset: int, cap_id: int, body: bytes, body_wmask: bytes) -> None:
        """Append a capability at ``offset``: id, next pointer, then ``body``."""
        if offset < 0x40 or offset & 3 or offset + 2 + len(body) > self.size:
            raise ValueError("bad capability placement")
        self.data[offset] = cap_id
        self.data[offset + 1] = 0
        self.data[offset + 2 : offset + 2 + len(body)] = body
        self.wmask[offset + 2 : offset + 2 + len(body_wmask)] = body_wmask
        if self._cap_tail is None:
            self.data[PCI_CAPABILITY_LIST] = offset
            struct.pack_into("<H", self.data, PCI_STATUS, self.status | STATUS_CAP_LIST)
        else:
            self.data[self._cap_tail + 1] = offset
        self._cap_tail = offset

    def add_msi_capability(self, offset: int) -> int:
        """A single-message MSI capability with a 32-bit address; returns its offset."""
        body = struct.pack("<HIH", 0, 0, 0)
        wmask = struct.pack("<HIH", MSI_FLAGS_ENABLE | 0x70, 0xFFFFFFFC, 0xFFFF)
        self.add_capability(offset, MSI_CAP_ID, body, wmask)
        self.msi_offset = offset
        return offset

    def freeze_power_on_state(self) -> None:
        self._power_on = bytearray(self.data)

    def reset(self) -> None:
        if self._power_on is not None:
            old = self.command
            self.data[:] = self._power_on
            if self.on_command and old != self.command:
                self.on_command(old, self.command)

    # --- access ----------------------------------------------------------------------------

    def read(self, offset: int, count: int) -> bytes:
        return bytes(self.data[offset : offset + count])

    def write(self, offset: int, data: bytes) -> None:
        old_command = self.command
        for i, value in enumerate(data):
            off = offset + i
            wm = self.wmask[off]
            cur = self.data[off]
            cur = (cur & ~wm) | (value & wm)
            cur &= ~(value & self.w1cmask[off])
            self.data[off] = cur & 0xFF
        if offset < PCI_COMMAND + 2 and offset + len(data) > PCI_COMMAND and self.on_command:
            self.on_command(old_command, self.command)

    # --- fields ----------------------------------------------------------------------------

    @property
    def command(self) -> int:
        return int.from_bytes(self.data[PCI_COMMAND : PCI_COMMAND + 2], "little")

    @property
    def status(self) -> int:
        return int.from_bytes(self.data[PCI_STATUS : PCI_STATUS + 2], "little")

    def set_interrupt_status(self, asserted: bool) -> None:
        if asserted:
            self.data[PCI_STATUS] |= STATUS_INTERRUPT
        else:
            self.data[PCI_STATUS] &= ~STATUS_INTERRUPT & 0xFF

    @property
    def bus_master(self) -> bool:
        return bool(self.command & CMD_MASTER)

    @property
    def intx_disabled(self) -> bool:
        return bool(self.command & CMD_INTX_DISABLE)

    @property
    def msi_enabled(self) -> bool:
        off = self.msi_offset
        return off is not None and bool(self.data[off + 2] & MSI_FLAGS_ENABLE)
