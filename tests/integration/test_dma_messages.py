"""DMA_READ / DMA_WRITE from the server for windows without an fd, as continuations: the
server sends its request and goes on serving the client; the continuation runs as a task of
its own when the reply is in. A reset, an unmap or a lost client that arrives while a reply
is outstanding is handled in order and cancels the transfer: its continuation never runs and
the late reply is dropped."""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from devmodel.device.message_dma import Transfer, TransferState
from devmodel.device.tasks import Task, TaskState
from devmodel.errors import DmaFault, ErrorReply
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.vfio_user.connection import ServerConnection
from devmodel.vfio_user.constants import Command, DmaUnmapFlags, MsgType
from devmodel.vfio_user.framing import Message, encode_message
from devmodel.vfio_user.layouts import DMA_ACCESS, DMA_UNMAP, REGION_ACCESS

from .conftest import ServerThread


def state(task: Task) -> TaskState:
    """A task's state read anew (mypy would keep an earlier assertion's narrowing)."""
    return task.state


BASE = 0x40000000
SIZE = 0x300000


@pytest.fixture
def no_fd_memory(client: VfioUserClient) -> Iterator[GuestMemory]:
    """Guest RAM the client serves by message: mapped without an fd."""
    with GuestMemory(SIZE, base=BASE) as mem:
        client.memory = mem
        client.dma_map(BASE, mem.size, 3)
        yield mem


class Outcome:
    """What the continuations saw, in order."""

    def __init__(self) -> None:
        self.results: list[bytes | DmaFault] = []
        self.transfers: list[Transfer] = []

    def then(self, transfer: Transfer) -> None:
        try:
            self.results.append(transfer.result())
        except DmaFault as exc:
            self.results.append(exc)


def _start(server: ServerThread, start: Callable[[], Transfer], out: Outcome) -> Transfer:
    """Start a transfer from a device task, as device code does, and return it."""
    n = len(out.transfers)

    def task() -> None:
        out.transfers.append(start())

    server.call(lambda: server.device.tasks.call_soon(task, uses_guest_memory=True))
    _wait(lambda: len(out.transfers) > n)
    return out.transfers[-1]


