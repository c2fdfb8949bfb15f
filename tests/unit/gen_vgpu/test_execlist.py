"""Execlist submission and completion on the four engines: the CSB event sequences of
contract §4.2 (idle submit, completion, element switch, lite restore, preemption) in MMIO and in
the hardware status page, the CSB pointer, EXECLIST_STATUS, descriptor checks, hangs."""

from __future__ import annotations

import pytest

from gen_vgpu.engines import ENGINES, EngineId, engine_by_id
from gen_vgpu.interrupts import GtEvent
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio import gt
from gen_vgpu.mmio.engine_regs import CsbStatus as S

from .gt_rig import ENABLE, GM_SIZE, MASTER, PAGE, Rig, desc

RCS = engine_by_id(EngineId.RCS)
HWS = 0x1000
A, B, C = 0x10000, 0x20000, 0x30000  # context images (LRCAs)


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    for e in ENGINES:
        rig.enable_execlists(e, HWS + 0x1000 * ENGINES.index(e))
        rig.unmask_engine_irqs(e)
    rig.w(MASTER, ENABLE)
    for lrca in (A, B, C):
        rig.make_context(lrca)
    return rig


def events(rig: Rig, e=RCS, hws: int = HWS) -> list[tuple[int, int]]:
    """The CSB entries the guest would consume, read from the status page as i915 does,
    checked against the MMIO copy."""
    out = []
    for slot in range(rig.hwsp_index(hws) + 1):
        entry = rig.hwsp_csb(hws, slot)
        assert entry == rig.mmio_csb(e, slot)
        out.append(entry)
    return out


def test_submit_from_idle_is_idle_to_active_in_mmio_and_status_page(rig: Rig):
    rig.make_context(A, head=0x18, tail=0x58)
    rig.elsp(RCS, desc(A, 0xA1))
    # i915 wrote 5 to both pointers: the first entry goes to slot 0.
    assert rig.write_pointer(RCS) == 0 and rig.hwsp_index(HWS) == 0
    assert rig.mmio_csb(RCS, 0) == (S.IDLE_ACTIVE, 0)
    assert rig.hwsp_csb(HWS, 0) == (S.IDLE_ACTIVE, 0)
    assert rig.hwsp_csb(HWS, 1) == (0xFFFFFFFF, 0xFFFFFFFF)  # still poisoned
    [w] = rig.executor.started
    assert (w.head, w.tail, w.context_id, w.descriptor.lrca) == (0x18, 0x58, 0xA1, A)
    assert w.ring.ring_start == 0x200000
    lo, hi = rig.r(RCS.reg(er.EXECLIST_STATUS_LO)), rig.r(RCS.reg(er.EXECLIST_STATUS_HI))
    assert lo & er.EXECLIST0_VALID and lo & er.EXECLIST0_ACTIVE and not lo & er.EXECLIST1_VALID
    assert hi == 0xA1
    assert rig.iir(RCS) == GtEvent.CONTEXT_SWITCH


def test_completion_is_active_to_idle_and_moves_the_ring_head(rig: Rig):
    rig.make_context(A, head=0x18, tail=0x58)
    rig.elsp(RCS, desc(A, 0xA1))
    rig.clear_iir(RCS)
    rig.engines.complete(rig.executor.started[0])
    assert events(rig) == [(S.IDLE_ACTIVE, 0), (S.ACTIVE_IDLE | S.COMPLETE, 0xA1)]
    assert rig.ctx_head(A) == 0x58
    assert rig.iir(RCS) == GtEvent.CONTEXT_SWITCH
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_LO)) == 0 and rig.r(RCS.reg(er.EXECLIST_STATUS_HI)) == 0
    assert rig.engines[EngineId.RCS].idle


def test_ring_head_is_written_before_the_completion_entry(rig: Rig):
    rig.elsp(RCS, desc(A, 1))
    rig.gm.writes.clear()
    rig.engines.complete(rig.executor.started[0])
    addrs = [gma for gma, _ in rig.gm.writes]
    head_at = A + PAGE + 0x05 * 4
    assert addrs[0] == head_at and addrs.index(head_at) < addrs.index(HWS + er.HWSP_CSB_WRITE_INDEX_DWORD * 4)


