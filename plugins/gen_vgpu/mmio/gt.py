"""GT registers with behaviour (contract §4.3) and each engine's ring registers other than
the execlist ones (§4.1), plus the ranges the contract lists as plain storage.

Every value here is what a headless BDW/SKL GT2 vGPU shows i915 (i915-guest.md §2.4): fuses
that remove the display, power wells and PLLs that acknowledge at once, self-clearing reset
and TLB-invalidation registers, a pcode mailbox that answers at once.
"""

from __future__ import annotations

from collections.abc import Callable

from devmodel.device.registers import Register, RegisterBlock

from ..engine import regs as er
from ..engine.engines import ENGINES, EngineInfo
from ..engine.execlist import Engines
from ..platform import Platform
from . import regs

__all__ = [
    "GtRegisters",
    "plain_ranges",
    "GDRST",
    "GDRST_FULL",
    "TLB_INVALIDATION",
    "FUSE_STRAP",
    "SKL_DFSM",
    "SKL_FUSE_STATUS",
    "HSW_PWR_WELL_CTL",
    "LCPLL_CTL",
    "GEN8_FUSE2",
    "EU_DISABLE",
    "GEN6_PCODE_MAILBOX",
    "GEN6_PCODE_DATA",
    "GEN6_PCODE_DATA1",
    "PPAT",
]

GDRST = 0x941C
GDRST_FULL = 1 << 0  # the engines' own bits are in the engine table

TLB_INVALIDATION = {0x4260: "GEN8_RTCR", 0x4264: "GEN8_M1TCR", 0x426C: "GEN8_BTCR", 0x4270: "GEN8_VTCR"}

FUSE_STRAP = 0x42014  # BDW
FUSE_STRAP_DISPLAY_DISABLE = 1 << 30  # ILK_INTERNAL_DISPLAY_DISABLE
SKL_DFSM = 0x51000  # SKL
SKL_DFSM_PIPES_DISABLE = (1 << 30) | (1 << 21) | (1 << 28)  # pipes A, B, C fused off
SKL_FUSE_STATUS = 0x42000  # SKL
SKL_FUSE_STATUS_DONE = (1 << 31) | (1 << 27) | (1 << 26) | (1 << 25)  # distribution done, PG0-2
# GEN9 has a GuC. i915 resets it in __uc_sanitize even with GuC submission off (gen < 12), and
# warns unless its microcontroller then reads as held in reset; this one never runs.
GUC_STATUS = 0xC000  # SKL
GUC_STATUS_MIA_IN_RESET = 1 << 0

HSW_PWR_WELL_CTL = (0x45400, 0x45404)  # CTL1 (BIOS), CTL2 (driver)
_PWR_WELL_REQUESTS = 0xAAAAAAAA  # bit 2i+1 requests well i; bit 2i is its state

LCPLL_CTL = 0x130040
LCPLL_PLL_DISABLE = 1 << 31
LCPLL_PLL_LOCK = 1 << 30
LCPLL_CD_SOURCE_FCLK = 1 << 21

GEN8_FUSE2 = 0x9120
_FUSE2 = {Platform.BDW: 0x02000000, Platform.SKL: 0x02800000}
EU_DISABLE = (0x9134, 0x9138, 0x913C)

GEN6_PCODE_MAILBOX = 0x138124
GEN6_PCODE_READY = 1 << 31
GEN6_PCODE_ERROR_MASK = 0xFF
GEN6_PCODE_DATA = 0x138128
GEN6_PCODE_DATA1 = 0x13812C

PPAT = (0x40E0, 0x40E4)

# Ranges of plain registers the contract lists without declaring each one.
_FENCE_BASE = 0x100000
_FENCE_STRIDE = 8
_MCHBAR_MIRROR = (0x140000, 0x180000)
_GEN9_MOCS = ((0xC800, 0xCD00), (0xB020, 0xB0A0))  # per-engine MOCS tables, LNCFCMOCS


def plain_ranges(platform: Platform, fence_count: int) -> list[tuple[int, int, str]]:
    """[start, end) ranges of registers the contract lists as plain storage."""
    out = [
        (regs.PVINFO_BASE, regs.PVINFO_BASE + regs.PVINFO_SIZE, "PVINFO"),
        (_MCHBAR_MIRROR[0], _MCHBAR_MIRROR[1], "MCHBAR mirror"),
        (_FENCE_BASE, _FENCE_BASE + _FENCE_STRIDE * fence_count, "fences"),
    ]
    if platform is Platform.SKL:
        out += [(start, end, "MOCS") for start, end in _GEN9_MOCS]
    return out


