"""The vGPU's display (contract §6): one DisplayPort monitor on DDI B (BDW) or DDI D (SKL).

Everything i915 programs and reads back is plain storage (its state checker compares every
field it wrote). The registers that are live are rows of the register table
(mmio/display_regs.py); this is their behaviour: lock and idle bits that follow their enables,
the AUX channels, the pipes' frame clock (PIPEDSL, PIPE_FRMCOUNT and the vblank interrupt),
the arming plane registers and hotplug.

**Frame clock.** A pipe's vblanks fall at t0 + n*T from the time its transcoder was enabled.
They are processed lazily: before PIPEDSL, PIPE_FRMCOUNT or an interrupt register is
answered, every vblank that is due is processed (the counter, plane latching, the vblank
interrupt where unmasked). A timer runs only while a pipe is on and its vblank interrupt is
unmasked (someone waits for it); with every pipe off, nothing runs. While a pipe is on, the
master interrupt register's and the display IIRs' reads process the due vblanks first; before
the next vblank is due there is nothing to process, so the display opens the interrupts' read
gate until then (:meth:`_tell_interrupts`, after every catch-up) and the compiled path answers
those reads from storage; a read after it runs in Python, catches up and opens the gate until
the following one. With a clock other than time.monotonic (a test's), which the compiled path
cannot read, the gate stays closed while a pipe runs; with every pipe off they read storage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devmodel.device.registers import RegisterBlock, RegisterFile
from devmodel.device.tasks import TaskQueue, Timer

from ..interrupts import BANK_IER, BANK_IMR, Interrupts
from ..mmio import display_regs as r
from ..mmio import gt
from ..mmio.row import Hooks
from ..platform import Platform
from .monitor import Monitor

__all__ = ["Display", "DisplayConfig", "PlaneState", "PORT_OF_PLATFORM"]

log = logging.getLogger(__name__)

PORT_B, PORT_D = 1, 3
PORT_OF_PLATFORM = {Platform.BDW: PORT_B, Platform.SKL: PORT_D}
DEFAULT_REFRESH = 60.0

# Registers a plane latches at vblank, relative to its control register.
_PLANE_LATCHED = (0x0, 0x8, 0xC, 0x10, 0x1C, 0x24)  # CTL, STRIDE, POS, SIZE, SURF, OFFSET
_CURSOR_LATCHED = (0x0, 0x4, 0x8, 0x20)  # CNTR, BASE, POS, FBC_CTL


@dataclass
class DisplayConfig:
    monitor: Monitor = field(default_factory=Monitor)
    rom: bytes | None = None  # the expansion ROM with the VBT, or None


@dataclass
class PlaneState:
    """A plane's registers as the hardware scans them out (the live copy)."""

    base: int  # its control register
    cursor: bool = False
    live: dict[int, int] = field(default_factory=dict)  # offset from base -> value
    armed: bool = False


@dataclass
class _Pipe:
    index: int
    on: bool = False
    t0: float = 0.0  # the enable time
    period: float = 1.0 / DEFAULT_REFRESH
    vtotal: int = 1
    vblank_start: int = 0
    frames: int = 0  # vblanks processed since enable (the frame counter's increments)
    frame_count: int = 0  # PIPE_FRMCOUNT
    timer: Timer | None = None
    planes: list[PlaneState] = field(default_factory=list)


@dataclass
class DisplayCounters:
    vblanks: int = 0
    vblank_irqs: int = 0
    flips: int = 0
    aux_transfers: int = 0
    aux_timeouts: int = 0
    hotplugs: int = 0
    timers: int = 0
    crcs: int = 0


