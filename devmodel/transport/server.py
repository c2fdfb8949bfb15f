"""The server: accept a client, drive its connection from the event loop, and on a lost
connection tear down and accept the next client.

One client at a time (vfio-user is one connection per device); the listening socket is not
watched while a client is attached. Everything runs on one thread in one loop
(``transport/loop.py``), so commands are handled strictly in arrival order and never inside
device work.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
from collections.abc import Callable

from ..accel import Accel, load
from ..device.device import Device
from ..device.region import RegionFlags
from ..errors import FramingError, TransportError
from ..vfio_user.connection import ConnState, Request, ServerConnection, ServerOptions
from .dispatch import Dispatcher
from .drain import CompiledDrain, ServeOutcome
from .loop import EventLoop, FileObject
from .message_dma import MessageDmaChannel
from .outbox import Outbox
from .unix import RECV_SIZE, close_fds, recv_into

__all__ = ["Client", "Server"]

log = logging.getLogger(__name__)


class Client:
    """One attached client: its socket, protocol state, dispatcher and message DMA channel."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.conn = ServerConnection(server.options)
        self.dispatcher = Dispatcher(server.device, self.conn, strict=server.strict)
        self.outbox = Outbox(sock, server.loop, server._on_client)
        device = server.device
        self.dma = MessageDmaChannel(self.conn, self.outbox.send, device.dma, device.tasks, server.loop.timers)
        self.log = log.getChild(f"client{server.clients_served}")
        # The compiled drain, once the connection runs (None: the Python path serves all).
        self.drain: CompiledDrain | None = None
        self._drain_decided = False

    def pump(self) -> bool:
        """Read what is there and handle every complete message. False once the client is
        gone (EOF or a framing error)."""
        return self._guarded(self._read_and_handle)

    def _read_and_handle(self) -> bool:
        # straight into the framer's buffer: a read allocates and copies nothing
        framer = self.conn.framer
        got = recv_into(self.sock, framer.read_space(RECV_SIZE))
        if got is None:
            return True
        n, fds = got
        if not n:
            close_fds(fds)
            return False
        framer.commit(n, fds)
        self.handle_events()
        return True

    def _guarded(self, work: Callable[[], bool]) -> bool:
        try:
            return work()
        except FramingError as exc:
            self.log.warning("dropping the connection: %s", exc)
            return False
        except TransportError as exc:
            self.log.warning("connection failed: %s", exc)
            return False
        except Exception:
            # A bug outside any handler (the dispatcher answers those): lose this client,
            # keep the server for the next one.
            if self.server.strict:
                raise
            self.log.exception("bug: dropping the connection")
            return False

    def serve(self, timeout: float | None) -> list[tuple[int, int]] | None:
        """The loop's wait, in C while the client's messages are all C's (docs/performance.md):
        the events that ended it, or None when C cannot wait now (something queued for the
        client, fds pending in the framer)."""
        drain = self.drain
        framer = self.conn.framer
        if drain is None or self.outbox.queued or framer.fds_pending:
            return None
        framer.read_space(RECV_SIZE)
        outcome: list[ServeOutcome] = []
        loop = self.server.loop
        due = loop.next_due()

        def go_on() -> bool:
            # what the loop's turn after a handed access would find: no ready task, the same
            # nearest timer (the wait's deadline)
            return not loop.tasks.has_ready() and loop.next_due() == due

        def wait() -> bool:
            out = drain.serve(loop.epoll_fd, self.server.timer_fd, timeout, RECV_SIZE, go_on)
            outcome.append(out)
            return self._finish_read(out) if out.read else True

        # as guarded as pump: a bug loses this client, not the server
        if not self._guarded(wait):
            self.server._drop_client()
        return outcome[0].events if outcome else []

    def _finish_read(self, out: ServeOutcome) -> bool:
        """What pump does after its read, for a read C made."""
        if out.truncated:
            close_fds(out.fds)
            raise FramingError("control message truncated: too many fds")
        if not out.got:
            close_fds(out.fds)
            return False
        if out.fds:
            self.conn.framer.commit(0, out.fds)  # they came with the bytes just read
        self.handle_events()
        return True

    def handle_events(self) -> None:
        conn = self.conn
        dispatch = self.dispatcher.dispatch
        while True:
            drain = self.drain
            if drain is not None:
                drain.run()
            event = conn.next_event()
            if conn.stray_fds:
                close_fds(conn.stray_fds)
                conn.stray_fds.clear()
            if event is None:
                return
            if type(event) is Request:
                out = dispatch(event.msg)
                if out is not None:
                    self.outbox.send(out[0], out[1])
                if not self._drain_decided and conn.state is ConnState.RUNNING:
                    self._drain_decided = True
                    if self.server.accel is not None:
                        self.drain = self._compiled_drain(self.server.accel)
            else:
                self.dma.on_reply(event)  # type: ignore[arg-type]  # not a Request: a Reply


    def _compiled_drain(self, accel: Accel) -> CompiledDrain | None:
        device = self.server.device
        bound = device.region_accel(accel)
        if bound is None:
            return None
        # C answers reads and writes there without looking at the region's flags.
        both = RegionFlags.READ | RegionFlags.WRITE
        if device.regions[bound.index].flags & both != both:
            return None
        return CompiledDrain(accel, bound, self.conn, self.outbox, self.dispatcher)


