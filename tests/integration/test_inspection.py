"""The inspection socket never holds up the vfio-user client: a client that trickles its
request, many at once, too many, one that says too much, one that says nothing, one whose
question makes the device raise."""

from __future__ import annotations

import json
import select
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devmodel.testing import VfioUserClient
from devmodel.transport.control import MAX_CONNECTIONS, MAX_REQUEST, control_path

from .conftest import ServerThread

REQUEST = b'{"what": "stats"}\n'


@pytest.fixture
def inspected(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(control=True)


@pytest.fixture
def vfu(inspected: ServerThread) -> Iterator[VfioUserClient]:
    with VfioUserClient.connect(inspected.path) as c:
        c.negotiate()
        c.write32(0, 0x4000, 0x1234)
        yield c


def _connect(st: ServerThread) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(control_path(st.path))
    return s


def _nothing_yet(s: socket.socket) -> bool:
    """Connected, and no answer (nor EOF) has come."""
    return not select.select([s], [], [], 0)[0]


def _answer(s: socket.socket) -> dict[str, Any]:
    buf = b""
    while not buf.endswith(b"\n"):
        part = s.recv(65536)
        assert part, f"closed after {buf!r}"
        buf += part
    try:
        assert s.recv(1) == b""  # one answer, then the server closes
    except ConnectionResetError:
        pass  # closed with request bytes it never read (an overlong request)
    answer: dict[str, Any] = json.loads(buf)
    return answer


def test_a_trickling_client_does_not_hold_up_region_reads(inspected: ServerThread, vfu: VfioUserClient) -> None:
    """One byte at a time, a REGION_READ between bytes: each is answered while the
    inspection request is still incomplete and unanswered."""
    s = _connect(inspected)
    for byte in REQUEST[:-1]:
        s.send(bytes([byte]))
        assert vfu.read32(0, 0x4000) == 0x1234
        assert _nothing_yet(s)
    s.send(b"\n")
    answer = _answer(s)
    assert answer["device"] == "gen_vgpu" and answer["lines"]
    assert answer["tasks"]["live"] == 0 and answer["tasks"]["late_steps"] == 0
    s.close()


def test_many_clients_at_once(inspected: ServerThread, vfu: VfioUserClient) -> None:
    socks = [_connect(inspected) for _ in range(MAX_CONNECTIONS)]
    for s in socks:
        s.send(REQUEST[:5])
    assert vfu.read32(0, 0x4000) == 0x1234
    assert all(_nothing_yet(s) for s in socks)
    for s in reversed(socks):
        s.send(REQUEST[5:])
        assert "lines" in _answer(s)
        s.close()


def test_one_too_many_is_closed_and_the_rest_go_on(inspected: ServerThread, vfu: VfioUserClient) -> None:
    socks = [_connect(inspected) for _ in range(MAX_CONNECTIONS)]
    vfu.read32(0, 0x4000)  # the loop has accepted them
    extra = _connect(inspected)
    assert extra.recv(1) == b""
    assert inspected.control is not None and inspected.control.refused == 1
    socks[0].send(REQUEST)
    assert "lines" in _answer(socks[0])
    for s in [*socks, extra]:
        s.close()


def test_an_overlong_request_gets_an_error(inspected: ServerThread, vfu: VfioUserClient) -> None:
    s = _connect(inspected)
    s.sendall(b"x" * (MAX_REQUEST + 10))
    assert "longer than" in _answer(s)["error"]
    assert vfu.read32(0, 0x4000) == 0x1234


def test_a_silent_client_is_closed_at_the_time_limit(inspected: ServerThread, vfu: VfioUserClient) -> None:
    assert inspected.control is not None
    inspected.call(lambda: setattr(inspected.control, "time_limit", 0.2))
    s = _connect(inspected)
    s.send(b"{")
    assert s.recv(1) == b""  # closed by the server, within the socket's 10 s timeout
    assert vfu.read32(0, 0x4000) == 0x1234
    assert inspected.call(lambda: len(inspected.control.connections)) == 0  # type: ignore[union-attr]


def test_bad_requests_get_errors(inspected: ServerThread) -> None:
    for line, why in [
        (b"not json\n", "bad request"),
        (b"[1]\n", "expected"),
        (b'{"what": "stats", "args": [1]}\n', "args"),
        (b'{"what": "nothing"}\n', "unknown topic"),
    ]:
        s = _connect(inspected)
        s.sendall(line)
        assert why in _answer(s)["error"]
        s.close()


def test_a_device_that_raises_cannot_end_the_loop(inspected: ServerThread, vfu: VfioUserClient) -> None:
    dev = inspected.device

    def broken(what: str, args: list[str]) -> dict[str, Any]:
        if what == "stats":
            raise RuntimeError("inspection bug")
        return {"unserializable": object()}

    dev.inspect = broken  # type: ignore[method-assign]
    s = _connect(inspected)
    s.sendall(REQUEST)
    assert "internal error" in _answer(s)["error"]
    s2 = _connect(inspected)
    s2.sendall(b'{"what": "ggtt"}\n')
    assert s2.recv(1) == b""  # the answer could not be encoded: closed, logged
    assert vfu.read32(0, 0x4000) == 0x1234
    assert inspected.thread.is_alive()
