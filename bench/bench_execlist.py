#!/usr/bin/env python3
"""The cost of the submission machinery alone: ELSP writes through the register file, the
context-image read, CSB entries in MMIO and in the status page, the context-switch interrupt
and the completion, with an executor that completes at once (no commands run).

This is the floor under every workload the engines will run: what the execlist adds to a
submission, next to i915's 200 ms budget for its first four requests. Figures are medians of
several runs, in microseconds per submission.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from gen_vgpu.engines import ENGINES  # noqa: E402
from tests.unit.gen_vgpu.gt_rig import ENABLE, MASTER, Rig, desc  # noqa: E402

A, B = 0x10000, 0x20000
HWS = 0x1000


def rig() -> Rig:
    r = Rig(auto=True)
    for i, e in enumerate(ENGINES):
        r.enable_execlists(e, HWS + 0x1000 * i)
        r.unmask_engine_irqs(e)
    r.w(MASTER, ENABLE)
    r.make_context(A)
    r.make_context(B)
    return r


def one_element(r: Rig, n: int) -> None:
    e = ENGINES[0]
    for i in range(n):
        r.elsp(e, desc(A, i))
        r.clear_iir(e)


def two_elements(r: Rig, n: int) -> None:
    e = ENGINES[0]
    for i in range(n):
        r.elsp(e, desc(A, i), desc(B, i))
        r.clear_iir(e)


def four_engines(r: Rig, n: int) -> None:
    """i915's record-defaults step: one request on each engine."""
    for i in range(n // 4):
        for e in ENGINES:
            r.elsp(e, desc(A, i))
            r.clear_iir(e)


def measure(fn, n: int, runs: int) -> tuple[float, float, float]:
    times = []
    for _ in range(runs):
        r = rig()
        r.gm.writes = _Discard()
        t0 = time.perf_counter()
        fn(r, n)
        times.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(times), min(times), max(times)


class _Discard(list[tuple[int, bytes]]):
    """The rig records graphics-memory writes for tests; here that would only grow."""

    def append(self, item: tuple[int, bytes]) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="one short run: checks the benchmark works, figures mean little"
    )
    args = ap.parse_args()
    n, runs = (200, 1) if args.quick else (20000, 5)
    print(f"execlist submission machinery, {n} submissions x {runs} runs, executor completes at once")
    for label, fn in (
        ("one element: {IDLE_ACTIVE}, {ACTIVE_IDLE|COMPLETE}", one_element),
        ("two elements: + {ELEMENT_SWITCH|COMPLETE}", two_elements),
        ("one element on each of the four engines", four_engines),
    ):
        med, lo, hi = measure(fn, n, runs)
        print(f"  {label:<55} {med:7.1f} us/submission (min {lo:.1f}, max {hi:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
