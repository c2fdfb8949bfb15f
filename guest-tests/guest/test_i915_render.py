"""The render engine from user space through the guest's own i915: what IGT's render copy,
gem_render_linear_blits / gem_render_tiled_blits, media fill and GPGPU fill do, with the
project's own kernels (assembled on the host by gen_vgpu.eu.asm; a host test checks these
bytes against the assembler), standard library only.

Each check builds its state in one buffer (surface states, binding table, sampler, kernel,
vertices, constants, interface descriptor), its commands in a batch, softpins everything
above 4 GiB in the file's full PPGTT, waits, and reads the target back with pread. Tiled
surfaces are laid out tiled by this script (X: 512 B x 8 rows, Y: 128 B x 32 rows of 16-byte
columns) and read back and de-tiled here, so the device's tiling is what is checked. Every
pixel of every target is compared with a model.
"""
# devmodel-guest: image=i915 timeout=540
import itertools
import struct
import sys
import time

import gencmd
from i915uapi import EXEC_RENDER, PARAM_CHIPSET_ID, Drm, ExecObject
from test_i915_exec import drm_warnings, tap_with_i915

CHECKS = (
    ("loaded", "i915 binds, renderD128 exists, the GT is not wedged"),
    ("copy-linear", "render copy linear to linear, every pixel"),
    ("copy-x-to-y", "render copy X-tiled to Y-tiled, every pixel"),
    ("copy-y-to-x", "render copy Y-tiled to X-tiled, every pixel"),
    ("copy-r8", "render copy of an R8 surface, Y-tiled to linear, every byte"),
    ("linear-blits", "a chain of render copies through linear buffers (gem_render_linear_blits), every pixel"),
    ("tiled-blits", "a chain of render copies through X- and Y-tiled buffers (gem_render_tiled_blits)"),
    ("media-fill", "media fill: MEDIA_OBJECTs write 16x16 blocks of an R8 surface, every byte"),
    ("gpgpu-fill", "GPGPU fill: a GPGPU_WALKER writes rows of an R8 surface, every byte"),
    ("no-drm-warnings", "dmesg: no i915/DRM line at warning level or above"),
)

STATE = 0x5_0000_0000
BATCH = 0x2_0000_0000
SRC = 0x3_0000_0000
DST = 0x4_0000_0000
PAGE = 4096
WAIT = 60.0
BGRA, R8 = 0x0C0, 0x140
LINEAR, XTILE, YTILE = 0, 2, 3

# The project's kernels (tests/unit/gen_vgpu/render_rig.py builds them; the host test
# test_render.py::test_guest_kernels_are_the_assemblers checks these bytes).
COPY_KERNEL = bytes.fromhex(
    "5a006000e83a4021c000003a40008d005a106000e83a6021c000003a80008d005a006000e83a8021d000003a40008d00"
    "5a106000e83aa021d000003a80008d0031008002e802802240018d0601008408310080050002002080028d0600100390"
)
MEDIA_FILL_KERNEL = bytes.fromhex(
    "01004000882220202000002000000000010060000c02802000008d0000000000010020000c0280204000450000000000"
    "010000000c068820000000000f000f00010080000c02a0202000000000000000010080000c02e0202000000000000000"
    "010080000c0220212000000000000000010080000c02602120000000000000003100800c0002002080008d0600800a12"
    "010060000c02002e00008d00000000003100800700020020000e8d0610000082"
)
GPGPU_FILL_KERNEL = bytes.fromhex(
    "01004000882220202000002000000000410000002c0a40200400000e10000000010000002c0a44201800000800000000"
    "010060000c02802000008d0000000000010020000c0280204000450000000000010000000c068820000000000f000000"
    "010060000c02a02020000000000000003100800c0002002080008d0600800a04010060000c02002e00008d0000000000"
    "3100800700020020000e8d0610000082"
)

# Offsets in the state buffer (all bases of STATE_BASE_ADDRESS point at it).
BT, SS0, SS1, SAMPLER, KERNEL, VB, CURBE, IDD = 0x0, 0x40, 0x80, 0x100, 0x200, 0x1000, 0x1100, 0x1200


def cmd(key, *body):
    return [key << 16 | (len(body) - 1), *body]


def dwords(values):
    return struct.pack("<%dI" % len(values), *values)


class Gen:
    def __init__(self, gen):
        self.gen = gen

    def select(self, pipe):
        return [0x69040000 | pipe | (3 << 8 if self.gen == 9 else 0)]

    def base_address(self):
        lo, hi = STATE & 0xFFFFFFFF, STATE >> 32
        body = [1, 0, 1, lo | 1, hi, lo | 1, hi, 0, 0, lo | 1, hi, 0xFFFFF001, 0xFFFFF001, 0xFFFFF001, 0xFFFFF001]
        if self.gen == 9:
            body += [1, 0, 0xFFFFF000]
        return cmd(0x6101, *body)


