"""QEMU's own MMIO cost, the baseline for test_mmio_bench.py (run by bench/bench_guest_mmio.py,
not by the lane): the same loops on the BAR of QEMU's `edu` device, whose registers QEMU
emulates itself, so the difference to the vGPU's figures is what the device model and
vfio-user add. Writes go to offsets edu ignores and reads to its ID register; the figures are
"# bench NAME VALUE UNIT" diagnostics as test_mmio_bench.py prints them."""
# devmodel-guest: manual timeout=900
import sys

import gvtlib as g
import test_mmio_bench as mb

EDU = (0x1234, 0x11E8)
EDU_ID = 0x010000ED  # edu's register 0: version 1.0, "ed"


def main():
    n = g.cmdline_int("devmodel.bench_n", 20000)
    n_native = g.cmdline_int("devmodel.bench_native_n", 5 * n)
    rounds = g.cmdline_int("devmodel.bench_rounds", 3)
    tap = g.Tap(2)
    try:
        dev = g.find_device([EDU])
        dev.enable_memory()
        bar0 = dev.bar(0)
        native = mb.Native()
    except (g.TestError, OSError) as e:
        tap.bail("setup: %s" % e)
    regs = bar0.view("I")
    bar0_addr, anchor = mb.address(bar0.mm)
    tap.eq(regs[0], EDU_ID, "QEMU's edu device answers its ID register")
    mb.bench_posted_writes(regs, 256)
    mb.bench_reads(regs, 256)
    res: dict[str, list] = {}
    for _ in range(rounds):
        res.setdefault("posted_write", []).append(mb.bench_posted_writes(regs, n))
        res.setdefault("posted_write_native", []).append(mb.bench_native_writes(native, regs, bar0_addr, n_native))
        rate, lat = mb.bench_reads(regs, n)
        res.setdefault("read", []).append((rate,) + mb.stats(lat))
        rate, lat, _bad = mb.bench_pairs(regs, n)  # edu drops the writes: only the timing counts
        res.setdefault("pair", []).append((rate,) + mb.stats(lat))
    mb.out("posted_write", mb.median(res["posted_write"]), "writes/s")
    mb.out("posted_write_native", mb.median(res["posted_write_native"]), "writes/s")
    for k, name in enumerate(("read", "read_mean", "read_p50", "read_p99")):
        mb.out(name, mb.median([r[k] for r in res["read"]]), "reads/s" if k == 0 else "us")
    for k, name in enumerate(("pair", "pair_mean", "pair_p50", "pair_p99")):
        mb.out(name, mb.median([r[k] for r in res["pair"]]), "pairs/s" if k == 0 else "us")
    tap.ok(all(r[0] > 0 for r in res["read"]), "reads measured")
    del anchor
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
