"""The virtual DisplayPort monitor as its AUX channel sees it (contract §6.6-§6.8): native
DPCD reads and writes, link-training status that succeeds at once, and the EDID over
I2C-over-AUX at address 0x50 with the segment pointer at 0x30."""

from __future__ import annotations

from dataclasses import dataclass, field

from .edid import EDID_BLOCK, make_edid

__all__ = ["Monitor", "AuxReply", "AUX_ACK", "AUX_I2C_NACK"]

NATIVE_WRITE, NATIVE_READ = 0x8, 0x9
I2C_WRITE, I2C_READ, I2C_WRITE_STATUS_UPDATE = 0x0, 0x1, 0x2
I2C_MOT = 0x4

AUX_ACK = 0x00
AUX_NATIVE_NACK = 0x10
AUX_I2C_NACK = 0x40

EDID_ADDR = 0x50
SEGMENT_ADDR = 0x30
DPCD_SIZE = 0x800
DP_TRAINING_PATTERN_SET = 0x102
DP_LANE0_1_STATUS = 0x202
DP_SET_POWER = 0x600

# Receiver capabilities: DPCD 1.2, 5.4 Gbps, 4 lanes with enhanced framing, 8b/10b.
_CAPS = {0x000: 0x12, 0x001: 0x14, 0x002: 0x84, 0x006: 0x01}


@dataclass
class AuxReply:
    """None for "no sink answered" (the channel's time-out), else the reply bytes."""

    data: bytes | None


@dataclass
class Monitor:
    edid: bytes = field(default_factory=make_edid)
    connected: bool = True
    dpcd: bytearray = field(default_factory=lambda: bytearray(DPCD_SIZE))
    # I2C state: the segment pointer and the EDID offset.
    segment: int = 0
    offset: int = 0
    counters: dict[str, int] = field(default_factory=lambda: {"native": 0, "i2c": 0, "trainings": 0})

    def __post_init__(self) -> None:
        self.power_on()

    def power_on(self) -> None:
        self.dpcd[:] = bytes(DPCD_SIZE)
        for addr, value in _CAPS.items():
            self.dpcd[addr] = value
        self.dpcd[0x200] = 0x01  # SINK_COUNT: one sink, so the port is connected
        self.segment = self.offset = 0

    def transfer(self, request: bytes) -> AuxReply:
        """One AUX request (header and data) to the sink; its reply, or None when there is
        no sink (the monitor is unplugged)."""
        if not self.connected or len(request) < 3:
            return AuxReply(None)
        cmd = request[0] >> 4
        addr = (request[0] & 0xF) << 16 | request[1] << 8 | request[2]
        length = request[3] + 1 if len(request) > 3 else 0
        if cmd & 0x8:
            self.counters["native"] += 1
            if len(request) < 4:
                return AuxReply(bytes((AUX_NATIVE_NACK,)))
            if cmd == NATIVE_READ:
                return AuxReply(bytes((AUX_ACK,)) + self._dpcd_read(addr, min(length, 16)))
            if cmd == NATIVE_WRITE:
                self._dpcd_write(addr, request[4 : 4 + length])
                return AuxReply(bytes((AUX_ACK,)))
            return AuxReply(bytes((AUX_NATIVE_NACK,)))
        self.counters["i2c"] += 1
        return AuxReply(self._i2c(cmd, addr, length, request[4:]))

    # --- DPCD -------------------------------------------------------------------------------

    def _dpcd_read(self, addr: int, n: int) -> bytes:
        out = bytearray(n)
        for i in range(n):
            a = addr + i
            if a < DPCD_SIZE:
                out[i] = self.dpcd[a]
        return bytes(out)

    def _dpcd_write(self, addr: int, data: bytes) -> None:
        for i, value in enumerate(data):
            if addr + i < DPCD_SIZE:
                self.dpcd[addr + i] = value
        if addr <= DP_TRAINING_PATTERN_SET < addr + len(data):
            self._training(self.dpcd[DP_TRAINING_PATTERN_SET] & 0xF)

    def _training(self, pattern: int) -> None:
        """Link status as a sink whose clock recovery and equalisation succeed at once."""
        status = self.dpcd
        if pattern == 1:
            self.counters["trainings"] += 1
            status[0x202:0x208] = bytes((0x11, 0x11, 0x00, 0x00, 0x00, 0x00))
        elif pattern in (2, 3, 7):
            status[0x202:0x205] = bytes((0x77, 0x77, 0x01))
        elif pattern == 0:
            status[0x205] = 0x01

    # --- I2C over AUX -----------------------------------------------------------------------

    def _i2c(self, cmd: int, addr: int, length: int, data: bytes) -> bytes:
        mot = bool(cmd & I2C_MOT)
        op = cmd & 0x3
        if addr not in (EDID_ADDR, SEGMENT_ADDR):
            return bytes((AUX_I2C_NACK,))
        if not length:  # address only: a start (with MOT) or a stop
            if not mot:
                self.segment = 0
            return bytes((AUX_ACK,))
        if op in (I2C_WRITE, I2C_WRITE_STATUS_UPDATE):
            if data:
                if addr == SEGMENT_ADDR:
                    self.segment = data[0]
                else:
                    self.offset = data[0]
            return bytes((AUX_ACK,))
        if op == I2C_READ and addr == EDID_ADDR:
            base = self.segment * 2 * EDID_BLOCK + self.offset
            n = min(length, 16)
            chunk = self.edid[base : base + n]
            self.offset = (self.offset + n) & 0xFF
            return bytes((AUX_ACK,)) + chunk + b"\xff" * (n - len(chunk))
        return bytes((AUX_I2C_NACK,))
