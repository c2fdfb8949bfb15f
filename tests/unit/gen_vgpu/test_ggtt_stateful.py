"""Stateful tests of the GGTT against a model of what the guest and the shadow must hold.

Hypothesis interleaves 8-byte and 4-byte GGTT writes, ignored multi-entry writes and WRITE_MULTI writes, DMA maps
and unmaps (exact, by range, all) and device resets on one GenVgpu, and checks after every
step:

* reads of every touched entry (8 bytes, and each 4-byte half) return the guest's own value;
* the shadow entry is the scratch page when the entry is not present, has a pending half, or
  no current DMA window covers its GFN; otherwise it is the window's host frame for that GFN
  with the guest's flag bits kept;
* model-free: every shadow entry points at scratch or at a host frame whose window is mapped
  now and covers the entry's guest GFN;
* through the aperture (BAR2): a live entry shows guest memory at its GFN, anything else
  (and a write-only window) reads as zeros, and writes through scratch (or a read-only
  window) are dropped.

The machine runs three ways: writes straight to the device, and as posted messages through
the server's client path with the compiled accelerator and on Python alone (message_rig.py),
so the accelerator's GGTT bookkeeping answers to the same model and whole-table checks.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from devmodel import accel
from devmodel.device.device import ResetKind
from devmodel.device.dma import PAGE_SIZE, PROT_READ, PROT_WRITE, DmaWindow
from devmodel.errors import DmaOverlap, MalformedRequest
from devmodel.testing import GuestMemory
from gen_vgpu import GenVgpu
from gen_vgpu.gtt.ggtt import GGTT_ENTRY_COUNT

from .message_rig import MessageRig

GGTT = 8 << 20
RW = PROT_READ | PROT_WRITE
ADDR_MASK = ((1 << 46) - 1) & ~0xFFF  # bits 45:12
GFN_MAX = (1 << 34) - 1
MEM_SIZE = 2 << 20
APERTURE_PAGES = (256 << 20) >> 12

# A few entry indexes, so that writes collide; 0..3 are consecutive for bulk writes.
INDEXES = [0, 1, 2, 3, 100, 4095, APERTURE_PAGES - 1, APERTURE_PAGES, GGTT_ENTRY_COUNT - 1]


@dataclass(frozen=True)
class Win:
    iova: int
    size: int
    prot: int = RW
    fd: bool = True  # backed by the memfd at offset == iova

    @property
    def end(self) -> int:
        return self.iova + self.size


WINDOWS = {
    "a": Win(0x0, 0x4000),  # gfns 0-3
    "b": Win(0x4000, 0x4000),  # gfns 4-7, adjacent to a
    "wide": Win(0x2000, 0x4000),  # gfns 2-5: overlaps a and b
    "c": Win(0x10000, 0x2000),  # gfns 0x10-0x11
    "ro": Win(0x20000, 0x2000, PROT_READ),  # gfns 0x20-0x21, read-only
    "nofd": Win(0x30000, 0x1000, RW, fd=False),  # gfn 0x30, reachable only by messages
    "wo": Win(0x40000, 0x1000, PROT_WRITE),  # gfn 0x40, write-only
    "high": Win(0x100000, 0x1000),  # gfn 0x100
}
GFNS = [0, 1, 2, 3, 4, 5, 7, 8, 0x10, 0x11, 0x12, 0x20, 0x21, 0x30, 0x40, 0x100, 0x1FF, 0x12345, GFN_MAX]
UNMAP_RANGES = sorted({(w.iova, w.size) for w in WINDOWS.values()}) + [
    (0x0, 0x8000),  # a and b, or wide
    (0x0, 0x2000),  # cuts a or wide
    (0x2000, 0x4000),  # cuts a and b
    (0x4000, 0x1000),  # cuts b
    (0x8000, 0x8000),  # nothing there
    (0x0, 0x40000),  # every low window
    (0x0, 1 << 40),
]

# Where runs start: around the hot entries, inside the aperture and at the table's end.
RUN_STARTS = [0, 2, APERTURE_PAGES - 4, GGTT_ENTRY_COUNT - 6]

ZEROS = array("Q", bytes(8 * GGTT_ENTRY_COUNT))

# Half the time one of two hot entries, so that halves, whole writes and resets meet.
indexes = st.one_of(st.sampled_from([0, 1]), st.sampled_from(INDEXES))
aperture_indexes = st.one_of(st.sampled_from([0, 1]), st.sampled_from([i for i in INDEXES if i < APERTURE_PAGES]))
gfns = st.sampled_from(GFNS)
low_flags = st.integers(0, 0x7FF).map(lambda f: f << 1)  # bits 11:1
high_flags = st.integers(0, (1 << 18) - 1).map(lambda f: f << 46)  # bits 63:46


@st.composite
def entries(draw) -> int:
    present = draw(st.booleans()) or draw(st.booleans())  # mostly present
    return draw(high_flags) | (draw(gfns) << 12) | draw(low_flags) | int(present)


# Guest RAM at the start of every example: each page says which frame it is.
RAM_PATTERN = b"".join(
    (g.to_bytes(4, "little") + b"\xa5\x5a\xc3\x3c") * (PAGE_SIZE // 8) for g in range(MEM_SIZE // PAGE_SIZE)
)


class GgttMachine(RuleBasedStateMachine):
    # GGTT writes go straight to the device (None), or as messages through the server's
    # client path with the compiled accelerator (True) or on Python alone (False).
    through_messages: bool | None = None

    def __init__(self) -> None:
        super().__init__()
        self.dev = GenVgpu()
        self.rig = None if self.through_messages is None else MessageRig(self.dev, self.through_messages)
        self.region_write = self.dev.region_write if self.rig is None else self.rig.region_write
        self.region_write_multi = self.dev.region_write_multi if self.rig is None else self.rig.region_write_multi
        self.ggtt = self.dev.ggtt
        self.dma = self.dev.dma
        self.scratch_hfn = self.dev.scratch_hfn
        self.mem = GuestMemory(MEM_SIZE)
        self.mem.mm[:] = RAM_PATTERN
        self.guest: dict[int, int] = {}
        self.pending: dict[int, set[str]] = {}
        self.mapped: dict[str, DmaWindow] = {}
        self.touched: set[int] = set()

    def teardown(self) -> None:
        try:
            self.check_whole_table()
            self.dma.remove_all()
            self.mapped.clear()
            # With no window left, no shadow entry reaches anything but the scratch page.
            self.shadow_matches_the_model()
            self.check_whole_table()
            if self.rig is not None:
                assert self.rig.errors == 0  # every write was one the device takes
        finally:
            self.mem.close()
            if self.rig is not None:
                self.rig.close()

    # --- the model -------------------------------------------------------------------------

    def window_of(self, gfn: int) -> DmaWindow | None:
        for w in self.mapped.values():
            if w.first_gfn <= gfn < w.first_gfn + w.page_count:
                return w
        return None

    def expected_hfn(self, idx: int) -> int | None:
        if idx in self.pending:
            return None
        e = self.guest.get(idx, 0)
        if not e & 1:
            return None
        w = self.window_of((e & ADDR_MASK) >> 12)
        return None if w is None else w.hfn_base + ((e & ADDR_MASK) >> 12) - w.first_gfn

    def expected_state(self, idx: int) -> str:
        if idx in self.pending:
            return "pending-low" if self.pending[idx] == {"lo"} else "pending-high"
        e = self.guest.get(idx, 0)
        if not e & 1:
            return "absent"
        return "unbacked" if self.window_of((e & ADDR_MASK) >> 12) is None else "window"

    def model_write(self, idx: int, value: int, half: str | None = None) -> None:
        self.touched.add(idx)
        old = self.guest.get(idx, 0)
        if half is None:
            self.guest[idx] = value
            self.pending.pop(idx, None)
            return
        if half == "lo":
            self.guest[idx] = (old & ~0xFFFFFFFF) | value
        else:
            self.guest[idx] = (old & 0xFFFFFFFF) | (value << 32)
        seen = self.pending.setdefault(idx, set())
        seen.add(half)
        if seen == {"lo", "hi"}:
            del self.pending[idx]

    @initialize(names=st.lists(st.sampled_from(sorted(WINDOWS)), max_size=4))
    def map_some_windows(self, names: list[str]) -> None:
        """Start with some guest RAM mapped, as QEMU does before the guest runs."""
        for name in names:
            self.dma_map(name)

    # --- rules: GGTT writes ----------------------------------------------------------------

    @rule(idx=indexes, value=entries())
    def write_entry(self, idx: int, value: int) -> None:
        self.region_write(0, GGTT + idx * 8, value.to_bytes(8, "little"))
        self.model_write(idx, value)

    @rule(idx=indexes, value=entries(), high=st.booleans())
    def write_half(self, idx: int, value: int, high: bool) -> None:
        half = (value >> 32) if high else (value & 0xFFFFFFFF)
        self.region_write(0, GGTT + idx * 8 + 4 * high, half.to_bytes(4, "little"))
        self.model_write(idx, half, "hi" if high else "lo")

    @rule(first=st.sampled_from([0, 1]), values=st.lists(entries(), min_size=2, max_size=3))
    def write_bulk(self, first: int, values: list[int]) -> None:
        """Consecutive whole entries in one REGION_WRITE: not a 4- or 8-byte access, so the
        contract has it ignored; the model does not change."""
        data = b"".join(v.to_bytes(8, "little") for v in values)
        self.region_write(0, GGTT + first * 8, data)

    @rule(first=st.sampled_from(RUN_STARTS), n=st.integers(1, 10), value=entries(), step=st.sampled_from([0, 1]))
    def write_run(self, first: int, n: int, value: int, step: int) -> None:
        """A WRITE_MULTI batch over consecutive entries, all one entry (i915's scratch fill)
        or consecutive GFNs (an object's pages): the runs the bulk unmap and map work on."""
        values = [(value + (k * step << 12)) & ((1 << 64) - 1) for k in range(n)]
        idxs = [(first + k) % GGTT_ENTRY_COUNT for k in range(n)]
        writes = [(GGTT + i * 8, 0, v.to_bytes(8, "little")) for i, v in zip(idxs, values, strict=True)]
        self.region_write_multi(writes)
        for i, v in zip(idxs, values, strict=True):
            self.model_write(i, v)

    @rule(writes=st.lists(st.tuples(indexes, entries()), min_size=1, max_size=4))
    def write_multi(self, writes: list[tuple[int, int]]) -> None:
        """A REGION_WRITE_MULTI batch of whole entries (the device's fast path)."""
        self.region_write_multi([(GGTT + i * 8, 0, v.to_bytes(8, "little")) for i, v in writes])
        for i, v in writes:
            self.model_write(i, v)

    # --- rules: DMA map, unmap, reset ------------------------------------------------------

    @rule(name=st.sampled_from(sorted(WINDOWS)))
    def dma_map(self, name: str) -> None:
        spec = WINDOWS[name]
        fd = self.mem.dup_fd() if spec.fd else None
        clash = [n for n, w in self.mapped.items() if w.iova < spec.end and spec.iova < w.end]
        try:
            w = self.dma.add(spec.iova, spec.size, spec.prot, fd, spec.iova if spec.fd else 0)
        except DmaOverlap:
            if fd is not None:
                os.close(fd)  # a failed map leaves the fd to the caller
            assert clash and clash != [name], (name, clash)
            return
        if clash:
            # Only the exact same window again is accepted, as a no-op.
            assert clash == [name] and w is self.mapped[name], (name, clash)
            return
        # Frames come back after an unmap, but no two live windows share one.
        frames = range(w.hfn_base, w.hfn_base + w.page_count)
        live = [range(x.hfn_base, x.hfn_base + x.page_count) for x in self.mapped.values()]
        assert all(not (r.start < frames.stop and frames.start < r.stop) for r in live), "hfn shared"
        self.mapped[name] = w

    @rule(rng=st.sampled_from([*UNMAP_RANGES, None]))
    def dma_unmap(self, rng: tuple[int, int] | None) -> None:
        """Unmap by range (exact, several windows, cutting one, covering none) or all."""
        if rng is None:
            self.dma.remove_all()
            self.mapped.clear()
            return
        iova, size = rng
        end = iova + size
        inside = [n for n, w in self.mapped.items() if iova <= w.iova and w.end <= end]
        cut = [n for n, w in self.mapped.items() if w.iova < end and iova < w.end and n not in inside]
        try:
            removed = self.dma.remove_range(iova, size)
        except MalformedRequest:
            assert cut, rng
            return
        assert not cut, (rng, cut)
        assert sorted(id(w) for w in removed) == sorted(id(self.mapped[n]) for n in inside)
        for n in inside:
            del self.mapped[n]

    @rule()
    def reset(self) -> None:
        self.dev.reset(ResetKind.DEVICE)
        self.guest.clear()
        self.pending.clear()

    # --- rules: memory through the aperture and directly -----------------------------------

    @rule(pick=st.data(), off=st.integers(0, PAGE_SIZE - 8), data=st.binary(min_size=1, max_size=8))
    def aperture_write(self, pick: st.DataObject, off: int, data: bytes) -> None:
        written = sorted(i for i in self.touched if i < APERTURE_PAGES)
        idx = pick.draw(st.sampled_from(written) if written else aperture_indexes, label="idx")
        self.touched.add(idx)
        before = bytes(self.mem.mm)
        self.dev.region_write(2, (idx << 12) + off, data)
        hfn = self.expected_hfn(idx)
        w = self.dma.hfn_window(hfn) if hfn is not None else None
        if w is not None and w.view is not None and w.prot & PROT_WRITE:
            gpa = (((self.guest[idx] & ADDR_MASK) >> 12) << 12) + off
            after = bytearray(before)
            after[gpa : gpa + len(data)] = data
            assert bytes(self.mem.mm) == bytes(after)
            got = self.dev.region_read(2, (idx << 12) + off, len(data))
            assert got == (data if w.prot & PROT_READ else bytes(len(data)))  # write-only: reads 0
        else:
            assert bytes(self.mem.mm) == before  # dropped (scratch, read-only or fd-less window)
            got = self.dev.region_read(2, (idx << 12) + off, len(data))
            if w is not None and w.view is not None and w.prot & PROT_READ:
                gpa = (((self.guest[idx] & ADDR_MASK) >> 12) << 12) + off
                assert got == before[gpa : gpa + len(data)]
            else:
                assert got == bytes(len(data))

    @rule(gfn=st.sampled_from([g for g in GFNS if (g + 1) * PAGE_SIZE <= MEM_SIZE]), off=st.integers(0, PAGE_SIZE - 8),
          data=st.binary(min_size=8, max_size=8))
    def guest_ram_write(self, gfn: int, off: int, data: bytes) -> None:
        self.mem.write((gfn << 12) + off, data)

    # --- checks ----------------------------------------------------------------------------

    @invariant()
    def reads_return_the_guest_value(self) -> None:
        for idx in self.touched:
            e = self.guest.get(idx, 0)
            off = GGTT + idx * 8
            assert self.dev.region_read(0, off, 8) == e.to_bytes(8, "little")
            assert self.dev.region_read(0, off, 4) == (e & 0xFFFFFFFF).to_bytes(4, "little")
            assert self.dev.region_read(0, off + 4, 4) == (e >> 32).to_bytes(4, "little")

    @invariant()
    def pending_halves_match_the_model(self) -> None:
        halves = {"low": {"lo"}, "high": {"hi"}}
        assert {i: halves[h] for i, h in self.ggtt.pending_halves().items()} == self.pending

    @invariant()
    def shadow_matches_the_model(self) -> None:
        for idx in self.touched:
            s = self.ggtt.shadow[idx]
            hfn = self.expected_hfn(idx)
            assert self.ggtt.shadow_hfn(idx) == hfn, (idx, hex(self.guest.get(idx, 0)), hex(s))
            if hfn is None:
                assert (s & ADDR_MASK) >> 12 == self.scratch_hfn
            else:
                assert s == (self.guest[idx] & ~ADDR_MASK) | (hfn << 12), (idx, hex(s))

    @invariant()
    def shadow_stays_inside_the_dma_windows(self) -> None:
        """Model-free: a shadow entry reaches scratch or a frame of a mapped window that covers
        the guest's GFN, at the right page."""
        windows = self.dma.windows
        for idx in self.touched:
            s = self.ggtt.shadow[idx]
            hfn = (s & ADDR_MASK) >> 12
            if hfn == self.scratch_hfn:
                continue
            assert s & 1, hex(s)
            w = self.dma.hfn_window(hfn)
            assert w is not None and any(w is x for x in windows), (idx, hex(s))
            gfn = (self.ggtt.guest[idx] & ADDR_MASK) >> 12
            assert w.contains(gfn << 12, PAGE_SIZE)
            assert hfn - w.hfn_base == gfn - w.first_gfn

    @invariant()
    def aperture_shows_guest_memory_or_zeros(self) -> None:
        for idx in self.touched:
            if idx >= APERTURE_PAGES:
                continue
            got = self.dev.region_read(2, idx << 12, PAGE_SIZE)
            hfn = self.expected_hfn(idx)
            w = self.dma.hfn_window(hfn) if hfn is not None else None
            if w is not None and w.view is not None and w.prot & PROT_READ:
                gfn = (self.guest[idx] & ADDR_MASK) >> 12
                assert got == self.mem.read(gfn << 12, PAGE_SIZE)
            else:
                assert got == bytes(PAGE_SIZE)
        scratch = self.dma.page(self.scratch_hfn)
        assert scratch is not None and bytes(scratch) == bytes(PAGE_SIZE)  # scratch stays clean

    def check_whole_table(self) -> None:
        """Entries not touched since creation hold 0 and shadow the scratch page (a reset puts
        every entry back there), so the checks above cover the whole table."""
        guest, shadow = self.ggtt.guest[:], self.ggtt.shadow[:]
        for i in self.touched:
            guest[i] = 0
            shadow[i] = self.ggtt._scratch_entry
        assert guest == ZEROS
        assert shadow == array("Q", [self.ggtt._scratch_entry]) * GGTT_ENTRY_COUNT
        # The owner codes agree with the entries and their counts with the codes.
        states = {i: self.ggtt.state(i) for i in self.touched}
        for i, state in states.items():
            assert state == self.expected_state(i), (i, state)
        assert sum(self.ggtt.entries_by_state().values()) == GGTT_ENTRY_COUNT
        assert self.ggtt.entries_by_state().get("absent", 0) == GGTT_ENTRY_COUNT - sum(
            1 for s in states.values() if s != "absent"
        )
        # Exact counts of every code but the commonest, with the total, make all exact.
        counts = self.ggtt._count
        assert sum(counts.values()) == GGTT_ENTRY_COUNT
        commonest = max(counts, key=lambda c: counts[c])
        for code, n in counts.items():
            if n and code != commonest:
                assert self.ggtt.owner.count(code) == n, hex(code)


GgttMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# A hang guard of its own: 250 examples take about 44 s of CPU, and under ci/test --hogs 2 with
# other work beside it the run passed the suite's scaled 360 s guard.
TestGgtt = pytest.mark.timeout(1800)(GgttMachine.TestCase)


class GgttThroughAccelMachine(GgttMachine):
    through_messages = True


class GgttThroughPythonMessagesMachine(GgttMachine):
    through_messages = False


# The machine's rules and model are the ones above; these two change only how writes arrive.
GgttThroughAccelMachine.TestCase.settings = settings(GgttMachine.TestCase.settings, max_examples=100)
GgttThroughPythonMessagesMachine.TestCase.settings = settings(GgttMachine.TestCase.settings, max_examples=40)
TestGgttThroughAccel = pytest.mark.skipif(
    accel.load(True) is None, reason="the compiled accelerator is not installed"
)(GgttThroughAccelMachine.TestCase)
TestGgttThroughPythonMessages = GgttThroughPythonMessagesMachine.TestCase


# --- directed cases the machine reaches only rarely -------------------------------------------


def _setup() -> tuple[GenVgpu, GuestMemory]:
    dev, mem = GenVgpu(), GuestMemory(MEM_SIZE)
    dev.dma.add(0x0, 0x8000, RW, mem.dup_fd(), 0x0)
    return dev, mem


def _w(dev: GenVgpu, idx: int, value: int, width: int = 8, high: bool = False) -> None:
    dev.region_write(0, GGTT + idx * 8 + 4 * high, value.to_bytes(width, "little"))


ENTRY = (0x5 << 12) | 0x3


def test_whole_entry_write_drops_a_pending_half():
    dev, mem = _setup()
    try:
        _w(dev, 0, ENTRY & 0xFFFFFFFF, 4)  # low half pending
        _w(dev, 0, ENTRY)
        assert dev.ggtt.shadow_hfn(0) == dev.dma.gfn_to_hfn(5)
        _w(dev, 0, 0, 4, high=True)  # a new partial write, not the completion of the old one
        assert dev.ggtt.shadow_hfn(0) is None
        _w(dev, 0, ENTRY & 0xFFFFFFFF, 4)
        assert dev.ggtt.shadow_hfn(0) == dev.dma.gfn_to_hfn(5)
    finally:
        dev.dma.remove_all()
        mem.close()


def test_reset_drops_a_pending_half():
    dev, mem = _setup()
    try:
        _w(dev, 0, ENTRY & 0xFFFFFFFF, 4)
        dev.reset(ResetKind.DEVICE)
        _w(dev, 0, 0, 4, high=True)
        _w(dev, 0, ENTRY & 0xFFFFFFFF, 4)  # completes the entry begun after the reset
        assert dev.ggtt.shadow_hfn(0) == dev.dma.gfn_to_hfn(5)
        _w(dev, 0, 0, 4, high=True)  # pending again
        assert dev.ggtt.shadow_hfn(0) is None
    finally:
        dev.dma.remove_all()
        mem.close()


def test_unmap_repoints_users_and_remap_revives_them():
    dev, mem = _setup()
    try:
        for i in range(8):
            _w(dev, i, (i << 12) | 0x3)
        old = [dev.ggtt.shadow_hfn(i) for i in range(8)]
        assert None not in old
        dev.dma.remove_range(0x0, 0x8000)
        assert [dev.ggtt.shadow_hfn(i) for i in range(8)] == [None] * 8
        assert [dev.ggtt.state(i) for i in range(8)] == ["unbacked"] * 8
        assert dev.ggtt.counters.unmap_fallbacks == 8
        dev.dma.add(0x4000, 0x4000, RW, mem.dup_fd(), 0x4000)
        new = [dev.ggtt.shadow_hfn(i) for i in range(8)]
        assert new[:4] == [None] * 4
        assert new[4:] == [dev.dma.gfn_to_hfn(g) for g in range(4, 8)]
        w = dev.dma.find(0x4000)
        assert all(h is not None and dev.dma.hfn_window(h) is w for h in new[4:])  # frames of the new window
        assert dev.ggtt.counters.revivals == 4
    finally:
        dev.dma.remove_all()
        mem.close()


def test_aperture_write_through_read_only_window_is_dropped():
    dev, mem = GenVgpu(), GuestMemory(MEM_SIZE)
    try:
        dev.dma.add(0x20000, 0x1000, PROT_READ, mem.dup_fd(), 0x20000)
        mem.write(0x20000, b"rom!")
        _w(dev, 3, (0x20 << 12) | 0x3)
        dev.region_write(2, 3 << 12, b"oops")
        assert mem.read(0x20000, 4) == b"rom!"
        assert dev.region_read(2, 3 << 12, 4) == b"rom!"
    finally:
        dev.dma.remove_all()
        mem.close()


def test_aperture_read_through_write_only_window_reads_zero():
    dev, mem = GenVgpu(), GuestMemory(MEM_SIZE)
    try:
        dev.dma.add(0x40000, 0x1000, PROT_WRITE, mem.dup_fd(), 0x40000)
        mem.write(0x40000, b"hide")
        _w(dev, 3, (0x40 << 12) | 0x3)
        assert dev.region_read(2, 3 << 12, 4) == bytes(4)
        dev.region_write(2, 3 << 12, b"sent")
        assert mem.read(0x40000, 4) == b"sent"
    finally:
        dev.dma.remove_all()
        mem.close()
