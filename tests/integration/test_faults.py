"""Faults in the middle of a workload, against ``devmodel serve`` in its own process: the client
goes away (closing, or killed), guest memory is unmapped, the guest reboots, the server is
told to stop. After each, the next client is served correctly and the server holds what an
idle one holds: the same fds, no DMA window, no shadow table, no workload, no extra page."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devmodel.testing import GuestMemory, VfioUserClient, fuzz
from devmodel.transport.control import control_path, query
from gen_vgpu.engines import ENGINES, EngineId
from gen_vgpu.mmio import regs
from gen_vgpu.mmio.gt import GDRST
from tests.unit.gen_vgpu import cmd_streams as c
from tests.unit.gen_vgpu.engine_rig import PAGE, RAM, Rig, Tree

RCS = ENGINES[EngineId.RCS]
BUF = 0x1_0000_0000
GGTT_BATCH = 200  # entries per REGION_WRITE_MULTI, as QEMU batches them


class RemoteRig(Rig):
    """The workload rig driving a device in another process through a vfio-user client: MMIO
    by REGION_READ/WRITE, GGTT entries by REGION_WRITE_MULTI, guest RAM shared."""

    def __init__(self, client: VfioUserClient, mem: GuestMemory) -> None:
        self.client = client
        self.mem = mem
        self._pending: list[tuple[int, int, bytes]] = []
        self._setup()

    def ggtt_write(self, index: int, entry: int) -> None:
        self._pending.append((0, regs.GGTT_OFFSET + 8 * index, entry.to_bytes(8, "little")))
        if len(self._pending) == GGTT_BATCH:
            self.client.write_multi(self._pending)
            self._pending.clear()

    def r(self, off: int) -> int:
        return self.client.read32(0, off)

    def w(self, off: int, value: int) -> None:
        if self._pending:
            self.client.write_multi(self._pending)
            self._pending.clear()
        self.client.write32(0, off, value & 0xFFFFFFFF)

    def run(self) -> int:
        raise NotImplementedError("the device runs in another process: wait for what the guest sees")


def attach(path: str, mem: GuestMemory) -> tuple[VfioUserClient, RemoteRig]:
    client = VfioUserClient.connect(path, mem)
    client.negotiate()
    client.map_memory(mem)
    return client, RemoteRig(client, mem)


def held(path: str) -> dict[str, Any]:
    answer = query(control_path(path), {"what": "stats", "args": []})
    return dict(answer["held"])


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def start_runaway(rig: RemoteRig) -> None:
    """A PPGTT batch that jumps to itself on RCS: it runs until the watchdog, seconds away."""
    tree = Tree(rig.guest, 4)
    (batch,) = tree.buffer(BUF, PAGE)
    rig.mem.write(batch, struct.pack("<3I", *c.bb_start(BUF)))
    rig.submit(rig.context(RCS, tree), c.bb_start(BUF))


def attach_running(path: str, mem: GuestMemory) -> tuple[VfioUserClient, RemoteRig]:
    """A client with a runaway workload running on RCS: the moment to inject a fault."""
    client, rig = attach(path, mem)
    start_runaway(rig)
    wait_for(lambda: held(path)["workloads_running"] == 1, "the workload to run")
    return client, rig


def store_lands(rig: RemoteRig) -> None:
    """A good workload after the fault: MI_STORE_DATA_IMM through a fresh 4-level tree."""
    tree = Tree(rig.guest, 4)
    (page,) = tree.buffer(BUF + 0x10_0000, PAGE)
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.sdi(BUF + 0x10_0000 + 8, 0xC0FFEE))
    wait_for(lambda: rig.guest.d(page + 8) == 0xC0FFEE, "the store to land")
    wait_for(lambda: rig.ring_head(ctx) == ctx.tail, "the context to complete")


@pytest.fixture
def served() -> Iterator[fuzz.ServerProcess]:
    with fuzz.serving() as server:
        yield server


@pytest.fixture
def idle(served: fuzz.ServerProcess) -> dict[str, Any]:
    """What the idle server holds, before any client came. An inspection connection the server
    has answered may still be open for a moment: the fewest fds seen is the idle count."""
    counts = held(served.path)
    return {"fds": fuzz.idle_fd_count(served), **counts}


def back_to_idle(server: fuzz.ServerProcess, idle: dict[str, Any]) -> None:
    now: dict[str, Any] = {}

    def idle_again() -> bool:
        now.update(**held(server.path), fds=server.fd_count())
        return now == idle

    try:
        wait_for(idle_again, "the server to hold what it held idle")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: idle {idle}, now {now}") from None


def test_the_client_goes_away_mid_workload(served: fuzz.ServerProcess, idle: dict[str, Any]) -> None:
    with GuestMemory(RAM) as mem:
        client, rig = attach_running(served.path, mem)
        assert held(served.path)["shadow_tables"] > 0
        client.close()
        back_to_idle(served, idle)
        client, rig = attach(served.path, mem)
        store_lands(rig)
        client.close()
    back_to_idle(served, idle)


_KILLED_CLIENT = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = sys.argv[2].split(":")
    from devmodel.testing import GuestMemory
    from tests.integration.test_faults import attach, start_runaway
    with GuestMemory(48 << 20) as mem:
        client, rig = attach(sys.argv[1], mem)
        start_runaway(rig)
        print("submitted", flush=True)
        time.sleep(60)
    """
)


def test_the_client_is_killed_mid_workload(served: fuzz.ServerProcess, idle: dict[str, Any]) -> None:
    """As QEMU killed with SIGKILL: the kernel closes its socket, nobody says goodbye."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = fuzz.ServerProcess.environment()
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CLIENT, served.path, f"{root}:{root}/plugins"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
        wait_for(lambda: held(served.path)["workloads_running"] == 1, "the workload to run")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    back_to_idle(served, idle)
    with GuestMemory(RAM) as mem:
        client, rig = attach(served.path, mem)
        store_lands(rig)
        client.close()
    back_to_idle(served, idle)


def test_guest_memory_is_unmapped_mid_workload(served: fuzz.ServerProcess, idle: dict[str, Any]) -> None:
    with GuestMemory(RAM) as mem:
        client, rig = attach_running(served.path, mem)
        client.dma_unmap(0, RAM)  # answered: every use of the window stopped first
        assert held(served.path)["dma_windows"] == 0
        client.map_memory(mem)
        rig.w(GDRST, RCS.gdrst_bit)  # reset RCS: stop the runaway
        wait_for(lambda: held(served.path)["workloads_running"] == 0, "the engine reset")
        store_lands(rig)
        client.close()
    back_to_idle(served, idle)


def test_the_guest_reboots_mid_workload(served: fuzz.ServerProcess, idle: dict[str, Any]) -> None:
    with GuestMemory(RAM) as mem:
        client, rig = attach_running(served.path, mem)
        client.reset()  # DEVICE_RESET, as QEMU sends it on a guest reboot
        after = held(served.path)
        assert after["workloads_running"] == 0 and after["shadow_tables"] == 0
        rig = RemoteRig(client, mem)  # the driver starts over: GGTT, status pages, execlists
        store_lands(rig)
        client.close()
    back_to_idle(served, idle)


def test_sigterm_mid_workload_stops_cleanly() -> None:
    with fuzz.serving() as server, GuestMemory(RAM) as mem:
        client, _rig = attach_running(server.path, mem)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0, server.log_tail()
        assert not os.path.exists(server.path)
        client.close()
