#!/usr/bin/env python3
"""What a user of the guest's i915 sees, and what bounds it: batches per second and submit-to-
completion latency through i915, the device's MMIO messages and interrupts per batch, i915's probe
time and the boot's total time.

Boots the i915 guest (QEMU TCG) running guest-tests/guest/test_i915_bench.py, which brackets
each phase (i915's probe, a calibration of plain register reads, N nop and N store batches each
waited for, N nop batches back to back, IGT's gem_exec_nop, gem_latency, gem_blt, gem_exec_ctx)
with a question over the harness's channel. At each edge this side reads the device's counters
(its inspection socket: vfio-user messages, interrupts raised, workloads) and the CPU time the
device process and QEMU have used (/proc/PID/task/*/schedstat; QEMU's vCPU threads apart from
its others), so every phase has per-batch figures for wall time, device CPU and QEMU CPU.

What bounds a phase is read off those: the calibration prices one trapped access in this boot
(QEMU's CPU and the device's per read of a register without behaviour); the phase's messages at
that price are the share of the access path, QEMU's remaining CPU is TCG running the guest, the
device's remaining CPU is its work beyond serving the accesses (execlists, the scanner, engines).

No target: the issue asks for the figures and what bounds each. Logs in
test-output/bench-i915/<platform>/.

Run: python bench/bench_i915.py [--platform bdw|skl] [-n N] [--no-igt] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "guest-tests"))

import harness  # noqa: E402

SCRIPT = "i915_bench"
BENCH_LINE = re.compile(r"^# bench (\S+) (\S+) (\S+)$")
FIGURE_LINE = re.compile(r"^# figure (\S+): (.*)$")
TCG_THREAD = re.compile(r"^CPU \d+/TCG$")  # QEMU's vCPU threads (named with debug-threads=on)
# What each IGT benchmark prints (IGT's benchmarks/*.c).
IGT_UNITS = {
    "gem_exec_nop-rcs": "us per nop batch, back to back for 2 s",
    "gem_exec_nop-sync": "us per nop batch, each waited (gem_sync)",
    "gem_exec_ctx": "us per batch",
    "gem_latency": "(batches/producers: dispatch, wake-up, producer latency, CPU per batch)",
    "gem_blt": "MiB/s, 1 MiB copies",
}
QEMU_ARGS = ("-name", "i915-bench,debug-threads=on")


def thread_times(pid: int) -> dict[str, tuple[float, float]]:
    """Per thread name (same-named threads summed): seconds on a CPU and seconds runnable but
    waiting for one (/proc/PID/task/TID/schedstat's first two fields)."""
    out: dict[str, tuple[float, float]] = {}
    for task in glob.glob("/proc/%d/task/*" % pid):
        try:
            with open(task + "/schedstat") as f:
                run, wait = (int(x) / 1e9 for x in f.read().split()[:2])
            with open(task + "/comm") as f:
                name = f.read().strip()
        except (OSError, ValueError):
            continue  # a thread that ended between the listing and the read
        had = out.get(name, (0.0, 0.0))
        out[name] = (had[0] + run, had[1] + wait)
    return out


def qemu_pid() -> int | None:
    """QEMU's pid: this process's child running qemu-system (started by run_guest; ci/setup-qemu's
    wrapper execs it through its own loader, so the name is the loader's)."""
    me = os.getpid()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            if ppid != me:
                continue
            with open(stat[: -len("stat")] + "cmdline", "rb") as f:
                if b"qemu-system" in f.read():
                    return int(stat.split("/")[2])
        except (OSError, ValueError, IndexError):
            continue
    return None


class Snapshots:
    """The channel's handler: at each phase edge, the device's counters and both processes' CPU."""

    def __init__(self, dev: harness.DeviceModel) -> None:
        self.dev = dev
        self.qemu: int | None = None
        self.snaps: dict[tuple[str, str], dict[str, Any]] = {}
        self.order: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, tag: str, payload: Any) -> str:
        if tag != "phase":
            return "fail: unknown question %s" % tag
        if self.qemu is None:
            self.qemu = qemu_pid()
        wall = time.monotonic()
        d = thread_times(self.dev.proc.pid) if self.dev.proc else {}
        q = thread_times(self.qemu) if self.qemu else {}
        vcpu = [v for k, v in q.items() if TCG_THREAD.match(k)]
        other = [v for k, v in q.items() if not TCG_THREAD.match(k)]
        if not d or not vcpu:  # figures of zero would pass for measurements
            return "fail: no CPU times for %s" % ("the device" if not d else "QEMU's vCPU thread")
        state = self.dev.state()
        if "error" in state:
            return "fail: %s" % state["error"]
        c = state.get("counters", {})
        msgs = c.get("messages", {})
        snap = {
            "wall": wall,
            "dev_cpu": sum(v[0] for v in d.values()),
            "dev_wait": sum(v[1] for v in d.values()),
            "vcpu": sum(v[0] for v in vcpu),
            "vcpu_wait": sum(v[1] for v in vcpu),
            "qemu_other": sum(v[0] for v in other),
            "msgs": msgs.get("requests", 0),
            "posted": msgs.get("posted", 0),
            "irqs": c.get("interrupts", {}).get("raised", 0),
            "irq_events": c.get("interrupts", {}).get("events", 0),
            "workloads": c.get("workloads", {}).get("completed", 0),
            "commands": c.get("workloads", {}).get("commands", 0),
        }
        with self.lock:
            phase, edge = str(payload["phase"]), str(payload["edge"])
            self.snaps[phase, edge] = snap
            if edge == "start":
                self.order.append(phase)
        return "ok"

    def delta(self, phase: str) -> dict[str, float] | None:
        a, b = self.snaps.get((phase, "start")), self.snaps.get((phase, "end"))
        if a is None or b is None:
            return None
        return {k: b[k] - a[k] for k in a}


