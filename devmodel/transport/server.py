"""The server: accept a client, drive its connection, run the device's deferred work, and on
a lost connection tear down and accept the next client.

One client at a time (vfio-user is one connection per device); the listening socket is not
watched while a client is attached. Everything runs on one thread in one selectors loop, so
commands are handled strictly in arrival order.
"""

from __future__ import annotations

import logging
import select
import selectors
import socket
import time
from collections.abc import Callable

from ..device.device import Device
from ..errors import DevModelError, DmaFault, FramingError, TransportError
from ..vfio_user import messages as m
from ..vfio_user.connection import ConnState, Reply, Request, ServerConnection, ServerOptions
from ..vfio_user.constants import MAX_DATA_XFER_SIZE, Command, HeaderFlags
from .dispatch import Dispatcher
from .unix import close_fds, recv_chunk, send_message

__all__ = ["Server", "Client"]

log = logging.getLogger(__name__)


class Client:
    """One attached client: its socket, protocol state and dispatcher, and the DMA channel
    through messages that the device uses for windows without an fd."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.conn = ServerConnection(server.options)
        self.dispatcher = Dispatcher(server.device, self.conn, strict=server.strict)
        self.closed = False
        self._replies: dict[int, Reply] = {}
        self.log = log.getChild(f"client{server.clients_served}")

    # --- reading ---------------------------------------------------------------------------

    def pump(self) -> bool:
        """Read what is there and handle every complete message. False once the client is
        gone (EOF or a framing error)."""
        try:
            chunk = recv_chunk(self.sock)
            if chunk is None:
                return True
            data, fds = chunk
            if not data:
                close_fds(fds)
                return False
            self.conn.receive_data(data, fds)
            self.handle_events()
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
        return True

    def handle_events(self) -> None:
        while True:
            event = self.conn.next_event()
            if self.conn.stray_fds:
                close_fds(self.conn.stray_fds)
                self.conn.stray_fds.clear()
            if event is None:
                return
            if isinstance(event, Request):
                out = self.dispatcher.dispatch(event.msg)
                if out is not None:
                    send_message(self.sock, out[0], out[1])
            else:
                self._replies[event.msg.msg_id] = event

    # --- DMA through messages --------------------------------------------------------------

    def _transfer(self, command: int, payload: bytes, timeout: float) -> Reply:
        if self.dispatcher.depth:
            # QEMU's vCPU may hold the BQL while it waits for the reply we are handling, and
            # QEMU serves DMA on its main loop under that lock: waiting here would deadlock.
            raise DmaFault("DMA through messages from inside a request handler")
        if self.conn.state is not ConnState.RUNNING:
            raise DmaFault("no negotiated client")
        msg_id, data = self.conn.request(command, payload)
        send_message(self.sock, data)
        deadline = time.monotonic() + timeout
        while msg_id not in self._replies:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                self.conn.forget(msg_id)
                raise DmaFault("no reply to DMA request", command=command, msg_id=msg_id)
            if select.select([self.sock], [], [], left)[0] and not self.pump():
                self.closed = True
        reply = self._replies.pop(msg_id)
        close_fds(reply.msg.fds)  # DMA replies carry none; a client that sends some loses them
        if reply.msg.flags & HeaderFlags.ERROR:
            raise DmaFault("client refused DMA", command=command, error=reply.msg.error)
        return reply

    def _chunk_size(self) -> int:
        caps = self.conn.peer_caps
        return min(caps.max_data_xfer_size if caps else MAX_DATA_XFER_SIZE, MAX_DATA_XFER_SIZE)

    def dma_read(self, iova: int, count: int, timeout: float = 5.0) -> bytes:
        out = bytearray()
        step = self._chunk_size()
        for off in range(0, count, step):
            n = min(step, count - off)
            reply = self._transfer(Command.DMA_READ, m.encode_dma_access(iova + off, n), timeout)
            out += m.decode_dma_read_reply(reply.msg.payload, iova + off, n)
        return bytes(out)

    def dma_write(self, iova: int, data: bytes, timeout: float = 5.0) -> None:
        step = self._chunk_size()
        for off in range(0, len(data), step):
            part = data[off : off + step]
            self._transfer(Command.DMA_WRITE, m.encode_dma_access(iova + off, len(part), part), timeout)


class Server:
    def __init__(
        self,
        device: Device,
        listener: socket.socket,
        options: ServerOptions | None = None,
        strict: bool = False,
    ) -> None:
        self.device = device
        self.listener = listener
        self.options = options or ServerOptions()
        self.strict = strict
        self.client: Client | None = None
        self.clients_served = 0
        self._stop = False
        self.sel = selectors.DefaultSelector()
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        self.on_client_gone: Callable[[], None] | None = None

    def stop(self) -> None:
        self._stop = True

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        """Watch another fd (a signal pipe, an eventfd) from the same loop."""
        self.sel.register(fd, selectors.EVENT_READ, callback)

    def serve_forever(self) -> None:
        while not self._stop:
            self.run_once(None)

    def run_once(self, timeout: float | None = 0.0) -> None:
        if self.device.has_work():
            timeout = 0.0
        for key, _ in self.sel.select(timeout):
            if key.data == "listen":
                self._accept()
            elif key.data == "client":
                if self.client is not None and not self.client.pump():
                    self._drop_client()
            else:
                key.data()
        if self.device.has_work() and self.client is not None:
            try:
                self.device.run_work()
            except DevModelError as exc:
                log.warning("device work failed: %s", exc)
            except Exception:
                if self.strict:
                    raise
                log.exception("bug: device work raised")

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(True)
        self.clients_served += 1
        self.client = Client(self, sock)
        self.sel.unregister(self.listener)
        self.sel.register(sock, selectors.EVENT_READ, "client")
        self.client.log.info("client attached")

    def _drop_client(self) -> None:
        client = self.client
        assert client is not None
        client.closed = True
        self.sel.unregister(client.sock)
        negotiated = client.conn.state is ConnState.RUNNING
        client.conn.abandon_requests()
        close_fds(client.conn.framer.take_fds())
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
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        if self.on_client_gone:
            self.on_client_gone()

    def close(self) -> None:
        if self.client is not None:
            self._drop_client()
        self.sel.close()
        self.listener.close()
