"""BAR0 as the compiled accelerator serves it (``struct dm_gen_bar0``, accel/dm_accel.h): the
register file's storage, its per-dword map and write classes (devmodel/device/registers.py,
built from the register table, mmio/table.py), the MMIO and GGTT layout of mmio/regs.py, and
the GGTT (gtt/ggtt_accel.py). C takes the accesses :class:`~.bar0.Bar0` serves without hooks:
plain registers, declared registers without handlers (read-only, masked, write-1-to-clear,
partly writable: as the table's rows say), reads of registers whose read value is their
storage (a handler for writes only, or a published read: the table's ``published`` rows),
writes of the interrupt registers whose behaviour C runs too (the ``compiled`` rows, as long
as the interrupt line does not change) and GGTT entries; everything else (a read or write a
handler serves) comes back to Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devmodel.accel import Accel
from devmodel.device.registers import CLASS_BASE, MAX_CLASSES, PLAIN_TOLD_LATER, READ_STORAGE

from .aperture import FENCE_VALID, Aperture
from .bar0 import Bar0
from .engine.blit_accel import BlitAccel
from .gtt.ggtt_accel import GgttAccel
from .interrupts import EFFECT_MASTER, EFFECT_REEVALUATE, MASTER_IRQ_ENABLE, MAX_STATUS_BANKS, Interrupts
from .mmio import regs

__all__ = ["Bar0Accel"]


class Bar0Accel:
    """A :class:`devmodel.accel.RegionAccel` for BAR0."""

    def __init__(self, accel: Accel, bar0: Bar0, index: int, size: int) -> None:
        ffi, lib = accel.ffi, accel.lib
        self._ffi = ffi
        self.index = index
        self.aperture: tuple[int, Any] | None = None  # serve_aperture
        self._blit: BlitAccel | None = None
        self._frames_table: Any = None  # the blitter's window table _frames points into
        self._need_sync = lib.DM_NEED_SYNC
        self._need_code = lib.DM_NEED_CODE
        self._need_room = lib.DM_NEED_ROOM
        rf = bar0.registers
        if rf.size != regs.MMIO_SIZE:
            raise ValueError(f"register file of {rf.size:#x} bytes, BAR0 has {regs.MMIO_SIZE:#x} of registers")
        self.ggtt = GgttAccel(accel, bar0.ggtt)
        self._registers = rf
        # Bar0.read / Bar0.write of an accepted dword below the GGTT: the register file's
        self.read_dword: Callable[[int], int] = rf.read32
        self.write_dword: Callable[[int, int], None] = rf.write32
        # The last stay in C wrote GGTT entries: load its counts before the next one, so that
        # a stream of GGTT writes does not come back to Python once per read to load them.
        self._ggtt_busy = False
        b = self.ptr = ffi.new("struct dm_gen_bar0 *")
        # The storage's bytearray, not its memoryview: a memoryview exported to cffi and freed
        # in a garbage cycle is released twice (CPython's memory_clear drops its buffer while
        # the export is live), a segfault when a traceback holds the device.
        self._buffers = [
            ffi.from_buffer(rf.storage.obj),
            ffi.from_buffer(rf.plain),
            ffi.from_buffer(rf.classes),
            ffi.from_buffer(rf.timed),
            ffi.from_buffer(rf.until),
        ]
        b.regs = ffi.cast("uint8_t *", self._buffers[0])
        b.plain = ffi.cast("uint8_t *", self._buffers[1])
        b.classes = ffi.cast("struct dm_reg_class *", self._buffers[2])
        b.timed = ffi.cast("uint8_t *", self._buffers[3])
        b.until_ns = ffi.cast("int64_t *", self._buffers[4])
        b.class_base = CLASS_BASE
        b.told_later = PLAIN_TOLD_LATER
        b.read_storage = READ_STORAGE
        b.nclasses = MAX_CLASSES  # codes C meets are only those RegisterFile handed out
        b.mmio_size = regs.MMIO_SIZE
        b.ggtt_offset = regs.GGTT_OFFSET
        b.size = size
        b.ggtt = self.ggtt.struct

    def serve_interrupts(self, interrupts: Interrupts) -> None:
        """Let C run the interrupt registers' write effects (their rows are ``compiled``),
        reading the interrupts' shared words; until then those writes are Python's."""
        ffi = self._ffi
        q = self._irq = ffi.new("struct dm_irq *")
        self._irq_shared = ffi.from_buffer(interrupts.shared)
        q.shared = ffi.cast("uint32_t *", self._irq_shared)
        q.max_banks = MAX_STATUS_BANKS
        q.master = regs.GEN8_MASTER_IRQ >> 2
        q.enable = MASTER_IRQ_ENABLE
        q.effect_reevaluate = EFFECT_REEVALUATE
        q.effect_master = EFFECT_MASTER
        self.ptr.irq = q

    def serve_aperture(self, index: int, aperture: Aperture, blit: BlitAccel) -> None:
        """Let C take the aperture's (region ``index``) writes too, reaching its pages through
        the blitter's window table (kept current by prepare)."""
        ffi = self._ffi
        a = self._aperture = ffi.new("struct dm_aperture *")
        self._blit = blit
        self._shadow = ffi.from_buffer(aperture.ggtt.shadow)
        a.size = aperture.size
        a.shadow = ffi.cast("uint64_t *", self._shadow)
        a.scratch_hfn = aperture.ggtt.scratch_hfn
        # Its own copy of the blitter's window table pointer: GGTT pages need no RW bit.
        f = self._frames = ffi.new("struct dm_frames *")
        f.present_bit, f.rw_bit, f.frame_mask = blit.frames.present_bit, blit.frames.rw_bit, blit.frames.frame_mask
        f.need_rw = 0
        a.frames = f
        a.fence_regs = ffi.cast("uint8_t *", self._buffers[0]) + regs.FENCE_REG_BASE
        a.fence_count = regs.FENCE_COUNT
        a.fence_stride = regs.FENCE_REG_STRIDE
        a.valid_bit = FENCE_VALID
        self.aperture = (index, a)

    def prepare(self) -> None:
        if self._ggtt_busy and not self.ggtt.struct.synced:
            self.ggtt.sync()
        blit = self._blit
        if blit is not None:
            blit.load_windows()
            # Copied only when rebuilt: this runs before every message Python handles too.
            if blit.table is not self._frames_table:
                f, b = self._frames, blit.frames
                f.windows, f.nwindows = b.windows, b.nwindows
                self._frames_table = blit.table

    def resolve(self, status: int) -> None:
        if status == self._need_sync:
            self._ggtt_busy = True
            self.ggtt.sync()
        elif status == self._need_code:
            self.ggtt.give_code()
        elif status == self._need_room:
            self._tell_unlisted()
            if self.ggtt.struct.synced:
                self.ggtt.settle()
                self.ggtt.sync()
        else:
            raise ValueError(f"not a status BAR0 resolves: {status}")

    def settle(self) -> None:
        if self.ptr.nunlisted:
            self._tell_unlisted()
        g = self.ggtt.struct
        if g.synced:
            self._ggtt_busy = g.writes > 0
            self.ggtt.settle()

    def _tell_unlisted(self) -> None:
        """Replay to the unlisted hook, in order, the accesses C made to unlisted registers."""
        b = self.ptr
        hook = self._registers.on_unlisted
        logged = b.unlisted[0 : b.nunlisted]
        b.nunlisted = 0
        if hook is not None:
            for entry in logged:
                hook(entry & ~3, bool(entry & 1))
