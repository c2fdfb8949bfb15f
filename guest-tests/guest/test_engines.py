"""The four engines driven from inside the guest through BAR0 and its own RAM, without i915:
contexts in an i915-style 4-level PPGTT (scratch tables everywhere), execlist submission,
the CSB read from the hardware status page, blits checked pixel by pixel, a PTE changed
between two submissions, a user interrupt through uio (INTx), a forbidden command hanging
its context only, two contexts alternating on RCS and BCS at once; figures as diagnostics.

With devmodel.picture=1 on the kernel command line the test picture is printed as
zlib-compressed base64 between '# devmodel-picture' lines (the demo saves it as a PNG)."""
# devmodel-guest: timeout=240
import sys
import time

import gpulib as gl
import gvtlib as g

GVA_TARGET = 0x7F1234500000  # PML4 slot 254: a 4-level address well above 4 GiB
GVA_SWAP = 0x0000C0000000
GVA_PICTURE = 0x000100000000
GVA_BENCH_SRC = 0x000200000000
GVA_BENCH_DST = 0x000300000000
BENCH_W, BENCH_H = 512, 512  # 1 MiB surfaces
BENCH_SUBMISSIONS = 200
BENCH_REPEATS = 5
FORBIDDEN_REG = gl.GDRST  # not on any engine's LRI allow-list (docs/commands.md)


def expect_events(events, want):
    return None if events == want else "CSB %s, want %s" % (gl.fmt_events(events), gl.fmt_events(want))


def single(ctx):
    """The CSB of one context run alone from idle."""
    return [(gl.CSB_IDLE_ACTIVE, 0), (gl.CSB_ACTIVE_IDLE | gl.CSB_COMPLETE, ctx.ctx_id)]


