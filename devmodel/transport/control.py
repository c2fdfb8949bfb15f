"""The inspection socket: one JSON request line in, one JSON answer line out.

It is served from the device model's own loop between vfio-user messages, so an answer is a
consistent snapshot of the device. It is read-only: nothing asked here changes the device.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

from .server import Server
from .unix import listen_unix

__all__ = ["ControlServer", "control_path", "query"]

log = logging.getLogger(__name__)
_MAX_REQUEST = 4096


def control_path(socket_path: str) -> str:
    return socket_path + ".ctl"


class ControlServer:
    def __init__(self, server: Server, path: str) -> None:
        self.server = server
        self.path = path
        self.sock = listen_unix(path)
        self.sock.setblocking(False)
        server.add_reader(self.sock.fileno(), self._on_ready)

    def _on_ready(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        with conn:
            conn.settimeout(1.0)
            try:
                answer = self._answer(self._read_request(conn))
            except (OSError, ValueError) as exc:
                answer = {"error": f"bad request: {exc}"}
            try:
                conn.sendall(json.dumps(answer).encode() + b"\n")
            except OSError:
                pass

    @staticmethod
    def _read_request(conn: socket.socket) -> Any:
        buf = b""
        while b"\n" not in buf and len(buf) < _MAX_REQUEST:
            part = conn.recv(_MAX_REQUEST)
            if not part:
                break
            buf += part
        return json.loads(buf.split(b"\n", 1)[0])

    def _answer(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict) or not isinstance(request.get("what"), str):
            return {"error": "expected {\"what\": ..., \"args\": [...]}"}
        args = request.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            return {"error": "args must be a list of strings"}
        try:
            return self.server.device.inspect(request["what"], args)
        except (LookupError, ValueError) as exc:
            return {"error": str(exc)}

    def close(self) -> None:
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
        raise ValueError("answer is not an object")
    return answer
