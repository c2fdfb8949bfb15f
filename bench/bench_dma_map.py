#!/usr/bin/env python3
"""The DMA map's own costs, in process (no socket): what a DMA_MAP/DMA_UNMAP pair costs with
and without an fd, a page lookup for reading and for writing, the frame allocator with many
live windows, and how many one-page windows of scattered file offsets (a vIOMMU guest) can be
mapped before the kernel's mapping count (vm.max_map_count) runs out.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from devmodel.device.dma import PAGE_SIZE, DmaMap  # noqa: E402
from devmodel.device.frames import ExtentAllocator  # noqa: E402
from devmodel.errors import DevModelError  # noqa: E402
from devmodel.testing import GuestMemory  # noqa: E402

RW = 3


def rate(n: int, fn: Callable[[int], None]) -> float:
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def map_unmap(dma: DmaMap, mem: GuestMemory | None, size: int) -> Callable[[int], None]:
    def run(n: int) -> None:
        for i in range(n):
            off = (i * PAGE_SIZE) % (mem.size - size + PAGE_SIZE) if mem else 0
            dma.add(0x100000000, size, RW, mem.dup_fd() if mem else None, off)
            dma.remove_range(0x100000000, size)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--windows", type=int, default=65535, help="one-page windows to try to map at once")
    ap.add_argument("--quick", action="store_true", help="one short pass: checks the benchmark works")
    args = ap.parse_args()
    pairs, lookups, swaps = (200, 5000, 2000) if args.quick else (20000, 500000, 20000)
    if args.quick:
        args.windows = min(args.windows, 1000)
    with GuestMemory(256 << 20) as mem:
        dma = DmaMap()
        print(f"map+unmap pair, 4 KiB window with fd:   {rate(pairs, map_unmap(dma, mem, PAGE_SIZE)):10,.0f}/s")
        print(f"map+unmap pair, 16 MiB window with fd:  {rate(pairs, map_unmap(dma, mem, 16 << 20)):10,.0f}/s")
        print(f"map+unmap pair, 8 TiB window, no fd:    {rate(pairs, map_unmap(dma, None, 1 << 43)):10,.0f}/s")
        w = dma.add(0, mem.size, RW, mem.dup_fd(), 0)
        hfns = [w.hfn_base + random.randrange(w.page_count) for _ in range(1000)]

        def pages(write: bool) -> Callable[[int], None]:
            def run(n: int) -> None:
                for i in range(n):
                    dma.page(hfns[i % 1000], write)

            return run

        print(f"page() for reading (read-only view):    {rate(lookups, pages(False)):10,.0f}/s")
        print(f"page() for writing:                     {rate(lookups, pages(True)):10,.0f}/s")
        dma.remove_all()

        # The allocator with its free list at its largest: every other run of 65535 freed.
        a = ExtentAllocator(1, 1 << 33)
        runs = [a.alloc(1) for _ in range(131070)]
        for r in runs[::2]:
            a.free(r, 1)
        t = time.perf_counter()
        for r in runs[1::2][:swaps]:
            a.free(r, 1)
            a.alloc(1)
        dt = time.perf_counter() - t
        print(f"allocator free+alloc, {a.extents:,} free extents: {swaps / dt:10,.0f}/s")

        # vIOMMU style: one page per window, scattered offsets, all live at once.
        dma = DmaMap()
        offsets = random.Random(1).sample(range(mem.size // PAGE_SIZE), min(args.windows, mem.size // PAGE_SIZE))
        t = time.perf_counter()
        mapped = 0
        error = ""
        for i, page in enumerate(offsets):
            fd = mem.dup_fd()
            try:
                dma.add(i * PAGE_SIZE, PAGE_SIZE, RW, fd, page * PAGE_SIZE)
            except DevModelError as exc:
                os.close(fd)
                error = f" (stopped: {exc}, errno {exc.errno})"
                break
            mapped += 1
        dt = time.perf_counter() - t
        print(f"one-page windows mapped at once: {mapped:,} of {len(offsets):,} in {dt:.2f} s{error}")
        t = time.perf_counter()
        dma.remove_all()
        print(f"unmap of all of them: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main()
