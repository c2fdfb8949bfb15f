"""The demo's display part: the guest's console, drawn by i915's fbcon on the vGPU's monitor,
and a small KMS client (standard library and DRM ioctls, kmsuapi.py) that lights the monitor
with a black dumb buffer and page-flips to the test pattern (test_i915_kms.py's), with the flip's
event. The host decodes both screens through devmodel's inspection socket: it saves the console
as a PNG and says what it shows ("console"), and checks the pattern pixel for pixel ("pattern").
Needs devmodel.channel=1 on the command line (the host's line channel).
"""
# devmodel-guest: image=i915 timeout=600
import os
import sys
import time

import gvtlib
import i915lib
import kmsuapi as kms
from test_i915_kms import Fb, flip_and_wait

INSMOD_TIMEOUT = 300.0
LINES = 12

CHECKS = (
    ("bound", "i915 binds to the vGPU with its display; fbcon's /dev/fb0 appears"),
    ("console", "the host saves the console fbcon drew as a PNG: text on the monitor"),
    ("pattern", "a KMS client page-flips to the test pattern; the host finds every pixel"),
)


def main():
    tap = gvtlib.Tap(len(CHECKS))
    dev = gvtlib.find_device()
    bdf = dev.path.rsplit("/", 1)[-1]
    t0 = time.monotonic()
    failed = ""
    for name in i915lib.load_order():
        if not i915lib.module_loaded(name):
            ok, _secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
            if not ok:
                failed = "insmod %s: %s" % (name, msg)
                break
    bound = i915lib.wait_for(lambda: os.path.exists("/dev/fb0") and bdf in i915lib.bound_devices(), 60.0)
    tap.diag("figure: i915 bound and fbcon up %.1f s after the first insmod" % (time.monotonic() - t0))
    tap.ok(bound and not failed, CHECKS[0][1], failed or ("" if bound else "no /dev/fb0"))
    host = gvtlib.HostChannel()
    tty = os.open("/dev/tty1", os.O_WRONLY)
    lines = ["devmodel demo %02d: Debian's i915 draws this console on the vGPU's DisplayPort monitor" % i
             for i in range(LINES)]
    os.write(tty, "".join(line + "\n" for line in lines).encode())
    answer = host.ask("console", {"lines": LINES, "cells": max(map(len, lines))})
    tap.diag("host: %s" % answer)
    tap.ok(answer.startswith("ok"), CHECKS[1][1], answer)
    reason = ""
    try:
        card = kms.Card()
        card.set_master()
        crtcs, conns, _encoders = card.resources()
        _connection, _type, _enc, modes = card.connector(conns[0])
        mode = modes[0]
        w, h = mode.hdisplay, mode.vdisplay
        black = Fb(card, w, h, blank=True)
        start = time.monotonic()
        pattern = Fb(card, w, h)
        tap.diag("figure: the %dx%d pattern written into a dumb buffer in %.2f s" % (w, h, time.monotonic() - start))
        card.set_crtc(crtcs[0], black.id, [conns[0]], mode)
        start = time.monotonic()
        ev = flip_and_wait(card, crtcs[0], pattern, 1)
        tap.diag("figure: page flip to the pattern completed at vblank %d, %.1f ms after the ioctl"
                 % (ev[3], 1e3 * (time.monotonic() - start)))
        answer = host.ask("pattern", {"width": w, "height": h})
        tap.diag("host: %s" % answer)
        reason = "" if answer.startswith("ok") else answer
        card.close()
    except (OSError, gvtlib.TestError, IndexError) as e:
        reason = "%s: %s" % (type(e).__name__, e)
    tap.ok(not reason, CHECKS[2][1], reason)
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
