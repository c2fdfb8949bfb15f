"""IGT's packaged programs (Debian's intel-gpu-tools 1.27.1) as outside clients of the guest's
own i915 on the vGPU: the tools (lsgpu, intel_gem_info, intel_gpu_top) and the benchmarks in
/usr/libexec/igt-gpu-tools/benchmarks, each run with short parameters under a deadline.

One TAP line per program in PROGRAMS: it passes when the program exits 0 within its deadline,
its output holds what it measures (FIGURE: a regular expression), and the kernel log gained no
i915/DRM line at warning level or above and no hang, reset or stopped heartbeat while it ran.
Each program's output is printed as TAP comments ("# igt NAME: ..."), its figure as
"# figure NAME: ...". The script needs debugfs (IGT reads i915's files there) and mounts it.
"""
# devmodel-guest: image=i915 timeout=1200
import os
import re
import signal
import subprocess
import sys
import time

import gvtlib
import i915lib
from i915uapi import RENDER_NODE
from test_i915 import DRM_LINE, INSMOD_TIMEOUT, wedged

BENCH = "/usr/libexec/igt-gpu-tools/benchmarks/"
# A sample in which some engine was busy (intel_gpu_top's JSON).
GPU_TOP_BUSY = r'"busy": [1-9]'
# Kernel lines that mean the GPU stopped making progress (i915's hang detection and reset).
HANG = re.compile(r"GPU HANG|[Rr]esetting|stopped heartbeat|wedged|hangcheck")
# (key, argv, deadline in seconds, FIGURE): FIGURE matches the program's output when it measured
# something (a number it prints), None when the exit status is all it reports. The parameters
# keep each run to a few seconds of a TCG guest (the benchmarks' own defaults run for minutes);
# the deadlines are ten times what a run took on a loaded machine, never a measurement.
PROGRAMS: tuple[tuple[str, list[str], float, str | None], ...] = (
    ("lsgpu", ["lsgpu"], 30, r"card0|i915"),
    ("intel_gem_info", ["intel_gem_info"], 30, None),
    # To standard output: intel_gpu_top 1.27 flushes stdout after each sample, never an -o file.
    ("intel_gpu_top", ["intel_gpu_top", "-J", "-s", "1000", "-o", "-"], 0, GPU_TOP_BUSY),
    ("gem_exec_nop-rcs", [BENCH + "gem_exec_nop", "-e", "rcs"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_exec_nop-bcs", [BENCH + "gem_exec_nop", "-e", "bcs"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_exec_nop-vcs", [BENCH + "gem_exec_nop", "-e", "vcs"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_exec_nop-vecs", [BENCH + "gem_exec_nop", "-e", "vecs"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_exec_nop-all", [BENCH + "gem_exec_nop", "-e", "all"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_exec_nop-sync", [BENCH + "gem_exec_nop", "-e", "rcs", "-s"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_exec_ctx", [BENCH + "gem_exec_ctx", "-e", "rcs"], 60, r"\d"),
    # gem_busy's own mode (a busy batch) cannot run on i915 6.1: it names its relocation target
    # by handle under I915_EXEC_HANDLE_LUT, so execbuf fails with ENOENT (docs/igt.md). -I
    # measures the busy ioctl on an idle object; -w the wait ioctl.
    ("gem_busy-idle", [BENCH + "gem_busy", "-I"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_busy-wait", [BENCH + "gem_busy", "-I", "-w"], 60, r"^\s*\d+\.\d+\s*$"),
    ("gem_latency", [BENCH + "gem_latency", "-t", "2"], 40, r"\d"),
    ("gem_blt", [BENCH + "gem_blt", "-r", "1"], 150, r"\d"),
    ("gem_create", [BENCH + "gem_create", "-s", "4096", "-r", "1"], 60, r"\d"),
    ("gem_exec_reloc", [BENCH + "gem_exec_reloc", "-r", "1"], 300, r"\d"),
    ("gem_prw", [BENCH + "gem_prw", "-r", "1"], 60, r"\d"),
    ("gem_set_domain", [BENCH + "gem_set_domain", "-r", "1"], 60, r"\d"),
    ("gem_exec_fault", [BENCH + "gem_exec_fault", "-r", "1"], 90, r"\d"),
    ("gem_syslatency", [BENCH + "gem_syslatency", "-t", "2"], 60, r"\d"),
    ("intel_upload_blit_small", [BENCH + "intel_upload_blit_small"], 300, r"\d"),
    ("gem_wsim", [BENCH + "gem_wsim", "-w", "1.RCS.1000.0.0", "-r", "20"], 90, r"\d"),
)
# intel_gpu_top samples until it is stopped. gem_exec_nop keeps the engines busy beside it (run
# again whenever it ends) until a sample shows an engine busy, then it gets SIGINT as from a
# user: the stop follows what it printed, not a time, since on a loaded host the guest may not
# submit a batch for seconds. GPU_TOP_GUARD only bounds a run that never shows one.
GPU_TOP_GUARD = 180.0
GPU_TOP_LOAD = [BENCH + "gem_exec_nop", "-e", "all", "-r", "2"]


def sample_busy(proc, out):
    """Run GPU_TOP_LOAD beside the sampler ``proc`` (writing to the file ``out``) until a sample
    shows a busy engine or GPU_TOP_GUARD passes; then stop the sampler. Its exit status."""
    guard = time.monotonic() + GPU_TOP_GUARD
    load = None
    try:
        while time.monotonic() < guard:
            if load is None or load.poll() is not None:
                if load is not None and load.returncode != 0:
                    raise RuntimeError("the load beside intel_gpu_top, gem_exec_nop, exited %d" % load.returncode)
                load = subprocess.Popen(GPU_TOP_LOAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(out, errors="replace") as f:
                if re.search(GPU_TOP_BUSY, f.read()):
                    break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
        if load is not None and load.wait(60) != 0:
            raise RuntimeError("the load beside intel_gpu_top, gem_exec_nop, exited %d" % load.returncode)
    return rc


def load_i915(diag) -> str:
    for name in i915lib.load_order():
        if i915lib.module_loaded(name):
            continue
        ok, secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
        diag("insmod %s: %s in %.2f s" % (name, "ok" if ok else "FAILED (%s)" % msg, secs))
        if not ok:
            return "insmod %s: %s" % (name, msg)
    if not i915lib.wait_for(lambda: bool(i915lib.bound_devices()) and os.path.exists(RENDER_NODE), 10.0):
        return "bound: %s, /dev/dri holds %s" % (i915lib.bound_devices() or "none", i915lib.dri_nodes())
    return wedged()  # mounts debugfs, which IGT reads


def run(key, argv, deadline):
    """(exit status or None when killed at the deadline, output, seconds)."""
    t0 = time.monotonic()
    out = "/tmp/igt-%s.log" % key
    with open(out, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            if deadline == 0:  # a sampler: stop it like a user would
                rc = sample_busy(proc, out)
            else:
                rc = proc.wait(deadline)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = None
    with open(out, errors="replace") as f:
        text = f.read()
    return rc, text, time.monotonic() - t0


def check(key, argv, deadline, figure, runner=run):
    """A failure reason or "". runner: run, or one that wraps it (test_i915_bench.py times the
    program alone, not the checks around it)."""
    before = len(i915lib.kmsg())
    rc, text, secs = runner(key, argv, deadline)
    lines = text.rstrip().splitlines()
    for line in lines[:60]:
        print("# igt %s: %s" % (key, line), flush=True)
    if len(lines) > 60:
        print("# igt %s: ... (%d more lines)" % (key, len(lines) - 60), flush=True)
    print("# time %s: %.1f s" % (key, secs), flush=True)
    # What i915 logs about a program (a hang's reset) may come after it exited.
    new = i915lib.kmsg_settle(quiet=1.0, limit=10.0)[before:]
    drm = [r for r in new if DRM_LINE.search(r[2]) and not r[2].startswith(" ")]
    loud = [r for r in drm if r[0] <= i915lib.KERN_WARNING]
    hangs = [r for r in new if HANG.search(r[2])]
    for rec in loud + [r for r in hangs if r not in loud]:
        print("#   dmesg: %s" % i915lib.format_record(rec), flush=True)
    if rc is None:
        return "still running after %.0f s (killed)" % deadline
    # intel_gpu_top exits with SIGINT's status when it was asked to stop.
    if rc != 0 and not (deadline == 0 and rc in (-signal.SIGINT, 128 + signal.SIGINT)):
        return "exit status %d%s" % (rc, " (IGT's skip)" if rc == 77 else "")
    if hangs:
        return "dmesg: %s" % hangs[0][2]
    if loud:
        return "dmesg: %s" % i915lib.format_record(loud[0])
    if figure is not None:
        found = [line for line in lines if re.search(figure, line, re.M)]
        if not found:
            return "no figure in its output"
        print("# figure %s: %s" % (key, " | ".join(s.strip() for s in found[:4])), flush=True)
    return wedged()


def main():
    tap = gvtlib.Tap(1 + len(PROGRAMS))
    if not tap.check("i915 binds, renderD128 exists, the GT is not wedged", lambda: load_i915(tap.diag)):
        for key, *_rest in PROGRAMS:
            tap.ok(False, key, "i915 did not load")
        return tap.finish()
    for key, argv, deadline, figure in PROGRAMS:
        tap.check(key, lambda k=key, a=argv, d=deadline, f=figure: check(k, a, d, f))
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print("# test_igt.py ran %.1f s" % (time.monotonic() - started))
    sys.exit(rc)
