#!/usr/bin/env python3
"""Message rates through the in-repo client against ``devmodel serve`` in its own process.

Prints round trips/s and latency percentiles for REGION_READ and REGION_WRITE, posted writes/s,
and GGTT updates/s through single writes, posted writes and REGION_WRITE_MULTI, with the
ratio to libvfio-user's sample server measured on the same kind of machine
(shared/bench/anchors.md). ``--pin`` runs both processes on CPU 0, which takes the cross-CPU
wake-up out and shows the server's own cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from devmodel.testing import GuestMemory, VfioUserClient  # noqa: E402
from devmodel.vfio_user.constants import Command, HeaderFlags  # noqa: E402
from devmodel.vfio_user.framing import encode_message  # noqa: E402
from devmodel.vfio_user.layouts import REGION_ACCESS  # noqa: E402

# libvfio-user sample server, 4-byte accesses (anchors.md): (unpinned, pinned)
ANCHOR_READ = (21_400, 93_700)
ANCHOR_WRITE = (21_800, 93_400)
ANCHOR_POSTED = (650_000, 368_000)
GGTT = 8 << 20


def start_server(path: str, pin: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")])}
    cmd = [sys.executable, "-m", "devmodel", "serve", "--socket", path, "--device", "gen_vgpu"]
    cmd += ["--log-level", "warning"]
    if pin:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.02)
    return proc


def timed(n: int, fn: Callable[[], object]) -> tuple[float, list[float]]:
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return n / (time.perf_counter() - t0), lat


def pct(lat: list[float], p: float) -> float:
    return sorted(lat)[int(len(lat) * p)] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=50_000, help="operations per measurement")
    ap.add_argument("--pin", action="store_true", help="run client and server on CPU 0")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {0})
    a = 1 if args.pin else 0
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.sock")
        proc = start_server(path, args.pin)
        try:
            with GuestMemory(64 << 20) as mem, VfioUserClient.connect(path, mem) as c:
                c.negotiate()
                c.map_memory(mem)
                results: dict[str, list[float]] = {}
                lats: dict[str, list[float]] = {}
                n = args.n
                for _ in range(args.runs):
                    rate, lat = timed(n, lambda: c.region_read(0, 0x4000, 4))
                    results.setdefault("read", []).append(rate)
                    lats["read"] = lat
                    rate, lat = timed(n, lambda: c.region_write(0, 0x4000, b"\1\2\3\4"))
                    results.setdefault("write", []).append(rate)
                    lats["write"] = lat
                    t0 = time.perf_counter()
                    for i in range(n):
                        c.write32(0, 0x4000, i, posted=True)
                        if i % 1000 == 999:
                            c.read32(0, 0x4000)  # a barrier, as in the anchor
                    c.read32(0, 0x4000)
                    results.setdefault("posted", []).append(n / (time.perf_counter() - t0))
                    # GGTT updates, three ways
                    entries = [((0x1000 * (i % 16000)) | 1).to_bytes(8, "little") for i in range(n)]
                    t0 = time.perf_counter()
                    for i in range(n):
                        c.region_write(0, GGTT + 8 * (i % 65536), entries[i])
                    results.setdefault("ggtt-single", []).append(n / (time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    for i in range(n):
                        c.region_write(0, GGTT + 8 * (i % 65536), entries[i], posted=True)
                    c.read32(0, 0x4000)
                    results.setdefault("ggtt-posted", []).append(n / (time.perf_counter() - t0))
                    # Server drain: the whole burst pre-built and sent at once, so the
                    # client's per-message cost is out of the figure (QEMU's is far lower).
                    burst = b"".join(
                        encode_message(i & 0xFFFF, Command.REGION_WRITE, HeaderFlags.NO_REPLY,
                                       REGION_ACCESS.pack(0x4000, 0, 4) + (i & 0xFFFFFFFF).to_bytes(4, "little"))
                        for i in range(n)
                    )
                    t0 = time.perf_counter()
                    c.send_raw(burst)
                    c.read32(0, 0x4000)
                    results.setdefault("drain", []).append(n / (time.perf_counter() - t0))
                    burst = b"".join(
                        encode_message(i & 0xFFFF, Command.REGION_WRITE, HeaderFlags.NO_REPLY,
                                       REGION_ACCESS.pack(GGTT + 8 * (i % 65536), 0, 8) + entries[i])
                        for i in range(n)
                    )
                    t0 = time.perf_counter()
                    c.send_raw(burst)
                    c.read32(0, 0x4000)
                    results.setdefault("ggtt-drain", []).append(n / (time.perf_counter() - t0))
                    t0 = time.perf_counter()
                    for base in range(0, n, 200):
                        batch = range(base, min(base + 200, n))
                        c.write_multi([(0, GGTT + 8 * (i % 65536), entries[i]) for i in batch])
                    c.read32(0, 0x4000)
                    results.setdefault("ggtt-multi", []).append(n / (time.perf_counter() - t0))
        finally:
            proc.terminate()
            proc.wait()
    where = "pinned to one CPU" if args.pin else "client and server on different CPUs"
    print(f"devmodel vfio-user message rates ({where}; median of {args.runs} runs of {args.n:,})")
    rows = [
        ("REGION_READ 4 B round trips/s", "read", ANCHOR_READ[a]),
        ("REGION_WRITE 4 B round trips/s", "write", ANCHOR_WRITE[a]),
        ("posted 4 B writes/s", "posted", ANCHOR_POSTED[a]),
        ("posted 4 B writes/s, server drain", "drain", ANCHOR_POSTED[a]),
        ("GGTT updates/s, REGION_WRITE", "ggtt-single", None),
        ("GGTT updates/s, posted", "ggtt-posted", None),
        ("GGTT updates/s, posted, server drain", "ggtt-drain", None),
        ("GGTT updates/s, REGION_WRITE_MULTI", "ggtt-multi", None),
    ]
    for label, key, anchor in rows:
        med = statistics.median(results[key])
        ratio = f"  {med / anchor:5.2f} x libvfio-user ({anchor:,})" if anchor else ""
        extra = ""
        if key in lats:
            extra = f"  p50 {pct(lats[key], 0.5):.1f} us  p99 {pct(lats[key], 0.99):.1f} us"
        print(f"  {label:<38} {med:>11,.0f}{ratio}{extra}")


if __name__ == "__main__":
    main()
