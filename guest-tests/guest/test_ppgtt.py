"""The shadow PPGTT of page tables the guest builds in its own RAM, checked by the host test.

Two trees, the way i915 builds them: its own scratch page, scratch PT, scratch PD (and, for
4 levels, scratch PDP), every unused entry of every level pointing, present, at the scratch
table of the level below, a few real mappings (one read-only, one PT reached from two PDEs),
and a few entries left non-present on purpose (the device's own scratch tree must stand in
for those). First a 4-level tree (PML4 in pdp[0], g2v_notify 4), then a legacy 3-level one
(four PD roots, two of them the same scratch PD; g2v_notify 2).

For each tree: announce it; change one PTE and one PDE and announce it again (a create of the
same roots resyncs); destroy it twice (two creates make two claims). After each step the guest asks the
host test (tests/guest/test_ppgtt_guest.py), through gvtlib.HostChannel, to check the device's
shadow through the inspection socket against what the guest built, and waits for the verdict,
which becomes this step's TAP line. What the guest asks is also printed as a TAP comment,
"# ppgtt-check STAGE JSON", for the logs. Run by that host test only (it must answer): manual.
"""
# devmodel-guest: manual timeout=300
import json
import struct
import sys

import gvtlib as g

ENTRIES = 512
PRESENT, RW = 1 << 0, 1 << 1  # GEN8 PPGTT entry bits at every level
ADDR_MASK = ((1 << 48) - 1) & ~0xFFF
ASK_TIMEOUT = 180.0  # seconds the host may take for one check (TCG on a loaded machine)
GGTT_CHECK_BASE = 0x200  # GGTT entries that map the data pages too (the host compares frames)


class Memory:
    """Guest-physical pages of one locked buffer, handed out one by one."""

    def __init__(self, npages):
        self.buf = g.LockedBuffer(npages * g.PAGE)
        self.used = 0

    def take(self):
        if self.used == len(self.buf.pages):
            raise g.TestError("out of locked pages")
        self.used += 1
        return self.used - 1

    def addr(self, page):
        return self.buf.pages[page]

    def write(self, page, entries):
        struct.pack_into("<%dQ" % len(entries), self.buf.mm, page * g.PAGE, *entries)


class Page:
    """A data page (what a PTE maps), also mapped through the GGTT for the host's cross-check."""

    def __init__(self, mem, bar0, name, ggtt_index):
        self.mem, self.name, self.ggtt_index = mem, name, ggtt_index
        self.page = mem.take()
        mem.write(self.page, [(ggtt_index << 32) | k for k in range(ENTRIES)])  # recognisable contents
        g.ggtt_write(bar0, ggtt_index, self.addr | g.GGTT_PRESENT)

    @property
    def addr(self):
        return self.mem.addr(self.page)


class Table:
    """A page table in guest RAM: ``fill`` is the entry every slot starts with (i915 points the
    unused ones at the scratch table or page below)."""

    def __init__(self, mem, name, level, fill):
        self.mem, self.name, self.level = mem, name, level
        self.page = mem.take()
        self.entries = [fill] * ENTRIES

    @property
    def addr(self):
        return self.mem.addr(self.page)

    def point(self, index, target, flags=PRESENT | RW):
        self.entries[index] = target.addr | flags

    def write(self):
        self.mem.write(self.page, self.entries)


def entry(target, flags=PRESENT | RW):
    return target.addr | flags


def table_refs(roots, tables):
    """Parent references the device should count: every root pointer plus every present entry
    of a distinct table that names another table."""
    by_addr = {t.addr: t for t in tables}
    refs = len(roots)
    for t in tables:
        refs += sum(1 for e in t.entries if e & PRESENT and (e & ADDR_MASK) in by_addr)
    return refs


def page_check(what, gma, page, writable=True):
    return {"what": what, "gma": hex(gma), "page_gfn": hex(page.addr >> 12),
            "ggtt_gma": hex(page.ggtt_index << 12), "writable": writable}


def scratch_check(what, gma, level):
    """gma's guest walk stops at a non-present entry of ``level``: the device's scratch."""
    return {"what": what, "gma": hex(gma), "scratch_at": level}


def gma4(pml4, pdp, pd, pt, off=0):
    return pml4 << 39 | pdp << 30 | pd << 21 | pt << 12 | off


def gma3(slot, pd, pt, off=0):
    return slot << 30 | pd << 21 | pt << 12 | off


class Run:
    def __init__(self, tap, bar0, host):
        self.tap, self.bar0, self.host = tap, bar0, host

    def stage(self, tag, desc, payload):
        self.tap.diag("ppgtt-check %s %s" % (tag, json.dumps(payload, separators=(",", ":"))))
        try:
            verdict = self.host.ask(tag, payload, ASK_TIMEOUT)
        except g.TestError as e:
            self.tap.bail("%s: %s" % (tag, e))
        self.tap.ok(verdict == "ok", "%s (checked by the host)" % desc, verdict)


