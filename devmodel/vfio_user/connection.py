"""The server side of one vfio-user connection, sans I/O.

Bytes and fds go in through :meth:`ServerConnection.receive_data`; complete messages come out
of :meth:`next_event` as :class:`Request` (a command from the client) or :class:`Reply` (the
answer to a DMA_READ/DMA_WRITE we sent). Replies and our own requests come back as bytes for
the caller to send. The state table says which commands are allowed when.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import CommandNotAllowed, MalformedRequest, NoSpace
from .caps import Capabilities, encode_capabilities
from .constants import (
    HEADER_SIZE,
    MAX_DATA_XFER_SIZE,
    MAX_DMA_MAPS,
    SERVER_MAX_MSG_FDS,
    Command,
    HeaderFlags,
    MsgType,
)
from .framing import _COMMAND, _NO_REPLY, _REPLY, _TYPE_MASK, Framer, Message, encode_message
from .layouts import HEADER
from .messages import VersionRequest, encode_version

__all__ = ["ConnState", "Request", "Reply", "ServerConnection", "ServerOptions"]

_HDR = HEADER.struct
_ERROR_REPLY = int(MsgType.REPLY | HeaderFlags.ERROR)


class ConnState(enum.Enum):
    AWAIT_VERSION = "await-version"
    RUNNING = "running"


# Which commands each state accepts; anything else is CommandNotAllowed.
ALLOWED_COMMANDS: dict[ConnState, frozenset[int]] = {
    ConnState.AWAIT_VERSION: frozenset({Command.VERSION}),
    ConnState.RUNNING: frozenset(c for c in Command if c not in (Command.VERSION, Command.DMA_READ, Command.DMA_WRITE)),
}


@dataclass(frozen=True)
class ServerOptions:
    """Behaviour knobs of the server side, in one object. The limits are what VERSION
    advertises and what is enforced: ``max_msg_fds`` by :meth:`ServerConnection.check_request`,
    ``max_dma_maps`` by the device's DMA map (the dispatcher hands it over)."""

    max_msg_fds: int = SERVER_MAX_MSG_FDS
    max_dma_maps: int = MAX_DMA_MAPS
    write_multiple: bool = False


@dataclass(slots=True)
class Request:
    msg: Message


@dataclass(slots=True)
class Reply:
    msg: Message
    command: int  # the command we sent
    context: object = None


@dataclass
class _Pending:
    command: int
    context: object


@dataclass
class ServerConnection:
    options: ServerOptions = field(default_factory=ServerOptions)
    state: ConnState = ConnState.AWAIT_VERSION
    peer_caps: Capabilities | None = None
    write_multiple: bool = False

    def __post_init__(self) -> None:
        self.framer = Framer()
        # The commands the current state accepts (the dispatcher tests membership per message).
        self.allowed = ALLOWED_COMMANDS[self.state]
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self.unexpected_replies = 0
        # fds that came with messages nobody will take; the transport closes them.
        self.stray_fds: list[int] = []

    # --- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | memoryview, fds: list[int] | tuple[int, ...] = ()) -> None:
        self.framer.receive(data, fds)

    def next_event(self) -> Request | Reply | None:
        """The next complete message, or None for "need more data". Raises FramingError."""
        while True:
            msg = self.framer.next_message()
            if msg is None:
                return None
            if msg.flags & _TYPE_MASK == _COMMAND:
                return Request(msg)
            pending = self._pending.pop(msg.msg_id, None)
            if pending is None or pending.command != msg.command:
                # A reply to nothing we asked: count it, close its fds, drop it.
                if pending is not None:
                    self._pending[msg.msg_id] = pending
                self.unexpected_replies += 1
                self.stray_fds.extend(msg.fds)
                continue
            return Reply(msg, pending.command, pending.context)

    def check_request(self, msg: Message) -> None:
        """Whether a client request may be handled at all: its command in this state, and no
        more fds than we advertised (the dispatcher closes them and answers EINVAL)."""
        self.check_allowed(msg.command)
        if len(msg.fds) > self.options.max_msg_fds:
            raise MalformedRequest(
                "more fds than max_msg_fds", fds=len(msg.fds), max_msg_fds=self.options.max_msg_fds
            )

    def check_allowed(self, command: int) -> None:
        if command not in self.allowed:
            raise CommandNotAllowed(
                "command not allowed in this state", command=command, state=self.state.value
            )

    # --- negotiation -----------------------------------------------------------------------

    def negotiate(self, req: VersionRequest) -> bytes:
        """Accept the client's VERSION; returns the reply payload."""
        if req.major != 0:
            raise MalformedRequest("unsupported protocol major", major=req.major)
        caps = Capabilities(
            max_msg_fds=self.options.max_msg_fds,
            max_data_xfer_size=MAX_DATA_XFER_SIZE,
            max_dma_maps=self.options.max_dma_maps,
            write_multiple=self.options.write_multiple and req.caps.write_multiple,
        )
        self.peer_caps = req.caps
        self.write_multiple = caps.write_multiple
        self.state = ConnState.RUNNING
        self.allowed = ALLOWED_COMMANDS[self.state]
        return encode_version(0, 0, encode_capabilities(caps))

    # --- output ----------------------------------------------------------------------------

    @staticmethod
    def reply(msg: Message, payload: bytes = b"") -> bytes | None:
        if msg.flags & _NO_REPLY:
            return None
        return _HDR.pack(msg.msg_id, msg.command, HEADER_SIZE + len(payload), _REPLY, 0) + payload

    @staticmethod
    def error_reply(msg: Message, err: int) -> bytes | None:
        if msg.flags & _NO_REPLY:
            return None
        return _HDR.pack(msg.msg_id, msg.command, HEADER_SIZE, _ERROR_REPLY, err)

    def request(self, command: int, payload: bytes, context: object = None) -> tuple[int, bytes]:
        """A server-to-client request (DMA_READ/DMA_WRITE); its reply comes from next_event."""
        if len(self._pending) > 0xFFFF:
            raise NoSpace("every request id is in use", pending=len(self._pending))
        msg_id = self._next_id
        while msg_id in self._pending:
            msg_id = (msg_id + 1) & 0xFFFF
        self._next_id = (msg_id + 1) & 0xFFFF
        self._pending[msg_id] = _Pending(command, context)
        return msg_id, encode_message(msg_id, command, MsgType.COMMAND, payload)

    def forget(self, msg_id: int) -> None:
        """Give up on one request (it timed out); a late reply then counts as unexpected."""
        self._pending.pop(msg_id, None)

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    def abandon_requests(self) -> list[object]:
        """Forget every outstanding request (the connection is gone); returns their contexts."""
        out = [p.context for p in self._pending.values()]
        self._pending.clear()
        return out

