"""What IGT's basic tests ask of a GPU besides its commands, through the guest's own i915:
the busy ioctl and fence waits on a batch that is still running, a write through the GTT mmap
(the aperture) read back at once through a CPU mapping of the same object, and parallel
submission on every engine from many contexts for ten seconds with i915's heartbeat alive.

The guest runs with QEMU's x-no-posted-writes (the script's no-posted-writes option): with
posted BAR writes, a dword written through the GTT mmap is not yet in guest RAM when the CPU
reads it back through the other mapping (every read of the check was stale; docs/igt.md).

The busy batch is a long one (MI_NOOPs, then a store of a marker): IGT uses a spinner that
the CPU ends; a long batch shows the same states as long as it runs past the first checks, and
a batch that finished too early is retried four times longer (never counted as a pass).
Figures are TAP comments ("# rate ...", "# figure ...").
"""
# devmodel-guest: image=i915 timeout=600 no-posted-writes
import os
import re
import select
import struct
import sys
import time

import gencmd
import gvtlib
import i915lib
from i915uapi import (
    DOMAIN_CPU,
    DOMAIN_GTT,
    ENGINES,
    MMAP_OFFSET_GTT,
    MMAP_OFFSET_WB,
    Drm,
    ExecObject,
)
from test_i915 import DRM_LINE
from test_i915_exec import BATCH, PAGE, TARGET, bo, load_i915

CHECKS = (
    ("loaded", "i915 binds, renderD128 exists, the GT is not wedged"),
    ("busy", "the busy ioctl reports a running batch's engine, then idle once it completed"),
    ("fence-wait", "a running batch's out-fence and GEM_WAIT(0) are unsignalled, then signal"),
    ("gtt-coherent", "a write through the GTT mmap reads back at once through a CPU mmap"),
    ("parallel", "parallel submission on every engine from many contexts and processes for 10 s, all completed"),
    ("heartbeat", "dmesg: no reset, hang or stopped heartbeat during all this"),
    ("no-drm-warnings", "dmesg: no i915/DRM line at warning level or above"),
)
HANG = re.compile(r"GPU HANG|[Rr]esetting|stopped heartbeat|wedged")
# MI_NOOPs before the marker store: about 0.05 s of device time, 40x below the engine watchdog's
# 2 s (a loaded machine stretched 60,000 past it once); the retry is 4x longer.
LONG_NOOPS = 20_000
TRIES = 2                  # a batch that completed before the first check: 4x longer, again
MARKER = 0x5EED1E55
GTT_ROUNDS = 4000          # write/read pairs through the aperture and the CPU mapping
GTT_PAGES = 16
PARALLEL_SECONDS = 10.0
PER_ENGINE = 2             # processes per engine, each with its own file (PPGTT) ...
CONTEXTS = 2               # ... and contexts, used in turn
SHARED = 2                 # and per engine, processes in one shared file's default context
DEPTH = 32                 # batch objects per context: up to this many of its batches queued
WAIT = 60.0


def long_batch(noops, target):
    words = [gencmd.MI_NOOP] * noops
    return struct.pack("<%dI" % noops, *words) + gencmd.batch(gencmd.store_dword(target, MARKER))


def marker(view):
    return struct.unpack_from("<I", view, 0)[0]


def with_long_batch(drm, engine, check):
    """Run check(drm, target handle, batch handle, cpu view, fence fd) on a long batch just
    submitted; retried with a longer batch while the batch completes before the first look
    (check returns None then). Returns check's reason ("" when fine)."""
    noops = LONG_NOOPS
    for _attempt in range(TRIES):
        target = bo(drm, PAGE)
        view = drm.mmap(target, PAGE, MMAP_OFFSET_WB)
        data = long_batch(noops, TARGET)
        bb = bo(drm, data)
        fence = None
        try:
            t0 = time.monotonic()
            fence = drm.execbuf([ExecObject(target, TARGET, write=True), ExecObject(bb, BATCH)],
                                engine, len(data), fence_out=True)
            why = check(drm, target, bb, view, fence)
            if why is not None:
                print("# time long batch of %d commands: %.2f s (submit to checked)" % (
                    noops + 2, time.monotonic() - t0), flush=True)
                return why
            print("# the batch of %d commands completed before the first look: longer" % noops, flush=True)
        finally:
            if fence is not None:
                os.close(fence)
            view.close()
            drm.wait(bb, WAIT)
            drm.gem_close(bb)
            drm.gem_close(target)
        noops *= 4
    return "every batch completed before it was first looked at (%d tries)" % TRIES


