"""BAR2, the aperture: byte x is graphics address x, reached through the shadow GGTT.

Through a non-present entry, or one that falls back to scratch, reads give 0 and writes are
dropped. A window without an fd could only be reached by DMA messages, which a request
handler must not wait for (QEMU's vCPU holds the lock QEMU serves DMA under), so such pages
behave like scratch too and are logged. A GEN8 GGTT entry has no writable bit, so the
window's protection is checked here, per page: reads need PROT_READ, writes PROT_WRITE.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from devmodel.device.dma import PROT_READ, PROT_WRITE, DmaMap

from .gtt.ggtt import Ggtt

__all__ = ["Aperture"]

log = logging.getLogger(__name__)


class Aperture:
    def __init__(self, ggtt: Ggtt, dma: DmaMap, size: int) -> None:
        self.ggtt = ggtt
        self.dma = dma
        self.size = size
        self._warned_no_fd = False

    def _pages(self, offset: int, count: int, prot: int) -> Iterator[tuple[memoryview | None, int, int, int]]:
        """(page memoryview, or None where the access does not reach memory; offset in page,
        length, offset in the access)."""
        done = 0
        while done < count:
            gma = offset + done
            in_page = gma & 0xFFF
            n = min(count - done, 4096 - in_page)
            hfn = self.ggtt.shadow_hfn(gma >> 12)
            page = None
            if hfn is not None:
                window = self.dma.hfn_window(hfn)
                if window is not None and window.prot & prot == prot:
                    page = self.dma.page(hfn)
                    if page is None and not self._warned_no_fd:
                        self._warned_no_fd = True
                        log.warning("aperture: graphics page %#x is in a DMA window without an fd; "
                                    "treated as scratch", gma)
            yield page, in_page, n, done
            done += n

    def read(self, offset: int, count: int) -> bytes:
        out = bytearray(count)
        for page, in_page, n, at in self._pages(offset, count, PROT_READ):
            if page is not None:
                out[at : at + n] = page[in_page : in_page + n]
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        for page, in_page, n, at in self._pages(offset, len(data), PROT_WRITE):
            if page is not None:
                page[in_page : in_page + n] = data[at : at + n]
