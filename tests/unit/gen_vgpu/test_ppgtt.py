"""The shadow PPGTT case by case: the scratch tree, the i915 pattern, huge pages, hostile trees,
the DMA map, the mm lifecycle, stepped resyncs and the walker."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from devmodel import accel as accel_module
from devmodel.device.dma import PROT_READ, PROT_WRITE, DmaMap
from devmodel.errors import OutOfRange
from devmodel.testing import GuestMemory
from gen_vgpu.gtt.lanes import LANES
from gen_vgpu.gtt.mm import Ppgtt, ResyncStats, RootKind, ShadowMm, parse_roots
from gen_vgpu.gtt.ops import GEN8_PTE_OPS as OPS
from gen_vgpu.gtt.shadow import BULK_CHUNK, DIRECTORY_CHUNK
from gen_vgpu.gtt.shadow_accel import has_shadow_accel
from gen_vgpu.gtt.types import GttType
from gen_vgpu.gtt.walker import ShadowWalker

from .ppgtt_model import IPS, PRESENT, PS, RW, check_structure, reference_walk

T = GttType
RWP = PRESENT | RW
MEM = 8 << 20  # gfns 0..0x7FF


class Guest:
    def __init__(self, has_ips: bool = True, cap: int = 4096, max_mms: int = 1024, compiled: bool = False) -> None:
        self.mem = GuestMemory(MEM)
        self.dma = DmaMap()
        self.window = self.dma.add(0, MEM, PROT_READ | PROT_WRITE, self.mem.dup_fd())
        accel = accel_module.load(True) if compiled else None
        self.ppgtt = Ppgtt(self.dma, OPS, has_ips=has_ips, max_shadow_pages=cap, max_mms=max_mms, accel=accel)
        self.compiled = self.ppgtt.store.accel is not None
        assert self.compiled == compiled
        self.walker = ShadowWalker(self.ppgtt)

    def put(self, gfn: int, index: int, entry: int) -> None:
        self.mem.write((gfn << 12) + 8 * index, entry.to_bytes(8, "little"))

    def fill(self, gfn: int, entry: int) -> None:
        self.mem.write(gfn << 12, entry.to_bytes(8, "little") * 512)

    def submit(self, kind: RootKind, roots: tuple[int, ...]) -> ShadowMm:
        mm, task = self.ppgtt.pin(kind, roots)
        task.run()
        self.ppgtt.unpin(mm)
        return mm

    def hfn(self, gfn: int) -> int:
        hfn = self.dma.gfn_to_hfn(gfn)
        assert hfn is not None
        return hfn

    def close(self) -> None:
        self.dma.remove_all()
        self.mem.close()


COMPILED = has_shadow_accel(accel_module.load(True))


@pytest.fixture(params=["python", "compiled"])
def guest(request: pytest.FixtureRequest) -> Iterator[Guest]:
    """Each test on the Python path and with the compiled accelerator's per-table work."""
    if request.param == "compiled" and not COMPILED:
        pytest.skip("the compiled accelerator is not installed")
    g = Guest(compiled=request.param == "compiled")
    yield g
    g.close()


def test_scratch_tree_levels_point_down(guest: Guest) -> None:
    s = guest.ppgtt.scratch
    dma = guest.dma
    for pt_type, below in [
        (T.PPGTT_PDE_PT, s.table_hfn[T.PPGTT_PTE_PT]),
        (T.PPGTT_PDP_PT, s.table_hfn[T.PPGTT_PDE_PT]),
        (T.PPGTT_PML4_PT, s.table_hfn[T.PPGTT_PDP_PT]),
    ]:
        page = dma.page(s.table_hfn[pt_type])
        assert page is not None
        assert set(page.cast("Q")) == {OPS.build(below)}
    pt = dma.page(s.table_hfn[T.PPGTT_PTE_PT])
    assert pt is not None and set(pt.cast("Q")) == {s.leaf_entry}
    assert s.leaf_entry & PRESENT and not s.leaf_entry & RW  # stores through scratch are dropped
    data = dma.page(s.page_hfn)
    assert data is not None and not any(data)


def test_absent_roots_walk_the_scratch_tree(guest: Guest) -> None:
    for kind, roots in [(RootKind.L4, (0,)), (RootKind.L3, (0, 0, 0, 0))]:
        mm = guest.submit(kind, roots)
        run = guest.walker.translate(mm, 0x1234)
        assert run.hfn is None and not run.writable
        path = guest.walker.explain(mm, 0)["shadow_path"]
        assert all(level["scratch_table"] for level in path)


def i915_tree(g: Guest, pts: int) -> int:
    """i915's layout: scratch page 10, PT 11, PD 12, PDP 13 in the guest; real PML4 20, PDP 21,
    PD 22 and ``pts`` PTs from 30; every unused entry points at the guest's scratch tables."""
    g.fill(11, 10 << 12 | RWP)
    g.fill(12, 11 << 12 | RWP)
    g.fill(13, 12 << 12 | RWP)
    g.fill(20, 13 << 12 | RWP)
    g.fill(21, 12 << 12 | RWP)
    g.fill(22, 11 << 12 | RWP)
    g.put(20, 0, 21 << 12 | RWP)
    g.put(21, 0, 22 << 12 | RWP)
    for p in range(pts):
        g.put(22, p, (30 + p) << 12 | RWP)
        g.mem.write(
            (30 + p) << 12, b"".join(((0x400 + 512 * p + i) << 12 | RWP).to_bytes(8, "little") for i in range(512))
        )
    return 20 << 12


def test_i915_pattern_costs_distinct_tables(guest: Guest) -> None:
    root = i915_tree(guest, 2)
    mm = guest.submit(RootKind.L4, (root,))
    stats = guest.ppgtt.mm_stats(mm)
    # PML4, PDP, PD, 2 PTs and the guest's scratch PDP, PD, PT: 8 tables for 2^36 paths.
    assert stats["tables"] == 8 == len(guest.ppgtt.store)
    assert mm.last_resync.tables == 8
    # Per shadow table, each parent entry counts once: no path is expanded.
    assert stats["references"] == 1 + 1 + 1 + 2 + 511 + (511 + 512) + (510 + 512)
    # A resync with nothing changed compares the same 8 tables and rewrites nothing.
    guest.submit(RootKind.L4, (root,))
    assert (mm.last_resync.tables, mm.last_resync.entries_changed) == (8, 0)
    far = (300 << 39) | (7 << 30) | (9 << 21)
    assert guest.walker.translate(mm, far).hfn == guest.hfn(10)  # the guest's own scratch page
    check_structure(guest.ppgtt, guest.mem, synced=True)


def test_resync_reshadows_only_what_changed_add_before_remove(guest: Guest) -> None:
    root = i915_tree(guest, 2)
    mm = guest.submit(RootKind.L4, (root,))
    guest.put(31, 5, 0x7FF << 12 | PRESENT)  # one PTE, read-only now
    guest.submit(RootKind.L4, (root,))
    assert (mm.last_resync.tables, mm.last_resync.tables_changed) == (8, 1)
    run = guest.walker.translate(mm, (1 << 21) | (5 << 12))
    assert (run.hfn, run.writable) == (guest.hfn(0x7FF), False)
    # Re-pointing the PD entry from PT 31 to the guest scratch PT frees PT 31's shadow.
    before = len(guest.ppgtt.store)
    guest.put(22, 1, 11 << 12 | RWP)
    guest.submit(RootKind.L4, (root,))
    assert len(guest.ppgtt.store) == before - 1
    check_structure(guest.ppgtt, guest.mem, synced=True)


def test_huge_pages(guest: Guest) -> None:
    guest.put(1, 0, 2 << 12 | RWP)  # L3 root 1 is PD 1... 4-level: PML4 1 -> PDP 2 -> PD 3
    guest.put(2, 0, 3 << 12 | RWP)
    guest.put(3, 0, 0x200 << 12 | RWP | PS | (1 << 12))  # 2 MiB with PAT
    guest.put(3, 1, 4 << 12 | RWP | IPS)  # 64 KiB pages in PT 4
    guest.put(4, 0, 0x310 << 12 | RWP)
    guest.put(4, 16, 0x320 << 12 | PRESENT)
    guest.put(2, 1, 0x40000 << 12 | RWP | PS)  # 1 GiB: scratch
    mm = guest.submit(RootKind.L4, (1 << 12,))
    runs = guest.walker.runs(mm, 0, 2 << 20)
    assert runs == [type(runs[0])(0, 2 << 20, guest.hfn(0x200), True)]
    assert guest.walker.leaf_entry(mm, 0x5000) & 0xFFF == RWP | PS  # PAT moved to bit 7
    assert guest.walker.translate(mm, (1 << 21) + 0x3000).hfn == guest.hfn(0x313)
    sixty_four = guest.walker.translate(mm, (1 << 21) + (16 << 12) + 0x2000)
    assert (sixty_four.hfn, sixty_four.writable) == (guest.hfn(0x322), False)
    assert guest.walker.translate(mm, (1 << 30) + 0x1000).hfn is None
    check_structure(guest.ppgtt, guest.mem, synced=True)


