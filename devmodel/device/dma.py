"""The DMA map: the client's windows of guest memory and the host frames behind them.

Each DMA_MAP window with an fd is mmap'd once (the fd is closed right after); device code
reaches guest memory through memoryviews of those mappings, found by a bisect on the window
starts. A window without an fd is reached through a :class:`DmaChannel` (DMA_READ/DMA_WRITE
messages), which only code running outside a request handler may use.

Host frames (``hfn``) number every page the device can reach: each window gets a fresh,
never-reused run of frame numbers when it is mapped, and pages the device allocates itself
(scratch pages, shadow tables) live in a separate range. A shadow entry holds an hfn; the
engine resolves it with :meth:`DmaMap.page` without looking at guest tables again.
"""

from __future__ import annotations

import bisect
import logging
import mmap
import os
import stat
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import DmaFault, DmaOverlap, MalformedRequest, NoSpace

__all__ = [
    "DmaChannel",
    "DmaListener",
    "DmaMap",
    "DmaWindow",
    "PROT_READ",
    "PROT_WRITE",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "DEVICE_HFN_BASE",
]

log = logging.getLogger(__name__)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PROT_READ = 0x1
PROT_WRITE = 0x2
# Window frames count up from 1; device-owned frames start here. Both fit the 34 frame bits
# of a GEN8 entry (bits 45:12).
DEVICE_HFN_BASE = 1 << 33
MAX_WINDOW_SIZE = 1 << 43  # 8 TiB, libvfio-user's cap


class DmaChannel(Protocol):
    """DMA through messages, for windows without an fd (implemented by the transport)."""

    def dma_read(self, iova: int, count: int) -> bytes: ...

    def dma_write(self, iova: int, data: bytes) -> None: ...


class DmaListener(Protocol):
    def on_dma_map(self, window: DmaWindow) -> None: ...

    def on_dma_unmap(self, window: DmaWindow) -> None: ...


@dataclass(eq=False)
class _FileMapping:
    """One shared mapping of a whole file that any number of windows point into.

    Python's mmap keeps a duplicate of the fd for its lifetime, so a mapping per window would
    hold an fd per window: a vIOMMU guest that maps page by page would run the process out of
    fds. Mapping each file once (QEMU passes one memfd for all of RAM) bounds that by files.
    """

    key: tuple[int, int, bool]
    mm: mmap.mmap
    view: memoryview
    refs: int = 0


@dataclass(eq=False)
class DmaWindow:
    iova: int
    size: int
    prot: int
    offset: int
    hfn_base: int
    mm: mmap.mmap | None = None
    view: memoryview | None = None  # None: reachable only through the channel
    inode: tuple[int, int] | None = field(default=None, repr=False)
    file: _FileMapping | None = field(default=None, repr=False)

    @property
    def end(self) -> int:
        return self.iova + self.size

    @property
    def first_gfn(self) -> int:
        return self.iova >> PAGE_SHIFT

    @property
    def page_count(self) -> int:
        return self.size >> PAGE_SHIFT

    def contains(self, iova: int, size: int = 1) -> bool:
        return self.iova <= iova and iova + size <= self.end


