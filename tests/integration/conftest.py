"""A real server on a real UNIX socket, run in a thread in strict mode, and clients for it."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator

import pytest

from devmodel.device.device import Device
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.transport.server import Server
from devmodel.transport.unix import listen_unix
from devmodel.vfio_user.connection import ServerOptions
from gen_vgpu import GenVgpu, Platform


class ServerThread:
    def __init__(self, device: Device, path: str, options: ServerOptions) -> None:
        self.device = device
        self.path = path
        self.server = Server(device, listen_unix(path), options, strict=True)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def vgpu(self) -> GenVgpu:
        """The device, for tests that look inside the GEN vGPU."""
        assert isinstance(self.device, GenVgpu), "this server runs another device"
        return self.device

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.server.run_once(0.02)
        except BaseException as exc:  # noqa: BLE001 - surfaced at teardown
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.server.close()
        if self.error is not None:
            raise AssertionError(f"server thread died: {self.error!r}") from self.error


@pytest.fixture
def sock_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d:
        yield d


@pytest.fixture
def make_server(sock_dir: str) -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def make(
        platform: Platform = Platform.BDW, write_multiple: bool = True, device: Device | None = None
    ) -> ServerThread:
        path = os.path.join(sock_dir, f"s{len(started)}.sock")
        st = ServerThread(device or GenVgpu(platform), path, ServerOptions(write_multiple=write_multiple))
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
