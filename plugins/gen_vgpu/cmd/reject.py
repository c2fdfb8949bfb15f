"""The one exception the command scanner raises: a command stream it will not run."""

from __future__ import annotations

from devmodel.errors import DeviceError

from .engines import Engine

__all__ = ["CommandRejected", "FieldError"]


class CommandRejected(DeviceError):
    """A command the vGPU refuses, with the reason; the engine hangs the context and logs this.

    ``offset`` is the byte offset of the command from the start of the buffer being scanned
    (the ring segment's first dword, or the batch's start address); ``level`` is 0 for the ring,
    1 for a first-level batch, 2 for a second-level batch.
    """

    def __init__(self, reason: str, *, command: str, offset: int, engine: Engine, level: int, header: int) -> None:
        super().__init__(f"{command} at offset {offset:#x} on {engine.name}: {reason}", level=level, header=header)
        self.reason = reason
        self.command = command
        self.offset = offset
        self.engine = engine
        self.level = level
        self.header = header


class FieldError(Exception):
    """Raised by a decoder or check that only knows what is wrong; the scanner adds where."""
