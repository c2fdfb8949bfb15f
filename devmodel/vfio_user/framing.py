"""Message framing: bytes and fds in, whole messages out.

A message is a 16-byte header whose ``size`` counts the whole message, then the payload.
File descriptors arrive as ancillary data with the bytes of a ``recvmsg``. Linux hands the fds
of a message out with the chunk that holds that message's first skb and stops the read right
after that skb, so the fds always belong to the message that contains the *last byte of the
chunk they came with*. Recording that position lets the transport read large chunks (many
posted writes per system call) and still attach every fd to its own message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..errors import FramingError
from .constants import HEADER_SIZE, MAX_MSG_SIZE, HeaderFlags, MsgType
from .layouts import HEADER

__all__ = ["Message", "Framer", "encode_message", "INITIAL_CAPACITY"]

_HDR = HEADER.struct
# Plain ints on the per-message path: IntFlag arithmetic costs a microsecond a message.
_TYPE_MASK = int(HeaderFlags.TYPE_MASK)
_NO_REPLY = int(HeaderFlags.NO_REPLY)
_COMMAND = int(MsgType.COMMAND)
_REPLY = int(MsgType.REPLY)
# A framer's first buffer: room for many small messages and one read; a larger message grows it.
INITIAL_CAPACITY = 256 << 10


class Message(NamedTuple):
    msg_id: int
    command: int
    flags: int
    error: int
    payload: bytes
    fds: list[int]

    @property
    def is_reply(self) -> bool:
        return self.flags & _TYPE_MASK == _REPLY

    @property
    def no_reply(self) -> bool:
        return bool(self.flags & _NO_REPLY)


def encode_message(msg_id: int, command: int, flags: int, payload: bytes = b"", error: int = 0) -> bytes:
    return _HDR.pack(msg_id, command, HEADER_SIZE + len(payload), flags, error) + payload


class Framer:
    """Reassembles messages from a byte stream; ``None`` from :meth:`next_message` means
    "need more data" (the h11 convention).

    The bytes live in one buffer that is never resized in place: the transport reads
    straight into its free end (:meth:`read_space`, :meth:`commit`) and a compiled fast path
    may hold a pointer to it. It is compacted by copying the unread bytes to its front and,
    when a message outgrows it, replaced by a larger one (``buffer`` is then a new object).
    """

    def __init__(self, max_size: int = MAX_MSG_SIZE, capacity: int = INITIAL_CAPACITY) -> None:
        self.max_size = max_size
        self.buffer = bytearray(capacity)
        self._view = memoryview(self.buffer)
        self._pos = 0  # read position inside buffer
        self._end = 0  # end of the bytes received
        self._base = 0  # stream offset of buffer[0]
        self._fds: list[tuple[int, list[int]]] = []  # (stream offset of a chunk's last byte, fds)

    # --- input -----------------------------------------------------------------------------

    def read_space(self, room: int) -> memoryview:
        """At least ``room`` bytes of free buffer to read into; :meth:`commit` says how many
        were filled."""
        pos, end = self._pos, self._end
        if pos == end or len(self.buffer) - end < room:
            n = end - pos
            if n + room > len(self.buffer):
                self._grow(n + room)
            else:
                if n:
                    self.buffer[:n] = self._view[pos:end]  # same size: the buffer stays put
                self._base += pos
                self._pos, self._end = 0, n
        return self._view[self._end :]

    def _grow(self, need: int) -> None:
        bigger = bytearray(max(need, 2 * len(self.buffer)))
        n = self._end - self._pos
        bigger[:n] = self._view[self._pos : self._end]
        self._view.release()
        self.buffer = bigger
        self._view = memoryview(bigger)
        self._base += self._pos
        self._pos, self._end = 0, n

    def commit(self, n: int, fds: Sequence[int] = ()) -> None:
        """``n`` bytes were read into the space :meth:`read_space` gave, with ``fds``."""
        self._end += n
        if fds:
            self._fds.append((self._base + self._end - 1, list(fds)))

    def receive(self, data: bytes | memoryview, fds: Sequence[int] = ()) -> None:
        n = len(data)
        self.read_space(n)[:n] = data
        self.commit(n, fds)

    @property
    def buffered(self) -> int:
        return self._end - self._pos

    @property
    def fds_pending(self) -> bool:
        return bool(self._fds)

    def adopt(self, pos: int, end: int, shifted: int) -> None:
        """A compiled fast path dropped ``shifted`` bytes from the buffer's front, read into
        it and took messages from it: its read position and end are now ``pos`` and ``end``.
        (Only while no fds are pending: their stream offsets would need the same care.)"""
        if self._fds:
            raise ValueError("fds pending")
        if not 0 <= pos <= end <= len(self.buffer):
            raise ValueError(f"span [{pos}, {end}) outside the buffer")
        self._base += shifted
        self._pos, self._end = pos, end

    # --- output ----------------------------------------------------------------------------

    def next_message(self) -> Message | None:
        pos = self._pos
        if self._end - pos < HEADER_SIZE:
            return None
        msg_id, command, size, flags, error = _HDR.unpack_from(self.buffer, pos)
        if size < HEADER_SIZE or size > self.max_size:
            raise FramingError("message size out of bounds", size=size, msg_id=msg_id)
        if flags & _TYPE_MASK > _REPLY:
            raise FramingError("unknown message type", flags=flags, msg_id=msg_id)
        end = pos + size
        if self._end < end:
            return None
        payload = bytes(self._view[pos + HEADER_SIZE : end])
        self._pos = end
        fds: list[int] = []
        if self._fds:
            stream_end = self._base + end
            while self._fds and self._fds[0][0] < stream_end:
                fds.extend(self._fds.pop(0)[1])
        return Message(msg_id, command, flags, error, payload, fds)

    def plain_span(self) -> tuple[int, int]:
        """(start, end) inside ``buffer`` of the received bytes that no fd came with: every
        whole message in it is one :meth:`next_message` would return without fds, so a fast
        path may take those and then :meth:`skip_to` past them."""
        end = self._end
        if self._fds:
            # a message gets the fds of every chunk whose last byte it holds
            end = min(end, self._fds[0][0] - self._base)
        return self._pos, end

    def skip_to(self, pos: int) -> None:
        """The messages before ``pos`` (from :meth:`plain_span`) were handled elsewhere."""
        if not self._pos <= pos <= self._end:
            raise ValueError(f"skip to {pos} outside [{self._pos}, {self._end}]")
        self._pos = pos

    def take_fds(self) -> list[int]:
        """Every fd not yet handed out with a message, for the caller to close."""
        out = [fd for _, fds in self._fds for fd in fds]
        self._fds.clear()
        return out
