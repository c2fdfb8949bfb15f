"""The commands i915 6.1 and IGT 1.27's libraries emit beyond the contract's first set, each
decoded, checked by the scanner and executed: IGT's spinner (MI_CONDITIONAL_BATCH_BUFFER_END
and a batch that starts itself) ended by a CPU write, MI_SEMAPHORE_WAIT polling memory,
MI_MATH over the GPRs, MI_LOAD_REGISTER_REG/_MEM, the timestamps, MI_COPY_MEM_MEM,
MI_ATOMIC, MI_STORE_DATA_INDEX, MI_REPORT_HEAD, and canonical 48-bit addresses."""

from __future__ import annotations

import struct
from array import array

import pytest

from gen_vgpu.cmd import CommandRejected, Engine, Frame, decode_one, scan_batch, scan_ring
from gen_vgpu.cmd.records import (
    Atomic,
    AtomicOp,
    ColorBlt,
    CompareOp,
    CondBatchEnd,
    CopyMemMem,
    LoadRegisterMem,
    LoadRegisterReg,
    Math,
    ReportHead,
    SemaphoreWait,
    StoreDataImm,
    StoreDataIndex,
)
from gen_vgpu.cmd.scan import BufferSource
from gen_vgpu.engines import EngineId, engine_by_id
from gen_vgpu.graphics_memory import GraphicsMemory

from . import cmd_streams as c
from .engine_rig import PAGE, Rig, Tree

RCS = Engine.RCS
MEMORY = GraphicsMemory.sized(256 << 20, 64 << 20)
PPGTT_BATCH = Frame(RCS, 1, False, MEMORY)
GGTT_BATCH = Frame(RCS, 1, True, MEMORY)
HIGH = 0xFFFF_8000_0000_1000  # a canonical address: bit 47 set, copied into 63:48
RCS_BASE = 0x2000


def dec(dwords: list[int], engine: Engine = RCS) -> object:
    rec, n = decode_one(array("I", dwords), 0, engine)
    assert n == len(dwords)
    return rec


def refused(dwords: list[int], engine: Engine = RCS) -> str:
    with pytest.raises(CommandRejected) as e:
        decode_one(array("I", dwords), 0, engine)
    return e.value.reason


def batch_refused(dwords: list[int], frame: Frame = PPGTT_BATCH) -> str:
    with pytest.raises(CommandRejected) as e:
        scan_batch(BufferSource(array("I", [*dwords, c.MI_BATCH_BUFFER_END])), frame)
    return e.value.reason


# --- decoding ------------------------------------------------------------------------------


def test_canonical_addresses_are_taken_as_their_48_bits_everywhere() -> None:
    assert dec(c.sdi(HIGH, 5)) == StoreDataImm(0x8000_0000_1000, False, 4, 5)
    blt = c.color_blt(HIGH, 64, 0, 0, 4, 4, 1)
    assert dec(blt, Engine.BCS) == ColorBlt(0x8000_0000_1000, 64, 0, 0, 4, 4, 1, 0xF0)
    assert dec(c.cond_bb_end(HIGH, 1)) == CondBatchEnd(0x8000_0000_1000, False, 1)
    assert dec(c.atomic(HIGH, AtomicOp.INC)) == Atomic(0x8000_0000_1000, False, AtomicOp.INC, 4, (0, 0))
    # Not canonical: 63:48 set with bit 47 clear, or only some of 63:48 set.
    assert "sign extension" in refused(c.sdi(0xFFFF_0000_0000_1000, 5))
    assert "sign extension" in refused(c.sdi(0x0001_8000_0000_1000, 5))


def test_conditional_batch_end_and_semaphore_wait() -> None:
    assert dec(c.cond_bb_end(0x1000, c.MI_BATCH_BUFFER_END, ggtt=True)) == CondBatchEnd(0x1000, True, 0x05000000)
    assert "compare-semaphore" in refused([c.MI_COND_BATCH_BUFFER_END | 2, 0, 0x1000, 0])
    assert "length 3" in refused([c.MI_COND_BATCH_BUFFER_END | c.MI_DO_COMPARE | 1, 0, 0x1000])
    assert dec(c.semaphore_wait(0x2000, 7, c.SAD_GTE)) == SemaphoreWait(0x2000, False, 7, CompareOp.SAD_GTE_SDD)
    assert "signal wait mode" in refused([c.MI_SEMAPHORE_WAIT, 0, 0x2000, 0])
    assert "reserved" in refused([c.MI_SEMAPHORE_WAIT | c.MI_SEMAPHORE_POLL | 6 << 12, 0, 0x2000, 0])


