"""A GEN vGPU with guest RAM in a memfd, as the workload tests see it: GGTT-mapped graphics
memory (context images, rings, status pages, GGTT batches), i915-style 4-level and legacy
3-level PPGTT trees built in guest memory, execlist submission through BAR0, and the device's
own task queue driven to idle."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.testing import GuestMemory
from gen_vgpu.device import GenVgpu
from gen_vgpu.engine import context as cx
from gen_vgpu.engine.run import Watchdog
from gen_vgpu.engines import ENGINES, EngineInfo
from gen_vgpu.interrupts import BANK_IER, BANK_IIR, BANK_IMR, MASTER_IRQ_ENABLE, gt_bank
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio import regs
from gen_vgpu.platform import Platform

PAGE = 4096
RAM = 48 << 20
GGTT_GPA = 32 << 20  # graphics addresses [0, 16 MiB) are guest RAM from here, page for page
GGTT_PAGES = 4096
PRESENT, RW = 1 << 0, 1 << 1
RING_SIZE = 4 * PAGE
MI_NOOP = 0


class Guest:
    """Guest RAM and a bump allocator for table and buffer pages below the GGTT's region."""

    def __init__(self, mem: GuestMemory) -> None:
        self.mem = mem
        self.next_page = 1 << 20

    def alloc(self) -> int:
        gpa = self.next_page
        self.next_page += PAGE
        assert gpa < GGTT_GPA
        return gpa

    def q(self, gpa: int) -> int:
        return int.from_bytes(self.mem.read(gpa, 8), "little")

    def set_q(self, gpa: int, value: int) -> None:
        self.mem.write(gpa, value.to_bytes(8, "little"))

    def d(self, gpa: int) -> int:
        return int.from_bytes(self.mem.read(gpa, 4), "little")


