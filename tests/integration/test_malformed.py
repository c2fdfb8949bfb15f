"""A barrage of malformed messages: each gets the right errno and the connection goes on;
framing errors drop the connection and the server accepts the next client."""

from __future__ import annotations

import errno
import os
import random
import socket
import struct

import pytest

from devmodel.errors import ErrorReply, TransportError
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.vfio_user.constants import Command, HeaderFlags
from devmodel.vfio_user.framing import encode_message
from devmodel.vfio_user.layouts import DMA_MAP, DMA_UNMAP, IRQ_SET, REGION_ACCESS, REGION_INFO

from .conftest import ServerThread

E = errno

BARRAGE: list[tuple[str, int, bytes, int]] = [
    ("short DMA_MAP", Command.DMA_MAP, b"\0" * 8, E.EINVAL),
    ("DMA_MAP argsz too small", Command.DMA_MAP, DMA_MAP.pack(8, 3, 0, 0x80000000, 0x1000), E.EINVAL),
    ("DMA_MAP unknown flags", Command.DMA_MAP, DMA_MAP.pack(32, 0x10, 0, 0x80000000, 0x1000), E.EINVAL),
    ("DMA_MAP overflowing", Command.DMA_MAP, DMA_MAP.pack(32, 3, 0, (1 << 64) - 0x1000, 0x2000), E.EINVAL),
    ("DMA_MAP size 0", Command.DMA_MAP, DMA_MAP.pack(32, 3, 0, 0x80000000, 0), E.EINVAL),
    ("DMA_MAP unaligned", Command.DMA_MAP, DMA_MAP.pack(32, 3, 0, 0x80000010, 0x1000), E.EINVAL),
    ("DMA_UNMAP short", Command.DMA_UNMAP, b"\0" * 12, E.EINVAL),
    ("DMA_UNMAP unknown flags", Command.DMA_UNMAP, DMA_UNMAP.pack(24, 0x8, 0, 0x1000), E.EINVAL),
    ("DMA_UNMAP ALL with range", Command.DMA_UNMAP, DMA_UNMAP.pack(24, 2, 0x1000, 0x1000), E.EINVAL),
    ("GET_INFO argsz small", Command.DEVICE_GET_INFO, struct.pack("<IIII", 8, 0, 0, 0), E.EINVAL),
    ("GET_INFO short", Command.DEVICE_GET_INFO, b"\0\0", E.EINVAL),
    ("REGION_INFO argsz small", Command.DEVICE_GET_REGION_INFO, REGION_INFO.pack(16, 0, 0, 0, 0, 0), E.EINVAL),
    ("REGION_INFO bad index", Command.DEVICE_GET_REGION_INFO, REGION_INFO.pack(32, 0, 99, 0, 0, 0), E.EINVAL),
    ("IRQ_INFO bad index", Command.DEVICE_GET_IRQ_INFO, struct.pack("<IIII", 16, 0, 7, 0), E.EINVAL),
    ("SET_IRQS two actions", Command.DEVICE_SET_IRQS, IRQ_SET.pack(20, 0x1 | 0x8 | 0x10, 0, 0, 1), E.EINVAL),
    ("SET_IRQS bad vectors", Command.DEVICE_SET_IRQS, IRQ_SET.pack(20, 0x21, 1, 0, 5), E.EINVAL),
    ("SET_IRQS mask MSI", Command.DEVICE_SET_IRQS, IRQ_SET.pack(20, 0x9, 1, 0, 1), E.EINVAL),
    ("SET_IRQS bool len", Command.DEVICE_SET_IRQS, IRQ_SET.pack(22, 0x22, 0, 0, 1) + b"\1\1", E.EINVAL),
    ("REGION_READ short", Command.REGION_READ, b"\0" * 10, E.EINVAL),
    ("REGION_READ huge", Command.REGION_READ, REGION_ACCESS.pack(0, 0, 2 << 20), E.EINVAL),
    ("REGION_READ past end", Command.REGION_READ, REGION_ACCESS.pack((16 << 20) - 2, 0, 4), E.EINVAL),
    ("REGION_WRITE length", Command.REGION_WRITE, REGION_ACCESS.pack(0x4000, 0, 8) + b"\0" * 4, E.EINVAL),
    ("REGION_WRITE bad region", Command.REGION_WRITE, REGION_ACCESS.pack(0, 42, 4) + b"\0" * 4, E.EINVAL),
    ("VERSION twice", Command.VERSION, b"\0\0\0\0{}\0", E.EINVAL),
    ("RESET with payload", Command.DEVICE_RESET, b"\0" * 4, E.EINVAL),
    ("WRITE_MULTI empty", Command.REGION_WRITE_MULTI, struct.pack("<Q", 0), E.EINVAL),
    ("REGION_IO_FDS", Command.DEVICE_GET_REGION_IO_FDS, struct.pack("<IIII", 16, 0, 0, 0), E.ENOTSUP),
    ("DEVICE_FEATURE", Command.DEVICE_FEATURE, struct.pack("<II", 8, 1 << 16 | 1), E.ENOTSUP),
    ("MIG_DATA_READ", Command.MIG_DATA_READ, struct.pack("<II", 8, 64), E.ENOTSUP),
    ("unknown command 99", 99, b"", E.ENOSYS),
    ("DMA_READ from the client", Command.DMA_READ, struct.pack("<QQ", 0, 8), E.ENOSYS),
]


