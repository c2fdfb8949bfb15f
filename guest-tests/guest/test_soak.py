"""The soak: thousands of workloads on all four engines, with random page-table churn between
submissions, every result checked against the guest's own model of its memory.

Two i915-style PPGTTs share a pool of data pages through eight target addresses each, spread
over different PML4, PDP, PD and PT entries. Before each workload the guest re-points some
targets' PTEs at other data pages, unmaps some (their PTE back at the scratch page) and maps
them again later, and picks the engine and the PPGTT (one context per engine and PPGTT) at
random. A workload is a dword or a qword MI_STORE_DATA_IMM in the ring, a PPGTT batch of one
to three stores started by MI_BATCH_BUFFER_START, or (on BCS) a one-row XY_COLOR_BLT. After
each workload the guest checks the CSB events and compares the whole data pool with its model
(the stored value where the PTE points now, every other byte unchanged: a store through a stale
shadow entry shows as a change in the old page).

Options on the kernel command line: devmodel.soak=N workloads (default 2000),
devmodel.soak_seed=S (default: from the clock; printed, so a failure can be replayed),
devmodel.soak_host=1 asks the host test (tests/guest/test_soak_guest.py) over the line channel
to sample the device model's resident memory after the warm-up and at the end.
"""
# devmodel-guest: manual timeout=300
import random
import sys
import time

import gpulib as gl
import gvtlib as g

DEFAULT_WORKLOADS = 2000
DATA_PAGES = 32
# The targets: different PML4 slots, PDPs, PDs and PTs, so churn and first maps reach tables
# at every level.
TARGETS = (0x000000400000, 0x000000401000, 0x000040000000, 0x008000000000,
           0x7F1234500000, 0x7F1234600000, 0x00C000200000, 0x100000003000)
BATCH_GVA = 0x000010000000  # the batch page, mapped in both PPGTTs and never churned
KINDS = ("dword", "qword", "batch", "blit")
MAX_CHURN = 3  # page-table operations before each workload: 0..MAX_CHURN
ASK_TIMEOUT = 180.0


