"""Registers i915 6.1 only reads to report: its error capture (``i915_gpu_error.c``,
``intel_engine_cs.c``), its debugfs (``intel_gt_pm_debugfs.c``, ``intel_sseu_debugfs.c``),
the fault check at load (``intel_gt_check_and_clear_faults``), and RPS
(``intel_rps.c``), which i915 runs on a vGPU as on hardware (only RC6 is skipped there:
``rc6_supported`` refuses a vGPU).

Values are those of an idle BDW/SKL GT2 with no error: no fault, no error, RC6 residency 0
(RC6 is off), one slice of three subslices of eight EUs, and an RPS range of a GT2 part. What
the device does not model reads 0, and the row says why 0 is harmless: i915 prints it.

RPS: i915 reads RP0/RP1/RPn from GEN6_RP_STATE_CAP (units of 50 MHz; SKL's i915 scales them
by 3 to its 16.67 MHz unit), enables RPS when RP0 > RPn, and asks for a frequency through
GEN6_RPNSWREQ; the GT reports the frequency it runs at in GEN6_RPSTAT1 (CAGF), which is what
sysfs ``gt_act_freq_mhz`` shows. Here the GT runs at once at what was asked.
"""

from __future__ import annotations

from ..platform import Platform
from .row import BDW, RO, SKL, Cmd, Kind, Row

__all__ = [
    "GEN6_RPNSWREQ",
    "GEN6_RPSTAT1",
    "GEN6_RP_STATE_CAP",
    "ROWS",
    "RP_STATE_CAP",
    "rpstat_for_request",
]

GEN6_RPNSWREQ = 0xA008
GEN6_RPSTAT1 = 0xA01C
GEN6_RP_STATE_CAP = 0x145998

# RPn << 16 | RP1 << 8 | RP0, in 50 MHz units. BDW GT2: 300 MHz to 950 MHz, RP1 400 MHz.
# SKL GT2: 350 MHz to 1150 MHz, RP1 550 MHz.
RP_STATE_CAP = {Platform.BDW: 0x06 << 16 | 0x08 << 8 | 0x13, Platform.SKL: 0x07 << 16 | 0x0B << 8 | 0x17}
_GEN9_FREQ_SCALER = 3


def rpstat_for_request(platform: Platform, request: int) -> int:
    """GEN6_RPSTAT1 once the GT runs at the frequency a GEN6_RPNSWREQ value asks for: BDW asks
    in bits 30:24 and reports CAGF in bits 13:7 (HSW_FREQUENCY, HSW_CAGF_MASK); SKL asks in
    bits 31:23 and reports in bits 31:23 (GEN9_FREQUENCY, GEN9_CAGF_MASK)."""
    if platform is Platform.BDW:
        return (request >> 24 & 0x7F) << 7
    return (request >> 23 & 0x1FF) << 23


_RPN = {p: cap >> 16 & 0xFF for p, cap in RP_STATE_CAP.items()}
_RPSTAT_AT_RPN = {
    Platform.BDW: rpstat_for_request(Platform.BDW, _RPN[Platform.BDW] << 24),
    Platform.SKL: rpstat_for_request(Platform.SKL, _RPN[Platform.SKL] * _GEN9_FREQ_SCALER << 23),
}

# SKL's power-gating acks as debugfs reads them: slice 0 with subslices 0-2 up (GEN9_PGCTL_SLICE_ACK,
# GEN9_PGCTL_SS_ACK(ss)), and each subslice's eight EUs in pairs (GEN9_PGCTL_SSA/SSB_EU*_ACK).
_SLICE0_ACK = 1 << 0 | 1 << 2 | 1 << 4 | 1 << 6
_EU_PAIRS_ACK_SSA = 0x55
_EU_PAIRS_ACK_SSB = 0x55 << 8
_PRINTED = "i915 only prints it"
_CAPTURE = Cmd.RW  # inside the engine page, which a stream may load and store

