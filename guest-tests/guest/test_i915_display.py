"""The vGPU's display under the guest's own i915: the connector, the modeset fbcon asks for,
the console and a pattern drawn through /dev/fb0 as the host sees them, and hotplug.

The host test (tests/guest/test_i915_display.py) answers on the line channel: "console" and
"pattern" make it decode the screen (devmodel's inspection socket) and check it; "unplug" and
"plug" make the device raise a hotplug. Needs devmodel.channel=1 on the command line.
"""
# devmodel-guest: image=i915 timeout=600
import fcntl
import functools
import glob
import mmap
import os
import re
import struct
import sys
import time

import gvtlib
import i915lib

INSMOD_TIMEOUT = 300.0
DRM_LINE = re.compile(r"^i915 [0-9a-f]{4}:|\[drm[]:]|drivers/gpu/drm/")
# What the display must never make i915 say (its state checker, waits and interrupt handler).
FORBIDDEN = re.compile(r"mismatch|timed out|not locked|lied|WARNING|doesn't match", re.IGNORECASE)
FBIOGET_VSCREENINFO = 0x4600
FBIOGET_FSCREENINFO = 0x4602
KDSETMODE = 0x4B3A
KD_TEXT, KD_GRAPHICS = 0, 1
BAND_ROWS = 64

CHECKS = (
    ("bound", "i915 binds with the display present"),
    ("one-connector", "exactly one connector, DisplayPort, connected (the VBT's child)"),
    ("modes", "the connector's modes come from the EDID, 1024x768 first"),
    ("fb0", "fbcon's framebuffer /dev/fb0 is 1024x768"),
    ("clean-dmesg", "dmesg: no mismatch, timed out, not locked, lied or WARNING from i915"),
    ("console", "the host's decode of the screen shows the console fbcon drew"),
    ("pattern", "a pattern written to /dev/fb0 is on the host's decode, pixel for pixel"),
    ("unplug", "a hotplug unplug makes the connector disconnected"),
    ("plug", "a hotplug plug makes it connected again"),
)


def connectors():
    out = {}
    for path in sorted(glob.glob("/sys/class/drm/card0-*")):
        try:
            with open(path + "/status") as f:
                out[os.path.basename(path)[len("card0-"):]] = f.read().strip()
        except OSError:
            pass
    return out


def has_status(name, state):
    return connectors().get(name) == state


def modes(name):
    try:
        with open("/sys/class/drm/card0-%s/modes" % name) as f:
            return f.read().split()
    except OSError:
        return []


def fb_info():
    fd = os.open("/dev/fb0", os.O_RDWR)
    var = fcntl.ioctl(fd, FBIOGET_VSCREENINFO, bytes(160))
    fix = fcntl.ioctl(fd, FBIOGET_FSCREENINFO, bytes(80))
    xres, yres = struct.unpack_from("II", var, 0)
    bpp = struct.unpack_from("I", var, 24)[0]
    line_length = struct.unpack_from("I", fix, 48)[0]  # after id, smem_start, 4 u32 and 3 u16
    smem_len = struct.unpack_from("I", fix, 16 + 8)[0]
    return fd, xres, yres, bpp, line_length, smem_len


