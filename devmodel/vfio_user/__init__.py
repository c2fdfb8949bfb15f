"""The vfio-user protocol, sans I/O: no sockets, mmap, threads or clocks in this package."""

from .caps import Capabilities
from .connection import ConnState, Reply, Request, ServerConnection, ServerOptions
from .constants import Command, HeaderFlags, IrqIndex, MsgType, RegionIndex
from .framing import Framer, Message, encode_message

__all__ = [
    "Capabilities",
    "Command",
    "ConnState",
    "Framer",
    "HeaderFlags",
    "IrqIndex",
    "Message",
    "MsgType",
    "RegionIndex",
    "Reply",
    "Request",
    "ServerConnection",
    "ServerOptions",
    "encode_message",
]
