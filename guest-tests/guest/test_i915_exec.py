"""Batches from user space through the guest's own, unmodified i915 (Debian's 6.1 generic
kernel), on the render node, standard library only.

Loads i915 (the module closure in order, no parameters), then, each as one TAP line of CHECKS:
MI_STORE_DWORD_IMM on every engine i915 exposes, XY_COLOR_BLT and XY_SRC_COPY_BLT on the blitter
checked pixel by pixel, 1,000 batches in a row with every completion checked, two processes
submitting at once, a hung batch that i915 must detect and reset, an unload and reload of i915,
and the kernel log. Buffers are softpinned (EXEC_OBJECT_PINNED) in each file's own full PPGTT,
above 4 GiB; batches are written with pwrite and results read back with pread. Timings are TAP
comments ("# time ...", "# rate ...").
"""
# devmodel-guest: image=i915 timeout=540
import os
import struct
import subprocess
import sys
import time
from array import array

import gencmd
import gvtlib
import i915lib
from i915uapi import (
    ENGINES,
    EXEC_BLT,
    EXEC_RENDER,
    PARAM_CHIPSET_ID,
    PARAM_CMD_PARSER_VERSION,
    PARAM_HAS_ALIASING_PPGTT,
    PARAM_HAS_EXEC_SOFTPIN,
    PARAM_HAS_GPU_RESET,
    PPGTT_FULL,
    RENDER_NODE,
    Drm,
    ExecObject,
)
from test_i915 import DRM_LINE, INSMOD_TIMEOUT, wedged

# (key, description) of each check, in TAP order; tests/guest/test_i915_batches.py keys its
# expectations on the keys.
CHECKS = (
    ("loaded", "i915 binds, renderD128 exists, the GT is not wedged"),
    ("params", "i915 reports full PPGTT and softpin"),
    ("store-rcs", "MI_STORE_DWORD_IMM on rcs (I915_EXEC_RENDER)"),
    ("store-bcs", "MI_STORE_DWORD_IMM on bcs (I915_EXEC_BLT)"),
    ("store-vcs", "MI_STORE_DWORD_IMM on vcs (I915_EXEC_BSD)"),
    ("store-vecs", "MI_STORE_DWORD_IMM on vecs (I915_EXEC_VEBOX)"),
    ("color-blt", "XY_COLOR_BLT fills its rectangle, pixel by pixel"),
    ("src-copy-blt", "XY_SRC_COPY_BLT copies its rectangle, pixel by pixel"),
    ("blit-4mib", "4 MiB XY_COLOR_BLT and XY_SRC_COPY_BLT land whole"),
    ("batches-1000", "1,000 batches in a row on rcs, every one completed"),
    ("batches-waited", "200 batches on rcs, each waited for before the next, every one completed"),
    ("two-processes", "two processes submitting at once, every batch completed"),
    ("msi", "i915's interrupts arrive as MSI (/proc/interrupts), and there were many"),
    ("hang-reset", "a hung rcs batch is reset by i915, bcs runs meanwhile, the next rcs batch runs"),
    ("reload", "i915 unloads and loads again, a batch runs on every engine"),
    ("no-drm-warnings", "dmesg: no i915/DRM line at warning level or above"),
)

# Softpinned addresses: above 4 GiB (the 48-bit address space of full PPGTT), one per role.
TARGET = 0x1_0000_0000
BATCH = 0x2_0000_0000
SRC = 0x3_0000_0000
DST = 0x4_0000_0000
PAGE = 4096
WAIT = 30.0          # seconds one batch may take before it counts as lost
STORES = 16          # stores per engine batch
RUN = 1000           # batches in a row
WAITED_RUN = 200     # batches submitted one at a time, each waited for
CHILD_RUN = 300      # batches per process in the two-process check
HANG_WAIT = 120.0    # i915's heartbeat declares a hang after a few 2.5 s intervals
# Blit surfaces: linear, 32 bpp.
W, H = 256, 128
PITCH = W * 4
BIG_W, BIG_H = 1024, 1024
# i915 lines at warning level or above that this script's own actions cause and the docs
# explain (docs/i915-bringup.md): (substring, why). Empty: none is expected.
EXPECTED_WARNINGS: tuple[tuple[str, str], ...] = ()


def round_up(n, to=PAGE):
    return (n + to - 1) // to * to


