#!/usr/bin/env python3
"""Command-scanner throughput: prints dwords/s and time per stream for

- i915's GEN9 null render state batch (the shape of tests/unit/gen_vgpu/test_cmd_i915.py),
  scanned as a GGTT batch read a page at a time;
- a ring of i915 requests (init breadcrumb, flush, batch start, flush, fini breadcrumb) on
  RCS and BCS, as the engine scans a ring segment;
- a PPGTT batch of MI_STORE_DATA_IMM / XY blits walked one command at a time (scan_next);
- a 4 MiB GGTT batch of MI_ARB_CHECK (and one of MI_STORE_DATA_IMM) scanned in the loop's
  0.25 ms steps, as the engine scans it: MB/s, the number of steps and the longest step
  (targets: 500 MB/s of MI_ARB_CHECK, every step under 2 ms).
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
from tests.unit.gen_vgpu import cmd_streams as c  # noqa: E402
from tests.unit.gen_vgpu.test_cmd_i915 import GEN9_NULL_STATE, null_state_batch, request  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one short pass: checks the benchmark works")
    t = 0.01 if ap.parse_args().quick else 0.5  # seconds of repetitions per figure
    null = null_state_batch(GEN9_NULL_STATE)
    rcs_frame = Frame(Engine.RCS, 1, True, MEMORY)
    measure("null render state (GEN9), scan_batch", len(null), lambda: scan_batch(BufferSource(null), rcs_frame, 0), t)

    for engine, name in ((Engine.RCS, "RCS"), (Engine.BCS, "BCS")):
        ring = array("I", request(engine, 9, 0x100000, secure=False) * 16)
        measure(
            f"ring of 16 i915 requests ({name}), scan_ring",
            len(ring),
            functools.partial(scan_ring, ring, engine, MEMORY),
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
    measure("same batch, scan_batch", len(batch), lambda: scan_batch(BufferSource(batch), frame), t)

    size = (256 << 10) if t < 0.1 else (4 << 20)
    n = size // 4 - 1
    arb = array("I", [c.MI_ARB_CHECK] * n + [c.MI_BATCH_BUFFER_END])
    stepped(f"{size >> 20 or 0.25} MiB GGTT batch of MI_ARB_CHECK", arb, rcs_frame, target_mb_s=500)
    sdi = array("I", c.sdi(0x1000, 7, ggtt=True) * (n // 4) + [c.MI_NOOP] * (n % 4) + [c.MI_BATCH_BUFFER_END])
    stepped(f"{size >> 20 or 0.25} MiB GGTT batch of MI_STORE_DATA_IMM", sdi, rcs_frame, target_mb_s=None)


def stepped(name: str, dwords: array[int], frame: Frame, target_mb_s: float | None) -> None:
    """Scan as the engine does: steps with the loop's deadline, each timed on the wall clock
    and in the thread's CPU time (on a shared machine the wall clock also counts the time
    other processes held the CPU; pin the benchmark, taskset -c N, for wall figures)."""
    scan = batch_scan(BufferSource(dwords), frame, 0)
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
        f"{name:<44} {total * 1e3:8.1f} ms ({total_cpu * 1e3:.1f} ms CPU)  {mb_s:8.1f} MB/s of CPU  {steps} steps, "
        f"longest {longest * 1e3:.3f} ms ({longest_cpu * 1e3:.3f} ms CPU)"
    )
    print(
        f"  target every step < 2 ms: {'met' if longest < 0.002 else 'not met'}"
        f" (CPU: {'met' if longest_cpu < 0.002 else 'not met'})"
    )
    if target_mb_s is not None:
        print(f"  target {target_mb_s} MB/s: {'met' if mb_s >= target_mb_s else 'not met'}")


if __name__ == "__main__":
    main()