def test_math_validates_every_alu_instruction() -> None:
    prog = [c.alu(c.ALU_LOAD, c.SRCA, 0), c.alu(c.ALU_LOAD, c.SRCB, 1), c.alu(c.ALU_ADD), c.alu(c.ALU_STORE, 2, c.ACCU)]
    assert dec(c.math(*prog)) == Math(((0x080, 0x20, 0), (0x080, 0x21, 1), (0x100, 0, 0), (0x180, 2, 0x31)))
    assert "not a GEN8/GEN9 ALU operation" in refused(c.math(c.alu(0x105)))  # SHL is GEN12
    assert "not valid" in refused(c.math(c.alu(c.ALU_LOAD, 3, 0)))  # loads go to SRCA/SRCB only
    assert "not valid" in refused(c.math(c.alu(c.ALU_STORE, 16, c.ACCU)))  # 16 GPRs
    assert "not valid" in refused(c.math(c.alu(c.ALU_ADD, 1, 0)))


def test_register_loads_copies_atomics_and_store_index() -> None:
    assert dec(c.lrr(RCS_BASE + 0x600, RCS_BASE + 0x608)) == LoadRegisterReg(0x2600, 0x2608)
    assert dec(c.lrm(RCS_BASE + 0x600, 0x3000, ggtt=True)) == LoadRegisterMem(0x2600, 0x3000, True)
    assert dec(c.copy_mem_mem(0x10, 0x20, src_ggtt=True)) == CopyMemMem(0x10, False, 0x20, True)
    assert "not dword aligned" in refused(c.copy_mem_mem(0x12, 0x20))
    add = c.atomic(0x40, AtomicOp.ADD, 5, qword=True)
    assert dec(add) == Atomic(0x40, False, AtomicOp.ADD, 8, (5, 0))
    assert "needs its operands inline" in refused(c.atomic(0x40, AtomicOp.ADD))
    assert "not aligned" in refused(c.atomic(0x44, AtomicOp.INC, qword=True))
    assert "return-data" in refused([c.MI_ATOMIC | AtomicOp.INC << 8 | 1 << 16 | 1, 0x40, 0])
    assert dec(c.store_data_index(0x40, 9)) == StoreDataIndex(0x40, 4, 9)
    assert dec(c.store_data_index(0x48, 1 << 40, qword=True)) == StoreDataIndex(0x48, 8, 1 << 40)
    assert "PPHWSP" in refused(c.store_data_index(0xFFC, 9, qword=True))
    assert dec([c.MI_REPORT_HEAD]) == ReportHead()


# --- the scanner's checks ------------------------------------------------------------------


def test_scanner_checks_for_the_new_commands() -> None:
    assert "GGTT access from a non-privileged" in batch_refused(c.cond_bb_end(0x1000, 0, ggtt=True))
    assert "GGTT access from a non-privileged" in batch_refused(c.semaphore_wait(0x1000, 0, ggtt=True))
    assert "GGTT access from a non-privileged" in batch_refused(c.copy_mem_mem(0x10, 0x20, src_ggtt=True))
    assert "GGTT access from a non-privileged" in batch_refused(c.atomic(0x40, AtomicOp.INC, ggtt=True))
    assert "outside this vGPU's graphics memory" in batch_refused(c.lrm(0x2600, 0xF000_0000, ggtt=True), GGTT_BATCH)
    assert "write allow-list" in batch_refused(c.lrr(0x2600, RCS_BASE + 0x30))  # RING_TAIL
    assert "write allow-list" in batch_refused(c.lrm(RCS_BASE + 0x234, 0x1000))  # EXECLIST_STATUS
    assert "read allow-list" in batch_refused(c.lrr(0x9400, 0x2600))
    with pytest.raises(CommandRejected, match="outside a batch"):
        scan_ring(array("I", c.cond_bb_end(0x1000, 0, ggtt=True)), RCS, MEMORY)
    seg = scan_ring(array("I", [c.MI_REPORT_HEAD, *c.store_data_index(0x40, 1)]), RCS, MEMORY)
    assert [rec for _, rec in seg.commands] == [StoreDataIndex(0x40, 4, 1)]  # REPORT_HEAD skipped


# --- execution -----------------------------------------------------------------------------

BUF = 0x4000_0000
ENG = engine_by_id(EngineId.RCS)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


