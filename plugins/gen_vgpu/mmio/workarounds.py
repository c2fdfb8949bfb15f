"""Render registers outside the engine page that i915 6.1 loads from a command stream on RCS:
the context workaround registers it loads with one LRI when it records the default context
(``intel_engine_emit_ctx_wa``, from ``gen8/bdw/gen9/skl_ctx_workarounds_init``), and the
registers it whitelists for user batches on SKL (``gen9_whitelist_build``/
``skl_whitelist_build``, RING_FORCE_TO_NONPRIV). Plain storage; nothing reads them back.
i915 also loads RCS's MI_MODE (BDW: WaDisableAsyncFlipPerfMode), a row of engine_regs.py.
The first three sit in RCS's engine page, which RCS's streams may load anyway; they are named
here for the audit.
"""

from __future__ import annotations

from ..engines import EngineId
from .row import Cmd, Row

__all__ = ["ROWS"]

_RCS = frozenset({EngineId.RCS})
_CTX_WA = "i915 ctx workaround LRI"
_UMD = "i915 user whitelist (SKL)"


def _wa(name: str, offset: int, why: str) -> Row:
    return Row(name, offset, cmd=Cmd.RW, cmd_engines=_RCS, note=why)


ROWS: tuple[Row, ...] = (
    _wa("INSTPM", 0x20C0, _CTX_WA + " (BDW: INSTPM_FORCE_ORDERING)"),
    _wa("GEN9_CTX_PREEMPT_REG", 0x2248, _UMD + " (WaVFEStateAfterPipeControlwithMediaStateClear)"),
    _wa("GEN8_CS_CHICKEN1", 0x2580, _CTX_WA + " (SKL: WaDisable3DMidCmdPreemption); " + _UMD),
    _wa("GEN9_WM_CHICKEN3", 0x5588, _CTX_WA + " (GEN9 LP: WaClearHIZ_WM_CHICKEN3)"),
    _wa("CACHE_MODE_0_GEN7", 0x7000, _CTX_WA + " (BDW: HiZ RAW stall optimisation)"),
    _wa("CACHE_MODE_1", 0x7004, _CTX_WA + " (Wa4x4STCOptimizationDisable)"),
    _wa("GEN7_GT_MODE", 0x7008, _CTX_WA + " (BDW WIZ hashing 16x4; SKL IZ hashing)"),
    _wa("COMMON_SLICE_CHICKEN2", 0x7014, _CTX_WA + " (SKL: PBE hash mode); " + _UMD),
    _wa("HDC_CHICKEN0", 0x7300, _CTX_WA + " (WaForceEnableNonCoherent ...)"),
    _wa("GEN8_HDC_CHICKEN1", 0x7304, _UMD + " (WaAllowUMDToModifyHDCChicken1)"),
    _wa("GEN8_L3SQCREG4", 0xB118, _UMD + " (WaDisableLSQCROPERFforOCL)"),
    _wa("HALF_SLICE_CHICKEN2", 0xE180, _CTX_WA + " (SKL: WaDisableSTUnitPowerOptimization)"),
    _wa("GEN8_HALF_SLICE_CHICKEN3", 0xE184, _CTX_WA + " (sampler power bypass)"),
    _wa("GEN9_HALF_SLICE_CHICKEN5", 0xE188, _CTX_WA + " (SKL: WaCcsTlbPrefetchDisable)"),
    _wa("GEN9_HALF_SLICE_CHICKEN7", 0xE194, _CTX_WA + " (SKL: YV12 fix, GPGPU preemption)"),
    _wa("GEN8_ROW_CHICKEN", 0xE4F0, _CTX_WA + " (WaDisablePartialInstShootdown)"),
    _wa("GEN8_ROW_CHICKEN2", 0xE4F4, _CTX_WA + " (BDW: WaDisableDopClockGating)"),
)
