"""Region messages handled by the compiled accelerator, straight from the framer's buffer.

Before the connection's next message goes to the Python path, :meth:`CompiledDrain.run`
hands the received bytes that carry no fds to ``dm_drain`` (accel/dm_accel.c), which takes
the REGION_READ, REGION_WRITE and REGION_WRITE_MULTI messages for the region the device bound
(``Device.region_accel``) from the front, applies them, writes their replies, and stops at
the first message it does not take. Those replies are sent before anything after them, so the
client sees the order it sent: C sends them itself while the outbox is empty, and what the
socket does not take goes to the outbox. What C counts (requests, posted) joins the
dispatcher's stats.

When C stops at a read or write of one whole register dword that it checked in full and
leaves to Python only for the register's handler (``dm_conn.hand``), the drain takes it
itself, through ``Dispatcher.handed_read/handed_write`` and the region's ``read_dword`` /
``write_dword``, and goes on draining: no framer message, no second decoding. Inside the
loop's wait (``dm_serve``) C calls back for it (``dm_serve.hand``) and goes on waiting while
the loop has nothing new to do (docs/performance.md, "Python-handled registers").
"""

from __future__ import annotations

import math
import socket
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
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
from .dispatch import Dispatcher
from .outbox import Outbox

__all__ = ["OUT_SIZE", "CompiledDrain", "ServeOutcome"]

# Replies of one call; a fuller drain stops (DM_OUT_FULL), sends and goes on.
OUT_SIZE = 64 << 10


@dataclass(frozen=True)
class ServeOutcome:
    """What :meth:`CompiledDrain.serve` came back with: the ready events for the loop
    (DM_SERVE_EVENTS, or none at a timeout), or a read for Python to finish."""

    events: list[tuple[int, int]]
    read: bool = False
    got: int = 0  # bytes of that read; 0: EOF
    fds: list[int] = field(default_factory=list)
    truncated: bool = False  # MSG_CTRUNC: more fds than the control buffer held


def _stop() -> bool:
    return False


_defined: set[int] = set()  # the ffis whose dm_serve_hand is defined


def _define_hand(ffi: Any) -> None:
    """dm_serve_hand (accel/build_cffi.py: an extern "Python" of the module), once a module:
    the CompiledDrain behind dm_serve.hand_ctx takes the access."""
    if id(ffi) in _defined:
        return

    @ffi.def_extern(name="dm_serve_hand")  # type: ignore[untyped-decorator]
    def dm_serve_hand(ctx: Any) -> int:
        drain: CompiledDrain | None = ffi.from_handle(ctx)()
        return 0 if drain is None else drain._hand_in_wait()

    _defined.add(id(ffi))


