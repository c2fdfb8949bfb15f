"""DMA_READ / DMA_WRITE from the server for windows without an fd: the server keeps serving
the client's requests while it waits for its own reply."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator

import pytest

from devmodel.errors import DmaFault
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.transport.server import Client
from devmodel.vfio_user.constants import Command, MsgType
from devmodel.vfio_user.framing import encode_message
from devmodel.vfio_user.layouts import DMA_ACCESS, REGION_ACCESS

from .conftest import ServerThread

BASE = 0x40000000


@pytest.fixture
def no_fd_memory(client: VfioUserClient) -> Iterator[GuestMemory]:
    """Guest RAM the client serves by message: mapped without an fd."""
    with GuestMemory(0x300000, base=BASE) as mem:
        client.memory = mem
        client.dma_map(BASE, mem.size, 3)
        yield mem


def _next_message(client: VfioUserClient):
    while True:
        msg = client.framer.next_message()
        if msg is not None:
            return msg
        data, _, _, _ = client.sock.recvmsg(1 << 16)
        client.framer.receive(data)


def _channel(server: ServerThread) -> Client:
    """The attached client's message DMA (device code no longer reaches fd-less windows)."""
    client = server.server.client
    assert client is not None
    return client


def test_dma_read_and_write_by_message(server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory) -> None:
    no_fd_memory.write(BASE + 0x10, b"read through a message")
    results: list[bytes] = []
    dev = server.device
    dev.schedule(lambda: results.append(_channel(server).dma_read(BASE + 0x10, 22)))
    dev.schedule(lambda: _channel(server).dma_write(BASE + 0x2000, b"written by message"))
    deadline = time.monotonic() + 5
    while len(results) < 1 or no_fd_memory.read(BASE + 0x2000, 18) != b"written by message":
        client.serve_pending(0.05)
        assert time.monotonic() < deadline
    assert results == [b"read through a message"]
    assert client.dma_requests_served == 2


def test_large_transfer_is_split(server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory) -> None:
    """2.5 MiB each way: three messages of at most the client's max_data_xfer_size (1 MiB)."""
    size = 0x280000
    pattern = bytes(range(251)) * (size // 251 + 1)
    no_fd_memory.write(BASE, pattern[:size])
    results: list[bytes] = []
    dev = server.device
    dev.schedule(lambda: results.append(_channel(server).dma_read(BASE, size)))
    dev.schedule(lambda: _channel(server).dma_write(BASE + 0x10000, pattern[1 : size - 0x10000 + 1]))
    deadline = time.monotonic() + 10
    while not results or no_fd_memory.read(BASE + 0x10000, size - 0x10000) != pattern[1 : size - 0x10000 + 1]:
        client.serve_pending(0.05)
        assert time.monotonic() < deadline
    assert results[0] == pattern[:size]
    assert client.dma_requests_served == 3 + 3


def test_server_serves_requests_while_waiting(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    """The client holds the server's DMA_READ unanswered until its own REGION_READ has been
    answered: a server that blocked on its DMA reply would deadlock here (QEMU's vCPU)."""
    no_fd_memory.write(BASE, b"late")
    results: list[bytes] = []
    dev = server.device
    client.write32(0, 0x4000, 77)
    dev.schedule(lambda: results.append(_channel(server).dma_read(BASE, 4)))
    dma_req = _next_message(client)  # the server's DMA_READ, sent from its work queue
    assert dma_req.command == Command.DMA_READ and not dma_req.is_reply
    msg_id = client.send(Command.REGION_READ, REGION_ACCESS.pack(0x4000, 0, 4))
    reply = _next_message(client)
    assert reply.is_reply and reply.msg_id == msg_id
    assert int.from_bytes(reply.payload[16:], "little") == 77
    assert not results  # still waiting for us
    addr, count = DMA_ACCESS.struct.unpack_from(dma_req.payload)
    reply = dma_req.payload[:16] + no_fd_memory.read(addr, count)
    client.send_raw(encode_message(dma_req.msg_id, Command.DMA_READ, MsgType.REPLY, reply))
    deadline = time.monotonic() + 5
    while not results and time.monotonic() < deadline:
        time.sleep(0.01)
    assert results == [b"late"]


def test_client_error_reply_is_a_dma_fault(server: ServerThread, client: VfioUserClient) -> None:
    client.dma_map(0x50000000, 0x1000, 3)  # no fd, and the client has no memory there
    faults: list[DmaFault] = []
    dev = server.device

    def step() -> None:
        try:
            _channel(server).dma_read(0x50000000, 8)
        except DmaFault as exc:
            faults.append(exc)

    dev.schedule(step)
    deadline = time.monotonic() + 5
    while not faults:
        client.serve_pending(0.05)
        assert time.monotonic() < deadline
    assert faults[0].fields["error"] == errno.EFAULT
    assert client.read32(0, 0x78000) == 0x76544776


def test_no_dma_by_message_inside_a_request_handler(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    """The aperture reaches a fd-less window only as scratch: waiting for a DMA reply inside
    a REGION_READ would deadlock QEMU."""
    no_fd_memory.write(BASE + 0x5000, b"not via aperture")
    client.write64(0, 8 << 20, (BASE + 0x5000) | 1)
    assert client.region_read(2, 0, 16) == bytes(16)
    assert client.dma_requests_served == 0