def four_level(run, mem, pages):
    A, B, C = pages["A"], pages["B"], pages["C"]
    sp = Page(mem, run.bar0, "scratch page", GGTT_CHECK_BASE + 8)
    spt = Table(mem, "scratch PT", "pt", entry(sp))
    spd = Table(mem, "scratch PD", "pd", entry(spt))
    spdp = Table(mem, "scratch PDP", "pdp", entry(spd))
    pml4 = Table(mem, "PML4", "pml4", entry(spdp))
    pdp = Table(mem, "PDP", "pdp", entry(spd))
    pd = Table(mem, "PD", "pd", entry(spt))
    pt = Table(mem, "PT", "pt", entry(sp))
    # Real path: PML4[1] -> PDP[2] -> PD[3] (and PD[200], the same PT) -> PT[4] = A, PT[5] = B (read-only).
    pml4.point(1, pdp)
    pdp.point(2, pd)
    pd.point(3, pt)
    pd.point(200, pt)
    pt.point(4, A)
    pt.point(5, B, PRESENT)
    # Holes: non-present entries at every level.
    pml4.entries[7] = 0
    pdp.entries[8] = 0
    pd.entries[9] = 0
    pt.entries[10] = 0
    tables = [spt, spd, spdp, pml4, pdp, pd, pt]
    for t in tables:
        t.write()
    roots = [pml4.addr]
    run.tap.diag("4-level: " + ", ".join("%s 0x%x" % (t.name, t.addr) for t in tables))

    def change():
        pt.point(4, C)  # was A
        pt.write()
        pd.point(150, pt)  # was the scratch PT
        pd.write()

    def checks(changed):
        mapped = C if changed else A
        return [
            page_check("PT[4]", gma4(1, 2, 3, 4, 0x7F8), mapped),
            page_check("PT[5], read-only", gma4(1, 2, 3, 5), B, writable=False),
            page_check("PT[4] through PD[200] (the same PT)", gma4(1, 2, 200, 4), mapped),
            page_check("PT[4] through PD[150] (scratch PT, then the PT)", gma4(1, 2, 150, 4), C if changed else sp),
            page_check("unused PTE -> scratch page", gma4(1, 2, 3, 11), sp),
            page_check("unused PDE -> scratch PT", gma4(1, 2, 100, 0), sp),
            page_check("unused PDPE -> scratch PD", gma4(1, 44, 0, 0), sp),
            page_check("unused PML4E -> scratch PDP", gma4(2, 0, 0, 0), sp),
            page_check("last page of the 48-bit space", gma4(511, 511, 511, 511, 0xFFF), sp),
            scratch_check("non-present PTE", gma4(1, 2, 3, 10), "pt"),
            scratch_check("non-present PDE", gma4(1, 2, 9, 0), "pd"),
            scratch_check("non-present PDPE", gma4(1, 8, 0, 0), "pdp"),
            scratch_check("non-present PML4E", gma4(7, 0, 0, 0), "pml4"),
        ]

    same = [
        {"level": "pt", "gmas": [hex(gma4(1, 2, 3, 0)), hex(gma4(1, 2, 200, 0))]},  # one shadow per guest table
        {"level": "pt", "gmas": [hex(gma4(1, 2, 100, 0)), hex(gma4(1, 44, 0, 0)), hex(gma4(2, 0, 0, 0))]},
        {"level": "pd", "gmas": [hex(gma4(1, 44, 0, 0)), hex(gma4(2, 0, 0, 0)), hex(gma4(511, 1, 0, 0))]},
        {"level": "pdp", "gmas": [hex(gma4(2, 0, 0, 0)), hex(gma4(511, 0, 0, 0))]},
    ]
    announce(run, "l4", g.G2V_PPGTT_L4_CREATE, g.G2V_PPGTT_L4_DESTROY, roots, tables, checks, same, change)