ROWS: tuple[Row, ...] = (
    # The fault check at load and the error capture: an idle GT that saw no error.
    Row("GEN8_RING_FAULT_REG", 0x4094, rw_mask=RO, note="no fault (valid bit clear)"),
    Row("GEN8_FAULT_TLB_DATA{i}", 0x4B10, count=2, rw_mask=RO, note="a fault's address; there is none"),
    Row("ERROR_GEN6", 0x40A0, w1c=0xFFFFFFFF, note="no error"),
    Row("DONE_REG", 0x40B0, rw_mask=RO, note="0: " + _PRINTED),
    Row("DERRMR", 0x44050, note="display event mask; the display is fused off"),
    Row("GEN8_MCR_SELECTOR", 0xFDC, note="steering of multicast reads; every copy reads the same here"),
    Row("GEN7_SC_INSTDONE", 0x7100, rw_mask=RO, note="0: " + _PRINTED),
    Row("GEN7_SAMPLER_INSTDONE", 0xE160, rw_mask=RO, note="0: " + _PRINTED),
    Row("GEN7_ROW_INSTDONE", 0xE164, rw_mask=RO, note="0: " + _PRINTED),
    Row("FORCEWAKE_MT", 0xA188, masked=True, note="i915 never takes forcewake on a vGPU: no request"),
    Row("RING_ACTHD_UDW", 0x5C, engine=True, rw_mask=RO, cmd=_CAPTURE, note="0: " + _PRINTED),
    Row("RING_DMA_FADD_UDW", 0x60, engine=True, rw_mask=RO, cmd=_CAPTURE, note="0: " + _PRINTED),
    Row("RING_IPEIR", 0x64, engine=True, rw_mask=RO, cmd=_CAPTURE, note="no parser error"),
    Row("RING_IPEHR", 0x68, engine=True, rw_mask=RO, cmd=_CAPTURE, note="no parser error"),
    Row("RING_INSTDONE", 0x6C, engine=True, rw_mask=RO, cmd=_CAPTURE, note="0: " + _PRINTED),
    Row("RING_INSTPS", 0x70, engine=True, rw_mask=RO, cmd=_CAPTURE, note="0: " + _PRINTED),
    Row("RING_ACTHD", 0x74, engine=True, rw_mask=RO, cmd=_CAPTURE, note="0: " + _PRINTED),
    Row("RING_DMA_FADD", 0x78, engine=True, rw_mask=RO, cmd=_CAPTURE, note="0: " + _PRINTED),
    Row("CCID", 0x180, engine=True, rw_mask=RO, cmd=_CAPTURE, note="ring-mode context; execlists only here"),
    # RPS (and the RC6 residency debugfs and sysfs read).
    Row(
        "GEN6 RPS, RC and PM control",
        0xA000,
        size=0x200,
        kind=Kind.PLAIN,
        note="thresholds, evaluation intervals, RP_CONTROL, PMINTRMSK: i915 programs them",
    ),
    Row("GEN6_RPNSWREQ", GEN6_RPNSWREQ, handler="rps_request", note="the frequency i915 asks for"),
    Row("GEN6_RPSTAT1", GEN6_RPSTAT1, reset=_RPSTAT_AT_RPN, rw_mask=RO, note="CAGF: runs at what was asked"),
    Row("GEN6_RP_STATE_CAP", GEN6_RP_STATE_CAP, reset=RP_STATE_CAP, rw_mask=RO, note="RPn, RP1, RP0"),
    Row("GEN6_GT_GFX_RC6_LOCKED", 0x138104, rw_mask=RO, note="RC6 residency: RC6 is off on a vGPU"),
    Row("GEN6_GT_GFX_RC6", 0x138108, rw_mask=RO, note="RC6 residency: RC6 is off on a vGPU"),
    # debugfs i915_sseu_status.
    Row("GEN8_GT_SLICE_INFO", 0x138064, platforms=BDW, reset=0x1, rw_mask=RO, note="slice 0 enabled"),
    Row("GEN9_SLICE_PGCTL_ACK0", 0x804C, platforms=SKL, reset=_SLICE0_ACK, rw_mask=RO, note="slice 0, SS 0-2"),
    Row("GEN9_SLICE_PGCTL_ACK{i}", 0x8050, count=2, first=1, platforms=SKL, rw_mask=RO, note="slices 1-2: none"),
    Row(
        "GEN9_SS01_EU_PGCTL_ACK0",
        0x805C,
        platforms=SKL,
        reset=_EU_PAIRS_ACK_SSA | _EU_PAIRS_ACK_SSB,
        rw_mask=RO,
        note="8 EUs in SS 0 and 1",
    ),
    Row("GEN9_SS23_EU_PGCTL_ACK0", 0x8060, platforms=SKL, reset=_EU_PAIRS_ACK_SSA, rw_mask=RO, note="8 EUs in SS 2"),
    Row(
        "GEN9_SS01_EU_PGCTL_ACK{i}",
        0x8064,
        count=2,
        stride=8,
        first=1,
        platforms=SKL,
        rw_mask=RO,
        note="slices 1-2: none",
    ),
    Row(
        "GEN9_SS23_EU_PGCTL_ACK{i}",
        0x8068,
        count=2,
        stride=8,
        first=1,
        platforms=SKL,
        rw_mask=RO,
        note="slices 1-2: none",
    ),
)
