#!/usr/bin/env python3
"""Where a message's time goes inside ``devmodel serve``: the server runs under cProfile
(client and server pinned to CPU 0, the neutral client of bench/floor.py), one profile per
workload, and the top entries by own time are printed.

Workloads: REGION_READ 4 B round trips; posted 4-byte REGION_WRITEs sent one system call
each (a REGION_READ barrier every 1,000); GGTT REGION_WRITE_MULTI batches of 200. cProfile
roughly doubles the cost of every Python call, so read the entries' shares, not the rates.
Not a ``bench_*`` script: it prints a profile, not figures (bench/run skips it).
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from bench.bench_messages import READ_REPLY, READ_REQ, attach, workloads  # noqa: E402
from bench.floor import ENV, placed, placement_prefix, posted, round_trips, wait_for_socket  # noqa: E402
from devmodel.testing import GuestMemory  # noqa: E402


def profile(workload: str, n: int, top: int, extra_env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        path, out = os.path.join(d, "prof.sock"), os.path.join(d, "server.prof")
        cmd = [
            *placement_prefix("pinned"),
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            out,
            "-m",
            "devmodel",
            "serve",
            "--socket",
            path,
            "--device",
            "gen_vgpu",
            "--log-level",
            "warning",
        ]
        proc = subprocess.Popen(cmd, env={**ENV, **extra_env})
        try:
            wait_for_socket(proc, path)
            with placed("pinned"), GuestMemory(64 << 20) as mem:
                c = attach(path, mem)
                s = c.sock
                s.settimeout(None)
                if workload == "read":
                    round_trips(s, READ_REQ, READ_REPLY, n)
                else:
                    messages = workloads(n)[workload][1]
                    every = 1000 if workload == "posted" else len(messages)
                    for b in range(0, len(messages), every):
                        posted(s, messages[b : b + every], READ_REQ, READ_REPLY)
                c.close()
        finally:
            proc.terminate()
            proc.wait()
        print(f"\n== {workload}: {n:,} messages, server profile by own time (top {top})")
        stats = pstats.Stats(out, stream=sys.stdout)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="messages per workload (a multiple of 1,000)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--workload", choices=["read", "posted", "ggtt-multi", "all"], default="all")
    ap.add_argument("--accel", choices=["0", "1"], help="DEVMODEL_ACCEL for the server (default: its own)")
    ap.add_argument("--quick", action="store_true", help="1,000 messages: checks the script works")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.top = 1000, 5
    extra = {"DEVMODEL_ACCEL": args.accel} if args.accel else {}
    for workload in ("read", "posted", "ggtt-multi") if args.workload == "all" else (args.workload,):
        profile(workload, args.n, args.top, extra)


if __name__ == "__main__":
    main()