def _alive(client: VfioUserClient) -> None:
    client.write32(0, 0x4000, 0xA5A5)
    assert client.read32(0, 0x4000) == 0xA5A5


@pytest.mark.parametrize("name,command,payload,err", BARRAGE, ids=[b[0] for b in BARRAGE])
def test_malformed_gets_errno_and_connection_goes_on(
    client: VfioUserClient, name: str, command: int, payload: bytes, err: int
) -> None:
    with pytest.raises(ErrorReply) as e:
        client.request(command, payload)
    assert e.value.errno == err, name
    _alive(client)


def test_whole_barrage_on_one_connection(server: ServerThread, client: VfioUserClient) -> None:
    windows = len(server.device.dma)
    for name, command, payload, err in BARRAGE * 3:
        with pytest.raises(ErrorReply) as e:
            client.request(command, payload)
        assert e.value.errno == err, name
    assert len(server.device.dma) == windows  # nothing half-done
    _alive(client)


def test_command_before_version(raw_client: VfioUserClient) -> None:
    with pytest.raises(ErrorReply) as e:
        raw_client.region_read(0, 0x78000, 8)
    assert e.value.errno == errno.EINVAL
    raw_client.negotiate()
    assert raw_client.read64(0, 0x78000) == 0x4776544776544776


def test_bad_version_major_then_good(raw_client: VfioUserClient) -> None:
    with pytest.raises(ErrorReply) as e:
        raw_client.request(Command.VERSION, struct.pack("<HH", 1, 0) + b"{}\0")
    assert e.value.errno == errno.EINVAL
    raw_client.negotiate()


def test_a_deeply_nested_version_json_gets_a_clean_error_then_a_good_version(raw_client: VfioUserClient) -> None:
    """200,000 brackets deep: past the decoder's recursion, a malformed request (EINVAL), not
    the dispatcher's bug path (EIO; raised in this strict server)."""
    deep = b'{"capabilities": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(ErrorReply) as e:
        raw_client.request(Command.VERSION, struct.pack("<HH", 0, 1) + deep + b"\0")
    assert e.value.errno == errno.EINVAL
    raw_client.negotiate()
    assert raw_client.read64(0, 0x78000) == 0x4776544776544776


def test_fds_on_a_message_that_takes_none_are_closed(client: VfioUserClient) -> None:
    before = len(os.listdir("/proc/self/fd"))
    r, w = os.pipe()
    try:
        with pytest.raises(ErrorReply) as e:
            client.request(Command.REGION_READ, REGION_ACCESS.pack(0x4000, 0, 4), [r])
        assert e.value.errno == errno.EINVAL
        with pytest.raises(ErrorReply) as e:
            client.request(Command.DMA_MAP, DMA_MAP.pack(32, 3, 0, 0x80000000, 0x1000), [r, w])
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(r)
        os.close(w)
    assert len(os.listdir("/proc/self/fd")) == before  # the server closed its copies
    _alive(client)


