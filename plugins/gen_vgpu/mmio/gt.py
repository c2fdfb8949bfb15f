"""GT registers with behaviour (contract §4.3), the ranges the contract lists as plain storage,
and the behaviour of each engine's ring registers other than the execlist ones (§4.1; their
rows are in engine_regs.py).

Every value here is what a headless BDW/SKL GT2 vGPU shows i915 (i915-guest.md §2.4): fuses
that remove the display, power wells and PLLs that acknowledge at once, self-clearing reset
and TLB-invalidation registers, a pcode mailbox that answers at once.
"""

from __future__ import annotations

from collections.abc import Callable

from devmodel.device.registers import RegisterBlock

from ..engines import ENGINES, EngineId, EngineInfo
from ..platform import Platform
from ..timestamp import CTC_MODE, CTC_MODE_SKL
from . import engine_regs as er
from . import gt_status, regs
from .row import BDW, RO, SKL, Hooks, Kind, Row

__all__ = [
    "ROWS",
    "GtRegisters",
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

_GEN9_MOCS = ((0xC800, 0xCD00), (0xB020, 0xB0A0))  # per-engine MOCS tables, LNCFCMOCS

ROWS: tuple[Row, ...] = (
    Row("GDRST", GDRST, handler="gdrst", note="bit 0 all engines, else the engines' bits; reads 0 at once"),
    *(Row(name, off, handler="tlb_invalidate", note="self-clearing") for off, name in TLB_INVALIDATION.items()),
    Row(
        "LCPLL_CTL",
        LCPLL_CTL,
        reset=LCPLL_PLL_LOCK,
        rw_mask=~(LCPLL_PLL_DISABLE | LCPLL_PLL_LOCK | LCPLL_CD_SOURCE_FCLK) & 0xFFFFFFFF,
        display=False,
        note="locked, never disabled",
    ),
    Row("GEN8_FUSE2", GEN8_FUSE2, reset=_FUSE2, rw_mask=RO),
    Row("EU_DISABLE{i}", EU_DISABLE[0], count=len(EU_DISABLE), rw_mask=RO),
    Row("PPAT_{i}", PPAT[0], count=len(PPAT)),
    Row(
        "HSW_PWR_WELL_CTL{i}",
        HSW_PWR_WELL_CTL[0],
        count=len(HSW_PWR_WELL_CTL),
        rw_mask=_PWR_WELL_REQUESTS,
        handler="power_well",
        note="each requested well reads enabled at once",
    ),
    Row("GEN6_PCODE_MAILBOX", GEN6_PCODE_MAILBOX, handler="pcode", note="READY clears at once, no error"),
    Row("GEN6_PCODE_DATA", GEN6_PCODE_DATA),
    Row("GEN6_PCODE_DATA1", GEN6_PCODE_DATA1),
    # Headless only: with the display these are display_regs.py's rows.
    Row(
        "FUSE_STRAP",
        FUSE_STRAP,
        platforms=BDW,
        display=False,
        reset=FUSE_STRAP_DISPLAY_DISABLE,
        rw_mask=RO,
        note="display fused off",
    ),
    Row(
        "SKL_DFSM",
        SKL_DFSM,
        platforms=SKL,
        display=False,
        reset=SKL_DFSM_PIPES_DISABLE,
        rw_mask=RO,
        note="pipes A-C fused off",
    ),
    Row("SKL_FUSE_STATUS", SKL_FUSE_STATUS, platforms=SKL, reset=SKL_FUSE_STATUS_DONE, rw_mask=RO),
    Row(
        "CTC_MODE",
        CTC_MODE,
        platforms=SKL,
        reset=CTC_MODE_SKL,
        rw_mask=RO,
        note="timestamp clock: the 24 MHz crystal, shift 2 (12 MHz)",
    ),
    Row("GUC_STATUS", GUC_STATUS, platforms=SKL, reset=GUC_STATUS_MIA_IN_RESET, rw_mask=RO, note="held in reset"),
    # The flush only orders GGTT updates on hardware; here writes act at once.
    Row("GFX_FLSH_CNTL", regs.GFX_FLSH_CNTL, rw_mask=RO),
    Row(
        "FENCE_REG",
        regs.FENCE_REG_BASE,
        size=regs.FENCE_REG_STRIDE * regs.FENCE_COUNT,
        kind=Kind.PLAIN,
        note="64-bit each, as many as PVINFO's fence_num",
    ),
    Row(
        "MCHBAR mirror", regs.MCHBAR_MIRROR_BASE, size=regs.MCHBAR_MIRROR_END - regs.MCHBAR_MIRROR_BASE, kind=Kind.PLAIN
    ),
    *(Row("MOCS", start, size=end - start, platforms=SKL, kind=Kind.PLAIN) for start, end in _GEN9_MOCS),
)


class GtRegisters(RegisterBlock):
    """The GT block's handlers (of the rows here, in engine_regs.py and gt_status.py).
    ``reset_engines(selected)`` resets the engines ``selected``
    picks (GDRST); ``engine_idle(id)`` says whether an engine has nothing current (MI_MODE)."""

    def __init__(
        self,
        platform: Platform,
        reset_engines: Callable[[Callable[[EngineInfo], bool]], None],
        engine_idle: Callable[[EngineId], bool],
        on_tlb_invalidate: Callable[[], None],
    ) -> None:
        self.platform = platform
        self.reset_engines = reset_engines
        self.engine_idle = engine_idle
        self.on_tlb_invalidate = on_tlb_invalidate
        self.tlb_invalidations = 0
        self.engine_resets = 0
        # With the display, its pcode commands' answers: ``pcode_reply(command, data0)`` gives
        # DATA0's answer, or None to keep what the guest wrote.
        self.pcode_reply: Callable[[int, int], int | None] | None = None

    def hooks(self) -> dict[str, Hooks]:
        return {
            "gdrst": Hooks(write=self._write_gdrst),
            "tlb_invalidate": Hooks(write=self._write_tlb),
            "pcode": Hooks(write=self._write_pcode),
            "power_well": Hooks(write=self._write_power_well),
            "reset_ctl": Hooks(write=self._write_reset_ctl),
            "rps_request": Hooks(write=self._write_rps_request),
        }

    def engine_hooks(self) -> dict[EngineId, dict[str, Hooks]]:
        return {e.id: {"mi_mode": Hooks(read=self._mi_mode_reader(e))} for e in ENGINES}

    # --- hooks -----------------------------------------------------------------------------

    def _write_gdrst(self, offset: int, old: int, new: int) -> None:
        if new:
            self.engine_resets += 1
            full = bool(new & GDRST_FULL)
            self.reset_engines(lambda e: full or bool(new & (1 << e.gdrst_bit)))
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

    def _write_rps_request(self, offset: int, old: int, new: int) -> None:
        self.rf.set(gt_status.GEN6_RPSTAT1, gt_status.rpstat_for_request(self.platform, new))

    def _write_power_well(self, offset: int, old: int, new: int) -> None:
        requests = new & _PWR_WELL_REQUESTS
        self.rf.set(offset, requests | requests >> 1)

    def _write_reset_ctl(self, offset: int, old: int, new: int) -> None:
        if new & er.RESET_CTL_REQUEST_RESET:
            self.rf.set(offset, new | er.RESET_CTL_READY_TO_RESET)
        else:
            self.rf.set(offset, new & ~er.RESET_CTL_READY_TO_RESET)

    def _mi_mode_reader(self, e: EngineInfo) -> Callable[[int], int]:
        engine_id = e.id
        idle = self.engine_idle

        def read(offset: int) -> int:
            value = self.rf.get(offset)
            if value & er.STOP_RING and idle(engine_id):
                value |= er.MODE_IDLE
            return value

        return read
