#!/usr/bin/env python3
"""What the engines cost: workloads per second and submit-to-completion latency seen by a
host vfio-user client, the time of i915's null render state batch, and blit throughput next
to a plain memory copy of the same bytes.

- **Client**: the vGPU served by the real server (its loop in a thread), guest RAM a memfd the
  client maps with DMA_MAP. Setup (GGTT, a 4-level tree, a context) is done on the device; each
  submission is what a guest driver does: one MI_STORE_DATA_IMM into the ring in shared
  memory, the tail in the context image, four ELSP writes over the socket, then polling the
  status page's CSB write index in shared memory until the context's completion entry lands.
- **Null render state**: i915's record-defaults request (barriers, ctx-wa LRI, the GEN9 null
  render state as a GGTT batch, breadcrumbs) run on the device to idle, next to the same
  request with an empty batch.
- **Blits**: XY_COLOR_BLT and XY_SRC_COPY_BLT of a surface whose pages are in reverse order in
  guest memory (one run per 4 KiB page) and in order (one run), both shown,
  next to a memoryview fill/copy of the same number of bytes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from devmodel.testing import GuestMemory, VfioUserClient  # noqa: E402
from devmodel.vfio_user.connection import ServerOptions  # noqa: E402
from gen_vgpu import GenVgpu  # noqa: E402
from gen_vgpu.cmd.records import ColorBlt, SrcCopyBlt  # noqa: E402
from gen_vgpu.engine.blit import BlitJob  # noqa: E402
from gen_vgpu.engine.memory import PpgttSpace  # noqa: E402
from gen_vgpu.engines import EngineId, engine_by_id  # noqa: E402
from gen_vgpu.gtt.mm import RootKind  # noqa: E402
from gen_vgpu.mmio import engine_regs as er  # noqa: E402
from tests.integration.conftest import ServerThread  # noqa: E402
from tests.unit.gen_vgpu import cmd_streams as c  # noqa: E402
from tests.unit.gen_vgpu.engine_rig import GGTT_GPA, PAGE, RAM, Rig, Tree  # noqa: E402
from tests.unit.gen_vgpu.test_cmd_i915 import NULL_STATE, null_state_batch, request  # noqa: E402

RCS = engine_by_id(EngineId.RCS)
BCS = engine_by_id(EngineId.BCS)
BUF = 0x4000_0000
DONE = int(er.CsbStatus.ACTIVE_IDLE | er.CsbStatus.COMPLETE)


def median_of(runs: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(runs))


# --- the host client -----------------------------------------------------------------------


def client_submissions(n: int) -> tuple[float, float, float]:
    """(workloads per second, median latency µs, 99th percentile µs)."""
    mem = GuestMemory(RAM)
    with tempfile.TemporaryDirectory(prefix="devmodel-bench-") as d:
        path = os.path.join(d, "vgpu.sock")
        st = ServerThread(GenVgpu(), path, ServerOptions(write_multiple=True))
        client = VfioUserClient.connect(path, mem)
        try:
            client.negotiate()
            client.map_memory(mem)
            rig: Rig = st.call(lambda: Rig(dev=st.vgpu, mem=mem))
            tree = Tree(rig.guest, 4)
            (page,) = tree.buffer(BUF, PAGE)
            ctx = st.call(lambda: rig.context(RCS, tree))
            hws = rig.hws["rcs"]
            index_gpa = GGTT_GPA + hws + er.HWSP_CSB_WRITE_INDEX_DWORD * 4
            elsp = RCS.reg(er.ELSP)
            latencies = []
            t0 = time.perf_counter()
            for i in range(n):
                rig.emit(ctx, c.sdi(BUF, i))  # guest memory: the client's own writes
                lo, hi = rig.descriptor(ctx)
                before = mem.read(index_gpa, 4)
                start = time.perf_counter()
                for value in (0, 0, hi, lo):
                    client.region_write(0, elsp, value.to_bytes(4, "little"))
                # Two CSB entries per submission (idle-to-active, then completion): the index
                # moves twice; wait for the completion entry in the status page.
                while True:
                    raw = mem.read(index_gpa, 4)
                    if raw != before:
                        slot = GGTT_GPA + hws + (er.HWSP_CSB_DWORD + 2 * int.from_bytes(raw, "little")) * 4
                        if int.from_bytes(mem.read(slot, 4), "little") == DONE:
                            break
                latencies.append(time.perf_counter() - start)
            elapsed = time.perf_counter() - t0
            assert int.from_bytes(mem.read(page, 4), "little") == n - 1
        finally:
            client.close()
            st.stop()
            mem.close()
    latencies.sort()
    return n / elapsed, latencies[len(latencies) // 2] * 1e6, latencies[int(len(latencies) * 0.99)] * 1e6


# --- on the device ------------------------------------------------------------------------


def null_render_state(runs: int) -> tuple[float, float]:
    """(ms for the record-defaults request with the null render state, ms with an empty batch)."""
    rig = Rig()
    try:
        tree = Tree(rig.guest, 4)
        shape, _, _ = NULL_STATE[9]
        batch = rig.gm_alloc(4 * PAGE)
        rig.gm_write(batch, null_state_batch(shape).tobytes())
        empty = rig.gm_alloc(PAGE)
        rig.gm_dwords(empty, [c.MI_BATCH_BUFFER_END, 0])
        ctx = rig.context(RCS, tree)

        def one(address: int) -> float:
            rig.emit(ctx, request(EngineId.RCS, 9, address, secure=True))
            start = time.perf_counter()
            rig.elsp(ctx)
            rig.run()
            return (time.perf_counter() - start) * 1e3

        full = median_of(runs, lambda: one(batch))
        base = median_of(runs, lambda: one(empty))
        assert rig.dev.runner.counters.rejected == 0 and rig.dev.runner.counters.completed == 2 * runs
        return full, base
    finally:
        rig.close()


def blits(size: int, runs: int, shuffle: bool) -> dict[str, float]:
    """GB/s for fill and copy through the engine, and for the plain memoryview equivalents."""
    rig = Rig()
    try:
        tree = Tree(rig.guest, 4)
        tree.buffer(BUF, size, shuffle)
        tree.buffer(BUF + 0x1000_0000, size, shuffle)
        ctx = rig.context(BCS, tree)
        rows = size // 4096

        def engine(cmds: list[int]) -> float:
            rig.emit(ctx, cmds)
            start = time.perf_counter()
            rig.elsp(ctx)
            rig.run()
            return size / (time.perf_counter() - start) / 1e9

        fill = median_of(runs, lambda: engine(c.color_blt(BUF, 4096, 0, 0, 1024, rows, 0x11223344)))
        copy = median_of(
            runs, lambda: engine(c.src_copy_blt(BUF + 0x1000_0000, 4096, 0, 0, 1024, rows, BUF, 4096, 0, 0))
        )
        # The blit alone, without the submission around it: the runner's own BlitJob.
        mm, resync = rig.dev.ppgtt.pin(RootKind.L4, (tree.roots[0],))
        resync.run()
        space = PpgttSpace(rig.dev.runner.walker, mm)

        def job(rec: ColorBlt | SrcCopyBlt) -> float:
            start = time.perf_counter()
            BlitJob(space, rec).run()
            return size / (time.perf_counter() - start) / 1e9

        job_fill = median_of(runs, lambda: job(ColorBlt(BUF, 4096, 0, 0, 1024, rows, 0x11223344, 0xF0)))
        job_copy = median_of(
            runs, lambda: job(SrcCopyBlt(BUF + 0x1000_0000, 4096, 0, 0, 1024, rows, BUF, 4096, 0, 0, 0xCC))
        )
        rig.dev.ppgtt.unpin(mm)
        view = memoryview(rig.mem.mm)
        src, dst = view[1 << 20 : (1 << 20) + size], view[(1 << 20) + size : (1 << 20) + 2 * size]
        pattern = struct.pack("<I", 0x11223344) * (size // 4)

        def plain(fn: Callable[[], None]) -> float:
            start = time.perf_counter()
            fn()
            return size / (time.perf_counter() - start) / 1e9

        def do_fill() -> None:
            dst[:] = pattern

        def do_copy() -> None:
            dst[:] = src

        mem_fill = median_of(runs, lambda: plain(do_fill))
        mem_copy = median_of(runs, lambda: plain(do_copy))
        src.release()
        dst.release()
        view.release()
        return {
            "fill": fill,
            "copy": copy,
            "job_fill": job_fill,
            "job_copy": job_copy,
            "mem_fill": mem_fill,
            "mem_copy": mem_copy,
        }
    finally:
        rig.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one short pass (checks the benchmark works)")
    args = ap.parse_args()
    n, runs, size = (50, 3, 1 << 20) if args.quick else (2000, 9, 8 << 20)

    rate, p50, p99 = client_submissions(n)
    print(f"host client, {n} RCS submissions of one MI_STORE_DATA_IMM (ELSP over vfio-user, CSB polled)")
    print(f"  {rate:8.0f} workloads/s   submit-to-completion median {p50:7.0f} µs   99th {p99:7.0f} µs")
    full, base = null_render_state(runs)
    print(f"i915 record-defaults request, GEN9 null render state as a GGTT batch: {full:.2f} ms")
    print(f"  the same request with an empty batch: {base:.2f} ms (the batch costs {full - base:.2f} ms)")
    for shuffle in (False, True):
        r = blits(size, runs, shuffle)
        order = "pages reversed (4 KiB runs)" if shuffle else "pages in order (one run)"
        print(f"blits of {size >> 20} MiB, 32 bpp, pitch 4096, {order}:")
        for name, kind, plain in (("XY_COLOR_BLT", "fill", "mem_fill"), ("XY_SRC_COPY_BLT", "copy", "mem_copy")):
            print(
                f"  {name:15} blit {r['job_' + kind]:6.2f} GB/s ({r['job_' + kind] / r[plain]:.2f}x)"
                f"   whole workload {r[kind]:6.2f} GB/s ({r[kind] / r[plain]:.2f}x)"
                f"   memory {kind} {r[plain]:6.2f} GB/s"
            )


if __name__ == "__main__":
    main()
