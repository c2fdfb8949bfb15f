"""Region messages handled by the compiled accelerator, straight from the framer's buffer.

Before the connection's next message goes to the Python path, :meth:`CompiledDrain.run`
hands the received bytes that carry no fds to ``dm_drain`` (accel/dm_accel.c), which takes
the REGION_READ, REGION_WRITE and REGION_WRITE_MULTI messages for the region the device bound
(``Device.region_accel``) from the front, applies them, writes their replies, and stops at
the first message it does not take. Those replies are sent before anything after them, so the
client sees the order it sent: C sends them itself while the outbox is empty, and what the
socket does not take goes to the outbox. What C counts (requests, posted) joins the
dispatcher's stats.
"""

from __future__ import annotations

from typing import Any

from ..accel import Accel, RegionAccel
from ..vfio_user.connection import ServerConnection
from ..vfio_user.constants import (
    HEADER_SIZE,
    MAX_DATA_XFER_SIZE,
    WRITE_MULTI_DATA_SIZE,
    WRITE_MULTI_MAX_COUNT,
    Command,
    HeaderFlags,
    MsgType,
)
from .outbox import Outbox

__all__ = ["OUT_SIZE", "CompiledDrain"]

# Replies of one call; a fuller drain stops (DM_OUT_FULL), sends and goes on.
OUT_SIZE = 64 << 10


class CompiledDrain:
    def __init__(
        self,
        accel: Accel,
        region: RegionAccel,
        conn: ServerConnection,
        outbox: Outbox,
        stats: dict[str, int],
    ) -> None:
        ffi, lib = accel.ffi, accel.lib
        self._ffi = ffi
        self._drain = lib.dm_drain
        self._python = lib.DM_PYTHON
        self._out_full = lib.DM_OUT_FULL
        self._region = region
        self._framer = conn.framer
        self._outbox = outbox
        self._fd = outbox.sock.fileno()
        self._stats = stats
        c = self._c = ffi.new("struct dm_conn *")
        c.max_msg_size = conn.framer.max_size
        c.max_xfer = MAX_DATA_XFER_SIZE
        c.multi_max_count = WRITE_MULTI_MAX_COUNT
        c.multi_data_size = WRITE_MULTI_DATA_SIZE
        c.cmd_read = Command.REGION_READ
        c.cmd_write = Command.REGION_WRITE
        c.cmd_write_multi = Command.REGION_WRITE_MULTI
        c.type_mask = HeaderFlags.TYPE_MASK
        c.type_command = MsgType.COMMAND
        c.no_reply = HeaderFlags.NO_REPLY
        c.reply_flags = MsgType.REPLY
        c.write_multiple = conn.write_multiple
        c.region_index = region.index
        c.bar = region.ptr
        self._out = memoryview(bytearray(OUT_SIZE))
        self._out_buffer = ffi.from_buffer(self._out)
        c.out = ffi.cast("uint8_t *", self._out_buffer)
        c.out_cap = OUT_SIZE
        self._bound: bytearray | None = None  # the framer buffer _buf_ptr points into
        self._buf_export: Any = None
        self._buf_ptr: Any = None

    def run(self) -> None:
        framer = self._framer
        start, end = framer.plain_span()
        if end - start < HEADER_SIZE:
            return
        if framer.buffer is not self._bound:  # a new framer buffer (it grew)
            self._bound = framer.buffer
            self._buf_export = self._ffi.from_buffer(self._bound)
            self._buf_ptr = self._ffi.cast("uint8_t *", self._buf_export)
        c = self._c
        c.pos = start
        outbox = self._outbox
        c.sock_fd = -1 if outbox.queued else self._fd  # behind queued bytes, replies queue too
        status = self._drain(c, self._buf_ptr, end)
        if status > self._python or c.out_len:
            self._finish(status, end)
        framer.skip_to(c.pos)
        if c.requests:
            self._stats["requests"] += c.requests
            self._stats["posted"] += c.posted
            c.requests = c.posted = 0

    def _finish(self, status: int, end: int) -> None:
        """The rarer outcomes: replies the socket did not take, and the statuses that ask
        for Python's help before the drain goes on."""
        c = self._c
        resolved = False
        try:
            while True:
                n = c.out_len
                if n:
                    c.out_len = 0
                    self._outbox.send(bytes(self._out[:n]))
                    c.sock_fd = -1 if self._outbox.queued else self._fd
                if status <= self._python:  # DM_DONE, DM_PYTHON
                    return
                if status != self._out_full:
                    self._region.resolve(status)
                    resolved = True
                status = self._drain(c, self._buf_ptr, end)
        finally:
            if resolved:
                self._region.settle()
