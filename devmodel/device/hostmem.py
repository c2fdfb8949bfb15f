"""One DMA window's own mapping of its fd, and how it is revoked.

Python memoryviews handed out by the DMA map (and slices of them) cannot be invalidated from
Python, and the vfio-user spec requires every use of a window to stop before its DMA_UNMAP is
answered. So each window maps its part of the file itself (libc ``mmap``, which keeps no fd,
unlike Python's ``mmap.mmap``), and unmapping the window replaces those addresses in place with
private anonymous memory (``MAP_FIXED``): a view still held reads zeros and its writes land in
throw-away memory, never in guest memory. The addresses are returned to the system
(``munmap``) when the last view of them is gone, which a finalizer on the buffer's owner sees;
in the usual case, no view held, that is at once and no replacement is needed.

The mapping is aligned outward to the file's block size, so hugetlbfs files (whose mappings
must be huge-page aligned) work for windows that start inside a huge page; the window's view
covers only the window.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import mmap
import os
import stat
import weakref

from ..errors import DeviceError, DmaFault, NoSpace

__all__ = ["MAX_SPAN", "FileInfo", "HostMapping", "file_info"]

log = logging.getLogger(__name__)

PAGE_SIZE = mmap.PAGESIZE
# Not exported by Python's mmap module before 3.13; the Linux values (x86-64, arm64).
_MAP_FIXED = 0x10
_MAP_NORESERVE = 0x4000
_MAP_REPLACE = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED | _MAP_NORESERVE
# Largest mapping: an 8 TiB window plus a huge-page granule at each end.
MAX_SPAN = (1 << 43) + (2 << 30)
# Guard pages: with DEVMODEL_DMA_GUARD=1 in the environment (the tests set it), every window's
# mapping sits between two inaccessible (PROT_NONE) regions, so an access that strays past a
# window, from Python through ctypes or from the compiled accelerator, kills the process at
# once instead of reading or writing whatever lies next to it. Off by default: each guarded
# window costs two more kernel mappings, and vm.max_map_count bounds them.
GUARD_ENV = "DEVMODEL_DMA_GUARD"
GUARD_SIZE = 64 << 10
_PROT_NONE = 0  # not in Python's mmap module
_MAP_GUARD = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


class _Span(ctypes.Array):  # type: ignore[type-arg]
    """The buffer owner of one mapping. One fixed length for every mapping (views are sliced
    to the window), because ctypes caches an array type per length forever."""

    _type_ = ctypes.c_ubyte
    _length_ = MAX_SPAN


def _munmap(addr: int, length: int) -> None:
    if _libc.munmap(addr, length) != 0:
        log.error("munmap(%#x, %#x) failed: %s", addr, length, os.strerror(ctypes.get_errno()))


class FileInfo:
    """What the DMA map needs to know about a DMA_MAP fd before mapping it."""

    def __init__(self, st: os.stat_result, shrink_sealed: bool) -> None:
        self.regular = stat.S_ISREG(st.st_mode)
        self.size = st.st_size
        self.inode = (st.st_dev, st.st_ino)
        blk = st.st_blksize
        # hugetlbfs reports its huge page size here; anything odd falls back to a page.
        self.granule = blk if PAGE_SIZE <= blk <= 1 << 30 and blk & (blk - 1) == 0 else PAGE_SIZE
        # Only a regular file can be truncated under a mapping (SIGBUS on the next access).
        self.shrinkable = self.regular and not shrink_sealed


def file_info(fd: int) -> FileInfo:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise DmaFault(f"bad fd: {exc}") from exc
    try:
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        seals = 0  # a file system without seals
    return FileInfo(st, bool(seals & fcntl.F_SEAL_SHRINK))


class HostMapping:
    """``size`` bytes of ``fd`` from ``offset``, shared, as :attr:`view` (read-only unless
    ``writable``) and :attr:`read_view` (always read-only)."""

    def __init__(self, fd: int, offset: int, size: int, writable: bool, granule: int = PAGE_SIZE) -> None:
        start = offset & ~(granule - 1)
        length = (offset + size - start + granule - 1) & ~(granule - 1)
        if length > MAX_SPAN:
            raise DmaFault("DMA window too large to map", size=size)
        self.prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        guard = GUARD_SIZE if os.environ.get(GUARD_ENV) == "1" else 0
        if guard:
            base = _libc.mmap(None, length + 2 * guard, _PROT_NONE, _MAP_GUARD, -1, 0)
            if base is None or base == _MAP_FAILED:
                raise NoSpace("cannot reserve a guarded DMA window", size=size)
            addr = _libc.mmap(base + guard, length, self.prot, mmap.MAP_SHARED | _MAP_FIXED, fd, start)
        else:
            addr = _libc.mmap(None, length, self.prot, mmap.MAP_SHARED, fd, start)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            if guard:
                _munmap(base, length + 2 * guard)
            # ENOMEM: out of address space or of the kernel's mappings per process.
            cls: type[DeviceError] = NoSpace if err == errno.ENOMEM else DmaFault
            raise cls(f"cannot map the window's fd: {os.strerror(err)}", offset=offset, size=size)
        self.addr: int = addr
        self.length = length
        self.guard = guard
        span = _Span.from_address(addr)
        # atexit=False: at interpreter exit a view may still be alive; the process is going.
        weakref.finalize(span, _munmap, addr - guard, length + 2 * guard).atexit = False
        self._owner = weakref.ref(span)
        whole = memoryview(span).cast("B")
        view = whole[offset - start : offset - start + size]
        whole.release()
        # Both kept, so a read costs one slice: reads never get a writable page.
        self.read_view: memoryview | None = view.toreadonly()
        self.view: memoryview | None = view if writable else self.read_view
        self.revoked = False

    def revoke(self) -> bool:
        """Cut every view off guest memory. True when no view was left (the addresses are
        unmapped now); False when one is still held (they go when it does)."""
        views = (self.view, self.read_view)
        self.view = self.read_view = None
        for view in views:
            if view is not None:
                try:
                    view.release()
                except BufferError:
                    pass  # something holds a buffer of this very view; replaced below
        if self._owner() is None:
            return True  # ours was the last view: the finalizer has unmapped it
        if not self.revoked:
            self.revoked = True
            addr = _libc.mmap(self.addr, self.length, self.prot, _MAP_REPLACE, -1, 0)
            if addr != self.addr:
                # Out of memory or of mappings (vm.max_map_count): the held view still
                # reaches guest memory until it is dropped.
                log.error("could not revoke the mapping at %#x: %s", self.addr, os.strerror(ctypes.get_errno()))
        return False

    @property
    def alive(self) -> bool:
        """Whether the addresses are still mapped (a view of them exists)."""
        return self._owner() is not None