class DmaMap:
    def __init__(self, max_windows: int = 65535) -> None:
        self.max_windows = max_windows
        self._starts: list[int] = []
        self._windows: list[DmaWindow] = []
        self._by_hfn: list[DmaWindow] = []  # ordered by hfn_base (allocation order)
        self._hfn_starts: list[int] = []
        self._next_hfn = 1
        self._device_pages: dict[int, memoryview] = {}
        self._next_device_hfn = DEVICE_HFN_BASE
        self._files: dict[tuple[int, int, bool], _FileMapping] = {}
        self.listeners: list[DmaListener] = []
        self.channel: DmaChannel | None = None

    # --- the table -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._windows)

    @property
    def windows(self) -> tuple[DmaWindow, ...]:
        return tuple(self._windows)

    def add(self, iova: int, size: int, prot: int, fd: int | None = None, offset: int = 0) -> DmaWindow:
        """Map a window. Takes ownership of ``fd`` only on success (it is closed once mapped);
        on failure the caller closes it."""
        if iova & (PAGE_SIZE - 1) or size & (PAGE_SIZE - 1) or offset & (PAGE_SIZE - 1):
            raise MalformedRequest("DMA window not page aligned", iova=iova, size=size, offset=offset)
        if size == 0:
            # An empty window would share its hfn_base with the next one and confuse _drop.
            raise MalformedRequest("empty DMA window", iova=iova)
        if size > MAX_WINDOW_SIZE:
            raise NoSpace("DMA window too large", size=size)
        i = bisect.bisect_right(self._starts, iova)
        if (i and self._windows[i - 1].end > iova) or (i < len(self._windows) and self._windows[i].iova < iova + size):
            dup = self._windows[i - 1] if i else None
            if dup is not None and dup.iova == iova and dup.size == size and dup.prot == prot and dup.offset == offset:
                # An exact duplicate (same file, or no file on both) is a no-op (libvfio-user).
                if fd is None and dup.inode is None:
                    return dup
                if fd is not None and dup.inode == _inode(fd):
                    os.close(fd)
                    return dup
            raise DmaOverlap("DMA window overlaps an existing one", iova=iova, size=size)
        if len(self._windows) >= self.max_windows:
            raise NoSpace("too many DMA windows", count=len(self._windows))
        # Checked before the fd is mapped and closed: a failure leaves the fd to the caller.
        if self._next_hfn + (size >> PAGE_SHIFT) >= DEVICE_HFN_BASE:
            raise NoSpace("host frame numbers exhausted")
        mm = view = inode = file = None
        if fd is not None:
            inode = _inode(fd)
            file = self._map_file(fd, offset, size, bool(prot & PROT_WRITE))
            if file is not None:
                file.refs += 1
                view = file.view[offset : offset + size]
            else:
                # Not a plain file (no size to map whole): a mapping of its own.
                access = mmap.PROT_READ | (mmap.PROT_WRITE if prot & PROT_WRITE else 0)
                try:
                    mm = mmap.mmap(fd, size, mmap.MAP_SHARED, access, offset=offset)
                except (OSError, ValueError, OverflowError) as exc:
                    raise DmaFault(f"cannot map the window's fd: {exc}", iova=iova, size=size) from exc
                view = memoryview(mm)
            os.close(fd)
            if not prot & PROT_WRITE:
                view = view.toreadonly()
        window = DmaWindow(iova, size, prot, offset, self._next_hfn, mm, view, inode, file)
        self._next_hfn += window.page_count
        self._starts.insert(i, iova)
        self._windows.insert(i, window)
        self._by_hfn.append(window)
        self._hfn_starts.append(window.hfn_base)
        for listener in self.listeners:
            listener.on_dma_map(window)
        return window

    def _map_file(self, fd: int, offset: int, size: int, writable: bool) -> _FileMapping | None:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise DmaFault(f"bad fd: {exc}") from exc
        if not stat.S_ISREG(st.st_mode) or st.st_size <= 0:
            return None
        if offset + size > st.st_size:
            raise DmaFault("DMA window extends past the end of its file", offset=offset, size=size)
        key = (st.st_dev, st.st_ino, writable)
        file = self._files.get(key)
        if file is not None and len(file.view) >= offset + size:
            return file
        access = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        try:
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, access)
        except (OSError, ValueError, OverflowError) as exc:
            raise DmaFault(f"cannot map the window's fd: {exc}") from exc
        # If the file grew, the old mapping stays alive through the windows that use it.
        file = _FileMapping(key, mm, memoryview(mm))
        self._files[key] = file
        return file

    def remove_range(self, iova: int, size: int) -> list[DmaWindow]:
        """Unmap every window inside [iova, iova + size). A window that straddles an edge
        makes the whole request fail before anything changes."""
        end = iova + size
        lo = bisect.bisect_right(self._starts, iova)
        if lo and self._windows[lo - 1].end > iova:
            lo -= 1
        hi = bisect.bisect_left(self._starts, end)
        victims = self._windows[lo:hi]
        for w in victims:
            if w.iova < iova or w.end > end:
                raise MalformedRequest("unmap range cuts a DMA window", iova=iova, size=size, window=w.iova)
        for w in victims:
            self._drop(w)
        return victims

    def remove_all(self) -> list[DmaWindow]:
        victims = list(self._windows)
        for w in victims:
            self._drop(w)
        return victims

    def _drop(self, window: DmaWindow) -> None:
        # Listeners first: they re-point shadow entries and drop their views of the window.
        for listener in self.listeners:
            listener.on_dma_unmap(window)
        i = bisect.bisect_left(self._starts, window.iova)
        del self._starts[i]
        del self._windows[i]
        j = bisect.bisect_left(self._hfn_starts, window.hfn_base)
        del self._hfn_starts[j]
        del self._by_hfn[j]
        if window.view is not None:
            window.view.release()
            window.view = None
        file, window.file = window.file, None
        if file is not None:
            file.refs -= 1
            if file.refs == 0:
                if self._files.get(file.key) is file:
                    del self._files[file.key]
                file.view.release()
                self._close_mapping(file.mm, window)
        if window.mm is not None:
            self._close_mapping(window.mm, window)
            window.mm = None

    @staticmethod
    def _close_mapping(mm: mmap.mmap, window: DmaWindow) -> None:
        try:
            mm.close()
        except BufferError:
            # Somebody still holds a view; the mapping goes when it does. The window is out
            # of the table, so nothing new reaches it.
            log.error("DMA window %#x+%#x still has views at unmap", window.iova, window.size)

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

    def page(self, hfn: int) -> memoryview | None:
        """The 4 KiB page behind a host frame, or None if it is gone or has no mapping."""
        if hfn >= DEVICE_HFN_BASE:
            return self._device_pages.get(hfn)
        w = self.hfn_window(hfn)
        if w is None or w.view is None:
            return None
        off = (hfn - w.hfn_base) << PAGE_SHIFT
        return w.view[off : off + PAGE_SIZE]

    def view(self, iova: int, size: int, prot: int = PROT_READ) -> memoryview:
        """Direct access to guest memory inside one fd-backed window."""
        w = self.find(iova, size)
        if w is None or w.view is None:
            raise DmaFault("no mapped DMA window covers the access", iova=iova, size=size)
        if prot & ~w.prot:
            raise DmaFault("DMA window does not permit the access", iova=iova, prot=prot)
        off = iova - w.iova
        return w.view[off : off + size]

    def read(self, iova: int, size: int) -> bytes:
        w = self.find(iova, size)
        if w is not None and w.view is None and w.prot & PROT_READ and self.channel is not None:
            return self.channel.dma_read(iova, size)
        return bytes(self.view(iova, size, PROT_READ))

    def write(self, iova: int, data: bytes) -> None:
        w = self.find(iova, len(data))
        if w is not None and w.view is None and w.prot & PROT_WRITE and self.channel is not None:
            self.channel.dma_write(iova, data)
            return
        self.view(iova, len(data), PROT_WRITE)[:] = data

    # --- device-owned frames ---------------------------------------------------------------

    def alloc_device_page(self) -> tuple[int, memoryview]:
        hfn = self._next_device_hfn
        self._next_device_hfn += 1
        page = memoryview(bytearray(PAGE_SIZE))
        self._device_pages[hfn] = page
        return hfn, page

    def free_device_page(self, hfn: int) -> None:
        self._device_pages.pop(hfn, None)


def _inode(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino
