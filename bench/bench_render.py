#!/usr/bin/env python3
"""What a draw costs: a 1024x1024 render copy (B8G8R8A8, linear and Y-tiled) through the
render pipeline and the EU interpreter, on surfaces in a shadow PPGTT whose pages are in
reverse order in guest memory, run in loop-sized steps (0.25 ms) as the engine runs it.
Prints the seconds, pixels per second, the longest step, and whether the target (a
1024x1024 copy in at most 1 s) is met. Every pixel of the result is checked.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

import numpy as np  # noqa: E402

from devmodel.device.tasks import STEP_TIME  # noqa: E402
from gen_vgpu.gtt.mm import RootKind  # noqa: E402
from gen_vgpu.gtt.space import PpgttSpace, read, write  # noqa: E402
from gen_vgpu.render.pipeline import Pipeline  # noqa: E402
from tests.unit.gen_vgpu.engine_rig import Rig, Tree  # noqa: E402
from tests.unit.gen_vgpu.render_rig import copy_kernel, tile_offset  # noqa: E402
from tests.unit.gen_vgpu.test_render import BGRA, DST, HEAP, SRC, copy_setup  # noqa: E402

SIZE = 1024
TARGET = 1.0


class Writer:
    """copy_setup's memory interface over the context's address space."""

    def __init__(self, space: PpgttSpace) -> None:
        self.space = space

    def put(self, gma: int, data: bytes) -> None:
        write(self.space, gma, data)

    def dwords(self, gma: int, values: Sequence[int]) -> None:
        self.put(gma, np.array(values, dtype="<u4").tobytes())


def copy(space: PpgttSpace, tiling: int, size: int) -> tuple[float, float, int]:
    pitch = size * 4
    rng = np.random.default_rng(tiling)
    pixels = rng.integers(0, 256, size=(size, size, 4), dtype=np.uint8)
    xb = (np.arange(size)[None, :, None] * 4 + np.arange(4)[None, None, :]).repeat(size, 0)
    yy = np.arange(size)[:, None, None].repeat(size, 1).repeat(4, 2)
    offs = tile_offset(xb, yy, pitch, tiling).reshape(-1)
    image = np.zeros(pitch * size, dtype=np.uint8)
    image[offs] = pixels.reshape(-1)
    write(space, SRC, image.tobytes())
    write(space, DST, bytes(pitch * size))
    surf = (size, size, pitch, BGRA, tiling)
    cmds = copy_setup(Writer(space), 8, surf, surf, (0, 0, size, size, 0, 0), copy_kernel(8))
    p = Pipeline(space, 8)
    longest = 0.0
    steps = 0
    start = time.perf_counter()
    for c in cmds:
        job = p.command(c)
        while job is not None:
            t0 = time.perf_counter()
            more = job.step(time.monotonic() + STEP_TIME, time.monotonic)
            longest = max(longest, time.perf_counter() - t0)
            steps += 1
            if not more:
                break
    elapsed = time.perf_counter() - start
    got = np.frombuffer(read(space, DST, pitch * size), dtype=np.uint8)[offs].reshape(size, size, 4)
    if not (got == pixels).all():
        raise SystemExit(f"render copy tiling {tiling}: {(got != pixels).any(axis=2).sum()} pixels differ")
    return elapsed, longest, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one 256x256 copy (checks the benchmark works)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    size = 256 if args.quick else SIZE
    runs = 1 if args.quick else args.runs
    rig = Rig()
    try:
        tree = Tree(rig.guest, 4)
        tree.buffer(HEAP, 0x10000)
        tree.buffer(SRC, size * size * 4)
        tree.buffer(DST, size * size * 4)
        mm, resync = rig.dev.ppgtt.pin(RootKind.L4, (tree.roots[0],))
        resync.run()
        space = PpgttSpace(rig.dev.runner.walker, mm)
        for name, tiling in (("linear", 0), ("Y-tiled", 3)):
            results = sorted((copy(space, tiling, size) for _ in range(runs)), key=lambda r: r[0])
            elapsed, longest, steps = results[len(results) // 2]
            rate = size * size / elapsed
            verdict = "met" if elapsed <= TARGET else "not met"
            if args.quick:
                verdict = "(quick run: size too small to judge)"
            print(
                f"render copy {size}x{size} {name}: {elapsed:.3f} s, {rate / 1e6:.2f} Mpixel/s, "
                f"{steps} steps, longest step {longest * 1e3:.2f} ms; target <= {TARGET:.0f} s: {verdict}"
            )
        rig.dev.ppgtt.unpin(mm)
    finally:
        rig.close()


if __name__ == "__main__":
    main()