def test_bdw_ignores_ips() -> None:
    g = Guest(has_ips=False)
    try:
        g.put(1, 0, 2 << 12 | RWP | IPS)
        g.put(2, 1, 0x310 << 12 | RWP)
        mm = g.submit(RootKind.L3, (1 << 12, 0, 0, 0))
        assert g.walker.translate(mm, 0x1000).hfn == g.hfn(0x310)  # slot 1 is a 4 KiB page
    finally:
        g.close()


def test_hostile_trees_stay_bounded(guest: Guest, caplog: pytest.LogCaptureFixture) -> None:
    guest.put(1, 0, 1 << 12 | RWP)  # the PML4 points at itself: a PDP, a PD and a PT too
    guest.put(1, 1, 0xFFFFFFFFFFFFFFFF)  # garbage
    guest.put(1, 2, (1 << 34) - 1 << 12 | RWP)  # outside guest RAM
    mm = guest.submit(RootKind.L4, (1 << 12,))
    keys = {t.key for t in guest.ppgtt.store.tables.values()}
    assert {k[1] for k in keys if k[0] == "guest"} == {T.PPGTT_PML4_PT, T.PPGTT_PDP_PT, T.PPGTT_PDE_PT, T.PPGTT_PTE_PT}
    assert guest.walker.translate(mm, 0).hfn == guest.hfn(1)  # the table read as a page
    check_structure(guest.ppgtt, guest.mem, synced=True)
    # Millions of entries: every table full of pointers to fresh tables, under a cap of 64.
    g = Guest(cap=64)
    try:
        for gfn in range(1, 600):
            g.mem.write(
                gfn << 12, b"".join(((gfn * 7 + i) % 0x7FF << 12 | RWP).to_bytes(8, "little") for i in range(512))
            )
        with caplog.at_level(logging.WARNING):
            mm = g.submit(RootKind.L4, (1 << 12,))
            g.submit(RootKind.L4, (1 << 12,))
        assert len(g.ppgtt.store) <= 64
        assert mm.last_resync.tables <= 64
        assert g.ppgtt.counters.refused > 0
        assert sum("cap is reached" in r.message for r in caplog.records) == 1  # logged once
        check_structure(g.ppgtt, g.mem, synced=True)
    finally:
        g.close()


def test_dma_unmap_stops_using_frames_and_map_brings_them_back() -> None:
    mem = GuestMemory(MEM)
    dma = DmaMap()
    tables = dma.add(0, 0x100000, PROT_READ | PROT_WRITE, mem.dup_fd())
    data = dma.add(0x100000, 0x100000, PROT_READ, mem.dup_fd(), 0x100000)  # gfns 0x100..0x1FF
    ppgtt = Ppgtt(dma, OPS, has_ips=False)
    walker = ShadowWalker(ppgtt)
    try:
        mem.write(1 << 12, (2 << 12 | RWP).to_bytes(8, "little"))
        mem.write(2 << 12, b"".join(((0x100 + i) << 12 | RWP).to_bytes(8, "little") for i in range(512)))
        mm, task = ppgtt.pin(RootKind.L3, (1 << 12, 0, 0, 0))
        task.run()
        run = walker.translate(mm, 0x5000)
        assert run.hfn == data.hfn_base + 5 and not run.writable  # read-only window
        dma.remove_range(data.iova, data.size)
        # Before the unmap returned, the shadow let go of the window's frames.
        assert walker.translate(mm, 0x5000).hfn is None
        check_structure(ppgtt, mem, synced=False)
        again = dma.add(0x100000, 0x100000, PROT_READ | PROT_WRITE, mem.dup_fd(), 0x100000)
        ppgtt.pin(RootKind.L3, (1 << 12, 0, 0, 0))[1].run()
        run = walker.translate(mm, 0x5000)
        assert (run.hfn, run.writable) == (again.hfn_base + 5, True)
        # The tables' own window going away: everything below the roots becomes scratch.
        dma.remove_range(tables.iova, tables.size)
        ppgtt.pin(RootKind.L3, (1 << 12, 0, 0, 0))[1].run()
        assert walker.translate(mm, 0x5000).hfn is None
        check_structure(ppgtt, mem, synced=True)
    finally:
        dma.remove_all()
        mem.close()


