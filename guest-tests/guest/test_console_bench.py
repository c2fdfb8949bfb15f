"""fbcon's console and /dev/fb0 through the aperture, timed (run by bench/bench_console.py, not
by the lane).

i915 binds with the display on; then, ROUNDS times each:
- a full console redraw: the screen cleared and filled with text (128 x 48 characters of an
  8x16 font on 1024x768), which fbcon draws glyph by glyph through the aperture (every store
  a trapped, posted write);
- a full 1024x768 XRGB8888 frame (3 MiB) copied into /dev/fb0's mapping (the aperture too);
each ended by a read through the aperture, which returns only after every posted write before
it is done. Figures are TAP diagnostics "# bench NAME VALUE UNIT" (the median round).
Kernel command line: devmodel.bench_rounds=R (default 3).
"""
# devmodel-guest: manual image=i915 timeout=900
import fcntl
import mmap
import os
import struct
import sys
import time

import gvtlib
import i915lib

INSMOD_TIMEOUT = 300.0
FBIOGET_VSCREENINFO = 0x4600
FBIOGET_FSCREENINFO = 0x4602
KDSETMODE = 0x4B3A
KD_TEXT, KD_GRAPHICS = 0, 1


def fb_geometry(fd):
    var = fcntl.ioctl(fd, FBIOGET_VSCREENINFO, bytes(160))
    fix = fcntl.ioctl(fd, FBIOGET_FSCREENINFO, bytes(80))
    xres, yres = struct.unpack_from("II", var, 0)
    line_length = struct.unpack_from("I", fix, 48)[0]
    return xres, yres, line_length


def main():
    tap = gvtlib.Tap(2)
    rounds = gvtlib.cmdline_int("devmodel.bench_rounds", 3)
    dev = gvtlib.find_device()
    bdf = dev.path.rsplit("/", 1)[-1]
    for name in i915lib.load_order():
        if not i915lib.module_loaded(name):
            ok, _secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
            if not ok:
                tap.bail("insmod %s: %s" % (name, msg))
    if not i915lib.wait_for(lambda: os.path.exists("/dev/fb0") and bdf in i915lib.bound_devices(), 60.0):
        tap.bail("no /dev/fb0")
    fd = os.open("/dev/fb0", os.O_RDWR)
    xres, yres, line_length = fb_geometry(fd)
    tap.diag("fb0: %dx%d, %d bytes a line, rounds=%d" % (xres, yres, line_length, rounds))
    fb = mmap.mmap(fd, line_length * yres, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    tty = os.open("/dev/tty1", os.O_WRONLY)
    cols, lines = xres // 8, yres // 16

    def settle():
        return fb[0:4]  # a read through the aperture: the posted writes before it are done

    redraw = []
    for r in range(rounds):
        # Every cell a printable character (no scrolling: the last line has no newline).
        body = "\n".join(
            "".join(chr(33 + (r + y + x) % 94) for x in range(cols)) for y in range(lines)
        )
        t0 = time.monotonic()
        os.write(tty, ("\033[H\033[2J" + body).encode())
        settle()
        redraw.append(time.monotonic() - t0)
    tap.diag("bench console_redraw %.3f s" % sorted(redraw)[len(redraw) // 2])
    tap.ok(all(t > 0 for t in redraw), "fbcon redrew the whole console %d times" % rounds)

    fcntl.ioctl(tty, KDSETMODE, KD_GRAPHICS)  # fbcon stops drawing
    frames = []
    try:
        for r in range(rounds):
            image = b"".join(
                bytes((r * 40 & 0xFF, y & 0xFF, 0x80, 0)) * xres + bytes(line_length - 4 * xres) for y in range(yres)
            )
            t0 = time.monotonic()
            fb[0 : len(image)] = image
            settle()
            frames.append(time.monotonic() - t0)
        got = fb[line_length * (yres - 1) : line_length * (yres - 1) + 4]
    finally:
        fcntl.ioctl(tty, KDSETMODE, KD_TEXT)
    tap.diag("bench fb_frame %.3f s" % sorted(frames)[len(frames) // 2])
    want = bytes(((rounds - 1) * 40 & 0xFF, (yres - 1) & 0xFF, 0x80, 0))
    tap.ok(got == want, "the last frame's last row reads back through the aperture", "%r != %r" % (got, want))
    fb.close()
    os.close(fd)
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
