"""A blocking vfio-user client for tests, benchmarks and scripts: it plays QEMU.

It serves the server's DMA_READ/DMA_WRITE from the :class:`GuestMemory` it was given while it
waits for its own replies, as QEMU does. Error replies raise :class:`ErrorReply`.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
from collections.abc import Sequence

from ..errors import ErrorReply, TransportError
from ..transport.unix import close_fds, recv_chunk, send_message
from ..vfio_user.constants import Command, HeaderFlags, IrqSetFlags, MsgType
from ..vfio_user.framing import Framer, Message, encode_message
from ..vfio_user.layouts import (
    DEVICE_INFO,
    DMA_ACCESS,
    DMA_MAP,
    DMA_UNMAP,
    IRQ_INFO,
    IRQ_SET,
    REGION_ACCESS,
    REGION_INFO,
    VERSION,
    WRITE_MULTI,
    WRITE_MULTI_ENTRY,
    DeviceInfo,
    IrqInfo,
    RegionInfo,
)
from .memory import GuestMemory

__all__ = ["VfioUserClient", "QEMU_CAPS"]

# What QEMU 11.1 offers in its VERSION request.
QEMU_CAPS = {
    "pgsizes": 4096,
    "max_msg_fds": 16,
    "max_dma_maps": 65535,
    "max_data_xfer_size": 1048576,
    "migration": {"max_bitmap_size": 268435456, "pgsize": 4096},
    "write_multiple": True,
}


class VfioUserClient:
    def __init__(self, sock: socket.socket, memory: GuestMemory | None = None, timeout: float = 5.0) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self.memory = memory
        self.framer = Framer()
        self._next_id = 0
        self._replies: dict[int, Message] = {}
        self.server_caps: dict[str, object] = {}
        self.dma_requests_served = 0

    @classmethod
    def connect(cls, path: str, memory: GuestMemory | None = None, timeout: float = 5.0) -> VfioUserClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return cls(sock, memory, timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> VfioUserClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- raw messages ----------------------------------------------------------------------

    def send(self, command: int, payload: bytes = b"", fds: Sequence[int] = (), flags: int = 0) -> int:
        msg_id = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFF
        send_message(self.sock, encode_message(msg_id, command, MsgType.COMMAND | flags, payload), list(fds))
        return msg_id

    def send_raw(self, data: bytes, fds: Sequence[int] = ()) -> None:
        send_message(self.sock, data, list(fds))

    def _pump(self) -> None:
        chunk = recv_chunk(self.sock, block=True)
        if chunk is None:
            return
        data, received = chunk
        if not data:
            close_fds(received)
            raise TransportError("server closed the connection")
        self.framer.receive(data, received)
        while (msg := self.framer.next_message()) is not None:
            if msg.is_reply:
                self._replies[msg.msg_id] = msg
            else:
                self._serve(msg)

    def _serve(self, msg: Message) -> None:
        """Answer a server request the way QEMU does (DMA through the given memory)."""
        self.dma_requests_served += 1
        close_fds(msg.fds)
        err = 0
        body = b""
        if msg.command in (Command.DMA_READ, Command.DMA_WRITE) and len(msg.payload) >= DMA_ACCESS.size:
            addr, count = DMA_ACCESS.struct.unpack_from(msg.payload)
            if self.memory is None or not self.memory.contains(addr, count):
                err = errno.EFAULT
            elif msg.command == Command.DMA_READ:
                body = msg.payload[:16] + self.memory.read(addr, count)
            else:
                data = msg.payload[16:]
                if len(data) != count:
                    err = errno.EINVAL
                else:
                    self.memory.write(addr, data)
                    body = msg.payload[:16]
        else:
            err = errno.ENOSYS  # as QEMU answers
        if msg.flags & HeaderFlags.NO_REPLY:
            return
        flags = MsgType.REPLY | (HeaderFlags.ERROR if err else 0)
        send_message(self.sock, encode_message(msg.msg_id, msg.command, flags, b"" if err else body, err))

    def wait_reply(self, msg_id: int) -> Message:
        while msg_id not in self._replies:
            self._pump()
        reply = self._replies.pop(msg_id)
        if reply.flags & HeaderFlags.ERROR:
            close_fds(reply.fds)
            raise ErrorReply(reply.error, reply.command, msg_id)
        return reply

    def request(self, command: int, payload: bytes = b"", fds: Sequence[int] = ()) -> Message:
        return self.wait_reply(self.send(command, payload, fds))

    def serve_pending(self, timeout: float = 0.0) -> None:
        """Serve server requests that are already waiting (DMA) without sending anything."""
        if select.select([self.sock], [], [], timeout)[0]:
            self._pump()

    # --- commands --------------------------------------------------------------------------

    def negotiate(self, caps: dict[str, object] | None = None) -> dict[str, object]:
        text = json.dumps({"capabilities": QEMU_CAPS if caps is None else caps}).encode() + b"\0"
        reply = self.request(Command.VERSION, VERSION.pack(0, 0) + text)
        major, minor = VERSION.struct.unpack_from(reply.payload)
        assert (major, minor) == (0, 0), (major, minor)
        doc = json.loads(reply.payload[4:].rstrip(b"\0"))
        self.server_caps = doc.get("capabilities", {})
        return self.server_caps

    def dma_map(self, iova: int, size: int, flags: int = 3, fd: int | None = None, offset: int = 0) -> None:
        body = DMA_MAP.pack(DMA_MAP.size, flags, offset, iova, size)
        self.request(Command.DMA_MAP, body, [fd] if fd is not None else [])

    def map_memory(self, memory: GuestMemory, flags: int = 3) -> None:
        fd = memory.dup_fd()
        try:
            self.dma_map(memory.base, memory.size, flags, fd)
        finally:
            os.close(fd)

    def dma_unmap(self, iova: int, size: int, flags: int = 0) -> bytes:
        return self.request(Command.DMA_UNMAP, DMA_UNMAP.pack(DMA_UNMAP.size, flags, iova, size)).payload

    def device_info(self) -> DeviceInfo:
        return DEVICE_INFO.unpack_from(self.request(Command.DEVICE_GET_INFO, DEVICE_INFO.pack(16, 0, 0, 0)).payload)

    def region_info(self, index: int, argsz: int = 32) -> tuple[RegionInfo, bytes, list[int]]:
        """The fixed part, the capability bytes that fitted, and any fd."""
        reply = self.request(Command.DEVICE_GET_REGION_INFO, REGION_INFO.pack(argsz, 0, index, 0, 0, 0))
        return REGION_INFO.unpack_from(reply.payload), reply.payload[32:], reply.fds

    def irq_info(self, index: int) -> IrqInfo:
        return IRQ_INFO.unpack_from(self.request(Command.DEVICE_GET_IRQ_INFO, IRQ_INFO.pack(16, 0, index, 0)).payload)

    def set_irqs(
        self, index: int, flags: int, start: int = 0, count: int = 1, fds: Sequence[int] = (), data: bytes = b""
    ) -> None:
        body = IRQ_SET.pack(IRQ_SET.size + len(data), flags, index, start, count) + data
        self.request(Command.DEVICE_SET_IRQS, body, fds)

    def set_irq_eventfds(self, index: int, fds: Sequence[int], start: int = 0) -> None:
        self.set_irqs(index, IrqSetFlags.DATA_EVENTFD | IrqSetFlags.ACTION_TRIGGER, start, len(fds), fds)

    def region_read(self, region: int, offset: int, count: int) -> bytes:
        reply = self.request(Command.REGION_READ, REGION_ACCESS.pack(offset, region, count))
        return reply.payload[16:]

    def region_write(self, region: int, offset: int, data: bytes, posted: bool = False) -> None:
        payload = REGION_ACCESS.pack(offset, region, len(data)) + data
        if posted:
            self.send(Command.REGION_WRITE, payload, flags=HeaderFlags.NO_REPLY)
        else:
            self.request(Command.REGION_WRITE, payload)

    def write_multi(self, writes: Sequence[tuple[int, int, bytes]]) -> None:
        """Posted REGION_WRITE_MULTI of (region, offset, data ≤ 8 bytes) entries, as QEMU sends."""
        parts = [WRITE_MULTI.pack(len(writes))]
        for region, offset, data in writes:
            value = int.from_bytes(data.ljust(8, b"\0"), "little")
            parts.append(WRITE_MULTI_ENTRY.pack(offset, region, len(data), value))
        self.send(Command.REGION_WRITE_MULTI, b"".join(parts), flags=HeaderFlags.NO_REPLY)

    def read32(self, region: int, offset: int) -> int:
        return int.from_bytes(self.region_read(region, offset, 4), "little")

    def read64(self, region: int, offset: int) -> int:
        return int.from_bytes(self.region_read(region, offset, 8), "little")

    def write32(self, region: int, offset: int, value: int, posted: bool = False) -> None:
        self.region_write(region, offset, value.to_bytes(4, "little"), posted)

    def write64(self, region: int, offset: int, value: int, posted: bool = False) -> None:
        self.region_write(region, offset, value.to_bytes(8, "little"), posted)

    def reset(self) -> None:
        self.request(Command.DEVICE_RESET)
