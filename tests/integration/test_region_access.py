"""REGION_READ / REGION_WRITE / REGION_WRITE_MULTI and DEVICE_RESET."""

from __future__ import annotations

import errno

import pytest

from devmodel.errors import ErrorReply
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.vfio_user.constants import Command, HeaderFlags
from devmodel.vfio_user.layouts import REGION_ACCESS

from .conftest import ServerThread

GGTT = 8 << 20


def test_posted_writes_get_no_reply(client: VfioUserClient) -> None:
    for i in range(100):
        client.write32(0, 0x5000 + 4 * i, i, posted=True)
    # A posted write that fails gets no reply either.
    client.send(Command.REGION_WRITE, REGION_ACCESS.pack(1 << 40, 0, 4) + b"\0" * 4, flags=HeaderFlags.NO_REPLY)
    msg_id = client.send(Command.REGION_READ, REGION_ACCESS.pack(0x5000 + 4 * 99, 0, 4))
    reply = client.wait_reply(msg_id)
    assert int.from_bytes(reply.payload[16:], "little") == 99
    assert not client._replies  # nothing but the read's reply arrived


def test_read_echoes_and_returns_count_bytes(client: VfioUserClient) -> None:
    reply = client.request(Command.REGION_READ, REGION_ACCESS.pack(0, 7, 64))
    assert reply.payload[:16] == REGION_ACCESS.pack(0, 7, 64)
    assert len(reply.payload) == 16 + 64


def test_count_zero_succeeds(client: VfioUserClient) -> None:
    assert client.region_read(0, 0, 0) == b""
    client.region_write(0, 0, b"")


@pytest.mark.parametrize(
    "region,offset,count",
    [(0, (16 << 20) - 4, 8), (0, 1 << 63, 4), (9, 0, 4), (1, 0, 4), (7, 250, 8), (0, (1 << 64) - 4, 8)],
)
def test_out_of_range_is_einval(client: VfioUserClient, region: int, offset: int, count: int) -> None:
    with pytest.raises(ErrorReply) as e:
        client.region_read(region, offset, count)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ErrorReply) as e:
        client.region_write(region, offset, bytes(count))
    assert e.value.errno == errno.EINVAL


def test_write_multi_in_order_with_posted_writes(
    server: ServerThread, client: VfioUserClient, memory: GuestMemory
) -> None:
    client.write32(0, 0x6000, 1, posted=True)
    writes = [(0, 0x6000, (2).to_bytes(4, "little"))]
    writes += [(0, GGTT + 8 * i, ((0x100000 + i * 4096) | 1).to_bytes(8, "little")) for i in range(150)]
    writes += [(0, 0x6004, (7).to_bytes(4, "little"))]
    client.write_multi(writes)
    client.write32(0, 0x6000, 3, posted=True)
    assert client.read32(0, 0x6000) == 3
    assert client.read32(0, 0x6004) == 7
    memory.write(0x100000 + 149 * 4096, b"multi")
    assert client.region_read(2, 149 << 12, 5) == b"multi"


def test_write_multi_rejected_whole_when_one_entry_is_bad(client: VfioUserClient) -> None:
    client.write32(0, 0x6100, 5)
    client.write_multi([(0, 0x6100, (6).to_bytes(4, "little")), (0, 1 << 30, b"\0" * 4)])
    assert client.read32(0, 0x6100) == 5  # validate, then act: nothing of the batch happened


def test_write_multi_needs_negotiation(make_server, memory) -> None:
    st: ServerThread = make_server(write_multiple=False)
    with VfioUserClient.connect(st.path, memory) as c:
        c.negotiate()
        c.write_multi([(0, 0x6200, (1).to_bytes(4, "little"))])
        assert c.read32(0, 0x6200) == 0


def test_device_reset_restores_power_on(server: ServerThread, client: VfioUserClient) -> None:
    client.write32(0, 0x4000, 0x1234)
    client.write64(0, GGTT, 0x5000 | 1)
    client.region_write(7, 4, (0x0406).to_bytes(2, "little"))
    client.reset()
    assert client.read32(0, 0x4000) == 0
    assert client.read64(0, GGTT) == 0
    assert client.read64(0, 0x78000) == 0x4776544776544776
    assert int.from_bytes(client.region_read(7, 4, 2), "little") == 0
    assert len(server.device.dma) == 1  # the client's memory stays mapped across a reset