def test_every_entry_is_written_before_the_index_that_publishes_it(rig: Rig):
    rig.gm.writes.clear()
    rig.elsp(RCS, desc(A, 1), desc(B, 2))
    rig.engines.complete(rig.executor.started[0])
    rig.engines.complete(rig.executor.started[1])
    index_at = HWS + er.HWSP_CSB_WRITE_INDEX_DWORD * 4
    csb_writes = [(gma, data) for gma, data in rig.gm.writes if HWS <= gma < HWS + PAGE]
    assert len(csb_writes) == 6  # three events, entry then index each
    for (entry_gma, entry), (idx_gma, idx) in zip(csb_writes[::2], csb_writes[1::2], strict=True):
        slot = int.from_bytes(idx, "little")
        assert idx_gma == index_at
        assert entry_gma == HWS + (er.HWSP_CSB_DWORD + 2 * slot) * 4 and len(entry) == 8


def test_two_elements_switch_then_go_idle(rig: Rig):
    rig.make_context(B, head=0x100, tail=0x180)
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_LO)) & er.EXECLIST1_VALID
    first = rig.executor.started[0]
    assert first.context_id == 0xA and len(rig.executor.started) == 1
    rig.engines.complete(first)
    second = rig.executor.started[1]
    assert (second.context_id, second.head, second.tail) == (0xB, 0x100, 0x180)
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_HI)) == 0xB
    rig.engines.complete(second)
    assert events(rig) == [
        (S.IDLE_ACTIVE, 0),
        (S.ELEMENT_SWITCH | S.COMPLETE, 0xA),
        (S.ACTIVE_IDLE | S.COMPLETE, 0xB),
    ]
    assert rig.ctx_head(A) == 0x40 and rig.ctx_head(B) == 0x180


def test_lite_restore_extends_the_running_context(rig: Rig):
    rig.make_context(A, head=0, tail=0x40)
    rig.elsp(RCS, desc(A, 0xA))
    rig.set_tail(A, 0x80)  # i915 adds a request to the running context and resubmits it
    rig.elsp(RCS, desc(A, 0xA))
    assert events(rig) == [(S.IDLE_ACTIVE, 0), (S.PREEMPTED | S.LITE_RESTORE, 0xA)]
    assert len(rig.executor.started) == 1
    rig.engines.complete(rig.executor.started[0])
    # The new segment runs on without a context switch, from the old tail to the new one.
    assert len(events(rig)) == 2
    second = rig.executor.started[1]
    assert (second.head, second.tail) == (0x40, 0x80)
    rig.engines.complete(second)
    assert events(rig)[-1] == (S.ACTIVE_IDLE | S.COMPLETE, 0xA)
    assert rig.ctx_head(A) == 0x80
    assert rig.engines[EngineId.RCS].counters.lite_restores == 1


def test_lite_restore_with_a_second_element(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA))
    rig.set_tail(A, 0x60)
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    rig.engines.complete(rig.executor.started[0])
    rig.engines.complete(rig.executor.started[1])  # A's second segment
    rig.engines.complete(rig.executor.started[2])  # B
    assert [w.context_id for w in rig.executor.started] == [0xA, 0xA, 0xB]
    assert events(rig) == [
        (S.IDLE_ACTIVE, 0),
        (S.PREEMPTED | S.LITE_RESTORE, 0xA),
        (S.ELEMENT_SWITCH | S.COMPLETE, 0xA),
        (S.ACTIVE_IDLE | S.COMPLETE, 0xB),
    ]


def test_lite_restore_without_new_work_adds_no_segment(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA))
    rig.elsp(RCS, desc(A, 0xA))
    rig.engines.complete(rig.executor.started[0])
    assert len(rig.executor.started) == 1
    assert events(rig)[-1] == (S.ACTIVE_IDLE | S.COMPLETE, 0xA)


