"""GT registers of contract §4.3 and the engines' ring registers of §4.1: GDRST in the middle
of a workload, RING_RESET_CTL, MI_MODE idle, EIR/EMR/ESR, TLB invalidation, the headless fuses,
power wells, LCPLL, FUSE2/EU_DISABLE, the pcode mailbox; the log of unlisted registers."""

from __future__ import annotations

import logging

import pytest

from devmodel.device.registers import RegisterFile
from gen_vgpu.engines import ENGINES, EngineId, engine_by_id
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio import gt, gt_status, regs
from gen_vgpu.mmio.engine_regs import CsbStatus as S
from gen_vgpu.mmio.table import table_for
from gen_vgpu.mmio.unlisted import UnlistedLog
from gen_vgpu.platform import Platform

from .gt_rig import ENABLE, MASTER, Rig, desc

RCS = engine_by_id(EngineId.RCS)
BCS = engine_by_id(EngineId.BCS)
A, B = 0x10000, 0x20000
HWS = 0x1000


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    for i, e in enumerate(ENGINES):
        rig.enable_execlists(e, HWS + 0x1000 * i)
        rig.unmask_engine_irqs(e)
    rig.w(MASTER, ENABLE)
    rig.make_context(A)
    rig.make_context(B)
    return rig


# --- GDRST ---------------------------------------------------------------------------------


def test_gdrst_of_rcs_mid_workload(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    rig.elsp(RCS, desc(B, 0xC))  # queued
    rig.elsp(BCS, desc(B, 0xB))
    rcs_w, bcs_w = rig.executor.started
    rig.w(gt.GDRST, 1 << RCS.gdrst_bit)
    assert rig.r(gt.GDRST) == 0  # i915 polls for 0: done at once
    assert rig.executor.cancelled == [rcs_w]
    ex = rig.engines[EngineId.RCS]
    assert ex.idle and ex.queued == 0 and ex.running is None
    assert rig.r(RCS.reg(er.CSB_PTR)) == er.CSB_PTR_RESET
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_LO)) == 0 and rig.r(RCS.reg(er.EXECLIST_STATUS_HI)) == 0
    # The other engine goes on.
    assert rig.engines[EngineId.BCS].running is bcs_w
    rig.engines.complete(bcs_w)
    assert rig.mmio_csb(BCS, 1) == (S.ACTIVE_IDLE | S.COMPLETE, 0xB)
    # A late report of the cancelled workload changes nothing.
    rig.engines.complete(rcs_w)
    assert rig.r(RCS.reg(er.CSB_PTR)) == er.CSB_PTR_RESET and rig.ctx_head(A) == 0
    # The engine serves the next submission; after the reset the entry goes to slot 0.
    rig.elsp(RCS, desc(A, 0xD))
    assert rig.write_pointer(RCS) == 0 and rig.mmio_csb(RCS, 0) == (S.IDLE_ACTIVE, 0)
    assert rig.executor.started[-1].context_id == 0xD


def test_gdrst_forgets_a_half_written_elsp(rig: Rig):
    rig.w(RCS.reg(er.ELSP), 0)
    rig.w(RCS.reg(er.ELSP), 0)
    rig.w(gt.GDRST, 1 << RCS.gdrst_bit)
    rig.elsp(RCS, desc(A, 1))
    assert rig.executor.started[0].context_id == 1


def test_gdrst_full_resets_every_engine(rig: Rig):
    for e in ENGINES:
        rig.elsp(e, desc(A, 1))
    rig.w(gt.GDRST, gt.GDRST_FULL)
    assert len(rig.executor.cancelled) == 4
    assert all(rig.engines[e.id].idle and rig.r(e.reg(er.CSB_PTR)) == er.CSB_PTR_RESET for e in ENGINES)
    assert rig.r(gt.GDRST) == 0


@pytest.mark.parametrize("e", ENGINES, ids=lambda e: e.name)
def test_gdrst_engine_bits(rig: Rig, e):
    for o in ENGINES:
        rig.elsp(o, desc(A, 1))
    rig.w(gt.GDRST, 1 << e.gdrst_bit)
    assert [w.engine for w in rig.executor.cancelled] == [e]


# --- per-engine registers ------------------------------------------------------------------