def test_rejected_dma_map_closes_its_fd(client: VfioUserClient, memory: GuestMemory) -> None:
    before = len(os.listdir("/proc/self/fd"))
    fd = memory.dup_fd()
    with pytest.raises(ErrorReply):
        client.dma_map(0x1000, 0x1000, 3, fd)  # overlaps guest RAM
    os.close(fd)
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize(
    "header",
    [
        struct.pack("<HHIII", 1, Command.REGION_READ, 8, 0, 0),  # size below 16
        struct.pack("<HHIII", 1, Command.REGION_READ, 64 << 20, 0, 0),  # above the maximum
        struct.pack("<HHIII", 1, Command.REGION_READ, 16, 0x7, 0),  # unknown message type
    ],
)
def test_framing_error_drops_connection_and_next_client_works(
    server: ServerThread, client: VfioUserClient, memory: GuestMemory, header: bytes
) -> None:
    client.send_raw(header)
    with pytest.raises(TransportError):
        client.read32(0, 0)
    with VfioUserClient.connect(server.path, memory) as again:
        again.negotiate()
        _alive(again)


def test_fds_of_a_stray_reply_before_a_framing_error_are_closed(server: ServerThread, memory: GuestMemory) -> None:
    """A reply to nothing the server asked is dropped and its fds closed, even when the message
    after it breaks framing in the same read. The fds ride on the reply's first piece (a read
    ends where fds came), so its rest and the bad header arrive together in the next read."""
    before = len(os.listdir("/proc/self/fd"))
    r, w = os.pipe()
    stray = encode_message(0x7777, Command.REGION_READ, 1, b"\0" * 48)  # type 1: a reply
    bad_header = struct.pack("<HHIII", 1, Command.REGION_READ, 8, 0, 0)  # size below 16
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(server.path)
        s.sendmsg([stray[:20]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("<ii", r, w))])
        s.sendall(stray[20:] + bad_header)
        assert s.recv(16) == b""  # dropped for the framing error: the drop is done
    finally:
        s.close()
        os.close(r)
        os.close(w)
    assert len(os.listdir("/proc/self/fd")) == before  # the server closed its copies
    with VfioUserClient.connect(server.path, memory) as c:
        c.negotiate()
        _alive(c)


def test_posted_malformed_gets_no_reply(client: VfioUserClient) -> None:
    client.send(Command.REGION_WRITE, REGION_ACCESS.pack(0, 0, 8) + b"\0", flags=HeaderFlags.NO_REPLY)
    client.send(Command.DMA_MAP, b"junk", flags=HeaderFlags.NO_REPLY)
    _alive(client)
    assert not client._replies


def test_random_garbage_never_kills_the_server(server: ServerThread, memory: GuestMemory) -> None:
    """Well-framed messages with random commands and random payloads, many connections."""
    rng = random.Random(1234)
    for _ in range(10):
        with VfioUserClient.connect(server.path, memory) as c:
            c.negotiate()
            c.map_memory(memory)
            for i in range(200):
                cmd = rng.choice([*Command, 0, 14, 19, 200])
                payload = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 4, 8, 16, 20, 24, 32, 40, 64])))
                flags = rng.choice([0, HeaderFlags.NO_REPLY])
                c.send_raw(encode_message(0x8000 + i, cmd, flags, payload))  # ids apart from the client's
            _alive(c)
    # and the server still serves a fresh client
    with VfioUserClient.connect(server.path, memory) as c:
        c.negotiate()
        _alive(c)


def test_half_a_message_then_hangup(server: ServerThread, memory: GuestMemory) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(server.path)
    s.sendall(struct.pack("<HHIII", 0, Command.VERSION, 200, 0, 0) + b"\0" * 10)
    s.close()
    with VfioUserClient.connect(server.path, memory) as c:
        c.negotiate()
        _alive(c)