def test_mm_lifecycle_g2v_lru_and_reset() -> None:
    g = Guest(cap=6)
    try:
        for pd in (2, 6):  # two L3 trees of 2 tables each (PD + PT)
            g.put(pd, 0, (pd + 1) << 12 | RWP)
            g.put(pd + 1, 0, (0x100 + pd) << 12 | RWP)
        a, b = (RootKind.L3, (2 << 12, 0, 0, 0)), (RootKind.L3, (6 << 12, 0, 0, 0))
        job = g.ppgtt.notify_create(*a) or g.ppgtt.background
        assert job is not None
        job.run()
        mm_a = g.ppgtt.find(*a)
        assert mm_a is not None and mm_a.claims == 1 and mm_a.shadowed
        assert g.ppgtt.get(*a) is mm_a  # found again for the same roots
        pinned, task = g.ppgtt.pin(*b)
        task.run()
        # The cap (6) holds both; a third tree forces the least recently used idle mm out.
        for gfn in (9, 10, 11):
            g.put(gfn, 0, (gfn + 1) << 12 | RWP)
        g.put(12, 0, 0x300 << 12 | RWP)
        c = (RootKind.L4, (9 << 12,))
        mm_c = g.submit(*c)
        assert not mm_a.shadowed and pinned.shadowed and mm_c.shadowed
        assert g.ppgtt.reclaims == 1
        assert g.walker.translate(pinned, 0).hfn == g.hfn(0x106)
        # A reclaimed mm is shadowed again at its next pin.
        g.ppgtt.unpin(pinned)
        g.submit(*a)
        assert mm_a.shadowed and g.walker.translate(mm_a, 0).hfn == g.hfn(0x102)
        # Destroy while pinned: the mm goes at the unpin.
        mm, task = g.ppgtt.pin(*a)
        task.run()
        g.ppgtt.notify_destroy(*a)
        assert mm.alive
        g.ppgtt.unpin(mm)
        assert not mm.alive and g.ppgtt.find(*a) is None
        g.ppgtt.reset()
        assert not g.ppgtt.mms and len(g.ppgtt.store) == 0
        assert set(g.dma._device_pages) == set(g.ppgtt.scratch.hfns)
    finally:
        g.close()


