"""What a user of the guest's i915 sees, timed phase by phase (run by bench/bench_i915.py, not by
the lane): i915's probe, then N nop and N store batches on rcs through execbuf, and IGT's packaged
benchmarks, each phase bracketed by questions to the host over the harness's channel (its second
serial port), so the host reads the device's counters and both processes' CPU at each edge.

Phases, in order (the host keys on these names):
- calib-none, calib: the same native loop making no reads, then CALIB 4-byte reads of an unlisted
  BAR0 register (plain storage), one trapped access each; the host takes the difference, what
  one access costs QEMU and the device in this boot, to price the phases' accesses with
  (before i915 binds: it then holds BAR0);
- probe: insmod of the module closure; i915's insmod returns when its PCI probe is done;
- nop: N batches of MI_BATCH_BUFFER_END, each execbuf then a wait on it (submit to completion);
- store: N batches of one MI_STORE_DWORD_IMM each, waited the same way, every value checked;
- nop-stream: N nop batches back to back, one wait at the end (i915 may merge requests);
- igt-KEY: IGT benchmarks (test_igt.py's argv, deadline and figure), the program's run alone
  (not the kernel log's settling after it).

Figures are TAP comments "# bench NAME VALUE UNIT"; IGT's are "# figure KEY: ..." as in
test_igt.py. Kernel command line: devmodel.bench_n=N (default 500), devmodel.bench_igt=0 skips
IGT, devmodel.bench_calib=N (default 2000).
"""
# devmodel-guest: manual image=i915 timeout=1800
import ctypes
import os
import sys
import time

import gencmd
import gvtlib
import i915lib
import test_igt
from i915uapi import EXEC_RENDER, RENDER_NODE, Drm, ExecObject
from test_i915 import INSMOD_TIMEOUT, wedged
from test_i915_exec import BATCH, TARGET, WAIT, bo, u32s

# IGT's benchmarks the issue names: submission rate (async and synchronous), wake-up latency,
# blitter throughput, context switches. Their argv and deadlines are test_igt.py's.
IGT_KEYS = ("gem_exec_nop-rcs", "gem_exec_nop-sync", "gem_latency", "gem_blt", "gem_exec_ctx")
CALIB_REG = 0x5000  # unlisted: plain storage, no behaviour (test_mmio_bench.py's REG_BASE)
# x86-64 (System V): load32(uint32_t *p, uint64_t n): n 4-byte loads of *p.
LOAD32 = bytes.fromhex(
    "4885f6"    # test rsi,rsi
    "7407"      # je ret
    "8b07"      # loop: mov eax,[rdi]
    "48ffce"    # dec rsi
    "75f9"      # jnz loop
    "c3")       # ret


class Phases:
    """Asks the host to snapshot at each phase edge; the host answers "ok"."""

    def __init__(self):
        self.chan = gvtlib.HostChannel()

    def mark(self, phase, edge):
        answer = self.chan.ask("phase", {"phase": phase, "edge": edge})
        if answer != "ok":
            raise gvtlib.TestError("the host's answer to %s %s: %s" % (phase, edge, answer))

    def igt_runner(self, key, argv, deadline):
        """test_igt.run with the phase igt-KEY around the program alone."""
        return self.run("igt-" + key, test_igt.run, key, argv, deadline)

    def run(self, phase, fn, *args):
        self.mark(phase, "start")
        try:
            return fn(*args)
        finally:
            self.mark(phase, "end")


def figure(name, value, unit):
    print("# bench %s %.6g %s" % (name, value, unit), flush=True)


def probe(tap):
    """Load the closure; i915's insmod time is its probe. A reason or ""."""
    for name in i915lib.load_order():
        if i915lib.module_loaded(name):
            continue
        ok, secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
        tap.diag("insmod %s: %s in %.2f s" % (name, "ok" if ok else "FAILED (%s)" % msg, secs))
        if not ok:
            return "insmod %s: %s" % (name, msg)
        if name == "i915":
            figure("probe_insmod", secs, "s")
    if not i915lib.wait_for(lambda: bool(i915lib.bound_devices()) and os.path.exists(RENDER_NODE), 10.0):
        return "bound: %s, /dev/dri holds %s" % (i915lib.bound_devices() or "none", i915lib.dri_nodes())
    return wedged()


def probe_from_dmesg():
    """i915's probe in the kernel's own clock: its first line to DRM's "Initialized i915"."""
    recs = i915lib.kmsg()
    first = [r[1] for r in recs if r[2].startswith("i915 ")]
    done = [r[1] for r in recs if "Initialized i915" in r[2]]
    if first and done:
        figure("probe_dmesg", done[0] - first[0], "s")


