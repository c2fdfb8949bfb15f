"""The inspection socket: one JSON request line in, one JSON answer line out.

It is served from the device model's own loop between vfio-user messages, so an answer is a
consistent snapshot of the device; it is read-only: nothing asked here changes the device.
It never holds the loop up: every socket is non-blocking and read or written only when the
selector says it is ready, a connection may hold at most ``MAX_REQUEST`` unanswered bytes,
must be done within ``TIME_LIMIT`` and at most ``MAX_CONNECTIONS`` are open at once (more are
closed at once). An error while serving one connection closes that connection and is logged;
it never reaches the loop.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
from typing import Any

from .loop import EventLoop
from .server import Server
from .unix import listen_unix

__all__ = ["MAX_CONNECTIONS", "MAX_REQUEST", "TIME_LIMIT", "ControlServer", "control_path", "query"]

log = logging.getLogger(__name__)

MAX_REQUEST = 4096  # bytes of one request line
MAX_CONNECTIONS = 16
TIME_LIMIT = 5.0  # seconds from accept to the last byte of the answer


def control_path(socket_path: str) -> str:
    return socket_path + ".ctl"


class _Connection:
    """One inspection client: its request bytes so far, then its answer bytes still to send."""

    def __init__(self, owner: ControlServer, sock: socket.socket) -> None:
        self.owner = owner
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = b""
        self.timer = owner.loop.timers.call_later(owner.time_limit, self.expire, uses_guest_memory=False)

    def on_ready(self, mask: int) -> None:
        try:
            if mask & selectors.EVENT_READ and not self.outbuf:
                self._read()
            if self.outbuf and mask & selectors.EVENT_WRITE:
                self._flush()
        except Exception:
            log.exception("inspection connection failed; closing it")
            self.close()

    def _read(self) -> None:
        try:
            part = self.sock.recv(MAX_REQUEST + 1 - len(self.inbuf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not part:
            self.close()  # gone before asking
            return
        self.inbuf += part
        line, newline, _ = self.inbuf.partition(b"\n")
        if newline and len(line) <= MAX_REQUEST:
            self.answer(self.owner.answer_line(bytes(line)))
        elif len(self.inbuf) > MAX_REQUEST:
            self.answer({"error": f"request longer than {MAX_REQUEST} bytes"})

    def answer(self, answer: dict[str, Any]) -> None:
        self.outbuf = json.dumps(answer).encode() + b"\n"
        self._flush()
        if self.outbuf:
            self.owner.loop.modify(self.sock, selectors.EVENT_WRITE, self.on_ready)

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self.outbuf = self.outbuf[sent:]
        if not self.outbuf:
            self.close()

    def expire(self) -> None:
        log.info("inspection client took longer than %.1f s; closing it", self.owner.time_limit)
        self.close()

    def close(self) -> None:
        if self not in self.owner.connections:
            return
        self.owner.connections.discard(self)
        self.timer.cancel()
        self.owner.loop.unwatch(self.sock)
        self.sock.close()


class ControlServer:
    def __init__(self, server: Server, path: str, time_limit: float = TIME_LIMIT) -> None:
        self.server = server
        self.loop: EventLoop = server.loop
        self.path = path
        self.time_limit = time_limit
        self.connections: set[_Connection] = set()
        self.refused = 0
        self.sock = listen_unix(path)
        self.sock.listen(2 * MAX_CONNECTIONS)  # a backlog for bursts: accepted, then refused if too many
        self.sock.setblocking(False)
        self.loop.watch(self.sock, selectors.EVENT_READ, self._on_listener)

    def _on_listener(self, _mask: int) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("inspection socket: accept failed: %s", exc)
                return
            if len(self.connections) >= MAX_CONNECTIONS:
                self.refused += 1
                conn.close()
                continue
            conn.setblocking(False)
            c = _Connection(self, conn)
            self.connections.add(c)
            self.loop.watch(conn, selectors.EVENT_READ, c.on_ready)

    def answer_line(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as exc:
            return {"error": f"bad request: {exc}"}
        if not isinstance(request, dict) or not isinstance(request.get("what"), str):
            return {"error": 'expected {"what": ..., "args": [...]}'}
        args = request.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return {"error": "args must be a list of strings"}
        try:
            answer = self.server.device.inspect(request["what"], args)
            client = self.server.client
            if request["what"] == "stats" and client is not None:
                # the vfio-user messages of the attached client (region accesses are most)
                counters = answer.setdefault("counters", {})
                counters["messages"] = dict(client.dispatcher.stats)
            return answer
        except (LookupError, ValueError) as exc:
            return {"error": str(exc)}
        except Exception:
            log.exception("bug: inspecting %r raised", request["what"])
            return {"error": "internal error (logged by the server)"}

    def close(self) -> None:
        for c in list(self.connections):
            c.close()
        self.loop.unwatch(self.sock)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def query(path: str, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            part = s.recv(65536)
            if not part:
                break
            buf += part
    answer = json.loads(buf)
    if not isinstance(answer, dict):
        raise TypeError("answer is not an object")
    return answer