def test_ring_reset_ctl_is_ready_at_once(rig: Rig):
    off = RCS.reg(er.RING_RESET_CTL)
    assert rig.r(off) == 0
    rig.masked_set(off, er.RESET_CTL_REQUEST_RESET)
    assert rig.r(off) == er.RESET_CTL_REQUEST_RESET | er.RESET_CTL_READY_TO_RESET
    rig.masked_clear(off, er.RESET_CTL_REQUEST_RESET)
    assert rig.r(off) == 0
    rig.masked_set(off, er.RESET_CTL_READY_TO_RESET)  # not the guest's to set
    assert rig.r(off) == 0


def test_mi_mode_idle_while_stopped_and_idle(rig: Rig):
    off = RCS.reg(er.MI_MODE)
    assert not rig.r(off) & er.MODE_IDLE
    rig.elsp(RCS, desc(A, 1))
    rig.masked_set(off, er.STOP_RING)
    assert rig.r(off) & (er.STOP_RING | er.MODE_IDLE) == er.STOP_RING  # busy
    rig.engines.complete(rig.executor.started[0])
    assert rig.r(off) & er.MODE_IDLE
    rig.masked_clear(off, er.STOP_RING)
    assert not rig.r(off) & er.MODE_IDLE
    rig.masked_set(off, er.MODE_IDLE)  # read-only
    assert not rig.r(off) & er.MODE_IDLE


def test_mi_mode_is_masked_and_keeps_other_bits(rig: Rig):
    off = BCS.reg(er.MI_MODE)
    rig.masked_set(off, 0x0001)
    rig.w(off, 0x0000_FFFF)  # no select bits
    assert rig.r(off) == 0x0001


def test_eir_emr_esr(rig: Rig):
    eir, emr, esr = (RCS.reg(o) for o in (er.EIR, er.EMR, er.ESR))
    rig.rf.set(eir, 0x11)  # as if errors had been latched
    rig.w(eir, 0x01)
    assert rig.r(eir) == 0x10
    rig.w(emr, 0xFFFFFFEF)
    assert rig.r(emr) == 0xFFFFFFEF
    rig.w(esr, 0xFFFFFFFF)
    assert rig.r(esr) == 0


def test_ring_registers_are_plain(rig: Rig):
    for off in (er.RING_TAIL, er.RING_HEAD, er.RING_START, er.RING_CTL, er.HWSTAM, er.RING_IMR, er.HWS_PGA):
        rig.w(BCS.reg(off), 0x12345678)
        assert rig.r(BCS.reg(off)) == 0x12345678


def test_context_control_and_gfx_mode_are_masked(rig: Rig):
    for off in (er.CONTEXT_CONTROL, er.GFX_MODE):
        reg = RCS.reg(off)
        before = rig.r(reg)
        rig.w(reg, 0x0000_0008)
        assert rig.r(reg) == before
        rig.masked_set(reg, 0x0008)
        assert rig.r(reg) == before | 0x8


# --- GT-wide registers ---------------------------------------------------------------------


@pytest.mark.parametrize("off", gt.TLB_INVALIDATION, ids=hex)
def test_tlb_invalidation_self_clears_and_resyncs(rig: Rig, off: int):
    rig.w(off, 1)
    assert rig.r(off) == 0 and rig.tlb_invalidations == 1
    rig.w(off, 0)
    assert rig.tlb_invalidations == 1


def test_bdw_fuses():
    rig = Rig(Platform.BDW)
    assert rig.r(gt.FUSE_STRAP) == 1 << 30
    rig.w(gt.FUSE_STRAP, 0)
    assert rig.r(gt.FUSE_STRAP) == 1 << 30
    assert rig.r(gt.GEN8_FUSE2) == 0x02000000
    assert gt.SKL_DFSM not in rig.rf.regs and gt.SKL_FUSE_STATUS not in rig.rf.regs


def test_skl_fuses():
    rig = Rig(Platform.SKL)
    assert rig.r(gt.SKL_DFSM) == (1 << 30) | (1 << 28) | (1 << 21)
    assert rig.r(gt.SKL_FUSE_STATUS) == 0x8E000000
    rig.w(gt.SKL_FUSE_STATUS, 0)
    assert rig.r(gt.SKL_FUSE_STATUS) == 0x8E000000
    assert rig.r(gt.GEN8_FUSE2) == 0x02800000
    assert gt.FUSE_STRAP not in rig.rf.regs


