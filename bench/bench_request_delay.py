#!/usr/bin/env python3
"""How long a REGION_READ waits while a long CPU-bound task runs in the device model.

The server (this script with ``--server``, in its own process) serves the GEN vGPU with one
addition: a write of 1 to BAR0 0x4000 starts a task that burns CPU in steps until a write of
0 cancels it (it counts its work units, readable at 0x4008). The client measures REGION_READ
round trips back to back for ``--seconds``: first with no task (the baseline), then with the
task running. It prints p50, p99, the longest round trip and how many took over 2 ms, the
steps that returned more than 1 ms late (only a process the host preempted does that), and
how much work the task got done while the requests flowed compared with running alone. ``--pin`` runs both
processes on CPU 0; ``--step-ms`` sets the loop's step deadline.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from devmodel.device.tasks import STEP_TIME, Task  # noqa: E402
from devmodel.testing import VfioUserClient  # noqa: E402

TRIGGER = 0x4000
WORK_DONE = 0x4008
LATE_STEPS = 0x4010  # steps that returned more than LATE_STEP past their deadline
TARGET = 0.002


def serve(path: str, step_ms: float) -> None:
    from devmodel.device.registers import Register
    from devmodel.transport.server import Server
    from devmodel.transport.unix import listen_unix
    from gen_vgpu import GenVgpu

    class BusyDevice(GenVgpu):
        """The GEN vGPU plus a CPU-bound task to start and stop from the client."""

        def __init__(self) -> None:
            super().__init__()
            self.busy: Task | None = None
            self.units = 0
            self.install()

        def burn(self, deadline: float) -> bool:
            clock = time.monotonic
            while clock() < deadline:
                sum(range(200))  # one work unit, a few microseconds
                self.units += 1
            return True

        def install(self) -> None:
            # Registers with hooks, not overrides of region_read/write: the compiled drain
            # serves plain BAR0 registers itself and would never call an override.
            def trigger(offset: int, old: int, new: int) -> None:
                if new and self.busy is None:
                    self.busy = self.tasks.spawn(Task(self.burn, uses_guest_memory=False, name="burn"))
                elif not new and self.busy is not None:
                    self.busy.cancel()
                    self.busy = None

            def counter(value: Callable[[], int], high: bool) -> Callable[[int], int]:
                return lambda offset: value() >> 32 if high else value() & 0xFFFFFFFF

            def units() -> int:
                return self.units

            def late() -> int:
                return self.tasks.stats.late_steps

            rf = self.registers
            rf.add(Register(TRIGGER, "BENCH_TRIGGER", write=trigger))
            for base, value in ((WORK_DONE, units), (LATE_STEPS, late)):
                rf.add(Register(base, "BENCH_COUNTER_LO", read=counter(value, False), rw_mask=0))
                rf.add(Register(base + 4, "BENCH_COUNTER_HI", read=counter(value, True), rw_mask=0))

    server = Server(BusyDevice(), listen_unix(path))
    server.loop.step_time = step_ms / 1e3
    try:
        server.serve_forever()
    finally:
        server.close()


def pct(lat: list[float], p: float) -> float:
    return sorted(lat)[min(len(lat) - 1, int(len(lat) * p))] * 1e3


def reads_for(c: VfioUserClient, seconds: float) -> list[float]:
    lat = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        c.read32(0, 0x78000)
        lat.append(time.perf_counter() - t)
    return lat


def measure(path: str, seconds: float) -> dict[str, float]:
    with VfioUserClient.connect(path) as c:
        c.negotiate()
        base = reads_for(c, seconds)
        # the task alone: how much it does in `seconds` with nobody asking
        u0 = c.read64(0, WORK_DONE)
        c.write32(0, TRIGGER, 1)
        time.sleep(seconds)
        c.write32(0, TRIGGER, 0)
        alone = c.read64(0, WORK_DONE) - u0
        # the task with requests flowing back to back
        u0 = c.read64(0, WORK_DONE)
        late0 = c.read64(0, LATE_STEPS)
        c.write32(0, TRIGGER, 1)
        busy = reads_for(c, seconds)
        c.write32(0, TRIGGER, 0)
        shared = c.read64(0, WORK_DONE) - u0
        late = c.read64(0, LATE_STEPS) - late0
    return {
        "base_p50": pct(base, 0.5),
        "base_p99": pct(base, 0.99),
        "base_max": max(base) * 1e3,
        "base_over": sum(t > TARGET for t in base),
        "busy_n": len(busy),
        "busy_p50": pct(busy, 0.5),
        "busy_p99": pct(busy, 0.99),
        "busy_max": max(busy) * 1e3,
        "busy_over": sum(t > TARGET for t in busy),
        "late_steps": late,
        "task_share": shared / alone if alone else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--pin", action="store_true", help="run client and server on CPU 0")
    ap.add_argument("--step-ms", type=float, default=STEP_TIME * 1e3, help="the loop's step deadline (ms)")
    ap.add_argument("--seconds", type=float, default=1.0, help="how long the task runs while measured")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one short run: checks the benchmark works")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.runs = 0.1, 1
    if args.server:
        serve(args.server, args.step_ms)
        return
    if args.pin:
        os.sched_setaffinity(0, {0})
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for run in range(args.runs):
            path = os.path.join(d, f"delay{run}.sock")
            cmd = [sys.executable, __file__, "--server", path, "--step-ms", str(args.step_ms)]
            if args.pin:
                cmd = ["taskset", "-c", "0", *cmd]
            proc = subprocess.Popen(cmd)
            try:
                deadline = time.monotonic() + 60  # a hang guard: a loaded machine starts slowly
                while not os.path.exists(path):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start")
                    time.sleep(0.02)
                rows.append(measure(path, args.seconds))
            finally:
                proc.terminate()
                proc.wait()
    where = "pinned to one CPU" if args.pin else "client and server on different CPUs"
    print(f"REGION_READ round trips while a CPU-bound task runs ({where}; step deadline {args.step_ms:.2f} ms)")
    print(
        f"  {'run':>3}  {'idle p50':>9} {'idle p99':>9} {'idle max':>9} {'>2ms':>5}   {'reads':>6} {'busy p50':>9} "
        f"{'busy p99':>9} {'busy max':>9} {'>2ms':>5}  late steps  task work vs alone"
    )
    for i, r in enumerate(rows):
        print(
            f"  {i:>3}  {r['base_p50']:8.3f}ms {r['base_p99']:8.3f}ms {r['base_max']:8.3f}ms {r['base_over']:>5}   "
            f"{r['busy_n']:>6} {r['busy_p50']:8.3f}ms {r['busy_p99']:8.3f}ms {r['busy_max']:8.3f}ms "
            f"{r['busy_over']:>5}  "
            f"{r['late_steps']:>10}  {r['task_share'] * 100:5.1f} %"
        )
    print(
        f"  longest delay over all runs: {max(r['busy_max'] for r in rows):.3f} ms; "
        f"worst p99 {max(r['busy_p99'] for r in rows):.3f} ms"
    )


if __name__ == "__main__":
    main()
