"""BAR2, the aperture: byte x is graphics address x, reached through the shadow GGTT.

Through a non-present entry, or one that falls back to scratch, reads give 0 and writes are
dropped. The window's protection holds here too: a write-only window reads 0 and a read-only
one drops writes (a GEN8 GGTT entry has no writable bit, so this is where a read-only
window is honoured). A window without an fd could only be reached by DMA messages, which device
code never waits for, so such pages behave like scratch too. Each is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from devmodel.device.dma import DmaMap

from .gtt.ggtt import Ggtt

__all__ = ["Aperture"]

log = logging.getLogger(__name__)


class Aperture:
    def __init__(self, ggtt: Ggtt, dma: DmaMap, size: int) -> None:
        self.ggtt = ggtt
        self.dma = dma
        self.size = size
        self._warned_unreachable = False

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
        out = bytearray(count)
        for page, in_page, n, at in self._pages(offset, count, False):
            if page is not None:
                out[at : at + n] = page[in_page : in_page + n]
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        for page, in_page, n, at in self._pages(offset, len(data), True):
            if page is not None:
                page[in_page : in_page + n] = data[at : at + n]
