"""The context descriptor an ELSP element carries, and the fields of the context image the
contract names (§4.2), read and written through graphics-memory callables.

The image is a GGTT object: page 0 is the per-process status page, page 1 the register state
as (MMIO address, value) pairs, so a register's value sits at an odd dword.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from devmodel.errors import DeviceError

from ..graphics_memory import GraphicsMemory

__all__ = [
    "GmReader",
    "GmWriter",
    "BadDescriptor",
    "ContextDescriptor",
    "RingContext",
    "read_ring_context",
    "write_ring_head",
    "read_ctx_timestamp",
    "write_ctx_timestamp",
    "PAGE_SIZE",
    "CONTEXT_MIN_PAGES",
]

GmReader = Callable[[int, int], bytes]  # (graphics address, length) -> bytes
GmWriter = Callable[[int, bytes], None]  # (graphics address, data)

PAGE_SIZE = 4096
CONTEXT_MIN_PAGES = 2  # the PPHWSP and the register-state page

# Descriptor low dword (gvt-gen8-reference §5.2)
DESC_VALID = 1 << 0
DESC_ADDRESSING_SHIFT = 3
DESC_ADDRESSING_MASK = 0x3 << DESC_ADDRESSING_SHIFT
DESC_PRIVILEGE = 1 << 8  # "PPGTT context": i915 sets it, GVT-g requires it
DESC_LRCA_MASK = 0xFFFFF000
ADDRESSING_LEGACY_32 = 1  # 3-level PPGTT
ADDRESSING_LEGACY_64 = 3  # 4-level PPGTT, PML4 in PDP0
ADDRESSING_MODES = (ADDRESSING_LEGACY_32, ADDRESSING_LEGACY_64)

# Register-state page: the value dwords (i915's CTX_* + 1).
CTX_CONTEXT_CONTROL = 0x03
CTX_RING_HEAD = 0x05
CTX_RING_TAIL = 0x07
CTX_RING_START = 0x09
CTX_RING_CTL = 0x0B
CTX_TIMESTAMP = 0x23
CTX_PDP_UDW = (0x31, 0x2D, 0x29, 0x25)  # PDP0..PDP3 upper dword
CTX_PDP_LDW = (0x33, 0x2F, 0x2B, 0x27)  # PDP0..PDP3 lower dword
_CTX_READ_DWORDS = 0x34  # the prefix that holds every field above

RING_HEAD_OFFSET_MASK = 0x001FFFFC  # bits 20:2 (31:21 are the wrap count)
RING_TAIL_OFFSET_MASK = 0x001FFFF8  # bits 20:3


class BadDescriptor(DeviceError):
    """An ELSP element the device refuses to run (the guest's mistake, logged, never an errno:
    the ELSP write is posted)."""


@dataclass(frozen=True)
class ContextDescriptor:
    low: int
    context_id: int

    @classmethod
    def from_dwords(cls, low: int, high: int) -> ContextDescriptor:
        return cls(low & 0xFFFFFFFF, high & 0xFFFFFFFF)

    @property
    def valid(self) -> bool:
        return bool(self.low & DESC_VALID)

    @property
    def addressing_mode(self) -> int:
        return (self.low & DESC_ADDRESSING_MASK) >> DESC_ADDRESSING_SHIFT

    @property
    def lrca(self) -> int:
        """The graphics address of the context image (page 0)."""
        return self.low & DESC_LRCA_MASK

    def check(self, memory: GraphicsMemory) -> None:
        """Raise BadDescriptor unless a valid element may run here."""
        if not self.valid:
            raise BadDescriptor("element 0 is not valid", descriptor=self.low)
        if not self.low & DESC_PRIVILEGE:
            raise BadDescriptor("GGTT (non-PPGTT) context submitted", descriptor=self.low)
        if self.addressing_mode not in ADDRESSING_MODES:
            raise BadDescriptor("unsupported addressing mode", mode=self.addressing_mode, descriptor=self.low)
        if not memory.contains(self.lrca, CONTEXT_MIN_PAGES * PAGE_SIZE):
            raise BadDescriptor("context image outside the vGPU's graphics memory", lrca=self.lrca)


@dataclass(frozen=True)
class RingContext:
    """The ring-context fields of a context image, as read at submission."""

    lrca: int
    context_control: int
    ring_head: int
    ring_tail: int
    ring_start: int
    ring_ctl: int
    pdps: tuple[int, int, int, int]  # PDP0..PDP3; in 4-level mode PDP0 is the PML4

    @property
    def head(self) -> int:
        return self.ring_head & RING_HEAD_OFFSET_MASK

    @property
    def tail(self) -> int:
        return self.ring_tail & RING_TAIL_OFFSET_MASK


def _state_page(lrca: int) -> int:
    return lrca + PAGE_SIZE


def read_ring_context(read: GmReader, lrca: int) -> RingContext:
    raw = read(_state_page(lrca), _CTX_READ_DWORDS * 4)
    d = struct.unpack(f"<{_CTX_READ_DWORDS}I", raw)
    p = [d[hi] << 32 | d[lo] for hi, lo in zip(CTX_PDP_UDW, CTX_PDP_LDW, strict=True)]
    return RingContext(
        lrca,
        d[CTX_CONTEXT_CONTROL],
        d[CTX_RING_HEAD],
        d[CTX_RING_TAIL],
        d[CTX_RING_START],
        d[CTX_RING_CTL],
        (p[0], p[1], p[2], p[3]),
    )


def write_ring_head(write: GmWriter, lrca: int, head: int) -> None:
    write(_state_page(lrca) + CTX_RING_HEAD * 4, struct.pack("<I", head & 0xFFFFFFFF))


def read_ctx_timestamp(read: GmReader, lrca: int) -> int:
    value: int = struct.unpack("<I", read(_state_page(lrca) + CTX_TIMESTAMP * 4, 4))[0]
    return value


def write_ctx_timestamp(write: GmWriter, lrca: int, value: int) -> None:
    write(_state_page(lrca) + CTX_TIMESTAMP * 4, struct.pack("<I", value & 0xFFFFFFFF))