def surface_state(base, width, height, pitch, fmt, tiling):
    dw = [0] * 16
    dw[0] = 1 << 29 | fmt << 18 | 1 << 16 | 1 << 14 | tiling << 12
    dw[2] = (height - 1) << 16 | (width - 1)
    dw[3] = pitch - 1
    dw[7] = 4 << 25 | 5 << 22 | 6 << 19 | 7 << 16
    dw[8] = base & 0xFFFFFFFF
    dw[9] = base >> 32
    return dw


def chunk_offset(xb, y, pitch, tiling):
    """Byte offset of the 16-byte chunk at byte column xb (a multiple of 16) of row y."""
    if tiling == XTILE:
        return ((y >> 3) * (pitch >> 9) + (xb >> 9)) * PAGE + (y & 7) * 512 + (xb & 511)
    if tiling == YTILE:
        return ((y >> 5) * (pitch >> 7) + (xb >> 7)) * PAGE + ((xb & 127) >> 4) * 512 + (y & 31) * 16
    return y * pitch + xb


def tile(rows, pitch, height, tiling):
    """The buffer image of rows (bytes per row, a multiple of 16) laid out with tiling."""
    out = bytearray(pitch * ((height + 31) // 32 * 32))
    for y, row in enumerate(rows):
        for xb in range(0, len(row), 16):
            o = chunk_offset(xb, y, pitch, tiling)
            out[o:o + 16] = row[xb:xb + 16]
    return bytes(out)


def untile(image, row_bytes, pitch, height, tiling):
    rows = []
    for y in range(height):
        row = bytearray(row_bytes)
        for xb in range(0, row_bytes, 16):
            o = chunk_offset(xb, y, pitch, tiling)
            row[xb:xb + 16] = image[o:o + 16]
        rows.append(bytes(row))
    return rows


def pattern_rows(width, height, bpp, seed):
    """Deterministic bytes, different in every pixel (an LCG)."""
    rows, v = [], seed
    for _y in range(height):
        row = bytearray(width * bpp)
        for i in range(len(row)):
            v = (v * 1103515245 + 12345) & 0x7FFFFFFF
            row[i] = v >> 16 & 0xFF
        rows.append(bytes(row))
    return rows


def size_of(pitch, height):
    return (pitch * ((height + 31) // 32 * 32) + PAGE - 1) // PAGE * PAGE


def bo(drm, data):
    handle = drm.create((len(data) + PAGE - 1) // PAGE * PAGE)
    drm.pwrite(handle, 0, data)
    return handle


def submit(drm, state, commands, targets):
    """Run commands (a list of dword lists) with the state buffer and targets [(handle, address)];
    a reason or ""."""
    words = [d for c in commands for d in c] + [gencmd.MI_BATCH_BUFFER_END]
    if len(words) % 2:
        words.append(0)
    batch = bo(drm, dwords(words))
    st = bo(drm, bytes(state))
    try:
        objs = [ExecObject(h, a, write=True) for h, a in targets] + [ExecObject(st, STATE), ExecObject(batch, BATCH)]
        drm.execbuf(objs, EXEC_RENDER, 4 * len(words))
        if not drm.wait(batch, WAIT):
            return "the batch did not complete within %.0f s" % WAIT
        return ""
    finally:
        drm.gem_close(batch)
        drm.gem_close(st)


class Surface:
    def __init__(self, width, height, bpp, fmt, tiling, pitch):
        self.width, self.height, self.bpp, self.fmt, self.tiling, self.pitch = width, height, bpp, fmt, tiling, pitch

    def image(self, rows):
        return tile(rows, self.pitch, self.height, self.tiling)

    def rows(self, image):
        return untile(image, self.width * self.bpp, self.pitch, self.height, self.tiling)

    def size(self):
        return size_of(self.pitch, self.height)


def copy_commands(g, src, dst, rect):
    """IGT's render copy sequence with the project's pixel shader: sample binding table entry 1
    at the interpolated (u, v), write the render target at entry 0."""
    sx, sy, w, h, dx, dy = rect
    state = bytearray(0x2000)
    state[BT:BT + 8] = dwords([SS0, SS1])
    state[SS0:SS0 + 64] = dwords(surface_state(DST, dst.width, dst.height, dst.pitch, dst.fmt, dst.tiling))
    state[SS1:SS1 + 64] = dwords(surface_state(SRC, src.width, src.height, src.pitch, src.fmt, src.tiling))
    state[SAMPLER:SAMPLER + 16] = dwords([0, 0, 0, 2 << 6 | 2 << 3 | 2])
    state[KERNEL:KERNEL + len(COPY_KERNEL)] = COPY_KERNEL
    sw, sh = src.width, src.height
    verts = [(dx + w, dy + h, (sx + w) / sw, (sy + h) / sh), (dx, dy + h, sx / sw, (sy + h) / sh),
             (dx, dy, sx / sw, sy / sh)]
    vb = b"".join(struct.pack("<hhff", *v) for v in verts)
    state[VB:VB + len(vb)] = vb
    elements = [1 << 25 | 0x000 << 16, 2 << 28 | 2 << 24 | 2 << 20 | 2 << 16,
                1 << 25 | 0x0F6 << 16, 1 << 28 | 1 << 24 | 2 << 20 | 3 << 16,
                1 << 25 | 0x085 << 16 | 4, 1 << 28 | 1 << 24 | 2 << 20 | 3 << 16]
    vb_addr = STATE + VB
    commands = [
        g.select(0),
        g.base_address(),
        cmd(0x781F, 1 << 22 | 1 << 29 | 1 << 28 | 1 << 11 | 1 << 5, 0, 0),
        cmd(0x7851, *[0] * 10),
        cmd(0x7850, 0, 0, 0, 0),
        cmd(0x7813, 0, 0, 0),
        cmd(0x7812, 0, 0, 0),
        cmd(0x782A, BT),
        cmd(0x782F, SAMPLER),
        cmd(0x7814, 1 << 11),
        cmd(0x7817, *[0] * 10),
        cmd(0x7820, KERNEL, 0, 1 << 27 | 2 << 18, 0, 0, 62 << 23 | 2, 6 << 16, 0, 0, 0, 0),
        cmd(0x784D, 1 << 30),
        cmd(0x784F, 1 << 31 | 1 << 8),
        cmd(0x784E, 0, 0),
        cmd(0x7900, 0, (dst.height - 1) << 16 | (dst.width - 1), 0),
        cmd(0x7808, 1 << 14 | 12, vb_addr & 0xFFFFFFFF, vb_addr >> 32, 36),
        cmd(0x7809, *elements),
        cmd(0x784B, 0x0F),
        cmd(0x7B00, 0, 3, 0, 1, 0, 0),
    ]
    return state, commands


def render_copy(drm, g, src, dst, src_rows, dst_rows, rect):
    """Copy rect of src into dst; returns (reason or "", the dst rows read back, the model)."""
    state, commands = copy_commands(g, src, dst, rect)
    s = drm.create(src.size())
    d = drm.create(dst.size())
    try:
        drm.pwrite(s, 0, src.image(src_rows))
        drm.pwrite(d, 0, dst.image(dst_rows))
        why = submit(drm, state, commands, [(s, SRC), (d, DST)])
        got = dst.rows(drm.pread(d, 0, dst.size()))
    finally:
        drm.gem_close(s)
        drm.gem_close(d)
    sx, sy, w, h, dx, dy = rect
    bpp = dst.bpp
    want = [bytearray(r) for r in dst_rows]
    for row in range(h):
        want[dy + row][dx * bpp:(dx + w) * bpp] = src_rows[sy + row][sx * bpp:(sx + w) * bpp]
    return why, got, [bytes(r) for r in want]


def compare(got, want, bpp, what):
    bad = [(x, y) for y, (g, w) in enumerate(zip(got, want, strict=True)) if g != w
           for x in range(len(w) // bpp) if g[x * bpp:(x + 1) * bpp] != w[x * bpp:(x + 1) * bpp]]
    if not bad:
        return ""
    x, y = bad[0]
    return "%s: %d pixels wrong, first (%d,%d) = %s, want %s" % (
        what, len(bad), x, y, got[y][x * bpp:(x + 1) * bpp].hex(), want[y][x * bpp:(x + 1) * bpp].hex())


def check_copy(drm, g, src_tiling, dst_tiling, fmt=BGRA, bpp=4):
    width, height = (256, 64) if bpp == 4 else (128, 64)
    pitch = 1024 if bpp == 4 else 512
    src = Surface(width, height, bpp, fmt, src_tiling, pitch)
    dst = Surface(width, height, bpp, fmt, dst_tiling, pitch)
    src_rows = pattern_rows(width, height, bpp, 7 + src_tiling)
    dst_rows = pattern_rows(width, height, bpp, 99 + dst_tiling)
    t0 = time.monotonic()
    why, got, want = render_copy(drm, g, src, dst, src_rows, dst_rows, (13, 5, width - 40, height - 17, 21, 9))
    print("# time render copy %dx%d: %.2f s" % (width - 40, height - 17, time.monotonic() - t0), flush=True)
    return why or compare(got, want, bpp, "dst")


def check_chain(drm, g, tilings):
    """Buffers 0..n-1 filled with their own patterns; copy i into i+1 for every i, whole
    surfaces, so the last holds the first's pattern (as gem_render_*_blits check)."""
    width, height, pitch = 128, 32, 512
    rows0 = pattern_rows(width, height, 4, 3)
    current = rows0
    for i, (a, b) in enumerate(itertools.pairwise(tilings)):
        src, dst = Surface(width, height, 4, BGRA, a, pitch), Surface(width, height, 4, BGRA, b, pitch)
        why, got, want = render_copy(drm, g, src, dst, current, pattern_rows(width, height, 4, 50 + i),
                                     (0, 0, width, height, 0, 0))
        why = why or compare(got, want, 4, "copy %d" % i)
        if why:
            return why
        current = got
    return compare(current, rows0, 4, "the last buffer")


def media_state(kernel, color, surface):
    state = bytearray(0x2000)
    state[BT:BT + 4] = dwords([SS0])
    state[SS0:SS0 + 64] = dwords(surface_state(DST, surface.width, surface.height, surface.pitch, R8, surface.tiling))
    state[KERNEL:KERNEL + len(kernel)] = kernel
    state[CURBE] = color
    state[IDD:IDD + 32] = dwords([KERNEL, 0, 1 << 18, 0, BT, 1 << 16, 0, 0])
    return state


def media_prologue(g, pipe):
    return [g.select(pipe), g.base_address(), cmd(0x7000, 0, 0, 1 << 16 | 2 << 8, 0, 2 << 16 | 2, 0, 0, 0),
            cmd(0x7001, 0, 64, CURBE), cmd(0x7002, 0, 32, IDD)]


def run_fill(drm, surface, state, commands, rect, color):
    before = pattern_rows(surface.width, surface.height, 1, 11)
    d = drm.create(surface.size())
    try:
        drm.pwrite(d, 0, surface.image(before))
        why = submit(drm, state, commands, [(d, DST)])
        got = surface.rows(drm.pread(d, 0, surface.size()))
    finally:
        drm.gem_close(d)
    x0, y0, w, h = rect
    want = [bytearray(r) for r in before]
    for y in range(y0, y0 + h):
        want[y][x0:x0 + w] = bytes([color]) * w
    return why or compare(got, [bytes(r) for r in want], 1, "surface")


def check_media_fill(drm, g):
    surface = Surface(128, 64, 1, R8, YTILE, 128)
    rect = (16, 16, 96, 32)
    commands = media_prologue(g, 1)
    for bx in range(rect[0], rect[0] + rect[2], 16):
        for by in range(rect[1], rect[1] + rect[3], 16):
            commands += [cmd(0x7100, 0, 0, 0, 0, 0, bx, by), cmd(0x7004, 0)]
    return run_fill(drm, surface, media_state(MEDIA_FILL_KERNEL, 0x5A, surface), commands, rect, 0x5A)


def check_gpgpu_fill(drm, g):
    surface = Surface(128, 32, 1, R8, XTILE, 512)
    width, height = 96, 20
    commands = media_prologue(g, 2)
    commands.append(cmd(0x7105, 0, 0, 0, 1 << 30, 0, 0, width // 16, 0, 0, height, 0, 1, 0xFFFF, 0xFFFFFFFF))
    return run_fill(drm, surface, media_state(GPGPU_FILL_KERNEL, 0xC3, surface), commands, (0, 0, width, height),
                    0xC3)


def main():
    tap, descs = tap_with_i915(CHECKS)
    if descs is None:
        return tap.finish()
    with Drm() as drm:
        chip = drm.getparam(PARAM_CHIPSET_ID)
        g = Gen(9 if chip >> 8 == 0x19 else 8)  # Skylake's IDs are 0x19xx, Broadwell's 0x16xx
        tap.diag("chipset 0x%04x: GEN%d" % (chip, g.gen))
        tap.check(descs["copy-linear"], lambda: check_copy(drm, g, LINEAR, LINEAR))
        tap.check(descs["copy-x-to-y"], lambda: check_copy(drm, g, XTILE, YTILE))
        tap.check(descs["copy-y-to-x"], lambda: check_copy(drm, g, YTILE, XTILE))
        tap.check(descs["copy-r8"], lambda: check_copy(drm, g, YTILE, LINEAR, R8, 1))
        tap.check(descs["linear-blits"], lambda: check_chain(drm, g, [LINEAR] * 4))
        tap.check(descs["tiled-blits"], lambda: check_chain(drm, g, [XTILE, YTILE, LINEAR, YTILE, XTILE]))
        tap.check(descs["media-fill"], lambda: check_media_fill(drm, g))
        tap.check(descs["gpgpu-fill"], lambda: check_gpgpu_fill(drm, g))
    tap.check(descs["no-drm-warnings"], drm_warnings)
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print("# test_i915_render.py ran %.1f s" % (time.monotonic() - started))
    sys.exit(rc)
