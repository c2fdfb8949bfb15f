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

__all__ = ["Message", "Framer", "encode_message"]

_HDR = HEADER.struct
# Plain ints on the per-message path: IntFlag arithmetic costs a microsecond a message.
_TYPE_MASK = int(HeaderFlags.TYPE_MASK)
_NO_REPLY = int(HeaderFlags.NO_REPLY)
_COMMAND = int(MsgType.COMMAND)
_REPLY = int(MsgType.REPLY)


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
    "need more data" (the h11 convention)."""

    def __init__(self, max_size: int = MAX_MSG_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._pos = 0  # read position inside _buf
        self._base = 0  # stream offset of _buf[0]
        self._fds: list[tuple[int, list[int]]] = []  # (stream offset of a chunk's last byte, fds)

    def receive(self, data: bytes | memoryview, fds: Sequence[int] = ()) -> None:
        if self._pos and self._pos == len(self._buf):
            self._base += self._pos
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536:
            del self._buf[: self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data
        if fds:
            self._fds.append((self._base + len(self._buf) - 1, list(fds)))

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_message(self) -> Message | None:
        buf = self._buf
        pos = self._pos
        if len(buf) - pos < HEADER_SIZE:
            return None
        msg_id, command, size, flags, error = _HDR.unpack_from(buf, pos)
        if size < HEADER_SIZE or size > self.max_size:
            raise FramingError("message size out of bounds", size=size, msg_id=msg_id)
        if flags & _TYPE_MASK > _REPLY:
            raise FramingError("unknown message type", flags=flags, msg_id=msg_id)
        end = pos + size
        if len(buf) < end:
            return None
        payload = bytes(buf[pos + HEADER_SIZE : end])
        self._pos = end
        fds: list[int] = []
        if self._fds:
            stream_end = self._base + end
            while self._fds and self._fds[0][0] < stream_end:
                fds.extend(self._fds.pop(0)[1])
        return Message(msg_id, command, flags, error, payload, fds)

    def take_fds(self) -> list[int]:
        """Every fd not yet handed out with a message, for the caller to close."""
        out = [fd for _, fds in self._fds for fd in fds]
        self._fds.clear()
        return out