def three_level(run, mem, pages):
    A, B, C = pages["A"], pages["B"], pages["C"]
    sp = Page(mem, run.bar0, "scratch page", GGTT_CHECK_BASE + 9)
    spt = Table(mem, "scratch PT", "pt", entry(sp))
    spd = Table(mem, "scratch PD", "pd", entry(spt))
    pd0 = Table(mem, "PD0", "pd", entry(spt))
    pd2 = Table(mem, "PD2", "pd", entry(spt))
    pt0 = Table(mem, "PT0", "pt", entry(sp))
    pt2 = Table(mem, "PT2", "pt", entry(sp))
    pd0.point(5, pt0)
    pd0.entries[6] = 0
    pt0.point(7, A)
    pt0.entries[8] = 0
    pd2.point(511, pt2)
    pt2.point(0, B, PRESENT)
    tables = [spt, spd, pd0, pd2, pt0, pt2]
    for t in tables:
        t.write()
    # Four PD roots, as i915's legacy 32-bit PPGTT announces them; slots 1 and 3 share the scratch PD.
    roots = [pd0.addr, spd.addr, pd2.addr, spd.addr]
    run.tap.diag("3-level: " + ", ".join("%s 0x%x" % (t.name, t.addr) for t in tables))

    def change():
        pt0.point(7, C)  # was A
        pt0.write()
        pd0.point(100, pt0)  # was the scratch PT
        pd0.write()

    def checks(changed):
        mapped = C if changed else A
        return [
            page_check("PD0[5] PT0[7]", gma3(0, 5, 7, 0x10), mapped),
            page_check("PD0[100] PT0[7] (scratch PT, then PT0)", gma3(0, 100, 7), C if changed else sp),
            page_check("PD2[511] PT2[0], read-only", gma3(2, 511, 0), B, writable=False),
            page_check("unused PTE -> scratch page", gma3(0, 5, 9), sp),
            page_check("unused PDE -> scratch PT", gma3(2, 17, 3), sp),
            page_check("slot 1 (the scratch PD)", gma3(1, 0, 0), sp),
            page_check("last page of the 32-bit space", gma3(3, 511, 511, 0xFFC), sp),
            scratch_check("non-present PTE", gma3(0, 5, 8), "pt"),
            scratch_check("non-present PDE", gma3(0, 6, 0), "pd"),
        ]

    same = [
        {"level": "pd", "gmas": [hex(gma3(1, 0, 0)), hex(gma3(3, 0, 0))]},  # one root table at two slots
        {"level": "pt", "gmas": [hex(gma3(0, 101, 0)), hex(gma3(1, 2, 0)), hex(gma3(2, 17, 0)), hex(gma3(3, 4, 0))]},
    ]
    announce(run, "l3", g.G2V_PPGTT_L3_CREATE, g.G2V_PPGTT_L3_DESTROY, roots, tables, checks, same, change)


def announce(run, name, create, destroy, roots, tables, checks, same, change):
    """Create, check; change one PTE and one PDE, create again, check the resync; destroy twice.

    What the resync must have rewritten (docs/ppgtt.md): a changed PT is re-translated whole
    (512 entries, one vector operation), a changed directory only in the entries that differ;
    every other table is compared with its snapshot and left alone."""
    kind = name.upper()
    base = {"kind": kind, "roots": [hex(r) for r in roots]}

    def mm(**more):
        return dict(tables=len(tables), references=table_refs(roots, tables), **more)

    g.g2v_ppgtt(run.bar0, create, roots)
    run.stage(name + "-create", "%s tree announced: the shadow maps what the guest maps" % kind,
              dict(base, mm=mm(claims=1, resyncs=1, changed=None), checks=checks(False), same_table=same))

    change()
    g.g2v_ppgtt(run.bar0, create, roots)
    run.stage(name + "-resync", "%s: one PTE and one PDE changed, announced again: only those are re-shadowed"
              % kind, dict(base, mm=mm(claims=2, resyncs=2, changed=[2, ENTRIES + 1]), checks=checks(True),
                           same_table=same))

    g.g2v_ppgtt(run.bar0, destroy, roots)
    run.stage(name + "-destroy-1", "%s: the first destroy leaves the second claim" % kind,
              dict(base, mm={"claims": 1}))
    g.g2v_ppgtt(run.bar0, destroy, roots)
    run.stage(name + "-destroy-2", "%s: the second destroy drops the shadow" % kind, dict(base, mm=None))


def main():
    tap = g.Tap(10)
    try:
        dev = g.find_device()
        dev.enable_memory()
        bar0 = dev.bar(0)
        host = g.HostChannel()
        mem = Memory(24)
        pages = {name: Page(mem, bar0, name, GGTT_CHECK_BASE + k) for k, name in enumerate("ABC")}
    except (g.TestError, OSError, ValueError) as e:
        tap.bail("setup: %s" % e)
    tap.eq(bar0.read64(g.PVINFO_BASE), g.PVINFO_MAGIC, "PVINFO magic")
    run = Run(tap, bar0, host)
    four_level(run, mem, pages)
    three_level(run, mem, pages)
    frames = g.virt_to_phys_pages(mem.buf.vaddr, len(mem.buf.pages))
    tap.ok(frames == mem.buf.pages, "the locked pages stayed at their guest-physical frames throughout",
           "frames moved: the checks above may have seen stale addresses")
    bar0.close()
    host.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