class Soak:
    def __init__(self, gpu, rng):
        self.gpu, self.rng = gpu, rng
        self.engines = [gl.Engine(gpu, name) for name in gl.ENGINES]
        self.ppgtts = [gl.Ppgtt(gpu), gl.Ppgtt(gpu)]
        self.data = gpu.alloc(DATA_PAGES)
        self.model = bytearray(self.data.size)
        self.batch = gpu.alloc()
        # maps[p][t]: the data page target t reaches in PPGTT p, None when unmapped (scratch)
        self.maps = [[None] * len(TARGETS) for _ in self.ppgtts]
        for p, ppgtt in enumerate(self.ppgtts):
            ppgtt.map(BATCH_GVA, self.batch.phys())
            for t in range(len(TARGETS)):
                self.point(p, t, rng.randrange(DATA_PAGES))
        self.contexts = {(e.name, p): gl.Context(e, ppgtt) for e in self.engines
                         for p, ppgtt in enumerate(self.ppgtts)}
        self.counts = dict.fromkeys(("workloads", "mismatches", "csb_bad", "repoint", "unmap", "switch"), 0)
        self.per_engine = {e.name: 0 for e in self.engines}
        self.per_kind = dict.fromkeys(KINDS, 0)
        self.problems = []  # the first few mismatches, in words
        self.last_ppgtt = None

    def point(self, p, t, page):
        self.ppgtts[p].map(TARGETS[t], self.data.phys(page))
        self.maps[p][t] = page

    def churn(self, p):
        for _ in range(self.rng.randrange(MAX_CHURN + 1)):
            maps = self.maps[p]
            t = self.rng.randrange(len(TARGETS))
            mapped = sum(m is not None for m in maps)
            if maps[t] is not None and mapped > 1 and self.rng.random() < 0.3:
                self.ppgtts[p].unmap(TARGETS[t])
                maps[t] = None
                self.counts["unmap"] += 1
            else:
                self.point(p, t, self.rng.randrange(DATA_PAGES))
                self.counts["repoint"] += 1

    def stores(self, p, n, count, sizes=(4, 8)):
        """count stores (target, offset, size, value) at mapped targets of PPGTT p; values carry
        the workload number, so no store can pass by writing what was already there."""
        mapped = [t for t, m in enumerate(self.maps[p]) if m is not None]
        out = []
        for j in range(count):
            t, size = self.rng.choice(mapped), self.rng.choice(sizes)
            value = ((n + 1) << 8 | j) & 0xFFFFFFFF
            if size == 8:
                value |= self.rng.getrandbits(32) << 32
            out.append((t, size * self.rng.randrange(gl.PAGE // size), size, value))
        return out

    @staticmethod
    def encode(target, off, size, value):
        gva = TARGETS[target] + off
        return gl.store_qword(gva, value) if size == 8 else gl.store_dword(gva, value)

    def workload(self, n):
        """One workload: churn, submit, wait for the CSB, compare the pool with the model."""
        engine = self.rng.choice(self.engines)
        p = self.rng.randrange(len(self.ppgtts))
        if self.last_ppgtt is not None and p != self.last_ppgtt:
            self.counts["switch"] += 1
        self.last_ppgtt = p
        self.churn(p)
        kind = self.rng.choice(KINDS if engine.name == "BCS" else KINDS[:3])
        if kind == "blit":  # a one-row fill: the target's page is the surface, one row of 1024 pixels
            (t, _, _, _), = self.stores(p, n, 1)
            x1 = self.rng.randrange(gl.PAGE // gl.BPP)
            x2 = self.rng.randint(x1 + 1, min(gl.PAGE // gl.BPP, x1 + 16))
            color = ((n + 1) << 8 | 0xB1) & 0xFFFFFFFF
            cmds = gl.color_blt(TARGETS[t], gl.PAGE, x1, 0, x2, 1, color)
            writes = [(t, x1 * gl.BPP, color.to_bytes(4, "little") * (x2 - x1))]
        else:
            sizes = {"dword": (4,), "qword": (8,), "batch": (4, 8)}[kind]
            stores = self.stores(p, n, self.rng.randint(1, 3) if kind == "batch" else 1, sizes)
            cmds = [dw for s in stores for dw in self.encode(*s)]
            if kind == "batch":
                boff = 64 * (n % (gl.PAGE // 64))  # the batch moves through its page
                self.batch.set_d(boff, *cmds, gl.MI_BATCH_BUFFER_END)
                cmds = gl.batch_start(BATCH_GVA + boff)
            writes = [(t, off, value.to_bytes(size, "little")) for t, off, size, value in stores]
        for t, off, data in writes:
            at = self.maps[p][t] * gl.PAGE + off
            self.model[at:at + len(data)] = data
        ctx = self.contexts[(engine.name, p)]
        events = ctx.run(cmds)
        if events != [(gl.CSB_IDLE_ACTIVE, 0), (gl.CSB_ACTIVE_IDLE | gl.CSB_COMPLETE, ctx.ctx_id)]:
            self.counts["csb_bad"] += 1
            self.note("workload %d (%s, %s): CSB %s" % (n, engine.name, kind, gl.fmt_events(events)))
        self.compare(n, engine.name, kind)
        self.counts["workloads"] += 1
        self.per_engine[engine.name] += 1
        self.per_kind[kind] += 1

    def compare(self, n, engine, kind):
        got = self.data.read()
        if got == self.model:
            return
        self.counts["mismatches"] += 1
        i = next(k for k in range(len(got)) if got[k] != self.model[k])
        self.note("workload %d (%s, %s): data page %d byte 0x%x is 0x%02x, the model says 0x%02x"
                  % (n, engine, kind, i // gl.PAGE, i % gl.PAGE, got[i], self.model[i]))
        self.model[:] = got  # count the next mismatch on its own

    def note(self, text):
        if len(self.problems) < 5:
            self.problems.append(text)

    def scratch_clean(self):
        return all(not any(pp.scratch_page.read()) for pp in self.ppgtts)


def ask_host(tap, host, tag, payload, desc):
    if host is None:
        tap.skip(desc, "no host test (devmodel.soak_host=1 not given)")
        return
    try:
        answer = host.ask(tag, payload, ASK_TIMEOUT)
    except g.TestError as e:
        tap.bail("%s: %s" % (tag, e))
    tap.diag("figure: %s: %s" % (tag, answer))
    tap.ok(answer.startswith("ok"), desc, answer)


def main():
    tap = g.Tap(8)
    total = g.cmdline_int("devmodel.soak", DEFAULT_WORKLOADS)
    seed = g.cmdline_int("devmodel.soak_seed", time.time_ns() & 0xFFFFFFFF)
    warmup = min(100, total // 10)
    tap.diag("%d workloads, seed %d (devmodel.soak_seed=%d replays it), warm-up %d" % (total, seed, seed, warmup))
    try:
        dev = g.find_device()
        gpu = gl.Gpu(dev, pool_pages=256)
        gpu.mask_all()
        soak = Soak(gpu, random.Random(seed))
        host = g.HostChannel() if g.cmdline_int("devmodel.soak_host", 0) else None
    except (g.TestError, OSError, ValueError) as e:
        tap.bail("setup: %s" % e)

    error = None
    started = None
    for n in range(total):
        if n == warmup:
            ask_host(tap, host, "rss-start", {"workloads": n},
                     "the host sampled the device model's resident memory after %d workloads" % n)
            started = (time.monotonic(), n)
        try:
            soak.workload(n)
        except g.TestError as e:  # an engine that never went idle: stop, the count shows it
            error = "workload %d: %s" % (n, e)
            break
    if started is None:  # fewer workloads than the warm-up: keep the plan
        ask_host(tap, host, "rss-start", {"workloads": soak.counts["workloads"]},
                 "the host sampled the device model's resident memory")
        started = (time.monotonic(), soak.counts["workloads"])
    seconds = time.monotonic() - started[0]
    timed = soak.counts["workloads"] - started[1]
    c = soak.counts
    for text in soak.problems:
        tap.diag(text)
    tap.diag("figure: %d workloads in %.1f s after the warm-up: %.0f workloads/s, each with its churn and a "
             "compare of the %d KiB data pool" % (timed, seconds, timed / seconds if seconds else 0,
                                                  soak.data.size // 1024))
    tap.diag("figure: per engine %s; per kind %s; page-table churn: %d re-points, %d unmaps, %d PPGTT switches"
             % (soak.per_engine, soak.per_kind, c["repoint"], c["unmap"], c["switch"]))
    tap.ok(c["workloads"] == total and error is None, "workloads run: %d of %d" % (c["workloads"], total),
           error or "")
    tap.ok(c["mismatches"] == 0, "mismatches: %d (every store where the model puts it, nothing else changed)"
           % c["mismatches"], "; ".join(soak.problems))
    tap.ok(c["csb_bad"] == 0, "CSB {idle-to-active}, {active-to-idle | complete} for each workload (%d wrong)"
           % c["csb_bad"])
    tap.ok(all(soak.per_engine.values()) and all(soak.per_kind.values()),
           "every engine and every kind of workload ran", "engines %s, kinds %s" % (soak.per_engine, soak.per_kind))
    tap.ok(c["repoint"] and c["unmap"] and c["switch"], "the page tables churned: re-points, unmaps and switches",
           "counts %s" % c)
    tap.ok(soak.scratch_clean(), "both PPGTTs' scratch pages are still zero (no store went through an unmapped "
           "target)", "a scratch page was written")
    ask_host(tap, host, "rss-end", {"workloads": c["workloads"]},
             "the device model's resident memory grew within the host's bound over the soak")
    if host is not None:
        host.close()
    gpu.bar0.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
