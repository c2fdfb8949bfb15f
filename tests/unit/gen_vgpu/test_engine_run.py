"""Workloads run by the vGPU's engines: every command of contract §5 through the shadow GGTT
and shadow PPGTTs built from guest trees in memfd guest RAM, blits checked pixel by pixel,
rejections and the watchdog hanging one context until the engine reset, GDRST and DMA map
changes in the middle of a workload, interrupts delivered as MSI and INTx."""

from __future__ import annotations

import os
import struct

import pytest

from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.device.irq import SetIrqs
from devmodel.testing import GuestMemory
from devmodel.vfio_user.constants import IrqIndex, IrqSetFlags
from gen_vgpu.engine import regs as er
from gen_vgpu.engine.engines import ENGINES, EngineId, EngineInfo, engine_by_id
from gen_vgpu.engine.run import Watchdog
from gen_vgpu.interrupts import GtEvent
from gen_vgpu.mmio.gt import GDRST

from . import cmd_streams as c
from .engine_rig import PAGE, Rig, Tree
from .test_cmd_i915 import NULL_STATE, ctx_wa_lri, null_state_batch, request

S = er.CsbStatus
RCS = engine_by_id(EngineId.RCS)
BCS = engine_by_id(EngineId.BCS)
VCS0 = engine_by_id(EngineId.VCS0)
IDLE_ACTIVE = int(S.IDLE_ACTIVE)
DONE = int(S.ACTIVE_IDLE | S.COMPLETE)
BUF = 0x4000_0000  # a PPGTT buffer's graphics address (1 GiB: PDP slot 1 in 3-level mode)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def done(rig: Rig, engine: EngineInfo, ctx_id: int) -> bool:
    return (DONE, ctx_id) in rig.csb(engine)


def hang_reason(rig: Rig, engine_id: EngineId) -> str:
    hang = rig.dev.engines[engine_id].last_hang
    assert hang is not None
    return hang[1]


# --- stores through the shadow tables ----------------------------------------------------


@pytest.mark.parametrize("levels", [4, 3])
@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_store_data_imm_through_the_ppgtt_on_every_engine(rig: Rig, engine, levels):
    tree = Tree(rig.guest, levels)
    (page,) = tree.buffer(BUF, PAGE)
    ctx = rig.context(engine, tree)
    rig.unmask(engine)
    rig.submit(
        ctx, c.sdi(BUF + 0x10, 0xC0FFEE01) + c.sdi(BUF + 0x18, 0x1122334455667788, qword=True) + [c.MI_USER_INTERRUPT]
    )
    rig.run()
    assert rig.guest.d(page + 0x10) == 0xC0FFEE01
    assert rig.guest.q(page + 0x18) == 0x1122334455667788
    assert rig.csb(engine) == [(IDLE_ACTIVE, 0), (DONE, ctx.ctx_id)]
    assert rig.ring_head(ctx) == ctx.tail
    assert rig.iir(engine) & (GtEvent.USER | GtEvent.CONTEXT_SWITCH) == GtEvent.USER | GtEvent.CONTEXT_SWITCH


def test_a_pte_changed_between_two_submissions_takes_effect_at_the_second(rig: Rig):
    tree = Tree(rig.guest, 4)
    (first,) = tree.buffer(BUF, PAGE)
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.sdi(BUF, 1))
    rig.run()
    second = rig.guest.alloc()
    tree.map(BUF, second)
    rig.submit(ctx, c.sdi(BUF, 2))
    rig.run()
    assert rig.guest.d(first) == 1 and rig.guest.d(second) == 2


def test_writes_to_read_only_and_unmapped_pages_are_dropped(rig: Rig):
    tree = Tree(rig.guest, 4)
    ro = rig.guest.alloc()
    tree.map(BUF, ro, writable=False)
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.sdi(BUF, 0xBAD) + c.sdi(BUF + 0x20_0000, 0xBAD))  # the second is not mapped
    rig.run()
    assert rig.guest.d(ro) == 0 and done(rig, RCS, ctx.ctx_id)


