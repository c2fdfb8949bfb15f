#!/usr/bin/env python3
"""Decoding the screen: one 1920x1080 frame from the live planes through the GGTT, as
`devmodel inspect screen` does it, for a linear XRGB8888 plane (fbcon, dumb buffers), an
X-tiled one and a 64x64 ARGB cursor on top; then the PNG encoding of the frame.

The frame lives in guest RAM (a DMA window), its pages scattered in reverse order through the
GGTT as a shmem object's are; the pipe is lit through the registers i915 programs. Target:
a linear frame decoded in 5 ms or less.

Run: python bench/bench_display.py [--repeat N] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from devmodel.device.dma import PROT_READ, PROT_WRITE  # noqa: E402
from devmodel.testing import GuestMemory  # noqa: E402
from gen_vgpu import GenVgpu  # noqa: E402
from gen_vgpu.display.control import page_reader  # noqa: E402
from gen_vgpu.display.decode import decode_screen  # noqa: E402
from gen_vgpu.display.png import encode_png  # noqa: E402
from gen_vgpu.mmio import display_regs as r  # noqa: E402

GGTT = 8 << 20
W, H = 1920, 1080
TARGET_MS = 5.0
SURF = 0x100000  # graphics address of the frame
CURSOR = 0x1000


def setup() -> tuple[GenVgpu, GuestMemory]:
    dev = GenVgpu()
    pages = (W * H * 4 + 4095) // 4096
    mem = GuestMemory((pages + 64) * 4096)
    dev.dma.add(0, mem.size, PROT_READ | PROT_WRITE, mem.dup_fd(), 0)
    for i in range(pages):  # graphics page i -> guest frame (pages - i): scattered, reversed
        dev.region_write(0, GGTT + 8 * ((SURF >> 12) + i), ((pages - i) << 12 | 1).to_bytes(8, "little"))
    dev.region_write(0, GGTT + 8 * (CURSOR >> 12) + 0, ((pages + 8) << 12 | 1).to_bytes(8, "little"))
    for p in range(pages):
        mem.write((pages - p) << 12, bytes([p & 0xFF, (p >> 8) & 0xFF, 0x80, 0]) * 1024)
    mem.write((pages + 8) << 12, bytes([0xFF, 0xFF, 0xFF, 0x80]) * 1024)
    rf = dev.registers
    rf.write32(r.PIPESRC, (W - 1) << 16 | (H - 1))
    rf.write32(r.TRANS_DDI_FUNC_CTL, r.TRANS_DDI_FUNC_ENABLE | 1 << r.TRANS_DDI_PORT_SHIFT)  # port B
    rf.write32(r.PLANE_STRIDE, W * 4)
    rf.write32(r.PLANE_CTL, 1 << 31 | 6 << 26)  # enabled, XRGB8888, linear
    rf.write32(r.PLANE_SURF, SURF)  # latches at once: the pipe is off
    rf.write32(r.CURCNTR, 0x27)
    rf.write32(r.CURPOS, 500 << 16 | 700)
    rf.write32(r.CURBASE, CURSOR)
    rf.write32(r.TRANSCONF, r.TRANSCONF_ENABLE)
    return dev, mem


def measure(dev: GenVgpu, repeat: int) -> list[float]:
    page_of = page_reader(dev.ggtt, dev.dma)
    assert dev.display is not None
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        frame = decode_screen(dev.display, page_of)
        out.append((time.perf_counter() - t) * 1e3)
        assert (frame.width, frame.height) == (W, H)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeat = 3 if args.quick else args.repeat
    dev, _mem = setup()
    display = dev.display
    assert display is not None
    linear = measure(dev, repeat)
    med = statistics.median(linear)
    print(
        f"decode 1920x1080 linear XRGB8888 + 64x64 ARGB cursor: median {med:.2f} ms, best {min(linear):.2f} ms "
        f"(target {TARGET_MS:.0f} ms: {'met' if med <= TARGET_MS else 'not met'})"
    )
    frame = decode_screen(display, page_reader(dev.ggtt, dev.dma))
    t = time.perf_counter()
    png = encode_png(frame.width, frame.height, frame.pixels, level=1)
    print(f"PNG of that frame (zlib level 1): {(time.perf_counter() - t) * 1e3:.1f} ms, {len(png) // 1024} KiB")
    dev.registers.write32(r.PLANE_CTL, 1 << 31 | 6 << 26 | 1 << 10)  # X-tiled
    dev.registers.write32(r.PLANE_STRIDE, W * 4)
    dev.registers.write32(r.TRANSCONF, 0)
    dev.registers.write32(r.PLANE_SURF, SURF)
    dev.registers.write32(r.TRANSCONF, r.TRANSCONF_ENABLE)
    xt = measure(dev, max(1, repeat // 4))
    print(f"decode 1920x1080 X-tiled XRGB8888: median {statistics.median(xt):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
