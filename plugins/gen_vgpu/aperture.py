"""BAR2, the aperture: byte x is graphics address x, reached through the shadow GGTT.

Through a non-present entry, or one that falls back to scratch, reads give 0 and writes are
dropped. The window's protection holds here too: a write-only window reads 0 and a read-only
one drops writes (a GEN8 GGTT entry has no writable bit, so this is where a read-only
window is honoured). A window without an fd could only be reached by DMA messages, which device
code never waits for, so such pages behave like scratch too. Each is logged once.

Fences: an access inside the range of a valid fence register (0x100000 + 8 * i, as i915's
``i965_write_fence_reg`` writes them on GEN6+: low dword start address bits 31:12, bit 1 Y
tiling, bit 0 valid; high dword the last page's address bits 31:12 and pitch / 128 - 1 in
bits 11:0) sees the fenced surface linear: byte L of the range is byte L % pitch of row
L // pitch, found in the tiled memory (tiles.py's layouts; no bit-6 swizzling).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import NamedTuple

from devmodel.device.dma import DmaMap
from devmodel.device.registers import RegisterFile

from .gtt.ggtt import Ggtt
from .mmio.regs import FENCE_COUNT, FENCE_REG_BASE, FENCE_REG_STRIDE
from .tiles import Tiling, locate

__all__ = ["FENCE_VALID", "Aperture", "Fence", "decode_fence"]

log = logging.getLogger(__name__)


FENCE_VALID = 1 << 0  # of a fence's low dword (accel/dm_accel.c reads it too)
_FENCE_Y = 1 << 1
_FENCE_ADDRESS = 0xFFFFF000
_FENCE_PITCH = 0xFFF  # in the high dword: pitch / 128 - 1


class Fence(NamedTuple):
    start: int  # graphics address of the fenced range
    end: int  # exclusive
    tiling: Tiling
    pitch: int  # bytes


def decode_fence(lo: int, hi: int) -> Fence | None:
    """A fence register's two dwords, or None when it is not valid (or its range is empty)."""
    if not lo & FENCE_VALID:
        return None
    start = lo & _FENCE_ADDRESS
    end = (hi & _FENCE_ADDRESS) + 4096
    if end <= start:
        return None
    return Fence(start, end, Tiling.Y if lo & _FENCE_Y else Tiling.X, ((hi & _FENCE_PITCH) + 1) * 128)


class Aperture:
    def __init__(self, ggtt: Ggtt, dma: DmaMap, size: int, registers: RegisterFile | None = None) -> None:
        self.ggtt = ggtt
        self.dma = dma
        self.size = size
        self.registers = registers  # where the fence registers are; None: no fences
        self._warned_unreachable = False
        self._fence_raw: tuple[int, ...] = ()
        self._fences: list[Fence] = []

    def fences(self) -> list[Fence]:
        """The valid fences, from the registers' storage (plain registers: C may have written
        them); decoded again only when they changed."""
        rf = self.registers
        if rf is None:
            return []
        first = FENCE_REG_BASE >> 2
        raw = tuple(rf.dwords[first : first + FENCE_COUNT * FENCE_REG_STRIDE // 4])
        if raw != self._fence_raw:
            found = (decode_fence(raw[k], raw[k + 1]) for k in range(0, len(raw), FENCE_REG_STRIDE // 4))
            self._fences = [f for f in found if f is not None]
            self._fence_raw = raw
        return self._fences

    def _detiled(self, offset: int, count: int) -> Iterator[tuple[int, int, int]] | None:
        """(graphics address, length, offset in the access) pieces of an access that meets a
        fence; None when none does (the common case: one linear access)."""
        end = offset + count
        fences = [f for f in self.fences() if f.start < end and offset < f.end]
        if not fences:
            return None
        return self._pieces(offset, count, fences)

    def _pieces(self, offset: int, count: int, fences: list[Fence]) -> Iterator[tuple[int, int, int]]:
        done = 0
        while done < count:
            at = offset + done
            fence = next((f for f in fences if f.start <= at < f.end), None)
            if fence is None:
                # Linear up to the next fence's start.
                stop = min([f.start for f in fences if f.start > at] + [offset + count])
                yield at, stop - at, done
                done += stop - at
                continue
            linear = at - fence.start
            y, x = divmod(linear, fence.pitch)
            moved, run = locate(fence.tiling, fence.pitch, x, y)
            n = min(count - done, run, fence.pitch - x, fence.end - at)
            yield fence.start + moved, n, done
            done += n

    def _pages(self, offset: int, count: int, write: bool) -> Iterator[tuple[memoryview | None, int, int, int]]:
        """(page memoryview or None, offset in page, length, offset in the access)."""
        done = 0
        while done < count:
            gma = offset + done
            in_page = gma & 0xFFF
            n = min(count - done, 4096 - in_page)
            hfn = self.ggtt.shadow_hfn(gma >> 12)
            page = self.dma.page(hfn, write) if hfn is not None else None
            if page is None and hfn is not None and not self._warned_unreachable:
                self._warned_unreachable = True
                log.warning(
                    "aperture: graphics page %#x is in a DMA window without an fd or that does not permit "
                    "this %s; treated as scratch",
                    gma,
                    "write" if write else "read",
                )
            yield page, in_page, n, done
            done += n

    def read(self, offset: int, count: int) -> bytes:
        pieces = self._detiled(offset, count)
        if pieces is None:
            return self._read(offset, count)
        out = bytearray(count)
        for gma, n, at in pieces:
            out[at : at + n] = self._read(gma, n)
        return bytes(out)

    def write(self, offset: int, data: bytes | bytearray) -> None:
        pieces = self._detiled(offset, len(data))
        if pieces is None:
            self._write(offset, data)
            return
        view = memoryview(data)
        for gma, n, at in pieces:
            self._write(gma, view[at : at + n])

    def _read(self, offset: int, count: int) -> bytes:
        out = bytearray(count)
        for page, in_page, n, at in self._pages(offset, count, False):
            if page is not None:
                out[at : at + n] = page[in_page : in_page + n]
        return bytes(out)

    def _write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        for page, in_page, n, at in self._pages(offset, len(data), True):
            if page is not None:
                page[in_page : in_page + n] = data[at : at + n]
