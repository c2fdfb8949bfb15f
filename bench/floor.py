"""What every protocol benchmark needs: CPU placement, a neutral client, the AF_UNIX floor
measured in the same run, and medians with their spread.

A ratio to a figure measured on another machine says little (machines of one kind differ by
tens of percent), so each protocol figure is printed next to the floor measured here and now:
a Python AF_UNIX peer that answers the same message sizes and does nothing else, placed on
the same CPUs as the device model. The neutral client is a bare socket loop over pre-encoded
requests, the same for the device model and for the floor, so the client's own cost is the
same on both sides of the ratio.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}

# pinned: client and server share CPU 0, so the server's own cost shows; split: client on CPU 0,
# server on CPU 1, a cross-CPU wake-up every round trip; unpinned: wherever the scheduler puts
# them (it may choose either, and differently for different servers).
PLACEMENTS = ("pinned", "split", "unpinned")


@dataclass(frozen=True)
class Figure:
    """Several runs of one measurement: the median and the spread (min to max)."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(max - min) / median: how far apart the runs were."""
        return (max(self.samples) - min(self.samples)) / self.median if self.median else 0.0

    def __str__(self) -> str:
        return f"{self.median:>11,.0f} ±{self.spread * 50:4.1f}%"


def placement_prefix(placement: str) -> list[str]:
    """The command prefix that puts a child process where the placement says."""
    if placement == "pinned":
        return ["taskset", "-c", "0"]
    if placement == "split":
        return ["taskset", "-c", "1"]
    return []


@contextlib.contextmanager
def placed(placement: str) -> Iterator[None]:
    """Run this process (the client) on CPU 0 for "pinned", anywhere otherwise."""
    before = os.sched_getaffinity(0)
    if placement in ("pinned", "split"):
        os.sched_setaffinity(0, {0})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# A server's start-up (interpreter, imports, the device) took over 10 s on a machine whose
# two cores ran several test suites; the benchmark waits as long as the CLI tests do.
def wait_for_socket(proc: subprocess.Popen[bytes], path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{proc.args!r} did not start")
        time.sleep(0.01)


@contextlib.contextmanager
def devmodel_process(placement: str, *extra: str, python_args: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
    """``devmodel serve`` in its own process; yields its socket path and pid. ``python_args``
    go to the interpreter before ``-m devmodel`` (``-m cProfile -o FILE``: a profile)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.sock")
        cmd = [
            *placement_prefix(placement),
            sys.executable,
            *python_args,
            "-m",
            "devmodel",
            "serve",
            "--socket",
            path,
            "--device",
            "gen_vgpu",
            "--log-level",
            "warning",
            *extra,
        ]
        proc = subprocess.Popen(cmd, env=ENV)
        try:
            wait_for_socket(proc, path)
            yield path, proc.pid
        finally:
            proc.terminate()
            proc.wait()


@contextlib.contextmanager
def reference_server(placement: str, command: Sequence[str]) -> Iterator[str]:
    """A vfio-user server binary the user names (e.g. libvfio-user's sample server, built by
    the user), started on a socket of ours: ``{socket}`` in its arguments is replaced by the
    socket's path, which is otherwise appended. Yields the path once the socket exists."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "reference.sock")
        args = [a.replace("{socket}", path) for a in command]
        if not any("{socket}" in a for a in command):
            args.append(path)
        proc = subprocess.Popen([*placement_prefix(placement), *args], stdout=subprocess.DEVNULL)
        try:
            wait_for_socket(proc, path)
            yield path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def devmodel_server(placement: str, *extra: str) -> Iterator[str]:
    """``devmodel serve`` in its own process; yields its socket path."""
    with devmodel_process(placement, *extra) as (path, _pid):
        yield path


# The floor peer: answers every ``batch`` bytes it reads with ``rep`` bytes (batch = one
# request: a round trip; batch = a burst of posted messages and a barrier: a drain).
# recv_into a preallocated buffer, as a lean server would; nothing else.
_ECHO_PEER = r"""
import os, socket, sys
path, batch, rep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ls.bind(path + '.tmp'); ls.listen(1); os.rename(path + '.tmp', path)  # there only once listening
s, _ = ls.accept()
view = memoryview(bytearray(1 << 17)); reply = bytes(rep)
pending = 0
while True:
    n = s.recv_into(view)
    if not n:
        break
    pending += n
    k, pending = divmod(pending, batch)
    if k:
        s.sendall(reply * k)
"""


@contextlib.contextmanager
def echo_peer(placement: str, batch: int, reply_size: int) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo.sock")
        cmd = [*placement_prefix(placement), sys.executable, "-c", _ECHO_PEER, path, str(batch), str(reply_size)]
        proc = subprocess.Popen(cmd)
        try:
            wait_for_socket(proc, path)
            yield path
        finally:
            proc.kill()
            proc.wait()


def connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def recv_exact(s: socket.socket, view: memoryview, n: int) -> None:
    got = 0
    while got < n:
        k = s.recv_into(view[got:n])
        if not k:
            raise ConnectionError("peer closed the connection")
        got += k


def round_trips(s: socket.socket, request: bytes, reply_size: int, n: int) -> tuple[float, list[float]]:
    """n request/reply round trips, one outstanding: (rate, latencies in seconds)."""
    buf = memoryview(bytearray(reply_size))
    lat = [0.0] * n
    clock = time.perf_counter
    send = s.sendall
    t0 = clock()
    for i in range(n):
        t = clock()
        send(request)
        recv_exact(s, buf, reply_size)
        lat[i] = clock() - t
    return n / (clock() - t0), lat


def posted(s: socket.socket, messages: Sequence[bytes], barrier: bytes, reply_size: int) -> float:
    """Posted messages sent one system call each (as a vCPU's trapped stores arrive), then a
    barrier message whose reply says all of them were handled: messages per second."""
    buf = memoryview(bytearray(reply_size))
    send = s.sendall
    t0 = time.perf_counter()
    for message in messages:
        send(message)
    send(barrier)
    recv_exact(s, buf, reply_size)
    return (len(messages) + 1) / (time.perf_counter() - t0)


def percentile(lat: Sequence[float], p: float) -> float:
    """The p-th quantile of latencies in seconds, in microseconds."""
    ordered = sorted(lat)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1e6


def ratio(value: float, floor: float) -> str:
    return f"{value / floor:5.2f}x" if floor else "   - "