def test_submission_while_busy_is_a_preemption_served_at_the_end_of_the_segment(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    rig.elsp(RCS, desc(C, 0xC), desc(B, 0xB))  # i915: A's breadcrumb landed before its event
    assert len(events(rig)) == 1 and len(rig.executor.started) == 1
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_LO)) & er.EXECLIST_QUEUE_FULL
    rig.engines.complete(rig.executor.started[0])  # the arbitration point
    # One PREEMPTED event (i915 promotes its pending ports on it); the old element 1 never ran
    # and is dropped with the old execlist; no idle-to-active between.
    assert events(rig) == [(S.IDLE_ACTIVE, 0), (S.PREEMPTED, 0xA)]
    assert rig.ctx_head(A) == 0x40
    assert rig.executor.started[1].context_id == 0xC
    assert not rig.r(RCS.reg(er.EXECLIST_STATUS_LO)) & er.EXECLIST_QUEUE_FULL
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_HI)) == 0xC
    rig.engines.complete(rig.executor.started[1])
    rig.engines.complete(rig.executor.started[2])
    assert [w.context_id for w in rig.executor.started] == [0xA, 0xC, 0xB]
    assert rig.executor.started[2].head == 0  # B starts from its image: it never ran
    assert events(rig)[2:] == [(S.ELEMENT_SWITCH | S.COMPLETE, 0xC), (S.ACTIVE_IDLE | S.COMPLETE, 0xB)]
    ex = rig.engines[EngineId.RCS]
    assert (ex.counters.preempt_requests, ex.counters.preemptions) == (1, 1)


def test_a_preempted_context_resumes_where_it_stopped(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA))  # [0, 0x40)
    rig.set_tail(A, 0x90)
    rig.elsp(RCS, desc(A, 0xA))  # lite restore: a second segment [0x40, 0x90)
    rig.elsp(RCS, desc(B, 0xB), desc(A, 0xA))  # preemption request, A behind B
    rig.engines.complete(rig.executor.started[0])  # end of A's first segment
    assert events(rig)[-1] == (S.PREEMPTED, 0xA)
    assert rig.ctx_head(A) == 0x40  # the image says where A stopped
    rig.engines.complete(rig.executor.started[1])
    resumed = rig.executor.started[2]
    assert (resumed.context_id, resumed.head, resumed.tail) == (0xA, 0x40, 0x90)
    rig.engines.complete(resumed)
    assert events(rig)[-2:] == [(S.ELEMENT_SWITCH | S.COMPLETE, 0xB), (S.ACTIVE_IDLE | S.COMPLETE, 0xA)]
    assert rig.ctx_head(A) == 0x90


def test_a_second_preemption_request_replaces_the_first(rig: Rig):
    rig.elsp(RCS, desc(A, 0))
    for i in range(20):  # a guest that never waits for the PREEMPTED event: nothing piles up
        rig.elsp(RCS, desc(B if i % 2 else C, i + 1))
    ex = rig.engines[EngineId.RCS]
    assert ex.queued == 1 and ex.counters.requests_replaced == 19 and ex.counters.rejected == 0
    rig.engines.complete(rig.executor.started[0])
    assert rig.executor.started[1].context_id == 20
    assert events(rig)[-1] == (S.PREEMPTED, 0)


def test_executor_that_completes_at_once():
    rig = Rig(auto=True)
    rig.enable_execlists(RCS, HWS)
    rig.make_context(A)
    rig.make_context(B)
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    assert events(rig) == [
        (S.IDLE_ACTIVE, 0),
        (S.ELEMENT_SWITCH | S.COMPLETE, 0xA),
        (S.ACTIVE_IDLE | S.COMPLETE, 0xB),
    ]
    assert rig.engines[EngineId.RCS].idle


def test_csb_pointer_wraps_after_slot_5(rig: Rig):
    """Twelve events from i915's reset value 5: slots 0..5 then 0..5 again."""
    slots = []
    for i in range(6):
        rig.elsp(RCS, desc(A, i))
        slots.append(rig.write_pointer(RCS))
        rig.engines.complete(rig.executor.started[-1])
        slots.append(rig.write_pointer(RCS))
        assert rig.hwsp_index(HWS) == slots[-1]
    assert slots == [0, 1, 2, 3, 4, 5] * 2


def test_csb_pointer_after_reset_starts_at_slot_0_and_keeps_the_read_pointer():
    rig = Rig()
    rig.masked_set(RCS.reg(er.GFX_MODE), er.GFX_RUN_LIST_ENABLE)
    ptr = RCS.reg(er.CSB_PTR)
    assert rig.r(ptr) == 0x0007  # read pointer 0, write pointer 7: nothing written
    rig.make_context(A)
    rig.w(ptr, 0x0700_0300)  # the guest consumed up to slot 3 (read pointer only)
    rig.elsp(RCS, desc(A, 1))
    assert rig.r(ptr) == 0x0300 and rig.mmio_csb(RCS, 0) == (S.IDLE_ACTIVE, 0)
    rig.w(ptr, 0x0000_FFFF)  # no select bits: nothing changes
    assert rig.r(ptr) == 0x0300


