"""A GT rig for the engine, GT-register and interrupt tests: a register file with the
interrupt, execlist and GT declarations installed, graphics memory as a flat bytearray that
records every write, and an executor test double that completes on demand (or at once)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from devmodel.device.registers import RegisterFile
from gen_vgpu.engine.execlist import Engines
from gen_vgpu.engine.executor import Workload
from gen_vgpu.engines import EngineInfo
from gen_vgpu.graphics_memory import GraphicsMemory as VgpuMemory
from gen_vgpu.interrupts import BANK_IER, BANK_IIR, BANK_IMR, Interrupts, gt_bank
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio import regs
from gen_vgpu.mmio.gt import GtRegisters
from gen_vgpu.mmio.row import Hooks
from gen_vgpu.mmio.table import populate, table_for
from gen_vgpu.platform import Platform
from gen_vgpu.timestamp import CsClock

PAGE = 4096
GM_SIZE = 4 << 20  # graphics memory [0, 4 MiB) backs every test context and status page
GM = VgpuMemory(range(GM_SIZE), range(GM_SIZE, GM_SIZE))
MASTER = regs.GEN8_MASTER_IRQ
ENABLE = 1 << 31


class GraphicsMemory:
    def __init__(self, size: int = GM_SIZE) -> None:
        self.data = bytearray(size)
        self.writes: list[tuple[int, bytes]] = []

    def read(self, gma: int, length: int) -> bytes:
        return bytes(self.data[gma : gma + length])

    def write(self, gma: int, data: bytes) -> None:
        self.writes.append((gma, bytes(data)))
        self.data[gma : gma + len(data)] = data

    def dword(self, gma: int) -> int:
        return int.from_bytes(self.data[gma : gma + 4], "little")

    def set_dword(self, gma: int, value: int) -> None:
        self.data[gma : gma + 4] = struct.pack("<I", value)


@dataclass
class ManualExecutor:
    """Records starts and cancels; completes at once when ``auto`` is set."""

    engines: Engines | None = None
    auto: bool = False
    started: list[Workload] = field(default_factory=list)
    cancelled: list[Workload] = field(default_factory=list)

    def start(self, workload: Workload) -> None:
        self.started.append(workload)
        if self.auto:
            assert self.engines is not None
            self.engines.complete(workload)

    def cancel(self, workload: Workload) -> None:
        self.cancelled.append(workload)


# Context images: register-state page value dwords (contract §4.2).
CTX_HEAD, CTX_TAIL, CTX_START, CTX_CTL = 0x05, 0x07, 0x09, 0x0B
PPGTT_4LVL_DESC = 1 | 3 << 3 | 1 << 8  # valid, 48-bit 4-level, PPGTT (privilege)


class Rig:
    def __init__(self, platform: Platform = Platform.BDW, auto: bool = False) -> None:
        self.rf = RegisterFile(regs.MMIO_SIZE)
        self.raised = 0
        self.lowered = 0
        self.gm = GraphicsMemory()
        self.irq = Interrupts(self._raise, self._lower)
        self.executor = ManualExecutor(auto=auto)
        self.now = 0.0  # the timestamp clock's time source, in seconds: a test moves it
        self.timestamp = CsClock.for_platform(platform, lambda: self.now)
        self.engines = Engines(self.irq, self.executor, self.gm.read, self.gm.write, GM, self.timestamp)
        self.executor.engines = self.engines
        self.tlb_invalidations = 0
        self.gt = GtRegisters(platform, self.engines.reset_engines, lambda e: self.engines[e].idle, self._tlb)
        populate(
            self.rf,
            table_for(platform, False),
            (self.irq.hooks(), self.gt.hooks(), {"g2v_notify": Hooks()}),
            (self.engines.engine_hooks(), self.gt.engine_hooks()),
            dict.fromkeys(("mappable_base", "mappable_size", "hidden_base", "hidden_size"), 0),
        )
        for part in (self.irq, self.engines, self.gt):
            part.attach(self.rf)

    def _raise(self) -> None:
        self.raised += 1

    def _lower(self) -> None:
        self.lowered += 1

    def _tlb(self) -> None:
        self.tlb_invalidations += 1

    # --- the guest's side ------------------------------------------------------------------

    def r(self, off: int) -> int:
        return self.rf.read32(off)

    def w(self, off: int, value: int) -> None:
        self.rf.write32(off, value & 0xFFFFFFFF)

    def masked_set(self, off: int, bits: int) -> None:
        self.w(off, bits << 16 | bits)

    def masked_clear(self, off: int, bits: int) -> None:
        self.w(off, bits << 16)

    def enable_execlists(self, e: EngineInfo, hws: int | None) -> None:
        """i915's enable_execlists and reset_csb_pointers, in its order."""
        self.w(e.reg(er.HWSTAM), 0xFFFFFFFF)
        self.masked_set(e.reg(er.GFX_MODE), er.GFX_RUN_LIST_ENABLE)
        self.masked_clear(e.reg(er.MI_MODE), er.STOP_RING)
        if hws is not None:
            self.w(e.reg(er.HWS_PGA), hws)
            # reset_csb_pointers: poison the status-page CSB, index 5, both pointers 5
            for i in range(er.CSB_ENTRIES * 2):
                self.gm.set_dword(hws + (er.HWSP_CSB_DWORD + i) * 4, 0xFFFFFFFF)
            self.gm.set_dword(hws + er.HWSP_CSB_WRITE_INDEX_DWORD * 4, 5)
        self.w(e.reg(er.CSB_PTR), 0xFFFF0505)

    def unmask_engine_irqs(self, e: EngineInfo) -> None:
        bank = gt_bank(e.irq_bank)
        self.w(bank + BANK_IMR, self.r(bank + BANK_IMR) & ~(0xFFFF << e.irq_shift))
        self.w(bank + BANK_IER, self.r(bank + BANK_IER) | 0xFFFF << e.irq_shift)

    def iir(self, e: EngineInfo) -> int:
        return self.r(gt_bank(e.irq_bank) + BANK_IIR) >> e.irq_shift & 0xFFFF

    def clear_iir(self, e: EngineInfo) -> None:
        bank = gt_bank(e.irq_bank)
        self.w(bank + BANK_IIR, self.r(bank + BANK_IIR))

    def make_context(self, lrca: int, head: int = 0, tail: int = 0x40, ring_start: int = 0x200000) -> None:
        state = lrca + PAGE
        for idx, value in ((CTX_HEAD, head), (CTX_TAIL, tail), (CTX_START, ring_start), (CTX_CTL, 1)):
            self.gm.set_dword(state + idx * 4, value)

    def set_tail(self, lrca: int, tail: int) -> None:
        self.gm.set_dword(lrca + PAGE + CTX_TAIL * 4, tail)

    def ctx_head(self, lrca: int) -> int:
        return self.gm.dword(lrca + PAGE + CTX_HEAD * 4)

    def elsp(self, e: EngineInfo, el0: tuple[int, int], el1: tuple[int, int] = (0, 0)) -> None:
        """execlists_submit_ports: port 1 then port 0, each upper then lower dword."""
        off = e.reg(er.ELSP)
        for value in (el1[1], el1[0], el0[1], el0[0]):
            self.w(off, value)

    # --- what the guest reads back ---------------------------------------------------------

    def mmio_csb(self, e: EngineInfo, slot: int) -> tuple[int, int]:
        off = e.reg(er.CSB_BASE + slot * er.CSB_ENTRY_SIZE)
        return self.r(off), self.r(off + 4)

    def hwsp_csb(self, hws: int, slot: int) -> tuple[int, int]:
        off = hws + (er.HWSP_CSB_DWORD + 2 * slot) * 4
        return self.gm.dword(off), self.gm.dword(off + 4)

    def hwsp_index(self, hws: int) -> int:
        return self.gm.dword(hws + er.HWSP_CSB_WRITE_INDEX_DWORD * 4)

    def write_pointer(self, e: EngineInfo) -> int:
        return self.r(e.reg(er.CSB_PTR)) & er.CSB_PTR_WRITE_MASK


def desc(lrca: int, ctx_id: int, flags: int = PPGTT_4LVL_DESC) -> tuple[int, int]:
    return (lrca | flags, ctx_id)