def test_ggtt_stores_flushes_and_store_index(rig: Rig):
    tree = Tree(rig.guest, 4)
    rcs, bcs = rig.context(RCS, tree), rig.context(BCS, tree)
    slot = rig.gm_alloc(PAGE)
    rig.unmask(RCS)
    rig.unmask(BCS)
    rig.submit(
        rcs,
        c.sdi(slot, 0x11, ggtt=True)
        + c.pipe_control(c.PC_GLOBAL_GTT | c.PC_QW_WRITE | c.PC_NOTIFY, slot + 8, 0xAABBCCDD_00000022)
        + c.pipe_control(c.PC_STORE_DATA_INDEX | c.PC_QW_WRITE, 0x34 * 4, 0x33),
    )
    flags = c.MI_FLUSH_DW_OP_STOREDW | c.MI_FLUSH_DW_NOTIFY
    rig.submit(
        bcs,
        c.flush_dw((slot + 0x10) | c.MI_FLUSH_DW_USE_GTT, 0x44, flags)
        + c.flush_dw(0x40, 0x55, c.MI_FLUSH_DW_OP_STOREDW | c.MI_FLUSH_DW_STORE_INDEX),
    )
    rig.run()
    assert rig.gm_dword(slot) == 0x11
    assert rig.gm_qword(slot + 8) == 0xAABBCCDD_00000022
    assert rig.gm_qword(rcs.lrca + 0x34 * 4) == 0x33  # the PPHWSP is page 0 of the image
    assert rig.gm_dword(slot + 0x10) == 0x44
    assert rig.gm_dword(bcs.lrca + 0x40) == 0x55
    assert rig.iir(RCS) & GtEvent.NOTIFY and rig.iir(BCS) & GtEvent.NOTIFY


def test_lri_reaches_the_register_file_and_srm_reads_it_back(rig: Rig):
    tree = Tree(rig.guest, 4)
    (page,) = tree.buffer(BUF, PAGE)
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, ctx_wa_lri(8) + c.srm(0x7004, BUF + 4) + c.srm(0x7004, rig.hws["rcs"] + 0x100, ggtt=True))
    rig.run()
    lri = ctx_wa_lri(8)
    value = lri[1 + 2 * lri[1::2].index(0x7004) + 1]
    assert rig.r(0x7004) == value
    assert rig.guest.d(page + 4) == value and rig.gm_dword(rig.hws["rcs"] + 0x100) == value


# --- batches -------------------------------------------------------------------------------


def test_ggtt_batch_with_a_second_level_ppgtt_batch_and_chained_ppgtt_batches(rig: Rig):
    tree = Tree(rig.guest, 4)
    data = tree.buffer(BUF, PAGE)[0]
    b1, b2, b3 = (tree.buffer(BUF + (i + 1) * 0x10_0000, PAGE)[0] for i in range(3))
    ggtt_batch = rig.gm_alloc(PAGE)
    # GGTT batch -> second-level PPGTT batch b1 -> back -> SDI -> end
    rig.gm_dwords(
        ggtt_batch,
        c.bb_start(BUF + 0x10_0000, second_level=True) + c.sdi(BUF + 4, 2, ggtt=False) + [c.MI_BATCH_BUFFER_END],
    )
    rig.mem.write(b1, struct.pack("<9I", *c.sdi(BUF, 1), c.MI_BATCH_BUFFER_END, 0, 0, 0, 0))
    # ring -> PPGTT batch b2, which chains to b3, which ends (back to the ring)
    rig.mem.write(b2, struct.pack("<7I", *c.sdi(BUF + 8, 3), *c.bb_start(BUF + 0x30_0000)))
    rig.mem.write(b3, struct.pack("<5I", *c.sdi(BUF + 12, 4), c.MI_BATCH_BUFFER_END))
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.bb_start(ggtt_batch, ppgtt=False) + c.bb_start(BUF + 0x20_0000) + c.sdi(BUF + 16, 5))
    rig.run()
    assert [rig.guest.d(data + 4 * i) for i in range(5)] == [1, 2, 3, 4, 5]
    assert done(rig, RCS, ctx.ctx_id)


@pytest.mark.parametrize("gen", [8, 9])
def test_i915_record_defaults_request_with_the_null_render_state(gen: int):
    rig = Rig()
    try:
        shape, _, _ = NULL_STATE[gen]
        batch = rig.gm_alloc(4 * PAGE)
        rig.gm_write(batch, null_state_batch(shape).tobytes())
        tree = Tree(rig.guest, 4)
        ctx = rig.context(RCS, tree)
        rig.submit(ctx, request(EngineId.RCS, gen, batch, secure=True))
        rig.run()
        assert done(rig, RCS, ctx.ctx_id), rig.dev.engines[EngineId.RCS].last_hang
        assert rig.dev.runner.counters.rejected == 0
    finally:
        rig.close()


