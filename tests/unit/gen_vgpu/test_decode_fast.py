"""The screen decode's fast path (display/decode_fast.py: the blitter's C and numpy) draws
exactly what the Python decode (display/decode.py, the oracle) draws: every format, linear,
X- and Y-tiled planes with offsets, a plane smaller than the pipe, scratch pages, and the
cursor's blend (transparent, opaque and partial alpha, partly off the screen)."""

from __future__ import annotations

import random

import pytest

from devmodel import accel as accel_module
from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.testing import GuestMemory
from gen_vgpu import GenVgpu, Platform
from gen_vgpu.display.control import page_reader
from gen_vgpu.display.decode import decode_screen
from gen_vgpu.display.decode_fast import FastDecode
from gen_vgpu.engine.blit_accel import BlitAccel, has_blit_accel
from gen_vgpu.mmio import display_regs as r

from .test_display import GGTT, light_pipe_a

ACCEL = accel_module.load(True)
COMPILED = has_blit_accel(ACCEL)
W, H = 200, 70  # the pipe
STRIDE = 1024  # two X tiles, eight Y tiles a row
SURF = 0x100000
CURSOR = 0x40000
SURF_PAGES = STRIDE * 96 // 4096  # 96 rows: three rows of Y tiles
CURSOR_PAGES = 16  # 64 x 64 x 4

# (platform, the plane control's format bits, the decode's format name)
BDW_FORMATS = [
    (6 << 26, "xrgb8888"),
    (14 << 26, "xbgr8888"),
    (5 << 26, "rgb565"),
    (10 << 26, "xrgb2101010"),
    (8 << 26, "xbgr2101010"),
]
SKL_FORMATS = [
    (4 << 24, "xrgb8888"),
    (4 << 24 | 1 << 20, "xbgr8888"),
    (14 << 24, "rgb565"),
    (2 << 24, "xrgb2101010"),
    (2 << 24 | 1 << 20, "xbgr2101010"),
    (4 << 24 | 1 << 4, "argb8888"),
]
CASES = [("bdw", bits, name, tiling) for bits, name in BDW_FORMATS for tiling in ("linear", "x")] + [
    ("skl", bits, name, tiling) for bits, name in SKL_FORMATS for tiling in ("linear", "x", "y")
]


def setup(platform: str, seed: int) -> tuple[GenVgpu, GuestMemory]:
    """A vGPU whose surface and cursor pages are scattered over guest RAM filled with random
    bytes; one surface page left unmapped (scratch: it reads as zeros)."""
    rng = random.Random(seed)
    dev = GenVgpu(Platform(platform))
    total = SURF_PAGES + CURSOR_PAGES
    mem = GuestMemory((total + 8) * 4096)
    mem.write(0, rng.randbytes(mem.size))
    dev.dma.add(0, mem.size, PROT_READ | PROT_WRITE, mem.dup_fd(), 0)
    frames = list(range(1, total + 1))
    rng.shuffle(frames)
    for i in range(SURF_PAGES):
        if i != 5:
            dev.region_write(0, GGTT + 8 * ((SURF >> 12) + i), (frames[i] << 12 | 1).to_bytes(8, "little"))
    for i in range(CURSOR_PAGES):
        gfn = frames[SURF_PAGES + i]
        dev.region_write(0, GGTT + 8 * ((CURSOR >> 12) + i), (gfn << 12 | 1).to_bytes(8, "little"))
    # The cursor's alpha: rows of transparent, opaque and partial pixels.
    for y in range(64):
        for x in range(0, 64, 8):
            a = (0, 255, rng.randrange(1, 255))[(x // 8 + y) % 3]
            gfn = frames[SURF_PAGES + (y * 256 + x * 4) // 4096]
            mem.write((gfn << 12) + (y * 256 + x * 4) % 4096 + 3, bytes([a]))
    return dev, mem


def both(dev: GenVgpu) -> tuple[bytes, bytes]:
    assert dev.display is not None and ACCEL is not None
    page_of = page_reader(dev.ggtt, dev.dma)
    oracle = decode_screen(dev.display, page_of)
    fast = decode_screen(dev.display, page_of, FastDecode(BlitAccel(ACCEL, dev.dma, dev.info.pte_ops), dev.ggtt))
    assert (oracle.width, oracle.height) == (fast.width, fast.height) == (W, H)
    return bytes(oracle.pixels), bytes(fast.pixels)


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
@pytest.mark.parametrize(("platform", "bits", "fmt", "tiling"), CASES, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES])
@pytest.mark.parametrize("cursor_pos", [(30, 20), (-20, -10), (W - 40, H - 30)], ids=["inside", "top-left", "edge"])
def test_fast_decode_draws_what_python_draws(
    platform: str, bits: int, fmt: str, tiling: str, cursor_pos: tuple[int, int]
) -> None:
    dev, mem = setup(platform, hash((platform, bits, tiling)) & 0xFFFF)
    try:
        rf = dev.registers
        light_pipe_a(dev)
        rf.write32(r.TRANSCONF, 0)  # off while programming: the planes latch at once
        rf.write32(r.PIPESRC, (W - 1) << 16 | (H - 1))
        cpp = 2 if fmt == "rgb565" else 4
        x_off, y_off = 8, 5
        if platform == "bdw":
            rf.write32(r.PLANE_CTL, 1 << 31 | bits | (1 << 10 if tiling == "x" else 0))
            rf.write32(r.PLANE_STRIDE, STRIDE)
        else:
            tile_bits = {"linear": 0, "x": 1, "y": 4}[tiling]
            rf.write32(r.PLANE_CTL, 1 << 31 | bits | tile_bits << 10)
            rf.write32(r.PLANE_STRIDE, STRIDE // {"linear": 64, "x": 512, "y": 128}[tiling])
            rf.write32(r.PLANE_SIZE, (H - 11) << 16 | (W - 21))  # smaller than the pipe
            rf.write32(r.PLANE_POS, 4 << 16 | 12)
        assert (x_off + W) * cpp <= STRIDE
        rf.write32(r.PLANE_OFFSET, y_off << 16 | x_off)
        rf.write32(r.PLANE_SURF, SURF)
        cx, cy = cursor_pos
        rf.write32(r.CURCNTR, 0x27)
        rf.write32(r.CURPOS, (1 << 31 | -cy << 16 if cy < 0 else cy << 16) | (1 << 15 | -cx if cx < 0 else cx))
        rf.write32(r.CURBASE, CURSOR)
        rf.write32(r.TRANSCONF, r.TRANSCONF_ENABLE)
        oracle, fast = both(dev)
        assert any(oracle), "the oracle drew nothing"
        if oracle != fast:
            at = next(i for i in range(len(oracle)) if oracle[i] != fast[i]) // 4
            raise AssertionError(f"first difference at pixel ({at % W}, {at // W})")
    finally:
        mem.close()
