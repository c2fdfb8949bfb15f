"""The one exception tree of devmodel.

::

    DevModelError                      errno EIO, not fatal (abstract)
    ├── ProtocolError                  the peer broke vfio-user
    │   ├── FramingError               fatal: the connection is dropped, no reply
    │   ├── MalformedRequest           EINVAL: short payload, bad argsz, unknown flags, bad length
    │   ├── UnknownCommand             ENOSYS
    │   └── CommandNotAllowed          EINVAL: not valid in the connection's current state
    ├── DeviceError                    a well-formed request the device cannot satisfy
    │   ├── OutOfRange                 EINVAL: offset + count past a region, bad index
    │   ├── NotSupported               ENOTSUP
    │   ├── Busy                       EBUSY
    │   ├── DmaOverlap                 EEXIST: a map over an existing window (the spec's errno)
    │   ├── DmaNotMapped               ENOENT: an unmap that covers no window
    │   ├── DmaFault                   EFAULT: device access to an unmapped or unpermitted iova
    │   ├── UnsafeMemory               EPERM: a DMA_MAP fd the client could shrink, refused by policy
    │   └── NoSpace                    ENOSPC: too many windows or frames
    └── TransportError                 an OS-level failure; never turned into a reply
    ErrorReply                         client side: the peer answered with ERROR

Only the dispatch point in ``devmodel.transport`` turns these into error replies. Each class
carries its errno and whether it is fatal for the connection, so a handler only raises.
"""

from __future__ import annotations

import errno as _errno
from typing import Any, ClassVar

__all__ = [
    "DevModelError",
    "ProtocolError",
    "FramingError",
    "MalformedRequest",
    "UnknownCommand",
    "CommandNotAllowed",
    "DeviceError",
    "OutOfRange",
    "NotSupported",
    "Busy",
    "DmaOverlap",
    "DmaNotMapped",
    "DmaFault",
    "UnsafeMemory",
    "NoSpace",
    "TransportError",
    "ErrorReply",
]


class DevModelError(Exception):
    """Base of every error devmodel raises on purpose."""

    errno: ClassVar[int] = _errno.EIO
    fatal: ClassVar[bool] = False

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.fields = fields

    def __str__(self) -> str:
        base = super().__str__()
        if not self.fields:
            return base
        extra = " ".join(
            f"{k}={v:#x}" if isinstance(v, int) and not isinstance(v, bool) else f"{k}={v}"
            for k, v in self.fields.items()
        )
        return f"{base} ({extra})"


class ProtocolError(DevModelError):
    errno = _errno.EINVAL


class FramingError(ProtocolError):
    fatal = True


class MalformedRequest(ProtocolError):
    errno = _errno.EINVAL


class UnknownCommand(ProtocolError):
    errno = _errno.ENOSYS


class CommandNotAllowed(ProtocolError):
    errno = _errno.EINVAL


class DeviceError(DevModelError):
    errno = _errno.EIO


class OutOfRange(DeviceError):
    errno = _errno.EINVAL


class NotSupported(DeviceError):
    errno = _errno.ENOTSUP


class Busy(DeviceError):
    errno = _errno.EBUSY


class DmaOverlap(DeviceError):
    errno = _errno.EEXIST


class DmaNotMapped(DeviceError):
    errno = _errno.ENOENT


class DmaFault(DeviceError):
    errno = _errno.EFAULT


class UnsafeMemory(DeviceError):
    """Memory the client can take away under the mapping (truncation means SIGBUS), refused
    because the server was told to (EPERM: allowed by the protocol, not by this policy)."""

    errno = _errno.EPERM


class NoSpace(DeviceError):
    errno = _errno.ENOSPC


class TransportError(DevModelError):
    fatal = True


class ErrorReply(DevModelError):
    """The peer answered a request with an error reply (client side)."""

    def __init__(self, err: int, command: int, msg_id: int) -> None:
        super().__init__(
            f"{_errno.errorcode.get(err, str(err))} in reply to command {command}",
            command=command,
            msg_id=msg_id,
        )
        self.errno = err  # type: ignore[misc]  # per-instance: the peer chose it
        self.command = command
        self.msg_id = msg_id