def boot(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, str], Snapshots, float, Path]:
    out = harness.output_dir("bench-i915/%s" % args.platform)
    append = "devmodel.bench_n=%d devmodel.bench_calib=%d devmodel.bench_igt=%d" % (args.n, args.calib, args.igt)
    timeout = harness.script_options(SCRIPT).get("timeout", 1800.0)
    dev = harness.DeviceModel(out, platform=args.platform, log_level="info").start()
    snaps = Snapshots(dev)
    try:
        with harness.GuestChannel() as channel:
            channel.serve(snaps)
            started = time.monotonic()
            result = harness.run_guest(
                [SCRIPT], out, device=dev, timeout=timeout, append=append, qemu_args=[*channel.qemu_args(), *QEMU_ARGS]
            )
            if channel.errors:
                raise SystemExit("the host side of the channel failed: %s" % "; ".join(channel.errors))
    finally:
        dev.stop()
    section = result.sections.get(SCRIPT)
    problems = result.problems(SCRIPT)
    if problems or section is None:
        raise SystemExit(
            "the guest script failed: %s\n%s\n(logs in %s)"
            % ("; ".join(problems), section.text() if section else "", out.relative_to(ROOT))
        )
    figures: dict[str, float] = {}
    igt: dict[str, str] = {}
    for line in section.lines:
        m = BENCH_LINE.match(line)
        if m:
            figures[m.group(1)] = float(m.group(2))
        m = FIGURE_LINE.match(line)
        if m:
            igt[m.group(1)] = m.group(2)
    figures["boot_seconds"] = result.seconds
    figures["to_probe"] = snaps.snaps["probe", "start"]["wall"] - started
    last = max(v["wall"] for (_phase, edge), v in snaps.snaps.items() if edge == "end")
    figures["phases"] = last - snaps.snaps["probe", "start"]["wall"]
    figures["after"] = started + result.seconds - last
    return figures, igt, snaps, started, out


