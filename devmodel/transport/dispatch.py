"""The one dispatch point: a request goes to its handler, an exception becomes an error reply.

Handlers validate (through the protocol's decoders and the device's checks) before they act,
so a rejected request leaves no partial state. Only here is an exception turned into an errno;
an unexpected exception is a bug, logged with its traceback and answered with EIO (or raised,
in strict mode).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

from ..device.device import Device, ResetKind
from ..device.irq import SetIrqs
from ..errors import DevModelError, MalformedRequest, NotSupported, OutOfRange, UnknownCommand
from ..vfio_user import messages as m
from ..vfio_user.connection import ServerConnection
from ..vfio_user.constants import Command, DeviceInfoFlags, DmaUnmapFlags, HeaderFlags, MsgType
from ..vfio_user.framing import Message
from ..vfio_user.layouts import REGION_ACCESS
from .unix import close_fds

__all__ = ["Dispatcher", "Outcome"]

log = logging.getLogger(__name__)

# What a handler returns: reply payload and fds to send with it.
Outcome = tuple[bytes, list[int]]
_EMPTY: Outcome = (b"", [])
_ACCESS = REGION_ACCESS.struct
_COMMAND = int(MsgType.COMMAND)
_POSTED = _COMMAND | int(HeaderFlags.NO_REPLY)


class Dispatcher:
    def __init__(self, device: Device, conn: ServerConnection, strict: bool = False) -> None:
        self.device = device
        self.conn = conn
        self.strict = strict
        self.stats: dict[str, int] = {"requests": 0, "errors": 0, "posted": 0}
        # The limit VERSION advertises is the one the DMA map enforces.
        device.dma.max_windows = conn.options.max_dma_maps
        self._handlers: dict[int, Callable[[Message], Outcome]] = {
            Command.VERSION: self.handle_version,
            Command.DMA_MAP: self.handle_dma_map,
            Command.DMA_UNMAP: self.handle_dma_unmap,
            Command.DEVICE_GET_INFO: self.handle_device_get_info,
            Command.DEVICE_GET_REGION_INFO: self.handle_device_get_region_info,
            Command.DEVICE_GET_IRQ_INFO: self.handle_device_get_irq_info,
            Command.DEVICE_SET_IRQS: self.handle_device_set_irqs,
            Command.REGION_READ: self.handle_region_read,
            Command.REGION_WRITE: self.handle_region_write,
            Command.REGION_WRITE_MULTI: self.handle_region_write_multi,
            Command.DEVICE_RESET: self.handle_device_reset,
            Command.DEVICE_GET_REGION_IO_FDS: self.handle_not_supported,
            Command.DEVICE_FEATURE: self.handle_not_supported,
            Command.MIG_DATA_READ: self.handle_not_supported,
            Command.MIG_DATA_WRITE: self.handle_not_supported,
        }

    def dispatch(self, msg: Message) -> tuple[bytes, list[int]] | None:
        """Handle one request; returns the bytes and fds to send, or None (no reply)."""
        stats = self.stats
        stats["requests"] += 1
        conn = self.conn
        try:
            handler = self._handlers.get(msg.command)
            if handler is None:
                raise UnknownCommand("unknown command", command=msg.command)
            if msg.fds or msg.command not in conn.allowed:  # the common case passes both tests
                conn.check_request(msg)
            payload, fds = handler(msg)
        except Exception as exc:  # noqa: BLE001 - _failed logs it (a bug) or answers it
            return self._failed(msg, exc)
        out = conn.reply(msg, payload)
        if out is None:
            stats["posted"] += 1
            if fds:
                close_fds(fds)
            return None
        return out, fds

    def _failed(self, msg: Message, exc: Exception) -> tuple[bytes, list[int]] | None:
        """The errno boundary, inside the handler's ``except``: a DevModelError is the
        client's error reply (a fatal one goes on up), anything else a bug (EIO)."""
        close_fds(msg.fds)
        if isinstance(exc, DevModelError):
            if exc.fatal:
                raise exc
            self.stats["errors"] += 1
            log.warning("command %s (id %d) failed: %s", _name(msg.command), msg.msg_id, exc)
            out = self.conn.error_reply(msg, exc.errno)
        else:
            if self.strict:
                raise exc
            self.stats["errors"] += 1
            log.exception("bug: command %s (id %d) raised", _name(msg.command), msg.msg_id)
            out = self.conn.error_reply(msg, errno.EIO)
        return None if out is None else (out, [])

    # --- region accesses the compiled drain decoded and checked ----------------------------

    def handed_write(
        self, msg_id: int, reply: bool, region: int, offset: int, value: int, write32: Callable[[int, int], None]
    ) -> bytes | None:
        """A REGION_WRITE of one whole register dword that the compiled drain (which leaves
        its register to Python) checked as handle_region_write's decoder and check_write
        would: ``write32(offset, value)`` is what the region's handler does with it. The same
        stats, reply, errno and log line as :meth:`dispatch`."""
        def access() -> bytes:
            write32(offset, value)
            return _ACCESS.pack(offset, region, 4)

        return self._run_handed(msg_id, Command.REGION_WRITE, reply, access)

    def handed_read(
        self, msg_id: int, reply: bool, region: int, offset: int, read32: Callable[[int], int]
    ) -> bytes | None:
        """A REGION_READ of one whole register dword, as :meth:`handed_write`: ``read32(offset)``
        is the region's handler's value."""
        def access() -> bytes:
            return _ACCESS.pack(offset, region, 4) + read32(offset).to_bytes(4, "little")

        return self._run_handed(msg_id, Command.REGION_READ, reply, access)

    def _run_handed(self, msg_id: int, command: Command, reply: bool, access: Callable[[], bytes]) -> bytes | None:
        """A handed access: ``access()`` does it and gives the reply's payload."""
        self.stats["requests"] += 1
        try:
            payload = access()
        except Exception as exc:  # noqa: BLE001 - _failed logs it (a bug) or answers it
            failed = self._failed(_handed(msg_id, command, reply), exc)
            return None if failed is None else failed[0]
        if not reply:
            self.stats["posted"] += 1
            return None
        return self.conn.reply(_handed(msg_id, command, reply), payload)

    # --- handlers --------------------------------------------------------------------------

    def handle_version(self, msg: Message) -> Outcome:
        req = m.decode_version(msg.payload, msg.fds)
        reply = self.conn.negotiate(req)
        log.info(
            "negotiated: client max_msg_fds=%d max_data_xfer_size=%d write_multiple=%s",
            req.caps.max_msg_fds,
            req.caps.max_data_xfer_size,
            self.conn.write_multiple,
        )
        return reply, []

    def handle_dma_map(self, msg: Message) -> Outcome:
        req = m.decode_dma_map(msg.payload, msg.fds)
        fd = msg.fds[0] if msg.fds else None
        # Validated first, quiesced only for a change: a refused map cancels no work.
        self.device.dma.add(req.addr, req.size, req.flags, fd, req.offset, before_change=self.device.quiesce)
        return _EMPTY

    def handle_dma_unmap(self, msg: Message) -> Outcome:
        req = m.decode_dma_unmap(msg.payload, msg.fds)
        quiesce = self.device.quiesce  # once the request is known good and a window goes
        if req.flags & DmaUnmapFlags.ALL:
            self.device.dma.remove_all(before_change=quiesce)
        else:
            # A range that covers no window succeeds: QEMU's vIOMMU path unmaps ranges it
            # never mapped and would log every error.
            self.device.dma.remove_range(req.addr, req.size, before_change=quiesce)
        return msg.payload[:24], []

    def handle_device_get_info(self, msg: Message) -> Outcome:
        m.decode_argsz_request(msg.payload, msg.fds, 16, "GET_INFO")
        flags = DeviceInfoFlags.PCI | (DeviceInfoFlags.RESET if self.device.reset_supported else 0)
        return m.encode_device_info(flags, len(self.device.regions), len(self.device.irqs.lines)), []

    def handle_device_get_region_info(self, msg: Message) -> Outcome:
        argsz, index = m.decode_region_info(msg.payload, msg.fds)
        if index >= len(self.device.regions):
            raise OutOfRange("no such region", region=index)
        region = self.device.regions[index]
        areas = region.sparse_areas if region.mmap_fd is not None else []
        body, fits = m.encode_region_info(argsz, index, region.wire_flags, region.size, region.mmap_offset, areas)
        # The fd goes out only on the reply where everything fitted (libvfio-user, QEMU).
        if region.mmap_fd is not None and fits:
            return body, [region.mmap_fd]
        return body, []

    def handle_device_get_irq_info(self, msg: Message) -> Outcome:
        index = m.decode_irq_info(msg.payload, msg.fds)
        flags, count = self.device.irq_info(index)
        return m.encode_irq_info(index, flags, count), []

    def handle_device_set_irqs(self, msg: Message) -> Outcome:
        req = m.decode_set_irqs(msg.payload, msg.fds)
        self.device.set_irqs(
            SetIrqs(req.data_kind, req.action, req.index, req.start, req.count, req.data, tuple(req.fds))
        )
        return _EMPTY

    def handle_region_read(self, msg: Message) -> Outcome:
        offset, region, count = m.decode_region_read(msg.payload, msg.fds)
        data = self.device.region_read(region, offset, count)
        return msg.payload + data, []

    def handle_region_write(self, msg: Message) -> Outcome:
        offset, region, data = m.decode_region_write(msg.payload, msg.fds)
        self.device.region_write(region, offset, data)
        return msg.payload[:16], []

    def handle_region_write_multi(self, msg: Message) -> Outcome:
        if not self.conn.write_multiple:
            raise MalformedRequest("REGION_WRITE_MULTI was not negotiated")
        writes = m.decode_write_multi(msg.payload, msg.fds)
        # Checked whole before any write acts: each region once, up to the batch's furthest
        # end there (every entry writes at least a byte); the first failing entry's own check
        # gives the error.
        ends: dict[int, int] = {}
        for offset, region, data in writes:
            end = offset + len(data)
            if end > ends.get(region, 0):
                ends[region] = end
        try:
            for region, end in ends.items():
                self.device.check_write(region, 0, end)
        except DevModelError:
            for offset, region, data in writes:
                self.device.check_write(region, offset, len(data))
            raise
        self.device.region_write_multi(writes)
        return len(writes).to_bytes(8, "little"), []

    def handle_device_reset(self, msg: Message) -> Outcome:
        m.no_fds(msg.fds)
        if msg.payload:
            raise MalformedRequest("DEVICE_RESET takes no payload", size=len(msg.payload))
        self.device.quiesce()
        self.device.reset(ResetKind.DEVICE)
        log.info("device reset")
        return _EMPTY

    def handle_not_supported(self, msg: Message) -> Outcome:
        raise NotSupported("command not supported", command=msg.command)


def _handed(msg_id: int, command: int, reply: bool) -> Message:
    """The message a handed access was, for the reply and the error path (no payload: they
    read only its id, command and whether it waits for a reply)."""
    return Message(msg_id, command, _COMMAND if reply else _POSTED, 0, b"", [])


def _name(command: int) -> str:
    try:
        return Command(command).name
    except ValueError:
        return str(command)
