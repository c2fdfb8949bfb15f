"""The demo's headline: the guest's own, unmodified i915 (Debian's 6.1 generic kernel) on the
vGPU, shown stage by stage, then batches and the test picture through it.

One TAP line per stage of CHECKS, each with "# figure: ..." lines the demo prints (what i915
reported, how long it took): the module closure loads and i915 binds; i915 logs "Virtual GPU
for Intel GVT-g detected"; the engine info query lists its engines; the render node opens; a
store batch on every engine; batches in a row with their rate; the test picture of gpulib
(the one test_engines.py draws without i915) drawn with XY_COLOR_BLT and part of it copied
with XY_SRC_COPY_BLT, both by execbuf on the blitter, read back with pread and checked pixel
by pixel; the kernel log. With devmodel.picture=1 the picture is printed for the host
(gpulib.print_picture). The batch helpers are test_i915_exec.py's.
"""
# devmodel-guest: image=i915 timeout=300
import sys
import time

import gencmd
import gpulib
import gvtlib
import i915lib
from i915uapi import (
    ENGINES,
    EXEC_BLT,
    EXEC_RENDER,
    PARAM_CHIPSET_ID,
    PARAM_HAS_ALIASING_PPGTT,
    PPGTT_FULL,
    RENDER_NODE,
    Drm,
    ExecObject,
)
from test_i915 import DRM_LINE
from test_i915_exec import BATCH, SRC, WAIT, bo, check_store, drm_warnings, load_i915, run_in_a_row

# (key, description) of each stage, in TAP order; tests/guest/test_i915_picture.py keys on them.
CHECKS = (
    ("modules", "the i915 module closure loads in order and i915 binds to the vGPU"),
    ("detected", "i915: Virtual GPU for Intel GVT-g detected"),
    ("engines", "i915 reports rcs, bcs, vcs and vecs to user space (engine info query)"),
    ("render-node", "/dev/dri/renderD128 opens: full PPGTT"),
    ("store-rcs", "a store batch on rcs through i915"),
    ("store-bcs", "a store batch on bcs through i915"),
    ("store-vcs", "a store batch on vcs through i915"),
    ("store-vecs", "a store batch on vecs through i915"),
    ("batches", "1,000 batches in a row on rcs through i915, every one completed"),
    ("picture-fill", "the test pattern drawn with XY_COLOR_BLT on bcs through i915, every pixel right"),
    ("picture-copy", "part of it copied with XY_SRC_COPY_BLT on bcs through i915, every pixel right"),
    ("no-drm-warnings", "dmesg: no i915/DRM line at warning level or above"),
)
RUN = 1000
DETECTED = "Virtual GPU for Intel GVT-g detected"


def figure(msg):
    print("# figure: " + msg, flush=True)


def uptime():
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def stage_modules(tap_diag):
    t0 = time.monotonic()
    why = load_i915(tap_diag)
    if not why:
        figure("%d modules (%s) in %.1f s; i915 bound to %s at guest uptime %.1f s" % (
            len(i915lib.load_order()), " ".join(i915lib.load_order()), time.monotonic() - t0,
            " ".join(i915lib.bound_devices()), uptime()))
    return why


def stage_detected():
    for _level, secs, text in i915lib.kmsg():
        if DRM_LINE.search(text) and DETECTED in text:
            figure("[%.2f] %s" % (secs, text))
            return ""
    return "not in the kernel log"


def stage_engines(drm):
    engines = drm.engines()
    figure("engines: " + " ".join("%s%d" % e for e in engines))
    names = sorted({name for name, _instance in engines})
    want = sorted(name for name, _e, _p in ENGINES)
    return "" if names == want else "engine classes %s, want %s" % (names, want)