def run_batch(rig: Rig, tree: Tree, batch_gpa: int, dwords: list[int], engine: EngineId = EngineId.RCS) -> int:
    """Write a PPGTT batch at BUF and submit it; returns the context id."""
    rig.mem.write(batch_gpa, struct.pack(f"<{len(dwords)}I", *dwords))
    ctx = rig.context(engine_by_id(engine), tree)
    rig.submit(ctx, c.bb_start(BUF))
    return ctx.ctx_id


def test_math_gprs_lrr_lrm_srm_and_timestamps(rig: Rig) -> None:
    tree = Tree(rig.guest, 4)
    batch, data = tree.buffer(BUF, 2 * PAGE, shuffle=False)
    out = BUF + PAGE
    rig.mem.write(data + 0x100, struct.pack("<I", 0xFFFFFFFF))
    gpr = [RCS_BASE + c.GPR + 8 * n for n in range(16)]
    prog = [
        *c.lri((gpr[0], 5), (gpr[0] + 4, 0), (gpr[1], 7), (gpr[1] + 4, 0)),
        *c.math(
            c.alu(c.ALU_LOAD, c.SRCA, 0),
            c.alu(c.ALU_LOAD, c.SRCB, 1),
            c.alu(c.ALU_ADD),
            c.alu(c.ALU_STORE, 2, c.ACCU),  # R2 = 12
            c.alu(c.ALU_SUB),
            c.alu(c.ALU_STORE, 3, c.ACCU),  # R3 = 5 - 7 = -2
            c.alu(c.ALU_STORE, 4, c.CF),  # borrow: all ones
            c.alu(c.ALU_STOREINV, 5, c.ZF),  # not zero: ~0 = all ones
        ),
        *c.lrr(gpr[2], gpr[6]),  # R6 lo = 12
        *c.lrm(gpr[7], out + 0x100),  # R7 lo = 0xFFFFFFFF from memory
        *c.srm(gpr[2], out),
        *c.srm(gpr[3], out + 4),
        *c.srm(gpr[3] + 4, out + 8),
        *c.srm(gpr[4], out + 12),
        *c.srm(gpr[5], out + 16),
        *c.srm(gpr[6], out + 20),
        *c.srm(gpr[7], out + 24),
        *c.srm(RCS_BASE + c.RING_TIMESTAMP, out + 28),
        *c.srm(RCS_BASE + c.RING_TIMESTAMP, out + 32),
        c.MI_BATCH_BUFFER_END,
    ]
    ctx_id = run_batch(rig, tree, batch, prog)
    rig.run()
    words = struct.unpack("<9I", rig.mem.read(data, 36))
    assert words[:7] == (12, 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 12, 0xFFFFFFFF)
    assert 0 < words[7] and (words[8] - words[7]) & 0xFFFFFFFF < 1 << 31  # the timestamp ticks on
    assert not rig.dev.engines[EngineId.RCS].hung and ctx_id


def test_the_blitter_timestamp_through_mmio_and_srm_is_one_clock(rig: Rig) -> None:
    """gem_latency: BCS RING_TIMESTAMP read through the BAR before and after a batch that
    stores it with MI_STORE_REGISTER_MEM; the stored value lies between the two reads."""
    tree = Tree(rig.guest, 4)
    batch, data = tree.buffer(BUF, 2 * PAGE, shuffle=False)
    bcs_timestamp = engine_by_id(EngineId.BCS).reg(c.RING_TIMESTAMP)
    before = rig.r(bcs_timestamp)
    run_batch(rig, tree, batch, [*c.srm(bcs_timestamp, BUF + PAGE), c.MI_BATCH_BUFFER_END], EngineId.BCS)
    rig.run()
    after = rig.r(bcs_timestamp)
    stored = rig.guest.d(data)
    assert before <= stored <= after and after > before
    assert not rig.dev.engines[EngineId.BCS].hung


CS_MMIO, CS_MMIO_SRC = 1 << 19, 1 << 18  # GEN11+ command-streamer-relative MMIO bits


