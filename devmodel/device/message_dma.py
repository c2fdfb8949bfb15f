"""DMA through messages (DMA_READ/DMA_WRITE) as continuations.

Windows without an fd can only be reached by asking the client. The device never waits for
the answer: :meth:`MessageDma.read` / :meth:`MessageDma.write` send the request and return a
:class:`Transfer`; when every reply is in, the loop runs the ``then`` callback as a task of its
own that uses guest memory, never inside another task's step or a request handler. A
quiesce, a reset or a lost client cancels every transfer in flight: its ``then`` never runs
and a late reply is dropped. The transport implements :class:`MessageDma`
(``transport/message_dma.py``) and sets ``device.message_dma`` while a client is attached.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from ..errors import DmaFault

__all__ = ["MessageDma", "Transfer", "TransferState"]


class TransferState(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"  # the client refused, answered badly, or not in time
    CANCELLED = "cancelled"  # quiesce, reset, lost client: ``then`` never runs


class Transfer:
    """One DMA_READ or DMA_WRITE of any length, sent as ``pieces`` messages."""

    def __init__(self, write: bool, iova: int, count: int, pieces: int, then: Callable[[Transfer], None]) -> None:
        self.write = write
        self.iova = iova
        self.count = count
        self.then = then
        self.state = TransferState.PENDING
        self.error: DmaFault | None = None
        self._parts: list[bytes | None] = [None] * pieces
        self._missing = pieces
        self._cancel_hook: Callable[[Transfer], None] | None = None

    def __repr__(self) -> str:
        kind = "write" if self.write else "read"
        return f"<Transfer {kind} {self.iova:#x}+{self.count:#x} {self.state.value}>"

    def result(self) -> bytes:
        """The bytes read (b"" for a write); raises the DmaFault of a failed or cancelled one."""
        if self.state is TransferState.DONE:
            return b"".join(p for p in self._parts if p is not None)
        if self.error is not None:
            raise self.error
        raise DmaFault("DMA transfer has not completed", iova=self.iova, state=self.state.value)

    def cancel(self) -> bool:
        """Stop waiting: ``then`` never runs. True if it was still pending."""
        if self.state is not TransferState.PENDING:
            return False
        self.state = TransferState.CANCELLED
        self.error = DmaFault("DMA transfer cancelled", iova=self.iova, count=self.count)
        if self._cancel_hook is not None:
            self._cancel_hook(self)
        return True

    # --- for the implementation ------------------------------------------------------------

    def piece_done(self, index: int, data: bytes) -> bool:
        """Record one reply; True once every piece is in (the transfer is then DONE)."""
        if self.state is not TransferState.PENDING or self._parts[index] is not None:
            return False
        self._parts[index] = data
        self._missing -= 1
        if self._missing:
            return False
        self.state = TransferState.DONE
        return True

    def fail(self, error: DmaFault) -> bool:
        if self.state is not TransferState.PENDING:
            return False
        self.state = TransferState.FAILED
        self.error = error
        return True

    def on_cancel(self, hook: Callable[[Transfer], None]) -> None:
        self._cancel_hook = hook


class MessageDma(Protocol):
    """What a device may ask of the attached client. Both methods raise DmaFault when no
    window covers the range, the window does not permit the access, no client has negotiated
    or the socket failed; nothing of such a transfer stays in flight."""

    def read(self, iova: int, count: int, then: Callable[[Transfer], None]) -> Transfer: ...

    def write(self, iova: int, data: bytes, then: Callable[[Transfer], None]) -> Transfer: ...

    def cancel_all(self) -> int: ...

    @property
    def in_flight(self) -> int:
        """Transfers sent and not yet answered, cancelled or timed out."""
        ...
