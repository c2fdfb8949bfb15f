"""What IGT's gem_tiled_blits, gem_tiled_fence_blits and gem_tiled_pread_basic ask, through
the guest's own i915: XY_SRC_COPY_BLT between linear, X-tiled and Y-tiled objects (tiling set
with GEM_SET_TILING, Y picked by BCS_SWCTRL loaded in the batch), each result read raw (pread:
the tiled layout in memory) and through the GTT mmap (i915 fences the object, the aperture
detiles), and a write through a fenced GTT mmap read back raw. Every check is against a CPU
tiler written here from the PRM's layouts (X: 4 KiB tiles of 8 rows of 512 bytes; Y: 32 rows
of 128 bytes stored as 16-byte columns; no bit-6 swizzling, which i915 must report).

The guest runs with QEMU's x-no-posted-writes (the script reads back through guest RAM what it
wrote through the aperture; docs/igt.md).
"""
# devmodel-guest: image=i915 timeout=600 no-posted-writes
import struct
import sys
import time
from array import array

import gencmd
from i915uapi import (
    EXEC_BLT,
    MMAP_OFFSET_GTT,
    TILING_NONE,
    TILING_X,
    TILING_Y,
    Drm,
)
from test_i915_exec import bo, run_batch, tap_with_i915

CHECKS = (
    ("loaded", "i915 binds, renderD128 exists, the GT is not wedged"),
    ("set-tiling", "GEM_SET_TILING takes X and Y and reports no bit-6 swizzling"),
    ("blit-linear-to-x", "a linear-to-X-tiled blit lays the pixels out as X tiles"),
    ("gtt-read-x", "the X-tiled result reads linear through the fenced GTT mmap"),
    ("blit-x-to-y", "an X-to-Y-tiled blit (BCS_SWCTRL) lays them out as Y tiles"),
    ("gtt-read-y", "the Y-tiled result reads linear through the fenced GTT mmap"),
    ("blit-y-to-linear", "a Y-tiled-to-linear blit of a sub-rectangle gives the source's pixels"),
    ("gtt-write-y", "a write through a fenced GTT mmap of a Y-tiled object lands in Y tiles"),
)
W, H = 256, 64                       # pixels, 32 bpp: a 1 KiB pitch (2 X or 8 Y tiles a row)
PITCH = W * 4
SIZE = PITCH * H                     # 64 KiB: 8 rows of X tiles, 2 rows of Y tiles
SRC, DST, THIRD = 0x1_0000_0000, 0x1_0010_0000, 0x1_0020_0000
BCS_SWCTRL = 0x22200                 # masked: bit 0 source Y, bit 1 destination Y
MI_LOAD_REGISTER_IMM_1 = 0x11000001
SRC_TILED, DST_TILED = 1 << 15, 1 << 11
GTT_STRIDE = 5                       # pixels between GTT-mmap samples (each read a round trip)