class Tree:
    """A guest PPGTT: 4-level (one PML4) or legacy 3-level (four PDP root pointers)."""

    def __init__(self, guest: Guest, levels: int) -> None:
        self.guest = guest
        self.levels = levels
        # 4-level: one PML4; 3-level: four root pointers, each to a page directory.
        self.roots: list[int] = [guest.alloc() for _ in range(1 if levels == 4 else 4)]

    def map(self, gva: int, gpa: int, writable: bool = True) -> None:
        g = self.guest
        shifts: tuple[int, ...] = (39, 30, 21) if self.levels == 4 else (21,)
        table = self.roots[0] if self.levels == 4 else self.roots[gva >> 30 & 3]
        for shift in shifts:
            slot = table + 8 * (gva >> shift & 511)
            e = g.q(slot)
            if not e & PRESENT:
                e = g.alloc() | PRESENT | RW
                g.set_q(slot, e)
            table = e & ~0xFFF
        g.set_q(table + 8 * (gva >> 12 & 511), gpa | PRESENT | (RW if writable else 0))

    def buffer(self, gva: int, size: int, shuffle: bool = True) -> list[int]:
        """Back [gva, gva + size) with fresh guest pages, in reverse order when ``shuffle`` (so
        a blit crosses discontiguous frames); returns each page's gpa."""
        pages = [self.guest.alloc() for _ in range(size // PAGE)]
        if shuffle:
            pages.reverse()
        for i, gpa in enumerate(pages):
            self.map(gva + i * PAGE, gpa)
        return pages

    def mode(self) -> int:
        return cx.ADDRESSING_LEGACY_64 if self.levels == 4 else cx.ADDRESSING_LEGACY_32

    def pdps(self) -> tuple[int, int, int, int]:
        r = self.roots
        return (r[0], 0, 0, 0) if self.levels == 4 else (r[0], r[1], r[2], r[3])


@dataclass
class Context:
    engine: EngineInfo
    lrca: int
    ring: int
    tree: Tree
    ctx_id: int
    tail: int = 0


class Rig:
    def __init__(
        self,
        platform: Platform = Platform.BDW,
        watchdog: Watchdog | None = None,
        dev: GenVgpu | None = None,
        mem: GuestMemory | None = None,
    ) -> None:
        """Give ``dev`` and ``mem`` for a device whose client already mapped ``mem`` at 0."""
        self.dev = dev or GenVgpu(platform, watchdog=watchdog)
        self.mem = mem or GuestMemory(RAM)
        if mem is None:
            self.dev.dma.add(0, RAM, PROT_READ | PROT_WRITE, self.mem.dup_fd(), 0)
        self._setup()

    def _setup(self) -> None:
        """What a guest driver does first: the GGTT maps graphics memory page for page onto
        guest RAM, and every engine gets a status page and execlists enabled."""
        self.guest = Guest(self.mem)
        for i in range(GGTT_PAGES):
            self.ggtt_write(i, (GGTT_GPA + i * PAGE) | PRESENT)
        self.next_gm = 0x10000
        self.hws: dict[str, int] = {}
        self.next_ctx = 1
        for e in ENGINES:
            self.enable_execlists(e)

    def close(self) -> None:
        self.dev.quiesce()
        self.dev.dma.remove_all()
        self.mem.close()

    # --- graphics memory (GGTT) ------------------------------------------------------------

    def gm_alloc(self, size: int) -> int:
        gma = self.next_gm
        self.next_gm += (size + PAGE - 1) & ~(PAGE - 1)
        return gma

    def gm_write(self, gma: int, data: bytes) -> None:
        self.mem.write(GGTT_GPA + gma, data)

    def gm_dword(self, gma: int) -> int:
        return self.guest.d(GGTT_GPA + gma)

    def gm_qword(self, gma: int) -> int:
        return self.guest.q(GGTT_GPA + gma)

    def gm_dwords(self, gma: int, dwords: list[int]) -> None:
        self.gm_write(gma, struct.pack(f"<{len(dwords)}I", *dwords))

    # --- MMIO ------------------------------------------------------------------------------

    def ggtt_write(self, index: int, entry: int) -> None:
        self.dev.ggtt.write(index, entry, 8, False)

    def r(self, off: int) -> int:
        return int.from_bytes(self.dev.region_read(0, off, 4), "little")

    def w(self, off: int, value: int) -> None:
        self.dev.region_write(0, off, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def enable_execlists(self, e: EngineInfo) -> None:
        hws = self.gm_alloc(PAGE)
        self.hws[e.name] = hws
        self.w(e.reg(er.HWS_PGA), hws)
        self.w(e.reg(er.GFX_MODE), er.GFX_RUN_LIST_ENABLE << 16 | er.GFX_RUN_LIST_ENABLE)
        self.w(e.reg(er.CSB_PTR), 0xFFFF0505)

    def unmask(self, e: EngineInfo) -> None:
        bank = gt_bank(e.irq_bank)
        self.w(bank + BANK_IMR, self.r(bank + BANK_IMR) & ~(0xFFFF << e.irq_shift))
        self.w(bank + BANK_IER, self.r(bank + BANK_IER) | 0xFFFF << e.irq_shift)
        self.w(regs.GEN8_MASTER_IRQ, MASTER_IRQ_ENABLE)

    def iir(self, e: EngineInfo) -> int:
        return self.r(gt_bank(e.irq_bank) + BANK_IIR) >> e.irq_shift & 0xFFFF

    def csb(self, e: EngineInfo) -> list[tuple[int, int]]:
        """The status page's CSB entries from slot 0 up to the write index."""
        hws = self.hws[e.name]
        last = self.gm_dword(hws + er.HWSP_CSB_WRITE_INDEX_DWORD * 4)
        return [
            (
                self.gm_dword(hws + (er.HWSP_CSB_DWORD + 2 * i) * 4),
                self.gm_dword(hws + (er.HWSP_CSB_DWORD + 2 * i + 1) * 4),
            )
            for i in range(last + 1)
        ]

    # --- contexts and submission -----------------------------------------------------------

    def context(self, e: EngineInfo, tree: Tree) -> Context:
        lrca = self.gm_alloc(2 * PAGE)
        ring = self.gm_alloc(RING_SIZE)
        ctx = Context(e, lrca, ring, tree, self.next_ctx)
        self.next_ctx += 1
        values = {
            cx.CTX_RING_HEAD: 0,
            cx.CTX_RING_TAIL: 0,
            cx.CTX_RING_START: ring,
            cx.CTX_RING_CTL: (RING_SIZE - PAGE) | 1,
        }
        for pdp, (hi, lo) in zip(tree.pdps(), zip(cx.CTX_PDP_UDW, cx.CTX_PDP_LDW, strict=True), strict=True):
            values[hi], values[lo] = pdp >> 32, pdp & 0xFFFFFFFF
        for idx, value in values.items():
            self.gm_dwords(lrca + PAGE + idx * 4, [value])
        return ctx

    def emit(self, ctx: Context, dwords: list[int]) -> None:
        """Write commands into the ring at its tail (wrapping), padded to a qword."""
        if len(dwords) % 2:
            dwords = [*dwords, MI_NOOP]
        for dw in dwords:
            self.gm_dwords(ctx.ring + ctx.tail, [dw])
            ctx.tail = (ctx.tail + 4) % RING_SIZE
        self.gm_dwords(ctx.lrca + PAGE + cx.CTX_RING_TAIL * 4, [ctx.tail])

    def descriptor(self, ctx: Context) -> tuple[int, int]:
        return ctx.lrca | cx.DESC_VALID | ctx.tree.mode() << cx.DESC_ADDRESSING_SHIFT | cx.DESC_PRIVILEGE, ctx.ctx_id

    def elsp(self, ctx: Context, second: Context | None = None) -> None:
        el1 = self.descriptor(second) if second is not None else (0, 0)
        lo, hi = self.descriptor(ctx)
        for value in (el1[1], el1[0], hi, lo):
            self.w(ctx.engine.reg(er.ELSP), value)

    def submit(self, ctx: Context, dwords: list[int]) -> None:
        self.emit(ctx, dwords)
        self.elsp(ctx)

    def run(self) -> int:
        return self.dev.tasks.run_until_idle()

    def run_until(self, done: Callable[[], bool], rounds: int = 100_000) -> int:
        """Run to idle, then fire the timers early (a workload polling memory sleeps on one),
        until ``done()``; returns the rounds it took. Progress, not time, drives it."""
        for n in range(rounds):
            self.run()
            if done():
                return n
            self.dev.tasks.timers.run_due(float("inf"))
        raise AssertionError(f"not done after {rounds} rounds")

    def ring_head(self, ctx: Context) -> int:
        return self.gm_dword(ctx.lrca + PAGE + cx.CTX_RING_HEAD * 4)