def check_busy(drm, engine):
    def check(drm, target, bb, view, fence):
        first = drm.busy(target)
        if first == 0:
            return None if marker(view) == MARKER else (
                "busy reads 0 while the batch has not stored its marker")
        if marker(view) == MARKER:
            return None  # completed between the two reads: nothing was seen running
        # The writer's engine class + 1 in bits 15:0 (i915_gem_busy.c __busy_write_id).
        if first & 0xFFFF == 0:
            return "busy 0x%x names no writer for a batch that writes the target" % first
        if not drm.wait(target, WAIT):
            return "the batch did not complete within %.0f s" % WAIT
        after = drm.busy(target)
        if after != 0:
            return "busy reads 0x%x after the wait" % after
        if marker(view) != MARKER:
            return "the marker is 0x%08x after the wait" % marker(view)
        print("# busy while running: 0x%08x, after the wait: 0" % first, flush=True)
        return ""
    return with_long_batch(drm, engine, check)


def check_fence(drm, engine):
    def check(drm, target, bb, view, fence):
        poll = select.poll()
        poll.register(fence, select.POLLIN)
        signalled = bool(poll.poll(0))
        waited = drm.wait(bb, 0)
        if marker(view) == MARKER:
            return None
        if signalled:
            return "the out-fence is signalled while the batch has not stored its marker"
        if waited:
            return "GEM_WAIT(0) succeeds while the batch has not stored its marker"
        t0 = time.monotonic()
        if not poll.poll(int(WAIT * 1000)):
            return "the out-fence did not signal within %.0f s" % WAIT
        print("# fence signalled %.3f s after the first poll" % (time.monotonic() - t0), flush=True)
        if not drm.wait(bb, 0):
            return "GEM_WAIT(0) times out after the fence signalled"
        if marker(view) != MARKER:
            return "the fence signalled, the marker is 0x%08x" % marker(view)
        return ""
    return with_long_batch(drm, engine, check)


