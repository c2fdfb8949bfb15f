"""Interrupt lines over eventfds: INTx (level, automasked, maskable), MSI, MSI-X, ERR, REQ.

The client hands eventfds over with SET_IRQS; raising vector *n* writes 1 to its eventfd.
INTx follows VFIO's level semantics: when the line is asserted and not masked, the eventfd is
signalled and the line masks itself until the client sends UNMASK (after the guest's EOI); an
UNMASK while the line is still asserted signals again.
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import MalformedRequest
from ..vfio_user.constants import IrqIndex, IrqInfoFlags, IrqSetFlags

__all__ = ["IrqLine", "IrqLines", "SetIrqs", "is_eventfd"]

log = logging.getLogger(__name__)

_ONE = (1).to_bytes(8, "little")



@dataclass(frozen=True)
class SetIrqs:
    """A SET_IRQS request as the device sees it (shape already checked by the protocol)."""

    data_kind: int
    action: int
    index: int
    start: int
    count: int
    data: bytes = b""
    fds: tuple[int, ...] = ()


def is_eventfd(fd: int) -> bool:
    """Whether ``fd`` is an eventfd (what Linux names the anonymous inode behind it)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


_POLLOUT = select.POLLOUT


def _signal(fd: int) -> None:
    # The client owns the fd's flags and may leave it blocking; an eventfd whose counter the
    # client set near its maximum would block our write, and with it the whole server. A
    # zero-timeout poll first: not writable means an interrupt is already pending.
    poller = select.poll()
    poller.register(fd, _POLLOUT)
    if not poller.poll(0):
        return
    try:
        os.write(fd, _ONE)
    except BlockingIOError:
        pass  # the counter is saturated: the client has not read it yet, it is pending anyway
    except OSError as exc:
        log.warning("eventfd %d write failed: %s", fd, exc)


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


@dataclass
class IrqLine:
    index: int
    count: int
    info_flags: int
    triggers: list[int | None] = field(default_factory=list)
    masked: list[bool] = field(default_factory=list)
    mask_fds: list[int | None] = field(default_factory=list)
    unmask_fds: list[int | None] = field(default_factory=list)
    signals: int = 0

    def __post_init__(self) -> None:
        self.triggers = [None] * self.count
        self.masked = [False] * self.count
        self.mask_fds = [None] * self.count
        self.unmask_fds = [None] * self.count

    @property
    def maskable(self) -> bool:
        return bool(self.info_flags & IrqInfoFlags.MASKABLE)

    def close_all(self) -> None:
        for table in (self.triggers, self.mask_fds, self.unmask_fds):
            for i, fd in enumerate(table):
                _close(fd)
                table[i] = None
        self.masked = [False] * self.count


