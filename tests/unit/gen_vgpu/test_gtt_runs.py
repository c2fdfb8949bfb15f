"""The run finder behind the GGTT's bulk updates, against a plain Python reference, and the
bulk DMA_UNMAP / DMA_MAP paths over long runs against entry-by-entry expectations."""

from __future__ import annotations

import sys
from array import array

from hypothesis import given
from hypothesis import strategies as st

from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.testing import GuestMemory
from gen_vgpu import GenVgpu
from gen_vgpu.gtt.ggtt import GGTT_ENTRY_COUNT
from gen_vgpu.gtt.runs import find_runs, run_end

GGTT = 8 << 20
RW = PROT_READ | PROT_WRITE


def marked(tag: int) -> int:
    """A 4-byte element whose first byte alone has bit 7 set (the GGTT's owner encoding)."""
    return int.from_bytes(bytes((0x80, 0, 0, tag)), sys.byteorder)


def reference_runs(values: list[int], needle: int) -> list[tuple[int, int]]:
    runs, i = [], 0
    while i < len(values):
        if values[i] == needle:
            j = i
            while j < len(values) and values[j] == needle:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    return runs


@given(st.lists(st.sampled_from([0, 1, 2, 0x7F]), max_size=300), st.sampled_from([0, 1, 2, 0x7F]))
def test_find_runs_matches_the_reference(tags: list[int], tag: int) -> None:
    values = [marked(t) for t in tags]
    data = array("I", values).tobytes()
    needle = array("I", [marked(tag)]).tobytes()
    expected = reference_runs(values, marked(tag))
    assert list(find_runs(data, needle, values.count(marked(tag)))) == expected
    # Stops once the count is reached, even if more follow.
    if expected:
        first = expected[0]
        assert list(find_runs(data, needle, first[1] - first[0])) == [first]


@given(st.lists(st.sampled_from([5, 6]), min_size=1, max_size=2000), st.data())
def test_run_end_stops_at_the_first_difference_and_the_limit(values: list[int], data: st.DataObject) -> None:
    raw = array("Q", values).tobytes()
    start = data.draw(st.integers(0, len(values) - 1), label="start")
    limit = data.draw(st.integers(start + 1, len(values)), label="limit")
    j = start
    while j < limit and values[j] == values[start]:
        j += 1
    assert run_end(raw, 8 * start, 8, 8 * limit) == 8 * j


def test_bulk_unmap_and_map_over_long_runs() -> None:
    """A uniform run, a run of consecutive GFNs, entries alternating between two windows and
    single entries: after an unmap every entry of the window is scratch and unbacked, the
    others untouched; after a map of the same range each revives to its own frame."""
    mem = GuestMemory(2 << 20)
    dev = GenVgpu()
    try:
        low = dev.dma.add(0, 1 << 20, RW, mem.dup_fd(), 0)  # gfns 0x000-0x0ff
        dev.dma.add(1 << 20, 1 << 20, RW, mem.dup_fd(), 1 << 20)  # gfns 0x100-0x1ff
        layout: dict[int, int] = {}
        layout.update(dict.fromkeys(range(5000), 66 << 12 | 3))  # i915's scratch fill
        layout.update({5000 + k: ((k % 0x100) << 12) | 1 for k in range(3000)})  # an object
        layout.update({8000 + k: (((k & 1) * 0x100 + k % 0x80) << 12) | 1 for k in range(2000)})
        layout.update({20000: (0x10 << 12) | 1, 30000: (0x150 << 12) | 1, GGTT_ENTRY_COUNT - 1: (0x7 << 12) | 1})
        layout[20001] = (0x9999 << 12) | 1  # unbacked all along
        writes = [(GGTT + 8 * i, 0, e.to_bytes(8, "little")) for i, e in layout.items()]
        for k in range(0, len(writes), 200):
            dev.region_write_multi(writes[k : k + 200])

        def expect_live() -> None:
            for i, e in layout.items():
                gfn = e >> 12
                hfn = dev.dma.gfn_to_hfn(gfn)
                assert dev.ggtt.shadow_hfn(i) == hfn, i
                assert dev.ggtt.state(i) == ("unbacked" if hfn is None else "window"), i

        expect_live()
        before = dev.ggtt.shadow[:]
        users = sum(1 for e in layout.values() if (e >> 12) < 0x100)
        dev.dma.remove_range(0, 1 << 20)
        assert dev.ggtt.counters.unmap_fallbacks == users
        for i, e in layout.items():
            if (e >> 12) < 0x100:
                assert dev.ggtt.shadow_hfn(i) is None and dev.ggtt.state(i) == "unbacked", i
            else:
                assert dev.ggtt.shadow[i] == before[i], i
        assert dev.ggtt.entries_by_state()["unbacked"] == users + 1
        dev.dma.add(0, 1 << 20, RW, mem.dup_fd(), 0)
        assert dev.ggtt.counters.revivals == users
        expect_live()
        assert dev.ggtt.entries_by_state()["unbacked"] == 1
        # A map that covers no unbacked GFN revives nothing.
        dev.dma.add(0x4000000, 0x1000, PROT_READ, mem.dup_fd(), 0)
        assert dev.ggtt.counters.revivals == users
        assert low not in dev.dma.windows
    finally:
        dev.dma.remove_all()
        mem.close()