class GtRegisters(RegisterBlock):
    def __init__(
        self,
        platform: Platform,
        engines: Engines,
        on_tlb_invalidate: Callable[[], None],
        display: bool = False,
    ) -> None:
        self.platform = platform
        # With a display, its package declares the fuses and LCPLL and answers the display's
        # pcode commands: ``pcode_reply(command, data0)`` gives DATA0's answer, or None.
        self.display = display
        self.pcode_reply: Callable[[int, int], int | None] | None = None
        self.engines = engines
        self.on_tlb_invalidate = on_tlb_invalidate
        self.tlb_invalidations = 0
        self.engine_resets = 0

    def registers(self) -> list[Register]:
        out = [
            Register(GDRST, "GDRST", write=self._write_gdrst),
            Register(GEN8_FUSE2, "GEN8_FUSE2", reset=_FUSE2[self.platform], rw_mask=0),
            Register(GEN6_PCODE_MAILBOX, "GEN6_PCODE_MAILBOX", write=self._write_pcode),
            Register(GEN6_PCODE_DATA, "GEN6_PCODE_DATA"),
            Register(GEN6_PCODE_DATA1, "GEN6_PCODE_DATA1"),
        ]
        out += [Register(off, name, write=self._write_tlb) for off, name in TLB_INVALIDATION.items()]
        out += [Register(off, f"EU_DISABLE{i}", rw_mask=0) for i, off in enumerate(EU_DISABLE)]
        out += [Register(off, f"PPAT_{i}") for i, off in enumerate(PPAT)]
        out += [
            Register(off, f"HSW_PWR_WELL_CTL{i + 1}", rw_mask=_PWR_WELL_REQUESTS, write=self._write_power_well)
            for i, off in enumerate(HSW_PWR_WELL_CTL)
        ]
        if not self.display:
            out.append(
                Register(
                    LCPLL_CTL,
                    "LCPLL_CTL",
                    reset=LCPLL_PLL_LOCK,
                    rw_mask=~(LCPLL_PLL_DISABLE | LCPLL_PLL_LOCK | LCPLL_CD_SOURCE_FCLK) & 0xFFFFFFFF,
                )
            )
            if self.platform is Platform.BDW:
                out.append(Register(FUSE_STRAP, "FUSE_STRAP", reset=FUSE_STRAP_DISPLAY_DISABLE, rw_mask=0))
            else:
                out.append(Register(SKL_DFSM, "SKL_DFSM", reset=SKL_DFSM_PIPES_DISABLE, rw_mask=0))
        if self.platform is Platform.SKL:
            out.append(Register(SKL_FUSE_STATUS, "SKL_FUSE_STATUS", reset=SKL_FUSE_STATUS_DONE, rw_mask=0))
            out.append(Register(GUC_STATUS, "GUC_STATUS", reset=GUC_STATUS_MIA_IN_RESET, rw_mask=0))
        for e in ENGINES:
            out += self._ring_registers(e)
        return out

    def _ring_registers(self, e: EngineInfo) -> list[Register]:
        n = e.name.upper()
        plain = {
            er.RING_TAIL: "RING_TAIL",
            er.RING_HEAD: "RING_HEAD",
            er.RING_START: "RING_START",
            er.RING_CTL: "RING_CTL",
            er.HWSTAM: "HWSTAM",
            er.RING_IMR: "RING_IMR",
            er.EMR: "EMR",
        }
        out = [Register(e.reg(off), f"{n}_{name}") for off, name in plain.items()]
        out += [
            Register(
                e.reg(er.MI_MODE),
                f"{n}_MI_MODE",
                masked=True,
                rw_mask=0xFFFF & ~er.MODE_IDLE,
                read=self._mi_mode_reader(e),
            ),
            Register(e.reg(er.EIR), f"{n}_EIR", w1c=0xFFFFFFFF),
            Register(e.reg(er.ESR), f"{n}_ESR", rw_mask=0),  # non-zero would make i915 reset the engine
            Register(
                e.reg(er.RING_RESET_CTL),
                f"{n}_RING_RESET_CTL",
                masked=True,
                rw_mask=er.RESET_CTL_REQUEST_RESET,
                write=self._write_reset_ctl,
            ),
        ]
        return out

    # --- hooks -----------------------------------------------------------------------------

    def _write_gdrst(self, offset: int, old: int, new: int) -> None:
        if new:
            self.engine_resets += 1
            full = bool(new & GDRST_FULL)
            self.engines.reset_engines(lambda e: full or bool(new & (1 << e.gdrst_bit)))
        self.rf.set(offset, 0)  # the reset is done before the guest's first poll

    def _write_tlb(self, offset: int, old: int, new: int) -> None:
        if new:
            self.tlb_invalidations += 1
            self.on_tlb_invalidate()
        self.rf.set(offset, 0)

    def _write_pcode(self, offset: int, old: int, new: int) -> None:
        if new & GEN6_PCODE_READY:
            # Done at once, no error; the data registers keep what the guest wrote unless the
            # display answers the command.
            if self.pcode_reply is not None:
                answer = self.pcode_reply(new & 0xFF, self.rf.get(GEN6_PCODE_DATA))
                if answer is not None:
                    self.rf.set(GEN6_PCODE_DATA, answer)
            self.rf.set(offset, new & ~(GEN6_PCODE_READY | GEN6_PCODE_ERROR_MASK))

    def _write_power_well(self, offset: int, old: int, new: int) -> None:
        requests = new & _PWR_WELL_REQUESTS
        self.rf.set(offset, requests | requests >> 1)

    def _write_reset_ctl(self, offset: int, old: int, new: int) -> None:
        if new & er.RESET_CTL_REQUEST_RESET:
            self.rf.set(offset, new | er.RESET_CTL_READY_TO_RESET)
        else:
            self.rf.set(offset, new & ~er.RESET_CTL_READY_TO_RESET)

    def _mi_mode_reader(self, e: EngineInfo) -> Callable[[int], int]:
        execlist = self.engines[e.id]

        def read(offset: int) -> int:
            value = self.rf.get(offset)
            if value & er.STOP_RING and execlist.idle:
                value |= er.MODE_IDLE
            return value

        return read
