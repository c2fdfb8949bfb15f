"""How the engines reach graphics memory: through the shadow GGTT, or through a context's
shadow PPGTT, and nothing else (contract §3, §4.2).

Both address spaces answer one question, :meth:`AddressSpace.spans`: the range
[gma, gma + size) as spans of host memory (views of contiguous frames, one per window) or
scratch (view None: reads give zeros, writes are dropped). A write asks for writable views,
so a page whose DMA window does not permit writing, or whose shadow PPGTT entry is read-only,
is scratch for it: a GGTT entry has no RW bit, the window's protection is the only one.

Views are taken for one piece of work and let go before the step ends: a step never keeps a
view past a point where the DMA map may change (docs/engines.md, "Quiesce").
"""

from __future__ import annotations

from array import array
from typing import NamedTuple, Protocol

from devmodel.device.dma import PAGE_SHIFT, PAGE_SIZE, DmaMap

from .ggtt import GGTT_ENTRY_COUNT, Ggtt
from .mm import ShadowMm
from .walker import ADDRESS_BITS, ShadowWalker

__all__ = [
    "AddressSpace",
    "GgttSpace",
    "PpgttSpace",
    "SpaceSource",
    "Span",
    "read",
    "write",
]

_PAGE_MASK = PAGE_SIZE - 1
_GGTT_LIMIT = GGTT_ENTRY_COUNT << PAGE_SHIFT


class Span(NamedTuple):
    start: int  # graphics address
    end: int
    view: memoryview | None  # the bytes [start, end), or None for scratch


class AddressSpace(Protocol):
    def spans(self, gma: int, size: int, write: bool) -> list[Span]:
        """[gma, gma + size) in order, as host views or scratch."""
        ...


def _frames(dma: DmaMap, gma: int, size: int, hfn: int, write: bool, out: list[Span]) -> None:
    """Append spans for ``size`` bytes from ``gma``, held by consecutive frames from ``hfn``."""
    end = gma + size
    off = gma & _PAGE_MASK
    while gma < end:
        want = (off + end - gma + _PAGE_MASK) >> PAGE_SHIFT
        view = dma.pages(hfn, want, write)
        take = min(end - gma, (PAGE_SIZE if view is None else len(view)) - off)
        out.append(Span(gma, gma + take, None if view is None else view[off : off + take]))
        gma += take
        hfn += (off + take) >> PAGE_SHIFT
        off = (off + take) & _PAGE_MASK


class GgttSpace:
    """The GGTT as the engines see it: the shadow entries, scratch for everything else
    (absent, pending, unbacked entries, and addresses past the 4 GiB)."""

    def __init__(self, ggtt: Ggtt, dma: DmaMap) -> None:
        self.ggtt = ggtt
        self.dma = dma

    def spans(self, gma: int, size: int, write: bool) -> list[Span]:
        out: list[Span] = []
        end = gma + size
        shadow_hfn = self.ggtt.shadow_hfn
        while gma < end:
            if gma >= _GGTT_LIMIT:
                out.append(Span(gma, end, None))
                break
            # A run of graphics pages on consecutive host frames (or of scratch pages).
            hfn = shadow_hfn(gma >> PAGE_SHIFT)
            expect = None if hfn is None else hfn + 1
            stop = min((gma | _PAGE_MASK) + 1, end)
            while stop < end and stop < _GGTT_LIMIT:
                nxt = shadow_hfn(stop >> PAGE_SHIFT)
                if nxt != expect:
                    break
                expect = None if nxt is None else nxt + 1
                stop = min(stop + PAGE_SIZE, end)
            if hfn is None:
                out.append(Span(gma, stop, None))
            else:
                _frames(self.dma, gma, stop - gma, hfn, write, out)
            gma = stop
        return out

    def read(self, gma: int, size: int) -> bytes:
        return read(self, gma, size)

    def write(self, gma: int, data: bytes) -> None:
        write(self, gma, data)


class PpgttSpace:
    """One context's PPGTT, through its shadow (pinned for as long as the workload runs).
    Addresses past the context's address space (4 GiB for 3-level, 256 TiB for 4-level) are
    scratch."""

    def __init__(self, walker: ShadowWalker, mm: ShadowMm) -> None:
        self.walker = walker
        self.dma = walker.dma
        self.mm = mm
        self.limit = 1 << ADDRESS_BITS[mm.kind]

    def spans(self, gma: int, size: int, write: bool) -> list[Span]:
        out: list[Span] = []
        end = gma + size
        inside = min(end, self.limit)
        if gma < inside:
            for run in self.walker.runs(self.mm, gma, inside - gma):
                if run.hfn is None or (write and not run.writable):
                    out.append(Span(run.gma, run.gma + run.size, None))
                else:
                    _frames(self.dma, run.gma, run.size, run.hfn, write, out)
        if end > max(gma, inside):
            out.append(Span(max(gma, inside), end, None))
        return out


def read(space: AddressSpace, gma: int, size: int) -> bytes:
    parts = [bytes(s.end - s.start) if s.view is None else bytes(s.view) for s in space.spans(gma, size, False)]
    return parts[0] if len(parts) == 1 else b"".join(parts)


def write(space: AddressSpace, gma: int, data: bytes) -> None:
    for s in space.spans(gma, len(data), True):
        if s.view is not None:
            s.view[:] = data[s.start - gma : s.end - gma]


class SpaceSource:
    """A batch in an address space as the scanner reads it (a ``cmd.DwordSource``): dwords
    from ``address``, a page at a time; the last page read is kept for the next command, so
    a PPGTT batch scanned as it runs costs one walk per page, not per command. The copy is
    taken when the page is first read, as an engine's prefetch would."""

    def __init__(self, space: AddressSpace, address: int, limit: int = 1 << 48) -> None:
        self.space = space
        self.address = address
        self.limit = limit  # graphics addresses end here
        self._page = -1
        self._dwords = array("I")

    def forget(self) -> None:
        """Drop the kept page (the guest may have changed it since)."""
        self._page = -1

    def read(self, pos: int, count: int) -> array[int]:
        gma = self.address + 4 * pos
        count = max(0, min(count, (self.limit - gma) // 4))
        page = gma >> PAGE_SHIFT
        if page == self._page and (gma & _PAGE_MASK) + 4 * count <= PAGE_SIZE:
            first = (gma & _PAGE_MASK) >> 2
            return self._dwords[first : first + count]
        if count * 4 <= PAGE_SIZE - (gma & _PAGE_MASK) and count:
            self._page = page
            self._dwords = array("I", read(self.space, page << PAGE_SHIFT, PAGE_SIZE))
            first = (gma & _PAGE_MASK) >> 2
            return self._dwords[first : first + count]
        return array("I", read(self.space, gma, 4 * count))