@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
def test_i915_requests_with_breadcrumbs_on_every_engine(engine):
    rig = Rig()
    try:
        tree = Tree(rig.guest, 4)
        (batch,) = tree.buffer(0x0010_0000, PAGE)
        rig.mem.write(batch, struct.pack("<2I", c.MI_BATCH_BUFFER_END, 0))
        ctx = rig.context(engine, tree)
        rig.submit(ctx, request(engine.id, 9, 0x0010_0000, secure=False))
        rig.run()
        assert done(rig, engine, ctx.ctx_id), rig.dev.engines[engine.id].last_hang
    finally:
        rig.close()


# --- blits ---------------------------------------------------------------------------------


def pixels(rig: Rig, pages: list[int], pitch: int, x: int, y: int) -> int:
    off = y * pitch + 4 * x
    return rig.guest.d(pages[off // PAGE] + off % PAGE)


@pytest.mark.parametrize("levels", [4, 3])
def test_color_and_copy_blits_pixel_by_pixel(rig: Rig, levels: int):
    tree = Tree(rig.guest, levels)
    pitch, height = 1056, 40  # rows straddle page boundaries; pages in reverse order
    src_va, dst_va = BUF, BUF + 0x10_0000
    src = tree.buffer(src_va, 11 * PAGE)
    dst = tree.buffer(dst_va, 11 * PAGE)
    ctx = rig.context(BCS, tree)
    rig.submit(
        ctx,
        c.color_blt(src_va, pitch, 0, 0, pitch // 4, height, 0xFF0000FF)
        + c.color_blt(src_va, pitch, 10, 5, 200, 30, 0xFF00FF00)
        + c.src_copy_blt(dst_va, pitch, 20, 2, 120, 22, src_va, pitch, 5, 4),
    )
    rig.run()
    assert done(rig, BCS, ctx.ctx_id), rig.dev.engines[EngineId.BCS].last_hang

    def expect_src(x: int, y: int) -> int:
        return 0xFF00FF00 if 10 <= x < 200 and 5 <= y < 30 else 0xFF0000FF

    for y in range(height):
        for x in range(pitch // 4):
            assert pixels(rig, src, pitch, x, y) == expect_src(x, y), (x, y)
            want = expect_src(x - 20 + 5, y - 2 + 4) if 20 <= x < 120 and 2 <= y < 22 else 0
            assert pixels(rig, dst, pitch, x, y) == want, (x, y)


def test_a_large_blit_spreads_over_steps_and_matches_a_memory_fill(rig: Rig):
    tree = Tree(rig.guest, 4)
    size = 4 << 20
    pages = tree.buffer(BUF, size)
    ctx = rig.context(BCS, tree)
    rig.submit(ctx, c.color_blt(BUF, 4096, 0, 0, 1024, size // 4096, 0x01020304))
    steps = rig.run()
    assert steps > 2  # the blit spreads over steps, never the whole of it in one
    assert all(rig.mem.read(p, PAGE) == b"\x04\x03\x02\x01" * 1024 for p in pages)


# --- rejections, the watchdog, resets, map changes -----------------------------------------


def test_a_rejected_ring_hangs_its_context_and_after_the_engine_reset_the_next_runs(rig: Rig, caplog):
    tree = Tree(rig.guest, 4)
    (page,) = tree.buffer(BUF, PAGE)
    bad, good = rig.context(RCS, tree), rig.context(RCS, tree)
    rig.submit(bad, c.sdi(BUF, 0xBAD) + c.lri((0x2034, 0)))  # RING_HEAD: not on the allow-list
    rig.run()
    assert rig.guest.d(page) == 0  # nothing ran: the ring is scanned before
    assert rig.csb(RCS) == [(IDLE_ACTIVE, 0)]  # no completion for the hung context
    assert "not on RCS's write allow-list" in hang_reason(rig, EngineId.RCS)
    assert "context hung" in caplog.text
    # Stuck as on hardware until the guest resets the engine (i915: GDRST after its hangcheck).
    assert rig.r(RCS.reg(er.EXECLIST_STATUS_HI)) == bad.ctx_id
    rig.w(GDRST, 1 << RCS.gdrst_bit)
    rig.submit(good, c.sdi(BUF, 0x600D))
    rig.run()
    assert rig.guest.d(page) == 0x600D and done(rig, RCS, good.ctx_id)


def test_a_rejected_ppgtt_batch_command_hangs_after_what_ran_before_it(rig: Rig):
    tree = Tree(rig.guest, 4)
    data, batch = tree.buffer(BUF, PAGE)[0], tree.buffer(BUF + 0x10_0000, PAGE)[0]
    rig.mem.write(batch, struct.pack("<7I", *c.sdi(BUF, 1), *c.sdi(rig.hws["rcs"], 2, ggtt=True)[:3]))
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.bb_start(BUF + 0x10_0000))
    rig.run()
    assert rig.guest.d(data) == 1  # scanned as it runs: the first command ran
    assert "GGTT access from a non-privileged" in hang_reason(rig, EngineId.RCS)


@pytest.mark.parametrize("ppgtt", [True, False])
def test_a_batch_that_jumps_to_itself_hits_the_watchdog(ppgtt: bool):
    rig = Rig(watchdog=Watchdog(commands=5000))
    try:
        tree = Tree(rig.guest, 4)
        if ppgtt:
            (batch,) = tree.buffer(BUF, PAGE)
            rig.mem.write(batch, struct.pack("<3I", *c.bb_start(BUF)))
            start = c.bb_start(BUF)
        else:
            batch = rig.gm_alloc(PAGE)
            rig.gm_dwords(batch, c.bb_start(batch, ppgtt=False))
            start = c.bb_start(batch, ppgtt=False)
        ctx = rig.context(RCS, tree)
        rig.submit(ctx, start)
        rig.run()
        assert hang_reason(rig, EngineId.RCS).startswith("watchdog")
        assert rig.dev.runner.counters.watchdog == 1
        ex = rig.dev.engines[EngineId.RCS]
        assert ex.hung and ex.running is None and not rig.dev.runner.running()  # stuck, not spinning
    finally:
        rig.close()


def test_the_engine_time_watchdog():
    rig = Rig(watchdog=Watchdog(engine_seconds=0.0))
    try:
        tree = Tree(rig.guest, 4)
        (batch,) = tree.buffer(BUF, PAGE)
        rig.mem.write(batch, struct.pack("<3I", *c.bb_start(BUF)))
        ctx = rig.context(VCS0, tree)
        rig.submit(ctx, c.bb_start(BUF))
        rig.run()
        assert "engine time" in hang_reason(rig, EngineId.VCS0)
    finally:
        rig.close()


def test_gdrst_in_the_middle_of_a_workload(rig: Rig):
    tree = Tree(rig.guest, 4)
    (batch,) = tree.buffer(BUF, PAGE)
    rig.mem.write(batch, struct.pack("<3I", *c.bb_start(BUF)))  # runs until reset
    (page,) = tree.buffer(BUF + 0x10_0000, PAGE)
    ctx = rig.context(BCS, tree)
    rig.submit(ctx, c.bb_start(BUF))
    for _ in range(5):
        rig.dev.tasks.run_step()
    assert rig.dev.runner.running()
    rig.w(GDRST, 1 << BCS.gdrst_bit)
    assert rig.r(GDRST) == 0 and rig.dev.engines[EngineId.BCS].idle
    assert not rig.dev.runner.running() and len(rig.dev.tasks) == 0
    assert rig.dev.runner.counters.cancelled == 1
    rig.w(BCS.reg(er.CSB_PTR), 0xFFFF0505)
    ctx2 = rig.context(BCS, tree)
    rig.submit(ctx2, c.sdi(BUF + 0x10_0000, 7))
    rig.run()
    assert rig.guest.d(page) == 7 and done(rig, BCS, ctx2.ctx_id)


def test_a_dma_unmap_during_a_workload_quiesces_it_and_it_goes_on(rig: Rig):
    tree = Tree(rig.guest, 4)
    pages = tree.buffer(BUF, 4 << 20)
    ctx = rig.context(BCS, tree)
    rig.submit(ctx, c.color_blt(BUF, 4096, 0, 0, 1024, 1024, 0xA5A5A5A5) + c.sdi(BUF, 0x5A))
    rig.dev.tasks.run_step()
    rig.dev.tasks.run_step()
    assert rig.dev.runner.running()
    # QEMU unmaps an unrelated window (the device quiesces first, as dispatch does)
    extra = GuestMemory(1 << 20)
    try:
        rig.dev.quiesce()
        rig.dev.dma.add(1 << 40, 1 << 20, PROT_READ | PROT_WRITE, extra.dup_fd(), 0)
        rig.dev.quiesce()
        rig.dev.dma.remove_range(1 << 40, 1 << 20)
    finally:
        extra.close()
    assert rig.dev.runner.counters.continued == 2
    rig.run()
    assert done(rig, BCS, ctx.ctx_id)
    assert rig.guest.d(pages[0]) == 0x5A
    assert all(rig.mem.read(p, PAGE).count(b"\xa5") == PAGE for p in pages[1:])


def test_unmapping_the_memory_a_workload_writes_sends_its_writes_to_scratch(rig: Rig):
    tree = Tree(rig.guest, 4)
    ctx = rig.context(BCS, tree)
    victim = GuestMemory(4 << 20)
    try:
        rig.dev.dma.add(1 << 40, 4 << 20, PROT_READ | PROT_WRITE, victim.dup_fd(), 0)
        for i in range(1024):
            tree.map(BUF + i * PAGE, (1 << 40) + i * PAGE)
        rig.submit(ctx, c.color_blt(BUF, 4096, 0, 0, 1024, 1024, 0xA5A5A5A5))
        # Steps until the blit has begun (how many the scan and the resync take before it
        # depends on the machine's speed, not on the device).
        for _ in range(10_000):
            rig.dev.tasks.run_step()
            if victim.read(0, 4 << 20).count(b"\xa5"):
                break
        rig.dev.quiesce()
        rig.dev.dma.remove_range(1 << 40, 4 << 20)
        rig.run()
        assert done(rig, BCS, ctx.ctx_id)
        written = victim.read(0, 4 << 20)
        assert 0 < written.count(b"\xa5") < 4 << 20  # what ran before the unmap, nothing after
    finally:
        victim.close()


def test_device_reset_cancels_running_work_and_drops_the_shadow_ppgtts(rig: Rig):
    from devmodel.device.device import ResetKind

    tree = Tree(rig.guest, 4)
    (batch,) = tree.buffer(BUF, PAGE)
    rig.mem.write(batch, struct.pack("<3I", *c.bb_start(BUF)))
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.bb_start(BUF))
    rig.dev.tasks.run_step()
    rig.dev.quiesce()
    rig.dev.reset(ResetKind.DEVICE)
    assert len(rig.dev.tasks) == 0 and not rig.dev.ppgtt.mms
    assert rig.dev.engines[EngineId.RCS].idle and rig.dev.runner.counters.cancelled == 1


def test_tlb_invalidation_resyncs_the_shadow(rig: Rig):
    tree = Tree(rig.guest, 4)
    tree.buffer(BUF, PAGE)
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.sdi(BUF, 1))
    rig.run()
    (mm,) = rig.dev.ppgtt.mms.values()
    before = mm.resyncs
    rig.w(0x4260, 1)  # GEN8_RTCR
    assert rig.r(0x4260) == 0
    rig.run()
    assert mm.resyncs == before + 1


# --- interrupts through the PCI device -----------------------------------------------------


def arm(rig: Rig, index: int) -> int:
    fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    rig.dev.set_irqs(SetIrqs(IrqSetFlags.DATA_EVENTFD, IrqSetFlags.ACTION_TRIGGER, index, 0, 1, b"", (os.dup(fd),)))
    return fd


def signals(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


@pytest.mark.parametrize("msi", [True, False])
def test_workload_interrupts_arrive_as_msi_or_intx(rig: Rig, msi: bool):
    intx, msi_fd = arm(rig, IrqIndex.INTX), arm(rig, IrqIndex.MSI)
    try:
        if msi:
            cap = rig.dev.info.msi_offset
            rig.dev.config.write(cap + 2, bytes([1, 0]))
        tree = Tree(rig.guest, 4)
        tree.buffer(BUF, PAGE)
        ctx = rig.context(RCS, tree)
        rig.unmask(RCS)
        rig.submit(ctx, c.sdi(BUF, 1) + [c.MI_USER_INTERRUPT])
        rig.run()
        # idle-to-active, user interrupt, active-to-idle: three events while pending
        if msi:
            assert signals(msi_fd) == 3 and signals(intx) == 0
        else:
            assert signals(intx) == 1 and signals(msi_fd) == 0 and rig.dev.config.status & 0x8
            bank_iir = 0x44308
            rig.w(bank_iir, rig.r(bank_iir))  # the handler clears IIR: the level drops
            assert not rig.dev.config.status & 0x8
    finally:
        rig.dev.irqs.close_all()
        os.close(intx)
        os.close(msi_fd)


# --- BAR0 widths reach the engine registers ------------------------------------------------


def test_narrow_and_wide_bar0_accesses_to_engine_registers(rig: Rig):
    dev = rig.dev
    iir = 0x44308
    imr = 0x44304
    rig.w(imr, 0)
    dev.interrupts.fire(RCS, GtEvent.USER | GtEvent.CONTEXT_SWITCH)
    assert dev.region_read(0, iir + 1, 1) == b"\x01"  # bit 8: context switch
    dev.region_write(0, iir + 1, b"\x01")  # a byte write clears only its own bits
    assert rig.r(iir) == GtEvent.USER
    mode = BCS.reg(er.GFX_MODE)
    rig.w(mode, 0xFFFF0000)
    dev.region_write(0, mode + 2, struct.pack("<H", er.GFX_RUN_LIST_ENABLE))  # mask half only
    assert rig.r(mode) == 0  # no value bits written: nothing set
    dev.region_write(0, mode, struct.pack("<I", er.GFX_RUN_LIST_ENABLE << 16 | er.GFX_RUN_LIST_ENABLE))
    assert rig.r(mode) & er.GFX_RUN_LIST_ENABLE
    tree = Tree(rig.guest, 4)
    tree.buffer(BUF, PAGE)
    rig.w(BCS.reg(er.CSB_PTR), 0xFFFF0505)
    ctx = rig.context(BCS, tree)
    rig.emit(ctx, c.sdi(BUF, 1))
    lo, hi = rig.descriptor(ctx)
    elsp = BCS.reg(er.ELSP)
    # An 8-byte write is ELSP then EXECLIST_STATUS_LO (read-only): one ELSP dword.
    dev.region_write(0, elsp, struct.pack("<Q", 0))
    rig.w(elsp, 0)
    rig.w(elsp, hi)
    rig.w(elsp, lo)
    rig.run()
    assert done(rig, BCS, ctx.ctx_id)
    (entry,) = struct.unpack("<Q", dev.region_read(0, BCS.reg(er.CSB_BASE), 8))
    assert entry == IDLE_ACTIVE  # status, then context ID 0 in the high dword


def test_g2v_ppgtt_create_shadows_ahead_and_destroy_drops_the_claim(rig: Rig):
    from gen_vgpu.mmio.regs import PVINFO_G2V_NOTIFY, PVINFO_PDP, G2vNotify

    tree = Tree(rig.guest, 4)
    tree.buffer(BUF, PAGE)
    rig.w(PVINFO_PDP, tree.roots[0])
    rig.w(PVINFO_G2V_NOTIFY, G2vNotify.PPGTT_L4_CREATE)
    rig.run()
    (mm,) = rig.dev.ppgtt.mms.values()
    assert mm.claims == 1 and mm.shadowed and mm.resyncs == 1
    rig.w(PVINFO_G2V_NOTIFY, G2vNotify.PPGTT_L4_DESTROY)
    assert not rig.dev.ppgtt.mms  # unpinned and unclaimed: gone


def test_describe_reports_engine_workload_and_interrupt_counters(rig: Rig):
    """The exit log and `inspect stats` carry what the demo summarises."""
    tree = Tree(rig.guest, 4)
    tree.buffer(BUF, PAGE)
    ctx = rig.context(BCS, tree)
    rig.unmask(BCS)
    rig.submit(ctx, c.sdi(BUF, 1) + [c.MI_USER_INTERRUPT])
    rig.run()
    lines = list(rig.dev.describe())
    execlists = next(line for line in lines if line.startswith("execlists: "))
    workloads = next(line for line in lines if line.startswith("workloads: "))
    assert "rcs submissions=0 " in execlists
    bcs = "bcs submissions=1 rejected=0 lite_restores=0 queued=0 completed=1 hung=0 cancelled=0 csb_events=2"
    assert bcs in execlists
    assert workloads.startswith("workloads: started=1 completed=1 ")
    # user interrupt and two context switches, each raising while the master enable is set
    assert "interrupts: events=3 masked_events=0 raised=3 lowered=0" in lines
