"""``devmodel serve`` and ``devmodel inspect`` as a user runs them."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devmodel.errors import ErrorReply
from devmodel.testing import GuestMemory, VfioUserClient

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}


def _serve(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devmodel", "serve", *args],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


# A server process starts (and stops) in about a second; these only guard against one that never
# does, so they allow for a machine whose cores other work keeps busy (an import can take many
# seconds: the fuzzer's server once took more than 10 s to start).
STARTUP = 60.0


def _wait_for(path: str, proc: subprocess.Popen[str], timeout: float = STARTUP) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def _connect(path: str, mem: GuestMemory) -> VfioUserClient:
    """The socket file exists from bind(); listen() follows a moment later."""
    deadline = time.monotonic() + STARTUP
    while True:
        try:
            return VfioUserClient.connect(path, mem)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_socket_mode_and_clean_exit(tmp_path: Path, sig: int) -> None:
    path = str(tmp_path / "vgpu.sock")
    proc = _serve("--socket", path, "--device", "gen_vgpu")
    try:
        _wait_for(path, proc)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with GuestMemory(1 << 20) as mem, VfioUserClient.connect(path, mem) as c:
            c.negotiate()
            assert c.read64(0, 0x78000) == 0x4776544776544776
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=STARTUP)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert not os.path.exists(path) and not os.path.exists(path + ".ctl")
    assert "stopped" in err


def test_refuse_unsealed_memory_option(tmp_path: Path) -> None:
    path = str(tmp_path / "vgpu.sock")
    proc = _serve("--socket", path, "--device", "gen_vgpu", "--refuse-unsealed-memory")
    try:
        _wait_for(path, proc)
        with GuestMemory(1 << 20, sealed=False) as loose, GuestMemory(1 << 20) as sealed:
            with VfioUserClient.connect(path) as c:
                c.negotiate()
                with pytest.raises(ErrorReply) as e:
                    c.map_memory(loose)
                assert e.value.errno == errno.EPERM
                c.map_memory(sealed)
        proc.terminate()
        _, err = proc.communicate(timeout=STARTUP)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "not sealed against shrinking" in err


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_during_the_stop_is_ignored(tmp_path: Path, second: int) -> None:
    """As ``timeout`` does (one SIGTERM to the child, one to its group): more signals while
    the stop runs with a client attached, until the process is gone, several times; every
    run exits 0 after a full stop. The signals keep coming through every phase of the stop,
    the interpreter's own shutdown included."""
    for run in range(4):
        path = str(tmp_path / f"vgpu{run}.sock")
        proc = _serve("--socket", path, "--device", "gen_vgpu")
        try:
            _wait_for(path, proc)
            with GuestMemory(1 << 20) as mem, _connect(path, mem) as c:
                c.negotiate()
                c.map_memory(mem)
                assert c.read32(0, 0x78000) == 0x76544776
                proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + STARTUP
                while proc.poll() is None and time.monotonic() < deadline:
                    proc.send_signal(second)
                    time.sleep(0.0005)  # pacing, not a measurement
                _, err = proc.communicate(timeout=STARTUP)
        finally:
            proc.kill()
        assert proc.returncode == 0, (run, proc.returncode, err)
        assert "stopped" in err and not os.path.exists(path)


def test_refuses_a_live_socket_and_replaces_a_stale_one(tmp_path: Path) -> None:
    path = str(tmp_path / "vgpu.sock")
    first = _serve("--socket", path, "--device", "gen_vgpu")
    try:
        _wait_for(path, first)
        second = _serve("--socket", path, "--device", "gen_vgpu")
        _, err = second.communicate(timeout=STARTUP)
        assert second.returncode == 1 and "another server is listening" in err
        first.kill()  # no cleanup: leaves a stale socket file behind
        first.wait()
        assert os.path.exists(path)
        third = _serve("--socket", path, "--device", "gen_vgpu")
        try:
            deadline = time.monotonic() + STARTUP
            while True:
                try:
                    with VfioUserClient.connect(path) as c:
                        c.negotiate()
                        break
                except OSError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        finally:
            third.terminate()
            third.communicate(timeout=STARTUP)
    finally:
        first.kill()


