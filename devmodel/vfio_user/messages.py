"""Decoding of requests and encoding of replies, one function per command.

Decoders validate everything a handler would otherwise have to (sizes, argsz, flag bits,
ranges with overflow checks, fd counts) and raise ``MalformedRequest``; they never touch the
device. Encoders build reply payloads. The header is the framer's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MalformedRequest
from .caps import Capabilities, parse_capabilities
from .constants import (
    IRQ_SET_ACTION_MASK,
    IRQ_SET_DATA_MASK,
    MAX_DATA_XFER_SIZE,
    WRITE_MULTI_DATA_SIZE,
    WRITE_MULTI_MAX_COUNT,
    DmaMapFlags,
    DmaUnmapFlags,
    IrqSetFlags,
    RegionCapId,
    RegionInfoFlags,
)
from .layouts import (
    CAP_HEADER,
    DEVICE_INFO,
    DMA_ACCESS,
    DMA_MAP,
    DMA_UNMAP,
    IRQ_INFO,
    IRQ_SET,
    REGION_ACCESS,
    REGION_INFO,
    SPARSE_MMAP,
    SPARSE_MMAP_AREA,
    VERSION,
    WRITE_MULTI,
    WRITE_MULTI_ENTRY,
    DmaMap,
    DmaUnmap,
    IrqSet,
)

__all__ = [
    "VersionRequest",
    "decode_version",
    "encode_version",
    "decode_dma_map",
    "decode_dma_unmap",
    "decode_argsz_request",
    "decode_region_info",
    "encode_region_info",
    "decode_irq_info",
    "encode_irq_info",
    "IrqSetRequest",
    "decode_set_irqs",
    "decode_region_read",
    "decode_region_write",
    "decode_write_multi",
    "encode_device_info",
    "encode_dma_access",
    "decode_dma_read_reply",
    "no_fds",
]

_ACCESS = REGION_ACCESS.struct
_U64 = (1 << 64) - 1


def no_fds(fds: Sequence[int]) -> None:
    if fds:
        raise MalformedRequest("file descriptors on a message that takes none", nr_fds=len(fds))


def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise MalformedRequest(f"{what}: payload too short", size=len(payload), need=size)


# --- VERSION -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionRequest:
    major: int
    minor: int
    caps: Capabilities


def decode_version(payload: bytes, fds: Sequence[int]) -> VersionRequest:
    no_fds(fds)
    _need(payload, VERSION.size, "VERSION")
    major, minor = VERSION.struct.unpack_from(payload)
    text = payload[VERSION.size :]
    if text:
        if text[-1] != 0:
            raise MalformedRequest("VERSION JSON is not NUL-terminated")
        text = text[:-1]
    return VersionRequest(major, minor, parse_capabilities(text))


def encode_version(major: int, minor: int, caps_json: bytes) -> bytes:
    return VERSION.pack(major, minor) + caps_json


# --- DMA_MAP / DMA_UNMAP -------------------------------------------------------------------


def _check_range(addr: int, size: int, what: str) -> None:
    if size == 0 or addr + size > _U64 + 1:
        raise MalformedRequest(f"{what}: empty or overflowing range", addr=addr, size=size)


def decode_dma_map(payload: bytes, fds: Sequence[int]) -> DmaMap:
    _need(payload, DMA_MAP.size, "DMA_MAP")
    req = DMA_MAP.unpack_from(payload)
    if req.argsz < DMA_MAP.size or req.argsz > len(payload):
        raise MalformedRequest("DMA_MAP: bad argsz", argsz=req.argsz)
    if req.flags & ~int(DmaMapFlags.READ | DmaMapFlags.WRITE):  # int: ~ of an IntFlag drops unknown bits
        raise MalformedRequest("DMA_MAP: unknown flags", flags=req.flags)
    if len(fds) > 1:
        raise MalformedRequest("DMA_MAP: more than one fd", nr_fds=len(fds))
    _check_range(req.addr, req.size, "DMA_MAP")
    if req.offset + req.size > _U64 + 1:
        raise MalformedRequest("DMA_MAP: fd offset overflows", offset=req.offset)
    if not fds and req.offset:
        raise MalformedRequest("DMA_MAP: offset without an fd", offset=req.offset)
    return req


def decode_dma_unmap(payload: bytes, fds: Sequence[int]) -> DmaUnmap:
    no_fds(fds)
    _need(payload, DMA_UNMAP.size, "DMA_UNMAP")
    req = DMA_UNMAP.unpack_from(payload)
    # argsz is the room for the reply (the echoed struct), not the request's length: the
    # spec lets a client offer more, and libvfio-user only bounds it by max_data_xfer_size.
    if req.argsz < DMA_UNMAP.size or req.argsz > MAX_DATA_XFER_SIZE:
        raise MalformedRequest("DMA_UNMAP: bad argsz", argsz=req.argsz)
    if req.flags & DmaUnmapFlags.GET_DIRTY_BITMAP:
        # Dirty tracking through unmap belongs to the retired migration v1 protocol.
        raise MalformedRequest("DMA_UNMAP: dirty bitmap not supported", flags=req.flags)
    if req.flags & ~int(DmaUnmapFlags.ALL):
        raise MalformedRequest("DMA_UNMAP: unknown flags", flags=req.flags)
    if req.flags & DmaUnmapFlags.ALL:
        if req.addr or req.size:
            raise MalformedRequest("DMA_UNMAP: UNMAP_ALL with a range", addr=req.addr, size=req.size)
    else:
        _check_range(req.addr, req.size, "DMA_UNMAP")
    return req


# --- DEVICE_GET_INFO / REGION_INFO / IRQ_INFO ----------------------------------------------


def decode_argsz_request(payload: bytes, fds: Sequence[int], min_argsz: int, what: str) -> int:
    """The argsz of a GET_INFO-style request, which must leave room for the fixed reply."""
    no_fds(fds)
    _need(payload, 4, what)
    argsz = int.from_bytes(payload[:4], "little")
    if argsz < min_argsz:
        raise MalformedRequest(f"{what}: argsz too small", argsz=argsz)
    return argsz


def encode_device_info(flags: int, num_regions: int, num_irqs: int) -> bytes:
    return DEVICE_INFO.pack(DEVICE_INFO.size, flags, num_regions, num_irqs)


def decode_region_info(payload: bytes, fds: Sequence[int]) -> tuple[int, int]:
    """(argsz, index) of a DEVICE_GET_REGION_INFO request."""
    no_fds(fds)
    _need(payload, REGION_INFO.size, "GET_REGION_INFO")
    req = REGION_INFO.unpack_from(payload)
    if req.argsz < REGION_INFO.size:
        raise MalformedRequest("GET_REGION_INFO: argsz too small", argsz=req.argsz)
    return req.argsz, req.index


def encode_region_info(
    argsz: int,
    index: int,
    flags: int,
    size: int,
    offset: int,
    sparse_areas: Sequence[tuple[int, int]],
) -> tuple[bytes, bool]:
    """The reply payload, cut to ``argsz``, and whether everything fitted (then the caller
    may set CAPS and attach the region's fd)."""
    caps = b""
    if sparse_areas:
        caps = CAP_HEADER.pack(RegionCapId.SPARSE_MMAP, 1, 0) + SPARSE_MMAP.pack(len(sparse_areas), 0)
        caps += b"".join(SPARSE_MMAP_AREA.pack(o, s) for o, s in sparse_areas)
    full = REGION_INFO.size + len(caps)
    fits = full <= argsz
    cap_offset = REGION_INFO.size if caps and fits else 0
    if caps and fits:
        flags |= RegionInfoFlags.CAPS
    body = REGION_INFO.pack(full, flags, index, cap_offset, size, offset) + caps
    return body[:argsz] if not fits else body, fits


def decode_irq_info(payload: bytes, fds: Sequence[int]) -> int:
    no_fds(fds)
    _need(payload, IRQ_INFO.size, "GET_IRQ_INFO")
    req = IRQ_INFO.unpack_from(payload)
    if req.argsz < IRQ_INFO.size:
        raise MalformedRequest("GET_IRQ_INFO: argsz too small", argsz=req.argsz)
    return req.index


def encode_irq_info(index: int, flags: int, count: int) -> bytes:
    return IRQ_INFO.pack(IRQ_INFO.size, flags, index, count)


# --- DEVICE_SET_IRQS -----------------------------------------------------------------------


@dataclass(frozen=True)
class IrqSetRequest:
    flags: int
    index: int
    start: int
    count: int
    data: bytes  # DATA_BOOL: one byte per vector
    fds: list[int]

    @property
    def data_kind(self) -> int:
        return self.flags & IRQ_SET_DATA_MASK

    @property
    def action(self) -> int:
        return self.flags & IRQ_SET_ACTION_MASK


def _one_bit(value: int) -> bool:
    return value != 0 and value & (value - 1) == 0


def decode_set_irqs(payload: bytes, fds: Sequence[int]) -> IrqSetRequest:
    """Shape checks only; the counts of the index are the device's and checked there."""
    _need(payload, IRQ_SET.size, "SET_IRQS")
    req: IrqSet = IRQ_SET.unpack_from(payload)
    known = IRQ_SET_DATA_MASK | IRQ_SET_ACTION_MASK
    if req.flags & ~int(known):
        raise MalformedRequest("SET_IRQS: unknown flags", flags=req.flags)
    data_kind = req.flags & IRQ_SET_DATA_MASK
    action = req.flags & IRQ_SET_ACTION_MASK
    if not _one_bit(data_kind) or not _one_bit(action):
        raise MalformedRequest("SET_IRQS: not exactly one data and one action flag", flags=req.flags)
    data = payload[IRQ_SET.size :]
    if req.argsz < IRQ_SET.size or req.argsz != IRQ_SET.size + len(data):
        raise MalformedRequest("SET_IRQS: argsz does not match the payload", argsz=req.argsz)
    if req.count == 0 and (req.start != 0 or req.flags != IrqSetFlags.DATA_NONE | IrqSetFlags.ACTION_TRIGGER):
        raise MalformedRequest("SET_IRQS: count 0 only disables (DATA_NONE|TRIGGER, start 0)")
    if data_kind == IrqSetFlags.DATA_BOOL:
        if len(data) != req.count:
            raise MalformedRequest("SET_IRQS: bool data length != count", count=req.count)
    elif data:
        raise MalformedRequest("SET_IRQS: data without DATA_BOOL", size=len(data))
    if fds:
        if data_kind != IrqSetFlags.DATA_EVENTFD:
            raise MalformedRequest("SET_IRQS: fds without DATA_EVENTFD", nr_fds=len(fds))
        if len(fds) != req.count:
            raise MalformedRequest("SET_IRQS: fd count != count", nr_fds=len(fds), count=req.count)
    return IrqSetRequest(req.flags, req.index, req.start, req.count, bytes(data), list(fds))


# --- REGION_READ / REGION_WRITE / REGION_WRITE_MULTI ---------------------------------------


def decode_region_read(payload: bytes, fds: Sequence[int]) -> tuple[int, int, int]:
    """(offset, region, count); hot path, so raw tuples."""
    if fds:
        no_fds(fds)
    if len(payload) != 16:
        raise MalformedRequest("REGION_READ: payload is not 16 bytes", size=len(payload))
    offset, region, count = _ACCESS.unpack_from(payload)
    if count > MAX_DATA_XFER_SIZE:
        raise MalformedRequest("REGION_READ: count above max_data_xfer_size", count=count)
    return offset, region, count


def decode_region_write(payload: bytes, fds: Sequence[int]) -> tuple[int, int, bytes]:
    if fds:
        no_fds(fds)
    if len(payload) < 16:
        raise MalformedRequest("REGION_WRITE: payload too short", size=len(payload))
    offset, region, count = _ACCESS.unpack_from(payload)
    if count > MAX_DATA_XFER_SIZE:
        raise MalformedRequest("REGION_WRITE: count above max_data_xfer_size", count=count)
    if len(payload) != 16 + count:
        raise MalformedRequest("REGION_WRITE: length does not match count", count=count, size=len(payload) - 16)
    return offset, region, payload[16:]


def decode_write_multi(payload: bytes, fds: Sequence[int]) -> list[tuple[int, int, bytes]]:
    no_fds(fds)
    _need(payload, WRITE_MULTI.size, "REGION_WRITE_MULTI")
    (wr_cnt,) = WRITE_MULTI.struct.unpack_from(payload)
    if wr_cnt == 0 or wr_cnt > WRITE_MULTI_MAX_COUNT:
        raise MalformedRequest("REGION_WRITE_MULTI: bad wr_cnt", wr_cnt=wr_cnt)
    if len(payload) != WRITE_MULTI.size + wr_cnt * WRITE_MULTI_ENTRY.size:
        raise MalformedRequest("REGION_WRITE_MULTI: length does not match wr_cnt", wr_cnt=wr_cnt)
    out: list[tuple[int, int, bytes]] = []
    append = out.append
    # One pass of iter_unpack: fbcon's console through the aperture is hundreds of thousands
    # of entries a second (docs/display.md).
    for offset, region, count, data in WRITE_MULTI_ENTRY.struct.iter_unpack(memoryview(payload)[WRITE_MULTI.size :]):
        if count == 0 or count > WRITE_MULTI_DATA_SIZE:
            raise MalformedRequest("REGION_WRITE_MULTI: bad entry count", count=count)
        append((offset, region, data.to_bytes(WRITE_MULTI_DATA_SIZE, "little")[:count]))
    return out


# --- DMA_READ / DMA_WRITE (server to client) -----------------------------------------------


def encode_dma_access(addr: int, count: int, data: bytes = b"") -> bytes:
    return DMA_ACCESS.pack(addr, count) + data


def decode_dma_read_reply(payload: bytes, addr: int, count: int) -> bytes:
    _need(payload, DMA_ACCESS.size, "DMA_READ reply")
    r_addr, r_count = DMA_ACCESS.struct.unpack_from(payload)
    data = payload[DMA_ACCESS.size :]
    if r_addr != addr or r_count != count or len(data) != count:
        raise MalformedRequest("DMA_READ reply does not match the request", addr=r_addr, count=r_count)
    return data