@pytest.mark.parametrize("wp,slot", [(7, 0), (0, 1), (4, 5), (5, 0), (6, 1)])
def test_next_slot(wp: int, slot: int):
    assert er.csb_next_slot(wp) == slot


@pytest.mark.parametrize("e", ENGINES, ids=lambda e: e.name)
def test_each_engine_submits_and_interrupts_in_its_own_bank(rig: Rig, e):
    hws = HWS + 0x1000 * ENGINES.index(e)
    rig.elsp(e, desc(A, 0x77))
    rig.engines.complete(rig.executor.started[0])
    assert rig.executor.started[0].engine is e
    assert events(rig, e, hws) == [(S.IDLE_ACTIVE, 0), (S.ACTIVE_IDLE | S.COMPLETE, 0x77)]
    assert rig.iir(e) == GtEvent.CONTEXT_SWITCH
    assert rig.r(MASTER) == ENABLE | 1 << e.master_bit
    others = [o for o in ENGINES if o is not e]
    assert all(rig.iir(o) == 0 and rig.engines[o.id].idle for o in others)


def test_notify_events_from_the_running_workload(rig: Rig):
    rig.elsp(RCS, desc(A, 1))
    rig.clear_iir(RCS)
    w = rig.executor.started[0]
    rig.engines.notify(w, GtEvent.USER | GtEvent.NOTIFY)
    assert rig.iir(RCS) == GtEvent.USER | GtEvent.NOTIFY


# --- refused submissions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "el0,why",
    [
        ((A | 3 << 3 | 1 << 8, 1), "element 0 not valid"),
        ((A | 1 | 3 << 3, 1), "no PPGTT bit"),
        ((A | 1 | 1 << 8, 1), "addressing mode 0"),
        ((A | 1 | 2 << 3 | 1 << 8, 1), "addressing mode 2"),
        (desc(GM_SIZE - PAGE, 1), "image runs past graphics memory"),
        (desc(0xFFFFF000, 1), "LRCA outside graphics memory"),
    ],
)
def test_bad_descriptors_are_refused_whole(rig: Rig, el0, why):
    rig.elsp(RCS, el0, desc(B, 2))
    assert rig.executor.started == [], why
    assert rig.write_pointer(RCS) == 5 and rig.iir(RCS) == 0
    assert rig.engines[EngineId.RCS].counters.rejected == 1


def test_bad_element_1_refuses_the_submission(rig: Rig):
    rig.elsp(RCS, desc(A, 1), (B | 1 | 3 << 3, 2))  # element 1 without the PPGTT bit
    assert rig.executor.started == [] and rig.write_pointer(RCS) == 5


def test_legacy_32bit_addressing_is_accepted(rig: Rig):
    rig.elsp(RCS, desc(A, 1, flags=1 | 1 << 3 | 1 << 8))
    assert len(rig.executor.started) == 1


def test_elsp_needs_execlists_enabled():
    rig = Rig()
    rig.make_context(A)
    rig.elsp(RCS, desc(A, 1))
    assert rig.executor.started == []
    rig.masked_set(RCS.reg(er.GFX_MODE), er.GFX_RUN_LIST_ENABLE)
    rig.elsp(RCS, desc(A, 1))
    assert len(rig.executor.started) == 1


def test_elsp_reads_zero_and_submits_on_the_fourth_write(rig: Rig):
    off = RCS.reg(er.ELSP)
    for value in (0, 0, 1):
        rig.w(off, value)
        assert rig.r(off) == 0
    assert rig.executor.started == []
    rig.w(off, A | 1 | 3 << 3 | 1 << 8)
    assert rig.executor.started[0].context_id == 1


def test_status_page_at_zero_is_not_written(rig: Rig):
    rig.w(RCS.reg(er.HWS_PGA), 0)
    rig.gm.writes.clear()
    rig.elsp(RCS, desc(A, 1))
    assert rig.gm.writes == [] and rig.mmio_csb(RCS, 0) == (S.IDLE_ACTIVE, 0)


def test_status_page_outside_graphics_memory_is_not_written(rig: Rig):
    rig.w(RCS.reg(er.HWS_PGA), GM_SIZE + 0x1000)
    rig.gm.writes.clear()
    rig.elsp(RCS, desc(A, 1))
    assert rig.gm.writes == [] and rig.mmio_csb(RCS, 0) == (S.IDLE_ACTIVE, 0)
    assert rig.iir(RCS) == GtEvent.CONTEXT_SWITCH


