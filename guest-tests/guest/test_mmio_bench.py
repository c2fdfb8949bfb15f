"""MMIO timing from inside the guest (run by bench/bench_guest_mmio.py, not by the lane).

Measures, each over N accesses and ROUNDS rounds (the median round is reported):
- posted 4-byte BAR0 register writes followed by one read: writes/s;
- 4-byte BAR0 reads, each timed: mean/p50/p99 microseconds;
- 8-byte GGTT entry writes followed by one read: GGTT updates/s;
- write-then-read pairs on one register, each pair timed: mean/p50/p99 microseconds;
- bursts of 16 posted writes and one read, each burst timed.
Figures are TAP diagnostics "# bench NAME VALUE UNIT"; the ok lines check that what was
written arrived. Kernel command line: devmodel.bench_n=N (default 20000),
devmodel.bench_rounds=R (default 3).
"""
# devmodel-guest: manual timeout=900
import ctypes
import sys
import time

import gvtlib as g

REG_BASE = 0x5000  # unlisted registers (no row of the register table declares one): plain storage
NREGS = 64
BURST = 16
GGTT_SPAN = 65536  # entries written round-robin (the aperture's part of the GGTT)


# x86-64 machine code (System V ABI) for store loops that run at the speed of the MMIO path,
# not of the Python interpreter:
# store32(uint32_t *p, uint64_t n, uint64_t mask): for i < n: p[i & mask] = i
STORE32 = bytes.fromhex(
    "31c0" "4885f6" "740f"            # xor eax,eax; test rsi,rsi; je ret
    "89c1" "21d1" "89048f"            # loop: mov ecx,eax; and ecx,edx; mov [rdi+rcx*4],eax
    "48ffc0" "4839f0" "72f1" "c3")    # inc rax; cmp rax,rsi; jb loop; ret
# store64(uint64_t *p, uint64_t n, uint64_t *table): for i < n: p[i & 0xffff] = table[i & 1023]
STORE64 = bytes.fromhex(
    "31c0" "4885f6" "741b"            # xor eax,eax; test rsi,rsi; je ret
    "89c1" "81e1ff030000" "4c8b04ca"  # loop: mov ecx,eax; and ecx,1023; mov r8,[rdx+rcx*8]
    "0fb7c8" "4c8904cf"               # movzx ecx,ax; mov [rdi+rcx*8],r8
    "48ffc0" "4839f0" "72e5" "c3")    # inc rax; cmp rax,rsi; jb loop; ret


class Native:
    """The two store loops, callable."""

    def __init__(self):
        args = (ctypes.c_void_p, ctypes.c_uint64, ctypes.c_void_p)
        self.code = g.NativeCode((STORE32, args), (STORE64, args))
        self.store32, self.store64 = self.code.calls


def address(mm):
    """The address of an mmap (keep the returned anchor alive while it is used)."""
    anchor = ctypes.c_char.from_buffer(mm)
    return ctypes.addressof(anchor), anchor


def clocksource():
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            return f.read().strip()
    except OSError:
        return "?"