def main():
    tap = g.Tap(17)
    try:
        dev = g.find_device()
        uio = g.Uio(dev)  # first: INTx has a handler before anything can raise it
        gpu = gl.Gpu(dev, pool_pages=2048)
        gpu.mask_all()
        engines = {name: gl.Engine(gpu, name) for name in gl.ENGINES}
        ppgtt = gl.Ppgtt(gpu)
        target = gpu.alloc()
        ppgtt.map_object(GVA_TARGET, target)
    except (g.TestError, OSError, ValueError) as e:
        tap.bail("setup: %s" % e)
    rcs, bcs = engines["RCS"], engines["BCS"]
    tap.diag("graphics memory %s; PML4 at 0x%x" % (
        ", ".join("0x%x+0x%x" % r for r in gpu.ranges), ppgtt.pml4.phys()))

    # --- MI_STORE_DATA_IMM through the PPGTT on each engine ----------------------------------
    for i, (name, engine) in enumerate(engines.items()):
        def store(engine=engine, i=i):
            ctx = gl.Context(engine, ppgtt)
            value = 0xC0DE0000 | i
            events = ctx.run(gl.store_dword(GVA_TARGET + 8 * i, value))
            if target.d(8 * i) != value:
                return "buffer dword 0x%x, want 0x%x" % (target.d(8 * i), value)
            if ctx.ring_head() != ctx.tail:
                return "image RING_HEAD 0x%x, want the tail 0x%x" % (ctx.ring_head(), ctx.tail)
            return expect_events(events, single(ctx))
        tap.check("%s: MI_STORE_DATA_IMM through the 4-level PPGTT lands in the guest buffer; "
                  "CSB {idle-to-active}, {active-to-idle | complete} in the status page; "
                  "RING_HEAD := tail" % name, store)

    # --- blits, pixel by pixel ---------------------------------------------------------------
    surface = gpu.alloc(gl.PICTURE_PITCH * gl.PICTURE_H // gl.PAGE)
    n = surface.npages
    ppgtt.map_object(GVA_PICTURE, surface, order=list(range(0, n, 2)) + list(range(1, n, 2)))
    pic = bytearray()

    def linear(data):
        """The surface as the GPU sees it (its pages are mapped even first, then odd)."""
        pages = [data[p * gl.PAGE:(p + 1) * gl.PAGE] for p in list(range(0, n, 2)) + list(range(1, n, 2))]
        return b"".join(pages)

    def blit(commands, copied):
        def check():
            ctx = gl.Context(bcs, ppgtt)
            err = expect_events(ctx.run(commands), single(ctx))
            got = linear(surface.read())
            pic[:] = got
            return err or gl.first_bad_pixel(got, gl.picture_expected(copied))
        return check
    surface.fill(0xEE)
    tap.check("BCS: the test pattern of %d XY_COLOR_BLTs is right in every pixel of a %dx%d surface "
              "(pages interleaved)" % (len(gl.picture_rects()), gl.PICTURE_W, gl.PICTURE_H),
              blit(gl.picture_color_commands(GVA_PICTURE), False))
    tap.check("BCS: XY_SRC_COPY_BLT copies part of it; every pixel right",
              blit(gl.picture_copy_commands(GVA_PICTURE), True))
    if gl.want_picture():
        gl.print_picture(bytes(pic))

    # --- a PTE changed between two submissions ------------------------------------------------
    page_a, page_b = gpu.alloc(), gpu.alloc()
    vcs = gl.Context(engines["VCS0"], ppgtt)
    ppgtt.map(GVA_SWAP, page_a.phys())

    def first():
        events = vcs.run(gl.store_dword(GVA_SWAP, 0x11111111))
        return expect_events(events, single(vcs)) or (
            None if page_a.d(0) == 0x11111111 else "page A holds 0x%x" % page_a.d(0))
    tap.check("VCS0: a store to 0x%x lands in page A (0x%x)" % (GVA_SWAP, page_a.phys()), first)

    def second():
        ppgtt.map(GVA_SWAP, page_b.phys())
        events = vcs.run(gl.store_dword(GVA_SWAP, 0x22222222))
        return expect_events(events, single(vcs)) or (
            None if (page_a.d(0), page_b.d(0)) == (0x11111111, 0x22222222)
            else "page A 0x%x, page B 0x%x" % (page_a.d(0), page_b.d(0)))
    tap.check("the PTE re-pointed at page B between submissions: the next store lands in B, A keeps "
              "its value", second)

    # --- a user interrupt through uio (INTx) --------------------------------------------------
    irq_ctx = gl.Context(rcs, ppgtt)
    gpu.unmask(rcs, gl.GT_USER_INTERRUPT)
    uio.enable()
    gpu.w(gl.GEN8_MASTER_IRQ, gl.MASTER_IRQ_ENABLE)
    irq_ctx.run(gl.store_dword(GVA_TARGET + 0x80, 1) + [gl.MI_USER_INTERRUPT])
    count = uio.wait(5.0)
    tap.ok(count is not None, "MI_USER_INTERRUPT on RCS: an INTx interrupt reaches uio", "none within 5 s")
    iir, master = gpu.iir(rcs), gpu.r(gl.GEN8_MASTER_IRQ)
    tap.ok(iir == gl.GT_USER_INTERRUPT and master == gl.MASTER_IRQ_ENABLE | 1 << rcs.master_bit,
           "GT IIR 0 shows the user interrupt alone (context switch masked); GEN8_MASTER_IRQ status bit 0",
           "IIR 0x%x, master 0x%x" % (iir, master))
    gpu.clear_iir(rcs, iir)
    master = gpu.r(gl.GEN8_MASTER_IRQ)
    uio.enable()
    quiet = uio.wait(0.3)
    tap.ok(master == gl.MASTER_IRQ_ENABLE and quiet is None,
           "IIR written back clears it: master status clear, INTx unmasked and quiet",
           "master 0x%x, interrupt count %s" % (master, quiet))
    irq_ctx.run(gl.store_dword(GVA_TARGET + 0x80, 2) + [gl.MI_USER_INTERRUPT])
    again = uio.wait(5.0)
    tap.ok(count is not None and again == count + 1 and gpu.iir(rcs) == gl.GT_USER_INTERRUPT,
           "a second user interrupt arrives after the first was handled",
           "count %s then %s, IIR 0x%x" % (count, again, gpu.iir(rcs)))
    gpu.clear_iir(rcs, 0xFFFF)
    gpu.mask_all()

    # --- a forbidden command hangs its context, until the guest resets the engine ------------
    bad = gl.Context(rcs, ppgtt)

    def hang():
        bad.emit(gl.store_dword(GVA_TARGET + 0x100, 0xBAD) + gl.load_register(FORBIDDEN_REG, 1))
        rcs.submit(bad)
        time.sleep(0.2)  # the scanner refuses it at once; no event may follow the hang
        events = rcs.poll_csb()
        if events != [(gl.CSB_IDLE_ACTIVE, 0)]:
            return "CSB %s, want only {idle-to-active}" % gl.fmt_events(events)
        if target.d(0x100) or bad.ring_head():
            return "store before the LRI ran (0x%x) or RING_HEAD moved (0x%x)" % (target.d(0x100), bad.ring_head())
        if rcs.idle() or rcs.current_context() != bad.ctx_id:
            return "the hung context is not the engine's current one (EXECLIST_STATUS_HI %d, want %d)" % (
                rcs.current_context(), bad.ctx_id)
        rcs.reset()
        return None if rcs.idle() else "EXECLIST_STATUS still busy after the engine reset"
    tap.check("RCS: LRI to 0x%x (not on the allow-list) hangs the context: nothing of its ring runs, "
              "no completion, RING_HEAD stays, it stays the engine's context until the guest resets "
              "the engine (GDRST), as i915 finds the guilty one" % FORBIDDEN_REG, hang)

    def next_runs():
        good = gl.Context(rcs, ppgtt)
        events = good.run(gl.store_dword(GVA_TARGET + 0x108, 0x600D))
        return expect_events(events, single(good)) or (
            None if target.d(0x108) == 0x600D else "store missing (0x%x)" % target.d(0x108))
    tap.check("the next context on RCS runs and completes", next_runs)

    # --- two contexts alternating on RCS and BCS at once --------------------------------------
    def alternate():
        pairs = {e: (gl.Context(e, ppgtt), gl.Context(e, ppgtt)) for e in (rcs, bcs)}
        slots = {ctx: 0x200 + 8 * k for k, ctx in enumerate(c for p in pairs.values() for c in p)}
        for rnd in range(4):
            order = {e: p if rnd % 2 == 0 else p[::-1] for e, p in pairs.items()}
            for e, (c0, c1) in order.items():
                for ctx in (c0, c1):
                    ctx.emit(gl.store_dword(GVA_TARGET + slots[ctx], rnd << 16 | ctx.ctx_id))
                e.submit(c0, c1)
            for e, (c0, c1) in order.items():
                events = e.wait_idle_event()
                want = [(gl.CSB_IDLE_ACTIVE, 0), (gl.CSB_ELEMENT_SWITCH | gl.CSB_COMPLETE, c0.ctx_id),
                        (gl.CSB_ACTIVE_IDLE | gl.CSB_COMPLETE, c1.ctx_id)]
                if events != want:
                    return "round %d, %s: %s" % (rnd, e.name, expect_events(events, want))
            wrong = [(ctx.ctx_id, hex(target.d(s))) for ctx, s in slots.items()
                     if target.d(s) != rnd << 16 | ctx.ctx_id]
            if wrong:
                return "round %d: slots %r" % (rnd, wrong)
        return None
    tap.check("two contexts alternate as two-element execlists on RCS and BCS at once (4 rounds): "
              "{idle-to-active}, {element switch | complete}, {active-to-idle | complete} on each", alternate)

    # --- figures ------------------------------------------------------------------------------
    def submissions():
        ctx = gl.Context(rcs, ppgtt, ring_pages=4)
        t0 = time.monotonic()
        for k in range(BENCH_SUBMISSIONS):
            events = ctx.run(gl.store_dword(GVA_TARGET + 0x300, k))
            if not gl.completed(events, ctx):
                return "submission %d: %s" % (k, gl.fmt_events(events))
        dt = time.monotonic() - t0
        tap.diag("figure: %d RCS submissions of one MI_STORE_DATA_IMM, each awaited in the status page: "
                 "%.0f workloads/s, %.2f ms submit to completion" % (BENCH_SUBMISSIONS, BENCH_SUBMISSIONS / dt,
                                                                     dt / BENCH_SUBMISSIONS * 1e3))
        return None if target.d(0x300) == BENCH_SUBMISSIONS - 1 else "last store 0x%x" % target.d(0x300)
    tap.check("%d submissions in a row on RCS all complete" % BENCH_SUBMISSIONS, submissions)

    def blit_figures():
        pitch = BENCH_W * gl.BPP
        src, dst = gpu.alloc(pitch * BENCH_H // gl.PAGE), gpu.alloc(pitch * BENCH_H // gl.PAGE)
        ppgtt.map_object(GVA_BENCH_SRC, src)
        ppgtt.map_object(GVA_BENCH_DST, dst)
        ctx = gl.Context(bcs, ppgtt)
        nbytes = pitch * BENCH_H
        mm = gpu.pool.mm

        def median_seconds(fn):
            times = []
            for _ in range(BENCH_REPEATS):
                t0 = time.monotonic()
                fn()
                times.append(time.monotonic() - t0)
            return sorted(times)[len(times) // 2]
        t_fill = median_seconds(lambda: ctx.run(gl.color_blt(GVA_BENCH_SRC, pitch, 0, 0, BENCH_W, BENCH_H, 0x345678)))
        t_copy = median_seconds(lambda: ctx.run(gl.src_copy_blt(GVA_BENCH_DST, pitch, 0, 0, BENCH_W, BENCH_H,
                                                                GVA_BENCH_SRC, pitch, 0, 0)))
        want = b"\x78\x56\x34\x00" * (BENCH_W * BENCH_H)
        right = src.read() == want and dst.read() == want

        def cpu_copy():
            mm[dst.off:dst.off + nbytes] = mm[src.off:src.off + nbytes]
        t_cpu = median_seconds(cpu_copy)
        mb = nbytes / 1e6
        tap.diag("figure: 1 MiB XY_COLOR_BLT %.0f MB/s, XY_SRC_COPY_BLT %.0f MB/s (ELSP to CSB, seen from the "
                 "guest, median of %d); the guest CPU copies the same bytes at %.0f MB/s"
                 % (mb / t_fill, mb / t_copy, BENCH_REPEATS, mb / t_cpu))
        return None if right else "the 1 MiB blits left wrong bytes"
    tap.check("1 MiB XY_COLOR_BLT then XY_SRC_COPY_BLT on BCS: both surfaces right", blit_figures)

    uio.close()
    gpu.bar0.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
