"""Regions: what a vfio-user region index maps to inside the device."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..errors import OutOfRange

__all__ = ["RegionHandler", "Region", "RegionFlags"]


class RegionFlags:
    """The region flags the device declares (the wire values of VFIO_REGION_INFO_FLAG_*)."""

    READ = 0x1
    WRITE = 0x2
    MMAP = 0x4


class RegionHandler(Protocol):
    def read(self, offset: int, count: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...


@dataclass
class Region:
    """One region. ``mmap_fd`` with ``sparse_areas`` (offset, size) lets the client map parts
    of it; everything else is trapped and reaches ``handler``."""

    index: int
    size: int
    handler: RegionHandler | None = None
    flags: int = RegionFlags.READ | RegionFlags.WRITE
    mmap_fd: int | None = None
    mmap_offset: int = 0
    sparse_areas: list[tuple[int, int]] = field(default_factory=list)

    def check(self, offset: int, count: int) -> None:
        if offset + count > self.size or offset > self.size:
            raise OutOfRange("access past the end of the region", region=self.index, offset=offset, count=count)

    @property
    def wire_flags(self) -> int:
        flags = self.flags & (RegionFlags.READ | RegionFlags.WRITE)
        if self.mmap_fd is not None:
            flags |= RegionFlags.MMAP
        return flags if self.size else 0
