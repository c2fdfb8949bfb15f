"""The GGTT through BAR0 and the aperture (BAR2) through it, on guest RAM the guest locked.

GGTT entries for the frames of locked buffers, written as one 8-byte store or as two 4-byte
halves in either order, read back exactly (8- and 4-byte reads); the aperture page of each
entry reaches its buffer in both directions; non-present entries, entries outside guest RAM
and half-written entries read 0 through the aperture and drop writes; rewriting an entry
switches the page the aperture shows; GFX_FLSH_CNTL accepts a write.
"""
import struct
import sys

import gvtlib as g

APERTURE_PAGES = (256 << 20) >> 12
# Graphics page indexes: low, middle, the last page of the 256 MiB aperture, two pages in a row
# (their frames need not be contiguous), and beyond the aperture (BAR0 readback only).
IDX_A, IDX_B, IDX_C = 3, 0x1234, 65535
IDX_PAIR = 0x2000
IDX_NP, IDX_EMPTY, IDX_OUT, IDX_HALF = 0x40, 0x41, 0x7000, 0x7001
IDX_FAR = (0x80000, 0x80001, 0xFFFFF)
OUTSIDE_GFN = 0x7FFF0000  # far beyond the guest's 512 MiB: no DMA window covers it


def pattern(seed, n):
    """n 32-bit words, different for each seed."""
    return [((seed * 0x9E3779B1) ^ (k * 0x85EBCA77) ^ (k << 20)) & 0xFFFFFFFF or 1 for k in range(n)]


def words(buf, off, n):
    return list(struct.unpack_from("<%dI" % n, buf.mm, off))


def put_words(buf, off, vals):
    struct.pack_into("<%dI" % len(vals), buf.mm, off, *vals)


