"""What the server writes to its client, without ever blocking the loop.

A message goes straight to the socket when nothing is queued (the common case: one
``send``). What the socket does not take is queued, in order, and the loop watches the
socket for writability until the queue is empty. A client that stops reading while more than
``MAX_QUEUED`` bytes wait is broken: the send that would pass it raises TransportError and the connection
is dropped.
"""

from __future__ import annotations

import array
import collections
import selectors
import socket
from collections.abc import Callable

from ..errors import TransportError
from .loop import EventLoop

__all__ = ["MAX_QUEUED", "Outbox"]

# Far above what QEMU ever leaves unread (it reads from its own I/O thread), far below memory
# trouble: 64 replies of the largest REGION_READ or DMA_WRITE.
MAX_QUEUED = 64 << 20


class Outbox:
    def __init__(
        self, sock: socket.socket, loop: EventLoop, on_readable: Callable[[int], None], max_queued: int = MAX_QUEUED
    ) -> None:
        self.sock = sock
        self.max_queued = max_queued
        self.loop = loop
        self._on_readable = on_readable
        # (bytes not yet sent, fds to send with the first of them)
        self._queue: collections.deque[tuple[memoryview, tuple[int, ...]]] = collections.deque()
        self.queued = 0

    def send(self, data: bytes, fds: list[int] | tuple[int, ...] = ()) -> None:
        if self._queue:
            self._enqueue(memoryview(data), tuple(fds))
            return
        if fds:
            sent = self._send_some(data, fds)
        else:  # the hot path (every reply): one call to the socket
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                raise TransportError(f"send failed: {exc}") from exc
        if sent < len(data):
            self._enqueue(memoryview(data)[sent:], () if sent else tuple(fds))
            self.loop.modify(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self.on_ready)

    def _enqueue(self, view: memoryview, fds: tuple[int, ...]) -> None:
        if self.queued + len(view) > self.max_queued:
            raise TransportError(f"the client left more than {self.max_queued} bytes unread")
        self._queue.append((view, fds))
        self.queued += len(view)

    def _send_some(self, view: bytes | memoryview, fds: list[int] | tuple[int, ...]) -> int:
        try:
            if fds:
                return self.sock.sendmsg([view], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
            return self.sock.send(view)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            raise TransportError(f"send failed: {exc}") from exc

    def flush(self) -> None:
        """Send what the socket takes now; stop watching for writability once all is out."""
        queue = self._queue
        while queue:
            view, fds = queue[0]
            sent = self._send_some(view, fds)
            self.queued -= sent
            if sent < len(view):
                queue[0] = (view[sent:], () if sent else fds)
                return
            queue.popleft()
        self.loop.modify(self.sock, selectors.EVENT_READ, self._on_readable)

    def on_ready(self, mask: int) -> None:
        """The loop's callback for the client socket while something is queued: writes
        first, then reads. With nothing queued the loop calls the reader directly."""
        if mask & selectors.EVENT_WRITE:
            try:
                self.flush()
            except TransportError:
                # The client is gone; the read side sees it and drops the connection.
                self._queue.clear()
                self.queued = 0
                self.loop.modify(self.sock, selectors.EVENT_READ, self._on_readable)
        if mask & selectors.EVENT_READ:
            self._on_readable(mask)