def test_fd_socket_activation(tmp_path: Path) -> None:
    path = str(tmp_path / "act.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    proc = _serve("--fd", str(listener.fileno()), "--device", "gen_vgpu", pass_fds=[listener.fileno()])
    listener.close()
    try:
        # Connected to the listener before the server has started: its first reply waits for
        # the server's start-up, not for a request's handling.
        with VfioUserClient.connect(path, timeout=STARTUP) as c:
            c.negotiate()
            assert c.read32(0, 0x78000) == 0x76544776
        proc.terminate()
        proc.communicate(timeout=STARTUP)
    finally:
        proc.kill()
    assert proc.returncode == 0


def test_unknown_device(tmp_path: Path) -> None:
    proc = _serve("--socket", str(tmp_path / "x.sock"), "--device", "no_such_gpu")
    _, err = proc.communicate(timeout=STARTUP)
    assert proc.returncode == 2 and "no device plugin named 'no_such_gpu'" in err


def test_inspect_ggtt(tmp_path: Path) -> None:
    path = str(tmp_path / "vgpu.sock")
    proc = _serve("--socket", path, "--device", "gen_vgpu")
    try:
        _wait_for(path + ".ctl", proc)  # the inspection socket opens right after the main one
        with GuestMemory(1 << 20) as mem, VfioUserClient.connect(path, mem) as c:
            c.negotiate()
            c.map_memory(mem)
            c.write64(0, (8 << 20) + 5 * 8, 0x3000 | 1)
            c.write64(0, (8 << 20) + 6 * 8, (0x900000 << 12) | 1)
            c.read32(0, 0)

            def inspect(*args: str) -> dict[str, Any]:
                out = subprocess.run(
                    [sys.executable, "-m", "devmodel", "inspect", "--socket", path, *args],
                    env=ENV, capture_output=True, text=True, timeout=STARTUP, check=False,
                )
                assert out.returncode == 0, out.stderr
                return json.loads(out.stdout)

            mapped = inspect("ggtt", hex(5 << 12))
            assert mapped["guest_entry"] == hex(0x3001) and mapped["host_frame"] != "scratch"
            assert mapped["dma_window"]["iova"] == "0x0" and mapped["dma_window"]["has_fd"]
            outside = inspect("ggtt", hex(6 << 12))
            assert outside["host_frame"] == "scratch" and outside["dma_window"] is None
            assert outside["counters"]["writes"] == 2
            stats = inspect("stats")
            assert any("GGTT writes=2" in line for line in stats["lines"])
        bad = subprocess.run(
            [sys.executable, "-m", "devmodel", "inspect", "--socket", path, "ggtt", "0x100000000"],
            env=ENV, capture_output=True, text=True, timeout=STARTUP, check=False,
        )
        assert bad.returncode == 1 and "outside the 4 GiB GGTT" in bad.stderr
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=STARTUP)
    assert "GGTT writes=2" in err  # counters in the log at exit


def test_trace_list_and_serve_with_a_trace(tmp_path: Path) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "devmodel", "trace", "--list"],
        env=ENV, capture_output=True, text=True, timeout=STARTUP, check=False,
    )
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert {"mmio_write", "execlist_submit", "csb", "irq_raise", "ggtt_write", "scan_reject", "dma_map"} <= set(names)
    bad = _serve("--socket", str(tmp_path / "x.sock"), "--device", "gen_vgpu", "--trace", "no_such_*")
    _, err = bad.communicate(timeout=STARTUP)
    assert bad.returncode == 2 and "no trace event matches 'no_such_*'" in err
    path = str(tmp_path / "vgpu.sock")
    trace_file = tmp_path / "trace.log"
    proc = _serve("--socket", path, "--device", "gen_vgpu", "--trace", "mmio_*,dma_*", "--trace-file", str(trace_file))
    try:
        _wait_for(path, proc)
        with GuestMemory(1 << 20) as mem, _connect(path, mem) as c:
            c.negotiate()
            c.map_memory(mem)
            c.write32(0, 0x22030, 0x1A8)
            assert c.read32(0, 0x22030) == 0x1A8  # served by Python while traced, accelerator or not
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=STARTUP)
    assert "tracing " in err and "mmio_write" in err
    lines = [line.split(" ", 1)[1] for line in trace_file.read_text().splitlines()]
    assert "mmio_write RING_TAIL(bcs) 0x22030 = 0x1a8" in lines
    assert "mmio_read RING_TAIL(bcs) 0x22030 = 0x1a8" in lines
    assert any(line.startswith("dma_map iova 0x0 size 0x100000") for line in lines)


def _maps_numpy(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "_multiarray_umath" in f.read()


def test_the_render_engine_loads_when_a_guest_attaches_not_at_start(tmp_path: Path) -> None:
    """An idle device does not hold numpy and the render engine (11 MiB resident); a client's
    attach loads them, before any of its workloads could meet the import inside a step."""
    path = str(tmp_path / "vgpu.sock")
    proc = _serve("--socket", path, "--device", "gen_vgpu")
    try:
        assert proc.stderr is not None
        while "serving" not in (line := proc.stderr.readline()):
            assert line, "the server exited before serving"
        assert not _maps_numpy(proc.pid)
        with GuestMemory(1 << 20) as mem, VfioUserClient.connect(path, mem) as c:
            c.negotiate()
            assert c.read64(0, 0x78000) == 0x4776544776544776  # the attach has been served
            assert _maps_numpy(proc.pid)
    finally:
        proc.kill()
        proc.communicate()