def _wait(cond: Callable[[], bool], client: VfioUserClient | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        if client is not None:
            client.serve_pending(0.02)
        else:
            time.sleep(0.005)


def _next_message(client: VfioUserClient) -> Message:
    while True:
        msg = client.framer.next_message()
        if msg is not None:
            return msg
        data, _, _, _ = client.sock.recvmsg(1 << 16)
        client.framer.receive(data)


def _read_reply(req: Message, mem: GuestMemory) -> bytes:
    addr, count = DMA_ACCESS.struct.unpack_from(req.payload)
    return encode_message(req.msg_id, Command.DMA_READ, MsgType.REPLY, req.payload[:16] + mem.read(addr, count))


def test_dma_read_and_write_by_message(server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory) -> None:
    no_fd_memory.write(BASE + 0x10, b"read through a message")
    out = Outcome()
    dma = server.device.message_dma
    assert dma is not None
    _start(server, lambda: dma.read(BASE + 0x10, 22, out.then), out)
    _start(server, lambda: dma.write(BASE + 0x2000, b"written by message", out.then), out)
    _wait(lambda: len(out.results) == 2, client)
    assert out.results == [b"read through a message", b""]
    assert no_fd_memory.read(BASE + 0x2000, 18) == b"written by message"
    assert client.dma_requests_served == 2
    assert [t.state for t in out.transfers] == [TransferState.DONE, TransferState.DONE]


def test_large_transfer_is_split(server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory) -> None:
    """2.5 MiB each way at once: three messages each of at most the client's
    max_data_xfer_size (1 MiB). The server's 2.5 MiB of DMA_WRITE requests wait in its outbox
    while the (single-threaded) client writes its 1 MiB read replies: neither side blocks the
    other."""
    size = 0x280000
    pattern = bytes(range(251)) * (size // 251 + 1)
    no_fd_memory.write(BASE, pattern[:size])
    out = Outcome()
    dma = server.device.message_dma
    assert dma is not None
    _start(server, lambda: dma.read(BASE, size, out.then), out)
    _start(server, lambda: dma.write(BASE + 0x10000, pattern[1 : size - 0x10000 + 1], out.then), out)
    _wait(lambda: len(out.results) == 2, client)
    assert out.results[0] == pattern[:size]
    assert no_fd_memory.read(BASE + 0x10000, size - 0x10000) == pattern[1 : size - 0x10000 + 1]
    assert client.dma_requests_served == 3 + 3


def test_requests_are_served_while_a_dma_reply_is_outstanding(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    """The client withholds the reply to the server's DMA_READ while it reads registers: a
    server that waited for its DMA reply would deadlock here (QEMU's vCPU)."""
    no_fd_memory.write(BASE, b"late")
    out = Outcome()
    dma = server.device.message_dma
    assert dma is not None
    client.write32(0, 0x4000, 77)
    _start(server, lambda: dma.read(BASE, 4, out.then), out)
    dma_req = _next_message(client)
    assert dma_req.command == Command.DMA_READ and not dma_req.is_reply
    for _ in range(3):
        msg_id = client.send(Command.REGION_READ, REGION_ACCESS.pack(0x4000, 0, 4))
        reply = _next_message(client)
        assert reply.is_reply and reply.msg_id == msg_id
        assert int.from_bytes(reply.payload[16:], "little") == 77
    assert not out.results and out.transfers[0].state is TransferState.PENDING
    client.send_raw(_read_reply(dma_req, no_fd_memory))
    _wait(lambda: bool(out.results))
    assert out.results == [b"late"]


@pytest.mark.parametrize("what", ["reset", "unmap", "unmap-all"])
def test_reset_or_unmap_while_a_dma_reply_is_outstanding(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory, what: str
) -> None:
    """Handled in order, before the reply: the transfer is cancelled, its continuation never
    runs, and the late reply is dropped without harm."""
    out = Outcome()
    dev = server.device
    dma = dev.message_dma
    assert dma is not None
    client.write32(0, 0x4000, 5)
    transfer = _start(server, lambda: dma.read(BASE, 8, out.then), out)
    dma_req = _next_message(client)
    if what == "reset":
        client.reset()
        assert client.read32(0, 0x4000) == 0  # the reset happened
    elif what == "unmap":
        client.dma_unmap(BASE, SIZE)
    else:
        client.dma_unmap(0, 0, DmaUnmapFlags.ALL)
    assert transfer.state is TransferState.CANCELLED  # before the reply to the command
    before = server.call(lambda: client_conn(server).unexpected_replies)
    client.send_raw(_read_reply(dma_req, no_fd_memory))
    client.read32(0, 0x4000)  # in order: the late reply has been handled
    assert server.call(lambda: client_conn(server).unexpected_replies) == before + 1
    assert server.call(dev.tasks.has_ready) is False
    assert out.results == []
    with pytest.raises(DmaFault, match="cancelled"):
        transfer.result()


def test_a_reply_in_but_not_yet_resumed_is_cancelled_by_an_unmap(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    """The reply and a DMA_UNMAP arrive in one read: the continuation was queued with the
    reply, and the unmap's quiesce cancels it before it can use what it read."""
    out = Outcome()
    dma = server.device.message_dma
    assert dma is not None
    transfer = _start(server, lambda: dma.read(BASE, 8, out.then), out)
    dma_req = _next_message(client)
    unmap_id = 0x7000
    unmap = encode_message(unmap_id, Command.DMA_UNMAP, MsgType.COMMAND, DMA_UNMAP.pack(DMA_UNMAP.size, 0, BASE, SIZE))
    client.send_raw(_read_reply(dma_req, no_fd_memory) + unmap)
    client.wait_reply(unmap_id)
    assert transfer.state is TransferState.DONE  # the reply did arrive
    client.read32(0, 0x4000)
    assert out.results == []  # but its continuation never ran
    assert server.device.tasks.stats.cancelled >= 1


def test_a_guest_memory_task_does_not_survive_an_unmap_but_others_do(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    def forever(deadline: float) -> bool:
        return True

    dev = server.device
    mem_task = server.call(lambda: dev.tasks.spawn(Task(forever, uses_guest_memory=True, name="uses-memory")))
    pure_task = server.call(lambda: dev.tasks.spawn(Task(forever, uses_guest_memory=False, name="pure")))
    client.dma_unmap(BASE, SIZE)
    assert mem_task.state is TaskState.CANCELLED
    steps = pure_task.steps
    _wait(lambda: pure_task.steps > steps)
    assert pure_task.state is TaskState.READY
    client.reset()
    assert state(pure_task) is TaskState.CANCELLED  # read anew: the reset changed it


def test_client_error_reply_is_a_dma_fault(server: ServerThread, client: VfioUserClient) -> None:
    client.dma_map(0x50000000, 0x1000, 3)  # no fd, and the client has no memory there
    out = Outcome()
    dma = server.device.message_dma
    assert dma is not None
    _start(server, lambda: dma.read(0x50000000, 8, out.then), out)
    _wait(lambda: bool(out.results), client)
    fault = out.results[0]
    assert isinstance(fault, DmaFault) and fault.fields["error"] == errno.EFAULT
    assert client.read32(0, 0x78000) == 0x76544776


def test_no_reply_in_time_is_a_dma_fault(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    out = Outcome()
    dma = server.device.message_dma
    assert dma is not None
    server.call(lambda: setattr(dma, "timeout", 0.2))
    _start(server, lambda: dma.read(BASE, 8, out.then), out)
    dma_req = _next_message(client)  # and never answered in time
    _wait(lambda: bool(out.results))
    assert isinstance(out.results[0], DmaFault) and "no reply" in str(out.results[0])
    client.send_raw(_read_reply(dma_req, no_fd_memory))  # too late: dropped
    assert client.read32(0, 0x78000) == 0x76544776
    assert server.call(lambda: client_conn(server).unexpected_replies) == 1
    assert len(out.results) == 1


def test_transfers_are_checked_before_anything_is_sent(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    client.dma_map(0x60000000, 0x2000, 1)  # read-only, no fd
    dma = server.device.message_dma
    assert dma is not None
    for start, why in [
        (lambda: dma.read(0x70000000, 8, lambda t: None), "no DMA window"),
        (lambda: dma.read(BASE + SIZE - 4, 8, lambda t: None), "no DMA window"),
        (lambda: dma.write(0x60000000, b"x", lambda t: None), "does not permit"),
        (lambda: dma.read(BASE, 0, lambda t: None), "empty"),
    ]:
        with pytest.raises(DmaFault, match=why):
            server.call(start)
    assert client.read32(0, 0x78000) == 0x76544776
    assert client.dma_requests_served == 0 and dma.in_flight == 0


def test_a_lost_client_cancels_its_transfers(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    out = Outcome()
    dma = server.device.message_dma
    assert dma is not None
    transfer = _start(server, lambda: dma.read(BASE, 8, out.then), out)
    _next_message(client)
    client.sock.shutdown(socket.SHUT_RDWR)
    _wait(lambda: server.server.client is None)
    assert transfer.state is TransferState.CANCELLED and out.results == []
    assert server.device.message_dma is None


def test_no_dma_by_message_from_the_aperture(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    """The aperture reaches a fd-less window only as scratch: waiting for a DMA reply inside
    a REGION_READ would deadlock QEMU."""
    no_fd_memory.write(BASE + 0x5000, b"not via aperture")
    client.write64(0, 8 << 20, (BASE + 0x5000) | 1)
    assert client.region_read(2, 0, 16) == bytes(16)
    assert client.dma_requests_served == 0


def client_conn(server: ServerThread) -> ServerConnection:
    assert server.server.client is not None
    return server.server.client.conn


def test_a_refused_dma_map_or_unmap_cancels_no_work(
    server: ServerThread, client: VfioUserClient, no_fd_memory: GuestMemory
) -> None:
    """The request is validated before the device quiesces: an overlapping map, an unmap that
    cuts a window and an unmap of nothing change nothing, so work that uses guest memory goes
    on; a good unmap then does quiesce it."""

    def forever(deadline: float) -> bool:
        return True

    dev = server.device
    task = server.call(lambda: dev.tasks.spawn(Task(forever, uses_guest_memory=True, name="uses-memory")))
    cancelled = server.call(lambda: dev.tasks.stats.cancelled)
    with pytest.raises(ErrorReply) as overlap:
        client.dma_map(BASE + 0x1000, 0x1000, 3)
    assert overlap.value.errno == errno.EEXIST
    with pytest.raises(ErrorReply) as cut:
        client.dma_unmap(BASE, 0x1000)
    assert cut.value.errno == errno.EINVAL
    client.dma_unmap(BASE + SIZE, 0x1000)  # covers no window: succeeds, changes nothing
    assert state(task) is TaskState.READY
    assert server.call(lambda: dev.tasks.stats.cancelled) == cancelled
    client.dma_unmap(BASE, SIZE)
    assert state(task) is TaskState.CANCELLED
