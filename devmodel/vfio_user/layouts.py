"""One declaration of every vfio-user wire layout.

Each layout is a little-endian ``struct.Struct`` with no implicit padding, named after the C
struct of the spec without its prefix. Sizes are asserted at import; field offsets are derived
from the format so that a test can check them against the C declarations (cffi, packed).
Hot paths use ``Layout.struct`` and raw tuples; cold paths use the NamedTuple records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

__all__ = [
    "Layout",
    "HEADER",
    "VERSION",
    "DMA_MAP",
    "DMA_UNMAP",
    "DEVICE_INFO",
    "REGION_INFO",
    "CAP_HEADER",
    "SPARSE_MMAP",
    "SPARSE_MMAP_AREA",
    "IRQ_INFO",
    "IRQ_SET",
    "REGION_ACCESS",
    "DMA_ACCESS",
    "WRITE_MULTI",
    "WRITE_MULTI_ENTRY",
    "REGION_IO_FDS",
    "DEVICE_FEATURE",
    "MIG_DATA",
    "ALL_LAYOUTS",
    "Header",
    "VersionPrefix",
    "DmaMap",
    "DmaUnmap",
    "DeviceInfo",
    "RegionInfo",
    "CapHeader",
    "SparseMmap",
    "SparseMmapArea",
    "IrqInfo",
    "IrqSet",
    "RegionAccess",
    "DmaAccess",
    "WriteMulti",
    "WriteMultiEntry",
    "RegionIoFds",
    "DeviceFeature",
    "MigData",
]

R = TypeVar("R", bound=tuple[Any, ...])


class Layout(Generic[R]):
    """A packed C struct: its ``struct.Struct``, its record type and its field offsets."""

    def __init__(self, c_name: str, fmt: str, record: type[R], size: int) -> None:
        if not fmt.startswith("<"):
            raise ValueError("vfio-user layouts are little-endian and packed")
        self.c_name = c_name
        self.struct = struct.Struct(fmt)
        self.record = record
        self.size = self.struct.size
        assert self.size == size, f"{c_name}: {self.size} != {size}"
        # NamedTuple's class methods: typing has no bound that says "a NamedTuple class".
        fields: tuple[str, ...] = record._fields  # type: ignore[attr-defined]
        self._make: Callable[[Iterable[Any]], R] = record._make  # type: ignore[attr-defined]
        codes = [c for c in fmt[1:] if not c.isdigit()]
        assert len(codes) == len(fields), f"{c_name}: format and fields differ"
        offsets: dict[str, int] = {}
        off = 0
        for name, code in zip(fields, codes, strict=True):
            offsets[name] = off
            off += struct.calcsize("<" + code)
        self.offsets = offsets

    def unpack_from(self, buf: Any, offset: int = 0) -> R:
        return self._make(self.struct.unpack_from(buf, offset))

    def pack(self, *values: int) -> bytes:
        return self.struct.pack(*values)

    def pack_into(self, buf: Any, offset: int, *values: int) -> None:
        self.struct.pack_into(buf, offset, *values)

    def __repr__(self) -> str:
        return f"Layout({self.c_name}, size={self.size})"


# Records keep the C field names; where those are ``index`` and ``count`` they shadow the
# tuple methods of the same names (nothing calls those on a record), hence the ignores.


class Header(NamedTuple):
    msg_id: int
    command: int
    size: int
    flags: int
    error: int


class VersionPrefix(NamedTuple):
    major: int
    minor: int


class DmaMap(NamedTuple):
    argsz: int
    flags: int
    offset: int
    addr: int
    size: int


class DmaUnmap(NamedTuple):
    argsz: int
    flags: int
    addr: int
    size: int


class DeviceInfo(NamedTuple):
    argsz: int
    flags: int
    num_regions: int
    num_irqs: int


class RegionInfo(NamedTuple):
    argsz: int
    flags: int
    index: int  # type: ignore[assignment]
    cap_offset: int
    size: int
    offset: int


class CapHeader(NamedTuple):
    id: int
    version: int
    next: int


class SparseMmap(NamedTuple):
    nr_areas: int
    reserved: int


class SparseMmapArea(NamedTuple):
    offset: int
    size: int


class IrqInfo(NamedTuple):
    argsz: int
    flags: int
    index: int  # type: ignore[assignment]
    count: int  # type: ignore[assignment]


class IrqSet(NamedTuple):
    argsz: int
    flags: int
    index: int  # type: ignore[assignment]
    start: int
    count: int  # type: ignore[assignment]


class RegionAccess(NamedTuple):
    offset: int
    region: int
    count: int  # type: ignore[assignment]


class DmaAccess(NamedTuple):
    addr: int
    count: int  # type: ignore[assignment]


class WriteMulti(NamedTuple):
    wr_cnt: int


class WriteMultiEntry(NamedTuple):
    offset: int
    region: int
    count: int  # type: ignore[assignment]
    data: int


class RegionIoFds(NamedTuple):
    argsz: int
    flags: int
    index: int  # type: ignore[assignment]
    count: int  # type: ignore[assignment]


class DeviceFeature(NamedTuple):
    argsz: int
    flags: int


class MigData(NamedTuple):
    argsz: int
    size: int


HEADER = Layout("vfio_user_header", "<HHIII", Header, 16)
VERSION = Layout("vfio_user_version", "<HH", VersionPrefix, 4)
DMA_MAP = Layout("vfio_user_dma_map", "<IIQQQ", DmaMap, 32)
DMA_UNMAP = Layout("vfio_user_dma_unmap", "<IIQQ", DmaUnmap, 24)
DEVICE_INFO = Layout("vfio_user_device_info", "<IIII", DeviceInfo, 16)
REGION_INFO = Layout("vfio_region_info", "<IIIIQQ", RegionInfo, 32)
CAP_HEADER = Layout("vfio_info_cap_header", "<HHI", CapHeader, 8)
SPARSE_MMAP = Layout("vfio_region_info_cap_sparse_mmap", "<II", SparseMmap, 8)
SPARSE_MMAP_AREA = Layout("vfio_region_sparse_mmap_area", "<QQ", SparseMmapArea, 16)
IRQ_INFO = Layout("vfio_irq_info", "<IIII", IrqInfo, 16)
IRQ_SET = Layout("vfio_irq_set", "<IIIII", IrqSet, 20)
REGION_ACCESS = Layout("vfio_user_region_access", "<QII", RegionAccess, 16)
DMA_ACCESS = Layout("vfio_user_dma_region_access", "<QQ", DmaAccess, 16)
WRITE_MULTI = Layout("vfio_user_wr_multi", "<Q", WriteMulti, 8)
WRITE_MULTI_ENTRY = Layout("vfio_user_wr_multi_entry", "<QIIQ", WriteMultiEntry, 24)
REGION_IO_FDS = Layout("vfio_user_region_io_fds_request", "<IIII", RegionIoFds, 16)
DEVICE_FEATURE = Layout("vfio_user_device_feature", "<II", DeviceFeature, 8)
MIG_DATA = Layout("vfio_user_mig_data", "<II", MigData, 8)

ALL_LAYOUTS: tuple[Layout[Any], ...] = (
    HEADER,
    VERSION,
    DMA_MAP,
    DMA_UNMAP,
    DEVICE_INFO,
    REGION_INFO,
    CAP_HEADER,
    SPARSE_MMAP,
    SPARSE_MMAP_AREA,
    IRQ_INFO,
    IRQ_SET,
    REGION_ACCESS,
    DMA_ACCESS,
    WRITE_MULTI,
    WRITE_MULTI_ENTRY,
    REGION_IO_FDS,
    DEVICE_FEATURE,
    MIG_DATA,
)
