"""Command numbers, flag bits, indexes and limits of the vfio-user protocol.

Names mirror ``docs/interop/vfio-user.rst`` and ``<linux/vfio.h>`` so that grep works across
the spec, QEMU and this project.
"""

from __future__ import annotations

import enum

__all__ = [
    "Command",
    "MsgType",
    "HeaderFlags",
    "DmaMapFlags",
    "DmaUnmapFlags",
    "DeviceInfoFlags",
    "RegionIndex",
    "RegionInfoFlags",
    "RegionCapId",
    "IrqIndex",
    "IrqInfoFlags",
    "IrqSetFlags",
    "IRQ_SET_DATA_MASK",
    "IRQ_SET_ACTION_MASK",
    "HEADER_SIZE",
    "MAX_DATA_XFER_SIZE",
    "MAX_MSG_SIZE",
    "SERVER_MAX_MSG_FDS",
    "CLIENT_MAX_MSG_FDS_LIMIT",
    "MAX_DMA_MAPS",
    "PAGE_SIZE",
    "WRITE_MULTI_MAX_COUNT",
    "WRITE_MULTI_DATA_SIZE",
]


class Command(enum.IntEnum):
    VERSION = 1
    DMA_MAP = 2
    DMA_UNMAP = 3
    DEVICE_GET_INFO = 4
    DEVICE_GET_REGION_INFO = 5
    DEVICE_GET_REGION_IO_FDS = 6
    DEVICE_GET_IRQ_INFO = 7
    DEVICE_SET_IRQS = 8
    REGION_READ = 9
    REGION_WRITE = 10
    DMA_READ = 11
    DMA_WRITE = 12
    DEVICE_RESET = 13
    REGION_WRITE_MULTI = 15
    DEVICE_FEATURE = 16
    MIG_DATA_READ = 17
    MIG_DATA_WRITE = 18


class MsgType(enum.IntEnum):
    COMMAND = 0
    REPLY = 1


class HeaderFlags(enum.IntFlag):
    TYPE_MASK = 0xF
    NO_REPLY = 0x10
    ERROR = 0x20


class DmaMapFlags(enum.IntFlag):
    READ = 0x1
    WRITE = 0x2


class DmaUnmapFlags(enum.IntFlag):
    GET_DIRTY_BITMAP = 0x1
    ALL = 0x2


class DeviceInfoFlags(enum.IntFlag):
    RESET = 0x1
    PCI = 0x2


class RegionIndex(enum.IntEnum):
    BAR0 = 0
    BAR1 = 1
    BAR2 = 2
    BAR3 = 3
    BAR4 = 4
    BAR5 = 5
    ROM = 6
    CONFIG = 7
    VGA = 8


class RegionInfoFlags(enum.IntFlag):
    READ = 0x1
    WRITE = 0x2
    MMAP = 0x4
    CAPS = 0x8


class RegionCapId(enum.IntEnum):
    SPARSE_MMAP = 1
    TYPE = 2
    MSIX_MAPPABLE = 3


class IrqIndex(enum.IntEnum):
    INTX = 0
    MSI = 1
    MSIX = 2
    ERR = 3
    REQ = 4


class IrqInfoFlags(enum.IntFlag):
    EVENTFD = 0x1
    MASKABLE = 0x2
    AUTOMASKED = 0x4
    NORESIZE = 0x8


class IrqSetFlags(enum.IntFlag):
    DATA_NONE = 0x1
    DATA_BOOL = 0x2
    DATA_EVENTFD = 0x4
    ACTION_MASK = 0x8
    ACTION_UNMASK = 0x10
    ACTION_TRIGGER = 0x20


IRQ_SET_DATA_MASK = IrqSetFlags.DATA_NONE | IrqSetFlags.DATA_BOOL | IrqSetFlags.DATA_EVENTFD
IRQ_SET_ACTION_MASK = (
    IrqSetFlags.ACTION_MASK | IrqSetFlags.ACTION_UNMASK | IrqSetFlags.ACTION_TRIGGER
)

HEADER_SIZE = 16
PAGE_SIZE = 4096
# Largest count in one REGION_READ/WRITE or DMA_READ/WRITE: the spec's default, QEMU's value.
MAX_DATA_XFER_SIZE = 1 << 20
# Largest message either side sends: a data transfer plus its two headers (libvfio-user's cap).
MAX_MSG_SIZE = MAX_DATA_XFER_SIZE + 32
# How many fds we accept on one message (QEMU chunks SET_IRQS to fit): advertised in VERSION
# (ServerOptions' default) and enforced on every request.
SERVER_MAX_MSG_FDS = 8
# A client may say it takes at most this many (libvfio-user's bound).
CLIENT_MAX_MSG_FDS_LIMIT = 1024
# Most DMA windows at once: the spec's default, advertised in VERSION and enforced by the
# device's DMA map.
MAX_DMA_MAPS = 65535
# REGION_WRITE_MULTI: QEMU batches at most 200 writes, each with an 8-byte data slot.
WRITE_MULTI_MAX_COUNT = 200
WRITE_MULTI_DATA_SIZE = 8
