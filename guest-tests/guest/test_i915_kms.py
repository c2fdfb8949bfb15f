"""What IGT's KMS basics do, on the vGPU's display under the guest's own i915, with DRM ioctls
from Python (kmsuapi.py): framebuffers of each format and tiling (ADDFB2 with modifiers), a
modeset (legacy SETCRTC) with dumb buffers, page flips with events, the vblank counter
(WAIT_VBLANK), the legacy cursor, property blobs, the pipe CRC through debugfs
(crtc-0/crc/control and data, as IGT's igt_pipe_crc reads it) of equal and different pictures,
and forced connector states through sysfs; then IGT's packaged benchmarks/kms_vblank.

The host test answers on the line channel: "pattern" makes it decode the screen and check the
test pattern pixel for pixel (harness/screen.py has the host's copy of the pattern). Figures
are printed as "# figure NAME: VALUE". Needs devmodel.channel=1 on the command line.
"""
# devmodel-guest: image=i915 timeout=900
import errno
import functools
import itertools
import os
import re
import select
import subprocess
import sys
import time

import gvtlib
import i915lib
import kmsuapi as kms

INSMOD_TIMEOUT = 300.0
DRM_LINE = re.compile(r"^i915 [0-9a-f]{4}:|\[drm[]:]|drivers/gpu/drm/")
FORBIDDEN = re.compile(r"mismatch|timed out|not locked|lied|WARNING|doesn't match|Overflow", re.IGNORECASE)
DEBUGFS = "/sys/kernel/debug"
CRC_DIR = DEBUGFS + "/dri/0/crtc-0/crc"
KMS_VBLANK = "/usr/libexec/igt-gpu-tools/benchmarks/kms_vblank"
FLIPS = 60
VBLANKS = 120
SQUARE = (504, 376, 8)  # x, y, size: where the "different" picture differs

CHECKS = (
    ("bound", "i915 binds with the display; card0 opens and becomes DRM master"),
    ("resources", "one connector, DisplayPort, connected, 1024x768 first; CRTCs and encoders"),
    ("addfb2", "ADDFB2 with modifiers: each format linear and X-tiled; Y and Yf on SKL only (EINVAL on BDW)"),
    ("modeset", "SETCRTC lights the connector with a dumb buffer; GETCRTC reads its fb and mode back"),
    ("host-pattern", "the host decodes the test pattern pixel for pixel (linear and X-tiled XRGB8888, XBGR8888)"),
    ("flips", "page flips with events: each completes, vblank sequence numbers increase"),
    ("vblank", "WAIT_VBLANK: the counter advances by at least the vblanks waited for, timestamps increase"),
    ("cursor", "the legacy cursor: set, moved, removed; the pipe CRC sees it and comes back without it"),
    ("blobs", "property blobs: created, read back, destroyed; the connector's EDID blob"),
    ("crc-equal", "pipe CRC: the same picture as linear and X-tiled XRGB8888 and as XBGR8888 gives equal CRCs"),
    ("crc-differ", "pipe CRC: a picture with one 8x8 square changed gives a different CRC"),
    ("kms_vblank", "IGT's benchmarks/kms_vblank (query and event) runs and reports"),
    ("forced", "forced connector states: sysfs status off, on, detect"),
    ("clean-dmesg", "dmesg: no mismatch, timed out, not locked, lied, overflow or WARNING from i915"),
)

BARS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 255, 255),
        (128, 128, 128))


