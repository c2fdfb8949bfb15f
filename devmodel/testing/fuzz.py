"""A protocol fuzzer for a running ``devmodel serve``: valid vfio-user traffic, mutated.

It plays a hostile client over a real socket against a server in its own process, and checks
what the server promises (docs/vfio-user.md, the error model of docs/architecture.md):

- the process never dies and never hangs: after every step a probe (a REGION_READ of config
  space) is answered within QEMU's 5 s timeout;
- every non-posted request gets exactly one reply, in order, before the probe's;
- the connection is dropped only for a framing error (a size outside the bounds, an unknown
  message type), and then the next client is served;
- no fd is left behind: each time a client is gone the server is back at the fd count it had
  before any client came;
- memory: resident size at the start and the end is reported.

Steps are built from valid messages of every command (VERSION, DMA_MAP with memfds and
without, DMA_UNMAP, the GET_INFO family, SET_IRQS with eventfds, REGION_READ/WRITE on every
region, REGION_WRITE_MULTI, DEVICE_RESET), then mutated: bit flips, truncation, garbage
appended, header fields replaced, fds of every kind attached, random read splits, floods of
posted writes and DMA_MAP/UNMAP storms, VERSION out of order, hostile WRITE_MULTI counts.

``python -m devmodel.testing.fuzz --seconds 600`` is the long run; tests run a bounded one.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TransportError
from ..transport.control import control_path, query
from ..transport.unix import close_fds, recv_chunk, send_message
from ..vfio_user.constants import (
    HEADER_SIZE,
    MAX_MSG_SIZE,
    Command,
    HeaderFlags,
    IrqSetFlags,
    MsgType,
)
from ..vfio_user.framing import Framer, encode_message
from ..vfio_user.layouts import (
    DEVICE_INFO,
    DMA_MAP,
    DMA_UNMAP,
    IRQ_INFO,
    IRQ_SET,
    REGION_ACCESS,
    REGION_INFO,
    VERSION,
    WRITE_MULTI,
    WRITE_MULTI_ENTRY,
)
from .client import QEMU_CAPS

__all__ = ["FuzzReport", "Fuzzer", "main"]

PROBE_TIMEOUT = 5.0  # QEMU's reply timeout
HANG_UP_GUARD = 60.0  # a hang guard for the server's close of a client that hung up, not a figure
GUEST_RAM = 16 << 20
CONFIG_REGION = 7
_CMD = int(MsgType.COMMAND)
_NO_REPLY = int(HeaderFlags.NO_REPLY)


@dataclass
class FuzzReport:
    steps: int = 0
    messages: int = 0
    bytes_sent: int = 0
    replies: int = 0
    errnos: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    expected_drops: int = 0
    rss_kib_start: int = 0
    rss_kib_end: int = 0
    findings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in self.errnos.most_common(8))
        return (
            f"{self.steps} steps, {self.messages} messages ({self.bytes_sent / 1e6:.1f} MB), {self.replies} replies; "
            f"error replies: {top or 'none'}; {self.connections} connections, {self.expected_drops} dropped for "
            f"framing errors; server RSS {self.rss_kib_start} -> {self.rss_kib_end} KiB; "
            f"{len(self.findings)} findings"
        )


@dataclass
class Out:
    """One message as it goes out: bytes, the fds to attach, whether a reply is due."""

    data: bytes
    fds: list[int] = field(default_factory=list)
    msg_id: int = -1
    expects_reply: bool = False
    breaks_framing: bool = False
    note: str = ""

    def describe(self) -> str:
        command = struct.unpack_from("<H", self.data, 2)[0] if len(self.data) >= 4 else -1
        return f"cmd {command} {len(self.data)} B {len(self.fds)} fds{' ' + self.note if self.note else ''}"


class ServerProcess:
    """``devmodel serve`` in a process of its own, watched through /proc."""

    @staticmethod
    def environment() -> dict[str, str]:
        """This process's environment, with the tree this devmodel was imported from (and its
        plugins beside it) first on the path: the server runs the code under test, not an
        installed copy."""
        root = Path(__file__).resolve().parents[2]
        paths = [str(root)] + ([str(root / "plugins")] if (root / "plugins").is_dir() else [])
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}

    def __init__(self, directory: str, extra: list[str] | None = None) -> None:
        self.path = os.path.join(directory, "fuzz.sock")
        self.log_path = os.path.join(directory, "server.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devmodel",
                "serve",
                "--socket",
                self.path,
                "--device",
                "gen_vgpu",
                "--log-level",
                "warning",
                *(extra or []),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
        )
        # A hang guard, not a figure: a loaded machine took more than 10 s to import and start.
        deadline = time.monotonic() + 60
        while not os.path.exists(self.path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start:\n" + self.log_tail())
            time.sleep(0.01)
        # The socket appears before the server has opened everything it holds while idle
        # (its loop, the inspection socket, the signal pipe); an answer on the inspection
        # socket comes from the running loop, so the idle fd count is taken after it.
        while True:
            try:
                query(control_path(self.path), {"what": "stats", "args": []})
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start:\n" + self.log_tail()) from None
                time.sleep(0.01)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def fd_targets(self) -> dict[int, str]:
        """What each fd of the server is (its /proc link): a finding names the fds it is about."""
        d = f"/proc/{self.proc.pid}/fd"
        out: dict[int, str] = {}
        for name in os.listdir(d):
            with contextlib.suppress(OSError):  # closed between the listing and the link
                out[int(name)] = os.readlink(f"{d}/{name}")
        return out

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")

    def stop(self) -> int:
        if self.alive():
            self.proc.terminate()
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        return code


class Connection:
    """A client socket with its own framer; replies are collected by message id."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.framer = Framer(max_size=MAX_MSG_SIZE + 4096)
        self.next_id = 0
        self.negotiated = False

    def take_id(self) -> int:
        msg_id = self.next_id
        self.next_id = (self.next_id + 1) & 0xFFFF
        return msg_id

    def close(self) -> None:
        self.sock.close()