def test_skl_guc_is_held_in_reset_whatever_gdrst_does():
    """i915's __uc_sanitize resets the GuC through GDRST and then warns unless GUC_STATUS says
    its microcontroller is in reset; BDW has no GuC and no such register."""
    rig = Rig(Platform.SKL)
    assert rig.r(gt.GUC_STATUS) & gt.GUC_STATUS_MIA_IN_RESET
    rig.w(gt.GDRST, 1 << 5)  # GEN9_GRDOM_GUC
    assert rig.r(gt.GDRST) == 0
    rig.w(gt.GUC_STATUS, 0)
    assert rig.r(gt.GUC_STATUS) & gt.GUC_STATUS_MIA_IN_RESET
    assert gt.GUC_STATUS not in Rig(Platform.BDW).rf.regs


@pytest.mark.parametrize("platform", list(Platform))
def test_eu_disable_reads_zero(platform):
    rig = Rig(platform)
    for off in gt.EU_DISABLE:
        rig.w(off, 0xFFFFFFFF)
        assert rig.r(off) == 0
    rig.w(gt.GEN8_FUSE2, 0)
    assert rig.r(gt.GEN8_FUSE2) != 0


@pytest.mark.parametrize("off", gt.HSW_PWR_WELL_CTL, ids=hex)
def test_power_well_state_follows_request(rig: Rig, off: int):
    rig.w(off, 1 << 31)  # BDW: well 15
    assert rig.r(off) == (1 << 31) | (1 << 30)
    rig.w(off, (1 << 31) | (1 << 29) | (1 << 3) | (1 << 1))  # SKL: PW2, PW1, MISC_IO, DDI
    assert rig.r(off) == 0xF000000F
    rig.w(off, 1 << 30)  # a state bit alone is not a request
    assert rig.r(off) == 0


def test_lcpll_locked_and_never_disabled(rig: Rig):
    assert rig.r(gt.LCPLL_CTL) == 1 << 30
    rig.w(gt.LCPLL_CTL, 0xFFFFFFFF)
    value = rig.r(gt.LCPLL_CTL)
    assert value & (1 << 30) and not value & ((1 << 31) | (1 << 21))
    rig.w(gt.LCPLL_CTL, 0)
    assert rig.r(gt.LCPLL_CTL) == 1 << 30


def test_pcode_mailbox_completes_at_once(rig: Rig):
    rig.w(gt.GEN6_PCODE_DATA, 0xAAAA)
    rig.w(gt.GEN6_PCODE_DATA1, 0xBBBB)
    rig.w(gt.GEN6_PCODE_MAILBOX, (1 << 31) | 0x1_05)  # ready | param | command
    value = rig.r(gt.GEN6_PCODE_MAILBOX)
    assert not value & (1 << 31) and value & 0xFF == 0
    assert rig.r(gt.GEN6_PCODE_DATA) == 0xAAAA and rig.r(gt.GEN6_PCODE_DATA1) == 0xBBBB
    rig.w(gt.GEN6_PCODE_MAILBOX, 0x17)  # without ready: just stored
    assert rig.r(gt.GEN6_PCODE_MAILBOX) == 0x17


def test_ppat_is_plain(rig: Rig):
    for off in gt.PPAT:
        rig.w(off, 0x3B2B1B0B)
        assert rig.r(off) == 0x3B2B1B0B


def test_register_file_reset_restores_power_on_values(rig: Rig):
    rig.w(gt.HSW_PWR_WELL_CTL[1], 1 << 31)
    rig.w(gt.GEN6_PCODE_DATA, 5)
    rig.rf.reset()
    assert rig.r(gt.HSW_PWR_WELL_CTL[1]) == 0 and rig.r(gt.GEN6_PCODE_DATA) == 0
    assert rig.r(gt.FUSE_STRAP) == 1 << 30 and rig.r(gt.LCPLL_CTL) == 1 << 30


# --- unlisted registers ---------------------------------------------------------------------


