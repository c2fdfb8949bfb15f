#!/usr/bin/env python3
"""The GGTT's bookkeeping under an i915-style full clear, then DMA_UNMAP and DMA_MAP.

i915 points every unused GGTT entry at one scratch page in guest RAM, so after probe all
1,048,576 entries hold the same GFN inside the RAM window. The script does that clear through
``region_write_multi`` in QEMU-sized batches (200 writes), then unmaps the RAM window (every
entry falls back to scratch and becomes "unbacked") and maps it again (every entry revives).
It prints the time of each step and the memory the GGTT holds (tracemalloc), and repeats the
unmap/map with two harder layouts: every entry a distinct page, and entries alternating
between two windows (the most runs an unmap can meet).

Run: python bench/bench_ggtt.py [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from devmodel.device.dma import PROT_READ, PROT_WRITE  # noqa: E402
from devmodel.testing import GuestMemory  # noqa: E402
from devmodel.vfio_user.constants import WRITE_MULTI_MAX_COUNT  # noqa: E402
from gen_vgpu import GenVgpu  # noqa: E402
from gen_vgpu.gtt.ggtt import GGTT_ENTRY_COUNT  # noqa: E402

GGTT = 8 << 20
RW = PROT_READ | PROT_WRITE
MiB = 1 << 20
RAM = 64 * MiB  # two windows of 32 MiB: [0, 32 MiB) and [32 MiB, 64 MiB)
HALF = RAM // 2
SCRATCH_GFN = 0x123  # i915's scratch page, somewhere in the low window


def fill(dev: GenVgpu, entry_of: Callable[[int], int]) -> float:
    """Write every GGTT entry in WRITE_MULTI batches; returns seconds."""
    t0 = time.perf_counter()
    batch: list[tuple[int, int, bytes]] = []
    for i in range(GGTT_ENTRY_COUNT):
        batch.append((GGTT + 8 * i, 0, entry_of(i).to_bytes(8, "little")))
        if len(batch) == WRITE_MULTI_MAX_COUNT:
            dev.region_write_multi(batch)
            batch = []
    if batch:
        dev.region_write_multi(batch)
    return time.perf_counter() - t0


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def unmap(dev: GenVgpu, window: tuple[int, int]) -> None:
    """What the DMA_UNMAP handler does."""
    dev.quiesce()
    dev.dma.remove_range(*window)


def remap(dev: GenVgpu, mem: GuestMemory, window: tuple[int, int]) -> None:
    """What the DMA_MAP handler does."""
    dev.quiesce()
    dev.dma.add(window[0], window[1], RW, mem.dup_fd(), window[0])


class Run:
    """One pass over a scenario: fill, then unmap/map pairs of the victim window."""

    def __init__(self, entry_of: Callable[[int], int], victim: tuple[int, int], repeat: int, trace: bool) -> None:
        self.trace = trace
        self.mem_points: dict[str, int] = {}
        self.unmaps: list[float] = []
        self.maps: list[float] = []
        if trace:
            tracemalloc.start()
        base = self._traced()
        dev = GenVgpu()
        self._mark("created", base)
        mem = GuestMemory(RAM)
        try:
            dev.dma.add(0, HALF, RW, mem.dup_fd(), 0)
            dev.dma.add(HALF, HALF, RW, mem.dup_fd(), HALF)
            self.fill = fill(dev, entry_of)
            self._mark("filled", base)
            self.peak = 0
            for _ in range(repeat):
                if trace:
                    tracemalloc.reset_peak()
                before = self._traced()
                self.unmaps.append(timed(lambda: unmap(dev, victim)))
                if trace:
                    self.peak = max(self.peak, tracemalloc.get_traced_memory()[1] - before)
                self._mark("unmapped", base)
                self.maps.append(timed(lambda: remap(dev, mem, victim)))
            self._mark("revived", base)
            probe = [0, GGTT_ENTRY_COUNT // 2, GGTT_ENTRY_COUNT - 1]
            self.live = all(dev.ggtt.shadow_hfn(i) is not None for i in probe)
            dev.dma.remove_all()
        finally:
            mem.close()
            if trace:
                tracemalloc.stop()

    def _traced(self) -> int:
        if not self.trace:
            return 0
        gc.collect()
        return tracemalloc.get_traced_memory()[0]

    def _mark(self, name: str, base: int) -> None:
        self.mem_points[name] = self._traced() - base


def scenario(name: str, entry_of: Callable[[int], int], victim: tuple[int, int], repeat: int) -> None:
    # Timing without tracemalloc (it slows every allocation), memory in a second, traced pass.
    t = Run(entry_of, victim, repeat, trace=False)
    m_run = Run(entry_of, victim, 1, trace=True)
    m = m_run.mem_points
    print(f"{name}:")
    print(
        f"  fill of {GGTT_ENTRY_COUNT} entries via region_write_multi: {t.fill:.2f} s "
        f"({GGTT_ENTRY_COUNT / t.fill / 1e3:.0f}k entries/s)"
    )
    print(
        f"  GGTT memory: {m['created'] / MiB:.1f} MiB at creation, {m['filled'] / MiB:.1f} MiB after the fill, "
        f"{m['unmapped'] / MiB:.1f} MiB after the unmap, {m['revived'] / MiB:.1f} MiB after the re-map "
        f"(its guest and shadow arrays are 16.0 MiB)"
    )
    print(
        f"  DMA_UNMAP: median {statistics.median(t.unmaps) * 1e3:.1f} ms, max {max(t.unmaps) * 1e3:.1f} ms "
        f"(transient peak {m_run.peak / MiB:.1f} MiB)"
    )
    print(
        f"  DMA_MAP (revives the entries): median {statistics.median(t.maps) * 1e3:.1f} ms, "
        f"max {max(t.maps) * 1e3:.1f} ms; entries live again: {t.live}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="unmap/map pairs per scenario")
    ap.add_argument("--quick", action="store_true", help="the i915-style clear only")
    args = ap.parse_args()
    scenario(
        "i915-style clear (every entry -> one scratch GFN)", lambda i: (SCRATCH_GFN << 12) | 1, (0, HALF), args.repeat
    )
    if args.quick:
        return
    pages = HALF >> 12
    scenario(
        "distinct pages (entry i -> GFN i mod 8192, one window)",
        lambda i: ((i % pages) << 12) | 1,
        (0, HALF),
        args.repeat,
    )
    scenario(
        "alternating windows (even entries low window, odd high)",
        lambda i: (((i & 1) * pages + (i >> 1) % pages) << 12) | 1,
        (0, HALF),
        args.repeat,
    )


if __name__ == "__main__":
    main()
