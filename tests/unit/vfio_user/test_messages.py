"""Request decoders (every rejection, with its errno), reply encoders, VERSION negotiation and
the server connection's bookkeeping of its own requests."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from typing import Any

import pytest

from devmodel.errors import CommandNotAllowed, MalformedRequest
from devmodel.testing.client import QEMU_CAPS as CLIENT_QEMU_CAPS
from devmodel.vfio_user.caps import Capabilities, encode_capabilities, parse_capabilities
from devmodel.vfio_user.connection import ConnState, Reply, Request, ServerConnection, ServerOptions
from devmodel.vfio_user.constants import (
    HEADER_SIZE,
    MAX_DATA_XFER_SIZE,
    Command,
    HeaderFlags,
    IrqSetFlags,
    RegionCapId,
    RegionInfoFlags,
)
from devmodel.vfio_user.framing import Message, encode_message
from devmodel.vfio_user.layouts import (
    CAP_HEADER,
    DEVICE_INFO,
    DMA_ACCESS,
    DMA_MAP,
    DMA_UNMAP,
    HEADER,
    IRQ_INFO,
    IRQ_SET,
    REGION_ACCESS,
    REGION_INFO,
    SPARSE_MMAP,
    SPARSE_MMAP_AREA,
    VERSION,
    WRITE_MULTI,
    WRITE_MULTI_ENTRY,
)
from devmodel.vfio_user.messages import (
    VersionRequest,
    decode_argsz_request,
    decode_dma_map,
    decode_dma_read_reply,
    decode_dma_unmap,
    decode_irq_info,
    decode_region_info,
    decode_region_read,
    decode_region_write,
    decode_set_irqs,
    decode_version,
    decode_write_multi,
    encode_device_info,
    encode_dma_access,
    encode_irq_info,
    encode_region_info,
    encode_version,
)

U64 = 1 << 64
R, W = 0x1, 0x2
NONE, BOOL, EVENTFD = IrqSetFlags.DATA_NONE, IrqSetFlags.DATA_BOOL, IrqSetFlags.DATA_EVENTFD
MASK, UNMASK, TRIGGER = IrqSetFlags.ACTION_MASK, IrqSetFlags.ACTION_UNMASK, IrqSetFlags.ACTION_TRIGGER

# What QEMU 11.1.3 sends (spec digest §3.1): 194 bytes of JSON with the NUL, 214 in total.
QEMU_CAPS = {"capabilities": CLIENT_QEMU_CAPS}
QEMU_VERSION_PAYLOAD = VERSION.pack(0, 0) + json.dumps(QEMU_CAPS).encode() + b"\0"
QEMU_VERSION_REQUEST_SIZE = 214


def einval(fn: Callable[..., Any], *args: Any) -> MalformedRequest:
    with pytest.raises(MalformedRequest) as exc:
        fn(*args)
    assert exc.value.errno == errno.EINVAL
    assert exc.value.fatal is False
    return exc.value


# --- VERSION -------------------------------------------------------------------------------


def version_payload(text: bytes, major: int = 0, minor: int = 0) -> bytes:
    return VERSION.pack(major, minor) + text


def caps_text(caps: dict[str, Any]) -> bytes:
    return json.dumps({"capabilities": caps}).encode() + b"\0"


def test_qemu_version_request_decodes() -> None:
    assert HEADER_SIZE + len(QEMU_VERSION_PAYLOAD) == QEMU_VERSION_REQUEST_SIZE
    req = decode_version(QEMU_VERSION_PAYLOAD, [])
    assert (req.major, req.minor) == (0, 0)
    assert req.caps == Capabilities(
        max_msg_fds=16,
        max_data_xfer_size=1 << 20,
        pgsizes=4096,
        max_dma_maps=65535,
        write_multiple=True,
        migration=True,
    )


def test_version_without_json_takes_spec_defaults() -> None:
    req = decode_version(VERSION.pack(0, 3), [])
    assert (req.major, req.minor) == (0, 3)
    assert req.caps == Capabilities()
    assert req.caps.max_msg_fds == 1
    assert decode_version(version_payload(b"{}\0"), []).caps == Capabilities()


def test_version_errors() -> None:
    einval(decode_version, b"\0\0\0", [])
    einval(decode_version, QEMU_VERSION_PAYLOAD, [5])
    einval(decode_version, version_payload(b'{"capabilities":{}}'), [])  # no NUL
    einval(decode_version, QEMU_VERSION_PAYLOAD[:-1], [])
    einval(decode_version, version_payload(b"{\0"), [])  # bad JSON
    einval(decode_version, version_payload(b'{"capabilities":{}}\0\0'), [])  # NUL inside the text
    einval(decode_version, version_payload(b"\xff\xfe{}\0"), [])  # not UTF-8
    einval(decode_version, version_payload(b"[]\0"), [])  # not an object
    einval(decode_version, version_payload(b"42\0"), [])
    einval(decode_version, version_payload(b'{"capabilities":[]}\0'), [])
    einval(decode_version, version_payload(b'{"capabilities":1}\0'), [])


@pytest.mark.parametrize("value", ["true", 1, 0, None, "yes"])
def test_write_multiple_must_be_a_bool(value: Any) -> None:
    einval(decode_version, version_payload(caps_text({"write_multiple": value})), [])


@pytest.mark.parametrize("value", [-1, 1025, 1 << 40, "8", 8.0, True, None, [8]])
def test_max_msg_fds_out_of_range(value: Any) -> None:
    einval(decode_version, version_payload(caps_text({"max_msg_fds": value})), [])


@pytest.mark.parametrize("value", [0, 1, 8, 1024])
def test_max_msg_fds_in_range(value: int) -> None:
    assert decode_version(version_payload(caps_text({"max_msg_fds": value})), []).caps.max_msg_fds == value


@pytest.mark.parametrize(
    "caps",
    [
        {"max_data_xfer_size": 0},
        {"max_data_xfer_size": "1048576"},
        {"pgsizes": 0},
        {"pgsizes": -4096},
        {"max_dma_maps": -1},
        {"max_dma_maps": (1 << 32) + 1},
    ],
)
def test_other_capability_values_checked(caps: dict[str, Any]) -> None:
    einval(decode_version, version_payload(caps_text(caps)), [])


def test_unknown_capabilities_are_ignored() -> None:
    caps = decode_version(version_payload(caps_text({"twin_socket": {"supported": True}, "x": 1})), []).caps
    assert caps == Capabilities()


def test_capabilities_roundtrip() -> None:
    caps = Capabilities(
        max_msg_fds=8, max_data_xfer_size=1 << 20, pgsizes=4096, max_dma_maps=65535, write_multiple=True
    )
    text = encode_capabilities(caps)
    assert text.endswith(b"\0") and text.count(b"\0") == 1
    assert parse_capabilities(text[:-1]) == caps
    assert b"write_multiple" not in encode_capabilities(Capabilities(write_multiple=False))


# --- DMA_MAP / DMA_UNMAP -------------------------------------------------------------------


def dma_map(flags: int = R | W, offset: int = 0, addr: int = 0x100000, size: int = 0x1000, argsz: int = 32) -> bytes:
    return DMA_MAP.pack(argsz, flags, offset, addr, size)


def test_dma_map_accepts() -> None:
    req = decode_dma_map(dma_map(offset=0x100000), [7])
    assert (req.argsz, req.flags, req.offset, req.addr, req.size) == (32, R | W, 0x100000, 0x100000, 0x1000)
    assert decode_dma_map(dma_map(flags=R), []).flags == R  # ROM: read-only, no fd
    assert decode_dma_map(dma_map(flags=0), []).flags == 0
    assert decode_dma_map(dma_map(addr=U64 - 0x1000, size=0x1000), []).addr == U64 - 0x1000  # ends at 2**64
    assert decode_dma_map(dma_map(argsz=40) + b"\0" * 8, []).argsz == 40


def test_dma_map_errors() -> None:
    einval(decode_dma_map, dma_map()[:31], [])
    einval(decode_dma_map, b"", [])
    einval(decode_dma_map, dma_map(argsz=31), [])
    einval(decode_dma_map, dma_map(argsz=0), [])
    einval(decode_dma_map, dma_map(argsz=33), [])  # argsz past the payload
    for flags in (0x4, 0x8, 0x80000000, R | W | 0x10):
        einval(decode_dma_map, dma_map(flags=flags), [])
    einval(decode_dma_map, dma_map(), [3, 4])
    einval(decode_dma_map, dma_map(offset=0x1000), [])  # offset without an fd
    einval(decode_dma_map, dma_map(size=0), [])
    einval(decode_dma_map, dma_map(size=0), [3])
    einval(decode_dma_map, dma_map(addr=U64 - 0x1000, size=0x2000), [])
    einval(decode_dma_map, dma_map(addr=2, size=U64 - 1), [])
    einval(decode_dma_map, dma_map(offset=U64 - 0x1000, size=0x2000), [3])  # fd offset overflows


def dma_unmap(flags: int = 0, addr: int = 0x100000, size: int = 0x1000, argsz: int = 24) -> bytes:
    return DMA_UNMAP.pack(argsz, flags, addr, size)


def test_dma_unmap_accepts() -> None:
    req = decode_dma_unmap(dma_unmap(), [])
    assert (req.argsz, req.flags, req.addr, req.size) == (24, 0, 0x100000, 0x1000)
    assert decode_dma_unmap(dma_unmap(flags=0x2, addr=0, size=0), []).flags == 0x2
    assert decode_dma_unmap(dma_unmap(addr=0, size=0xFEE00000), []).size == 0xFEE00000
    # argsz is the room for the reply: a client may offer more than the 24 echoed bytes
    assert decode_dma_unmap(dma_unmap(argsz=4096), []).argsz == 4096
    assert decode_dma_unmap(dma_unmap(argsz=MAX_DATA_XFER_SIZE), []).argsz == MAX_DATA_XFER_SIZE


def test_dma_unmap_errors() -> None:
    einval(decode_dma_unmap, dma_unmap(), [5])
    einval(decode_dma_unmap, dma_unmap()[:23], [])
    einval(decode_dma_unmap, dma_unmap(argsz=23), [])
    einval(decode_dma_unmap, dma_unmap(argsz=MAX_DATA_XFER_SIZE + 1), [])
    einval(decode_dma_unmap, dma_unmap(flags=0x1), [])  # GET_DIRTY_BITMAP
    einval(decode_dma_unmap, dma_unmap(flags=0x3, addr=0, size=0), [])
    einval(decode_dma_unmap, dma_unmap(flags=0x4), [])
    einval(decode_dma_unmap, dma_unmap(flags=0x2, addr=0x1000, size=0), [])  # ALL with a range
    einval(decode_dma_unmap, dma_unmap(flags=0x2, addr=0, size=0x1000), [])
    einval(decode_dma_unmap, dma_unmap(size=0), [])
    einval(decode_dma_unmap, dma_unmap(addr=U64 - 1, size=2), [])


# --- GET_INFO / REGION_INFO / IRQ_INFO -----------------------------------------------------


def test_argsz_requests() -> None:
    assert decode_argsz_request(DEVICE_INFO.pack(16, 0, 0, 0), [], 16, "GET_INFO") == 16
    assert decode_argsz_request(DEVICE_INFO.pack(100, 0, 0, 0), [], 16, "GET_INFO") == 100
    einval(decode_argsz_request, DEVICE_INFO.pack(15, 0, 0, 0), [], 16, "GET_INFO")
    einval(decode_argsz_request, b"\x10\0\0", [], 16, "GET_INFO")
    einval(decode_argsz_request, DEVICE_INFO.pack(16, 0, 0, 0), [4], 16, "GET_INFO")


def test_region_info_request() -> None:
    assert decode_region_info(REGION_INFO.pack(32, 0, 7, 0, 0, 0), []) == (32, 7)
    assert decode_region_info(REGION_INFO.pack(64, 0, 0, 0, 0, 0), []) == (64, 0)
    einval(decode_region_info, REGION_INFO.pack(31, 0, 7, 0, 0, 0), [])
    einval(decode_region_info, REGION_INFO.pack(32, 0, 7, 0, 0, 0)[:31], [])
    einval(decode_region_info, REGION_INFO.pack(32, 0, 7, 0, 0, 0), [3])


def test_irq_info_request() -> None:
    assert decode_irq_info(IRQ_INFO.pack(16, 0, 3, 0), []) == 3
    einval(decode_irq_info, IRQ_INFO.pack(15, 0, 3, 0), [])
    einval(decode_irq_info, IRQ_INFO.pack(16, 0, 3, 0)[:15], [])
    einval(decode_irq_info, IRQ_INFO.pack(16, 0, 3, 0), [3])
    assert IRQ_INFO.unpack_from(encode_irq_info(2, 0x9, 16)) == (16, 0x9, 2, 16)
    assert DEVICE_INFO.unpack_from(encode_device_info(0x3, 9, 5)) == (16, 0x3, 9, 5)


SPARSE = [(0, 0x1000)]
BASE_FLAGS = RegionInfoFlags.READ | RegionInfoFlags.WRITE | RegionInfoFlags.MMAP


def test_region_info_truncated_to_argsz() -> None:
    body, fits = encode_region_info(32, 0, BASE_FLAGS, 0x2000, 0x10000, SPARSE)
    assert not fits
    assert len(body) == 32
    info = REGION_INFO.unpack_from(body)
    assert info.argsz == 64  # the full size, so that the client asks again
    assert not info.flags & RegionInfoFlags.CAPS
    assert info.flags == BASE_FLAGS
    assert info.cap_offset == 0
    assert (info.index, info.size, info.offset) == (0, 0x2000, 0x10000)


def test_region_info_full_with_sparse_cap() -> None:
    body, fits = encode_region_info(64, 0, BASE_FLAGS, 0x2000, 0x10000, SPARSE)
    assert fits
    assert len(body) == 64
    info = REGION_INFO.unpack_from(body)
    assert info.argsz == 64
    assert info.flags == BASE_FLAGS | RegionInfoFlags.CAPS
    assert info.cap_offset == 32
    cap = CAP_HEADER.unpack_from(body, info.cap_offset)
    assert (cap.id, cap.version, cap.next) == (RegionCapId.SPARSE_MMAP, 1, 0)
    sparse = SPARSE_MMAP.unpack_from(body, info.cap_offset + CAP_HEADER.size)
    assert (sparse.nr_areas, sparse.reserved) == (1, 0)
    area = SPARSE_MMAP_AREA.unpack_from(body, info.cap_offset + CAP_HEADER.size + SPARSE_MMAP.size)
    assert (area.offset, area.size) == (0, 0x1000)
    # a bigger argsz changes nothing: never more than the full reply
    assert encode_region_info(4096, 0, BASE_FLAGS, 0x2000, 0x10000, SPARSE) == (body, True)


def test_region_info_caps_chain_two_areas() -> None:
    areas = [(0, 0x1000), (0x3000, 0x2000)]
    body, fits = encode_region_info(32, 2, R, 0x8000, 0, areas)
    assert not fits and len(body) == 32 and REGION_INFO.unpack_from(body).argsz == 32 + 8 + 8 + 32
    body, fits = encode_region_info(79, 2, R, 0x8000, 0, areas)
    assert not fits and len(body) == 79
    body, fits = encode_region_info(80, 2, R, 0x8000, 0, areas)
    assert fits and len(body) == 80
    assert SPARSE_MMAP.unpack_from(body, 40).nr_areas == 2
    assert [SPARSE_MMAP_AREA.unpack_from(body, 48 + 16 * i) for i in range(2)] == areas


def test_region_info_without_caps() -> None:
    for argsz in (32, 64, 1000):
        body, fits = encode_region_info(argsz, 7, R | W, 4096, 0, [])
        assert fits and body == REGION_INFO.pack(32, R | W, 7, 0, 4096, 0)
    body, fits = encode_region_info(32, 5, 0, 0, 0, [])  # an absent region
    assert fits and REGION_INFO.unpack_from(body) == (32, 0, 5, 0, 0, 0)


def test_region_info_odd_argsz_is_cut_exactly() -> None:
    body, fits = encode_region_info(40, 0, BASE_FLAGS, 0x2000, 0, SPARSE)
    assert not fits and len(body) == 40
    assert not REGION_INFO.unpack_from(body).flags & RegionInfoFlags.CAPS


# --- SET_IRQS ------------------------------------------------------------------------------


def irq_set(
    flags: int, index: int = 0, start: int = 0, count: int = 1, data: bytes = b"", argsz: int | None = None
) -> bytes:
    if argsz is None:
        argsz = IRQ_SET.size + len(data)
    return IRQ_SET.pack(argsz, flags, index, start, count) + data


def test_set_irqs_accepts() -> None:
    req = decode_set_irqs(irq_set(EVENTFD | TRIGGER, index=1, count=2), [8, 9])
    assert (req.flags, req.index, req.start, req.count, req.fds) == (EVENTFD | TRIGGER, 1, 0, 2, [8, 9])
    assert req.data_kind == EVENTFD and req.action == TRIGGER
    # EVENTFD with no fds: de-assign (QEMU's MSI-X enable)
    assert decode_set_irqs(irq_set(EVENTFD | TRIGGER, index=2), []).fds == []
    # the "disable all" form
    req = decode_set_irqs(irq_set(NONE | TRIGGER, count=0), [])
    assert (req.count, req.start) == (0, 0)
    req = decode_set_irqs(irq_set(BOOL | MASK, start=1, count=3, data=b"\1\0\1"), [])
    assert req.data == b"\1\0\1" and req.action == MASK
    assert decode_set_irqs(irq_set(NONE | UNMASK), []).action == UNMASK
    assert decode_set_irqs(irq_set(EVENTFD | UNMASK), [4]).fds == [4]  # resample fd


@pytest.mark.parametrize(
    "flags",
    [
        0,
        TRIGGER,  # no data flag
        NONE,  # no action flag
        NONE | BOOL | TRIGGER,
        NONE | EVENTFD | TRIGGER,
        NONE | BOOL | EVENTFD | TRIGGER,
        NONE | MASK | UNMASK,
        EVENTFD | MASK | TRIGGER,
        NONE | MASK | UNMASK | TRIGGER,
    ],
)
def test_set_irqs_not_one_data_and_one_action(flags: int) -> None:
    einval(decode_set_irqs, irq_set(flags), [])


def test_set_irqs_errors() -> None:
    einval(decode_set_irqs, irq_set(NONE | TRIGGER)[:19], [])
    einval(decode_set_irqs, irq_set(NONE | TRIGGER | 0x40), [])
    einval(decode_set_irqs, irq_set(NONE | TRIGGER | 0x80000000), [])
    # count 0 only as DATA_NONE|TRIGGER with start 0
    einval(decode_set_irqs, irq_set(EVENTFD | TRIGGER, count=0), [])
    einval(decode_set_irqs, irq_set(NONE | MASK, count=0), [])
    einval(decode_set_irqs, irq_set(BOOL | TRIGGER, count=0), [])
    einval(decode_set_irqs, irq_set(NONE | TRIGGER, start=1, count=0), [])
    # bool data length
    einval(decode_set_irqs, irq_set(BOOL | TRIGGER, count=2, data=b"\1"), [])
    einval(decode_set_irqs, irq_set(BOOL | TRIGGER, count=2, data=b"\1\1\1"), [])
    einval(decode_set_irqs, irq_set(BOOL | TRIGGER, count=2), [])
    einval(decode_set_irqs, irq_set(NONE | TRIGGER, count=1, data=b"\1"), [])  # data without BOOL
    einval(decode_set_irqs, irq_set(EVENTFD | TRIGGER, count=1, data=b"\1"), [3])
    # fds
    einval(decode_set_irqs, irq_set(NONE | TRIGGER), [3])
    einval(decode_set_irqs, irq_set(BOOL | TRIGGER, data=b"\1"), [3])
    einval(decode_set_irqs, irq_set(NONE | TRIGGER, count=0), [3])
    einval(decode_set_irqs, irq_set(EVENTFD | TRIGGER, count=2), [3])
    einval(decode_set_irqs, irq_set(EVENTFD | TRIGGER, count=1), [3, 4])
    # argsz
    einval(decode_set_irqs, irq_set(NONE | TRIGGER, argsz=19), [])
    einval(decode_set_irqs, irq_set(NONE | TRIGGER, argsz=21), [])
    einval(decode_set_irqs, irq_set(NONE | TRIGGER, argsz=0), [])
    einval(decode_set_irqs, irq_set(BOOL | TRIGGER, count=2, data=b"\1\1", argsz=20), [])
    einval(decode_set_irqs, irq_set(BOOL | TRIGGER, count=2, data=b"\1\1", argsz=23), [])


# --- REGION_READ / REGION_WRITE / WRITE_MULTI ----------------------------------------------


def test_region_read() -> None:
    assert decode_region_read(REGION_ACCESS.pack(0x30, 7, 4), []) == (0x30, 7, 4)
    assert decode_region_read(REGION_ACCESS.pack(0, 0, 0), []) == (0, 0, 0)
    assert decode_region_read(REGION_ACCESS.pack(0, 0, MAX_DATA_XFER_SIZE), [])[2] == 1 << 20
    einval(decode_region_read, REGION_ACCESS.pack(0, 0, MAX_DATA_XFER_SIZE + 1), [])
    einval(decode_region_read, REGION_ACCESS.pack(0, 0, 0xFFFFFFFF), [])
    einval(decode_region_read, REGION_ACCESS.pack(0, 7, 4)[:15], [])
    einval(decode_region_read, REGION_ACCESS.pack(0, 7, 4) + b"\0", [])
    einval(decode_region_read, REGION_ACCESS.pack(0, 7, 4) + b"\0" * 4, [])
    einval(decode_region_read, REGION_ACCESS.pack(0, 7, 4), [3])


def test_region_write() -> None:
    assert decode_region_write(REGION_ACCESS.pack(0x10, 0, 4) + b"abcd", []) == (0x10, 0, b"abcd")
    assert decode_region_write(REGION_ACCESS.pack(0x10, 0, 0), []) == (0x10, 0, b"")
    einval(decode_region_write, REGION_ACCESS.pack(0x10, 0, 4) + b"abc", [])
    einval(decode_region_write, REGION_ACCESS.pack(0x10, 0, 4) + b"abcde", [])
    einval(decode_region_write, REGION_ACCESS.pack(0x10, 0, 0) + b"a", [])
    einval(decode_region_write, REGION_ACCESS.pack(0x10, 0, 4)[:15], [])
    einval(decode_region_write, REGION_ACCESS.pack(0, 0, MAX_DATA_XFER_SIZE + 1) + b"\0" * (MAX_DATA_XFER_SIZE + 1), [])
    einval(decode_region_write, REGION_ACCESS.pack(0x10, 0, 4) + b"abcd", [3])


def wr_multi(entries: list[tuple[int, int, int, bytes]], wr_cnt: int | None = None) -> bytes:
    out = WRITE_MULTI.pack(len(entries) if wr_cnt is None else wr_cnt)
    for offset, region, count, data in entries:
        out += REGION_ACCESS.pack(offset, region, count) + data.ljust(8, b"\0")
    return out


def test_write_multi() -> None:
    entries = [(0x100 + 4 * i, i % 6, 1 + i % 8, bytes(range(i % 256, i % 256 + 8))) for i in range(200)]
    got = decode_write_multi(wr_multi([(o, r, c, d) for o, r, c, d in entries]), [])
    assert got == [(o, r, d[:c]) for o, r, c, d in entries]
    assert WRITE_MULTI_ENTRY.size == 24
    assert decode_write_multi(wr_multi([(8, 0, 8, b"12345678")]), []) == [(8, 0, b"12345678")]


def test_write_multi_errors() -> None:
    one = [(0, 0, 4, b"abcd")]
    einval(decode_write_multi, wr_multi([]), [])  # wr_cnt 0
    einval(decode_write_multi, wr_multi(one * 201), [])
    einval(decode_write_multi, wr_multi(one, wr_cnt=201), [])
    einval(decode_write_multi, wr_multi(one, wr_cnt=2), [])  # length does not match
    einval(decode_write_multi, wr_multi(one * 2, wr_cnt=1), [])
    einval(decode_write_multi, wr_multi(one) + b"\0", [])
    einval(decode_write_multi, wr_multi(one)[:-1], [])
    einval(decode_write_multi, WRITE_MULTI.pack(1)[:7], [])
    einval(decode_write_multi, wr_multi(one, wr_cnt=U64 - 1), [])
    einval(decode_write_multi, wr_multi([(0, 0, 0, b"")]), [])  # entry count 0
    einval(decode_write_multi, wr_multi([*one, (0, 0, 9, b"")]), [])  # entry count > 8
    einval(decode_write_multi, wr_multi(one), [3])


# --- DMA_READ / DMA_WRITE (ours) -----------------------------------------------------------


def test_dma_access() -> None:
    assert encode_dma_access(0x100000, 16) == DMA_ACCESS.pack(0x100000, 16)
    assert encode_dma_access(0x100000, 3, b"abc") == DMA_ACCESS.pack(0x100000, 3) + b"abc"
    assert decode_dma_read_reply(DMA_ACCESS.pack(0x1000, 3) + b"xyz", 0x1000, 3) == b"xyz"
    einval(decode_dma_read_reply, DMA_ACCESS.pack(0x1000, 3)[:15], 0x1000, 3)
    einval(decode_dma_read_reply, DMA_ACCESS.pack(0x2000, 3) + b"xyz", 0x1000, 3)
    einval(decode_dma_read_reply, DMA_ACCESS.pack(0x1000, 4) + b"xyz", 0x1000, 3)
    einval(decode_dma_read_reply, DMA_ACCESS.pack(0x1000, 3) + b"xy", 0x1000, 3)
    einval(decode_dma_read_reply, DMA_ACCESS.pack(0x1000, 3) + b"xyzw", 0x1000, 3)


# --- the connection ------------------------------------------------------------------------


def negotiated(
    options: ServerOptions | None = None, payload: bytes = QEMU_VERSION_PAYLOAD
) -> tuple[ServerConnection, bytes]:
    conn = ServerConnection(options or ServerOptions())
    reply = conn.negotiate(decode_version(payload, []))
    return conn, reply


def parse_version_reply(payload: bytes) -> tuple[int, int, dict[str, Any]]:
    major, minor = VERSION.struct.unpack_from(payload)
    text = payload[VERSION.size :]
    assert text.endswith(b"\0") and b"\0" not in text[:-1]
    doc = json.loads(text[:-1])
    assert isinstance(doc, dict)
    return major, minor, doc


def test_commands_before_version_not_allowed() -> None:
    conn = ServerConnection()
    assert conn.state is ConnState.AWAIT_VERSION
    conn.check_allowed(Command.VERSION)
    for cmd in Command:
        if cmd is not Command.VERSION:
            with pytest.raises(CommandNotAllowed) as exc:
                conn.check_allowed(cmd)
            assert exc.value.errno == errno.EINVAL and not exc.value.fatal
    with pytest.raises(CommandNotAllowed):
        conn.check_allowed(99)


def test_after_version() -> None:
    conn, _ = negotiated()
    assert conn.state is ConnState.RUNNING
    for cmd in Command:
        if cmd in (Command.VERSION, Command.DMA_READ, Command.DMA_WRITE):
            with pytest.raises(CommandNotAllowed):
                conn.check_allowed(cmd)
        else:
            conn.check_allowed(cmd)
    assert conn.peer_caps is not None and conn.peer_caps.max_msg_fds == 16


@pytest.mark.parametrize("limit", [1, 8])
def test_requests_carry_at_most_the_advertised_fds(limit: int) -> None:
    conn, reply = negotiated(ServerOptions(max_msg_fds=limit))
    assert parse_version_reply(reply)[2]["capabilities"]["max_msg_fds"] == limit
    conn.check_request(Message(1, Command.DEVICE_SET_IRQS, 0, 0, b"", list(range(limit))))
    with pytest.raises(MalformedRequest) as exc:
        conn.check_request(Message(1, Command.DEVICE_SET_IRQS, 0, 0, b"", list(range(limit + 1))))
    assert exc.value.errno == errno.EINVAL and not exc.value.fatal
    with pytest.raises(CommandNotAllowed):  # and the state table still applies
        conn.check_request(Message(1, Command.VERSION, 0, 0, b"", []))


@pytest.mark.parametrize("major", [1, 2, 0xFFFF])
def test_major_other_than_zero_rejected(major: int) -> None:
    conn = ServerConnection()
    with pytest.raises(MalformedRequest) as exc:
        conn.negotiate(VersionRequest(major, 0, Capabilities()))
    assert exc.value.errno == errno.EINVAL
    assert conn.state is ConnState.AWAIT_VERSION
    with pytest.raises(CommandNotAllowed):
        conn.check_allowed(Command.DMA_MAP)


def test_version_reply_is_zero_zero_whatever_minor() -> None:
    _, reply = negotiated(payload=version_payload(caps_text({}), minor=7))
    major, minor, doc = parse_version_reply(reply)
    assert (major, minor) == (0, 0)
    caps = doc["capabilities"]
    assert caps["max_msg_fds"] == 8 and caps["max_data_xfer_size"] == 1 << 20
    assert caps["max_dma_maps"] == 65535 and caps["pgsizes"] == 4096


@pytest.mark.parametrize(
    "ours,theirs,expected",
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_write_multiple_only_if_both_offer(ours: bool, theirs: bool, expected: bool) -> None:
    conn, reply = negotiated(ServerOptions(write_multiple=ours), version_payload(caps_text({"write_multiple": theirs})))
    assert conn.write_multiple is expected
    _, _, doc = parse_version_reply(reply)
    assert doc["capabilities"].get("write_multiple", False) is expected


def test_version_reply_fits_qemu_limit() -> None:
    options = ServerOptions(max_msg_fds=16, max_dma_maps=65535, write_multiple=True)
    conn, reply = negotiated(options)
    assert conn.write_multiple
    assert b'"write_multiple":true' in reply
    assert HEADER_SIZE + len(reply) <= QEMU_VERSION_REQUEST_SIZE
    assert parse_capabilities(reply[4:-1]).write_multiple is True
    assert HEADER_SIZE + len(encode_version(0, 0, encode_capabilities(Capabilities(write_multiple=True)))) <= 214


def _cmd(msg_id: int, command: int, flags: int = 0, payload: bytes = b"") -> Message:
    return Message(msg_id, command, flags, 0, payload, [])


def test_reply_and_error_reply() -> None:
    msg = _cmd(0x1234, Command.REGION_READ)
    raw = ServerConnection.reply(msg, b"abcd")
    assert raw is not None
    assert HEADER.unpack_from(raw) == (0x1234, Command.REGION_READ, 20, 0x1, 0)
    assert raw[16:] == b"abcd"
    raw = ServerConnection.error_reply(msg, errno.ENOENT)
    assert raw == HEADER.pack(0x1234, Command.REGION_READ, 16, 0x21, errno.ENOENT)


@pytest.mark.parametrize("flags", [HeaderFlags.NO_REPLY, HeaderFlags.NO_REPLY | 0x100])
def test_no_reply_messages_get_nothing(flags: int) -> None:
    msg = _cmd(5, Command.REGION_WRITE, flags)
    assert ServerConnection.reply(msg) is None
    assert ServerConnection.reply(msg, b"x" * 16) is None
    assert ServerConnection.error_reply(msg, errno.EINVAL) is None


def _reply_bytes(msg_id: int, command: int, payload: bytes = b"", error: int = 0) -> bytes:
    flags = 0x1 | (HeaderFlags.ERROR if error else 0)
    return encode_message(msg_id, command, flags, payload, error)


def test_requests_get_ids_and_replies_match() -> None:
    conn, _ = negotiated()
    ids = []
    for i in range(3):
        msg_id, raw = conn.request(Command.DMA_READ, encode_dma_access(0x1000 * i, 8), context=("ctx", i))
        ids.append(msg_id)
        assert HEADER.unpack_from(raw) == (msg_id, Command.DMA_READ, 32, 0, 0)
        assert DMA_ACCESS.unpack_from(raw, 16) == (0x1000 * i, 8)
    assert ids == [0, 1, 2]
    assert conn.pending_requests == 3
    # replies out of order, with a client command in between
    conn.receive_data(_reply_bytes(1, Command.DMA_READ, DMA_ACCESS.pack(0x1000, 8) + b"B" * 8))
    conn.receive_data(encode_message(77, Command.REGION_READ, 0, REGION_ACCESS.pack(0, 7, 4)))
    conn.receive_data(_reply_bytes(0, Command.DMA_READ, error=errno.ENODEV))
    ev = conn.next_event()
    assert isinstance(ev, Reply) and ev.msg.msg_id == 1 and ev.command == Command.DMA_READ and ev.context == ("ctx", 1)
    assert ev.msg.payload[16:] == b"B" * 8
    ev = conn.next_event()
    assert isinstance(ev, Request) and ev.msg.msg_id == 77 and ev.msg.command == Command.REGION_READ
    ev = conn.next_event()
    assert isinstance(ev, Reply) and ev.context == ("ctx", 0)
    assert ev.msg.flags & HeaderFlags.ERROR and ev.msg.error == errno.ENODEV
    assert conn.next_event() is None
    assert conn.pending_requests == 1
    assert conn.unexpected_replies == 0
    assert conn.abandon_requests() == [("ctx", 2)]
    assert conn.pending_requests == 0


def test_unexpected_replies_counted_and_fds_stray() -> None:
    conn, _ = negotiated()
    msg_id, _ = conn.request(Command.DMA_WRITE, encode_dma_access(0, 1, b"x"), context="w")
    # a reply to an id we never used, with fds
    conn.receive_data(_reply_bytes(msg_id + 5, Command.DMA_WRITE), [40, 41])
    # a reply with our id but another command
    conn.receive_data(_reply_bytes(msg_id, Command.DMA_READ), [42])
    conn.receive_data(encode_message(3, Command.DEVICE_RESET, 0))
    ev = conn.next_event()
    assert isinstance(ev, Request) and ev.msg.command == Command.DEVICE_RESET
    assert conn.unexpected_replies == 2
    assert conn.stray_fds == [40, 41, 42]
    assert conn.pending_requests == 1  # still waiting for the real one
    conn.receive_data(_reply_bytes(msg_id, Command.DMA_WRITE, DMA_ACCESS.pack(0, 1)))
    ev = conn.next_event()
    assert isinstance(ev, Reply) and ev.context == "w"
    # the same reply again is now unexpected
    conn.receive_data(_reply_bytes(msg_id, Command.DMA_WRITE, DMA_ACCESS.pack(0, 1)))
    assert conn.next_event() is None
    assert conn.unexpected_replies == 3


def test_request_ids_wrap_and_skip_pending() -> None:
    conn, _ = negotiated()
    ids = [conn.request(Command.DMA_READ, b"")[0] for _ in range(0x10000)]
    assert ids == list(range(0x10000))
    for done in (5, 9):
        conn.receive_data(_reply_bytes(done, Command.DMA_READ))
        assert isinstance(conn.next_event(), Reply)
    assert conn.request(Command.DMA_READ, b"")[0] == 5
    assert conn.request(Command.DMA_READ, b"")[0] == 9
    # the search for a free id wraps from 0xFFFF to 0
    for done in (0xFFFE, 1):
        conn.receive_data(_reply_bytes(done, Command.DMA_READ))
        assert isinstance(conn.next_event(), Reply)
        assert conn.request(Command.DMA_READ, b"")[0] == done
    assert conn.pending_requests == 0x10000


def test_request_ids_run_out_cleanly_and_forget_frees_one() -> None:
    conn = ServerConnection()
    ids = [conn.request(Command.DMA_READ, b"")[0] for _ in range(0x10000)]
    assert len(set(ids)) == 0x10000
    from devmodel.errors import NoSpace

    with pytest.raises(NoSpace):
        conn.request(Command.DMA_READ, b"")
    conn.forget(ids[123])
    assert conn.request(Command.DMA_READ, b"")[0] == ids[123]