def bo(drm, data_or_size):
    """A buffer object holding data (bytes) or size zero bytes."""
    size = data_or_size if isinstance(data_or_size, int) else len(data_or_size)
    handle = drm.create(round_up(size))
    if not isinstance(data_or_size, int):
        drm.pwrite(handle, 0, data_or_size)
    return handle


def u32s(raw):
    a = array("I")
    a.frombytes(raw)
    return a


def run_batch(drm, engine, commands, targets, context=0):
    """Submit one batch of commands on engine with targets [(handle, address)] written, wait for
    it. Returns a failure reason or ""."""
    data = gencmd.batch(*commands)
    bb = bo(drm, data)
    try:
        objs = [ExecObject(h, a, write=True) for h, a in targets] + [ExecObject(bb, BATCH)]
        drm.execbuf(objs, engine, len(data), context=context)
        if not drm.wait(bb, WAIT):
            return "the batch did not complete within %.0f s" % WAIT
        return ""
    finally:
        drm.gem_close(bb)


def check_store(drm, engine, tag):
    """STORES MI_STORE_DWORD_IMM to one page above 4 GiB; every dword checked."""
    target = bo(drm, PAGE)
    try:
        values = [(tag << 24) | (i << 8) | 0xA5 for i in range(STORES)]
        cmds = [gencmd.store_dword(TARGET + 8 * i, v) for i, v in enumerate(values)]
        t0 = time.monotonic()
        why = run_batch(drm, engine, cmds, [(target, TARGET)])
        if why:
            return why
        elapsed = time.monotonic() - t0
        got = u32s(drm.pread(target, 0, PAGE))
        want = array("I", [0] * (PAGE // 4))
        for i, v in enumerate(values):
            want[2 * i] = v
        if got != want:
            bad = [i for i in range(len(want)) if got[i] != want[i]]
            return "%d dword(s) wrong, first at byte %d: 0x%08x, want 0x%08x" % (
                len(bad), 4 * bad[0], got[bad[0]], want[bad[0]])
        print("# time store batch submit to read back: %.1f ms" % (elapsed * 1e3), flush=True)
        return ""
    finally:
        drm.gem_close(target)


def compare_pixels(got, want, width, what):
    """A reason naming the first wrong pixels of a surface, or ""."""
    if got == want:
        return ""
    bad = [i for i in range(len(want)) if got[i] != want[i]]
    first = ", ".join("(%d,%d)=0x%08x want 0x%08x" % (i % width, i // width, got[i], want[i]) for i in bad[:3])
    return "%s: %d of %d pixels wrong: %s" % (what, len(bad), len(want), first)


def pattern(width, height, base):
    return array("I", [base | (y << 12) | x for y in range(height) for x in range(width)])


class Blits:
    """The blitter checks share two surfaces and a model of what they should hold."""

    COLOR = 0xFF3366CC
    FILL = (16, 8, 200, 100)           # x1, y1, x2, y2 of the colour fill in src
    COPY = (32, 20, 232, 120, 8, 4)    # x1, y1, x2, y2 in dst, source corner in src

    def __init__(self, drm):
        self.drm = drm
        self.src_model = pattern(W, H, 0xA0000000)
        self.dst_model = pattern(W, H, 0x50000000)
        self.src = bo(drm, self.src_model.tobytes())
        self.dst = bo(drm, self.dst_model.tobytes())

    def close(self):
        self.drm.gem_close(self.src)
        self.drm.gem_close(self.dst)

    def read(self, handle):
        return u32s(self.drm.pread(handle, 0, PITCH * H))

    def color(self):
        x1, y1, x2, y2 = self.FILL
        why = run_batch(self.drm, EXEC_BLT, [gencmd.color_blt(SRC, PITCH, x1, y1, x2, y2, self.COLOR)],
                        [(self.src, SRC)])
        if why:
            return why
        for y in range(y1, y2):
            self.src_model[y * W + x1:y * W + x2] = array("I", [self.COLOR] * (x2 - x1))
        return compare_pixels(self.read(self.src), self.src_model, W, "src after XY_COLOR_BLT")

    def copy(self):
        x1, y1, x2, y2, sx, sy = self.COPY
        cmd = gencmd.src_copy_blt(DST, PITCH, x1, y1, x2, y2, SRC, PITCH, sx, sy)
        why = run_batch(self.drm, EXEC_BLT, [cmd], [(self.dst, DST), (self.src, SRC)])
        if why:
            return why
        for row in range(y2 - y1):
            s = (sy + row) * W + sx
            self.dst_model[(y1 + row) * W + x1:(y1 + row) * W + x2] = self.src_model[s:s + x2 - x1]
        why = compare_pixels(self.read(self.dst), self.dst_model, W, "dst after XY_SRC_COPY_BLT")
        return why or compare_pixels(self.read(self.src), self.src_model, W, "src after XY_SRC_COPY_BLT")


def check_big_blits(drm):
    """A 4 MiB colour fill, then a 4 MiB copy of it, each timed submit to completion."""
    size = BIG_W * BIG_H * 4
    src, dst = bo(drm, size), bo(drm, size)
    try:
        color = 0x12345678
        times = {}
        for name, cmd, targets in (
                ("XY_COLOR_BLT", gencmd.color_blt(SRC, BIG_W * 4, 0, 0, BIG_W, BIG_H, color), [(src, SRC)]),
                ("XY_SRC_COPY_BLT", gencmd.src_copy_blt(DST, BIG_W * 4, 0, 0, BIG_W, BIG_H, SRC, BIG_W * 4, 0, 0),
                 [(dst, DST), (src, SRC)])):
            t0 = time.monotonic()
            why = run_batch(drm, EXEC_BLT, [cmd], targets)
            times[name] = time.monotonic() - t0
            if why:
                return "%s: %s" % (name, why)
        want = struct.pack("<I", color) * (BIG_W * BIG_H)
        for name, handle in (("src", src), ("dst", dst)):
            if drm.pread(handle, 0, size) != want:
                got = u32s(drm.pread(handle, 0, size))
                return compare_pixels(got, array("I", [color]) * (BIG_W * BIG_H), BIG_W, name)
        for name, secs in times.items():
            print("# rate %s 4 MiB submit to completion: %.1f ms, %.0f MB/s" % (
                name, secs * 1e3, size / secs / 1e6), flush=True)
        return ""
    finally:
        drm.gem_close(src)
        drm.gem_close(dst)


def run_in_a_row(drm, engine, count, tag, wait_each=False):
    """count batches submitted back to back (one batch buffer, a 24-byte batch each at its own
    offset), batch i storing tag | i at TARGET + 4 i; then one wait and every dword checked.
    wait_each: wait for each batch before submitting the next (the round trip from user space
    to completion, where back to back i915 may merge requests into one ELSP submission).
    Returns (reason or "", seconds from the first submission to the last completion)."""
    per = len(gencmd.batch(gencmd.store_dword(0, 0)))
    image = b"".join(gencmd.batch(gencmd.store_dword(TARGET + 4 * i, tag | i)) for i in range(count))
    target, bb = bo(drm, 4 * count), bo(drm, image)
    try:
        objs = [ExecObject(target, TARGET, write=True), ExecObject(bb, BATCH)]
        t0 = time.monotonic()
        for i in range(count):
            drm.execbuf(objs, engine, per, batch_start=i * per)
            if wait_each and not drm.wait(target, WAIT):
                return "batch %d did not complete" % i, time.monotonic() - t0
        if not drm.wait(target, WAIT + count * 0.1):
            return "the last batch did not complete", time.monotonic() - t0
        elapsed = time.monotonic() - t0
        got = u32s(drm.pread(target, 0, 4 * count))
        lost = [i for i in range(count) if got[i] != tag | i]
        if lost:
            return "%d of %d completions lost, first: batch %d stored 0x%08x" % (
                len(lost), count, lost[0], got[lost[0]]), elapsed
        return "", elapsed
    finally:
        drm.gem_close(target)
        drm.gem_close(bb)


def check_in_a_row(drm):
    why, secs = run_in_a_row(drm, EXEC_RENDER, RUN, 0x5E000000)
    if not why:
        print("# rate %d batches in a row: %.2f s, %.0f batches/s, %.2f ms per batch" % (
            RUN, secs, RUN / secs, secs / RUN * 1e3), flush=True)
    return why


def check_waited(drm):
    why, secs = run_in_a_row(drm, EXEC_RENDER, WAITED_RUN, 0x3A000000, wait_each=True)
    if not why:
        print("# rate %d batches one at a time: %.2f s, %.0f batches/s, %.2f ms per round trip" % (
            WAITED_RUN, secs, WAITED_RUN / secs, secs / WAITED_RUN * 1e3), flush=True)
    return why


def check_two_processes():
    """Two forked processes, each with its own file (own context, own PPGTT), submit CHILD_RUN
    batches on rcs at the same time; each checks its own completions."""
    pids = {}
    t0 = time.monotonic()
    for n in range(2):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            code = 1
            try:
                with Drm() as drm:
                    why, secs = run_in_a_row(drm, EXEC_RENDER, CHILD_RUN, (0x70 + n) << 24)
                os.write(w, (why or "ok %.2f" % secs).encode())
                code = 0 if not why else 1
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                os.write(w, ("%s: %s" % (type(e).__name__, e)).encode())
            finally:
                os._exit(code)
        os.close(w)
        pids[pid] = r
    reasons = []
    for pid, r in pids.items():
        _pid, status = os.waitpid(pid, 0)
        msg = os.read(r, 4096).decode(errors="replace")
        os.close(r)
        if os.waitstatus_to_exitcode(status) != 0:
            reasons.append("process %d: %s" % (pid, msg or "exit status %d" % status))
        else:
            print("# time process %d: %d batches in %s s" % (pid, CHILD_RUN, msg.split()[-1]), flush=True)
    elapsed = time.monotonic() - t0
    if not reasons:
        print("# rate two processes: %d batches in %.2f s, %.0f batches/s" % (
            2 * CHILD_RUN, elapsed, 2 * CHILD_RUN / elapsed), flush=True)
    return "; ".join(reasons)


def check_hang(drm):
    """A batch that starts itself forever, in its own context on rcs: while it hangs a batch on
    bcs must run; i915's heartbeat must find rcs stuck, reset it, mark the context guilty and
    complete the request; then a batch in the default context must run on rcs."""
    ctx = drm.context_create()
    hang = bo(drm, gencmd.batch(gencmd.batch_start(BATCH)))
    try:
        t0 = time.monotonic()
        drm.execbuf([ExecObject(hang, BATCH)], EXEC_RENDER, 16, context=ctx)
        why = check_store(drm, EXEC_BLT, 0x4C)
        if why:
            return "bcs while rcs hangs: " + why
        if drm.wait(hang, 0):
            return "the hung batch completed before the bcs batch: it did not hang"
        if not drm.wait(hang, HANG_WAIT):
            return "the hung batch was not reset within %.0f s" % HANG_WAIT
        print("# time hung batch submit to reset: %.1f s" % (time.monotonic() - t0), flush=True)
        _count, active, _pending = drm.reset_stats(ctx)
        if active < 1:
            return "i915 did not find the hung context guilty (batch_active %d)" % active
    finally:
        drm.gem_close(hang)
        drm.context_destroy(ctx)
    why = wedged()
    return why or check_store(drm, EXEC_RENDER, 0x4B)


def load_i915(tap_diag):
    """Insert whatever of the closure is not loaded; a reason or ""."""
    for name in i915lib.load_order():
        if i915lib.module_loaded(name):
            continue
        ok, secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
        tap_diag("insmod %s: %s in %.2f s" % (name, "ok" if ok else "FAILED (%s)" % msg, secs))
        if not ok:
            return "insmod %s: %s" % (name, msg)
    if not i915lib.wait_for(lambda: bool(i915lib.bound_devices()) and os.path.exists(RENDER_NODE), 10.0):
        return "bound: %s, /dev/dri holds %s" % (i915lib.bound_devices() or "none", i915lib.dri_nodes())
    return wedged()


def tap_with_i915(checks):
    """The TAP of a script whose CHECKS begin with "loaded", i915 loaded as that check: (tap,
    descriptions by key), the descriptions None when i915 did not load (every other check is
    then reported failed; the caller only finishes)."""
    tap = gvtlib.Tap(len(checks))
    descs = dict(checks)
    if not tap.check(descs["loaded"], lambda: load_i915(tap.diag)):
        for _key, desc in checks[1:]:
            tap.ok(False, desc, "i915 did not load")
        return tap, None
    return tap, descs


def check_engines_once(drm):
    reasons = []
    for name, engine, _param in ENGINES:
        why = check_store(drm, engine, 0x3C)
        if why:
            reasons.append("%s: %s" % (name, why))
    return "; ".join(reasons)


def check_reload(tap_diag):
    t0 = time.monotonic()
    r = subprocess.run(["rmmod", "i915"], check=False, capture_output=True, text=True)
    if r.returncode != 0:
        return "rmmod i915: %s" % (r.stderr.strip() or r.returncode)
    if i915lib.module_loaded("i915") or i915lib.bound_devices():
        return "i915 still loaded or bound after rmmod"
    tap_diag("rmmod i915: %.2f s" % (time.monotonic() - t0))
    why = load_i915(tap_diag)
    if why:
        return why
    with Drm() as drm:
        return check_engines_once(drm)


def check_msi():
    """i915 enables MSI (gen5+): its line in /proc/interrupts is a PCI-MSI one, and the batches
    above completed through it (the device's CSB and user interrupts)."""
    with open("/proc/interrupts") as f:
        lines = [line for line in f if line.rstrip().endswith("i915")]
    if not lines:
        return "no i915 line in /proc/interrupts"
    fields = lines[0].split()
    counts = [int(x) for x in fields[1:] if x.isdigit()]
    print("#   %s" % " ".join(fields), flush=True)
    if "MSI" not in lines[0]:
        return "i915's interrupt is not an MSI: %s" % " ".join(fields)
    return "" if sum(counts) >= 100 else "only %d interrupts" % sum(counts)


def drm_warnings():
    recs = i915lib.kmsg()
    loud = [r for r in recs if DRM_LINE.search(r[2]) and not r[2].startswith(" ") and r[0] <= i915lib.KERN_WARNING]
    unexplained = [r for r in loud if not any(s in r[2] for s, _why in EXPECTED_WARNINGS)]
    for rec in loud:
        print("#   %s" % i915lib.format_record(rec), flush=True)
    if unexplained:
        return "%d line(s), first: %s" % (len(unexplained), i915lib.format_record(unexplained[0]))
    return ""


def main():
    tap = gvtlib.Tap(len(CHECKS))
    keys = [k for k, _d in CHECKS]
    descs = dict(CHECKS)

    def report(key, fn, *args):
        assert keys[tap.n] == key, "CHECKS out of order at %s" % key
        t0 = time.monotonic()
        ok = tap.check(descs[key], lambda: fn(*args))
        tap.diag("time %s: %.2f s" % (key, time.monotonic() - t0))
        return ok

    t0 = time.monotonic()
    if not report("loaded", load_i915, tap.diag):
        for _key, desc in CHECKS[1:]:
            tap.ok(False, desc, "i915 did not load")
        return tap.finish()
    with open("/proc/uptime") as f:
        tap.diag("i915 ready at guest uptime %s s (%.1f s after the script started)" % (
            f.read().split()[0], time.monotonic() - t0))

    with Drm() as drm:
        exposed = {name: param is None or drm.has_param(param) for name, _e, param in ENGINES}
        tap.diag("chipset 0x%04x, engines %s, cmd parser version %d, gpu reset %d" % (
            drm.getparam(PARAM_CHIPSET_ID), " ".join(n for n, on in exposed.items() if on),
            drm.getparam(PARAM_CMD_PARSER_VERSION), drm.getparam(PARAM_HAS_GPU_RESET)))

        def params():
            ppgtt, softpin = drm.getparam(PARAM_HAS_ALIASING_PPGTT), drm.getparam(PARAM_HAS_EXEC_SOFTPIN)
            return "" if ppgtt == PPGTT_FULL and softpin else "ppgtt type %d, softpin %d" % (ppgtt, softpin)

        report("params", params)
        for name, engine, _param in ENGINES:
            if exposed[name]:
                report("store-" + name, check_store, drm, engine, 0xE0 + engine)
            else:
                report("store-" + name, lambda n=name: "i915 does not expose %s" % n)
        blits = Blits(drm)
        try:
            report("color-blt", blits.color)
            report("src-copy-blt", blits.copy)
        finally:
            blits.close()
        report("blit-4mib", check_big_blits, drm)
        report("batches-1000", check_in_a_row, drm)
        report("batches-waited", check_waited, drm)
    report("two-processes", check_two_processes)
    report("msi", check_msi)
    with Drm() as drm:
        report("hang-reset", check_hang, drm)
    report("reload", check_reload, tap.diag)
    report("no-drm-warnings", drm_warnings)
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print("# test_i915_exec.py ran %.1f s" % (time.monotonic() - started))
    sys.exit(rc)
