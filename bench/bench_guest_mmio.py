#!/usr/bin/env python3
"""Guest MMIO through QEMU's vfio-user client, with and without REGION_WRITE_MULTI.

Boots the guest (QEMU TCG, the lane's image) running guest-tests/guest/test_mmio_bench.py
against ``devmodel serve --write-multiple`` and ``--no-write-multiple``, alternately, RUNS
times each, and prints the median of each figure for both and their ratio. The guest times
posted 4-byte register writes (from Python and from a native store loop), 4-byte reads,
8-byte GGTT entry writes (Python and native), write-then-read pairs and bursts of 16 writes
and a read. "msgs" is what the device received (requests, of which posted) in the whole boot.

Needs ci/setup-qemu and ci/setup-guest (as the guest lane). Logs per boot in
test-output/bench-guest-mmio_<mode>_<run>/.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "guest-tests"))

import harness  # noqa: E402

SCRIPT = "mmio_bench"
MODES = (("write-multiple", "--write-multiple"), ("no-write-multiple", "--no-write-multiple"))
BENCH_LINE = re.compile(r"^# bench (\S+) (\S+) (\S+)$")
CLIENT_GONE = re.compile(r"client gone \((\d+) requests, (\d+) errors, (\d+) posted\)")
ROWS = [  # (name, label, higher is better; None: not compared)
    ("posted_write", "posted 4 B writes + 1 read (Python)", True),
    ("posted_write_native", "posted 4 B writes + 1 read (native loop)", True),
    ("ggtt_write", "GGTT 8 B entry writes + 1 read (Python)", True),
    ("ggtt_write_native", "GGTT 8 B entry writes + 1 read (native loop)", True),
    ("read", "4 B reads", True),
    ("read_mean", "4 B read latency mean", False),
    ("read_p50", "4 B read latency p50", False),
    ("read_p99", "4 B read latency p99", False),
    ("pair", "write+read pairs", True),
    ("pair_mean", "write+read pair latency mean", False),
    ("pair_p50", "write+read pair latency p50", False),
    ("pair_p99", "write+read pair latency p99", False),
    ("burst16_mean", "16 writes + 1 read, mean", False),
    ("burst16_p50", "16 writes + 1 read, p50", False),
    ("burst16_p99", "16 writes + 1 read, p99", False),
    ("aperture_write", "aperture (BAR2) copy in, 64 KiB", True),
    ("aperture_read", "aperture (BAR2) copy out, 64 KiB", True),
    ("baseline_store", "guest Python store to RAM (reference)", None),
    ("baseline_timed_load", "guest timed RAM load (clock cost)", None),
]


# QEMU's own cost: the same loops on a device QEMU emulates itself (edu), same boot otherwise.
BASELINE_SCRIPT = "mmio_qemu"
BASELINE_ROWS = ["posted_write", "posted_write_native", "read_mean", "read_p50", "read_p99", "pair_mean", "pair_p50"]


def one_boot(
    mode: str, flag: str, run: int, args: argparse.Namespace, script: str = SCRIPT, qemu_args: tuple[str, ...] = ()
) -> dict:
    out = harness.output_dir("bench-guest-mmio/%s/%d" % (mode, run))
    append = "devmodel.bench_n=%d devmodel.bench_native_n=%d devmodel.bench_rounds=%d" % (
        args.n,
        args.native_n,
        args.rounds,
    )
    timeout = harness.script_options(script).get("timeout", 600.0)
    dev = harness.DeviceModel(out, platform=args.platform, log_level="info", extra_args=[flag]).start()
    try:
        result = harness.run_guest([script], out, device=dev, timeout=timeout, append=append, qemu_args=qemu_args)
    finally:
        dev.stop()
    problems = result.problems(script)
    section = result.sections.get(script)
    if problems:
        raise SystemExit(
            "%s run %d: the guest script failed: %s\n%s\n(logs in %s)"
            % (mode, run, "; ".join(problems), section.text() if section else "", out)
        )
    figures, units = {}, {}
    for line in section.lines:
        m = BENCH_LINE.match(line)
        if m:
            figures[m.group(1)] = float(m.group(2))
            units[m.group(1)] = m.group(3)
    # The device logs a client's message counts when it goes; the last one is this run's.
    gone = list(CLIENT_GONE.finditer(dev.log_text()))
    if gone:
        m = gone[-1]
        figures["msgs"], figures["msgs_posted"] = float(m.group(1)), float(m.group(3))
        units["msgs"] = units["msgs_posted"] = "messages"
    figures["boot_seconds"] = result.seconds
    units["boot_seconds"] = "s"
    return {"figures": figures, "units": units, "outdir": str(out.relative_to(ROOT))}


def fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return "%.0f" % v
    return "%.3g" % v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="boots per mode (default 3)")
    ap.add_argument("-n", type=int, default=50_000, help="accesses per Python measurement (default 50000)")
    ap.add_argument("--native-n", type=int, default=200_000, help="stores per native-loop measurement")
    ap.add_argument("--rounds", type=int, default=3, help="rounds inside each boot; the median is reported")
    ap.add_argument("--platform", choices=["bdw", "skl"], default="bdw")
    ap.add_argument("--json", metavar="PATH", help="also write every run's figures there")
    ap.add_argument("--quick", action="store_true", help="one short boot per mode: checks the benchmark works")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.n, args.native_n, args.rounds = 1, 500, 2000, 1
    try:
        harness.find_qemu()
        harness.find_guest_image()
    except harness.HarnessError as e:
        print(e, file=sys.stderr)
        return 2

    runs: dict[str, list[dict]] = {mode: [] for mode, _ in MODES}
    runs["qemu-alone"] = []
    for run in range(args.runs):
        runs["qemu-alone"].append(
            one_boot("qemu-alone", "--write-multiple", run, args, BASELINE_SCRIPT, ("-device", "edu"))
        )
        order = MODES if run % 2 == 0 else MODES[::-1]  # alternate which mode boots first
        for mode, flag in order:
            r = one_boot(mode, flag, run, args)
            runs[mode].append(r)
            f = r["figures"]
            print(
                "run %d %-18s posted %s/s native %s/s  read p50 %.1f us  GGTT native %s/s  msgs %d"
                % (
                    run,
                    mode,
                    fmt(f.get("posted_write", 0)),
                    fmt(f.get("posted_write_native", 0)),
                    f.get("read_p50", 0),
                    fmt(f.get("ggtt_write_native", 0)),
                    f.get("msgs", 0),
                ),
                flush=True,
            )

    def med(mode: str, name: str) -> float | None:
        vals = [r["figures"][name] for r in runs[mode] if name in r["figures"]]
        return statistics.median(vals) if vals else None

    def spread(mode: str, name: str) -> str:
        vals = [r["figures"][name] for r in runs[mode] if name in r["figures"]]
        return "%s-%s" % (fmt(min(vals)), fmt(max(vals))) if len(vals) > 1 else ""

    units = runs[MODES[0][0]][0]["units"]
    rows = ROWS + [
        ("msgs", "device: messages received per boot", None),
        ("msgs_posted", "device: of which posted (no reply)", None),
        ("boot_seconds", "QEMU start to exit", None),
    ]
    on, off = MODES[0][0], MODES[1][0]
    print(
        "Guest MMIO through QEMU vfio-user (TCG, %s): median of %d boots per mode; each boot the median "
        "of %d rounds (n=%d, native n=%d)" % (args.platform, args.runs, args.rounds, args.n, args.native_n)
    )
    head = "%-46s %-10s %14s %-19s %14s %-19s %7s" % ("figure", "unit", on, "(range)", off, "(range)", "on/off")
    print(head)
    print("-" * len(head))
    for name, label, higher in rows:
        a, b = med(on, name), med(off, name)
        if a is None or b is None:
            continue
        ratio = a / b if b else float("nan")
        mark = (
            ""
            if higher is None
            else (" +" if (ratio > 1.05) == higher and abs(ratio - 1) > 0.05 else " -" if abs(ratio - 1) > 0.05 else "")
        )
        print(
            "%-46s %-10s %14s %-19s %14s %-19s %6.2f%s"
            % (label, units.get(name, ""), fmt(a), spread(on, name), fmt(b), spread(off, name), ratio, mark)
        )
    print("(+ / -: write-multiple better / worse by more than 5%)")
    print()
    print(
        "What the device adds: the same loops on QEMU's own edu device (QEMU's MMIO path alone) "
        "next to the vGPU (write-multiple)"
    )
    head = "%-46s %-10s %14s %14s %14s" % ("figure", "unit", "QEMU alone", "vGPU", "device adds")
    print(head)
    print("-" * len(head))
    labels = {name: label for name, label, _ in ROWS}
    for name in BASELINE_ROWS:
        a, b = med("qemu-alone", name), med(on, name)
        if a is None or b is None:
            continue
        unit = units.get(name, "")
        added = "%.1f us" % (b - a) if unit == "us" else "%.1f us/op" % (1e6 / b - 1e6 / a) if a and b else ""
        print("%-46s %-10s %14s %14s %14s" % (labels[name], unit, fmt(a), fmt(b), added))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