class Display(RegisterBlock):
    def __init__(self, platform: Platform, tasks: TaskQueue, interrupts: Interrupts, config: DisplayConfig) -> None:
        self.platform = platform
        self.key = platform.value
        self.tasks = tasks
        self.clock = tasks.timers.clock
        self.interrupts = interrupts
        self.monitor = config.monitor
        self.rom = config.rom
        self.port = PORT_OF_PLATFORM[platform]
        self.counters = DisplayCounters()
        self.pipes = [_Pipe(p) for p in range(r.PIPES)]
        for pipe in self.pipes:
            pipe.planes = [
                PlaneState(base, cursor=name.startswith("CUR")) for base, name in r.planes(platform, pipe.index)
            ]
        # The channel the monitor answers on: AUX B on BDW, the port's own on SKL.
        self._monitor_aux = r.aux_channels(platform)[self.port if platform is Platform.SKL else 1]
        self._delivery_queued = False
        self.on_frame: list[Callable[[int], None]] = []  # hears of each processed vblank (pipe)
        # (pipe, PIPE_CRC_CTL) -> the CRC of the source's picture (crc.py, set by DisplayParts)
        self.frame_crc: Callable[[int, int], int] | None = None

    # --- the table's handlers (mmio/display_regs.py) ----------------------------------------

    def hooks(self) -> dict[str, Hooks]:
        """The handlers of this platform's display rows."""
        out = {
            "ddi_buf": Hooks(write=self._write_ddi_buf),
            "dp_tp_status": Hooks(read=self._read_tp_status),
            "aux": Hooks(write=self._write_aux),
            "transconf": Hooks(write=self._write_transconf),
            "pipedsl": Hooks(read=self._read_pipedsl),
            "frmcount": Hooks(read=self._read_frmcount),
            "plane_surf": Hooks(write=self._write_surf),
            "plane_surflive": Hooks(read=self._read_surflive),
            "pipe_crc_ctl": Hooks(write=self._write_crc_ctl),
        }
        if self.platform is Platform.BDW:
            out["lcpll"] = Hooks(write=self._write_lcpll)
            out["sbi"] = Hooks(write=self._write_sbi)
        else:
            out["dbuf"] = Hooks(write=self._write_follow(r.DBUF_POWER_REQUEST, r.DBUF_POWER_STATE))
            out["dpll_status"] = Hooks(read=self._read_dpll_status)
            out["dpll_enable"] = Hooks(write=self._write_follow(r.SKL_PLL_ENABLE, r.SKL_PLL_LOCK))
        return out

    def attach(self, rf: RegisterFile) -> None:
        """After the table's rows are in ``rf``: the DE and south banks report through the
        master register, and the interrupts tell the display of status reads and mask changes."""
        super().attach(rf)
        ints = self.interrupts
        for p in range(r.PIPES):
            ints.add_status_bank(r.DE_PIPE_BANK + 0x10 * p, r.MASTER_DE_PIPE_SHIFT + p)
        ints.add_status_bank(r.DE_PORT_BANK, r.MASTER_DE_PORT)
        ints.add_status_bank(r.DE_MISC_BANK, r.MASTER_DE_MISC)
        ints.add_status_bank(r.SDE_BANK, r.MASTER_DE_PCH)
        ints.before_status = self.catch_up
        ints.on_mask_change = self._on_mask_change
        self._set_live_status()

    def reset(self) -> None:
        """After the register file's reset: every pipe off, the monitor's live status again."""
        self._delivery_queued = False  # the reset cancelled the task
        for pipe in self.pipes:
            self._stop(pipe)
            pipe.frame_count = 0
            for plane in pipe.planes:
                plane.live.clear()
                plane.armed = False
        self.monitor.power_on()
        self._set_live_status()

    # --- straps, clocks, DDI ---------------------------------------------------------------

    def _write_follow(self, request: int, state: int) -> Callable[[int, int, int], None]:
        def write(offset: int, old: int, new: int) -> None:
            self.rf.set(offset, (new & ~state) | (state if new & request else 0))

        return write

    def _write_lcpll(self, offset: int, old: int, new: int) -> None:
        value = new & ~(gt.LCPLL_PLL_LOCK | r.LCPLL_CD_SOURCE_FCLK_DONE)
        if not new & gt.LCPLL_PLL_DISABLE:
            value |= gt.LCPLL_PLL_LOCK
        if new & gt.LCPLL_CD_SOURCE_FCLK:
            value |= r.LCPLL_CD_SOURCE_FCLK_DONE
        self.rf.set(offset, value)

    def _write_sbi(self, offset: int, old: int, new: int) -> None:
        # The sideband transaction completes before the guest's first poll, with success.
        self.rf.set(offset, new & ~(r.SBI_BUSY | r.SBI_RESPONSE_MASK))

    def _read_dpll_status(self, offset: int) -> int:
        value = 0
        for i, enable in enumerate(r.SKL_DPLL_ENABLE):
            if self.rf.get(enable) & r.SKL_PLL_ENABLE:
                value |= 1 << (8 * i)
        return value

    def _write_ddi_buf(self, offset: int, old: int, new: int) -> None:
        idle = 0 if new & r.DDI_BUF_CTL_ENABLE else r.DDI_BUF_IS_IDLE
        self.rf.set(offset, (new & ~r.DDI_BUF_IS_IDLE) | idle)

    def _read_tp_status(self, offset: int) -> int:
        ctl = self.rf.get(offset - 4)
        value = 0
        if ctl & r.DP_TP_CTL_ENABLE and ctl & r.DP_TP_CTL_LINK_TRAIN_MASK == r.DP_TP_CTL_LINK_TRAIN_IDLE:
            value |= r.DP_TP_STATUS_IDLE_DONE
        if ctl & r.DP_TP_CTL_FORCE_ACT:
            value |= r.DP_TP_STATUS_ACT_SENT
        return value

    # --- AUX -------------------------------------------------------------------------------

    def _write_aux(self, offset: int, old: int, new: int) -> None:
        if not new & r.AUX_SEND_BUSY:
            return
        size = (new & r.AUX_SIZE_MASK) >> r.AUX_SIZE_SHIFT
        data = offset + 4  # DATA1-5 follow CTL
        rf = self.rf
        request = b"".join(rf.get(data + 4 * i).to_bytes(4, "big") for i in range(5))[: min(size, r.AUX_DATA_BYTES)]
        self.counters.aux_transfers += 1
        reply = None
        if offset == self._monitor_aux:
            reply = self.monitor.transfer(request).data
        status = new & ~(r.AUX_SEND_BUSY | r.AUX_SIZE_MASK | r.AUX_STATUS) | r.AUX_DONE
        if reply is None:
            self.counters.aux_timeouts += 1
            rf.set(offset, status | r.AUX_TIME_OUT_ERROR)
            return
        padded = reply + bytes(-len(reply) % 4)
        for i in range(0, len(padded), 4):
            rf.set(data + i, int.from_bytes(padded[i : i + 4], "big"))
        rf.set(offset, status | len(reply) << r.AUX_SIZE_SHIFT)

    # --- hotplug ---------------------------------------------------------------------------

    def _set_live_status(self) -> None:
        sde_isr = r.SDE_BANK
        bit = r.SDE_HOTPLUG[self.key]
        value = self.rf.get(sde_isr)
        self.rf.set(sde_isr, value | bit if self.monitor.connected else value & ~bit)

    def hotplug(self, connected: bool | None = None, edid: bytes | None = None) -> None:
        """The monitor was plugged or unplugged, or its EDID replaced (a long pulse)."""
        if edid is not None:
            self.monitor.edid = edid
        if connected is not None:
            self.monitor.connected = connected
        self.counters.hotplugs += 1
        self.monitor.power_on()
        self._set_live_status()
        rf = self.rf
        status = r.HOTPLUG_LONG_PULSE << r.HOTPLUG_STATUS_SHIFT[self.key]
        rf.set(r.PCH_PORT_HOTPLUG, rf.get(r.PCH_PORT_HOTPLUG) | status)
        self.interrupts.fire_bank(r.SDE_BANK, r.SDE_HOTPLUG[self.key])

    # --- pipes and the frame clock ---------------------------------------------------------

    def _pipe_of(self, offset: int) -> _Pipe:
        return self.pipes[((offset >> 12) & 0xF) % r.PIPES]

    def _write_transconf(self, offset: int, old: int, new: int) -> None:
        on = bool(new & r.TRANSCONF_ENABLE)
        self.rf.set(offset, (new & ~r.TRANSCONF_STATE) | (r.TRANSCONF_STATE if on else 0))
        pipe = self._pipe_of(offset)
        if on and not pipe.on:
            self._start(pipe)
        elif not on and pipe.on:
            self.catch_up()
            self._stop(pipe)
            for plane in pipe.planes:  # nothing latches any more: armed values apply at once
                if plane.armed:
                    self._latch(plane)

    def _start(self, pipe: _Pipe) -> None:
        rf = self.rf
        p = pipe.index
        vtotal = (rf.get(r.pipe_reg(r.VTOTAL, p)) >> 16) + 1
        htotal = (rf.get(r.pipe_reg(r.HTOTAL, p)) >> 16) + 1
        pixel_khz = self._pixel_clock_khz(p)
        refresh = pixel_khz * 1000 / (htotal * vtotal) if pixel_khz and htotal > 1 and vtotal > 1 else 0.0
        if not 1.0 <= refresh <= 1000.0:
            refresh = DEFAULT_REFRESH
        pipe.on = True
        pipe.t0 = self.clock()
        pipe.period = 1.0 / refresh
        pipe.vtotal = max(vtotal, 1)
        pipe.vblank_start = min((rf.get(r.pipe_reg(r.VBLANK, p)) & 0xFFFF) + 1, pipe.vtotal - 1)
        pipe.frames = 0
        log.info("pipe %s on: %.3f Hz, %d lines", "ABC"[p], refresh, pipe.vtotal)
        self._tell_interrupts()
        self._update_timer(pipe)

    def _stop(self, pipe: _Pipe) -> None:
        pipe.on = False
        if pipe.timer is not None:
            pipe.timer.cancel()
            pipe.timer = None
        self._tell_interrupts()

    def _tell_interrupts(self) -> None:
        """Whether a status read has vblanks to process first, and from when: the earliest next
        vblank of the pipes that run (on time.monotonic's clock only: the compiled path reads
        that clock)."""
        lit = [p for p in self.pipes if p.on]
        until = None
        if lit and self.clock is time.monotonic:
            until = min(p.t0 + (p.frames + 1) * p.period for p in lit)
        self.interrupts.status_catch_up(bool(lit), until)

    def _pixel_clock_khz(self, p: int) -> int:
        """The transcoder's pixel clock: its port's link clock x LINK_M1 / LINK_N1."""
        rf = self.rf
        func = rf.get(r.pipe_reg(r.TRANS_DDI_FUNC_CTL, p))
        port = (func >> r.TRANS_DDI_PORT_SHIFT) & 7
        if self.platform is Platform.BDW:
            sel = rf.get(r.PORT_CLK_SEL_BASE + 4 * port) >> r.PORT_CLK_SEL_SHIFT if port < r.PORTS else 7
            port_khz = r.BDW_PORT_CLOCK_KHZ.get(sel, 0)
        else:
            ctrl2 = rf.get(r.DPLL_CTRL2)
            dpll = (ctrl2 >> (3 * port + 1)) & 3
            port_khz = r.SKL_LINK_RATE_KHZ.get((rf.get(r.DPLL_CTRL1) >> (6 * dpll + 1)) & 7, 0)
        m = rf.get(r.pipe_reg(r.LINK_M1, p)) & 0xFFFFFF
        n = rf.get(r.pipe_reg(r.LINK_N1, p)) & 0xFFFFFF
        return port_khz * m // n if n else 0

    def catch_up(self) -> None:
        """Process every vblank that is due on every pipe (before a register read is answered:
        the interrupt is raised after the reply)."""
        now = self.clock()
        for pipe in self.pipes:
            if pipe.on:
                self._advance(pipe, now, in_read=True)

    def _deliver_later(self) -> None:
        if not self._delivery_queued:
            self._delivery_queued = True
            self.tasks.call_soon(self._deliver, uses_guest_memory=False, name="display-irq")

    def _deliver(self) -> None:
        self._delivery_queued = False
        self.interrupts.deliver()

    def _advance(self, pipe: _Pipe, now: float, in_read: bool = False) -> None:
        """Process the vblanks due on ``pipe``. ``in_read``: a guest read waits for its reply;
        the vblank interrupt is raised after it (QEMU's vCPU holds its lock while it waits,
        and an interrupt that arrives then stalls the reply until QEMU's message timeout)."""
        due = math.floor((now - pipe.t0) / pipe.period) - pipe.frames
        if due <= 0:
            return
        pipe.frames += due
        pipe.frame_count = (pipe.frame_count + due) & 0xFFFFFFFF
        self.counters.vblanks += due
        for plane in pipe.planes:
            if plane.armed:
                self._latch(plane)
        for hear in self.on_frame:
            hear(pipe.index)
        bank = r.DE_PIPE_BANK + 0x10 * pipe.index
        events = r.DE_PIPE_VBLANK
        if self._crc(pipe):
            events |= r.DE_PIPE_CRC_DONE
        events &= ~self.rf.get(bank + BANK_IMR)
        if events:
            self.counters.vblank_irqs += bool(events & r.DE_PIPE_VBLANK)
            self.interrupts.fire_bank(bank, events, deliver=not in_read)
            if in_read:
                self._deliver_later()
        self._tell_interrupts()

    def _crc(self, pipe: _Pipe) -> bool:
        """At a vblank: the CRC of the picture just latched into PIPE_CRC_RES_1, if enabled.
        Vblanks processed together give one CRC, of the picture now (the last frame's)."""
        ctl = self.rf.get(r.pipe_reg(r.PIPE_CRC_CTL, pipe.index))
        if not ctl & r.PIPE_CRC_ENABLE or self.frame_crc is None:
            return False
        self.counters.crcs += 1
        self.rf.set(r.pipe_reg(r.PIPE_CRC_RES_1, pipe.index), self.frame_crc(pipe.index, ctl))
        return True

    def _write_crc_ctl(self, offset: int, old: int, new: int) -> None:
        # A CRC-done interrupt is due at each vblank while enabled: the timer follows.
        pipe = self._pipe_of(offset)
        if pipe.on:
            self._advance(pipe, self.clock())
        self._update_timer(pipe)

    def _line(self, pipe: _Pipe, now: float) -> int:
        since = now - (pipe.t0 + pipe.frames * pipe.period)
        line_time = pipe.period / pipe.vtotal
        return (pipe.vblank_start + int(since / line_time)) % pipe.vtotal

    def _read_pipedsl(self, offset: int) -> int:
        pipe = self._pipe_of(offset)
        if not pipe.on:
            return 0
        now = self.clock()
        self._advance(pipe, now, in_read=True)
        return self._line(pipe, now)

    def _read_frmcount(self, offset: int) -> int:
        pipe = self._pipe_of(offset)
        if pipe.on:
            self._advance(pipe, self.clock(), in_read=True)
        return pipe.frame_count

    def _wants_timer(self, pipe: _Pipe) -> bool:
        bank = r.DE_PIPE_BANK + 0x10 * pipe.index
        rf = self.rf
        events = r.DE_PIPE_VBLANK
        if rf.get(r.pipe_reg(r.PIPE_CRC_CTL, pipe.index)) & r.PIPE_CRC_ENABLE:
            events |= r.DE_PIPE_CRC_DONE
        return pipe.on and bool(~rf.get(bank + BANK_IMR) & rf.get(bank + BANK_IER) & events)

    def _update_timer(self, pipe: _Pipe) -> None:
        if not self._wants_timer(pipe):
            if pipe.timer is not None:
                pipe.timer.cancel()
                pipe.timer = None
            return
        if pipe.timer is not None:
            return
        when = pipe.t0 + (pipe.frames + 1) * pipe.period
        pipe.timer = self.tasks.call_at(when, lambda: self._on_timer(pipe), uses_guest_memory=False)

    def _on_timer(self, pipe: _Pipe) -> None:
        pipe.timer = None
        self.counters.timers += 1
        if pipe.on:
            self._advance(pipe, self.clock())
        self._update_timer(pipe)

    def _on_mask_change(self, bank: int) -> None:
        for pipe in self.pipes:
            if bank == r.DE_PIPE_BANK + 0x10 * pipe.index:
                if pipe.on:
                    self._advance(pipe, self.clock())
                self._update_timer(pipe)

    # --- planes ----------------------------------------------------------------------------

    def _plane_at(self, offset: int) -> PlaneState:
        pipe = self._pipe_of(offset)
        for plane in pipe.planes:
            if plane.base <= offset < plane.base + (0x30 if plane.cursor else 0x100):
                return plane
        raise AssertionError(f"no plane at {offset:#x}")

    def _write_surf(self, offset: int, old: int, new: int) -> None:
        pipe = self._pipe_of(offset)
        plane = self._plane_at(offset)
        self.counters.flips += 1
        if pipe.on:
            self._advance(pipe, self.clock())
        ctl = self.rf.get(plane.base)
        if not pipe.on or (not plane.cursor and ctl & r.PLANE_FLIP_ASYNC):
            self._latch(plane)
            if pipe.on and plane is pipe.planes[0]:
                bank = r.DE_PIPE_BANK + 0x10 * pipe.index
                done = r.FLIP_DONE[self.key]
                if not self.rf.get(bank + BANK_IMR) & done:
                    self.interrupts.fire_bank(bank, done)
        else:
            plane.armed = True

    def _latch(self, plane: PlaneState) -> None:
        rf = self.rf
        offsets = _CURSOR_LATCHED if plane.cursor else _PLANE_LATCHED
        plane.live = {o: rf.get(plane.base + o) for o in offsets}
        plane.armed = False

    def _read_surflive(self, offset: int) -> int:
        plane = self._plane_at(offset)
        pipe = self._pipe_of(offset)
        if pipe.on:
            self._advance(pipe, self.clock(), in_read=True)
        arm = r.CURSOR_ARM if plane.cursor else r.PLANE_ARM
        return plane.live.get(arm, 0)

    # --- inspection ------------------------------------------------------------------------

    def lit_pipe(self) -> int | None:
        """The pipe whose transcoder drives the monitor's port, if one is on."""
        for pipe in self.pipes:
            func = self.rf.get(r.pipe_reg(r.TRANS_DDI_FUNC_CTL, pipe.index))
            if pipe.on and func & r.TRANS_DDI_FUNC_ENABLE and (func >> r.TRANS_DDI_PORT_SHIFT) & 7 == self.port:
                return pipe.index
        return None

    def describe(self) -> str:
        on = [f"{'ABC'[p.index]}@{1 / p.period:.2f}Hz frames={p.frame_count}" for p in self.pipes if p.on]
        c = self.counters
        return (
            f"display: monitor {'connected' if self.monitor.connected else 'unplugged'}, pipes on: "
            f"{', '.join(on) or 'none'}; vblanks={c.vblanks} irqs={c.vblank_irqs} flips={c.flips} "
            f"aux={c.aux_transfers} (timeouts {c.aux_timeouts}) hotplugs={c.hotplugs} timers={c.timers} "
            f"crcs={c.crcs}"
        )