def test_the_gen11_cs_mmio_bits_are_accepted_and_the_offsets_stay_absolute() -> None:
    """gem_wsim sets them on every generation, with absolute offsets below GEN11."""
    gpr0 = RCS_BASE + c.GPR
    lri = c.lri((gpr0 + 4, 0))
    assert lri[0] | CS_MMIO == 0x11080001  # the header the scanner refused
    assert dec([lri[0] | CS_MMIO, *lri[1:]]) == dec(lri)
    srm = c.srm(gpr0, 0x1000)
    assert dec([srm[0] | CS_MMIO, *srm[1:]]) == dec(srm)
    lrm = c.lrm(gpr0, 0x1000)
    assert dec([lrm[0] | CS_MMIO, *lrm[1:]]) == dec(lrm)
    lrr = c.lrr(RCS_BASE + 0x3A8, gpr0)
    assert dec([lrr[0] | CS_MMIO | CS_MMIO_SRC, *lrr[1:]]) == LoadRegisterReg(RCS_BASE + 0x3A8, gpr0)
    # Other reserved header bits are still refused.
    assert "reserved" in refused([lri[0] | 1 << 17, *lri[1:]]) or refused([lri[0] | 1 << 17, *lri[1:]])
    assert refused([srm[0] | CS_MMIO_SRC, *srm[1:]])


def wsim_duration_loop(base: int, result: int, ticks: int) -> list[int]:
    """gem_wsim's batch (benchmarks/gem_wsim.c, create_bb) as its dwords: CTX_TIMESTAMP into
    GPR0, then a loop that reads it into GPR1, stores ~(GPR1 - GPR0) and ends the batch with
    MI_CONDITIONAL_BATCH_BUFFER_END once that is at most ~ticks, with the CS-MMIO bits set."""
    ctx_timestamp, gpr0, gpr1 = base + 0x3A8, base + c.GPR, base + c.GPR + 8
    lrr = c.MI_LOAD_REGISTER_REG | CS_MMIO | CS_MMIO_SRC
    head = [c.lri((gpr0 + 4, 0))[0] | CS_MMIO, gpr0 + 4, 0, lrr, ctx_timestamp, gpr0, c.MI_NOOP]
    loop = [
        c.MI_ARB_CHECK,
        c.lri((gpr1 + 4, 0))[0] | CS_MMIO, gpr1 + 4, 0,
        lrr, ctx_timestamp, gpr1,
        *c.math(c.alu(c.ALU_LOAD, c.SRCA, 1), c.alu(c.ALU_LOAD, c.SRCB, 0), c.alu(c.ALU_SUB),
                c.alu(c.ALU_STOREINV, 1, c.ACCU)),
        c.srm(gpr1, result)[0] | CS_MMIO, gpr1, c.lo(result), c.hi(result),
        *[dw for _ in range(8) for dw in c.store_data_index(2048, 0)],
        *c.cond_bb_end(result, ~ticks & 0xFFFFFFFF),
    ]
    jump = BUF + 4 * len(head)
    return [*head, *loop, *c.bb_start(jump)]


def test_gem_wsims_duration_loop_runs_for_its_context_time(rig: Rig) -> None:
    tree = Tree(rig.guest, 4)
    batch, data = tree.buffer(BUF, 2 * PAGE, shuffle=False)
    ticks = 12_500  # 1 ms at BDW's 12.5 MHz
    ctx_id = run_batch(rig, tree, batch, wsim_duration_loop(RCS_BASE, BUF + PAGE, ticks))
    rig.run()
    execlist = rig.dev.engines[EngineId.RCS]
    assert execlist.running is None and not execlist.hung and ctx_id
    elapsed = ~rig.guest.d(data) & 0xFFFFFFFF
    assert ticks <= elapsed < 1 << 31
    assert rig.dev.runner.counters.completed == 1
    # Its MI_STORE_DATA_INDEX padding, privileged, ran as no-ops that flag the violation.
    assert rig.r(RCS_BASE + 0xB0) & 1 << 2  # EIR: CP_PRIV


def test_copy_atomics_store_index_and_a_canonical_store(rig: Rig) -> None:
    tree = Tree(rig.guest, 4)
    batch, data = tree.buffer(BUF, 2 * PAGE, shuffle=False)
    (high,) = tree.buffer(HIGH & ((1 << 48) - 1), PAGE)
    out = BUF + PAGE
    rig.mem.write(data, struct.pack("<IIQQI", 0xABCD, 0, 10, 3, 40))
    prog = [
        *c.copy_mem_mem(out + 4, out),  # dword 1 = 0xABCD
        *c.atomic(out + 8, AtomicOp.INC, qword=True),  # 11
        *c.atomic(out + 16, AtomicOp.CMP_WR, 3, 99, qword=True),  # 3 == 3: 99
        *c.atomic(out + 24, AtomicOp.RSUB, 50),  # 50 - 40 = 10
        *c.sdi(HIGH + 8, 0x1234),  # bits 63:48 set: hardware ignores them
        c.MI_BATCH_BUFFER_END,
    ]
    ctx = rig.context(ENG, tree)
    rig.mem.write(batch, struct.pack(f"<{len(prog)}I", *prog))
    rig.submit(ctx, [*c.bb_start(BUF), *c.store_data_index(0x100, 0x5EED)])  # store-index: the ring only
    rig.run()
    assert struct.unpack("<IIQQI", rig.mem.read(data, 28)) == (0xABCD, 0xABCD, 11, 99, 10)
    assert rig.gm_dword(ctx.lrca + 0x100) == 0x5EED  # the PPHWSP is page 0 of the context image
    assert rig.guest.d(high + 8) == 0x1234
    assert not rig.dev.engines[EngineId.RCS].hung


