#!/usr/bin/env python3
"""Decoding the screen: one 1920x1080 frame from the live planes through the GGTT, as
`devmodel inspect screen` does it, for a linear XRGB8888 plane (fbcon, dumb buffers), an
X-tiled one and a 64x64 ARGB cursor on top; then the PNG encoding of the frame.

The frame lives in guest RAM (a DMA window), its pages scattered in reverse order through the
GGTT as a shmem object's are; the pipe is lit through the registers i915 programs. Target:
a linear frame decoded in 5 ms or less.

Both decodes are measured: the compiled one (the blitter's C resolves and detiles the pages,
numpy converts and blends: display/decode_fast.py), which `inspect screen` and `devmodel view`
use when the accelerator is installed, and the Python one, its oracle. The target is judged on
the compiled one.

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

from devmodel import accel as accel_module  # noqa: E402
from devmodel.device.dma import PROT_READ, PROT_WRITE  # noqa: E402
from devmodel.testing import GuestMemory  # noqa: E402
from gen_vgpu import GenVgpu, Platform  # noqa: E402
from gen_vgpu.display.control import page_reader  # noqa: E402
from gen_vgpu.display.decode import FastPlanes, decode_screen  # noqa: E402
from gen_vgpu.display.decode_fast import FastDecode  # noqa: E402
from gen_vgpu.display.png import encode_png  # noqa: E402
from gen_vgpu.engine.blit_accel import BlitAccel, has_blit_accel  # noqa: E402
from gen_vgpu.mmio import display_regs as r  # noqa: E402

GGTT = 8 << 20
W, H = 1920, 1080
TARGET_MS = 5.0
SURF = 0x100000  # graphics address of the frame
CURSOR = 0x1000


def setup(platform: Platform = Platform.BDW) -> tuple[GenVgpu, GuestMemory]:
    dev = GenVgpu(platform)
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
    port = 1 if platform is Platform.BDW else 3  # the monitor's: DDI B on BDW, DDI D on SKL
    rf.write32(r.TRANS_DDI_FUNC_CTL, r.TRANS_DDI_FUNC_ENABLE | port << r.TRANS_DDI_PORT_SHIFT)
    rf.write32(r.PLANE_STRIDE, W * 4)
    rf.write32(r.PLANE_CTL, 1 << 31 | 6 << 26)  # enabled, XRGB8888, linear (BDW's encoding)
    rf.write32(r.PLANE_SIZE, (H - 1) << 16 | (W - 1))
    rf.write32(r.PLANE_SURF, SURF)  # latches at once: the pipe is off
    rf.write32(r.CURCNTR, 0x27)
    rf.write32(r.CURPOS, 500 << 16 | 700)
    rf.write32(r.CURBASE, CURSOR)
    rf.write32(r.TRANSCONF, r.TRANSCONF_ENABLE)
    return dev, mem


def measure(dev: GenVgpu, repeat: int, fast: FastPlanes | None) -> list[float]:
    page_of = page_reader(dev.ggtt, dev.dma)
    assert dev.display is not None
    out = []
    decode_screen(dev.display, page_of, fast)  # warm: the window table built, the heap grown
    for _ in range(repeat):
        t = time.perf_counter()
        frame = decode_screen(dev.display, page_of, fast)
        out.append((time.perf_counter() - t) * 1e3)
        assert (frame.width, frame.height) == (W, H)
    return out


def retile(dev: GenVgpu, ctl: int) -> None:
    """The plane's control changed with the pipe off (it latches at once), then the pipe on."""
    dev.registers.write32(r.TRANSCONF, 0)
    dev.registers.write32(r.PLANE_CTL, ctl)
    dev.registers.write32(r.PLANE_SURF, SURF)
    dev.registers.write32(r.TRANSCONF, r.TRANSCONF_ENABLE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeat = 3 if args.quick else args.repeat
    dev, _mem = setup()
    display = dev.display
    assert display is not None
    accel = accel_module.load(True)
    fast = None
    if accel is not None and has_blit_accel(accel):
        fast = FastDecode(BlitAccel(accel, dev.dma, dev.info.pte_ops), dev.ggtt)
    if fast is None:
        print("the compiled accelerator is not installed (ci/setup-python builds it): Python only")
    med = None
    for name, ctl in (("linear", 1 << 31 | 6 << 26), ("X-tiled", 1 << 31 | 6 << 26 | 1 << 10)):
        retile(dev, ctl)
        py = statistics.median(measure(dev, max(1, repeat // 4), None))
        line = f"decode 1920x1080 {name} XRGB8888 + 64x64 ARGB cursor: Python {py:.2f} ms"
        if fast is not None:
            times = measure(dev, repeat, fast)
            m = statistics.median(times)
            line += f", compiled median {m:.2f} ms (best {min(times):.2f} ms)"
            if name == "linear":
                med = m
        print(line)
    # Y tiling is SKL's (BDW's primary plane has none): the same pages as a Y-tiled surface.
    skl, _skl_mem = setup(Platform.SKL)
    accel_skl = None
    if accel is not None and fast is not None:
        accel_skl = FastDecode(BlitAccel(accel, skl.dma, skl.info.pte_ops), skl.ggtt)
    retile(skl, 1 << 31 | 4 << 24 | 4 << 10)
    skl.registers.write32(r.PLANE_STRIDE, W * 4 // 128)
    retile(skl, 1 << 31 | 4 << 24 | 4 << 10)
    py = statistics.median(measure(skl, max(1, repeat // 4), None))
    line = f"decode 1920x1080 Y-tiled XRGB8888 + cursor (SKL): Python {py:.2f} ms"
    if accel_skl is not None:
        line += f", compiled median {statistics.median(measure(skl, repeat, accel_skl)):.2f} ms"
    print(line)
    print(
        f"target {TARGET_MS:.0f} ms for the linear frame: "
        + ("not measured (no compiled decode)" if med is None else "met" if med <= TARGET_MS else "not met")
    )
    frame = decode_screen(display, page_reader(dev.ggtt, dev.dma), fast)
    t = time.perf_counter()
    png = encode_png(frame.width, frame.height, frame.pixels, level=1)
    print(f"PNG of that frame (zlib level 1): {(time.perf_counter() - t) * 1e3:.1f} ms, {len(png) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
