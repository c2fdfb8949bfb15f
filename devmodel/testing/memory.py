"""Guest RAM for tests and scripts: a memfd, mapped here, whose fd goes out with DMA_MAP."""

from __future__ import annotations

import fcntl
import mmap
import os

__all__ = ["GuestMemory"]


class GuestMemory:
    """``size`` bytes of shared memory standing in for guest RAM at ``base`` (a gpa).

    Sealed against shrinking and growing, as QEMU's memfd backend is (``seal=on``), unless
    ``sealed`` is False (a file backend's memory, which the client could truncate)."""

    def __init__(self, size: int, base: int = 0, name: str = "guest-ram", sealed: bool = True) -> None:
        self.size = size
        self.base = base
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.fd, size)
        if sealed:
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
        self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)

    def dup_fd(self) -> int:
        """A fresh fd to hand over (the receiver closes its copy)."""
        return os.dup(self.fd)

    def read(self, gpa: int, size: int) -> bytes:
        off = gpa - self.base
        return self.mm[off : off + size]

    def write(self, gpa: int, data: bytes) -> None:
        off = gpa - self.base
        self.mm[off : off + len(data)] = data

    def contains(self, gpa: int, size: int) -> bool:
        return self.base <= gpa and gpa + size <= self.base + self.size

    def close(self) -> None:
        self.mm.close()
        os.close(self.fd)

    def __enter__(self) -> GuestMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
