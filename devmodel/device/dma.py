"""The DMA map: the client's windows of guest memory and the host frames behind them.

A window with an fd gets a mapping of its own (:mod:`.hostmem`; the fd is closed right after),
and device code reaches guest memory through memoryviews of it, found by a bisect on the
window starts. A window without an fd has frames but no memory the device can reach: device
code treats it as a fault (``read``/``write``/``view`` raise DmaFault, ``page`` is None), so no
device work ever waits on a DMA_READ/DMA_WRITE message.

A window's READ/WRITE protection holds for every access: ``view``, ``read``, ``write`` and
``page`` refuse what it does not permit, and a read gets a read-only view.

Unmapping a window calls the listeners (which re-point their shadow entries), revokes every
view of it (a held one reads zeros and writes nowhere), gives its frames back and bumps
:attr:`DmaMap.generation`, so work that resolved frames earlier can tell they may have moved.

Host frames (``hfn``, :mod:`.frames`) number every page the device can reach; a shadow entry
holds one and the engine resolves it with :meth:`DmaMap.page`.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import DmaFault, DmaOverlap, MalformedRequest, NoSpace, UnsafeMemory
from ..trace import event
from ..vfio_user.constants import MAX_DMA_MAPS
from .frames import (
    DEFAULT_MAX_DEVICE_PAGES,
    DEVICE_HFN_BASE,
    FIRST_WINDOW_HFN,
    HFN_LIMIT,
    ExtentAllocator,
    FramePool,
)
from .hostmem import HostMapping, file_info

DMA_MAP = event("dma_map", "iova %#x size %#x prot %d%s", "a DMA window mapped (DMA_MAP)")
DMA_UNMAP = event("dma_unmap", "iova %#x size %#x", "a DMA window unmapped (DMA_UNMAP, or the client gone)")

__all__ = [
    "DEVICE_HFN_BASE",
    "DEVICE_SLAB_PAGES",
    "MAX_WINDOW_SIZE",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "PROT_READ",
    "PROT_WRITE",
    "DmaListener",
    "DmaMap",
    "DmaWindow",
]

log = logging.getLogger(__name__)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
# Device pages are slices of slabs of this many pages, a frame always at the same place in
# its slab: a slab's address is looked up once for its 64 pages (the shadow PPGTT hands
# them to C by address), and a freed frame's memory waits for the frame's reuse. The device
# therefore keeps the most pages it ever held at once (at most its cap) rather than giving
# freed ones back to the allocator.
DEVICE_SLAB_PAGES = 64
_SLAB_SHIFT = DEVICE_SLAB_PAGES.bit_length() - 1
_ZERO_PAGE = bytes(PAGE_SIZE)
PROT_READ = 0x1
PROT_WRITE = 0x2
MAX_WINDOW_SIZE = 1 << 43  # 8 TiB, libvfio-user's cap


class DmaListener(Protocol):
    def on_dma_map(self, window: DmaWindow) -> None: ...

    def on_dma_unmap(self, window: DmaWindow) -> None: ...


@dataclass(eq=False)
class DmaWindow:
    iova: int
    size: int
    prot: int  # PROT_READ | PROT_WRITE as the client mapped it; shadow entries honour it too
    offset: int
    hfn_base: int
    mapping: HostMapping | None = field(default=None, repr=False)  # None: no fd
    inode: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def view(self) -> memoryview | None:
        """The whole window (read-only unless the window is writable); None without an fd
        or once unmapped."""
        return self.mapping.view if self.mapping is not None else None

    @property
    def end(self) -> int:
        return self.iova + self.size

    @property
    def first_gfn(self) -> int:
        return self.iova >> PAGE_SHIFT

    @property
    def page_count(self) -> int:
        return self.size >> PAGE_SHIFT

    @property
    def writable(self) -> bool:
        """Whether the device may write here (a shadow entry over it may be writable)."""
        return bool(self.prot & PROT_WRITE)

    def contains(self, iova: int, size: int = 1) -> bool:
        return self.iova <= iova and iova + size <= self.end


class DmaMap:
    """The windows of one device.

    ``max_windows``: the advertised ``max_dma_maps``. ``max_device_pages``: the cap on pages
    the device allocates itself. ``refuse_unsealed``: refuse (EPERM) an fd that is not sealed
    against shrinking instead of warning once.
    """

    def __init__(
        self,
        max_windows: int = MAX_DMA_MAPS,
        max_device_pages: int = DEFAULT_MAX_DEVICE_PAGES,
        refuse_unsealed: bool = False,
    ) -> None:
        self.max_windows = max_windows
        self.refuse_unsealed = refuse_unsealed
        self.generation = 0  # bumped by every unmap that removes a window
        self._starts: list[int] = []
        self._windows: list[DmaWindow] = []
        self._hfn_starts: list[int] = []  # live windows ordered by hfn_base
        self._by_hfn: list[DmaWindow] = []
        self._frames = ExtentAllocator(FIRST_WINDOW_HFN, DEVICE_HFN_BASE)
        self._device_frames = FramePool(DEVICE_HFN_BASE, max_device_pages, HFN_LIMIT)
        self._device_pages: dict[int, memoryview] = {}
        self._device_slabs: list[memoryview] = []  # slab k holds frames DEVICE_HFN_BASE + 64k...
        self._device_views: list[memoryview] = []  # frame DEVICE_HFN_BASE + k's page, made once
        self._warned_unsealed = False
        self.listeners: list[DmaListener] = []

    # --- the table -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._windows)

    @property
    def windows(self) -> tuple[DmaWindow, ...]:
        return tuple(self._windows)

    @property
    def free_window_frames(self) -> int:
        return self._frames.free_frames

    def add(
        self,
        iova: int,
        size: int,
        prot: int,
        fd: int | None = None,
        offset: int = 0,
        before_change: Callable[[], None] | None = None,
    ) -> DmaWindow:
        """Map a window. Takes ownership of ``fd`` only on success (it is closed once mapped);
        on failure the caller closes it, and nothing has changed. ``before_change`` runs once
        the request is known good, right before the table changes (the device's quiesce): a
        refused request cancels nothing."""
        if iova & (PAGE_SIZE - 1) or size & (PAGE_SIZE - 1) or offset & (PAGE_SIZE - 1):
            raise MalformedRequest("DMA window not page aligned", iova=iova, size=size, offset=offset)
        if size == 0:
            raise MalformedRequest("empty DMA window", iova=iova)
        if size > MAX_WINDOW_SIZE:
            raise NoSpace("DMA window too large", size=size)
        info = file_info(fd) if fd is not None else None
        i = bisect.bisect_right(self._starts, iova)
        if (i and self._windows[i - 1].end > iova) or (i < len(self._windows) and self._windows[i].iova < iova + size):
            dup = self._windows[i - 1] if i else None
            if dup is not None and (dup.iova, dup.size, dup.prot, dup.offset) == (iova, size, prot, offset):
                # An exact duplicate (same file, or no file on both) is a no-op (libvfio-user).
                if dup.inode == (info.inode if info is not None else None):
                    if fd is not None:
                        os.close(fd)
                    return dup
            raise DmaOverlap("DMA window overlaps an existing one", iova=iova, size=size)
        if len(self._windows) >= self.max_windows:
            raise NoSpace("too many DMA windows", count=len(self._windows), max=self.max_windows)
        # A window that permits nothing is not mapped: the device never touches it.
        maps = info is not None and bool(prot & (PROT_READ | PROT_WRITE))
        if info is not None and maps:
            if info.regular and offset + size > info.size:
                raise DmaFault("DMA window extends past the end of its file", offset=offset, size=size)
            if info.shrinkable:
                self._unsealed(iova, size)
        hfn_base = self._frames.alloc(size >> PAGE_SHIFT)
        mapping = None
        if info is not None and maps:
            assert fd is not None
            try:
                mapping = HostMapping(fd, offset, size, bool(prot & PROT_WRITE), info.granule)
            except DmaFault:
                self._frames.free(hfn_base, size >> PAGE_SHIFT)
                raise
        if before_change is not None:
            try:
                before_change()
            except BaseException:
                if mapping is not None:
                    mapping.revoke()
                self._frames.free(hfn_base, size >> PAGE_SHIFT)
                raise
        if fd is not None:
            os.close(fd)
        window = DmaWindow(iova, size, prot, offset, hfn_base, mapping, info.inode if info is not None else None)
        self._starts.insert(i, iova)
        self._windows.insert(i, window)
        j = bisect.bisect_left(self._hfn_starts, hfn_base)
        self._hfn_starts.insert(j, hfn_base)
        self._by_hfn.insert(j, window)
        for listener in self.listeners:
            listener.on_dma_map(window)
        if DMA_MAP.on:
            DMA_MAP(iova, size, prot, "" if mapping is not None else " (not mapped)")
        return window

    def _unsealed(self, iova: int, size: int) -> None:
        if self.refuse_unsealed:
            raise UnsafeMemory(
                "DMA_MAP fd is not sealed against shrinking (F_SEAL_SHRINK) and unsealed memory is refused",
                iova=iova,
                size=size,
            )
        if not self._warned_unsealed:
            self._warned_unsealed = True
            log.warning(
                "DMA window %#x+%#x: its fd is not sealed against shrinking; a client that truncates "
                "it kills this process with SIGBUS (--refuse-unsealed-memory refuses such fds)",
                iova,
                size,
            )

    def remove_range(
        self, iova: int, size: int, before_change: Callable[[], None] | None = None
    ) -> list[DmaWindow]:
        """Unmap every window inside [iova, iova + size). A window that straddles an edge
        makes the whole request fail before anything changes (``before_change`` included: it
        runs only when a window goes)."""
        end = iova + size
        lo = bisect.bisect_right(self._starts, iova)
        if lo and self._windows[lo - 1].end > iova:
            lo -= 1
        hi = bisect.bisect_left(self._starts, end)
        victims = self._windows[lo:hi]
        for w in victims:
            if w.iova < iova or w.end > end:
                raise MalformedRequest("unmap range cuts a DMA window", iova=iova, size=size, window=w.iova)
        if victims and before_change is not None:
            before_change()
        self._drop(victims, lo, hi)
        return victims

    def remove_all(self, before_change: Callable[[], None] | None = None) -> list[DmaWindow]:
        victims = list(self._windows)
        if victims and before_change is not None:
            before_change()
        self._drop(victims, 0, len(victims))
        return victims

    def _drop(self, victims: list[DmaWindow], lo: int, hi: int) -> None:
        """Unmap ``victims``, the windows at [lo, hi) of the table, as one change."""
        if not victims:
            return
        self.generation += 1
        if DMA_UNMAP.on:
            for w in victims:
                DMA_UNMAP(w.iova, w.size)
        # Listeners first: they re-point shadow entries while the windows are still in the
        # table; after them nothing refers to the frames, which can go back.
        for w in victims:
            for listener in self.listeners:
                listener.on_dma_unmap(w)
        del self._starts[lo:hi]
        del self._windows[lo:hi]
        if not self._windows:
            self._hfn_starts.clear()
            self._by_hfn.clear()
        elif len(victims) < 64:
            for w in victims:
                j = bisect.bisect_left(self._hfn_starts, w.hfn_base)
                del self._hfn_starts[j]
                del self._by_hfn[j]
        else:
            # Many at once: one pass instead of a memmove per window.
            gone = {id(w) for w in victims}
            self._by_hfn = [w for w in self._by_hfn if id(w) not in gone]
            self._hfn_starts = [w.hfn_base for w in self._by_hfn]
        if self._windows:
            for w in victims:
                self._frames.free(w.hfn_base, w.page_count)
        else:
            self._frames = ExtentAllocator(FIRST_WINDOW_HFN, DEVICE_HFN_BASE)  # all free again
        for w in victims:
            if w.mapping is not None and not w.mapping.revoke():
                log.warning(
                    "DMA window %#x+%#x: a view is still held at unmap; it reads zeros and its "
                    "writes are dropped until it is released",
                    w.iova,
                    w.size,
                )

    # --- lookups ---------------------------------------------------------------------------

    def find(self, iova: int, size: int = 1) -> DmaWindow | None:
        i = bisect.bisect_right(self._starts, iova) - 1
        if i >= 0:
            w = self._windows[i]
            if iova + size <= w.end:
                return w
        return None

    def gfn_to_hfn(self, gfn: int) -> int | None:
        """The host frame of a guest frame, or None when no window covers it."""
        iova = gfn << PAGE_SHIFT
        i = bisect.bisect_right(self._starts, iova) - 1
        if i >= 0:
            w = self._windows[i]
            if iova < w.end:
                return w.hfn_base + (gfn - w.first_gfn)
        return None

    def hfn_window(self, hfn: int) -> DmaWindow | None:
        j = bisect.bisect_right(self._hfn_starts, hfn) - 1
        if j >= 0:
            w = self._by_hfn[j]
            if hfn < w.hfn_base + w.page_count:
                return w
        return None

    def page(self, hfn: int, write: bool = False) -> memoryview | None:
        """The 4 KiB page behind a host frame, for reading (a read-only view) or for writing;
        None if it is gone, has no memory the device can reach, or its window does not permit
        the access."""
        if hfn >= DEVICE_HFN_BASE:
            page = self._device_pages.get(hfn)
            return page if write or page is None else page.toreadonly()
        found = self._window_view(hfn, write)
        if found is None:
            return None
        w, view = found
        off = (hfn - w.hfn_base) << PAGE_SHIFT
        return view[off : off + PAGE_SIZE]

    def _window_view(self, hfn: int, write: bool) -> tuple[DmaWindow, memoryview] | None:
        """The window holding a window frame and its view for the access, if it permits it."""
        w = self.hfn_window(hfn)
        if w is None or w.mapping is None or not w.prot & (PROT_WRITE if write else PROT_READ):
            return None
        view = w.mapping.view if write else w.mapping.read_view
        return None if view is None else (w, view)

    def pages(self, hfn: int, count: int, write: bool = False) -> memoryview | None:
        """Like :meth:`page`, for up to ``count`` consecutive frames from ``hfn`` at once: the
        view stops where the window (or a device page) ends, so it may hold fewer pages. An
        engine copying a run of contiguous frames takes one view per window, not per page."""
        if hfn >= DEVICE_HFN_BASE or count <= 1:
            return self.page(hfn, write)
        found = self._window_view(hfn, write)
        if found is None:
            return None
        w, view = found
        first = hfn - w.hfn_base
        last = min(first + count, w.page_count)
        return view[first << PAGE_SHIFT : last << PAGE_SHIFT]

    def view(self, iova: int, size: int, prot: int = PROT_READ) -> memoryview:
        """Direct access to guest memory inside one fd-backed window; read-only unless
        ``prot`` asks for PROT_WRITE."""
        w = self.find(iova, size)
        if w is None:
            raise DmaFault("no mapped DMA window covers the access", iova=iova, size=size)
        if prot & ~w.prot:
            raise DmaFault("DMA window does not permit the access", iova=iova, prot=prot, window_prot=w.prot)
        mapping = w.mapping
        view = None if mapping is None else mapping.view if prot & PROT_WRITE else mapping.read_view
        if view is None:
            raise DmaFault("DMA window has no fd: the device does not reach it", iova=iova, size=size)
        off = iova - w.iova
        return view[off : off + size]

    def read(self, iova: int, size: int) -> bytes:
        return bytes(self.view(iova, size, PROT_READ))

    def write(self, iova: int, data: bytes) -> None:
        self.view(iova, len(data), PROT_WRITE)[:] = data

    # --- device-owned frames ---------------------------------------------------------------

    @property
    def max_device_pages(self) -> int:
        return self._device_frames.cap

    @property
    def device_pages(self) -> int:
        return len(self._device_pages)

    def alloc_device_page(self) -> tuple[int, memoryview]:
        """A zeroed page of the device's own, with its frame; NoSpace at the cap."""
        (hfn,), (page,) = self.alloc_device_pages(1)
        return hfn, page

    def alloc_device_pages(self, count: int, fill: bytes | None = _ZERO_PAGE) -> tuple[list[int], list[memoryview]]:
        """``count`` pages of the device's own and their frames, each page holding ``fill`` (a
        page of bytes; zeros by default); NoSpace, and none taken, when the cap leaves fewer.
        ``fill`` None: a page reused holds what it last held (for a caller that writes it
        whole at once, before anything can read it)."""
        frames = self._device_frames.alloc_many(count)
        views = self._device_views
        while frames and max(frames) - DEVICE_HFN_BASE >= len(views):
            slab = memoryview(bytearray(DEVICE_SLAB_PAGES * PAGE_SIZE))
            self._device_slabs.append(slab)
            views += [slab[i : i + PAGE_SIZE] for i in range(0, len(slab), PAGE_SIZE)]
        out = [views[hfn - DEVICE_HFN_BASE] for hfn in frames]
        self._device_pages.update(zip(frames, out, strict=True))
        if fill is not None:
            for page in out:
                page[:] = fill
        return frames, out

    def device_slab(self, hfn: int) -> tuple[memoryview, int]:
        """The slab holding a device frame's page and the page's offset in it (the page may
        be free: only its place is told)."""
        k = hfn - DEVICE_HFN_BASE
        return self._device_slabs[k >> _SLAB_SHIFT], (k & (DEVICE_SLAB_PAGES - 1)) << PAGE_SHIFT

    @property
    def device_slab_count(self) -> int:
        """How many slabs :meth:`device_slab` has: frames below DEVICE_HFN_BASE + 64 times it
        have their place (slabs are never given back)."""
        return len(self._device_slabs)

    def free_device_page(self, hfn: int) -> None:
        if self._device_pages.pop(hfn, None) is not None:
            self._device_frames.free(hfn)
