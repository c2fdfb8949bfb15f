"""IGT's spinner through the guest's own i915 (Debian's 6.1 generic kernel), standard library
and ioctls only: what IGT 1.27's gem_busy, gem_wait and gem_exec_fence do with
lib/igt_dummyload.c's spinning batch, and a store to a canonical 48-bit address.

The spinner is IGT's GEN8 form: MI_ARB_CHECK and padding, MI_CONDITIONAL_BATCH_BUFFER_END
comparing a dword of the batch object (kept at 0xffffffff) with MI_BATCH_BUFFER_END, and a
chained MI_BATCH_BUFFER_START back to the batch itself. On every engine i915 exposes: the
batch runs (DRM_IOCTL_I915_GEM_BUSY says busy, GEM_WAIT with no timeout says not done) for a
second, the CPU writes MI_BATCH_BUFFER_END through a CPU mmap (into the condition dword, or
over the batch's first command), and GEM_WAIT sees it complete, with no reset. Each check is a
TAP line of CHECKS.
"""
# devmodel-guest: image=i915 timeout=300
import mmap
import struct
import sys
import time

from i915uapi import (
    DRM_COMMAND_BASE,
    ENGINES,
    Drm,
    ExecObject,
    _iowr,
)
from test_i915 import wedged
from test_i915_exec import WAIT, bo, drm_warnings, tap_with_i915, u32s

CHECKS = (
    ("loaded", "i915 binds, renderD128 exists, the GT is not wedged"),
    ("spin-condition", "a spinner on every engine is busy until the CPU writes its condition, then completes"),
    ("spin-bb-end", "a spinner on rcs ends when the CPU writes MI_BATCH_BUFFER_END over its first command"),
    ("canonical-store", "MI_STORE_DWORD_IMM to a canonical address at the top of the 48-bit space lands"),
    ("no-reset", "no spinner was reset: every context is innocent and the GT is not wedged"),
    ("no-drm-warnings", "dmesg: no i915/DRM line at warning level or above"),
)

GEM_BUSY = "II"                  # drm_i915_gem_busy: handle, busy
GEM_MMAP_OFFSET = "IIQQQ"        # drm_i915_gem_mmap_offset: handle, pad, offset, flags, extensions
DRM_IOCTL_I915_GEM_BUSY = _iowr(DRM_COMMAND_BASE + 0x17, struct.calcsize(GEM_BUSY))
DRM_IOCTL_I915_GEM_MMAP_OFFSET = _iowr(DRM_COMMAND_BASE + 0x24, struct.calcsize(GEM_MMAP_OFFSET))
MMAP_OFFSET_WC, MMAP_OFFSET_WB = 1, 2

MI_NOOP = 0
MI_ARB_CHECK = 0x05 << 23
MI_BATCH_BUFFER_END = 0x0A << 23
MI_COND_BATCH_BUFFER_END = 0x36 << 23
MI_DO_COMPARE = 1 << 21
MI_BATCH_BUFFER_START = 0x31 << 23
MI_STORE_DWORD_IMM = 0x20 << 23 | 2
PAGE = 4096
SPIN = 0x5_0000_0000            # the spinner's softpinned address
TARGET = 0xFFFF_FFFF_F000       # the last page of the 48-bit space: bit 47 set
SPIN_FOR = 1.0                  # seconds a spinner runs before the CPU ends it


def canonical(address):
    return address | (0xFFFF << 48 if address >> 47 & 1 else 0)


def busy(drm, handle):
    return drm.ioctl(DRM_IOCTL_I915_GEM_BUSY, GEM_BUSY, handle, 0)[1]


