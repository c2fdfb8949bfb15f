#!/usr/bin/env python3
"""Several vGPUs at once, one ``devmodel serve`` process each (QEMU attaches one device per
socket), on this machine's CPUs: the REGION_READ round trips and posted writes each vGPU
serves, and all of them together, with 1, 2 and 4 vGPUs busy at once; and the resident memory
of an idle vGPU process (before any client, and after a client mapped 64 MiB of guest RAM and
left), its GGTT's arrays included.

Each vGPU gets its own driving process (the neutral client of bench/floor.py), so the clients
compete for the CPUs as QEMU's vCPUs would. Medians of several runs with their spread.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench.bench_messages import READ_REPLY, READ_REQ, region_write_msg  # noqa: E402
from bench.floor import Figure, devmodel_process, devmodel_server, posted, round_trips  # noqa: E402
from devmodel.testing import GuestMemory, VfioUserClient  # noqa: E402
from devmodel.vfio_user.constants import HeaderFlags, MsgType  # noqa: E402

POSTED = int(MsgType.COMMAND) | int(HeaderFlags.NO_REPLY)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def drive(path: str, seconds: float, start: float, out: mp.Queue[tuple[float, float]]) -> None:
    """One vGPU's client: round trips for half the time, posted writes for the other half."""
    with GuestMemory(64 << 20) as mem, VfioUserClient.connect(path, mem) as c:
        c.negotiate()
        c.map_memory(mem)
        s = c.sock
        s.settimeout(None)
        while time.monotonic() < start:
            time.sleep(0.001)
        reads = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds / 2:
            round_trips(s, READ_REQ, READ_REPLY, 200)
            reads += 200
        read_rate = reads / (time.monotonic() - t0)
        burst = [region_write_msg(0x4000, i.to_bytes(4, "little"), POSTED) for i in range(1000)]
        writes = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds / 2:
            posted(s, burst, READ_REQ, READ_REPLY)
            writes += 1000
        out.put((read_rate, writes / (time.monotonic() - t0)))


def busy(paths: list[str], seconds: float) -> list[tuple[float, float]]:
    out: mp.Queue[tuple[float, float]] = mp.Queue()
    start = time.monotonic() + 0.5  # every client connected before any starts
    procs = [mp.Process(target=drive, args=(p, seconds, start, out)) for p in paths]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    return results


def idle_memory() -> tuple[int, int]:
    """RSS of a vGPU process before any client, and after one mapped 64 MiB and went away."""
    with devmodel_process("unpinned") as (path, pid):
        time.sleep(0.2)
        before = rss_kib(pid)
        with GuestMemory(64 << 20) as mem, VfioUserClient.connect(path, mem) as c:
            c.negotiate()
            c.map_memory(mem)
            c.read32(0, 0x78000)
        # The next client is accepted only once the last one's teardown is complete.
        with GuestMemory(1 << 20) as mem, VfioUserClient.connect(path, mem) as c:
            c.negotiate()
            c.read32(0, 0x78000)
        return before, rss_kib(pid)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0, help="busy time per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--counts", default="1,2,4", help="how many vGPUs at once")
    ap.add_argument("--quick", action="store_true", help="one short run of 1 and 2 vGPUs")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.runs, args.counts = 0.4, 1, "1,2"
    counts = [int(n) for n in args.counts.split(",")]
    print(f"vGPUs busy at once, one process each (median of {args.runs} runs of {args.seconds:g} s; ± half the spread)")
    print(f"  {'vGPUs':>5}  {'REGION_READ/s per vGPU':>24} {'all':>12}  {'posted writes/s per vGPU':>26} {'all':>12}")
    for n in counts:
        reads: list[float] = []
        writes: list[float] = []
        all_reads: list[float] = []
        all_writes: list[float] = []
        with ExitStack() as stack:
            paths = [stack.enter_context(devmodel_server("unpinned")) for _ in range(n)]
            for _ in range(args.runs):
                results = busy(paths, args.seconds)
                reads.append(statistics.median(r for r, _ in results))
                writes.append(statistics.median(w for _, w in results))
                all_reads.append(sum(r for r, _ in results))
                all_writes.append(sum(w for _, w in results))
        print(
            f"  {n:>5}  {Figure(tuple(reads))!s:>24} {statistics.median(all_reads):>12,.0f}  "
            f"{Figure(tuple(writes))!s:>26} {statistics.median(all_writes):>12,.0f}"
        )
    before, after = idle_memory()
    print(
        f"idle vGPU process: {before / 1024:.1f} MiB resident before any client, {after / 1024:.1f} MiB after a "
        f"client mapped 64 MiB and left (target <= 60 MiB; the GGTT's guest, shadow and owner arrays are 20 MiB)"
    )


if __name__ == "__main__":
    main()
