#!/usr/bin/env python3
"""What a hostile guest can make the device hold: a million MMIO writes of each kind (TLB
invalidation, g2v PPGTT create/destroy, ELSP, GDRST, CSB pointer) against a GenVgpu with
guest RAM in a memfd and one shadowed PPGTT, a loop step every 64 writes as when posted
writes pile up (tests/unit/gen_vgpu/hostile_acts.py). Each act runs in a process of its own,
so its resident memory before and after is its own.

Printed per act: the most tasks, shadow mms and shadow tables held at once (and at the end),
the warn-once keys, resident memory before and after, and the longest loop step, as wall time
(which counts whatever else the machine ran meanwhile) and as the thread's CPU time; then the
targets (growth <= 16 MiB, longest step <= 2 ms of CPU) met or not. The counts do not depend
on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "guest-tests")]

from tests.unit.gen_vgpu.hostile_acts import ACTS, prepared_rig, run_act  # noqa: E402

GROWTH_TARGET = 16 << 20
STEP_TARGET = 0.002
MIB = 1 << 20


def one(act: str, writes: int, max_shadow_pages: int | None) -> None:
    import logging

    from gen_vgpu import GenVgpu

    logging.disable(logging.WARNING)  # a million refusals: the log bound is not measured here
    rig = prepared_rig(GenVgpu(max_shadow_pages=max_shadow_pages) if max_shadow_pages else None)
    # The step's own CPU time beside the queue's wall-clock figure: on a shared machine a step
    # that is preempted measures the other processes' time slices too.
    tasks = rig.dev.tasks
    run_step = tasks.run_step
    longest_cpu = [0.0]

    def timed_step(*args: float) -> object:
        c = time.thread_time()
        try:
            return run_step(*args)
        finally:
            longest_cpu[0] = max(longest_cpu[0], time.thread_time() - c)

    tasks.run_step = timed_step  # type: ignore[method-assign,assignment]
    start = time.perf_counter()
    held = run_act(rig, act, writes)
    seconds = time.perf_counter() - start
    print(json.dumps({**asdict(held), "seconds": seconds, "longest_step_cpu": longest_cpu[0]}))
    rig.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="10,000 writes of each kind")
    ap.add_argument("--writes", type=int, default=1_000_000)
    ap.add_argument("--max-shadow-pages", type=int, help="the device's shadow-table cap (default: its own)")
    ap.add_argument("--act", choices=list(ACTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    writes = 10_000 if args.quick else args.writes
    if args.act:
        one(args.act, writes, args.max_shadow_pages)
        return 0
    cap = f"--max-shadow-pages {args.max_shadow_pages}" if args.max_shadow_pages else "the default caps"
    print(f"{writes:,} hostile MMIO writes of each kind; a step every 64 writes; {cap}")
    head = ("act", "s", "tasks", "mms", "tables", "warn keys", "RSS before", "RSS after", "growth", "longest step",
            "its CPU", "steps late (>1 ms past deadline)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    failed = []
    for act in ACTS:
        proc = subprocess.run(
            [sys.executable, __file__, "--act", act, "--writes", str(writes)]
            + (["--max-shadow-pages", str(args.max_shadow_pages)] if args.max_shadow_pages else []),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"{act}: failed\n{proc.stderr}", file=sys.stderr)
            return 1
        h = json.loads(proc.stdout.strip().splitlines()[-1])
        growth = h["rss_after"] - h["rss_before"]
        grow_ok = growth <= GROWTH_TARGET
        step_ok = h["longest_step_cpu"] <= STEP_TARGET
        if not grow_ok or not step_ok:
            failed.append(act)
        print(
            f"| {act} | {h['seconds']:.0f} | {h['tasks']} (end {h['end_tasks']}) | {h['mms']} (end {h['end_mms']}) "
            f"| {h['tables']} (end {h['end_tables']}) | {h['warn_keys']} | {h['rss_before'] / MIB:.1f} MiB "
            f"| {h['rss_after'] / MIB:.1f} MiB | {growth / MIB:+.1f} MiB {'met' if grow_ok else 'NOT MET'} "
            f"| {h['longest_step'] * 1e3:.2f} ms "
            f"| {h['longest_step_cpu'] * 1e3:.2f} ms {'met' if step_ok else 'NOT MET'} "
            f"| {h['late_steps']} of {h['steps']} |"
        )
    print(
        f"targets: growth <= {GROWTH_TARGET // MIB} MiB, longest step <= {STEP_TARGET * 1e3:.0f} ms of CPU: "
        + ("met for every act" if not failed else "not met for " + ", ".join(failed))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
