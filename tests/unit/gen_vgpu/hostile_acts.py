"""Hostile MMIO writes a guest can repeat at will, and what the device holds after them.

Each act is a stream of BAR0 writes through the device's own region_write, as QEMU delivers
posted writes: many arrive before the loop runs a step, so one step runs every ``STEPS_EVERY``
writes (a loop turn serves what the socket holds, then one step), and the queue is run to idle
at the end. A :class:`Rig` with a workload already run gives the device a shadowed PPGTT, so a
TLB invalidation has real work to do. Used by the bound tests (tests/unit/gen_vgpu/
test_hostile_bounds.py) with thousands of writes and by bench/bench_hostile.py with a million.
"""

from __future__ import annotations

import gc
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from gen_vgpu import GenVgpu
from gen_vgpu.engines import ENGINES, EngineId, engine_by_id
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio import regs
from gen_vgpu.mmio.gt import GDRST

from . import cmd_streams as c
from .engine_rig import PAGE, RAM, Rig, Tree

STEPS_EVERY = 64
TLB_REGISTERS = (0x4260, 0x4264, 0x426C, 0x4270)  # GEN8 RTCR, VTCR, BTCR, VECS TLB control
BUF = 0x4000_0000


@dataclass
class Held:
    """The most the device held at once during an act, and what it holds at the end."""

    writes: int = 0
    tasks: int = 0
    mms: int = 0
    tables: int = 0
    warn_keys: int = 0
    end_tasks: int = 0
    end_mms: int = 0
    end_tables: int = 0
    longest_step: float = 0.0  # seconds
    steps: int = 0
    late_steps: int = 0  # returned more than 1 ms past the step's deadline
    rss_before: int = 0  # bytes
    rss_after: int = 0


def rss() -> int:
    """This process's resident memory in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def warn_keys(rig: Rig) -> int:
    """Keys held by every warn-once set of the device."""
    dev = rig.dev
    sets = [ex._once for ex in dev.engines] + [dev.ppgtt.store._once, dev.bar0._once]
    return sum(len(s.counts) for s in sets)


def prepared_rig(dev: GenVgpu | None = None) -> Rig:
    """A device (``dev``, or one with the default caps) whose RCS ran a workload through a
    4-level PPGTT (one shadowed mm)."""
    rig = Rig(dev=dev)
    tree = Tree(rig.guest, 4)
    tree.buffer(BUF, PAGE)
    ctx = rig.context(engine_by_id(EngineId.RCS), tree)
    rig.submit(ctx, c.sdi(BUF, 1))
    rig.run()
    return rig


# --- the acts: each yields (offset, value) writes forever ------------------------------------


def tlb(rig: Rig, rnd: random.Random) -> Iterator[tuple[int, int]]:
    while True:
        yield TLB_REGISTERS[rnd.randrange(4)], 1


def g2v(rig: Rig, rnd: random.Random) -> Iterator[tuple[int, int]]:
    """PPGTT creates and destroys of roots anywhere in guest RAM (new ones, mostly), L3 and
    L4, with destroys of roots never created among them."""
    pdp = regs.PVINFO_PDP
    while True:
        four = rnd.random() < 0.5
        for i in range(1 if four else 4):
            yield pdp + 8 * i, rnd.randrange(RAM // PAGE) * PAGE
        create = rnd.random() < 0.6
        value = (regs.G2vNotify.PPGTT_L4_CREATE if four else regs.G2vNotify.PPGTT_L3_CREATE) + (0 if create else 1)
        yield regs.PVINFO_G2V_NOTIFY, int(value)


def elsp(rig: Rig, rnd: random.Random) -> Iterator[tuple[int, int]]:
    """Submissions of the rig's real context (whose ring is empty) and of garbage, on every
    engine, each a full four-write ELSP sequence or a part of one."""
    lo, hi = rig.descriptor(rig.context(engine_by_id(EngineId.RCS), Tree(rig.guest, 4)))
    while True:
        e = ENGINES[rnd.randrange(len(ENGINES))]
        good = rnd.random() < 0.5
        words = (0, 0, hi, lo) if good else tuple(rnd.getrandbits(32) for _ in range(4))
        for w in words[: 4 if rnd.random() < 0.9 else rnd.randrange(4)]:
            yield e.reg(er.ELSP), w


def gdrst(rig: Rig, rnd: random.Random) -> Iterator[tuple[int, int]]:
    while True:
        yield GDRST, rnd.getrandbits(32)


def csb_pointer(rig: Rig, rnd: random.Random) -> Iterator[tuple[int, int]]:
    while True:
        e = ENGINES[rnd.randrange(len(ENGINES))]
        yield e.reg(er.CSB_PTR), rnd.getrandbits(32)


ACTS: dict[str, Callable[[Rig, random.Random], Iterator[tuple[int, int]]]] = {
    "TLB invalidation": tlb,
    "g2v create/destroy": g2v,
    "ELSP": elsp,
    "GDRST": gdrst,
    "CSB pointer": csb_pointer,
}


def run_act(rig: Rig, name: str, writes: int, seed: int = 0) -> Held:
    """``writes`` writes of the act, a step every STEPS_EVERY of them, then the queue to idle."""
    rnd = random.Random(seed)
    dev = rig.dev
    tasks, ppgtt = dev.tasks, dev.ppgtt
    stream = ACTS[name](rig, rnd)
    write = dev.region_write
    held = Held(writes=writes)
    gc.collect()
    held.rss_before = rss()
    tasks.stats.longest_step = 0.0
    steps, late = tasks.stats.steps, tasks.stats.late_steps
    for n in range(1, writes + 1):
        offset, value = next(stream)
        write(0, offset, value.to_bytes(4, "little"))
        if n % STEPS_EVERY == 0:
            held.tasks = max(held.tasks, len(tasks))
            held.mms = max(held.mms, len(ppgtt.mms))
            held.tables = max(held.tables, len(ppgtt.store))
            tasks.timers.run_due()
            tasks.run_step()
    held.tasks = max(held.tasks, len(tasks))
    held.mms = max(held.mms, len(ppgtt.mms))
    held.tables = max(held.tables, len(ppgtt.store))
    tasks.run_until_idle()
    held.warn_keys = warn_keys(rig)
    held.end_tasks, held.end_mms, held.end_tables = len(tasks), len(ppgtt.mms), len(ppgtt.store)
    held.longest_step = tasks.stats.longest_step
    held.steps, held.late_steps = tasks.stats.steps - steps, tasks.stats.late_steps - late
    gc.collect()
    held.rss_after = rss()
    return held