class Fuzzer:
    def __init__(self, seed: int, server: ServerProcess, report: FuzzReport) -> None:
        self.rng = random.Random(seed)
        self.server = server
        self.report = report
        self.memfd = os.memfd_create("fuzz-ram", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        os.ftruncate(self.memfd, GUEST_RAM)
        fcntl_seal(self.memfd)
        self.idle_fds = idle_fd_count(server)
        self.idle_targets = server.fd_targets()
        self.conn = self._connect()

    # --- connections -----------------------------------------------------------------------

    def _connect(self) -> Connection:
        self.report.connections += 1
        conn = Connection(self.server.path)
        return conn

    def _negotiate(self, conn: Connection) -> None:
        out = self.version()
        self._send(conn, out)
        self._expect(conn, [out.msg_id], "VERSION")
        conn.negotiated = True

    def _reconnect(self, why: str) -> None:
        # Once a client is gone the server must hold again what it held before any client
        # came. When is told by the server, not by a clock (a 10 s wait once failed on a
        # loaded machine, where the device has been seen silent for 33 s): it takes the next
        # client only once the last one's teardown is done, so a reply on the next connection
        # says it now holds what it held idle and that connection's socket.
        self._hang_up(self.conn)
        self.conn = self._connect()
        check = self._msg(Command.REGION_READ, REGION_ACCESS.pack(0, CONFIG_REGION, 4))
        try:
            self._send(self.conn, check)
            accepted = self._expect(self.conn, [check.msg_id], "the check after a hang-up", HANG_UP_GUARD)
        except (OSError, TransportError):
            accepted = False  # the next step's probe reports a server that went
        if accepted and self.server.fd_count() > self.idle_fds + 1:
            now = self.server.fd_targets()
            extra = {fd: t for fd, t in now.items() if self.idle_targets.get(fd) != t}
            gone = {fd: t for fd, t in self.idle_targets.items() if now.get(fd) != t}
            self._finding(
                f"fd leak after {why}: {len(now)} fds held with the next client attached, {self.idle_fds} "
                f"when idle; not held when idle: {extra}, held when idle and not now: {gone}"
            )
            self.idle_fds = len(now) - 1

    @staticmethod
    def _hang_up(conn: Connection) -> None:
        """Shut this end for writing and read (discarding replies) until the server closes
        its end, which it does once it has read everything sent and torn the client down."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.settimeout(HANG_UP_GUARD)
            while (chunk := recv_chunk(conn.sock, block=True)) is not None and chunk[0]:
                close_fds(chunk[1])
        except (OSError, TransportError):
            pass  # gone already, or a hang: the fd check and the probe after it report that
        conn.close()

    def _finding(self, what: str) -> None:
        self.report.findings.append(f"step {self.report.steps}: {what}")

    # --- sending and receiving -------------------------------------------------------------

    def _send(self, conn: Connection, out: Out, split: bool = False) -> None:
        self.report.messages += 1
        self.report.bytes_sent += len(out.data)
        try:
            if split and len(out.data) > 1:
                # Random read splits: the fds ride with one of the pieces.
                cuts = sorted(self.rng.sample(range(1, len(out.data)), min(3, len(out.data) - 1)))
                pieces = [out.data[a:b] for a, b in zip([0, *cuts], [*cuts, len(out.data)], strict=True)]
                carrier = self.rng.randrange(len(pieces))
                for i, piece in enumerate(pieces):
                    send_message(conn.sock, piece, out.fds if i == carrier else [])
            else:
                send_message(conn.sock, out.data, out.fds)
        finally:
            close_fds(out.fds)
            out.fds = []

    def _expect(self, conn: Connection, ids: list[int], what: str, timeout: float = PROBE_TIMEOUT) -> bool:
        """Read until every id in ``ids`` is answered (in order). False if the connection
        ended; a finding for a hang (no reply within ``timeout``) or a reply out of order."""
        want = list(ids)
        deadline = time.monotonic() + timeout
        while want:
            while (msg := conn.framer.next_message()) is not None:
                close_fds(msg.fds)
                if not msg.is_reply:
                    # A request from the server (DMA): refuse it, as a client without memory would.
                    if not msg.no_reply:
                        send_message(
                            conn.sock,
                            encode_message(
                                msg.msg_id, msg.command, int(MsgType.REPLY) | int(HeaderFlags.ERROR), b"", errno.EFAULT
                            ),
                        )
                    continue
                self.report.replies += 1
                if msg.flags & HeaderFlags.ERROR:
                    self.report.errnos[errno.errorcode.get(msg.error, str(msg.error))] += 1
                if msg.msg_id not in want:
                    self._finding(f"{what}: reply to id {msg.msg_id} not expected (waiting for {want[:4]})")
                    continue
                if msg.msg_id != want[0]:
                    self._finding(f"{what}: reply to id {msg.msg_id} before id {want[0]}")
                want.remove(msg.msg_id)
            if not want:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                self._finding(f"{what}: no reply within {timeout} s (waiting for ids {want[:4]})")
                return False
            conn.sock.settimeout(left)
            try:
                chunk = recv_chunk(conn.sock, block=True)
            except TimeoutError:
                continue
            except (OSError, TransportError):
                return False
            if chunk is None:
                continue
            data, fds = chunk
            if not data:
                close_fds(fds)
                return False
            conn.framer.receive(data, fds)
        return True

    # --- valid messages --------------------------------------------------------------------

    def _msg(self, command: int, payload: bytes = b"", fds: list[int] | None = None, posted: bool = False) -> Out:
        msg_id = self.conn.take_id()
        flags = _CMD | (_NO_REPLY if posted else 0)
        return Out(encode_message(msg_id, command, flags, payload), fds or [], msg_id, not posted)

    def version(self) -> Out:
        caps = dict(QEMU_CAPS)
        if self.rng.random() < 0.3:
            caps["max_msg_fds"] = self.rng.choice([0, 1, 8, 1024, 1 << 40, "x"])
        text = json.dumps({"capabilities": caps}).encode() + b"\0"
        return self._msg(Command.VERSION, VERSION.pack(0, self.rng.choice([0, 0, 1])) + text)

    def dma_map(self) -> Out:
        page = self.rng.randrange(GUEST_RAM >> 12)
        pages = self.rng.choice([1, 2, 16, 256, (GUEST_RAM >> 12) - page])
        pages = max(1, min(pages, (GUEST_RAM >> 12) - page))
        with_fd = self.rng.random() < 0.7
        iova = self.rng.choice([page << 12, (page << 12) + (1 << 32)])
        fds = [os.dup(self.memfd)] if with_fd else []
        return self._msg(
            Command.DMA_MAP,
            DMA_MAP.pack(32, self.rng.choice([1, 2, 3]), page << 12 if with_fd else 0, iova, pages << 12),
            fds,
        )

    def dma_unmap(self) -> Out:
        if self.rng.random() < 0.2:
            return self._msg(Command.DMA_UNMAP, DMA_UNMAP.pack(24, 2, 0, 0))
        page = self.rng.randrange(GUEST_RAM >> 12)
        return self._msg(Command.DMA_UNMAP, DMA_UNMAP.pack(24, 0, page << 12, self.rng.choice([1, 16, 4096]) << 12))

    def info(self) -> Out:
        kind = self.rng.randrange(3)
        if kind == 0:
            return self._msg(Command.DEVICE_GET_INFO, DEVICE_INFO.pack(16, 0, 0, 0))
        if kind == 1:
            return self._msg(
                Command.DEVICE_GET_REGION_INFO,
                REGION_INFO.pack(self.rng.choice([32, 64, 256]), 0, self.rng.randrange(10), 0, 0, 0),
            )
        return self._msg(Command.DEVICE_GET_IRQ_INFO, IRQ_INFO.pack(16, 0, self.rng.randrange(6), 0))

    def set_irqs(self) -> Out:
        index = self.rng.randrange(5)
        count = self.rng.choice([0, 1, 2])
        action = self.rng.choice(
            [int(IrqSetFlags.ACTION_TRIGGER), int(IrqSetFlags.ACTION_MASK), int(IrqSetFlags.ACTION_UNMASK)]
        )
        if self.rng.random() < 0.5 and count:
            fds = [os.eventfd(0, os.EFD_CLOEXEC) for _ in range(count)]
            return self._msg(
                Command.DEVICE_SET_IRQS, IRQ_SET.pack(20, int(IrqSetFlags.DATA_EVENTFD) | action, index, 0, count), fds
            )
        return self._msg(
            Command.DEVICE_SET_IRQS, IRQ_SET.pack(20, int(IrqSetFlags.DATA_NONE) | action, index, 0, count)
        )

    def _region_target(self) -> tuple[int, int, int]:
        region = self.rng.choice([0, 0, 0, 2, 7, self.rng.randrange(12)])
        count = self.rng.choice([1, 2, 4, 4, 8, 8, 16, 4096])
        if region == 0:
            offset = self.rng.choice(
                [
                    0x4000,
                    0x78000 + 4 * self.rng.randrange(1024),
                    0x800000 + 8 * self.rng.randrange(1 << 20),
                    self.rng.randrange(16 << 20),
                ]
            )
        elif region == 7:
            offset = self.rng.randrange(256)
        else:
            offset = self.rng.randrange(1 << 28)
        return region, offset, count

    def region_read(self) -> Out:
        region, offset, count = self._region_target()
        return self._msg(Command.REGION_READ, REGION_ACCESS.pack(offset, region, count))

    def region_write(self, posted: bool | None = None) -> Out:
        region, offset, count = self._region_target()
        if region == 7 and self.rng.random() < 0.8:
            offset, count = 4, 2  # keep the command register mostly sane: decode and bus master on
            data = b"\x06\x00"
        else:
            data = self.rng.randbytes(count)
        if posted is None:
            posted = self.rng.random() < 0.5
        return self._msg(Command.REGION_WRITE, REGION_ACCESS.pack(offset, region, count) + data, posted=posted)

    def write_multi(self) -> Out:
        n = self.rng.choice([1, 2, 50, 200, 201, 0])
        entries = []
        for _ in range(max(n, 1) if n else 0):
            region, offset, count = self._region_target()
            entries.append(
                WRITE_MULTI_ENTRY.pack(offset, region, min(count, self.rng.choice([4, 8, 9])), self.rng.getrandbits(64))
            )
        count_field = n if self.rng.random() < 0.8 else self.rng.choice([0, 1 << 31, (1 << 64) - 1, n + 1])
        return self._msg(Command.REGION_WRITE_MULTI, WRITE_MULTI.pack(count_field) + b"".join(entries), posted=True)

    def reset(self) -> Out:
        return self._msg(Command.DEVICE_RESET)

    def valid(self) -> Out:
        makers = [
            self.region_read,
            self.region_write,
            self.region_write,
            self.write_multi,
            self.dma_map,
            self.dma_unmap,
            self.info,
            self.set_irqs,
            self.reset,
            self.version,
        ]
        weights = [8, 8, 4, 4, 3, 3, 2, 2, 1, 1]
        return self.rng.choices(makers, weights)[0]()

    # --- mutations -------------------------------------------------------------------------

    def random_fds(self) -> list[int]:
        fds: list[int] = []
        for _ in range(self.rng.choice([1, 1, 2, 9, 17])):
            kind = self.rng.randrange(6)
            if kind == 0:
                fds.append(os.memfd_create("junk", os.MFD_CLOEXEC))
            elif kind == 1:
                fds.append(os.eventfd(0, os.EFD_CLOEXEC))
            elif kind == 2:
                r, w = os.pipe2(os.O_CLOEXEC)
                fds.append(r)
                os.close(w)
            elif kind == 3:
                a, b = socket.socketpair()
                fds.append(a.detach())
                b.close()
            elif kind == 4:
                fds.append(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC))
            else:
                fds.append(os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        return fds

    def mutate(self, out: Out) -> Out:
        data = bytearray(out.data)
        kind = self.rng.randrange(9)
        out.note = f"mutation {kind}"
        header = data[:HEADER_SIZE]
        payload = data[HEADER_SIZE:]
        if kind == 0 and payload:  # bit flips in the payload
            for _ in range(self.rng.randint(1, 4)):
                i = self.rng.randrange(len(payload))
                payload[i] ^= 1 << self.rng.randrange(8)
        elif kind == 1 and payload:  # truncated
            del payload[self.rng.randrange(len(payload)) :]
        elif kind == 2:  # garbage appended
            payload += self.rng.randbytes(self.rng.choice([1, 7, 64, 5000]))
        elif kind == 3:  # the command replaced
            struct.pack_into("<H", header, 2, self.rng.choice([0, 14, 19, 99, 0xFFFF, *range(1, 19)]))
        elif kind == 4:  # the error field and unknown flag bits
            struct.pack_into("<I", header, 12, self.rng.getrandbits(32))
            flags = struct.unpack_from("<I", header, 8)[0]
            struct.pack_into("<I", header, 8, (flags & 0x1F) | (self.rng.getrandbits(26) << 6))
        elif kind == 5:  # fds of every kind
            close_fds(out.fds)
            out.fds = self.random_fds()
        elif kind == 6:  # the payload replaced by random words
            payload = bytearray(self.rng.randbytes(len(payload)))
        elif kind == 7:  # the posted flag toggled
            flags = struct.unpack_from("<I", header, 8)[0] ^ _NO_REPLY
            struct.pack_into("<I", header, 8, flags)
        else:  # a framing error: size out of bounds or an unknown message type
            out.breaks_framing = True
            if self.rng.random() < 0.5:
                struct.pack_into("<I", header, 4, self.rng.choice([0, 1, 15, MAX_MSG_SIZE + 1, 0xFFFFFFFF]))
            else:
                flags = struct.unpack_from("<I", header, 8)[0]
                struct.pack_into("<I", header, 8, (flags & ~0xF) | self.rng.randrange(2, 16))
            out.data = bytes(header + payload)
            out.expects_reply = False
            return out
        struct.pack_into("<I", header, 4, HEADER_SIZE + len(payload))
        flags = struct.unpack_from("<I", header, 8)[0]
        out.expects_reply = flags & 0xF == _CMD and not flags & _NO_REPLY
        out.data = bytes(header + payload)
        return out

    # --- steps -----------------------------------------------------------------------------

    def step(self) -> None:
        self.report.steps += 1
        conn = self.conn
        if not conn.negotiated and self.rng.random() < 0.9:
            self._negotiate(conn)
        outs: list[Out] = []
        kind = self.rng.random()
        if kind < 0.05:  # a flood of posted writes in one burst
            outs = [self.region_write(posted=True) for _ in range(self.rng.choice([100, 1000]))]
        elif kind < 0.1:  # a DMA_MAP/UNMAP storm
            outs = [self.rng.choice([self.dma_map, self.dma_unmap])() for _ in range(50)]
        else:
            for _ in range(self.rng.randint(1, 4)):
                out = self.valid()
                if self.rng.random() < 0.6:
                    out = self.mutate(out)
                outs.append(out)
        expected: list[int] = []
        framing_broken = False
        split = self.rng.random() < 0.2
        try:
            if kind < 0.1 and not split:
                # Bursts go out in one piece: the server must cut them all from one read.
                data = b"".join(o.data for o in outs)
                self.report.messages += len(outs)
                self.report.bytes_sent += len(data)
                fds = [fd for o in outs for fd in o.fds]
                try:
                    send_message(conn.sock, data, fds[:8])
                finally:
                    close_fds(fds)
                    for o in outs:
                        o.fds = []
                expected = [o.msg_id for o in outs if o.expects_reply]
            else:
                for out in outs:
                    # Set before the send: the server may drop the connection while a split
                    # message is still going out.
                    framing_broken = out.breaks_framing
                    self._send(conn, out, split)
                    if framing_broken:
                        break
                    if out.expects_reply:
                        expected.append(out.msg_id)
        except (OSError, TransportError):
            self._discard(outs)
            if framing_broken:
                self.report.expected_drops += 1
            elif self.server.alive():
                self._finding(
                    "the server closed the connection while a step was sent: "
                    + "; ".join(o.describe() for o in outs)
                    + "\n"
                    + self.server.log_tail(8)
                )
            self._after_drop()
            return
        self._discard(outs)
        if framing_broken:
            # The server drops the connection (or, for a size larger than what was sent, waits
            # for the rest): either way this client is done.
            self.report.expected_drops += 1
            self._reconnect("a framing error")
            return
        probe = self._msg(Command.REGION_READ, REGION_ACCESS.pack(0, CONFIG_REGION, 4))
        self._send(conn, probe)
        if not self._expect(conn, [*expected, probe.msg_id], "step"):
            if self.server.alive():
                self._finding(
                    "connection dropped without a framing error: "
                    + "; ".join(o.describe() for o in outs)
                    + "\n"
                    + self.server.log_tail(8)
                )
            self._after_drop()

    @staticmethod
    def _discard(outs: list[Out]) -> None:
        """Close the fds of messages never sent (those after a framing error or a failed
        send): a long run would otherwise run out of them."""
        for o in outs:
            close_fds(o.fds)
            o.fds = []

    def _after_drop(self) -> None:
        if not self.server.alive():
            self._finding(f"the server died (exit {self.server.proc.returncode}):\n{self.server.log_tail()}")
            raise ServerDied
        self._reconnect("a dropped connection")

    def close(self) -> None:
        self.conn.close()
        os.close(self.memfd)


def idle_fd_count(server: ServerProcess, seconds: float = 0.2) -> int:
    """The fds an idle server holds: the fewest seen over a moment, as an inspection
    connection it has just answered may still be open."""
    counts = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts.append(server.fd_count())
        time.sleep(0.01)
    return min(counts)


class ServerDied(Exception):
    pass


def fcntl_seal(fd: int) -> None:
    """Seal guest RAM against shrinking, as QEMU's memfd backend does."""
    import fcntl

    f_add_seals = getattr(fcntl, "F_ADD_SEALS", 1033)
    f_seal_shrink = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)
    fcntl.fcntl(fd, f_add_seals, f_seal_shrink)


@contextlib.contextmanager
def serving(extra: list[str] | None = None) -> Iterator[ServerProcess]:
    with tempfile.TemporaryDirectory(prefix="devmodel-fuzz-") as d:
        server = ServerProcess(d, extra)
        try:
            yield server
        finally:
            server.stop()


def run(seed: int, steps: int | None = None, seconds: float | None = None) -> FuzzReport:
    report = FuzzReport()
    with serving() as server:
        report.rss_kib_start = server.rss_kib()
        fuzzer = Fuzzer(seed, server, report)
        deadline = time.monotonic() + seconds if seconds else None
        try:
            while (steps is None or report.steps < steps) and (deadline is None or time.monotonic() < deadline):
                fuzzer.step()
            fuzzer._reconnect("the end of the run")
        except ServerDied:
            pass
        finally:
            fuzzer.close()
        if server.alive():
            report.rss_kib_end = server.rss_kib()
            code = server.stop()
            if code != 0:
                report.findings.append(f"the server exited {code} on SIGTERM")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m devmodel.testing.fuzz",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    report = run(seed, args.steps, None if args.steps else args.seconds)
    print(f"seed {seed}: {report.summary()}")
    for finding in report.findings[:50]:
        print("FINDING", finding)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