def cpu_map(drm, handle, size):
    """A CPU mapping of the object (WC, else WB): writes through it do not wait for the GPU."""
    for flags in (MMAP_OFFSET_WC, MMAP_OFFSET_WB):
        try:
            offset = drm.ioctl(DRM_IOCTL_I915_GEM_MMAP_OFFSET, GEM_MMAP_OFFSET, handle, 0, 0, flags, 0)[2]
        except OSError:
            continue
        return mmap.mmap(drm.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
    raise OSError(0, "no CPU mmap of the spinner")


def spinner_batch():
    """IGT's GEN8 spinner: the loop, then the condition dword at the end of the page."""
    condition = PAGE - 8
    dwords = [MI_ARB_CHECK, MI_NOOP, MI_NOOP, MI_NOOP,
              MI_COND_BATCH_BUFFER_END | MI_DO_COMPARE | 2, MI_BATCH_BUFFER_END,
              (SPIN + condition) & 0xFFFFFFFF, (SPIN + condition) >> 32,
              MI_BATCH_BUFFER_START | 1 << 8 | 1, SPIN & 0xFFFFFFFF, SPIN >> 32, MI_NOOP]
    data = bytearray(PAGE)
    struct.pack_into("<%dI" % len(dwords), data, 0, *dwords)
    struct.pack_into("<II", data, condition, 0xFFFFFFFF, 0xFFFFFFFF)
    return bytes(data), condition


def spin(drm, engine, end_at):
    """Run a spinner on engine, check it is busy, end it by a CPU write at end_at (the
    condition, or 0: over the first command); a reason or ""."""
    data, condition = spinner_batch()
    handle = bo(drm, data)
    ctx = drm.context_create()
    try:
        view = cpu_map(drm, handle, PAGE)
        try:
            drm.execbuf([ExecObject(handle, SPIN)], engine, 48, context=ctx)
            time.sleep(SPIN_FOR)
            if not busy(drm, handle):
                return "GEM_BUSY says idle while the spinner should run"
            if drm.wait(handle, 0):
                return "the spinner completed before the CPU ended it"
            t0 = time.monotonic()
            struct.pack_into("<I", view, condition if end_at else 0, MI_BATCH_BUFFER_END)
            if not drm.wait(handle, WAIT):
                return "the spinner did not end within %.0f s of the CPU's write" % WAIT
            print("# time CPU write to completion: %.1f ms" % ((time.monotonic() - t0) * 1e3), flush=True)
            if busy(drm, handle):
                return "GEM_BUSY says busy after GEM_WAIT"
        finally:
            view.close()
        _count, active, _pending = drm.reset_stats(ctx)
        return "i915 found the spinner's context guilty of a hang" if active else ""
    finally:
        drm.gem_close(handle)
        drm.context_destroy(ctx)


def spin_every_engine(drm):
    reasons = []
    for name, engine, param in ENGINES:
        if param is None or drm.has_param(param):
            why = spin(drm, engine, end_at=True)
            if why:
                reasons.append("%s: %s" % (name, why))
    return "; ".join(reasons)


def canonical_store(drm):
    target = bo(drm, PAGE)
    batch = bo(drm, struct.pack("<6I", MI_STORE_DWORD_IMM, *divmod(canonical(TARGET + 16), 1 << 32)[::-1],
                                0xCA70, MI_BATCH_BUFFER_END, MI_NOOP))
    try:
        drm.execbuf([ExecObject(target, canonical(TARGET), write=True), ExecObject(batch, SPIN)], 1, 24)
        if not drm.wait(batch, WAIT):
            return "the batch did not complete within %.0f s" % WAIT
        got = u32s(drm.pread(target, 0, 32))[4]
        return "" if got == 0xCA70 else "read back 0x%08x, want 0x0000ca70" % got
    finally:
        drm.gem_close(batch)
        drm.gem_close(target)


def main():
    tap, descs = tap_with_i915(CHECKS)
    if descs is None:
        return tap.finish()
    with Drm() as drm:
        tap.check(descs["spin-condition"], lambda: spin_every_engine(drm))
        tap.check(descs["spin-bb-end"], lambda: spin(drm, 1, end_at=False))
        tap.check(descs["canonical-store"], lambda: canonical_store(drm))
    tap.check(descs["no-reset"], wedged)
    tap.check(descs["no-drm-warnings"], drm_warnings)
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print("# test_i915_spin.py ran %.1f s" % (time.monotonic() - started))
    sys.exit(rc)
