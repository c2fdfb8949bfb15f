"""The attached client's side of message DMA: DMA_READ/DMA_WRITE requests out, their replies
back in as events of the connection, and the continuation queued as a device task.

Nothing here waits. A transfer longer than the client's ``max_data_xfer_size`` is sent as
several requests at once; QEMU answers them in order. A transfer that gets no complete answer
within ``timeout`` fails with DmaFault (its ``then`` runs and sees the fault); one cancelled
(quiesce, reset, lost client) forgets its request ids, so a late reply counts as unexpected
and is dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..device.dma import PROT_READ, PROT_WRITE, DmaMap
from ..device.message_dma import Transfer
from ..device.tasks import TaskQueue, Timer, TimerHeap
from ..errors import DmaFault, NoSpace, ProtocolError, TransportError
from ..vfio_user import messages as m
from ..vfio_user.connection import ConnState, Reply, ServerConnection
from ..vfio_user.constants import MAX_DATA_XFER_SIZE, Command, HeaderFlags
from .unix import close_fds

__all__ = ["REPLY_TIMEOUT", "MessageDmaChannel"]

log = logging.getLogger(__name__)

# QEMU's own wait for our replies is 5 s; a client that takes longer for ours is stuck.
REPLY_TIMEOUT = 5.0


class _InFlight:
    __slots__ = ("msg_ids", "timer")

    def __init__(self) -> None:
        self.msg_ids: list[int] = []
        self.timer: Timer | None = None


class MessageDmaChannel:
    """Implements :class:`devmodel.device.message_dma.MessageDma` over one connection."""

    def __init__(
        self,
        conn: ServerConnection,
        send: Callable[[bytes], None],
        dma: DmaMap,
        tasks: TaskQueue,
        timers: TimerHeap,
        timeout: float = REPLY_TIMEOUT,
    ) -> None:
        self.conn = conn
        self.send = send
        self.dma = dma
        self.tasks = tasks
        self.timers = timers
        self.timeout = timeout
        self._inflight: dict[Transfer, _InFlight] = {}

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # --- MessageDma --------------------------------------------------------------------------

    def read(self, iova: int, count: int, then: Callable[[Transfer], None]) -> Transfer:
        self._check(iova, count, PROT_READ)
        step = self._piece_size()
        pieces = [(iova + off, min(step, count - off)) for off in range(0, count, step)]
        transfer = Transfer(False, iova, count, len(pieces), then)
        self._send(transfer, Command.DMA_READ, [(a, n, m.encode_dma_access(a, n)) for a, n in pieces])
        return transfer

    def write(self, iova: int, data: bytes, then: Callable[[Transfer], None]) -> Transfer:
        count = len(data)
        self._check(iova, count, PROT_WRITE)
        step = self._piece_size()
        pieces = [(iova + off, data[off : off + step]) for off in range(0, count, step)]
        transfer = Transfer(True, iova, count, len(pieces), then)
        self._send(transfer, Command.DMA_WRITE, [(a, len(d), m.encode_dma_access(a, len(d), d)) for a, d in pieces])
        return transfer

    def cancel_all(self) -> int:
        victims = list(self._inflight)
        for transfer in victims:
            transfer.cancel()
        return len(victims)

    # --- replies -----------------------------------------------------------------------------

    def on_reply(self, reply: Reply) -> None:
        """A reply to one of our requests (the connection matched its id and command)."""
        close_fds(reply.msg.fds)  # DMA replies carry none; a client that sends some loses them
        context = reply.context
        if not isinstance(context, tuple):
            return
        transfer, index, addr, count = context
        if transfer not in self._inflight:
            return
        msg = reply.msg
        if msg.flags & HeaderFlags.ERROR:
            self._finish(transfer, DmaFault("client refused DMA", command=reply.command, error=msg.error))
            return
        data = b""
        if reply.command == Command.DMA_READ:
            try:
                data = m.decode_dma_read_reply(msg.payload, addr, count)
            except ProtocolError as exc:
                self._finish(transfer, DmaFault(f"malformed DMA_READ reply: {exc}", iova=addr))
                return
        if transfer.piece_done(index, data):
            self._finish(transfer, None)

    # --- internals ---------------------------------------------------------------------------

    def _check(self, iova: int, count: int, prot: int) -> None:
        if count <= 0:
            raise DmaFault("empty DMA transfer", iova=iova)
        if self.conn.state is not ConnState.RUNNING:
            raise DmaFault("no negotiated client", iova=iova)
        window = self.dma.find(iova, count)
        if window is None:
            raise DmaFault("no DMA window covers the transfer", iova=iova, count=count)
        if prot & ~window.prot:
            raise DmaFault("DMA window does not permit the access", iova=iova, prot=prot)

    def _piece_size(self) -> int:
        caps = self.conn.peer_caps
        return min(caps.max_data_xfer_size if caps else MAX_DATA_XFER_SIZE, MAX_DATA_XFER_SIZE)

    def _send(self, transfer: Transfer, command: int, pieces: list[tuple[int, int, bytes]]) -> None:
        flight = _InFlight()
        self._inflight[transfer] = flight
        transfer.on_cancel(self._forget)
        try:
            for index, (addr, count, payload) in enumerate(pieces):
                msg_id, data = self.conn.request(command, payload, (transfer, index, addr, count))
                flight.msg_ids.append(msg_id)
                self.send(data)
        except (TransportError, NoSpace) as exc:
            transfer.cancel()
            raise DmaFault(f"cannot send DMA request: {exc}", iova=transfer.iova) from exc
        except Exception:
            transfer.cancel()
            raise
        flight.timer = self.timers.call_later(self.timeout, lambda: self._expire(transfer), uses_guest_memory=False)

    def _expire(self, transfer: Transfer) -> None:
        log.warning("no reply to %r within %.1f s", transfer, self.timeout)
        self._finish(transfer, DmaFault("no reply to DMA request", iova=transfer.iova, count=transfer.count))

    def _forget(self, transfer: Transfer) -> None:
        flight = self._inflight.pop(transfer, None)
        if flight is None:
            return
        for msg_id in flight.msg_ids:
            self.conn.forget(msg_id)
        if flight.timer is not None:
            flight.timer.cancel()

    def _finish(self, transfer: Transfer, error: DmaFault | None) -> None:
        if error is not None:
            transfer.fail(error)
        self._forget(transfer)
        then = transfer.then
        self.tasks.call_soon(lambda: then(transfer), uses_guest_memory=True, name="dma-reply")
