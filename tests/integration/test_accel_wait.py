"""The loop's wait in C (dm_serve) keeps the loop's promises: a timer fires on time while the
client is idle, another fd is heard, and a read with fds or a message for Python comes back
to Python, all with the client's messages served in C in between."""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from devmodel.errors import ErrorReply, TransportError
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.transport.server import Server
from devmodel.transport.unix import listen_unix
from devmodel.vfio_user.connection import ServerOptions
from devmodel.vfio_user.constants import Command
from devmodel.vfio_user.layouts import REGION_ACCESS
from gen_vgpu import GenVgpu

from .conftest import accel_available

pytestmark = pytest.mark.skipif(not accel_available(), reason="the compiled accelerator is not installed")


class Running:
    """A server whose loop waits without a timeout of its own (as serve_forever does), a
    device timer due in half a second, and another fd the loop watches."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.device = GenVgpu()
        options = ServerOptions(write_multiple=True)
        self.server = Server(self.device, listen_unix(path), options, strict=True, accel=True)
        self.stop = False
        self.turns = 0
        self.waits_in_c = 0
        wait = self.server._wait_in_c

        def counting(timeout: float | None) -> list[tuple[int, int]] | None:
            ready = wait(timeout)
            self.waits_in_c += ready is not None
            return ready

        self.server.loop.waiter = counting
        self.fired = threading.Event()
        self.device.tasks.call_later(0.5, self.fired.set, uses_guest_memory=False)
        self._wake_r, self.wake = socket.socketpair()
        self.woken = threading.Event()
        self.on_wake: list[Callable[[], object]] = []
        self.server.add_reader(self._wake_r, self._on_wake)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_wake(self) -> None:
        self._wake_r.recv(16)
        while self.on_wake:  # what a test hands the loop's thread (tasks are not thread-safe)
            self.on_wake.pop(0)()
        self.woken.set()

    def _run(self) -> None:
        while not self.stop:
            self.server.run_once(None)
            self.turns += 1

    def close(self) -> None:
        self.stop = True
        self.wake.send(b"x")
        self.thread.join(5)
        self.server.close()
        self._wake_r.close()
        self.wake.close()


@pytest.fixture
def running(sock_dir: str) -> Iterator[Running]:
    r = Running(os.path.join(sock_dir, "wait.sock"))
    yield r
    r.close()


def _read(c: VfioUserClient, offset: int = 0x4000) -> bytes:
    return c.request(Command.REGION_READ, REGION_ACCESS.pack(offset, 0, 4)).payload[16:]


def test_timers_other_fds_and_python_messages_while_waiting_in_c(running: Running) -> None:
    with GuestMemory(1 << 20) as mem:
        c = VfioUserClient.connect(running.path, mem)
        try:
            c.negotiate()
            c.map_memory(mem)  # a message with an fd: Python's
            started = time.monotonic()
            assert _read(c) == bytes(4)
            assert running.server.client is not None and running.server.client.drain is not None
            # idle client: only the timer can end the wait
            assert running.fired.wait(5), "the device timer never fired"
            assert time.monotonic() - started < 4
            running.wake.send(b"x")
            assert running.woken.wait(5), "another fd was not heard"
            # a message C does not take, then C's again
            with pytest.raises(ErrorReply):
                c.request(Command.REGION_READ, REGION_ACCESS.pack(1 << 30, 0, 4))
            c.request(Command.REGION_WRITE, REGION_ACCESS.pack(0x4000, 0, 4) + b"\1\2\3\4")
            assert _read(c) == b"\1\2\3\4"
            assert running.waits_in_c > 0
        finally:
            c.close()


def test_timers_end_the_wait_through_its_timer_without_spinning(running: Running) -> None:
    """The wait in C arms the server's timerfd for the loop's nearest timer and waits without a
    timeout: each timer fires, and an expiry is consumed (a timerfd left readable would turn
    the loop without end)."""
    assert running.server.timer_fd >= 0
    fired: list[int] = []
    with GuestMemory(1 << 20) as mem:
        c = VfioUserClient.connect(running.path, mem)
        try:
            c.negotiate()
            assert _read(c) == bytes(4)  # the drain is attached: the waits are C's
            assert running.fired.wait(5), "the device timer never fired"
            turns = running.turns
            done = threading.Event()

            def later(n: int) -> None:
                fired.append(n)
                if n == 3:
                    done.set()

            def schedule() -> None:  # in the loop's thread
                for n, delay in ((3, 0.3), (1, 0.1), (2, 0.2)):
                    running.device.tasks.call_later(delay, functools.partial(later, n), uses_guest_memory=False)

            running.on_wake.append(schedule)
            running.wake.send(b"x")
            assert done.wait(5), f"timers fired: {fired}"
            assert fired == [1, 2, 3]
            time.sleep(0.3)  # idle, no timer left: the loop waits, unless the timerfd stayed readable
            # A handful of turns per timer; a readable timerfd turns it thousands of times.
            assert running.turns - turns < 100, running.turns - turns
            assert _read(c) == bytes(4)
        finally:
            c.close()


def test_a_bug_in_the_wait_loses_the_client_not_the_server(sock_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.path.join(sock_dir, "bug.sock")
    server = Server(GenVgpu(), listen_unix(path), ServerOptions(write_multiple=True), accel=True)  # not strict
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            server.run_once(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with GuestMemory(1 << 20) as mem:
            c = VfioUserClient.connect(path, mem)
            c.negotiate()
            assert _read(c) == bytes(4)  # the drain is attached: the next wait is C's

            def broken(_self: object) -> None:
                raise RuntimeError("a bug")

            monkeypatch.setattr(type(server.device._bar0_accel), "prepare", broken)  # type: ignore[attr-defined]
            time.sleep(0.2)  # the wait under way ends (its 20 ms) and the next one meets the bug
            with pytest.raises(TransportError):
                _read(c)  # the wait raised: this client is dropped
            c.close()
            monkeypatch.undo()
            c = VfioUserClient.connect(path, mem)  # and the server takes the next one
            c.negotiate()
            assert _read(c) == bytes(4)
            c.close()
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _write(c: VfioUserClient, offset: int, value: int) -> None:
    c.request(Command.REGION_WRITE, REGION_ACCESS.pack(offset, 0, 4) + value.to_bytes(4, "little"))


def test_accesses_c_hands_to_python_are_taken_inside_the_wait(running: Running) -> None:
    """A register a Python handler serves, read and written alone as a guest does: C hands
    each access over inside its wait (dm_serve.hand), and the loop does not go round for it."""
    with GuestMemory(1 << 20) as mem:
        c = VfioUserClient.connect(running.path, mem)
        try:
            c.negotiate()
            assert _read(c) == bytes(4)  # the drain is attached: the waits are C's
            client = running.server.client
            assert client is not None and client.drain is not None
            assert running.fired.wait(5)  # the fixture's timer gone: nothing else ends a wait
            handed, turns = client.drain.handed, running.turns
            for _ in range(200):
                assert _read(c, 0x2230) == bytes(4)  # ELSP reads 0
                _write(c, 0x941C, 0)  # GDRST, no engine
            assert client.drain.handed - handed == 400
            assert running.turns - turns < 40, running.turns - turns
        finally:
            c.close()


def test_a_handed_access_that_sets_a_timer_comes_back_to_the_loop(running: Running) -> None:
    """Pipe A lit with its vblank interrupt unmasked and enabled, through handed writes: the
    frame timer that starts then is the loop's nearest timer, so the wait comes back for the
    loop to arm it, and the vblanks raise the interrupt line on time with the client idle."""
    with GuestMemory(1 << 20) as mem:
        c = VfioUserClient.connect(running.path, mem)
        try:
            c.negotiate()
            assert _read(c) == bytes(4)
            assert running.fired.wait(5)  # no timer left: a wait that stayed in C would never end
            _write(c, 0x44200, 1 << 31)  # the master's enable
            for offset, value in ((0x4440C, 1), (0x44404, 0xFFFFFFFE), (0x70008, 1 << 31)):
                _write(c, offset, value)  # DE_PIPE_A IER, IMR; TRANSCONF_A's enable
            counters = running.device.interrupts.counters
            deadline = time.monotonic() + 5
            while counters.raised == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert counters.raised > 0, "no vblank interrupt with the client idle"
        finally:
            c.close()
