"""A hostile guest against the engines: random programs of ELSP storms, garbage CSB pointers,
GDRST storms, lying ring heads and tails, rings and batches of random dwords, garbage and
self-referencing page tables, context images pointing anywhere. Whatever the guest does, the
device raises nothing out of its handlers or its tasks, every workload ends (completed or
hung) within the watchdog, nothing is reached outside the DMA windows (the tests run with
guard pages around every window), and after a reset of the engines a well-behaved context
still runs.
"""

from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen_vgpu.cmd import CommandRejected, Engine, scan_ring
from gen_vgpu.engine import context as cx
from gen_vgpu.engine.run import Watchdog
from gen_vgpu.engines import ENGINES, EngineId, engine_by_id
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio.gt import GDRST, GDRST_FULL

from . import cmd_streams as c
from .engine_rig import GGTT_GPA, PAGE, Rig, Tree

RCS = engine_by_id(EngineId.RCS)
BUF = 0x4000_0000

OPS = (
    "elsp",
    "csb_ptr",
    "gdrst",
    "gfx_mode",
    "hws_pga",
    "ring_reg",
    "garbage_ring",
    "lying_tail",
    "garbage_tables",
    "self_tables",
    "garbage_image",
    "random_mmio",
)


def hostile_step(rig: Rig, rng: random.Random, op: str) -> None:
    e = ENGINES[rng.randrange(len(ENGINES))]
    word = rng.getrandbits(32)
    if op == "elsp":
        for _ in range(rng.choice([1, 3, 4, 8])):
            rig.w(e.reg(er.ELSP), rng.choice([word, rng.getrandbits(32), 0, 0xFFFFFFFF]))
    elif op == "csb_ptr":
        rig.w(e.reg(er.CSB_PTR), word)
    elif op == "gdrst":
        for _ in range(rng.choice([1, 10])):
            rig.w(GDRST, rng.getrandbits(8))
    elif op == "gfx_mode":
        rig.w(e.reg(er.GFX_MODE), word)
    elif op == "hws_pga":
        rig.w(e.reg(er.HWS_PGA), word & ~0xFFF)
    elif op == "ring_reg":
        rig.w(e.reg(rng.choice([er.RING_HEAD, er.RING_TAIL, er.RING_START, er.RING_CTL])), word)
    elif op == "random_mmio":
        rig.w(rng.randrange(0, 2 << 20, 4), word)
    else:
        tree = Tree(rig.guest, rng.choice([3, 4]))
        ctx = rig.context(e, tree)
        if op == "garbage_ring":
            rig.emit(ctx, [rng.getrandbits(32) for _ in range(rng.randrange(1, 64))])
        elif op == "lying_tail":
            rig.gm_dwords(ctx.lrca + PAGE + cx.CTX_RING_TAIL * 4, [word])
            rig.gm_dwords(ctx.lrca + PAGE + cx.CTX_RING_HEAD * 4, [rng.getrandbits(32)])
        elif op in ("garbage_tables", "self_tables"):
            for root in tree.roots:
                for i in range(512):
                    if op == "garbage_tables":
                        entry = rng.getrandbits(64)
                    else:  # every entry points at a table of the tree itself, or at the root
                        entry = rng.choice(tree.roots) | 3
                    rig.guest.set_q(root + 8 * i, entry)
            rig.emit(ctx, c.sdi(BUF + rng.randrange(0, 1 << 30, 8), word) + c.bb_start(rng.getrandbits(47) & ~7))
        elif op == "garbage_image":
            rig.mem.write(GGTT_GPA + ctx.lrca, rng.randbytes(2 * PAGE))
        lo, hi = rig.descriptor(ctx)
        if rng.random() < 0.3:
            lo ^= rng.getrandbits(32)  # a descriptor that lies too
        for value in (0, 0, hi, lo):
            rig.w(e.reg(er.ELSP), value)
    # Every workload ends, by completion, rejection or the command limit; one that polls
    # memory sleeps between looks, so its timers are fired early.
    rig.run_until(lambda: not rig.dev.runner.running())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=12))
def test_a_hostile_guest_cannot_break_the_engines(seed: int, ops: list[str]) -> None:
    rng = random.Random(seed)
    rig = Rig(watchdog=Watchdog(commands=2000))
    try:
        for op in ops:
            hostile_step(rig, rng, op)
        assert not rig.dev.runner.running()
        assert rig.dev.tasks.stats.failed == 0, "a task raised"
        # The well-behaved guest takes over: it resets the engines and starts over.
        rig.w(GDRST, GDRST_FULL)
        for e in ENGINES:
            rig.enable_execlists(e)
        tree = Tree(rig.guest, 4)
        (page,) = tree.buffer(BUF, PAGE)
        ctx = rig.context(RCS, tree)
        rig.submit(ctx, c.sdi(BUF + 16, 0x5AFE))
        rig.run()
        assert rig.guest.d(page + 16) == 0x5AFE
        assert rig.ring_head(ctx) == ctx.tail
    finally:
        rig.close()


@pytest.mark.parametrize("op", OPS)
def test_each_hostile_act_alone(op: str) -> None:
    rig = Rig(watchdog=Watchdog(commands=2000))
    try:
        for seed in range(5):
            hostile_step(rig, random.Random(seed), op)
        assert rig.dev.tasks.stats.failed == 0
        assert not rig.dev.runner.running()
        if op in ("garbage_ring", "garbage_tables", "self_tables"):
            # The acts reached the engines and were refused or cut short; a completion is no
            # proof of that (a batch read through garbage tables may well end cleanly).
            counters = rig.dev.runner.counters
            assert counters.rejected + counters.watchdog > 0, counters
            if op == "garbage_ring":  # rings of random dwords: none of these five is a valid program
                assert counters.completed == 0, counters
    finally:
        rig.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dwords=st.lists(st.integers(0, 2**32 - 1) | st.sampled_from([0, c.MI_ARB_CHECK, c.MI_USER_INTERRUPT]), min_size=1)
)
def test_a_ring_is_refused_exactly_when_the_scanner_refuses_it(dwords: list[int]) -> None:
    """The engine runs what the scanner accepts and hangs, with the scanner's reason, what it
    refuses; a refused ring runs nothing (its store never lands)."""
    rig = Rig(watchdog=Watchdog(commands=2000))
    try:
        tree = Tree(rig.guest, 4)
        (page,) = tree.buffer(BUF, PAGE)
        ctx = rig.context(RCS, tree)
        ring = c.sdi(BUF, 0x600D) + dwords
        ring += [c.MI_NOOP] * (len(ring) % 2)  # the ring as the engine sees it: Rig.emit pads to a qword
        try:
            scan_ring(array("I", ring), Engine.RCS, rig.dev.graphics_memory)
            verdict = None
        except CommandRejected as e:
            verdict = str(e)
        rig.submit(ctx, ring)
        rig.run_until(lambda: not rig.dev.runner.running())
        counters = rig.dev.runner.counters
        if verdict is not None:
            assert counters.rejected == 1 and counters.completed == 0
            assert hang_reason(rig) == f"command rejected: {verdict}"
            assert rig.guest.d(page) == 0  # scanned before anything ran
        else:
            assert counters.rejected == 0 and rig.guest.d(page) == 0x600D
    finally:
        rig.close()


def hang_reason(rig: Rig) -> str:
    hang = rig.dev.engines[EngineId.RCS].last_hang
    assert hang is not None
    return hang[1]
