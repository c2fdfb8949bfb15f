"""A real server on a real UNIX socket, run in a thread in strict mode, and clients for it."""

from __future__ import annotations

import os
import queue
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devmodel import accel as accel_module
from devmodel.device.device import Device
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.transport.control import ControlServer, control_path
from devmodel.transport.server import Server
from devmodel.transport.unix import listen_unix
from devmodel.vfio_user.connection import ServerOptions
from gen_vgpu import GenVgpu, Platform


class ServerThread:
    def __init__(
        self, device: Device, path: str, options: ServerOptions, control: bool = False, accel: bool | None = None
    ) -> None:
        self.device = device
        self.path = path
        self.server = Server(device, listen_unix(path), options, strict=True, accel=accel)
        self.control = ControlServer(self.server, control_path(path)) if control else None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        # call(): functions to run on the server's thread, between its loop's turns
        self._calls: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.server.add_reader(self._wake_r, self._run_calls)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def vgpu(self) -> GenVgpu:
        """The device, for tests that look inside the GEN vGPU."""
        assert isinstance(self.device, GenVgpu), "this server runs another device"
        return self.device
    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the server's thread (as the loop's own callbacks run) and return
        its result: the device is touched by one thread only."""
        done: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._calls.put((fn, done))
        self._wake_w.send(b"x")
        ok, value = done.get(timeout=10)
        if not ok:
            raise value
        return value

    def _run_calls(self) -> None:
        self._wake_r.recv(4096)
        while not self._calls.empty():
            fn, done = self._calls.get()
            try:
                done.put((True, fn()))
            except BaseException as exc:  # noqa: BLE001 (handed to the caller, who re-raises it)
                done.put((False, exc))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.server.run_once(0.02)
        except BaseException as exc:  # noqa: BLE001 - surfaced at teardown
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        if self.control is not None:
            self.control.close()
        self.server.close()
        self._wake_r.close()
        self._wake_w.close()
        if self.error is not None:
            raise AssertionError(f"server thread died: {self.error!r}") from self.error


@pytest.fixture
def sock_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d:
        yield d


def accel_available() -> bool:
    return accel_module.load(True) is not None


@pytest.fixture(params=["accel", "python"])
def serve_path(request: pytest.FixtureRequest) -> bool:
    """Every server test runs on both paths: with the compiled accelerator and on Python
    alone (DEVMODEL_ACCEL=0 leaves only the second). Without the module the first is
    skipped here, and tests/unit/test_accel.py fails once, saying so."""
    if request.param == "accel":
        if not accel_module.enabled_by_env():
            pytest.skip("DEVMODEL_ACCEL=0")
        if not accel_available():
            pytest.skip("the compiled accelerator is not installed (ci/setup-python builds it)")
    return request.param == "accel"


@pytest.fixture
def make_server(sock_dir: str, serve_path: bool) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(
        platform: Platform = Platform.BDW,
        write_multiple: bool = True,
        device: Device | None = None,
        control: bool = False,
        accel: bool | None = None,
    ) -> ServerThread:
        path = os.path.join(sock_dir, f"s{len(started)}.sock")
        st = ServerThread(
            device or GenVgpu(platform),
            path,
            ServerOptions(write_multiple=write_multiple),
            control,
            serve_path if accel is None else accel,
        )
        started.append(st)
        return st

    yield make
    for st in started:
        st.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


@pytest.fixture
def memory() -> Iterator[GuestMemory]:
    with GuestMemory(16 << 20) as mem:
        yield mem


@pytest.fixture
def raw_client(server: ServerThread, memory: GuestMemory) -> Iterator[VfioUserClient]:
    """Connected, nothing sent."""
    c = VfioUserClient.connect(server.path, memory)
    yield c
    c.close()


@pytest.fixture
def client(raw_client: VfioUserClient, memory: GuestMemory) -> VfioUserClient:
    """Negotiated as QEMU does, with guest RAM mapped at 0."""
    raw_client.negotiate()
    raw_client.map_memory(memory)
    return raw_client