def check_gtt_coherent(drm):
    """GTT_ROUNDS times: a dword written through the GTT mmap, read at once through the CPU
    mmap (no ioctl between, as prime_vgem@basic-gtt reads its vgem mapping); then the whole
    object through both mappings."""
    size = GTT_PAGES * PAGE
    handle = bo(drm, size)
    gtt = drm.mmap(handle, size, MMAP_OFFSET_GTT)
    drm.set_domain(handle, DOMAIN_GTT, DOMAIN_GTT)
    cpu = drm.mmap(handle, size, MMAP_OFFSET_WB)
    try:
        stale, first = 0, ""
        t0 = time.monotonic()
        for i in range(GTT_ROUNDS):
            offset = (i * 1028) % size & ~3
            value = 0xC0DE0000 | i
            struct.pack_into("<I", gtt, offset, value)
            got = struct.unpack_from("<I", cpu, offset)[0]
            if got != value:
                stale += 1
                first = first or "round %d at %#x: 0x%08x, want 0x%08x" % (i, offset, got, value)
        secs = time.monotonic() - t0
        print("# figure gtt-coherent: %d of %d reads stale, %.0f write+read pairs/s" % (
            stale, GTT_ROUNDS, GTT_ROUNDS / secs), flush=True)
        # Whole pages, then back through the aperture after CPU writes.
        pattern = bytes((i * 7 + 3) & 0xFF for i in range(size))
        gtt[:] = pattern
        whole = cpu[:] == pattern
        drm.set_domain(handle, DOMAIN_CPU, DOMAIN_CPU)
        cpu[:] = pattern[::-1]
        drm.set_domain(handle, DOMAIN_GTT, DOMAIN_GTT)
        # Read back through the aperture a dword in every 64 bytes: a slice copy reads it a byte
        # at a time under TCG, 64 Ki vfio-user round trips.
        want = pattern[::-1]
        back = all(gtt[o:o + 4] == want[o:o + 4] for o in range(0, size, 64))
        if stale:
            return "%d of %d reads stale, first %s" % (stale, GTT_ROUNDS, first)
        if not whole:
            return "a %d KiB write through the GTT mmap reads back different through the CPU mmap" % (size // 1024)
        if not back:
            return "CPU writes read back different through the GTT mmap"
        return ""
    finally:
        gtt.close()
        cpu.close()
        drm.gem_close(handle)


def parallel_child(drm, engine, tag, seconds, w, own_contexts, base):
    """Submit store batches on engine for seconds without waiting (i915 throttles when the
    rings fill): in CONTEXTS contexts of its own file in turn, or (own_contexts False) in the
    default context of a file shared with the other such processes, as IGT's
    gem_exec_parallel does with threads (one context per engine, its requests coalesced into
    long ring segments). Softpinned at base, apart from the other processes. Checks the last
    value of each context; writes "count reason" to w."""
    nctx = CONTEXTS if own_contexts else 1
    ctxs = [drm.context_create() for _ in range(nctx)] if own_contexts else [0]
    targets = [bo(drm, PAGE) for _ in range(nctx)]  # one each: no implicit sync between them
    batches = [bo(drm, PAGE) for _ in range(nctx * DEPTH)]
    count, last = 0, [0] * nctx
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        c = count % nctx
        batch = batches[count % len(batches)]
        value = (tag << 24) | (count & 0xFFFFFF)
        data = gencmd.batch(gencmd.store_dword(base + PAGE * c, value))
        drm.pwrite(batch, 0, data)  # waits for this object's previous run, DEPTH batches ago
        drm.execbuf([ExecObject(targets[c], base + PAGE * c, write=True),
                     ExecObject(batch, base + BATCH + PAGE * (count % len(batches)))],
                    engine, len(data), context=ctxs[c])
        last[c] = value
        count += 1
    if not all(drm.wait(t, WAIT) for t in targets):
        os.write(w, b"%d the last batches did not complete within 60 s" % count)
        return
    got = [struct.unpack("<I", drm.pread(t, 0, 4))[0] for t in targets]
    bad = [(c, g, v) for c, (g, v) in enumerate(zip(got, last, strict=True)) if g != v]
    why = "context %d holds 0x%08x, its last batch stored 0x%08x" % bad[0] if bad else ""
    os.write(w, ("%d %s" % (count, why)).encode())


def check_parallel():
    procs = {}
    t0 = time.monotonic()
    shared = Drm()  # the file the SHARED processes of every engine submit in
    k = 0
    for name, engine, _param in ENGINES:
        for n in range(PER_ENGINE + SHARED):
            k += 1
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                code = 1
                try:
                    own = n < PER_ENGINE
                    drm = Drm() if own else shared
                    parallel_child(drm, engine, (0x10 * engine + n) & 0xFF, PARALLEL_SECONDS, w, own,
                                   k * 0x10_0000_0000)
                    code = 0
                except BaseException as e:  # noqa: BLE001 - reported to the parent
                    os.write(w, ("0 %s: %s" % (type(e).__name__, e)).encode())
                finally:
                    os._exit(code)
            os.close(w)
            procs[pid] = (name, r)
    shared.close()
    total, reasons = 0, []
    for pid, (name, r) in procs.items():
        os.waitpid(pid, 0)
        msg = os.read(r, 4096).decode(errors="replace")
        os.close(r)
        count, _, why = msg.partition(" ")
        total += int(count or 0)
        print("# parallel %s process %d: %s batches%s" % (name, pid, count, ", " + why if why else ""), flush=True)
        if why:
            reasons.append("%s: %s" % (name, why))
    secs = time.monotonic() - t0
    print("# rate parallel: %d batches on %d engines from %d processes, %d contexts in %.1f s: %.0f batches/s" % (
        total, len(ENGINES), len(procs), len(ENGINES) * (PER_ENGINE * CONTEXTS + 1), secs, total / secs),
        flush=True)
    return "; ".join(reasons)


def dmesg_since(start, pattern=None, loud=False):
    recs = i915lib.kmsg()[start:]
    if pattern is not None:
        recs = [r for r in recs if pattern.search(r[2])]
    if loud:
        recs = [r for r in recs if DRM_LINE.search(r[2]) and not r[2].startswith(" ")
                and r[0] <= i915lib.KERN_WARNING]
    for rec in recs:
        print("#   %s" % i915lib.format_record(rec), flush=True)
    return "%d line(s), first: %s" % (len(recs), recs[0][2]) if recs else ""


def main():
    tap = gvtlib.Tap(len(CHECKS))
    if not tap.check(CHECKS[0][1], lambda: load_i915(tap.diag)):
        for _key, desc in CHECKS[1:]:
            tap.ok(False, desc, "i915 did not load")
        return tap.finish()
    start = len(i915lib.kmsg())
    with Drm() as drm:
        engine = ENGINES[0][1]
        tap.check(CHECKS[1][1], lambda: check_busy(drm, engine))
        tap.check(CHECKS[2][1], lambda: check_fence(drm, engine))
        tap.check(CHECKS[3][1], lambda: check_gtt_coherent(drm))
    tap.check(CHECKS[4][1], check_parallel)
    tap.check(CHECKS[5][1], lambda: dmesg_since(start, HANG))
    tap.check(CHECKS[6][1], lambda: dmesg_since(0, loud=True))
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print("# test_i915_sync.py ran %.1f s" % (time.monotonic() - started))
    sys.exit(rc)