def stage_render_node(drm):
    ppgtt = drm.getparam(PARAM_HAS_ALIASING_PPGTT)
    figure("%s: chipset 0x%04x, PPGTT type %d (2: full, an address space per file)" % (
        RENDER_NODE, drm.getparam(PARAM_CHIPSET_ID), ppgtt))
    return "" if ppgtt == PPGTT_FULL else "PPGTT type %d, want full (%d)" % (ppgtt, PPGTT_FULL)


def stage_store(drm, engine, name):
    t0 = time.monotonic()
    why = check_store(drm, engine, 0xD0 + engine)
    if not why:
        figure("%s: 16 MI_STORE_DWORD_IMM landed above 4 GiB, every dword right (%.1f ms, create to read back)"
               % (name, (time.monotonic() - t0) * 1e3))
    return why


def stage_batches(drm):
    why, secs = run_in_a_row(drm, EXEC_RENDER, RUN, 0x5D000000)
    if not why:
        figure("%d batches in %.2f s: %.0f batches/s from user space to completion, none lost" % (
            RUN, secs, RUN / secs))
    return why


class Picture:
    """gpulib's test picture on one surface, softpinned at SRC in this file's PPGTT."""

    def __init__(self, drm):
        self.drm = drm
        # A filler the pattern must cover: its first rectangle is the whole surface.
        self.surface = bo(drm, b"\xee" * (gpulib.PICTURE_PITCH * gpulib.PICTURE_H))
        self.pixels = b""

    def close(self):
        self.drm.gem_close(self.surface)

    def blit(self, commands, copied, what):
        data = gencmd.batch(commands)
        batch = bo(self.drm, data)
        try:
            t0 = time.monotonic()
            self.drm.execbuf([ExecObject(self.surface, SRC, write=True), ExecObject(batch, BATCH)],
                             EXEC_BLT, len(data))
            if not self.drm.wait(batch, WAIT):
                return "the batch did not complete within %.0f s" % WAIT
            secs = time.monotonic() - t0
        finally:
            self.drm.gem_close(batch)
        self.pixels = self.drm.pread(self.surface, 0, len(gpulib.picture_expected(copied)))
        why = gpulib.first_bad_pixel(self.pixels, gpulib.picture_expected(copied))
        if not why:
            figure("%s: %dx%d, %.1f ms submit to completion" % (what, gpulib.PICTURE_W, gpulib.PICTURE_H, secs * 1e3))
        return why or ""

    def fill(self):
        cmds = gpulib.picture_color_commands(SRC)
        return self.blit(cmds, False, "%d XY_COLOR_BLTs in one batch" % len(gpulib.picture_rects()))

    def copy(self):
        return self.blit(gpulib.picture_copy_commands(SRC), True, "XY_SRC_COPY_BLT")


def main():
    tap = gvtlib.Tap(len(CHECKS))
    keys = [k for k, _d in CHECKS]
    descs = dict(CHECKS)

    def report(key, fn, *args):
        assert keys[tap.n] == key, "CHECKS out of order at %s" % key
        return tap.check(descs[key], lambda: fn(*args))

    def rest_fail(why):
        for key in keys[tap.n:]:
            tap.ok(False, descs[key], why)
        return tap.finish()

    if not report("modules", stage_modules, tap.diag):
        return rest_fail("i915 did not load")
    report("detected", stage_detected)
    try:
        drm = Drm()
    except OSError as e:
        return rest_fail("open %s: %s" % (RENDER_NODE, e))
    with drm:
        report("engines", stage_engines, drm)
        report("render-node", stage_render_node, drm)
        for name, engine, _param in ENGINES:
            report("store-" + name, stage_store, drm, engine, name)
        report("batches", stage_batches, drm)
        picture = Picture(drm)
        try:
            report("picture-fill", picture.fill)
            drawn = report("picture-copy", picture.copy)
        finally:
            picture.close()
    if drawn and gpulib.want_picture():
        gpulib.print_picture(picture.pixels)
    report("no-drm-warnings", drm_warnings)
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print("# test_i915_demo.py ran %.1f s" % (time.monotonic() - started))
    sys.exit(rc)