def pattern_row(y, width, height, order="xrgb", square=False):
    """Row y of the test pattern (harness/screen.py kms_pixel): eight vertical bars shaded by y,
    a black column every 16 pixels; ``square``: the 8x8 white square of the different picture."""
    shade = 96 + y * 159 // (height - 1)
    out = []
    for bar in BARS:
        r, g, b = (c * shade // 255 for c in bar)
        px = bytes((b, g, r, 0)) if order == "xrgb" else bytes((r, g, b, 0))
        out.append((bytes(4) + px * 15) * (width // 8 // 16))
    row = b"".join(out)
    sx, sy, n = SQUARE
    if square and sy <= y < sy + n:
        row = row[: 4 * sx] + b"\xff\xff\xff\x00" * n + row[4 * (sx + n):]
    return row


def fill(m, pitch, width, height, tiling="linear", **kw):
    """The pattern into a mapped buffer, linear or X-tiled (512-byte x 8-row tiles, row-major)."""
    for y in range(height):
        row = pattern_row(y, width, height, **kw)
        if tiling == "linear":
            m[y * pitch: y * pitch + len(row)] = row
            continue
        tiles_per_row = pitch // 512
        for tx in range(len(row) // 512):
            at = ((y >> 3) * tiles_per_row + tx) * 4096 + (y & 7) * 512
            m[at: at + 512] = row[tx * 512: tx * 512 + 512]


def pipe_crc(frames=2, timeout=30.0):
    """The pipe's CRC now, as IGT's igt_pipe_crc_collect_crc takes it: source "auto", open the
    data file (i915 starts computing), read ``frames`` entries, close. The last entry's first
    value (i915 reports one on gen8+)."""
    with open(CRC_DIR + "/control", "w") as f:
        f.write("auto")
    fd = os.open(CRC_DIR + "/data", os.O_RDONLY)
    try:
        got: list[tuple[int, int]] = []
        deadline = time.monotonic() + timeout
        buf = b""
        while len(got) < frames:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise gvtlib.TestError("no CRC within %.0f s (got %d)" % (timeout, len(got)))
            buf += os.read(fd, 256).replace(b"\0", b"")  # each entry ends "\n\0"
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                fields = line.split()
                got.append((int(fields[0], 16), int(fields[1], 16)))
        return got[-1][1]
    finally:
        os.close(fd)


class Fb:
    """A dumb buffer mapped into this process and a framebuffer on it."""

    def __init__(self, card, width, height, fmt=kms.XRGB8888, modifier=None, tiling="linear", blank=False, **kw):
        self.card = card
        self.handle, self.pitch, self.size = card.create_dumb(width, height)
        if not blank:  # a new dumb buffer reads as zeros: black
            m = card.map_dumb(self.handle, self.size)
            fill(m, self.pitch, width, height, tiling, **kw)
            m.close()
        self.id = card.add_fb2(width, height, fmt, self.handle, self.pitch, modifier)


def flip_and_wait(card, crtc, fb, user, timeout=10.0):
    card.page_flip(crtc, fb.id, user)
    ev = card.event(timeout)
    if ev is None or ev[0] != kms.EVENT_FLIP_COMPLETE or ev[1] != user:
        raise gvtlib.TestError("flip %d: event %s" % (user, ev))
    return ev


def set_status(name, value):
    with open("/sys/class/drm/card0-%s/status" % name, "w") as f:
        f.write(value)


def has_status(name, want):
    return read_status(name) == want


def read_status(name):
    with open("/sys/class/drm/card0-%s/status" % name) as f:
        return f.read().strip()


def main():
    tap = gvtlib.Tap(len(CHECKS))
    results = dict.fromkeys(k for k, _ in CHECKS)
    dev = gvtlib.find_device()
    platform = "skl" if dev.config_read(2, 2) == 0x1912 else "bdw"
    bdf = dev.path.rsplit("/", 1)[-1]
    for name in i915lib.load_order():
        if not i915lib.module_loaded(name):
            ok, _secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
            if not ok:
                results["bound"] = "insmod %s: %s" % (name, msg)
                break
    i915lib.wait_for(lambda: os.path.exists("/dev/fb0") and bdf in i915lib.bound_devices(), 60.0)
    subprocess.run(["mount", "-t", "debugfs", "debugfs", DEBUGFS], check=False)
    host = gvtlib.HostChannel()
    card = None
    try:
        card = kms.Card()
        card.set_master()
        if results["bound"] is None:
            results["bound"] = ""
    except OSError as e:
        results["bound"] = results["bound"] or "card0: %s" % e
    if card is not None:
        run(card, tap, host, results, platform)
        card.close()
    figures: dict[str, str] = {}
    results["kms_vblank"] = kms_vblank(tap, figures)
    results["forced"] = forced(tap)
    for key, value in figures.items():
        tap.diag("figure %s: %s" % (key, value))
    recs = i915lib.kmsg_settle()
    drm = [r for r in recs if DRM_LINE.search(r[2]) and not r[2].startswith(" ")]
    bad = [i915lib.format_record(r) for r in drm if FORBIDDEN.search(r[2])]
    results["clean-dmesg"] = "" if not bad else "%d line(s), first: %s" % (len(bad), bad[0])
    for key, desc in CHECKS:
        reason = results[key]
        tap.ok(reason == "", desc, "not run" if reason is None else reason)
    for rec in drm[-30:]:
        tap.diag("  " + i915lib.format_record(rec))
    return tap.finish()


def step(results, key, tap, fn):
    """Run one check's part; an exception fails it with its reason."""
    try:
        reason = fn()
    except Exception as e:  # noqa: BLE001 - any failure becomes the check's reason
        reason = "%s: %s" % (type(e).__name__, e)
    if results[key] is None or results[key] == "":
        results[key] = reason or ""
    if reason:
        tap.diag("%s: %s" % (key, reason))
    return not reason


def run(card, tap, host, results, platform):
    crtcs, conns, encoders = card.resources()
    state = {}

    def resources():
        tap.diag("crtcs %s connectors %s encoders %s" % (crtcs, conns, encoders))
        if len(conns) != 1 or not crtcs or not encoders:
            return "resources: crtcs %s connectors %s encoders %s" % (crtcs, conns, encoders)
        connection, ctype, _enc, modes = card.connector(conns[0])
        tap.diag("connector %d: connection %d type %d, modes %s" % (conns[0], connection, ctype,
                                                                    " ".join(m.name for m in modes)))
        if connection != kms.CONNECTED or ctype != kms.CONNECTOR_DISPLAYPORT:
            return "connection %d type %d" % (connection, ctype)
        if not modes or (modes[0].hdisplay, modes[0].vdisplay) != (1024, 768):
            return "modes %s" % [m.name for m in modes]
        state["mode"] = modes[0]
        return ""

    if not step(results, "resources", tap, resources):
        return
    mode = state["mode"]
    w, h = mode.hdisplay, mode.vdisplay
    crtc, conn = crtcs[0], conns[0]
    tap.diag("mode %s: %.3f Hz (clock %d kHz, %dx%d total)" % (mode.name, mode.refresh, mode.clock, mode.htotal,
                                                               mode.vtotal))

    def addfb2():
        handle, pitch, _size = card.create_dumb(w, h)
        bad = []
        matrix = []
        for fname, fmt in kms.FORMATS.items():
            for mname, mod in kms.MODIFIERS.items():
                got = 0
                try:
                    fb = card.add_fb2(w, h, fmt, handle, pitch, mod)
                    card.rm_fb(fb)
                except OSError as e:
                    got = e.errno or errno.EIO
                matrix.append("%s/%s:%s" % (fname, mname, "ok" if not got else errno.errorcode.get(got, got)))
                tiled_y = mname in ("Y", "Yf")
                if platform == "skl" or mname == "linear" or (mname == "X" and fname != "ARGB8888"):
                    want = 0
                elif tiled_y:
                    want = errno.EINVAL
                else:
                    continue  # ARGB8888 X-tiled on BDW: only the cursor has ARGB8888, linear
                if got != want:
                    bad.append("%s/%s: %s, want %s" % (fname, mname, got, want))
        card.destroy_dumb(handle)
        tap.diag("ADDFB2: " + " ".join(matrix))
        return "; ".join(bad)

    step(results, "addfb2", tap, addfb2)

    def modeset():
        fbs = state["fbs"] = {
            "a": Fb(card, w, h),
            "b": Fb(card, w, h, kms.XRGB8888, kms.MOD_X, "x"),
            "d": Fb(card, w, h, kms.XBGR8888, order="xbgr"),
            "c": Fb(card, w, h, square=True),
        }
        card.set_crtc(crtc, fbs["a"].id, [conn], mode)
        fb_id, valid, got = card.get_crtc(crtc)
        if fb_id != fbs["a"].id or not valid or got.raw != mode.raw:
            return "GETCRTC: fb %d (set %d), valid %d, mode %s" % (fb_id, fbs["a"].id, valid, got.name)
        return ""

    if not step(results, "modeset", tap, modeset):
        return
    fbs = state["fbs"]

    def host_pattern(label):
        answer = host.ask("pattern", {"width": w, "height": h, "label": label})
        tap.diag("host (%s): %s" % (label, answer))
        return "" if answer.startswith("ok") else answer

    step(results, "host-pattern", tap, lambda: host_pattern("linear XRGB8888"))
    crcs = {}

    def crc_equal():
        crcs["a"] = pipe_crc()
        flip_and_wait(card, crtc, fbs["b"], 1)  # a legacy flip may change the tiling, not the format
        crcs["b"] = pipe_crc()
        step(results, "host-pattern", tap, lambda: host_pattern("X-tiled XRGB8888"))
        card.set_crtc(crtc, fbs["d"].id, [conn], mode)
        crcs["d"] = pipe_crc()
        step(results, "host-pattern", tap, lambda: host_pattern("linear XBGR8888"))
        card.set_crtc(crtc, fbs["a"].id, [conn], mode)
        tap.diag("CRC of A (linear XRGB8888) %08x, B (X-tiled XRGB8888) %08x, D (linear XBGR8888) %08x"
                 % (crcs["a"], crcs["b"], crcs["d"]))
        return "" if crcs["a"] == crcs["b"] == crcs["d"] else "CRCs differ"

    step(results, "crc-equal", tap, crc_equal)

    def crc_differ():
        flip_and_wait(card, crtc, fbs["c"], 2)
        crcs["c"] = pipe_crc()
        flip_and_wait(card, crtc, fbs["a"], 3)
        again = pipe_crc()
        tap.diag("CRC of C (one square changed) %08x; A again %08x" % (crcs["c"], again))
        if crcs["c"] == crcs.get("a"):
            return "the different picture has the same CRC"
        return "" if again == crcs.get("a") else "A's CRC changed: %08x then %08x" % (crcs.get("a", 0), again)

    step(results, "crc-differ", tap, crc_differ)

    def flips():
        seqs = []
        start = time.monotonic()
        for i in range(FLIPS):
            ev = flip_and_wait(card, crtc, fbs["b" if i % 2 == 0 else "a"], 100 + i)
            seqs.append(ev[3])
        secs = time.monotonic() - start
        tap.diag("figure flips_per_second: %.1f (%d flips with events in %.2f s; vblanks %d..%d)"
                 % (FLIPS / secs, FLIPS, secs, seqs[0], seqs[-1]))
        if any(b <= a for a, b in itertools.pairwise(seqs)):
            return "sequence numbers do not increase: %s" % seqs
        return ""

    step(results, "flips", tap, flips)

    def vblank():
        s0, ts0 = card.wait_vblank(1)
        t0 = time.monotonic()
        s1, ts1 = card.wait_vblank(VBLANKS)
        wall = time.monotonic() - t0
        expected = (s1 - s0) / mode.refresh
        tap.diag("figure vblank_clock_error: %+.2f%% (%d vblanks in %.3f s of wall time, %.3f s at %.3f Hz)"
                 % (100 * (wall - expected) / expected, s1 - s0, wall, expected, mode.refresh))
        tap.diag("figure vblank_timestamp_error: %+.2f%% (timestamps %.3f s apart)"
                 % (100 * ((ts1 - ts0) - expected) / expected, ts1 - ts0))
        # The reply holds the counter when the waiter ran again: on a loaded host the vblank
        # interrupt can come late and the counter then moves by several at once (drm reads
        # PIPE_FRMCOUNT), so it is at least, not exactly, the vblanks waited for.
        if s1 - s0 < VBLANKS:
            return "waited for %d vblanks, the counter moved %d" % (VBLANKS, s1 - s0)
        return "" if ts1 > ts0 else "timestamps %.6f then %.6f" % (ts0, ts1)

    step(results, "vblank", tap, vblank)

    def cursor():
        plain = pipe_crc()
        handle, pitch, size = card.create_dumb(64, 64)
        m = card.map_dumb(handle, size)
        for y in range(64):
            m[y * pitch: y * pitch + 256] = b"\x40\xc0\xff\xff" * 64  # opaque orange
        m.close()
        card.cursor(crtc, kms.CURSOR_BO, width=64, height=64, handle=handle)
        card.cursor(crtc, kms.CURSOR_MOVE, x=100, y=120)
        shown = pipe_crc()
        card.cursor(crtc, kms.CURSOR_BO, handle=0)
        gone = pipe_crc()
        card.destroy_dumb(handle)
        tap.diag("CRC without the cursor %08x, with it %08x, after it %08x" % (plain, shown, gone))
        if shown == plain:
            return "the cursor did not change the CRC"
        return "" if gone == plain else "the CRC did not come back"

    step(results, "cursor", tap, cursor)

    def blobs():
        data = bytes(range(256)) * 3
        blob = card.create_blob(data)
        if card.blob(blob) != data:
            return "blob %d reads back different bytes" % blob
        card.destroy_blob(blob)
        if kms.errno_of(lambda: card.blob(blob)) != errno.ENOENT:
            return "a destroyed blob still reads"
        props = card.properties(conn, kms.OBJECT_CONNECTOR)
        tap.diag("connector properties: %s" % ", ".join(sorted(props)))
        if "EDID" not in props:
            return "no EDID property"
        edid = card.blob(props["EDID"][1])
        if len(edid) < 128 or edid[:8] != b"\x00\xff\xff\xff\xff\xff\xff\x00" or sum(edid[:128]) % 256:
            return "EDID blob of %d bytes, header %s" % (len(edid), edid[:8].hex())
        return ""

    step(results, "blobs", tap, blobs)


def kms_vblank(tap, figures):
    if not os.path.exists(KMS_VBLANK):
        return "%s is not in the image" % KMS_VBLANK
    for what in ("query", "event"):
        try:
            r = subprocess.run([KMS_VBLANK, "-w", what, "-r", "1"], capture_output=True, text=True, timeout=120,
                               check=False)
        except subprocess.TimeoutExpired:
            return "kms_vblank -w %s: still running after 120 s" % what
        out = (r.stdout + r.stderr).strip()
        tap.diag("igt kms_vblank -w %s: exit %d: %s" % (what, r.returncode, out[-300:]))
        if r.returncode != 0 or not re.search(r"^\s*\d+\.\d+\s*$", r.stdout, re.M):
            return "kms_vblank -w %s: exit %d" % (what, r.returncode)
        figures["kms_vblank_%s_per_second" % what] = r.stdout.strip()
    return ""


def forced(tap):
    names = [p.split("card0-", 1)[1] for p in sorted(os.listdir("/sys/class/drm")) if p.startswith("card0-DP")]
    if not names:
        return "no DP connector in sysfs"
    name = names[0]
    seen = []
    for value, want in (("off", "disconnected"), ("on", "connected"), ("detect", "connected")):
        set_status(name, value)
        ok = i915lib.wait_for(functools.partial(has_status, name, want), 30.0)
        seen.append("%s->%s" % (value, read_status(name)))
        if not ok:
            return "status %s: %s" % (value, ", ".join(seen))
    tap.diag("forced %s: %s" % (name, ", ".join(seen)))
    return ""


if __name__ == "__main__":
    sys.exit(main())
