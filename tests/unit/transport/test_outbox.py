"""The client's outbox: what the socket does not take waits, in order, with its fds, and the
loop sends it when the socket is writable; a client that reads nothing past the bound is
dropped."""

from __future__ import annotations

import array
import os
import selectors
import socket
from collections.abc import Iterator

import pytest

from devmodel.device.tasks import TaskQueue
from devmodel.errors import TransportError
from devmodel.transport.loop import EventLoop
from devmodel.transport.outbox import Outbox


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    yield a, b
    a.close()
    b.close()


def _drain(b: socket.socket, want: int) -> tuple[bytes, list[int]]:
    got = b""
    fds: list[int] = []
    b.settimeout(5)
    while len(got) < want:
        data, anc, _, _ = b.recvmsg(65536, socket.CMSG_SPACE(16))
        assert data
        got += data
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", payload))
    return got, fds


def test_queued_writes_go_out_in_order_with_their_fds(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    loop = EventLoop(TaskQueue())
    reads: list[int] = []
    box = Outbox(a, loop, reads.append)
    loop.watch(a, selectors.EVENT_READ, reads.append)
    messages = [bytes([i]) * 100_000 for i in range(3)]
    r, w = os.pipe()
    box.send(messages[0])
    box.send(messages[1], [r])
    box.send(messages[2])
    assert box.queued > 0  # the socket took only part of it; nothing blocked
    expected = b"".join(messages)
    got = b""
    fds: list[int] = []
    while len(got) < len(expected):
        loop.run_once(1)
        part, more = _drain(b, 1)
        got += part
        fds += more
    assert got == expected and box.queued == 0
    assert len(fds) == 1
    os.write(w, b"!")
    assert os.read(fds[0], 1) == b"!"  # the pipe went across with the second message
    for fd in (r, w, *fds):
        os.close(fd)
    b.send(b"x")
    loop.run_once(1)
    assert reads  # reads still reach the client once the queue is empty
    loop.close()


def test_a_client_that_reads_nothing_is_dropped(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    loop = EventLoop(TaskQueue())
    box = Outbox(a, loop, lambda mask: None, max_queued=1 << 20)
    loop.watch(a, selectors.EVENT_READ, lambda mask: None)
    with pytest.raises(TransportError, match="unread"):
        for _ in range(100):
            box.send(bytes(64 << 10))
    loop.close()