def test_stepped_resync_returns_between_tables(guest: Guest) -> None:
    root = i915_tree(guest, 4)
    mm, task = guest.ppgtt.pin(RootKind.L4, (root,))
    steps = 1
    while task.step(0.0):  # a deadline already passed: one leaf (or batch of leaves) per step
        steps += 1
    # A new directory re-shadows its 512 entries DIRECTORY_CHUNK per step. The last step only
    # finds the work done. The compiled path takes a PD's entries BULK_CHUNK per step and syncs
    # the PTs they create (4 PTs and the guest's scratch PT) within those steps.
    per_directory = LANES // DIRECTORY_CHUNK
    if guest.compiled:
        expected = 3 * per_directory + 2 * (LANES // BULK_CHUNK) + 1  # PML4, 2 PDPs; 2 PDs
    else:
        expected = 5 * per_directory + 6
    assert steps == mm.last_resync.steps == expected
    assert mm.last_resync.tables == 10
    check_structure(guest.ppgtt, guest.mem, synced=True)
    # Cancelled halfway, the mm can still be reclaimed or destroyed.
    mm.flat = None  # a walk (the compiled path compares an unchanged tree in one call)
    task = guest.ppgtt.pin(RootKind.L4, (root,))[1]
    assert task.step(0.0)
    task.cancel()
    assert mm.resyncing == 0


def test_overlapping_directory_syncs_leave_no_stale_snapshot(guest: Guest) -> None:
    """Two mms share a PD; one's sync of it is halfway when the guest changes an entry the
    first chunk did and the other mm's sync runs whole. Whatever the first then records as
    the PD's snapshot, a guest that writes the entry back must see it followed."""
    for pml4 in (1, 4):
        guest.put(pml4, 0, 2 << 12 | RWP)  # both PML4s -> PDP 2 -> PD 3
    guest.put(2, 0, 3 << 12 | RWP)
    for pt, page in ((10, 0x100), (11, 0x101), (12, 0x102)):
        guest.put(pt, 0, page << 12 | RWP)
    guest.fill(3, 10 << 12 | RWP)
    first, second = (RootKind.L4, (1 << 12,)), (RootKind.L4, (4 << 12,))
    mm = guest.submit(*first)
    guest.submit(*second)
    assert guest.walker.translate(mm, 0).hfn == guest.hfn(0x100)
    guest.fill(3, 11 << 12 | RWP)
    mm, task = guest.ppgtt.pin(*first)
    while task._job is None or task._job.table.gfn != 3 or task._job.pos == 0:
        assert task.step(0.0)
    guest.put(3, 0, 12 << 12 | RWP)
    guest.submit(*second)
    while task.step(0.0):
        pass
    guest.ppgtt.unpin(mm)
    guest.put(3, 0, 11 << 12 | RWP)  # back to what the first sync read
    guest.submit(*first)
    assert guest.walker.translate(mm, 0).hfn == guest.hfn(0x101)
    check_structure(guest.ppgtt, guest.mem, synced=True)


def test_runs_of_a_surface_and_address_checks(guest: Guest) -> None:
    root = i915_tree(guest, 2)
    guest.put(30, 3, 0x7FE << 12 | PRESENT)
    mm = guest.submit(RootKind.L4, (root,))
    runs = guest.walker.runs(mm, 0x800, (4 << 20) - 0x800)  # what the two PTs map
    assert [(r.gma, r.size, r.writable) for r in runs] == [
        (0x800, 0x2800, True),
        (0x3000, 0x1000, False),
        (0x4000, (4 << 20) - 0x4000, True),
    ]
    assert runs[0].hfn == guest.hfn(0x400) and runs[2].hfn == guest.hfn(0x404)
    for r in runs:
        for off in range(0, r.size, 0x1000):
            want = reference_walk(guest.mem, guest.dma, RootKind.L4, (root,), r.gma + off, True)
            assert guest.walker.translate(mm, r.gma + off).hfn == want[0]
    with pytest.raises(OutOfRange):
        guest.walker.runs(mm, (1 << 48) - 0x1000, 0x2000)
    l3 = guest.submit(RootKind.L3, (0, 0, 0, 0))
    with pytest.raises(OutOfRange):
        guest.walker.translate(l3, 1 << 32)


def test_parse_roots_and_explain(guest: Guest) -> None:
    assert parse_roots("0x1000") == (RootKind.L4, (0x1000,))
    assert parse_roots("0x1000,0x2000,0,0") == (RootKind.L3, (0x1000, 0x2000, 0, 0))
    for bad in ("", "1,2", "x"):
        with pytest.raises(ValueError):
            parse_roots(bad)
    root = i915_tree(guest, 1)
    mm = guest.submit(RootKind.L4, (root,))
    info = guest.walker.explain(mm, 0x7000)
    assert [lvl["level"] for lvl in info["guest_path"]] == ["root", "pml4", "pdp", "pd", "pt"]
    assert info["guest_path"][-1]["page_gfn"] == hex(0x407)
    assert info["host_frame"] == hex(guest.hfn(0x407))
    assert info["mm"]["tables"] == 7


@pytest.mark.parametrize("seed", range(6))
def test_runs_equal_a_page_by_page_walk(guest: Guest, seed: int) -> None:
    """Runs of PTs made of consecutive stretches (taken whole by the walker), repeated frames,
    read-only pages, gaps and frames outside RAM: the runs cover the range exactly, and every
    page in a run is the run's first frame plus its offset, with the run's permission."""
    import itertools
    import random

    rng = random.Random(seed)
    root = i915_tree(guest, 2)
    frame = 0x400
    for p in range(2):
        # Some PTs map consecutive frames throughout (read-only in some): taken whole.
        clean = (seed + p) % 3
        frame = 0x400 + 0x100 * p
        for i in range(512):
            kind = rng.random() if clean == 0 else 0.2 if clean == 1 else 0.08
            if kind < 0.05:
                frame = rng.randrange(0x400, 0x7F0)  # a jump: a new run
            if kind < 0.03:
                entry = 0  # not present: scratch
            elif kind < 0.06:
                entry = 0x9_0000 << 12 | RWP  # outside guest RAM: scratch
            elif kind < 0.1:
                entry = frame << 12 | PRESENT  # read-only
            else:
                entry = frame << 12 | RWP
            guest.put(30 + p, i, entry)
            frame = min(frame + 1, 0x7FF)
    mm = guest.submit(RootKind.L4, (root,))
    gma, size = rng.randrange(0, 0x1000), (4 << 20) - 0x1000
    runs = guest.walker.runs(mm, gma, size)
    assert runs[0].gma == gma and sum(r.size for r in runs) == size
    assert all(a.gma + a.size == b.gma for a, b in itertools.pairwise(runs))
    for r in runs:
        for off in range(0, r.size, 0x1000):
            page = guest.walker.translate(mm, r.gma + off)
            base = (r.gma + off) & ~0xFFF
            k = (base - (r.gma & ~0xFFF)) >> 12
            assert page.hfn == (None if r.hfn is None else r.hfn + k)
            assert page.writable == r.writable

    def __init__(self, has_ips: bool = True, cap: int = 4096, max_mms: int = 1024, compiled: bool = False) -> None:
        self.mem = GuestMemory(MEM)
        self.dma = DmaMap()
        self.window = self.dma.add(0, MEM, PROT_READ | PROT_WRITE, self.mem.dup_fd())
        accel = accel_module.load(True) if compiled else None
        self.ppgtt = Ppgtt(self.dma, OPS, has_ips=has_ips, max_shadow_pages=cap, max_mms=max_mms, accel=accel)
        self.compiled = self.ppgtt.store.accel is not None
        assert self.compiled == compiled


def _pd_of_many_pts(g: Guest) -> int:
    """PML4 40 -> PDP 41 -> PD 42, whose entries 0..199 name PTs 100..299 (each mapping 512
    pages), with holes: non-present entries, entries naming a PT outside guest memory, two
    entries naming one PT, an entry naming the PD itself."""
    g.put(40, 0, 41 << 12 | RWP)
    g.put(41, 0, 42 << 12 | RWP)
    for i in range(200):
        g.put(42, i, (100 + i) << 12 | RWP)
        g.mem.write((100 + i) << 12, b"".join(((0x400 + i + k) << 12 | RWP).to_bytes(8, "little") for k in range(512)))
    g.put(42, 7, 0)
    g.put(42, 70, 0x12345 << 12 | RWP)  # no guest memory there: scratch, rebuilt at a map
    g.put(42, 71, 100 << 12 | RWP)  # the PT of entry 0 again
    g.put(42, 300, 42 << 12 | RWP)  # the PD read as a PT
    return 40 << 12


def _shadow_state(g: Guest, mm: ShadowMm) -> tuple[object, int, int, ResyncStats]:
    """What a shadow holds, without the frames the two paths may number differently: per PD
    entry the guest table of its child (or its raw value: scratch), and every table's entries
    with child frames replaced by the child's key."""
    by_hfn = g.ppgtt.store.by_hfn
    tables = []
    for t in sorted(g.ppgtt.store.tables.values(), key=lambda t: repr(t.key)):
        entries = []
        for e in t.entries:
            child = by_hfn.get(OPS.get_pfn(e))
            entries.append((child.key, e & ~OPS.addr_mask) if child is not None else e)
        tables.append((t.key, t.refs, tuple(entries)))
    c = g.ppgtt.counters
    return tuple(tables), c.refused, c.tables_created - c.tables_freed, mm.last_resync


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
@pytest.mark.parametrize("cap", [4096, 120, 3])
@pytest.mark.parametrize("device_pages", [None, 90])
def test_bulk_pd_chunks_equal_the_entry_by_entry_path(cap: int, device_pages: int | None) -> None:
    """The compiled path creates and syncs a PD's new PTs a chunk at a time; with room, at the
    shadow-page cap (the chunk falls back to the loop, table by table) and with too few device
    pages (NoSpace), it holds what the Python path holds, entry for entry, and refuses as much."""
    states = []
    for compiled in (False, True):
        g = Guest(cap=cap, compiled=compiled)
        if device_pages is not None:
            g.dma = DmaMap(max_device_pages=device_pages)
            g.window = g.dma.add(0, MEM, PROT_READ | PROT_WRITE, g.mem.dup_fd())
            accel = accel_module.load(True) if compiled else None
            g.ppgtt = Ppgtt(g.dma, OPS, has_ips=True, max_shadow_pages=cap, accel=accel)
            g.walker = ShadowWalker(g.ppgtt)
        try:
            mm = g.submit(RootKind.L4, (_pd_of_many_pts(g),))
            check_structure(g.ppgtt, g.mem, synced=True)
            state = _shadow_state(g, mm)
            # A second resync finds nothing to do; one PT changed is found and redone.
            again = g.submit(RootKind.L4, (40 << 12,))
            assert again.last_resync.tables_changed == 0
            g.put(150, 3, 0x500 << 12 | PRESENT)
            g.put(42, 5, 0)  # PD entry 5 dropped: its PT goes
            g.submit(RootKind.L4, (40 << 12,))
            check_structure(g.ppgtt, g.mem, synced=True)
            states.append((state, _shadow_state(g, mm)))
        finally:
            g.close()
    (py_first, py_then), (c_first, c_then) = states
    assert c_first[:3] == py_first[:3]
    assert c_then[:3] == py_then[:3]
    # The walk's figures are the same too: every table visited once, the new ones changed.
    for py, c in ((py_first[3], c_first[3]), (py_then[3], c_then[3])):
        assert (c.tables, c.tables_changed, c.entries_changed) == (py.tables, py.tables_changed, py.entries_changed)


def _pd_of_new_pts(g: Guest, case: str) -> int:
    """PML4 40 -> PDP 41 -> PD 42, every entry present and naming its own PT (gfns 0x100..0x2FF,
    each mapping 512 pages of 0x400..0x7FF), as a 1 GiB tree and i915's PDs are: the compiled
    path creates and syncs such a PD's PTs a chunk at a time in C (TableStore._fresh_pts).
    ``case`` spoils one chunk: "2 windows" (data pages of PT 3 in the second window),
    "table split" (the PTs of a chunk in two windows), "shared" (a PT of the PD already shadowed
    under PD 43), "read-only" (the window of the data pages, 0x400..0x7FF, read only)."""
    g.put(40, 0, 41 << 12 | RWP)
    g.put(41, 0, 42 << 12 | RWP)
    for i in range(LANES):
        g.put(42, i, (0x100 + i) << 12 | RWP)
        g.mem.write(
            (0x100 + i) << 12,
            b"".join(((0x400 + (i + k) % 0x400) << 12 | RWP).to_bytes(8, "little") for k in range(512)),
        )
    if case == "shared":
        g.put(41, 1, 43 << 12 | RWP)
        g.put(43, 0, (0x100 + 200) << 12 | RWP)
        g.submit(RootKind.L4, (40 << 12,))  # PD 42 and 43 shadowed: drop PD 42's and redo it
        g.put(41, 0, 0)
        g.submit(RootKind.L4, (40 << 12,))
        g.put(41, 0, 42 << 12 | RWP)
    return 40 << 12


def _split_windows(g: Guest, case: str, compiled: bool) -> None:
    """Guest memory as two windows of one memfd, split where ``case`` wants it."""
    cut = {"2 windows": 0x600, "table split": 0x1C0, "read-only": 0x400}.get(case)
    if cut is None:
        return
    g.dma.remove_all()
    g.dma = DmaMap()
    g.dma.add(0, cut << 12, PROT_READ | PROT_WRITE, g.mem.dup_fd())
    prot = PROT_READ if case == "read-only" else PROT_READ | PROT_WRITE
    g.dma.add(cut << 12, MEM - (cut << 12), prot, g.mem.dup_fd(), offset=cut << 12)
    accel = accel_module.load(True) if compiled else None
    g.ppgtt = Ppgtt(g.dma, OPS, has_ips=True, max_shadow_pages=4096, accel=accel)
    g.walker = ShadowWalker(g.ppgtt)


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
@pytest.mark.parametrize("case", ["one window", "2 windows", "table split", "shared", "read-only"])
def test_new_pd_chunks_equal_the_entry_by_entry_path(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new PD's PTs created and synced in C hold what the Python path's hold, entry for entry,
    with the same windows noted (a DMA unmap re-points the same tables); a chunk the fast path
    cannot take (PTs in two windows, a PT already shadowed) goes the general way, same result."""
    from gen_vgpu.gtt.shadow import TableStore

    taken: list[bool] = []
    fresh_pts = TableStore._fresh_pts

    def spy(self: TableStore, *args: object) -> bool:
        done = fresh_pts(self, *args)  # type: ignore[arg-type]
        taken.append(done)
        return done

    monkeypatch.setattr(TableStore, "_fresh_pts", spy)
    states = []
    for compiled in (False, True):
        g = Guest(compiled=compiled)
        _split_windows(g, case, compiled)
        try:
            root = _pd_of_new_pts(g, case)
            taken.clear()
            mm = g.submit(RootKind.L4, (root,))
            check_structure(g.ppgtt, g.mem, synced=True)
            state = _shadow_state(g, mm)
            took = taken.count(True)
            windows = sorted((repr(t.key), sorted(w.iova for w in t.windows)) for t in g.ppgtt.store.tables.values())
            again = g.submit(RootKind.L4, (40 << 12,))
            assert again.last_resync.tables_changed == 0
            g.put(0x105, 3, 0x500 << 12 | PRESENT)
            g.submit(RootKind.L4, (40 << 12,))
            check_structure(g.ppgtt, g.mem, synced=True)
            last = g.dma.windows[-1]
            g.dma.remove_range(last.iova, last.size)
            g.submit(RootKind.L4, (40 << 12,))
            check_structure(g.ppgtt, g.mem, synced=True)
            states.append((state, windows, _shadow_state(g, mm)))
        finally:
            g.close()
    (py_first, py_windows, py_then), (c_first, c_windows, c_then) = states
    assert c_first[:3] == py_first[:3]
    assert c_windows == py_windows
    assert c_then[:3] == py_then[:3]
    assert (c_first[3].tables, c_first[3].tables_changed) == (py_first[3].tables, py_first[3].tables_changed)
    # The fast path took the chunks it can, and only those.
    chunks = LANES // BULK_CHUNK
    assert took == {"table split": chunks - 1, "shared": chunks - 1}.get(case, chunks)


def test_directory_jobs_begun_together_keep_their_own_entries(guest: Guest) -> None:
    """Two directories' syncs begun before either runs (two tasks' steps interleave so) each
    redo their own changed entries: the compiled path's list of them is the job's own, not a
    view of a buffer the next compare rewrites."""
    g = guest
    g.put(40, 0, 41 << 12 | RWP)
    g.put(41, 0, 42 << 12 | RWP)
    g.put(41, 1, 43 << 12 | RWP)
    for pd, pts in ((42, range(100, 110)), (43, range(110, 120))):
        for i, pt in enumerate(pts):
            g.put(pd, i, pt << 12 | RWP)
            g.put(pt, 0, (0x400 + pt) << 12 | RWP)
    g.submit(RootKind.L4, (40 << 12,))
    store = g.ppgtt.store
    pd42 = store.tables[("guest", T.PPGTT_PDE_PT, 42, False)]
    pd43 = store.tables[("guest", T.PPGTT_PDE_PT, 43, False)]
    g.put(42, 5, 0)
    g.put(43, 300, 105 << 12 | RWP)
    queue: list[object] = []
    jobs = [store.begin_sync(pd42, queue), store.begin_sync(pd43, queue)]  # type: ignore[arg-type]
    for job in jobs:
        assert not isinstance(job, int)
        assert store.sync_some(job, queue, float("inf"))  # type: ignore[arg-type]
    assert [list(job.changed) for job in jobs] == [[5], [300]]  # type: ignore[union-attr]
    check_structure(g.ppgtt, g.mem, synced=True)