def main():
    tap = g.Tap(32)
    try:
        dev = g.find_device()
        dev.enable_memory()
        bar0, bar2 = dev.bar(0), dev.bar(2)
        bufs = {name: g.LockedBuffer(npages * g.PAGE) for name, npages in
                (("A", 1), ("B", 1), ("C", 1), ("D", 1), ("E", 1), ("P", 2))}
    except (g.TestError, OSError, ValueError) as e:
        tap.bail("setup: %s" % e)
    A, B, C, D, E, P = (bufs[k] for k in "ABCDEP")
    tap.diag("BAR2 %d MiB; frames A 0x%x B 0x%x C 0x%x D 0x%x E 0x%x P 0x%x,0x%x" % (
        bar2.size >> 20, A.phys(), B.phys(), C.phys(), D.phys(), E.phys(), P.pages[0], P.pages[1]))
    tap.eq(bar2.size >> 12, APERTURE_PAGES, "aperture is 256 MiB (65536 GGTT pages)")

    def entry(buf, page=0):
        return buf.pages[page] | g.GGTT_PRESENT

    def readback(index, want, how):
        q, lo, hi = g.ggtt_read(bar0, index)
        tap.ok((q, lo, hi) == (want, want & 0xFFFFFFFF, want >> 32),
               "GGTT[0x%x] written %s reads back (8-byte and both 4-byte halves)" % (index, how),
               "8-byte 0x%x, low 0x%x, high 0x%x; want 0x%x" % (q, lo, hi, want))

    # --- GGTT entries through BAR0 ---------------------------------------------------------
    tap.eq(g.ggtt_read(bar0, IDX_A), (0, 0, 0), "an entry never written reads 0")
    g.ggtt_write(bar0, IDX_A, entry(A), "q")
    readback(IDX_A, entry(A), "as one 8-byte store")
    g.ggtt_write(bar0, IDX_B, entry(B), "lh")
    readback(IDX_B, entry(B), "low half then high half")
    g.ggtt_write(bar0, IDX_C, entry(C), "hl")
    readback(IDX_C, entry(C), "high half then low half")
    g.ggtt_write(bar0, IDX_PAIR, entry(P, 0), "q")
    g.ggtt_write(bar0, IDX_PAIR + 1, entry(P, 1), "lh")
    readback(IDX_PAIR + 1, entry(P, 1), "(second of a pair)")

    # Beyond the aperture, and bits other than present and the frame (kept as written).
    far = [(IDX_FAR[0], entry(D), "q"), (IDX_FAR[1], 0xA5A0000000000000 | entry(E) | 0x7F6, "hl"),
           (IDX_FAR[2], (0x3FFFFFFFF << 12) | 0x3, "lh")]
    for index, value, mode in far:
        g.ggtt_write(bar0, index, value, mode)
    bad = [(hex(i), hex(g.ggtt_read(bar0, i)[0]), hex(v)) for i, v, _ in far
           if g.ggtt_read(bar0, i) != (v, v & 0xFFFFFFFF, v >> 32)]
    tap.ok(not bad, "entries beyond the aperture (0x80000, 0x80001, 0xfffff; odd flag bits, "
           "46-bit frame) read back exactly", "%r" % bad)
    changed = [(hex(i), hex(g.ggtt_read(bar0, i)[0])) for i in (IDX_A, IDX_B, IDX_C, IDX_PAIR)
               if g.ggtt_read(bar0, i)[0] != {IDX_A: entry(A), IDX_B: entry(B), IDX_C: entry(C),
                                              IDX_PAIR: entry(P, 0)}[i]]
    tap.ok(not changed, "earlier entries unchanged by the later writes", "%r" % changed)

    # --- aperture -> buffer ----------------------------------------------------------------
    n = g.PAGE // 4
    pat_a = pattern(0xA, n)
    for k, v in enumerate(pat_a):
        bar2.write32((IDX_A << 12) + 4 * k, v)
    g.bar_flush(bar0)
    got = words(A, 0, n)
    tap.ok(got == pat_a, "a page of 4-byte aperture writes (index 0x%x) lands in buffer A" % IDX_A,
           "first mismatch at dword %s" % next((k for k in range(n) if got[k] != pat_a[k]), None))

    pat_c = pattern(0xC, n)
    for k in range(0, n, 2):
        bar2.write64((IDX_C << 12) + 4 * k, pat_c[k] | pat_c[k + 1] << 32)
    g.bar_flush(bar0)
    got = words(C, 0, n)
    tap.ok(got == pat_c, "a page of 8-byte aperture writes at the last aperture page (0x%x) lands in C" % IDX_C,
           "first mismatch at dword %s" % next((k for k in range(n) if got[k] != pat_c[k]), None))

    pat_b = pattern(0xB, 64)
    for k in range(64):
        bar2.write32((IDX_B << 12) + 64 * k, pat_b[k])
    g.bar_flush(bar0)
    got = [struct.unpack_from("<I", B.mm, 64 * k)[0] for k in range(64)]
    tap.ok(got == pat_b, "sparse aperture writes through a split-written entry (0x%x) land in B" % IDX_B,
           "got %r" % got[:4])

    pat_p = pattern(0x99, 2 * n)
    for k, v in enumerate(pat_p):
        bar2.write32((IDX_PAIR << 12) + 4 * k, v)
    g.bar_flush(bar0)
    tap.ok(words(P, 0, 2 * n) == pat_p, "8 KiB across two graphics pages lands in the two frames of P")

    # --- buffer -> aperture ----------------------------------------------------------------
    back_a = pattern(0xAA, n)
    put_words(A, 0, back_a)
    got = [bar2.read32((IDX_A << 12) + 4 * k) for k in range(n)]
    tap.ok(got == back_a, "a page written into A reads back through the aperture (4-byte reads)",
           "first mismatch at dword %s" % next((k for k in range(n) if got[k] != back_a[k]), None))
    back_c = pattern(0xCC, n)
    put_words(C, 0, back_c)
    got = [bar2.read64((IDX_C << 12) + 4 * k) for k in range(0, n, 2)]
    want = [back_c[k] | back_c[k + 1] << 32 for k in range(0, n, 2)]
    tap.ok(got == want, "a page written into C reads back through the last aperture page (8-byte reads)")
    back_b = pattern(0xBB, n)
    put_words(B, 0, back_b)
    got = [bar2.read32((IDX_B << 12) + 4 * k) for k in range(0, n, 37)]
    tap.ok(got == back_b[::37], "B's contents through the aperture at index 0x%x" % IDX_B)
    back_p = pattern(0x77, 2 * n)
    put_words(P, 0, back_p)
    got = [bar2.read32((IDX_PAIR << 12) + 4 * k) for k in range(0, 2 * n, 16)]
    tap.ok(got == back_p[::16], "both pages of P through two consecutive graphics pages")

    # --- non-present entries ---------------------------------------------------------------
    fill_d = pattern(0xD, n)
    put_words(D, 0, fill_d)
    g.ggtt_write(bar0, IDX_NP, D.phys(), "q")  # D's frame, present bit clear
    readback(IDX_NP, D.phys(), "without the present bit")
    got = [bar2.read32((IDX_NP << 12) + 4 * k) for k in range(0, n, 64)]
    tap.ok(not any(got), "a non-present entry (pointing at D) reads 0 through the aperture", "%r" % got[:4])
    for k in range(0, n, 64):
        bar2.write32((IDX_NP << 12) + 4 * k, 0x5A5A5A5A)
    bar2.write64((IDX_NP << 12) + 8, 0x5A5A5A5A5A5A5A5A)
    g.bar_flush(bar0)
    tap.ok(words(D, 0, n) == fill_d, "writes through the non-present entry are dropped (D unchanged)")
    tap.ok(bar2.read32(IDX_EMPTY << 12) == 0 and bar2.read64((IDX_EMPTY << 12) + 0xFF8) == 0,
           "a never-written entry reads 0 through the aperture")

    # --- an entry outside guest RAM --------------------------------------------------------
    out = (OUTSIDE_GFN << 12) | g.GGTT_PRESENT
    g.ggtt_write(bar0, IDX_OUT, out, "q")
    readback(IDX_OUT, out, "with gfn 0x%x (outside guest RAM)" % OUTSIDE_GFN)
    for k in range(0, n, 128):
        bar2.write32((IDX_OUT << 12) + 4 * k, 0xC0FFEE00 | k)
    bar2.write64((IDX_OUT << 12) + 0x800, 0x1122334455667788)
    g.bar_flush(bar0)
    got = [bar2.read32((IDX_OUT << 12) + 4 * k) for k in range(0, n, 128)] + [bar2.read64((IDX_OUT << 12) + 0x800)]
    tap.ok(not any(got), "through it the aperture reads 0, also after writes (they are dropped)", "%r" % got[:4])
    hit = [name for name, buf in bufs.items()
           if any(v & 0xFFFFFF00 == 0xC0FFEE00 for v in words(buf, 0, buf.size // 4))]
    tap.ok(not hit, "no buffer received the writes made through it", "%r" % hit)
    readback(IDX_OUT, out, "outside guest RAM, after aperture accesses")

    # --- a half-written entry points at scratch until the other half arrives ---------------
    fill_e = pattern(0xE, n)
    put_words(E, 0, fill_e)
    off = g.ggtt_offset(IDX_HALF)
    bar0.write32(off, entry(E) & 0xFFFFFFFF)
    g.bar_flush(bar0)
    got = bar2.read32(IDX_HALF << 12)
    bar2.write32((IDX_HALF << 12) + 4, 0xDEADBEEF)
    g.bar_flush(bar0)
    tap.ok(got == 0 and words(E, 0, 2) == fill_e[:2],
           "only the low half written: the aperture reads 0 and drops writes",
           "read 0x%x, E starts %r" % (got, [hex(v) for v in words(E, 0, 2)]))
    bar0.write32(off + 4, entry(E) >> 32)
    readback(IDX_HALF, entry(E), "in two halves with an aperture access between them")
    tap.eq(bar2.read32((IDX_HALF << 12) + 0x100), fill_e[0x40], "after the high half the aperture reaches E")

    # --- rewriting an entry switches the page ----------------------------------------------
    put_words(A, 0, pattern(0x1A, 16))
    put_words(B, 0, pattern(0x1B, 16))
    seen_a = [bar2.read32((IDX_A << 12) + 4 * k) for k in range(16)]
    g.ggtt_write(bar0, IDX_A, entry(B), "q")
    seen_b = [bar2.read32((IDX_A << 12) + 4 * k) for k in range(16)]
    tap.ok(seen_a == pattern(0x1A, 16) and seen_b == pattern(0x1B, 16),
           "GGTT[0x%x] rewritten from A to B (8-byte): the aperture shows B" % IDX_A)
    bar2.write32((IDX_A << 12) + 0x40, 0x0B0B0B0B)
    g.bar_flush(bar0)
    tap.ok(struct.unpack_from("<I", B.mm, 0x40)[0] == 0x0B0B0B0B
           and struct.unpack_from("<I", A.mm, 0x40)[0] == pattern(0xAA, n)[0x10],
           "and an aperture write now lands in B, not A")
    g.ggtt_write(bar0, IDX_A, entry(A), "hl")
    g.bar_flush(bar0)
    tap.ok([bar2.read32((IDX_A << 12) + 4 * k) for k in range(16)] == pattern(0x1A, 16),
           "rewritten back to A in two halves (high, low): the aperture shows A again")
    g.ggtt_write(bar0, IDX_C, 0, "q")
    tap.ok(bar2.read32(IDX_C << 12) == 0 and g.ggtt_read(bar0, IDX_C) == (0, 0, 0),
           "GGTT[0x%x] cleared to 0: reads 0 from BAR0 and through the aperture" % IDX_C)

    # --- GFX_FLSH_CNTL ---------------------------------------------------------------------
    def flush_cntl():
        before = bar0.read32(g.GFX_FLSH_CNTL)
        bar0.write32(g.GFX_FLSH_CNTL, 1)
        if bar0.read64(g.PVINFO_BASE) != g.PVINFO_MAGIC:
            return "BAR0 does not answer after the write"
        after = bar0.read32(g.GFX_FLSH_CNTL)
        if after != before:
            return "GFX_FLSH_CNTL changed 0x%x -> 0x%x" % (before, after)
        if g.ggtt_read(bar0, IDX_B)[0] != entry(B) or bar2.read32(IDX_B << 12) != struct.unpack_from("<I", B.mm, 0)[0]:
            return "the GGTT or the aperture changed"
        return None
    tap.check("a write to GFX_FLSH_CNTL (0x101008) is accepted and changes nothing", flush_cntl)

    bar2.close()
    bar0.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
