"""Stateful tests of the shadow PPGTT against a reference walk of the guest's own tables.

Hypothesis builds random guest trees in guest memory, in both formats: entries pointing at
other tables (shared subtables, a table at two levels, a table pointing at itself), 2 MiB
pages, 64 KiB pages (IPS, on SKL), 1 GiB pages, garbage, frames outside guest RAM, in a
read-only window or in a window without an fd, and whole tables filled with one entry the way
i915 fills its trees with scratch tables. Between submissions it mutates them, maps and unmaps
windows (also in the middle of a stepped resync), creates and destroys mms through g2v and
resets the device. After every submission (a pin and its resync, then a TLB-invalidation
resync of every mm), for a grid of addresses of every pinned mm the shadow walk equals the
reference walk; always, every non-present guest entry at every level is the scratch of the
level below, every refcount equals the number of parent references, and every frame in a
shadow entry is scratch, a live shadow table or a frame of a mapped window (writable only if
the window is).
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from devmodel import accel as accel_module
from devmodel.device.dma import PROT_READ, PROT_WRITE, DmaMap, DmaWindow
from devmodel.testing import GuestMemory
from gen_vgpu.gtt.mm import Ppgtt, RootKind, ShadowMm
from gen_vgpu.gtt.ops import GEN8_PTE_OPS
from gen_vgpu.gtt.shadow_accel import has_shadow_accel
from gen_vgpu.gtt.walker import ShadowWalker

from .ppgtt_model import IPS, PRESENT, PS, RW, check_structure, shadow_matches_guest

MEM_SIZE = 0x510000
MAIN = (0x0, 0x400000)  # gfns 0..0x3FF, read-write
RO = (0x400000, 0x10000)  # gfns 0x400..0x40F, read-only
NOFD = (0x500000, 0x1000)  # gfn 0x500, no fd
TABLES = [1, 2, 3, 4, 5, 6, 7, 8, 0x400]  # 0x400 lives in the read-only window
TARGETS = TABLES + [0x40, 0x41, 0x60, 0x200, 0x400, 0x401, 0x500, 0x12345, (1 << 34) - 1]
INDEXES = [0, 1, 15, 16, 17, 511]
FLAG_SETS = [PRESENT | RW, PRESENT, PRESENT | RW | PS, PRESENT | RW | IPS, PRESENT | PS | (1 << 12), RW]

entries = st.one_of(
    st.just(0),
    st.builds(lambda gfn, flags: (gfn << 12) | flags, st.sampled_from(TARGETS), st.sampled_from(FLAG_SETS)),
    st.integers(0, (1 << 64) - 1),  # garbage
)
roots_l4 = st.tuples(st.sampled_from([0] + TABLES)).map(lambda t: tuple(g << 12 for g in t))
roots_l3 = st.tuples(*[st.sampled_from([0] + TABLES)] * 4).map(lambda t: tuple(g << 12 for g in t))
# The trees built at the start (see ``build_trees``), then mutated, and random roots.
KNOWN_ROOTS = [(RootKind.L4, (1 << 12,)), (RootKind.L3, (4 << 12, 7 << 12, 0, 4 << 12)), (RootKind.L4, (3 << 12,))]
root_sets = st.one_of(
    st.sampled_from(KNOWN_ROOTS),
    roots_l4.map(lambda r: (RootKind.L4, r)),
    roots_l3.map(lambda r: (RootKind.L3, r)),
)

ADDRESSES = {
    RootKind.L4: [
        (a << 39) | (b << 30) | (c << 21) | (d << 12)
        for a, b, c, d in itertools.product([0, 1, 511], [0, 1, 16, 511], [0, 1, 16, 511], [0, 1, 2, 15, 16, 17, 511])
    ],
    RootKind.L3: [
        (a << 30) | (c << 21) | (d << 12)
        for a, c, d in itertools.product(range(4), [0, 1, 16, 511], [0, 1, 2, 15, 16, 17, 511])
    ],
}


class PpgttMachine(RuleBasedStateMachine):
    has_ips = True
    compiled = False  # the shadow PPGTT's per-table work in the compiled accelerator

    @initialize()
    def setup(self) -> None:
        self.mem = GuestMemory(MEM_SIZE)
        self.dma = DmaMap()
        accel = accel_module.load(True) if self.compiled else None
        assert accel is not None or not self.compiled
        self.ppgtt = Ppgtt(self.dma, GEN8_PTE_OPS, has_ips=self.has_ips, max_shadow_pages=4096, accel=accel)
        assert (self.ppgtt.store.accel is not None) == self.compiled
        self.walker = ShadowWalker(self.ppgtt)
        self.windows: dict[str, DmaWindow | None] = {"main": None, "ro": None, "nofd": None}
        for name in self.windows:
            self._map(name)
        self.pinned: list[ShadowMm] = []
        self.build_trees()
        self.synced = False

    def build_trees(self) -> None:
        """A 4-level tree with shared tables and every kind of leaf, and an i915-style one."""
        put = self._put
        put(1, 0, 2 << 12 | PRESENT | RW)  # PML4 -> PDP 2
        put(1, 511, 3 << 12 | PRESENT | RW)  # PML4 -> the i915-style PDP 3
        put(2, 0, 4 << 12 | PRESENT | RW)  # PDP -> PD 4, twice (shared)
        put(2, 1, 4 << 12 | PRESENT | RW)
        put(4, 0, 5 << 12 | PRESENT | RW)  # PD -> PT 5
        put(4, 1, 0x200 << 12 | PRESENT | RW | PS | 1 << 12)  # a 2 MiB page, PAT set
        put(4, 16, 6 << 12 | PRESENT | RW | IPS)  # PT 6 holds 64 KiB pages (on SKL)
        put(4, 511, 0x400 << 12 | PRESENT | RW)  # a PT in the read-only window
        for n, i in enumerate(INDEXES):
            put(5, i, (0x40 + n) << 12 | PRESENT | RW)
        put(5, 15, 0x401 << 12 | PRESENT | RW)  # a read-only page
        put(5, 17, 0x500 << 12 | PRESENT | RW)  # a page without an fd
        put(6, 0, 0x60 << 12 | PRESENT | RW)
        put(6, 16, 0x400 << 12 | PRESENT | RW)  # 64 KiB over the read-only window
        self.mem.write(0x400 << 12, (0x42 << 12 | PRESENT | RW).to_bytes(8, "little") * 512)
        # i915: every entry of PDP 3 -> PD 7 -> PT 8 -> page 0x41.
        self.mem.write(3 << 12, (7 << 12 | PRESENT | RW).to_bytes(8, "little") * 512)
        self.mem.write(7 << 12, (8 << 12 | PRESENT | RW).to_bytes(8, "little") * 512)
        self.mem.write(8 << 12, (0x41 << 12 | PRESENT | RW).to_bytes(8, "little") * 512)

    def teardown(self) -> None:
        if hasattr(self, "mem"):
            self.dma.remove_all()
            self.mem.close()

    def _map(self, name: str) -> None:
        if name == "main":
            self.windows[name] = self.dma.add(*MAIN, PROT_READ | PROT_WRITE, self.mem.dup_fd(), MAIN[0])
        elif name == "ro":
            self.windows[name] = self.dma.add(*RO, PROT_READ, self.mem.dup_fd(), RO[0])
        else:
            self.windows[name] = self.dma.add(*NOFD, PROT_READ | PROT_WRITE)

    def _put(self, gfn: int, index: int, entry: int) -> None:
        self.mem.write((gfn << 12) + 8 * index, entry.to_bytes(8, "little"))
        self.synced = False

    # --- the guest writes its tables ---------------------------------------------------------

    @rule(gfn=st.sampled_from(TABLES), index=st.sampled_from(INDEXES), entry=entries)
    def write_entry(self, gfn: int, index: int, entry: int) -> None:
        self._put(gfn, index, entry)

    @rule(gfn=st.sampled_from(TABLES), pointee=st.sampled_from(TABLES + [0x40]))
    def fill_like_i915(self, gfn: int, pointee: int) -> None:
        """Every entry of the table points at one table (i915's scratch tables)."""
        self.mem.write(gfn << 12, ((pointee << 12) | PRESENT | RW).to_bytes(8, "little") * 512)
        self.synced = False

    @rule(
        gfn=st.sampled_from(TABLES),
        start=st.sampled_from([0, 40, 460]),
        pointees=st.lists(st.sampled_from([0, 0x40, *TABLES]), min_size=1, max_size=80),
    )
    def point_run(self, gfn: int, start: int, pointees: list[int]) -> None:
        """A run of entries naming tables, the way a PD fills with PTs (the compiled path
        creates and syncs a chunk of them at once); 0: a non-present entry."""
        run = b"".join(((p << 12) | PRESENT | RW if p else 0).to_bytes(8, "little") for p in pointees)
        self.mem.write((gfn << 12) + 8 * start, run[: (512 - start) * 8])
        self.synced = False

    @rule(gfn=st.sampled_from(TABLES))
    def clear_table(self, gfn: int) -> None:
        self.mem.write(gfn << 12, bytes(4096))
        self.synced = False

    # --- submissions and the mm lifecycle -----------------------------------------------------

    def _resync_all(self) -> None:
        job = self.ppgtt.on_tlb_invalidate() or self.ppgtt.background
        assert job is not None
        job.run()
        self.synced = True

    @rule(roots=root_sets)
    def submit(self, roots: tuple[RootKind, tuple[int, ...]]) -> None:
        mm, task = self.ppgtt.pin(*roots)
        self.pinned.append(mm)
        task.run()
        self._resync_all()
        shadow_matches_guest(self.ppgtt, self.walker, self.mem, mm, self.has_ips, ADDRESSES[mm.kind])

    @rule(roots=root_sets, window=st.sampled_from(["ro", "main", None]))
    def submit_stepped(self, roots: tuple[RootKind, tuple[int, ...]], window: str | None) -> None:
        """A resync in one-table steps; a window is unmapped and mapped again between two."""
        mm, task = self.ppgtt.pin(*roots)
        self.pinned.append(mm)
        more = task.step(0.0)
        if window is not None and self.windows[window] is not None:
            self.dma.remove_range(*(MAIN if window == "main" else RO))
            self._map(window)
        steps = 1
        while more:
            more = task.step(0.0)
            steps += 1
            assert steps < 10_000
        self._resync_all()
        shadow_matches_guest(self.ppgtt, self.walker, self.mem, mm, self.has_ips, ADDRESSES[mm.kind])

    @rule(
        first=root_sets,
        second=root_sets,
        writes=st.lists(
            st.tuples(st.sampled_from(TABLES), st.sampled_from(INDEXES), entries, st.booleans()), max_size=6
        ),
    )
    def interleaved_resyncs(
        self,
        first: tuple[RootKind, tuple[int, ...]],
        second: tuple[RootKind, tuple[int, ...]],
        writes: list[tuple[int, int, int, bool]],
    ) -> None:
        """Two stepped resyncs of trees that may share tables, taking turns step by step (a
        directory's sync is then under way in both), with guest writes and destroys between
        steps."""
        mm_a, task_a = self.ppgtt.pin(*first)
        mm_b, task_b = self.ppgtt.pin(*second)
        self.pinned += [mm_a, mm_b]
        tasks = [task_a, task_b]
        pending = list(writes)
        steps = 0
        while tasks:
            for task in list(tasks):
                if not task.step(0.0):
                    tasks.remove(task)
            if pending and steps % 3 == 1:
                gfn, index, entry, destroy = pending.pop()
                self._put(gfn, index, entry)
                if destroy:
                    self.ppgtt.notify_destroy(*first)  # usually of roots not created: refused
            steps += 1
            assert steps < 20_000
        self._resync_all()
        for mm, roots in ((mm_a, first), (mm_b, second)):
            if mm.alive:
                shadow_matches_guest(self.ppgtt, self.walker, self.mem, mm, self.has_ips, ADDRESSES[roots[0]])

    @precondition(lambda self: self.pinned)
    @rule(data=st.data())
    def unpin(self, data: st.DataObject) -> None:
        mm = self.pinned.pop(data.draw(st.integers(0, len(self.pinned) - 1)))
        if mm.alive:
            self.ppgtt.unpin(mm)

    @rule(roots=root_sets)
    def g2v_create(self, roots: tuple[RootKind, tuple[int, ...]]) -> None:
        job = self.ppgtt.notify_create(*roots) or self.ppgtt.background
        assert job is not None
        job.run()
        self.synced = False  # only that mm was synced

    @rule(roots=root_sets)
    def g2v_destroy(self, roots: tuple[RootKind, tuple[int, ...]]) -> None:
        mm = self.ppgtt.find(*roots)
        claimed = mm is not None and mm.claims
        self.ppgtt.notify_destroy(*roots)
        if claimed and mm is not None and mm.claims == 0 and mm.pincount == 0:
            assert not mm.alive and self.ppgtt.find(*roots) is None

    # --- the DMA map and reset ----------------------------------------------------------------

    @rule(name=st.sampled_from(["main", "ro", "nofd"]))
    def toggle_window(self, name: str) -> None:
        w = self.windows[name]
        if w is None:
            self._map(name)
        else:
            self.dma.remove_range(w.iova, w.size)
            self.windows[name] = None
            # Nothing may keep a frame of the unmapped window.
            for t in self.ppgtt.store.tables.values():
                if t.is_leaf:
                    hfns = {GEN8_PTE_OPS.get_pfn(e) for e in t.entries}
                    assert not any(w.hfn_base <= h < w.hfn_base + w.page_count for h in hfns)
        self.synced = False

    @rule()
    def reset(self) -> None:
        self.ppgtt.reset()
        self.pinned.clear()
        assert len(self.ppgtt.store) == 0
        # Only the scratch tree stays allocated.
        assert set(self.dma._device_pages) == set(self.ppgtt.scratch.hfns)

    @invariant()
    def structure(self) -> None:
        if hasattr(self, "ppgtt"):
            check_structure(self.ppgtt, self.mem, self.synced)


class PpgttMachineBdw(PpgttMachine):
    """GEN8: bit 11 of a PDE means nothing."""

    has_ips = False


class PpgttMachineSklCompiled(PpgttMachine):
    compiled = True


class PpgttMachineBdwCompiled(PpgttMachineBdw):
    compiled = True


SETTINGS = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestPpgttSkl = PpgttMachine.TestCase
TestPpgttSkl.settings = SETTINGS
TestPpgttBdw = PpgttMachineBdw.TestCase
TestPpgttBdw.settings = SETTINGS

_no_accel = pytest.mark.skipif(
    not has_shadow_accel(accel_module.load(True)), reason="the compiled accelerator is not installed"
)
TestPpgttSklCompiled = _no_accel(PpgttMachineSklCompiled.TestCase)
TestPpgttSklCompiled.settings = SETTINGS
TestPpgttBdwCompiled = _no_accel(PpgttMachineBdwCompiled.TestCase)
TestPpgttBdwCompiled.settings = SETTINGS