def calibrate(phases, phase, count):
    """count 4-byte reads of CALIB_REG from a native loop (the interpreter's own cost under TCG
    would swamp the access's), the phase's edges around the loop alone."""
    dev = gvtlib.find_device()
    dev.enable_memory()
    bar = dev.bar(0)
    code = gvtlib.NativeCode((LOAD32, (ctypes.c_void_p, ctypes.c_uint64)))
    try:
        (load32,) = code.calls
        bar_anchor = ctypes.c_char.from_buffer(bar.mm)
        reg = ctypes.addressof(bar_anchor) + CALIB_REG
        phases.mark(phase, "start")
        t0 = time.perf_counter()
        load32(reg, count)
        secs = time.perf_counter() - t0
        phases.mark(phase, "end")
        del load32, bar_anchor
    finally:
        bar.close()
        code.close()
    if count:
        figure("calib_read", secs / count * 1e6, "us")
    return ""


def latencies(name, times):
    times = sorted(times)
    figure(name + "_rate", len(times) / sum(times), "batches/s")
    figure(name + "_mean", sum(times) / len(times) * 1e6, "us")
    figure(name + "_p50", times[len(times) // 2] * 1e6, "us")
    figure(name + "_p99", times[min(len(times) - 1, len(times) * 99 // 100)] * 1e6, "us")


def waited(phases, drm, name, count, store):
    """count batches on rcs, each waited for before the next; with store, batch i writes i to
    TARGET + 4 i and every value is checked at the end. A reason or ""."""
    if store:
        image = b"".join(gencmd.batch(gencmd.store_dword(TARGET + 4 * i, 0x5A000000 | i)) for i in range(count))
        per = len(image) // count
    else:
        image = gencmd.batch()
        per = 0
    target, bb = bo(drm, 4 * count), bo(drm, image)
    try:
        objs = [ExecObject(target, TARGET, write=True), ExecObject(bb, BATCH)]
        length = per or len(image)
        times = []
        clock = time.perf_counter
        phases.mark(name, "start")
        for i in range(count):
            t0 = clock()
            drm.execbuf(objs, EXEC_RENDER, length, batch_start=i * per)
            if not drm.wait(bb, WAIT):
                return "batch %d did not complete within %.0f s" % (i, WAIT)
            times.append(clock() - t0)
        phases.mark(name, "end")
        if store:
            got = u32s(drm.pread(target, 0, 4 * count))
            lost = [i for i in range(count) if got[i] != 0x5A000000 | i]
            if lost:
                return "%d of %d stores lost, first batch %d" % (len(lost), count, lost[0])
        latencies(name, times)
        return ""
    finally:
        drm.gem_close(target)
        drm.gem_close(bb)


def stream(phases, drm, count):
    """count nop batches back to back, one wait for the last."""
    bb = bo(drm, gencmd.batch())
    try:
        objs = [ExecObject(bb, BATCH)]
        phases.mark("nop-stream", "start")
        t0 = time.perf_counter()
        for _ in range(count):
            drm.execbuf(objs, EXEC_RENDER, 8)
        done = drm.wait(bb, WAIT + count * 0.1)
        secs = time.perf_counter() - t0
        phases.mark("nop-stream", "end")
        if not done:
            return "the last batch did not complete"
        figure("nop_stream_rate", count / secs, "batches/s")
        figure("nop_stream_per", secs / count * 1e6, "us")
        return ""
    finally:
        drm.gem_close(bb)


def main():
    n = gvtlib.cmdline_int("devmodel.bench_n", 500)
    calib = gvtlib.cmdline_int("devmodel.bench_calib", 2000)
    igt = [p for p in test_igt.PROGRAMS if p[0] in IGT_KEYS] if gvtlib.cmdline_int("devmodel.bench_igt", 1) else []
    tap = gvtlib.Tap(5 + len(igt))
    phases = Phases()
    tap.diag("n=%d calib=%d igt=%s" % (n, calib, ",".join(p[0] for p in igt) or "none"))
    # Before i915 binds: it then holds BAR0, and its sysfs resource cannot be mapped. The price of
    # one access is the difference of the two (what the edges' own questions cost cancels).
    tap.check("calib: %d plain BAR0 reads from a native loop, and none" % calib,
              lambda: calibrate(phases, "calib-none", 0) or calibrate(phases, "calib", calib))
    if not tap.check("probe: i915 binds, renderD128 exists, the GT is not wedged",
                     lambda: phases.run("probe", probe, tap)):
        return tap.finish()
    probe_from_dmesg()
    with Drm() as drm:
        tap.check("nop: %d nop batches, each waited" % n, lambda: waited(phases, drm, "nop", n, False))
        tap.check("store: %d store batches, each waited, every store checked" % n,
                  lambda: waited(phases, drm, "store", n, True))
        tap.check("nop-stream: %d nop batches back to back" % n, lambda: stream(phases, drm, n))
    for key, argv, deadline, fig in igt:
        tap.check(key, lambda k=key, a=argv, d=deadline, f=fig: test_igt.check(k, a, d, f, phases.igt_runner))
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print("# test_i915_bench.py ran %.1f s" % (time.monotonic() - started))
    sys.exit(rc)