def stats(lat_ns):
    s = sorted(lat_ns)
    n = len(s)
    return sum(s) / n / 1000.0, s[n // 2] / 1000.0, s[min(n - 1, int(n * 0.99))] / 1000.0


def median(xs):
    s = sorted(xs)
    return s[len(s) // 2]


def bench_posted_writes(regs, n):
    base = REG_BASE // 4
    t0 = time.perf_counter_ns()
    for i in range(n):
        regs[base + (i & (NREGS - 1))] = i
    regs[base]  # orders every posted write before it
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def bench_native_writes(native, regs, bar0_addr, n):
    t0 = time.perf_counter_ns()
    native.store32(bar0_addr + REG_BASE, n, NREGS - 1)
    regs[REG_BASE // 4]
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def bench_native_ggtt(native, regs, bar0_addr, table_addr, n):
    t0 = time.perf_counter_ns()
    native.store64(bar0_addr + g.GGTT_BASE, n, table_addr)
    regs[REG_BASE // 4]
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def bench_reads(regs, n):
    idx = g.PVINFO_BASE // 4
    clock = time.perf_counter_ns
    lat = [0] * n
    t0 = clock()
    for i in range(n):
        t = clock()
        regs[idx]
        lat[i] = clock() - t
    return n / ((clock() - t0) / 1e9), lat


def bench_ggtt(q, entries, n):
    base = g.GGTT_BASE // 8
    t0 = time.perf_counter_ns()
    for i in range(n):
        q[base + i % GGTT_SPAN] = entries[i & 1023]
    q[base]
    return n / ((time.perf_counter_ns() - t0) / 1e9)


def bench_pairs(regs, n):
    idx = (REG_BASE + 4 * NREGS) // 4
    clock = time.perf_counter_ns
    lat = [0] * n
    bad = 0
    t0 = clock()
    for i in range(n):
        t = clock()
        regs[idx] = i
        got = regs[idx]
        lat[i] = clock() - t
        if got != i:
            bad += 1
    return n / ((clock() - t0) / 1e9), lat, bad


def bench_bursts(regs, n):
    base = REG_BASE // 4
    clock = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t = clock()
        for j in range(BURST):
            regs[base + j] = i + j
        regs[base]
        lat[i] = clock() - t
    return lat


def out(name, value, unit):
    print("# bench %s %.6g %s" % (name, value, unit), flush=True)


def bench_aperture(aperture, size):
    """MB/s through the aperture (BAR2) onto guest pages the GGTT maps: a copy in and a copy
    out of ``size`` bytes, each load or store of it a trapped access."""
    data = bytes(range(256)) * (size // 256)
    t0 = time.perf_counter_ns()
    aperture.mm[:size] = data
    write = size / ((time.perf_counter_ns() - t0) / 1e9) / 1e6
    t0 = time.perf_counter_ns()
    back = aperture.mm[:size]
    read = size / ((time.perf_counter_ns() - t0) / 1e9) / 1e6
    return write, read, back == data


def bench_baseline(n):
    """The same loops on ordinary memory: what Python and the clock cost under TCG."""
    mem = memoryview(bytearray(4 * NREGS)).cast("I")
    t0 = time.perf_counter_ns()
    for i in range(n):
        mem[i & (NREGS - 1)] = i
    store_ns = (time.perf_counter_ns() - t0) / n
    clock = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t = clock()
        mem[0]
        lat[i] = clock() - t
    return store_ns, stats(lat)[0]


def main():
    n = g.cmdline_int("devmodel.bench_n", 20000)
    n_native = g.cmdline_int("devmodel.bench_native_n", 5 * n)
    rounds = g.cmdline_int("devmodel.bench_rounds", 3)
    tap = g.Tap(8)
    try:
        dev = g.find_device()
        dev.enable_memory()
        bar0 = dev.bar(0)
        aperture = dev.bar(2)
        buf = g.LockedBuffer(1024 * g.PAGE)
        native = Native()
    except (g.TestError, OSError) as e:
        tap.bail("setup: %s" % e)
    regs, q = bar0.view("I"), bar0.view("Q")
    entries = [p | g.GGTT_PRESENT for p in buf.pages]
    table = (ctypes.c_uint64 * 1024)(*entries)
    bar0_addr, anchor = address(bar0.mm)
    tap.diag("bench n=%d native_n=%d rounds=%d clocksource=%s" % (n, n_native, rounds, clocksource()))

    store_ns, clock_us = bench_baseline(n)
    out("baseline_store", store_ns, "ns")
    out("baseline_timed_load", clock_us, "us")

    # Warm up each path once (page faults, QEMU's MMIO dispatch caches).
    bench_posted_writes(regs, 256)
    bench_reads(regs, 256)
    bench_ggtt(q, entries, 256)
    bench_pairs(regs, 256)
    bench_native_writes(native, regs, bar0_addr, 256)

    res: dict[str, list] = {}  # rates, or tuples of a rate and latency figures
    for _ in range(rounds):
        res.setdefault("posted_write", []).append(bench_posted_writes(regs, n))
        res.setdefault("posted_write_native", []).append(bench_native_writes(native, regs, bar0_addr, n_native))
        rate, lat = bench_reads(regs, n)
        res.setdefault("read", []).append((rate,) + stats(lat))
        res.setdefault("ggtt_write", []).append(bench_ggtt(q, entries, n))
        res.setdefault("ggtt_write_native", []).append(
            bench_native_ggtt(native, regs, bar0_addr, ctypes.addressof(table), n_native))
        rate, lat, bad = bench_pairs(regs, n)
        res.setdefault("pair", []).append((rate,) + stats(lat) + (bad,))
        lat = bench_bursts(regs, max(1, n // BURST))
        res.setdefault("burst", []).append(stats(lat))

    out("posted_write", median(res["posted_write"]), "writes/s")
    out("posted_write_native", median(res["posted_write_native"]), "writes/s")
    for k, name in enumerate(("read", "read_mean", "read_p50", "read_p99")):
        out(name, median([r[k] for r in res["read"]]), "reads/s" if k == 0 else "us")
    out("ggtt_write", median(res["ggtt_write"]), "updates/s")
    out("ggtt_write_native", median(res["ggtt_write_native"]), "updates/s")
    for k, name in enumerate(("pair", "pair_mean", "pair_p50", "pair_p99")):
        out(name, median([r[k] for r in res["pair"]]), "pairs/s" if k == 0 else "us")
    for k, name in enumerate(("burst16_mean", "burst16_p50", "burst16_p99")):
        out(name, median([r[k] for r in res["burst"]]), "us")
    # The GGTT now maps the aperture's first pages onto buf: copy through it both ways.
    ap_write, ap_read, ap_same = bench_aperture(aperture, 16 * g.PAGE)
    out("aperture_write", ap_write, "MB/s")
    out("aperture_read", ap_read, "MB/s")
    tap.ok(ap_same, "what was written through the aperture reads back")

    # What was written arrived: the last loop of each kind decides the final values.
    want = [(n // BURST - 1) + j for j in range(BURST)]  # the last burst
    got = [regs[REG_BASE // 4 + j] for j in range(BURST)]
    tap.ok(got == want, "bursts: registers hold the last burst", "%r != %r" % (got[:4], want[:4]))
    last = {i & (NREGS - 1): i for i in range(n_native - NREGS, n_native)}
    got = [regs[REG_BASE // 4 + j] for j in range(BURST, NREGS)]
    tap.ok(got == [last[j] for j in range(BURST, NREGS)],
           "native posted writes: every register holds its last value", "%r" % got[:4])

    def ggtt_want(i, count):  # the entry the last of count writes to index i stored
        return entries[(count - 1 - (count - 1 - i) % GGTT_SPAN) & 1023] if i < count else None
    bad = []
    for i in range(0, GGTT_SPAN, 997):
        want = ggtt_want(i, n_native)
        if want is None:
            want = ggtt_want(i, n)
        if want is not None and bar0.read64(g.ggtt_offset(i)) != want:
            bad.append(hex(i))
    tap.ok(not bad, "GGTT entries hold the last values written", "%r" % bad[:4])
    bad = sum(r[4] for r in res["pair"])
    tap.ok(bad == 0, "every read right after a posted write returned the written value", "%d mismatches" % bad)
    tap.ok(all(r[0] > 0 for r in res["read"]), "reads measured")
    tap.eq(regs[(REG_BASE + 4 * NREGS) // 4], n - 1, "the pair register holds the last value written")
    tap.eq(bar0.read64(g.PVINFO_BASE), g.PVINFO_MAGIC, "the device still answers")
    del anchor
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