def test_unlisted_registers_are_logged_once_each(caplog):
    rig = Rig()
    log = UnlistedLog(table_for(Platform.BDW, False).plain_ranges())
    log.attach(rig.rf)
    caplog.set_level(logging.INFO, logger="gen_vgpu.mmio.unlisted")
    rig.r(0x2094)  # RING_NOPID: not in the contract
    rig.r(0x2094)
    rig.w(0x2094, 1)
    rig.w(0x9400, 0x10001)  # a GT register the contract does not list
    rig.w(0xE4F0, 0x10001)  # a workaround register: declared
    rig.r(gt.GDRST)  # listed
    rig.r(regs.PVINFO_BASE + 0x800)  # the PVINFO page is listed
    rig.w(0x100018, 7)  # fence 3 (plain, listed)
    rig.w(0x100020, 7)  # fence 4: beyond fence_num
    rig.r(0x145998)  # MCHBAR mirror
    assert list(log.seen) == [0x2094, 0x9400, 0x100020]
    assert log.seen[0x2094] == [2, 1]
    lines = [r.getMessage() for r in caplog.records if r.name == "gen_vgpu.mmio.unlisted"]
    assert lines == [
        "unlisted register 0x02094 first read",
        "unlisted register 0x09400 first written",
        "unlisted register 0x100020 first written",
    ]
    assert rig.r(0x2094) == 1  # still plain storage
    assert log.summary()[0] == "0x02094 reads=3 writes=1"


def test_skl_lists_its_mocs_tables():
    rf = RegisterFile(regs.MMIO_SIZE)
    log = UnlistedLog(table_for(Platform.SKL, False).plain_ranges())
    log.attach(rf)
    rf.write32(0xC800, 1)
    rf.write32(0xB020, 1)
    assert log.seen == {}
    bdw = UnlistedLog(table_for(Platform.BDW, False).plain_ranges())
    bdw.attach(rf)
    rf.write32(0xC800, 1)
    assert list(bdw.seen) == [0xC800]


# --- what i915 reads to report: RPS, sseu, faults ---------------------------------------------


def test_rps_range_and_requested_frequency_bdw():
    rig = Rig(Platform.BDW)
    cap = rig.r(gt_status.GEN6_RP_STATE_CAP)
    rp0, rp1, rpn = cap & 0xFF, cap >> 8 & 0xFF, cap >> 16 & 0xFF
    assert rp0 > rp1 >= rpn > 0  # i915 enables RPS only when RP0 > RPn
    assert (rig.r(gt_status.GEN6_RPSTAT1) >> 7 & 0x7F) == rpn  # CAGF at power-on
    rig.w(gt_status.GEN6_RPNSWREQ, 0x10 << 24)  # HSW_FREQUENCY(0x10): 800 MHz
    assert rig.r(gt_status.GEN6_RPSTAT1) == 0x10 << 7  # HSW_CAGF
    rig.w(gt_status.GEN6_RP_STATE_CAP, 0)
    assert rig.r(gt_status.GEN6_RP_STATE_CAP) == cap


def test_rps_range_and_requested_frequency_skl():
    rig = Rig(Platform.SKL)
    cap = rig.r(gt_status.GEN6_RP_STATE_CAP)
    assert cap & 0xFF > cap >> 16 & 0xFF > 0
    assert rig.r(gt_status.GEN6_RPSTAT1) >> 23 == 3 * (cap >> 16 & 0xFF)  # in SKL's 16.67 MHz unit
    rig.w(gt_status.GEN6_RPNSWREQ, 45 << 23)  # GEN9_FREQUENCY(45): 750 MHz
    assert rig.r(gt_status.GEN6_RPSTAT1) >> 23 == 45  # GEN9_CAGF


def test_skl_sseu_acks_count_one_slice_of_24_eus():
    rig = Rig(Platform.SKL)
    slices = [rig.r(0x804C + 4 * s) & 1 for s in range(3)]
    eus = sum(
        2 * bin(rig.r(0x805C + 8 * s + 4 * (ss // 2)) & (0x55 << 8 * (ss % 2))).count("1")
        for s in range(3)
        for ss in range(3)
    )
    assert slices == [1, 0, 0] and eus == 24
    assert Rig(Platform.BDW).r(0x138064) & 7 == 1  # GEN8_GT_SLICE_INFO


def test_no_fault_and_no_error_reported():
    rig = Rig()
    for off in (0x4094, 0x4B10, 0x4B14, 0x40A0, 0x138104, 0x138108):
        assert rig.r(off) == 0
        rig.w(off, 0xFFFFFFFF)
        assert rig.r(off) == 0