def spinner(batch_va: int, condition_va: int) -> list[int]:
    """IGT's spinner (lib/igt_dummyload.c, GEN8+): arbitration points, a conditional end on a
    dword the CPU writes, and a start of the batch itself."""
    return [
        c.MI_ARB_CHECK,
        c.MI_NOOP,
        *c.cond_bb_end(condition_va, c.MI_BATCH_BUFFER_END),
        *c.bb_start(batch_va),
    ]


@pytest.mark.parametrize("how", ["condition", "bb_end"])
def test_a_spinner_runs_until_the_cpu_ends_it_and_sleeps_meanwhile(rig: Rig, how: str) -> None:
    tree = Tree(rig.guest, 4)
    batch, data = tree.buffer(BUF, 2 * PAGE, shuffle=False)
    rig.mem.write(data, struct.pack("<I", 0xFFFFFFFF))  # the condition: greater than BB_END, spin
    ctx = rig.context(ENG, tree)
    prog = spinner(BUF, BUF + PAGE)
    rig.mem.write(batch, struct.pack(f"<{len(prog)}I", *prog))
    rig.submit(ctx, c.bb_start(BUF))
    run = rig.dev.runner._runs[EngineId.RCS]
    rig.run_until(lambda: run.polls >= 50)
    execlist = rig.dev.engines[EngineId.RCS]
    assert execlist.running is not None and not execlist.hung  # still busy: no hang declared
    assert not rig.dev.tasks.has_ready()  # between laps it sleeps: nothing spins the loop
    if how == "condition":
        rig.mem.write(data, struct.pack("<I", c.MI_BATCH_BUFFER_END))
    else:
        rig.mem.write(batch, struct.pack("<I", c.MI_BATCH_BUFFER_END))  # over the MI_ARB_CHECK
    rig.run_until(lambda: execlist.running is None)
    assert not execlist.hung and rig.dev.runner.counters.completed == 1


def test_a_semaphore_wait_holds_the_batch_until_memory_says_go(rig: Rig) -> None:
    tree = Tree(rig.guest, 4)
    batch, data = tree.buffer(BUF, 2 * PAGE, shuffle=False)
    prog = [*c.semaphore_wait(BUF + PAGE, 1, c.SAD_EQ), *c.sdi(BUF + PAGE + 8, 0x600D), c.MI_BATCH_BUFFER_END]
    ctx = rig.context(ENG, tree)
    rig.mem.write(batch, struct.pack(f"<{len(prog)}I", *prog))
    rig.submit(ctx, c.bb_start(BUF))
    run = rig.dev.runner._runs[EngineId.RCS]
    rig.run_until(lambda: run.polls >= 20)
    assert rig.guest.d(data + 8) == 0 and rig.dev.engines[EngineId.RCS].running is not None
    rig.mem.write(data, struct.pack("<I", 1))
    rig.run_until(lambda: rig.dev.engines[EngineId.RCS].running is None)
    assert rig.guest.d(data + 8) == 0x600D and not rig.dev.engines[EngineId.RCS].hung


def test_the_engine_reports_the_batch_it_is_in(rig: Rig) -> None:
    """RING_BBADDR/_UDW and RING_BBSTATE, as i915's error capture reads them."""
    tree = Tree(rig.guest, 4)
    (batch,) = tree.buffer(HIGH & ((1 << 48) - 1), PAGE)
    rig.mem.write(batch, struct.pack("<I", c.MI_BATCH_BUFFER_END))
    ctx = rig.context(ENG, tree)
    rig.submit(ctx, c.bb_start(HIGH & ((1 << 48) - 1)))
    rig.run()
    assert rig.r(RCS_BASE + 0x140) == 0x1000 and rig.r(RCS_BASE + 0x168) == 0x8000
    assert rig.r(RCS_BASE + 0x110) == 1 << 5  # PPGTT