def tiled_offset(mode, x, y):
    """Byte x of row y in a tiled surface of PITCH bytes (the PRM's layouts)."""
    if mode == TILING_NONE:
        return y * PITCH + x
    if mode == TILING_X:
        tile = (y // 8) * (PITCH // 512) + x // 512
        return tile * 4096 + (y % 8) * 512 + x % 512
    tile = (y // 32) * (PITCH // 128) + x // 128
    return tile * 4096 + (x % 128) // 16 * 512 + (y % 32) * 16 + x % 16


def lay_out(mode, pixels):
    """The bytes a surface of these pixels (row-major W x H) holds in memory."""
    out = bytearray(SIZE)
    for y in range(H):
        for x in range(W):
            struct.pack_into("<I", out, tiled_offset(mode, 4 * x, y), pixels[y * W + x])
    return bytes(out)


def pattern(seed):
    return array("I", [(seed + y * 0x10001 + x * 0x97) & 0xFFFFFFFF for y in range(H) for x in range(W)])


def first_difference(got, want, what):
    if got == want:
        return ""
    bad = next(i for i in range(0, len(want), 4) if got[i:i + 4] != want[i:i + 4])
    n = sum(1 for i in range(0, len(want), 4) if got[i:i + 4] != want[i:i + 4])
    return "%s: %d dword(s) differ, first at byte %d: %s, want %s" % (
        what, n, bad, got[bad:bad + 4].hex(), want[bad:bad + 4].hex())


def blit(drm, dst, dst_mode, src, src_mode, rect=(0, 0, W, H), src_at=(0, 0)):
    """One XY_SRC_COPY_BLT from src to dst (handles softpinned at SRC and DST, pitches in
    dwords for tiled surfaces), BCS_SWCTRL loaded first with the Y bits it needs."""
    x1, y1, x2, y2 = rect
    sx, sy = src_at
    swctrl = (3 << 16) | (1 if src_mode == TILING_Y else 0) | (2 if dst_mode == TILING_Y else 0)
    cmd = gencmd.src_copy_blt(DST, PITCH // 4 if dst_mode else PITCH, x1, y1, x2, y2,
                              SRC, PITCH // 4 if src_mode else PITCH, sx, sy)
    cmd[0] |= (SRC_TILED if src_mode else 0) | (DST_TILED if dst_mode else 0)
    return run_batch(drm, EXEC_BLT, [[MI_LOAD_REGISTER_IMM_1, BCS_SWCTRL, swctrl], cmd],
                     [(dst, DST), (src, SRC)])


def gtt_read(drm, handle, want_pixels, what):
    """Sample the object through its GTT mmap (a fence detiles it): every GTT_STRIDE-th pixel."""
    view = drm.mmap(handle, SIZE, MMAP_OFFSET_GTT)
    try:
        t0 = time.monotonic()
        bad = []
        n = 0
        for i in range(0, W * H, GTT_STRIDE):
            got = struct.unpack_from("<I", view, 4 * i)[0]
            n += 1
            if got != want_pixels[i]:
                bad.append((i, got))
        print("# time %s: %d GTT-mmap reads in %.2f s" % (what, n, time.monotonic() - t0), flush=True)
    finally:
        view.close()
    if bad:
        i, got = bad[0]
        return "%s: %d of %d samples differ, first pixel (%d, %d): 0x%08x, want 0x%08x" % (
            what, len(bad), n, i % W, i // W, got, want_pixels[i])
    return ""


class Surfaces:
    def __init__(self, drm):
        self.drm = drm
        self.src_pixels = pattern(0x11000000)
        self.linear = bo(drm, lay_out(TILING_NONE, self.src_pixels))
        self.x = bo(drm, SIZE)
        self.y = bo(drm, SIZE)
        self.out = bo(drm, bytes(SIZE))
        self.swizzle = [drm.set_tiling(self.x, TILING_X, PITCH), drm.set_tiling(self.y, TILING_Y, PITCH)]

    def close(self):
        for h in (self.linear, self.x, self.y, self.out):
            self.drm.gem_close(h)

    def set_tiling(self):
        return "" if self.swizzle == [0, 0] else "swizzle modes %s (want 0: none)" % self.swizzle

    def linear_to_x(self):
        why = blit(self.drm, self.x, TILING_X, self.linear, TILING_NONE)
        return why or first_difference(self.drm.pread(self.x, 0, SIZE), lay_out(TILING_X, self.src_pixels),
                                       "X-tiled object read raw")

    def x_to_y(self):
        why = blit(self.drm, self.y, TILING_Y, self.x, TILING_X)
        return why or first_difference(self.drm.pread(self.y, 0, SIZE), lay_out(TILING_Y, self.src_pixels),
                                       "Y-tiled object read raw")

    def y_to_linear(self):
        rect, at = (8, 3, 200, 61), (40, 1)
        why = blit(self.drm, self.out, TILING_NONE, self.y, TILING_Y, rect, at)
        if why:
            return why
        want = array("I", [0] * (W * H))
        x1, y1, x2, y2 = rect
        for y in range(y1, y2):
            for x in range(x1, x2):
                want[y * W + x] = self.src_pixels[(y - y1 + at[1]) * W + x - x1 + at[0]]
        return first_difference(self.drm.pread(self.out, 0, SIZE), want.tobytes(), "linear copy read back")

    def gtt_write_y(self):
        pixels = pattern(0x7E000000)
        view = self.drm.mmap(self.y, SIZE, MMAP_OFFSET_GTT)
        try:
            t0 = time.monotonic()
            for i, value in enumerate(pixels):  # dword stores: each one write over vfio-user
                struct.pack_into("<I", view, 4 * i, value)
            print("# time GTT-mmap write of %d KiB: %.2f s" % (SIZE // 1024, time.monotonic() - t0), flush=True)
        finally:
            view.close()
        return first_difference(self.drm.pread(self.y, 0, SIZE), lay_out(TILING_Y, pixels),
                                "Y-tiled object after the GTT-mmap write, read raw")


def main():
    tap, descs = tap_with_i915(CHECKS)
    if descs is None:
        return tap.finish()
    with Drm() as drm:
        s = Surfaces(drm)
        try:
            tap.check(descs["set-tiling"], s.set_tiling)
            tap.check(descs["blit-linear-to-x"], s.linear_to_x)
            tap.check(descs["gtt-read-x"], lambda: gtt_read(drm, s.x, s.src_pixels, "X-tiled via GTT"))
            tap.check(descs["blit-x-to-y"], s.x_to_y)
            tap.check(descs["gtt-read-y"], lambda: gtt_read(drm, s.y, s.src_pixels, "Y-tiled via GTT"))
            tap.check(descs["blit-y-to-linear"], s.y_to_linear)
            tap.check(descs["gtt-write-y"], s.gtt_write_y)
        finally:
            s.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