# --- hangs ---------------------------------------------------------------------------------


def test_a_hung_context_gives_no_event_and_stays_current_until_gdrst(rig: Rig, caplog):
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    hung = rig.executor.started[0]
    rig.engines.hang(hung, "scanner: MI_LOAD_REGISTER_MEM not allowed")
    assert "context hung (scanner" in caplog.text
    assert events(rig) == [(S.IDLE_ACTIVE, 0)]
    assert rig.ctx_head(A) == 0  # the guest sees its ring not consumed
    ex = rig.engines[EngineId.RCS]
    assert ex.last_hang == (hung, "scanner: MI_LOAD_REGISTER_MEM not allowed")
    # As on hardware the hung context is still the active one, with its ID: i915's engine
    # reset reads EXECLIST_STATUS_HI to find the guilty context.
    assert not ex.idle and ex.hung and ex.running is None
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_HI)) == 0xA
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_LO)) & er.EXECLIST0_ACTIVE
    rig.engines.complete(hung)  # a late report changes nothing
    assert len(events(rig)) == 1
    # i915's heartbeat behind the hung context (a lite restore of it with its kernel context
    # as element 1) and another context: nothing runs.
    rig.elsp(RCS, desc(A, 0xA), desc(C, 0xC))
    rig.elsp(RCS, desc(B, 0xB))
    assert events(rig)[-1] == (S.PREEMPTED | S.LITE_RESTORE, 0xA)
    assert rig.executor.started == [hung] and ex.queued == 1
    # The engine reset drops it all; nothing was running to cancel; the next submission runs.
    rig.w(gt.GDRST, 1 << RCS.gdrst_bit)
    assert ex.idle and not ex.hung and ex.queued == 0 and rig.executor.cancelled == []
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_HI)) == 0
    rig.elsp(RCS, desc(C, 0xC))
    rig.engines.complete(rig.executor.started[-1])
    assert [rig.mmio_csb(RCS, slot) for slot in (0, 1)] == [(S.IDLE_ACTIVE, 0), (S.ACTIVE_IDLE | S.COMPLETE, 0xC)]


def test_hangs_with_reasons_the_guest_chose_keep_one_warn_once_key(rig: Rig, caplog):
    """The reason of a hang holds guest data (an offset, a header): 400 hangs, each with its
    own reason, keep the category "context hung" once and count the rest."""
    ex = rig.engines[EngineId.RCS]
    for i in range(400):
        rig.elsp(RCS, desc(A, 0xA))
        rig.engines.hang(rig.executor.started[-1], f"command rejected at offset {i * 4:#x}: header {i:#x}")
        rig.w(gt.GDRST, 1 << RCS.gdrst_bit)
        rig.w(RCS.reg(er.CSB_PTR), 0xFFFF0707)
    assert ex.counters.hung == 400
    assert ex._once.counts == {"context hung": 400} and ex._once.other == 0
    assert caplog.text.count("context hung") == 1


def test_a_device_reset_drops_a_hung_context(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA))
    rig.engines.hang(rig.executor.started[0], "watchdog")
    rig.rf.reset()
    rig.engines.power_on()
    ex = rig.engines[EngineId.RCS]
    assert ex.idle and not ex.hung and rig.executor.cancelled == []


def test_lite_restore_replaces_a_waiting_element_1(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA), desc(B, 0xB))
    rig.set_tail(A, 0x60)
    rig.elsp(RCS, desc(A, 0xA), desc(C, 0xC))
    for i in range(3):
        rig.engines.complete(rig.executor.started[i])
    assert [w.context_id for w in rig.executor.started] == [0xA, 0xA, 0xC]
    assert events(rig)[-1] == (S.ACTIVE_IDLE | S.COMPLETE, 0xC)


def test_device_reset_cancels_and_forgets(rig: Rig):
    rig.elsp(RCS, desc(A, 0xA))
    rig.elsp(RCS, desc(B, 0xB))
    rig.rf.reset()
    rig.engines.power_on()
    assert rig.executor.cancelled == rig.executor.started[:1]
    ex = rig.engines[EngineId.RCS]
    assert ex.idle and ex.queued == 0
    assert rig.r(RCS.reg(er.CSB_PTR)) == er.CSB_PTR_RESET
    rig.elsp(RCS, desc(A, 1))
    assert len(rig.executor.started) == 1  # execlists are off again after a device reset