def bound(d: dict[str, float], price: dict[str, float]) -> str:
    """Where a phase's wall time went, on the guest's vCPU thread (the guest runs only there):
    TCG running guest code, the vCPU's side of the trapped accesses, waiting for a host CPU, and
    off its CPU (blocked on the device's reply or a completion, or the guest idle). Beside it,
    what ran concurrently: the device and QEMU's other threads (they carry the replies)."""
    wall, n = d["wall"], d["msgs"]
    access = n * price["vcpu"]
    line = {
        "TCG": d["vcpu"] - access,
        "QEMU access path": access,
        "waiting for a CPU": d["vcpu_wait"],
        "vCPU off": wall - d["vcpu"] - d["vcpu_wait"],
    }
    beside = {
        "device": d["dev_cpu"],
        "of which serving accesses": n * price["dev_cpu"],
        "device waiting for a CPU": d["dev_wait"],
        "QEMU's other threads": d["qemu_other"],
    }
    top = max(line, key=lambda k: line[k])
    if top == "vCPU off" and d["dev_cpu"] >= 0.8 * line["vCPU off"]:
        top = "the device (running)"
    elif top == "vCPU off" and d["dev_cpu"] + d["dev_wait"] >= 0.8 * line["vCPU off"]:
        top = "the device (waiting for a CPU)"
    elif top == "vCPU off":
        top = "the guest idle (nothing runs)"
    pct = "  ".join("%s %.0f%%" % (k, 100 * v / wall) for k, v in line.items())
    return "%-34s %s | %s" % (
        "bound: " + top,
        pct,
        "  ".join("%s %.0f%%" % (k, 100 * v / wall) for k, v in beside.items()),
    )


