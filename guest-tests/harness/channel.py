"""A line channel between a host test and a guest script, for checks the host must make while
the guest waits (the guest side is gvtlib.HostChannel).

The guest's second serial port (/dev/ttyS1) is a QEMU socket chardev that connects, as a
client, to a UNIX socket this class listens on. QEMU connects while it starts, before the
guest runs, so nothing the guest writes is lost and neither side has to poll for the other.
The guest asks with one line, `ASK TAG JSON`, and blocks (under its own deadline) until the
host's `ANSWER TAG TEXT` line arrives; the handler runs in a thread of the host test while
run_guest() waits for the guest in the test's own thread. Every wait here has a deadline too.
"""
import json
import os
import select
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .errors import HarnessError
from .paths import timeout_scale

Handler = Callable[[str, Any], str]
CHARDEV_ID = "devmodel-channel"
MAX_LINE = 1 << 20


class GuestChannel:
    """Listen, then pass qemu_args() to run_guest(qemu_args=...) and call serve(handler) first.

    handler(tag, payload) gets each question (payload: the decoded JSON) and returns the
    answer's text (one line); an exception in it is recorded in self.errors and answered
    "fail: ...", so the guest's TAP shows it too. self.asked lists the tags in order."""

    def __init__(self, connect_timeout: float = 60.0, idle_timeout: float = 300.0) -> None:
        self._dir = tempfile.mkdtemp(prefix="devmodel-chan-")  # short: UNIX paths are <= 107 bytes
        self.path = os.path.join(self._dir, "guest.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self.connect_timeout = connect_timeout * timeout_scale()
        self.idle_timeout = idle_timeout * timeout_scale()
        self.asked: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def qemu_args(self) -> list[str]:
        """The guest's second serial port (ttyS1; the console is ttyS0) on this channel."""
        return ["-chardev", "socket,id=%s,path=%s" % (CHARDEV_ID, self.path), "-serial", "chardev:" + CHARDEV_ID]

    def serve(self, handler: Handler) -> None:
        self._thread = threading.Thread(target=self._run, args=(handler,), name="guest-channel", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving (the guest is gone by now) and remove the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "GuestChannel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the serving thread ------------------------------------------------------------------

    def _wait_readable(self, sock: socket.socket, timeout: float, what: str) -> bool:
        """True when sock is readable; False when asked to stop; HarnessError at the deadline."""
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError("guest channel: %s within %.0f s" % (what, timeout))
            if select.select([sock], [], [], min(left, 0.2))[0]:
                return True
        return False

    def _run(self, handler: Handler) -> None:
        try:
            if not self._wait_readable(self._listener, self.connect_timeout, "QEMU did not connect"):
                return
            conn, _ = self._listener.accept()
            with conn:
                self._serve_connection(conn, handler)
        except Exception as e:  # noqa: BLE001 - reported through self.errors to the test
            self.errors.append("%s: %s" % (type(e).__name__, e))

    def _serve_connection(self, conn: socket.socket, handler: Handler) -> None:
        buf = b""
        while True:
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                answer = self._answer(raw.decode(errors="replace").strip("\r"), handler)
                if answer is not None:
                    conn.sendall(answer.encode() + b"\n")
            if len(buf) > MAX_LINE:
                raise HarnessError("guest channel: a line longer than %d bytes" % MAX_LINE)
            if not self._wait_readable(conn, self.idle_timeout, "the guest sent nothing"):
                return
            part = conn.recv(65536)
            if not part:
                return  # QEMU closed the chardev: the guest is gone
            buf += part

    def _answer(self, line: str, handler: Handler) -> str | None:
        words = line.split(" ", 2)
        if len(words) < 2 or words[0] != "ASK":
            return None  # not a question (e.g. the guest's tty noise before raw mode)
        tag = words[1]
        self.asked.append(tag)
        try:
            text = handler(tag, json.loads(words[2]) if len(words) > 2 else None)
        except Exception as e:  # noqa: BLE001 - the guest must get an answer whatever happens
            self.errors.append("%s: %s\n%s" % (tag, e, traceback.format_exc()))
            text = "fail: host check raised %s: %s" % (type(e).__name__, e)
        return "ANSWER %s %s" % (tag, " ".join(text.split("\n")))
