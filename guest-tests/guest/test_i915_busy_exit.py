"""A batch still running when the guest powers off. /init makes i915 idle before it powers off
(quiesce_i915 in guest-tests/guest/init); without that step i915 6.1's shutdown hook, which turns
its interrupts off before it waits for the GPU, slept forever in i915_gem_suspend in 3 boots of
3 with this script. The host test (tests/guest/test_i915_poweroff.py) boots it without the
kernel-log dump, so that power-off follows the script at once, and requires the power-off.

Checks: i915 binds; a store batch on rcs lands; a batch of STORES MI_STORE_DWORD_IMMs (about a
second of the device's time) is still running as the script ends, not waited for.
"""
# devmodel-guest: image=i915 timeout=300
import sys

import gencmd
from i915uapi import EXEC_RENDER, Drm, ExecObject
from test_i915_exec import BATCH, PAGE, TARGET, bo, check_store, tap_with_i915

STORES = 20_000
CHECKS = (
    ("loaded", "i915 binds, renderD128 exists, the GT is not wedged"),
    ("store-rcs", "MI_STORE_DWORD_IMM on rcs (I915_EXEC_RENDER)"),
    ("busy-at-exit", "a batch of 20,000 stores is still running as the script ends"),
)


def leave_running(drm):
    """Submit the long batch and leave it: a reason if it is already done, else ""."""
    image = gencmd.batch(*[gencmd.store_dword(TARGET + 4 * (i % (PAGE // 4)), i) for i in range(STORES)])
    target, bb = bo(drm, PAGE), bo(drm, image)
    drm.execbuf([ExecObject(target, TARGET, write=True), ExecObject(bb, BATCH)], EXEC_RENDER, len(image))
    return "" if drm.busy(bb) else "the batch was done before the script ended"


def main():
    tap, descs = tap_with_i915(CHECKS)
    if descs is None:
        return tap.finish()
    with Drm() as drm:
        tap.check(descs["store-rcs"], lambda: check_store(drm, EXEC_RENDER, 0x3C))
        tap.check(descs["busy-at-exit"], lambda: leave_running(drm))
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