class CompiledDrain:
    def __init__(
        self,
        accel: Accel,
        region: RegionAccel,
        conn: ServerConnection,
        outbox: Outbox,
        dispatcher: Dispatcher,
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
        self._dispatcher = dispatcher
        self._stats = dispatcher.stats
        self._hand_write = lib.DM_HAND_WRITE
        self.handed = 0  # accesses C checked and Python took without decoding them (dm_conn.hand)
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
        if region.aperture is not None:
            c.aperture_index, c.aperture = region.aperture
        out = bytearray(OUT_SIZE)
        self._out = memoryview(out)
        self._out_buffer = ffi.from_buffer(out)  # not the memoryview (Bar0Accel says why)
        c.out = ffi.cast("uint8_t *", self._out_buffer)
        c.out_cap = OUT_SIZE
        self._bound: bytearray | None = None  # the framer buffer _buf_ptr points into
        self._buf_export: Any = None
        self._buf_ptr: Any = None
        self._serve = lib.dm_serve
        self._serve_events = lib.DM_SERVE_EVENTS
        self._serve_timeout = lib.DM_SERVE_TIMEOUT
        self._s = ffi.new("struct dm_serve *")
        self._s.sock_fd = self._fd
        self._s.armed_ns = -1
        _define_hand(ffi)
        # A weak reference: the handle is the drain's own, and a cycle through it would leave
        # the drain (and the buffers it exports to C) to the garbage collector's order.
        self._handle = ffi.new_handle(weakref.ref(self))
        self._s.hand = lib.dm_serve_hand
        self._s.hand_ctx = self._handle
        self._go_on: Callable[[], bool] = _stop
        self._raised: BaseException | None = None
        self._ctrunc = int(socket.MSG_CTRUNC)

    def _bind(self) -> None:
        """Point at the framer's buffer (a new one when it grew)."""
        self._bound = self._framer.buffer
        self._buf_export = self._ffi.from_buffer(self._bound)
        self._buf_ptr = self._ffi.cast("uint8_t *", self._buf_export)

    def run(self) -> None:
        framer = self._framer
        start, end = framer.plain_span()
        if end - start < HEADER_SIZE:
            return
        if framer.buffer is not self._bound:
            self._bind()
        c = self._c
        c.pos = start
        region = self._region
        outbox = self._outbox
        python = self._python
        while True:
            region.prepare()  # what C reads must be current (the aperture's windows)
            c.sock_fd = -1 if outbox.queued else self._fd  # behind queued bytes, replies queue too
            status = self._drain(c, self._buf_ptr, end)
            if status > python or c.out_len:
                status = self._finish(status, end)
            else:
                region.settle()
            if status != python or not c.hand:
                break
            # A register access C checked whole and left to Python for its register: taken
            # here, as the framer and the dispatcher would take it, without decoding it again.
            c.pos += c.hand_size
            framer.skip_to(c.pos)
            self._fold_stats()
            self._take_handed(c)
        framer.skip_to(c.pos)
        self._fold_stats()

    def _take_handed(self, c: Any) -> None:
        self.handed += 1
        region = self._region
        if c.hand == self._hand_write:
            out = self._dispatcher.handed_write(
                c.hand_id, bool(c.hand_reply), region.index, c.hand_offset, c.hand_value, region.write_dword
            )
        else:
            out = self._dispatcher.handed_read(
                c.hand_id, bool(c.hand_reply), region.index, c.hand_offset, region.read_dword
            )
        if out is not None:
            self._outbox.send(out)

    def _fold_stats(self) -> None:
        """What C counted, into the dispatcher's stats (nothing to do when it counted none)."""
        c = self._c
        if not c.requests:
            return
        self._stats["requests"] += c.requests
        self._stats["posted"] += c.posted
        c.requests = c.posted = 0

    def serve(
        self, epoll_fd: int, timer_fd: int, timeout: float | None, room: int, go_on: Callable[[], bool]
    ) -> ServeOutcome:
        """Wait on the loop's epoll set in C (dm_serve), serving the client's messages there
        for as long as they are all C's or accesses C hands over (taken in the wait by
        :meth:`_hand_in_wait`, which goes on waiting only while ``go_on()`` says the loop has
        nothing new to do); the framer's buffer must have ``room`` free bytes (read_space) and
        no fds pending. ``timer_fd``: dm_serve_timer's, in the set, for the timeout (-1:
        none). The caller finishes a read C hands back."""
        framer = self._framer
        buffer = framer.buffer
        if buffer is not self._bound:
            self._bind()
        s, c = self._s, self._c
        s.epfd = epoll_fd
        s.timeout_ns = -1 if timeout is None else math.ceil(timeout * 1e9)
        s.timer_fd = timer_fd
        s.buf = self._buf_ptr
        s.cap = len(buffer)
        s.pos, s.end = framer.plain_span()
        s.min_room = room
        c.sock_fd = self._fd  # the caller waits in C only with nothing queued
        self._go_on = go_on
        self._region.prepare()
        status = self._serve(c, s)
        self._region.settle()
        framer.adopt(s.pos, s.end, s.shifted)
        self._fold_stats()
        if c.out_len:
            self._send_left()
        raised = self._raised
        if raised is not None:
            self._raised = None
            raise raised
        if status == self._serve_events:
            return ServeOutcome([(e >> 32, e & 0xFFFFFFFF) for e in s.events[0 : s.nevents]])
        if status == self._serve_timeout:
            return ServeOutcome([])
        return ServeOutcome(
            [], True, s.got, list(s.fds[0 : s.nfds]), bool(s.msg_flags & self._ctrunc)
        )

    def _hand_in_wait(self) -> int:
        """dm_serve's hand: take the access C handed over (its message already consumed) as
        the drain would, then tell C whether to go on waiting: only while nothing was queued
        for the client and the loop has no new work (a task made ready, a timer moved), so
        that the loop's turn that would have come next has nothing to do. An exception is
        kept for serve to raise once C has come back."""
        try:
            region = self._region
            region.settle()  # C's bookkeeping folded before Python handles anything
            self._fold_stats()
            self._take_handed(self._c)
            if self._outbox.queued or not self._go_on():
                return 0
            region.prepare()
            return 1
        except BaseException as exc:  # noqa: BLE001 - raised by serve once C has come back
            self._raised = exc
            return 0

    def _send_left(self) -> None:
        c = self._c
        n = c.out_len
        c.out_len = 0
        self._outbox.send(bytes(self._out[:n]))

    def _finish(self, status: int, end: int) -> int:
        """The rarer outcomes: replies the socket did not take, and the statuses that ask
        for Python's help before the drain goes on. Returns the final status (DM_DONE or
        DM_PYTHON)."""
        c = self._c
        try:
            while True:
                if c.out_len:
                    self._send_left()
                    c.sock_fd = -1 if self._outbox.queued else self._fd
                if status <= self._python:  # DM_DONE, DM_PYTHON
                    return status
                if status != self._out_full:
                    self._region.resolve(status)
                status = self._drain(c, self._buf_ptr, end)
        finally:
            self._region.settle()
