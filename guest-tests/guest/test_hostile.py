"""A hostile guest, from inside a real guest: it does to the vGPU what a broken or malicious
driver could, through BAR0 and its own RAM, and then behaves. Each act must leave the device
serving (a register read answers), and at the end, after the guest resets every engine, a
store still lands on every engine.

Acts: a PPGTT whose tables point at themselves and at frames outside guest RAM; a ring whose
tail lies past the ring's end; a blit on the render engine (the wrong engine); a store
addressed to an unmapped graphics address; an ELSP storm of garbage descriptors; garbage in
the CSB pointer; a GDRST storm; a batch that jumps to itself (it runs, sleeping between
laps, until the engine reset)."""
# devmodel-guest: timeout=240
import random
import time

import gpulib as gl
import gvtlib as g

GVA = 0x7F0000000000
OUTSIDE_RAM = 1 << 45  # a frame far beyond any guest's RAM
PVINFO_MAGIC = 0x78000


def main():
    tap = g.Tap(10)
    rng = random.Random(7)
    try:
        dev = g.find_device()
        gpu = gl.Gpu(dev, pool_pages=512)
        gpu.mask_all()
        engines = {name: gl.Engine(gpu, name) for name in gl.ENGINES}
        ppgtt = gl.Ppgtt(gpu)
        target = gpu.alloc()
        ppgtt.map_object(GVA, target)
    except (g.TestError, OSError, ValueError) as e:
        tap.bail("setup: %s" % e)
    rcs, bcs = engines["RCS"], engines["BCS"]

    def alive():
        """The device still answers: PVINFO's magic reads back."""
        return gpu.r(PVINFO_MAGIC) == 0x76544776

    def act(desc, fn):
        def run():
            why = fn()
            time.sleep(0.05)  # what the act started runs on in the device
            if not alive():
                return "the device no longer answers after the act"
            return why
        tap.check(desc, run)

    def self_referencing():
        bad = gl.Ppgtt(gpu)
        pml4 = bad.pml4
        for i in range(512):  # every PML4 entry points at the PML4 itself, or outside RAM
            pml4.set_q(8 * i, (pml4.phys() if i % 2 else OUTSIDE_RAM) | gl.PTE_PRESENT | gl.PTE_RW)
        ctx = gl.Context(rcs, bad)
        ctx.emit(gl.store_dword(GVA, 0xBAD))
        rcs.submit(ctx)
        return None

    act("a PPGTT whose tables point at themselves and outside guest RAM: the device survives",
        self_referencing)
    rcs.reset()

    def lying_tail():
        ctx = gl.Context(bcs, ppgtt)
        ctx.emit(gl.store_dword(GVA + 8, 1))
        ctx.image.set_d(gl.PAGE + (gl.CTX_RING_TAIL + 1) * 4, 0xFFFFFFF0)  # far past the ring
        bcs.submit(ctx)
        return None

    act("a ring tail that lies far past the ring's end: the device survives", lying_tail)
    bcs.reset()

    def wrong_engine():
        ctx = gl.Context(rcs, ppgtt)
        ctx.emit(gl.color_blt(GVA, 4096, 0, 0, 16, 16, 0xFFFFFFFF))
        rcs.submit(ctx)
        return None if target.d(0) != 0xFFFFFFFF else "a blit ran on the render engine"

    act("XY_COLOR_BLT submitted to the render engine is refused: the device survives", wrong_engine)
    rcs.reset()

    def unmapped_store():
        ctx = gl.Context(engines["VCS0"], ppgtt)
        events = ctx.run(gl.store_dword(0x123456780000, 0xBAD))
        return None if gl.completed(events, ctx) else "no completion: CSB %s" % gl.fmt_events(events)

    act("a store to an unmapped graphics address completes into scratch", unmapped_store)

    def elsp_storm():
        for engine in engines.values():
            for _ in range(64):
                gpu.w(engine.reg(gl.ELSP), rng.getrandbits(32))
        return None

    act("an ELSP storm of garbage descriptors on every engine: the device survives", elsp_storm)

    def csb_garbage():
        for engine in engines.values():
            gpu.w(engine.reg(gl.CSB_PTR), rng.getrandbits(32))
        return None

    act("garbage written to every CSB pointer: the device survives", csb_garbage)

    def gdrst_storm():
        for _ in range(200):
            gpu.w(gl.GDRST, rng.getrandbits(5))
        return None

    act("a GDRST storm: the device survives", gdrst_storm)

    def runaway():
        batch = gpu.alloc()
        ppgtt.map_object(GVA + 0x10000, batch)
        batch.set_d(0, *gl.batch_start(GVA + 0x10000))
        ctx = gl.Context(engines["VECS0"], ppgtt)
        ctx.emit(gl.batch_start(GVA + 0x10000))
        engines["VECS0"].submit(ctx)
        return None

    act("a batch that jumps to itself: the device survives it, running until the engine reset", runaway)

    def behaves():
        for engine in engines.values():
            engine.reset()
        bad = []
        for i, (name, engine) in enumerate(engines.items()):
            ctx = gl.Context(engine, ppgtt)
            events = ctx.run(gl.store_dword(GVA + 0x100 + 8 * i, 0x600D0000 | i))
            if target.d(0x100 + 8 * i) != 0x600D0000 | i or not gl.completed(events, ctx):
                bad.append("%s: store 0x%x, CSB %s" % (name, target.d(0x100 + 8 * i), gl.fmt_events(events)))
        return "; ".join(bad) or None

    tap.check("after the guest resets every engine, a store lands on each of the four", behaves)
    tap.ok(alive(), "the device answers at the end")
    return tap.finish()


if __name__ == "__main__":
    raise SystemExit(main())
