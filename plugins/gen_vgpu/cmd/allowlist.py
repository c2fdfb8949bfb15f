"""The registers MI_LOAD_REGISTER_IMM may write and MI_STORE_REGISTER_MEM may read, per engine.

Two parts, both rendered in docs/commands.md:

- the engine's own register page (base .. base + 4 KiB), except the registers that drive
  submission, the ring, interrupts and errors (``ENGINE_WRITE_DENIED``): a command stream must
  not re-point its own ring, page tables, status page or execlist port. Reads of the whole page
  are allowed (SRM of RING_TIMESTAMP, CTX_TIMESTAMP, pipeline statistics ...).
- ``EXTRA_REGISTERS``: the context workaround registers i915 6.1 loads with one LRI on RCS
  when it records the default context (``intel_engine_emit_ctx_wa``, from
  ``gen8/bdw/gen9/skl_ctx_workarounds_init``), and the registers it whitelists for user batches
  on SKL (``gen9_whitelist_build``/``skl_whitelist_build``, RING_FORCE_TO_NONPRIV).

Everything else is refused.
"""

from __future__ import annotations

from typing import NamedTuple

from .engines import ENGINE_MMIO_BASE, ENGINE_MMIO_PAGE, Engine

__all__ = [
    "ENGINE_WRITE_DENIED",
    "EXTRA_REGISTERS",
    "DeniedRange",
    "RegisterRow",
    "may_read",
    "may_write",
]


class DeniedRange(NamedTuple):
    start: int  # offset from the engine's base
    end: int  # exclusive
    name: str


class RegisterRow(NamedTuple):
    offset: int
    name: str
    engines: frozenset[Engine]
    why: str


ENGINE_WRITE_DENIED: tuple[DeniedRange, ...] = (
    DeniedRange(0x030, 0x040, "RING_TAIL/HEAD/START/CTL"),
    DeniedRange(0x080, 0x084, "HWS_PGA"),
    DeniedRange(0x098, 0x09C, "HWSTAM"),
    DeniedRange(0x0A8, 0x0AC, "RING_IMR"),
    DeniedRange(0x0B0, 0x0BC, "EIR/EMR/ESR"),
    DeniedRange(0x0D0, 0x0D4, "RING_RESET_CTL"),
    DeniedRange(0x110, 0x120, "BB_STATE, SBB_ADDR, SBB_STATE"),
    DeniedRange(0x140, 0x144, "BB_ADDR"),
    DeniedRange(0x168, 0x16C, "BB_ADDR_UDW"),
    DeniedRange(0x230, 0x23C, "ELSP, EXECLIST_STATUS"),
    DeniedRange(0x244, 0x248, "CONTEXT_CONTROL"),
    DeniedRange(0x270, 0x290, "PDP0-3 (page-table roots)"),
    DeniedRange(0x29C, 0x2A0, "RING_MODE"),
    DeniedRange(0x370, 0x3A4, "context status buffer and its pointer"),
)

_RCS = frozenset({Engine.RCS})
_CTX_WA = "i915 ctx workaround LRI"
_UMD = "i915 user whitelist (SKL)"

EXTRA_REGISTERS: tuple[RegisterRow, ...] = (
    RegisterRow(0x209C, "MI_MODE (RCS)", _RCS, _CTX_WA + " (BDW: WaDisableAsyncFlipPerfMode)"),
    RegisterRow(0x20C0, "INSTPM", _RCS, _CTX_WA + " (BDW: INSTPM_FORCE_ORDERING)"),
    RegisterRow(0x2248, "GEN9_CTX_PREEMPT_REG", _RCS, _UMD + " (WaVFEStateAfterPipeControlwithMediaStateClear)"),
    RegisterRow(0x2580, "GEN8_CS_CHICKEN1", _RCS, _CTX_WA + " (SKL: WaDisable3DMidCmdPreemption); " + _UMD),
    RegisterRow(0x5588, "GEN9_WM_CHICKEN3", _RCS, _CTX_WA + " (GEN9 LP: WaClearHIZ_WM_CHICKEN3)"),
    RegisterRow(0x7000, "CACHE_MODE_0_GEN7", _RCS, _CTX_WA + " (BDW: HiZ RAW stall optimisation)"),
    RegisterRow(0x7004, "CACHE_MODE_1", _RCS, _CTX_WA + " (Wa4x4STCOptimizationDisable)"),
    RegisterRow(0x7008, "GEN7_GT_MODE", _RCS, _CTX_WA + " (BDW WIZ hashing 16x4; SKL IZ hashing)"),
    RegisterRow(0x7014, "COMMON_SLICE_CHICKEN2", _RCS, _CTX_WA + " (SKL: PBE hash mode); " + _UMD),
    RegisterRow(0x7300, "HDC_CHICKEN0", _RCS, _CTX_WA + " (WaForceEnableNonCoherent ...)"),
    RegisterRow(0x7304, "GEN8_HDC_CHICKEN1", _RCS, _UMD + " (WaAllowUMDToModifyHDCChicken1)"),
    RegisterRow(0xB118, "GEN8_L3SQCREG4", _RCS, _UMD + " (WaDisableLSQCROPERFforOCL)"),
    RegisterRow(0xE180, "HALF_SLICE_CHICKEN2", _RCS, _CTX_WA + " (SKL: WaDisableSTUnitPowerOptimization)"),
    RegisterRow(0xE184, "GEN8_HALF_SLICE_CHICKEN3", _RCS, _CTX_WA + " (sampler power bypass)"),
    RegisterRow(0xE188, "GEN9_HALF_SLICE_CHICKEN5", _RCS, _CTX_WA + " (SKL: WaCcsTlbPrefetchDisable)"),
    RegisterRow(0xE194, "GEN9_HALF_SLICE_CHICKEN7", _RCS, _CTX_WA + " (SKL: YV12 fix, GPGPU preemption)"),
    RegisterRow(0xE4F0, "GEN8_ROW_CHICKEN", _RCS, _CTX_WA + " (WaDisablePartialInstShootdown)"),
    RegisterRow(0xE4F4, "GEN8_ROW_CHICKEN2", _RCS, _CTX_WA + " (BDW: WaDisableDopClockGating)"),
)


def _engine_offsets(denied: tuple[DeniedRange, ...]) -> frozenset[int]:
    out = set(range(0, ENGINE_MMIO_PAGE, 4))
    for d in denied:
        out.difference_update(range(d.start, d.end, 4))
    return frozenset(out)


_PAGE_ALL = frozenset(range(0, ENGINE_MMIO_PAGE, 4))
_PAGE_WRITABLE = _engine_offsets(ENGINE_WRITE_DENIED)


def _table(page: frozenset[int]) -> dict[Engine, frozenset[int]]:
    out = {}
    for engine in Engine:
        base = ENGINE_MMIO_BASE[engine]
        extra = {r.offset for r in EXTRA_REGISTERS if engine in r.engines}
        out[engine] = frozenset({base + o for o in page} | extra)
    return out


# One set lookup per register: precomputed per engine from the two declarations above.
_WRITABLE = _table(_PAGE_WRITABLE)
_READABLE = _table(_PAGE_ALL)


def may_write(engine: Engine, register: int) -> bool:
    return register in _WRITABLE[engine]


def may_read(engine: Engine, register: int) -> bool:
    return register in _READABLE[engine]