class IrqLines:
    """The device's five interrupt indexes and the INTx level state.

    ``intx_blocked`` tells whether the PCI command register masks INTx (bit 10); the device
    wires it to its config space.
    """

    def __init__(self, msi_count: int = 1, msix_count: int = 0) -> None:
        self.lines = [
            IrqLine(IrqIndex.INTX, 1, IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.AUTOMASKED),
            IrqLine(IrqIndex.MSI, msi_count, IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE),
            IrqLine(IrqIndex.MSIX, msix_count, IrqInfoFlags.EVENTFD | IrqInfoFlags.NORESIZE),
            IrqLine(IrqIndex.ERR, 1, IrqInfoFlags.EVENTFD),
            IrqLine(IrqIndex.REQ, 1, IrqInfoFlags.EVENTFD),
        ]
        self.intx_asserted = False
        self.intx_blocked: Callable[[], bool] = lambda: False

    def info(self, index: int) -> tuple[int, int]:
        line = self._line(index)
        return line.info_flags, line.count

    def _line(self, index: int) -> IrqLine:
        if not 0 <= index < len(self.lines):
            raise MalformedRequest("no such interrupt index", index=index)
        return self.lines[index]

    # --- SET_IRQS --------------------------------------------------------------------------

    def set_irqs(self, req: SetIrqs) -> None:
        """Validate against the line, then act. Fds in ``req`` are taken over on success and
        left to the caller to close on failure."""
        line = self._line(req.index)
        if req.count == 0:
            # Only "disable everything" has count 0 (the protocol checked the flags).
            line.close_all()
            return
        if req.start >= line.count or req.start + req.count > line.count:
            raise MalformedRequest("vectors out of range", index=req.index, start=req.start, count=req.count)
        if req.index in (IrqIndex.ERR, IrqIndex.REQ) and req.action != IrqSetFlags.ACTION_TRIGGER:
            raise MalformedRequest("ERR/REQ only take TRIGGER", index=req.index)
        if req.action != IrqSetFlags.ACTION_TRIGGER and not line.maskable:
            raise MalformedRequest("index is not maskable", index=req.index)
        vectors = range(req.start, req.start + req.count)
        if req.data_kind == IrqSetFlags.DATA_EVENTFD:
            tables: dict[int, list[int | None]] = {
                IrqSetFlags.ACTION_TRIGGER: line.triggers,
                IrqSetFlags.ACTION_MASK: line.mask_fds,
                IrqSetFlags.ACTION_UNMASK: line.unmask_fds,
            }
            table = tables[req.action]
            for i, fd in enumerate(req.fds):
                # Anything else (a pipe, a socket) could block the single-threaded server.
                if fd >= 0 and not is_eventfd(fd):
                    raise MalformedRequest("SET_IRQS fd is not an eventfd", index=req.index, vector=req.start + i)
            for i, vec in enumerate(vectors):
                _close(table[vec])
                table[vec] = req.fds[i] if req.fds else None
            if req.action == IrqSetFlags.ACTION_TRIGGER and req.index == IrqIndex.INTX and req.fds:
                # A newly armed INTx starts unmasked and fires if the level is already up.
                line.masked[0] = False
                self.update_intx()
            return
        selected = [v for i, v in enumerate(vectors) if req.data_kind == IrqSetFlags.DATA_NONE or req.data[i]]
        for vec in selected:
            if req.action == IrqSetFlags.ACTION_TRIGGER:
                self._fire(line, vec)
            elif req.action == IrqSetFlags.ACTION_MASK:
                self._set_mask(line, vec, True)
            else:
                self._set_mask(line, vec, False)

    def _set_mask(self, line: IrqLine, vec: int, masked: bool) -> None:
        if line.masked[vec] != masked:
            line.masked[vec] = masked
            notify = line.mask_fds[vec] if masked else line.unmask_fds[vec]
            if notify is not None:
                _signal(notify)
        if not masked and line.index == IrqIndex.INTX:
            # An UNMASK while the level is still up signals again, even if not masked before.
            self.update_intx()

    def _fire(self, line: IrqLine, vec: int) -> bool:
        fd = line.triggers[vec]
        if fd is None:
            return False
        line.signals += 1
        _signal(fd)
        return True

    # --- raising ---------------------------------------------------------------------------

    def trigger(self, index: int, vector: int = 0) -> bool:
        """Edge interrupt (MSI, MSI-X, ERR, REQ); False if no eventfd is wired."""
        line = self._line(index)
        if not 0 <= vector < line.count:
            return False
        return self._fire(line, vector)

    def vector_wired(self, index: int, vector: int = 0) -> bool:
        line = self.lines[index]
        return vector < line.count and line.triggers[vector] is not None

    def set_intx(self, asserted: bool) -> None:
        self.intx_asserted = asserted
        self.update_intx()

    def update_intx(self) -> None:
        line = self.lines[IrqIndex.INTX]
        if self.intx_asserted and not line.masked[0] and not self.intx_blocked():
            if self._fire(line, 0):
                line.masked[0] = True  # automasked until the client's UNMASK

    def close_all(self) -> None:
        for line in self.lines:
            line.close_all()
