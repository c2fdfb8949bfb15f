#!/usr/bin/env python3
"""fbcon's console through the aperture: a full 1024x768 redraw, and where its time goes.

Two parts:
1. **The device alone** (no QEMU, no guest): REGION_WRITE_MULTI batches as QEMU sends them
   when its posted writes back up (200 entries each), decoded, checked and applied as the
   dispatcher does it, in two shapes: fbcon's glyph rows (8 pixels of 4 bytes, then the next
   row 4 KiB on) and a frame copy (contiguous 8-byte stores). Entries per second.
2. **The guest** (QEMU TCG, the i915 image, the display on): guest-tests/guest/
   test_console_bench.py times a full console redraw (128 x 48 characters) and a 3 MiB frame
   copied into /dev/fb0, each ended by a read through the aperture, which waits for every
   posted write before it. The device's message counts of the boot come from its log.

Target: a full console redraw in 1 s or less.

Run: python bench/bench_console.py [--rounds R] [--platform bdw|skl] [--quick] [--device-only]
"""

from __future__ import annotations

import argparse
import re
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins"), str(ROOT / "guest-tests")]

from devmodel.device.dma import PROT_READ, PROT_WRITE  # noqa: E402
from devmodel.testing import GuestMemory  # noqa: E402
from devmodel.vfio_user import messages as m  # noqa: E402
from devmodel.vfio_user.constants import WRITE_MULTI_MAX_COUNT  # noqa: E402
from devmodel.vfio_user.layouts import WRITE_MULTI_ENTRY  # noqa: E402
from gen_vgpu import GenVgpu  # noqa: E402
from gen_vgpu.device import APERTURE_REGION  # noqa: E402
from gen_vgpu.mmio import regs  # noqa: E402

SCRIPT = "console_bench"
TARGET_S = 1.0
BENCH_LINE = re.compile(r"^# bench (\S+) (\S+) (\S+)$")
CLIENT_GONE = re.compile(r"client gone \((\d+) requests, (\d+) errors, (\d+) posted\)")


def batch(offsets: list[int], size: int) -> bytes:
    out = [struct.pack("<Q", len(offsets))]
    for k, off in enumerate(offsets):
        out.append(WRITE_MULTI_ENTRY.pack(off, APERTURE_REGION, size, (k * 0x01010101) & ((1 << (8 * size)) - 1)))
    return b"".join(out)


def device_rate(shape: str, messages: int) -> float:
    """Aperture entries per second through decode, check and apply (the dispatcher's steps)."""
    dev = GenVgpu()
    mem = GuestMemory((1024 + 8) * 4096)
    try:
        dev.dma.add(0, mem.size, PROT_READ | PROT_WRITE, mem.dup_fd(), 0)
        for i in range(1024):  # the aperture's first 4 MiB onto guest RAM
            dev.region_write(0, regs.GGTT_OFFSET + 8 * i, ((i + 1) << 12 | 1).to_bytes(8, "little"))
        n = WRITE_MULTI_MAX_COUNT
        if shape == "glyph":  # 8 pixels a row, 25 rows of a glyph column per batch
            payloads = [batch([(j % 100) * 32 + (k // 8) * 4096 + (k % 8) * 4 for k in range(n)], 4) for j in range(50)]
        else:
            payloads = [batch([j * n * 8 + k * 8 for k in range(n)], 8) for j in range(50)]
        t0 = time.perf_counter()
        for i in range(messages):
            writes = m.decode_write_multi(payloads[i % len(payloads)], [])
            ends: dict[int, int] = {}
            for offset, region, data in writes:
                ends[region] = max(ends.get(region, 0), offset + len(data))
            for region, end in ends.items():
                dev.check_write(region, 0, end)
            dev.region_write_multi(writes)
        return messages * n / (time.perf_counter() - t0)
    finally:
        mem.close()


def guest(args: argparse.Namespace) -> dict[str, float]:
    import harness

    out = harness.output_dir("bench-console/%s" % args.platform)
    timeout = harness.script_options(SCRIPT).get("timeout", 900.0)
    dev = harness.DeviceModel(out, platform=args.platform, log_level="info", display="dp").start()
    try:
        result = harness.run_guest(
            [SCRIPT], out, device=dev, timeout=timeout, append="devmodel.bench_rounds=%d" % args.rounds
        )
    finally:
        dev.stop()
    section = result.sections.get(SCRIPT)
    problems = result.problems(SCRIPT)
    if problems or section is None:
        raise SystemExit("the guest script failed: %s (logs in %s)" % ("; ".join(problems), out))
    figures = {}
    for line in section.lines:
        hit = BENCH_LINE.match(line)
        if hit:
            figures[hit.group(1)] = float(hit.group(2))
    gone = list(CLIENT_GONE.finditer(dev.log_text()))
    if gone:
        figures["msgs"], figures["posted"] = float(gone[-1].group(1)), float(gone[-1].group(3))
    timeouts = (out / "qemu.log").read_text(errors="replace").count("timed out waiting for reply")
    figures["qemu_timeouts"] = float(timeouts)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="redraws and frames in the guest (median reported)")
    ap.add_argument("--platform", choices=["bdw", "skl"], default="bdw")
    ap.add_argument("--device-only", action="store_true", help="skip the guest boot")
    ap.add_argument("--quick", action="store_true", help="a short device part only (checks the benchmark works)")
    args = ap.parse_args()
    messages = 50 if args.quick else 2000
    for shape, label in (("glyph", "glyph rows, 4-byte stores"), ("frame", "frame copy, 8-byte stores")):
        rate = device_rate(shape, messages)
        print(f"device alone, aperture WRITE_MULTI ({label}): {rate / 1e6:.2f} M entries/s, {1e6 / rate:.2f} us each")
    if args.quick or args.device_only:
        return 0
    f = guest(args)
    redraw = f.get("console_redraw")
    print(
        f"guest ({args.platform}): full console redraw {redraw:.3f} s, 3 MiB frame into /dev/fb0 {f['fb_frame']:.3f} s"
    )
    print(
        f"  the boot: {f.get('msgs', 0):.0f} messages, {f.get('posted', 0):.0f} posted; "
        f"QEMU reply time-outs: {f['qemu_timeouts']:.0f}"
    )
    if redraw is not None:
        print(f"target {TARGET_S:.0f} s for a full redraw: {'met' if redraw <= TARGET_S else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
