#!/usr/bin/env python3
"""Command-scanner throughput: prints dwords/s and time per stream for

- i915's GEN9 null render state batch (the shape of tests/unit/gen_vgpu/test_cmd_i915.py),
  scanned as a GGTT batch read a page at a time;
- a ring of i915 requests (init breadcrumb, flush, batch start, flush, fini breadcrumb) on
  RCS and BCS, as the engine scans a ring segment;
- a PPGTT batch of MI_STORE_DATA_IMM / XY blits walked one command at a time (scan_next);
- 4 MiB GGTT batches of MI_ARB_CHECK, of MI_STORE_DATA_IMM and of i915's commands (the GEN9
  null render state, workaround LRIs, flushes and breadcrumbs, over and over) scanned in the
  loop's 0.25 ms steps, as the engine scans them: MB/s of CPU time, the number of steps and
  the longest step (targets: 500 MB/s, every step under 2 ms of CPU).

Each figure on the Python path alone and with the compiled walk (cmd/scan_accel.py), when
the accelerator is installed.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from array import array
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from devmodel import accel as accel_module  # noqa: E402
from devmodel.device.tasks import STEP_TIME  # noqa: E402
from gen_vgpu.cmd import (  # noqa: E402
    BufferSource,
    Engine,
    Frame,
    GraphicsMemory,
    batch_scan,
    scan_batch,
    scan_next,
    scan_ring,
)
from gen_vgpu.cmd.scan_accel import ScanAccel, has_scan_accel  # noqa: E402
from tests.unit.gen_vgpu import cmd_streams as c  # noqa: E402
from tests.unit.gen_vgpu.test_cmd_i915 import (  # noqa: E402
    GEN9_NULL_STATE,
    ctx_wa_lri,
    fini_rcs,
    flush_rcs,
    init_breadcrumb,
    null_state_batch,
    request,
)

MEMORY = GraphicsMemory.sized(256 << 20, 64 << 20)


def measure(name: str, dwords: int, fn: Callable[[], object], min_time: float) -> None:
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            break
    per = elapsed / n
    print(f"{name:<44} {dwords:6d} dwords  {per * 1e6:9.1f} us  {dwords / per / 1e6:6.2f} M dwords/s")


def i915_batch(dwords: int) -> array[int]:
    """``dwords`` of what i915 puts in batches and rings, over and over, then the end: the GEN9
    null render state (3D state, PIPE_CONTROL), the context workaround LRI, flushes and
    breadcrumbs (PIPE_CONTROL, MI_STORE_DATA_IMM, MI_USER_INTERRUPT, MI_ARB_*), MI_NOOP padding."""
    null = null_state_batch(GEN9_NULL_STATE)
    unit = array("I", null[: list(null).index(c.MI_BATCH_BUFFER_END)])
    unit.extend(ctx_wa_lri(9) + flush_rcs(3, 9) + init_breadcrumb() + flush_rcs(2, 9) + fini_rcs())
    out = array("I")
    while len(out) + len(unit) < dwords:
        out.extend(unit)
    out.extend([c.MI_NOOP] * (dwords - 1 - len(out)) + [c.MI_BATCH_BUFFER_END])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one short pass: checks the benchmark works")
    t = 0.01 if ap.parse_args().quick else 0.5  # seconds of repetitions per figure
    module = accel_module.load()
    compiled = ScanAccel(module) if module is not None and has_scan_accel(module) else None
    if compiled is None:
        print("(no compiled accelerator: the Python path alone)")
    paths = [("python", None)] + ([("compiled", compiled)] if compiled is not None else [])
    null = null_state_batch(GEN9_NULL_STATE)
    rcs_frame = Frame(Engine.RCS, 1, True, MEMORY)
    for path, acc in paths:
        measure(
            f"null render state (GEN9), scan_batch, {path}",
            len(null),
            functools.partial(lambda a: scan_batch(BufferSource(null), rcs_frame, 0, a), acc),
            t,
        )

    for engine, name in ((Engine.RCS, "RCS"), (Engine.BCS, "BCS")):
        ring = array("I", request(engine, 9, 0x100000, secure=False) * 16)
        for path, acc in paths:
            measure(
                f"ring of 16 i915 requests ({name}), scan_ring, {path}",
                len(ring),
                functools.partial(scan_ring, ring, engine, MEMORY, acc),
                t,
            )

    body = []
    for i in range(64):
        body += c.sdi(0x10000 + 8 * i, i) + c.color_blt(0x200000, 1024, 0, i, 256, i + 1, i)
    body.append(c.MI_BATCH_BUFFER_END)
    batch = array("I", body)
    frame = Frame(Engine.BCS, 1, False, MEMORY)

    def walk() -> None:
        src, pos = BufferSource(batch), 0
        while pos < len(batch):
            pos += scan_next(src, pos, frame).length

    measure("PPGTT batch SDI+XY_COLOR_BLT x64, scan_next", len(batch), walk, t)
    for path, acc in paths:
        measure(
            f"same batch, scan_batch, {path}",
            len(batch),
            functools.partial(lambda a: scan_batch(BufferSource(batch), frame, None, a), acc),
            t,
        )

    size = (256 << 10) if t < 0.1 else (4 << 20)
    n = size // 4 - 1
    label = f"{size >> 20 or 0.25} MiB GGTT batch of"
    arb = array("I", [c.MI_ARB_CHECK] * n + [c.MI_BATCH_BUFFER_END])
    sdi = array("I", c.sdi(0x1000, 7, ggtt=True) * (n // 4) + [c.MI_NOOP] * (n % 4) + [c.MI_BATCH_BUFFER_END])
    mixed = i915_batch(n + 1)
    for what, dwords in (("MI_ARB_CHECK", arb), ("MI_STORE_DATA_IMM", sdi), ("i915's commands", mixed)):
        for path, acc in paths:
            stepped(f"{label} {what}, {path}", dwords, rcs_frame, acc, target_mb_s=500)


def stepped(name: str, dwords: array[int], frame: Frame, accel: ScanAccel | None, target_mb_s: float) -> None:
    """Scan as the engine does: steps with the loop's deadline, each timed on the wall clock
    and in the thread's CPU time (on a shared machine the wall clock also counts the time
    other processes held the CPU; pin the benchmark, taskset -c N, for wall figures). The
    targets are judged on CPU time."""
    scan = batch_scan(BufferSource(dwords), frame, 0, accel)
    clock, cpu = time.perf_counter, time.thread_time
    steps, longest, longest_cpu, t0, c0 = 0, 0.0, 0.0, clock(), cpu()
    while True:
        start, start_cpu = clock(), cpu()
        seg = scan.step(start + STEP_TIME, clock)
        longest = max(longest, clock() - start)
        longest_cpu = max(longest_cpu, cpu() - start_cpu)
        steps += 1
        if seg is not None:
            break
    total, total_cpu = clock() - t0, cpu() - c0
    mb_s = len(dwords) * 4 / total_cpu / 1e6
    print(
        f"{name:<52} {total * 1e3:8.1f} ms ({total_cpu * 1e3:.1f} ms CPU)  {mb_s:8.1f} MB/s of CPU  {steps} steps, "
        f"longest {longest * 1e3:.3f} ms ({longest_cpu * 1e3:.3f} ms CPU)"
    )
    print(
        f"  target {target_mb_s} MB/s: {'met' if mb_s >= target_mb_s else 'not met'};"
        f" every step < 2 ms of CPU: {'met' if longest_cpu < 0.002 else 'not met'}"
        f" (wall: {'met' if longest < 0.002 else 'not met'})"
    )


if __name__ == "__main__":
    main()