def ms(v: float) -> str:
    return "%.3f" % (v * 1e3) if v < 0.01 else "%.2f" % (v * 1e3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", choices=["bdw", "skl"], default="bdw")
    ap.add_argument("-n", type=int, default=500, help="batches per phase (default 500)")
    ap.add_argument("--calib", type=int, default=2000, help="plain register reads that price one access")
    ap.add_argument("--no-igt", dest="igt", action="store_const", const=0, default=1, help="skip IGT's benchmarks")
    ap.add_argument("--json", metavar="PATH", help="also write the figures and snapshots there")
    ap.add_argument("--quick", action="store_true", help="a short boot (checks the benchmark works)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.igt = 20, 0
    try:
        harness.find_qemu()
        harness.find_guest_image("i915")
    except harness.HarnessError as e:
        print(e, file=sys.stderr)
        return 2
    figures, igt, snaps, _started, out = boot(args)
    f = figures.get
    load = os.getloadavg()
    print(
        "i915 in the guest (QEMU TCG, %s), one boot, n=%d; host load %.2f %.2f %.2f on %d CPUs"
        % (args.platform, args.n, *load, os.cpu_count() or 0)
    )
    print()
    print("What the user sees")
    rows = [
        ("nop batch, execbuf + wait, rate", f("nop_rate"), "batches/s"),
        ("nop batch submit to completion, p50", f("nop_p50"), "us"),
        ("nop batch submit to completion, p99", f("nop_p99"), "us"),
        ("store batch, execbuf + wait, rate", f("store_rate"), "batches/s"),
        ("store batch submit to completion, p50", f("store_p50"), "us"),
        ("store batch submit to completion, p99", f("store_p99"), "us"),
        ("nop batches back to back, rate", f("nop_stream_rate"), "batches/s"),
        ("i915 probe (insmod i915)", f("probe_insmod"), "s"),
        ("i915 probe (dmesg: first i915 line to 'Initialized i915')", f("probe_dmesg"), "s"),
        ("boot: QEMU start to the first insmod (kernel, /init, calibration)", f("to_probe"), "s"),
        ("boot: the first insmod to the last phase's end", f("phases"), "s"),
        ("boot: the last phase's end to QEMU's exit (kernel log, power-off)", f("after"), "s"),
        ("boot: QEMU start to exit (this boot's total)", f("boot_seconds"), "s"),
    ]
    for label, value, unit in rows:
        if value is not None:
            print("  %-66s %10s %s" % (label, ("%.0f" % value) if value >= 100 else "%.3g" % value, unit))
    for key, text in igt.items():
        unit = IGT_UNITS.get(key, "")
        try:
            per = float(text)
        except ValueError:
            per = 0.0
        rate = " (%.0f batches/s)" % (1e6 / per) if per and "batch" in unit else ""
        print("  IGT %-62s %s %s%s" % (key, text, unit, rate))

    deltas = {phase: snaps.delta(phase) for phase in snaps.order}
    calib, none = deltas.pop("calib", None), deltas.pop("calib-none", None)
    price: dict[str, float] = {}
    if calib and none and calib["msgs"] > none["msgs"]:
        # The loop's reads alone: what the edges' own questions cost is in both and cancels.
        net = {k: calib[k] - none[k] for k in calib}
        deltas = {"calib": net, **deltas}
        price = {k: net[k] / net["msgs"] for k in ("vcpu", "qemu_other", "dev_cpu", "wall")}
        print()
        print(
            "One trapped access in this boot (%d reads of a plain register, native loop): wall %.1f us; "
            "CPU: QEMU's vCPU %.1f us + its other threads %.1f us, the device %.1f us"
            % (args.calib, *(price[k] * 1e6 for k in ("wall", "vcpu", "qemu_other", "dev_cpu")))
        )

    print()
    print("Per batch (calib: per access; probe: the whole insmod; IGT: per workload the device ran), in ms")
    head = "%-22s %6s %8s %8s %8s %8s %8s %8s %7s %7s %6s %6s %6s" % (
        "phase",
        "count",
        "wall",
        "vCPU",
        "vCPU-wt",
        "qemu",
        "device",
        "dev-wt",
        "msgs",
        "posted",
        "irqs",
        "wl",
        "cmds",
    )
    print(head)
    print("-" * len(head))
    bounds = []
    for phase, d in deltas.items():
        if d is None:
            continue
        if phase in ("nop", "store", "nop-stream"):
            count = float(args.n)
        elif phase == "calib":
            count = d["msgs"] or 1.0
        elif phase == "probe":
            count = 1.0
        else:
            count = d["workloads"] or 1.0
        cols = ("wall", "vcpu", "vcpu_wait", "qemu_other", "dev_cpu", "dev_wait")
        print(
            "%-22s %6d %s %7.1f %7.1f %6.2f %6.2f %6.1f"
            % (
                phase,
                count,
                " ".join("%8s" % ms(d[k] / count) for k in cols),
                d["msgs"] / count,
                d["posted"] / count,
                d["irqs"] / count,
                d["workloads"] / count,
                d["commands"] / count,
            )
        )
        if price and phase != "calib":
            bounds.append("  %-21s %s" % (phase, bound(d, price)))
    print("(vCPU: QEMU's TCG thread on a CPU; vCPU-wt: it runnable but waiting for a CPU; qemu: QEMU's other")
    print(" threads; device / dev-wt: the device process on a CPU / waiting for one; msgs, posted: vfio-user")
    print(" messages the device got, of which posted writes; irqs: interrupts it raised; wl: workloads it")
    print(" ran, one per context submission, which may hold many of i915's requests; cmds: commands they")
    print(" ran, i915's own ring commands around each batch included)")
    if bounds:
        print()
        print("What bounds each phase: the guest's vCPU thread's wall time split (accesses priced at this")
        print("boot's calibration), and beside it the CPU of the device and of QEMU's other threads")
        print("\n".join(bounds))
    if args.json:
        snapped = {"%s/%s" % k: v for k, v in snaps.snaps.items()}
        dump = {"args": vars(args), "figures": figures, "igt": igt, "snaps": snapped}
        Path(args.json).write_text(json.dumps(dump, indent=1))
    print("(logs in %s)" % out.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
