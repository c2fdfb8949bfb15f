"""Region writes as posted vfio-user messages through the server's own client path: the
compiled drain first (when asked for), then the Python dispatcher, exactly as messages from
a socket go, but fed straight into the connection's framer, so that a unit test keeps its
single thread. The GGTT state machine runs through it to check the accelerator's GGTT
bookkeeping against its model."""

from __future__ import annotations

import json
import socket

from devmodel.device.device import Device
from devmodel.testing import QEMU_CAPS
from devmodel.transport.server import Client, Server
from devmodel.vfio_user.connection import ServerOptions
from devmodel.vfio_user.constants import Command, HeaderFlags, MsgType
from devmodel.vfio_user.framing import encode_message
from devmodel.vfio_user.layouts import REGION_ACCESS, VERSION, WRITE_MULTI, WRITE_MULTI_ENTRY

POSTED = int(MsgType.COMMAND) | int(HeaderFlags.NO_REPLY)


class MessageRig:
    def __init__(self, device: Device, accel: bool) -> None:
        self._ends = socket.socketpair()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # never accepts: the client is made here
        self.server = Server(device, self._listener, ServerOptions(write_multiple=True), strict=True, accel=accel)
        self.client = Client(self.server, self._ends[0])
        self._ends[1].setblocking(False)
        text = json.dumps({"capabilities": QEMU_CAPS}).encode() + b"\0"
        self._feed(encode_message(0, Command.VERSION, int(MsgType.COMMAND), VERSION.pack(0, 0) + text))
        self._ends[1].recv(4096)  # the VERSION reply
        if accel and self.client.drain is None:
            raise RuntimeError("the compiled drain did not attach")

    def _feed(self, message: bytes) -> None:
        self.client.conn.framer.receive(message)
        self.client.handle_events()

    def region_write(self, index: int, offset: int, data: bytes) -> None:
        self._feed(encode_message(1, Command.REGION_WRITE, POSTED, REGION_ACCESS.pack(offset, index, len(data)) + data))

    def region_write_multi(self, writes: list[tuple[int, int, bytes]]) -> None:
        body = WRITE_MULTI.pack(len(writes)) + b"".join(
            WRITE_MULTI_ENTRY.pack(offset, index, len(data), int.from_bytes(data.ljust(8, b"\0"), "little"))
            for offset, index, data in writes
        )
        self._feed(encode_message(2, Command.REGION_WRITE_MULTI, POSTED, body))

    @property
    def errors(self) -> int:
        return self.client.dispatcher.stats["errors"]

    def close(self) -> None:
        self.server.loop.close()
        for s in (*self._ends, self._listener):
            s.close()