class Server:
    def __init__(
        self,
        device: Device,
        listener: socket.socket,
        options: ServerOptions | None = None,
        strict: bool = False,
        accel: bool | None = None,
    ) -> None:
        """``accel``: serve what the compiled accelerator takes with it (None: unless
        DEVMODEL_ACCEL=0; it is used only when it loads)."""
        self.device = device
        self.accel = load(accel)
        self.listener = listener
        self.options = options or ServerOptions()
        self.strict = strict
        self.client: Client | None = None
        self.clients_served = 0
        self._stop = False
        self.loop = EventLoop(device.tasks, strict=strict)
        # The wait in C's deadline timer (dm_serve_timer); -1: none, its waits time out themselves.
        self.timer_fd = -1
        if self.accel is not None:
            self.loop.waiter = self._wait_in_c
            self.timer_fd = self.accel.lib.dm_serve_timer()
            if self.timer_fd >= 0:
                self.loop.watch(self.timer_fd, selectors.EVENT_READ, self._on_timer)
        self.listener.setblocking(False)
        self.loop.watch(self.listener, selectors.EVENT_READ, self._on_listener)

    def stop(self) -> None:
        self._stop = True

    @property
    def stopping(self) -> bool:
        return self._stop

    def add_reader(self, fd: FileObject, callback: Callable[[], object]) -> None:
        """Watch another fd (a signal pipe, an eventfd) from the same loop."""
        def on_ready(_mask: int) -> None:
            callback()

        self.loop.watch(fd, selectors.EVENT_READ, on_ready)

    def serve_forever(self) -> None:
        while not self._stop:
            self.loop.run_once(None)

    def run_once(self, timeout: float | None = 0.0) -> None:
        self.loop.run_once(timeout)

    def _on_listener(self, _mask: int) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)  # writes the socket does not take wait in the client's outbox
        self.clients_served += 1
        client = self.client = Client(self, sock)
        self.device.message_dma = client.dma
        self.loop.unwatch(self.listener)
        self.loop.watch(sock, selectors.EVENT_READ, self._on_client)  # the outbox adds writes when it must
        client.log.info("client attached")
        self.device.client_attached()

    def _on_timer(self, _mask: int) -> None:
        # Expired while the loop waited in Python: read, or it stays ready. C re-arms it.
        try:
            os.read(self.timer_fd, 8)
        except BlockingIOError:
            pass

    def _wait_in_c(self, timeout: float | None) -> list[tuple[int, int]] | None:
        client = self.client
        return None if client is None else client.serve(timeout)

    def _on_client(self, _mask: int) -> None:
        if self.client is not None and not self.client.pump():
            self._drop_client()

    def _drop_client(self) -> None:
        client = self.client
        assert client is not None
        self.loop.unwatch(client.sock)
        negotiated = client.conn.state is ConnState.RUNNING
        client.dma.cancel_all()
        self.device.message_dma = None
        client.conn.abandon_requests()
        close_fds(client.conn.framer.take_fds())
        # A stray reply's fds are closed after the read that brought it is handled; a
        # framing error later in that read drops the client first.
        close_fds(client.conn.stray_fds)
        client.conn.stray_fds.clear()
        client.sock.close()
        if negotiated:
            # quiesce, unmap every window, reset, close every eventfd
            self.device.on_disconnect()
        self.client = None
        client.log.info(
            "client gone (%d requests, %d errors, %d posted)",
            client.dispatcher.stats["requests"],
            client.dispatcher.stats["errors"],
            client.dispatcher.stats["posted"],
        )
        self.loop.watch(self.listener, selectors.EVENT_READ, self._on_listener)

    def close(self) -> None:
        if self.client is not None:
            self._drop_client()
        self.loop.close()
        self.listener.close()
        if self.timer_fd >= 0:
            os.close(self.timer_fd)
            self.timer_fd = -1