def pattern_row(y, width):
    """Row y of the pattern: eight vertical colour bars whose shade follows y."""
    bars = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
            (255, 255, 255), (64, 64, 64)]
    out = bytearray()
    shade = 128 + (y * 2) % 128
    for x in range(width):
        r, g, b = bars[x * 8 // width]
        out += bytes((b * shade // 255, g * shade // 255, r * shade // 255, 0))
    return bytes(out)


def main():
    tap = gvtlib.Tap(len(CHECKS))
    results = dict.fromkeys(k for k, _ in CHECKS)
    dev = gvtlib.find_device()
    bdf = dev.path.rsplit("/", 1)[-1]
    for name in i915lib.load_order():
        if not i915lib.module_loaded(name):
            ok, secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
            if not ok:
                results["bound"] = "insmod %s: %s" % (name, msg)
                break
    started = time.monotonic()
    i915lib.wait_for(lambda: os.path.exists("/dev/fb0") and bdf in i915lib.bound_devices(), 60.0)
    if results["bound"] is None:
        results["bound"] = "" if bdf in i915lib.bound_devices() else "not bound"
    with open("/proc/uptime") as f:
        tap.diag("fb0 after %.2f s of probe, guest uptime %s s" % (time.monotonic() - started, f.read().split()[0]))
    conns = connectors()
    tap.diag("connectors: %s" % conns)
    dp = [n for n in conns if n.startswith("DP-")]
    one = len(conns) == 1 and dp and conns[dp[0]] == "connected"
    results["one-connector"] = "" if one else "connectors: %s" % conns
    name = dp[0] if dp else ""
    ms = modes(name) if name else []
    tap.diag("modes of %s: %s" % (name, " ".join(ms)))
    results["modes"] = "" if ms[:1] == ["1024x768"] else "modes: %s" % ms
    fbinfo = fb_info() if os.path.exists("/dev/fb0") else None
    if fbinfo is None:
        results["fb0"] = "no /dev/fb0"
    else:
        fd, xres, yres, bpp, line_length, _smem_len = fbinfo
        tap.diag("fb0: %dx%d %d bpp, %d bytes a line" % (xres, yres, bpp, line_length))
        results["fb0"] = "" if (xres, yres, bpp) == (1024, 768, 32) else "fb0 is %dx%d %d bpp" % (xres, yres, bpp)

    host = gvtlib.HostChannel()
    tty = os.open("/dev/tty1", os.O_WRONLY)
    text = "".join("devmodel fbcon line %02d: the vGPU's display, drawn by i915's fbcon\n" % i for i in range(8))
    t0 = time.monotonic()
    os.write(tty, text.encode())
    tap.diag("8 console lines written in %.2f s" % (time.monotonic() - t0))
    time.sleep(1.0)  # fbcon draws from a work item
    answer = host.ask("console", {})
    tap.diag("host: %s" % answer)
    results["console"] = "" if answer.startswith("ok") else answer

    if fbinfo is not None:
        fd, xres, yres, bpp, line_length, _smem_len = fbinfo
        fcntl.ioctl(tty, KDSETMODE, KD_GRAPHICS)  # fbcon stops drawing
        m = mmap.mmap(fd, line_length * yres, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        y0 = yres // 2 - BAND_ROWS // 2
        t0 = time.monotonic()
        for y in range(y0, y0 + BAND_ROWS):
            m[y * line_length : y * line_length + xres * 4] = pattern_row(y, xres)
        m[y0 * line_length : y0 * line_length + 4]  # a read: the posted writes before it are done
        secs = time.monotonic() - t0
        tap.diag("pattern of %d rows (%d KiB) written through the aperture in %.2f s"
                 % (BAND_ROWS, BAND_ROWS * xres * 4 // 1024, secs))
        answer = host.ask("pattern", {"y0": y0, "rows": BAND_ROWS, "width": xres})
        tap.diag("host: %s" % answer)
        results["pattern"] = "" if answer.startswith("ok") else answer
        fcntl.ioctl(tty, KDSETMODE, KD_TEXT)
        m.close()
        os.close(fd)
    else:
        results["pattern"] = "no /dev/fb0"

    for key, state in (("unplug", "disconnected"), ("plug", "connected")):
        host.ask(key, {})
        ok = i915lib.wait_for(functools.partial(has_status, name, state), 30.0)
        results[key] = "" if ok else "%s stays %s" % (name, connectors().get(name))

    recs = i915lib.kmsg_settle()
    drm = [r for r in recs if DRM_LINE.search(r[2]) and not r[2].startswith(" ")]
    bad = [i915lib.format_record(r) for r in drm if FORBIDDEN.search(r[2])]
    results["clean-dmesg"] = "" if not bad else "%d line(s), first: %s" % (len(bad), bad[0])
    for key, desc in CHECKS:
        tap.ok(not results[key], desc, results[key] or "")
    for rec in drm[-40:]:
        tap.diag("  " + i915lib.format_record(rec))
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
