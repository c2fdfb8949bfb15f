"""The DMA map over memfd-backed guest memory: windows, lookups, views, permissions, host
frames and their reuse, unmap by range, revocation of views, listeners, fd ownership, seals,
and windows without an fd (faults)."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from devmodel.device.dma import DEVICE_HFN_BASE, MAX_WINDOW_SIZE, PAGE_SIZE, PROT_READ, PROT_WRITE, DmaMap
from devmodel.device.frames import HFN_LIMIT
from devmodel.device.hostmem import HostMapping
from devmodel.errors import DmaFault, DmaOverlap, MalformedRequest, NoSpace, UnsafeMemory
from devmodel.testing import GuestMemory

RW = PROT_READ | PROT_WRITE
MiB = 1 << 20


@pytest.fixture
def mem():
    m = GuestMemory(4 * MiB)
    for page in range(m.size // PAGE_SIZE):  # every page says which one it is
        m.write(page * PAGE_SIZE, page.to_bytes(4, "little") * 4)
    yield m
    m.close()


@pytest.fixture
def dma():
    d = DmaMap()
    yield d
    d.remove_all()


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def is_mapped(addr: int) -> bool:
    """Whether ``addr`` is inside any mapping of this process."""
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo <= addr < hi:
                return True
    return False


def add(dma: DmaMap, mem: GuestMemory, iova: int, size: int, prot: int = RW, offset: int | None = None):
    return dma.add(iova, size, prot, mem.dup_fd(), iova if offset is None else offset)


# --- add / find / view / read / write ------------------------------------------------------


def test_add_find_and_view(dma, mem):
    w = add(dma, mem, 0x10000, 0x4000)
    assert (w.iova, w.size, w.prot, w.end, w.first_gfn, w.page_count) == (0x10000, 0x4000, RW, 0x14000, 0x10, 4)
    assert len(dma) == 1 and dma.windows == (w,)
    assert dma.find(0x10000) is w
    assert dma.find(0x13FFF) is w
    assert dma.find(0x13000, 0x1000) is w
    assert dma.find(0x13000, 0x1001) is None
    assert dma.find(0xFFFF) is None
    assert dma.find(0x14000) is None
    v = dma.view(0x11000, 16)
    assert bytes(v) == mem.read(0x11000, 16) == (0x11).to_bytes(4, "little") * 4


def test_read_write_reach_the_same_memory(dma, mem):
    add(dma, mem, 0x0, 0x10000)
    dma.write(0x2FFC, b"abcdefgh")  # across a page boundary inside one window
    assert mem.read(0x2FFC, 8) == b"abcdefgh"
    mem.write(0x5000, b"guest")
    assert dma.read(0x5000, 5) == b"guest"
    dma.view(0x6000, 4, PROT_WRITE)[:] = b"wxyz"
    assert mem.read(0x6000, 4) == b"wxyz"


def test_window_offset_into_the_file(dma, mem):
    add(dma, mem, 0x100000, 0x2000, offset=0x3000)
    assert dma.read(0x100000, 4) == (3).to_bytes(4, "little")
    assert dma.read(0x101000, 4) == (4).to_bytes(4, "little")


def test_access_outside_windows_faults(dma, mem):
    add(dma, mem, 0x0, 0x2000)
    add(dma, mem, 0x2000, 0x2000)
    for call in (lambda: dma.read(0x4000, 4), lambda: dma.write(0x4000, b"x"), lambda: dma.view(0x1FFE, 4)):
        with pytest.raises(DmaFault) as info:
            call()
        assert info.value.errno == errno.EFAULT


def test_read_only_window_rejects_writes(dma, mem):
    w = add(dma, mem, 0x20000, 0x2000, prot=PROT_READ)
    before = mem.read(0x20000, 0x2000)
    with pytest.raises(DmaFault) as info:
        dma.write(0x20000, b"nope")
    assert info.value.errno == errno.EFAULT
    with pytest.raises(DmaFault):
        dma.view(0x20000, 4, PROT_WRITE)
    assert dma.view(0x20000, 4).readonly
    assert dma.page(w.hfn_base).readonly
    with pytest.raises(TypeError):
        dma.page(w.hfn_base)[0] = 1
    assert dma.page(w.hfn_base, write=True) is None
    assert mem.read(0x20000, 0x2000) == before
    assert dma.read(0x21000, 4) == (0x21).to_bytes(4, "little")


def test_read_only_and_writable_windows_of_one_file(dma, mem):
    add(dma, mem, 0x0, 0x1000, prot=PROT_READ)
    add(dma, mem, 0x1000, 0x1000)
    dma.write(0x1000, b"rw")
    assert mem.read(0x1000, 2) == b"rw"
    with pytest.raises(DmaFault):
        dma.write(0x0, b"ro")


@pytest.mark.parametrize(
    "iova,size,offset",
    [(0x800, 0x1000, 0x800), (0x1000, 0x800, 0x1000), (0x1000, 0x1000, 0x10), (0x1000, 0x1001, 0x1000)],
)
def test_unaligned_windows_are_malformed(dma, mem, iova, size, offset):
    fd = mem.dup_fd()
    with pytest.raises(MalformedRequest) as info:
        dma.add(iova, size, RW, fd, offset)
    assert info.value.errno == errno.EINVAL
    assert is_open(fd)  # the caller still owns it
    os.close(fd)
    assert len(dma) == 0


def test_empty_window_is_malformed(dma):
    with pytest.raises(MalformedRequest):
        dma.add(0x1000, 0, RW)
    assert len(dma) == 0


def test_window_past_the_end_of_its_file_faults(dma, mem):
    fd = mem.dup_fd()
    with pytest.raises(DmaFault):
        dma.add(mem.size - 0x1000, 0x2000, RW, fd, mem.size - 0x1000)
    assert is_open(fd)
    os.close(fd)
    assert len(dma) == 0


@pytest.mark.parametrize(
    "iova,size",
    [(0x10000, 0x1000), (0xF000, 0x2000), (0x13000, 0x2000), (0xC000, 0x10000), (0x11000, 0x1000), (0x10000, 0x8000)],
)
def test_overlap_is_eexist_and_changes_nothing(dma, mem, iova, size):
    w = add(dma, mem, 0x10000, 0x4000)
    fd = mem.dup_fd()
    with pytest.raises(DmaOverlap) as info:
        dma.add(iova, size, PROT_READ, fd, iova)
    assert info.value.errno == errno.EEXIST
    assert is_open(fd)
    os.close(fd)
    assert dma.windows == (w,)


def test_adjacent_windows_do_not_overlap(dma, mem):
    a = add(dma, mem, 0x10000, 0x4000)
    b = add(dma, mem, 0xC000, 0x4000)
    c = add(dma, mem, 0x14000, 0x1000)
    assert dma.windows == (b, a, c)  # ordered by iova
    assert dma.find(0xFFFF) is b and dma.find(0x10000) is a and dma.find(0x14000) is c


def snapshot(dma: DmaMap) -> tuple:
    """Everything a no-op must leave alone: windows, their frames, views and mappings, the
    free frames, the generation and the process's fds."""
    return (
        dma.windows,
        [(w.hfn_base, w.view, w.mapping, w.mapping.addr if w.mapping else None) for w in dma.windows],
        dma.free_window_frames,
        dma.generation,
        fd_count(),
    )


def test_exact_duplicate_is_a_noop(dma, mem):
    seen = []

    class L:
        def on_dma_map(self, w):
            seen.append(w)

        def on_dma_unmap(self, w):
            seen.append(("unmap", w))

    dma.listeners.append(L())
    w = add(dma, mem, 0x10000, 0x4000)
    fd = mem.dup_fd()
    before = snapshot(dma)
    assert dma.add(0x10000, 0x4000, RW, fd, 0x10000) is w
    assert not is_open(fd)  # taken over (and closed) on success
    after = snapshot(dma)
    assert after[:4] == before[:4]
    assert after[4] == before[4] - 1  # only the duplicate's own fd is gone
    assert seen == [w]
    dma.write(0x10000, b"same")
    assert mem.read(0x10000, 4) == b"same"
    # Same range, different prot, offset or file: an overlap, and nothing changes either.
    with GuestMemory(1 * MiB) as other:
        for args in ((PROT_READ, mem.dup_fd(), 0x10000), (RW, mem.dup_fd(), 0), (RW, other.dup_fd(), 0x10000)):
            before = snapshot(dma)
            with pytest.raises(DmaOverlap):
                dma.add(0x10000, 0x4000, *args)
            assert snapshot(dma) == before
            os.close(args[1])
    assert seen == [w]


def test_exact_duplicate_without_fd_is_a_noop(dma):
    w = dma.add(0xC0000, 0x40000, PROT_READ)
    before = snapshot(dma)
    assert dma.add(0xC0000, 0x40000, PROT_READ) is w
    assert snapshot(dma) == before
    with pytest.raises(DmaOverlap):
        dma.add(0xC0000, 0x40000, RW)


def test_fd_less_duplicate_of_fd_window_is_an_overlap(dma, mem):
    add(dma, mem, 0x0, 0x1000)
    with pytest.raises(DmaOverlap):
        dma.add(0x0, 0x1000, RW)


# --- unmapping -----------------------------------------------------------------------------


def test_remove_range_removes_every_window_inside(dma, mem):
    a = add(dma, mem, 0x0, 0x1000)
    b = add(dma, mem, 0x2000, 0x2000)
    c = add(dma, mem, 0x4000, 0x1000)
    d = add(dma, mem, 0x8000, 0x1000)
    assert dma.remove_range(0x1000, 0x4000) == [b, c]
    assert dma.windows == (a, d)
    assert dma.find(0x2000) is None and dma.find(0x4000) is None
    assert b.view is None and c.view is None
    assert dma.remove_range(0x0, 0x100000) == [a, d]
    assert len(dma) == 0


def test_remove_range_exact_and_empty(dma, mem):
    a = add(dma, mem, 0x4000, 0x2000)
    assert dma.remove_range(0x0, 0x4000) == []
    assert dma.remove_range(0x6000, 0x1000) == []
    assert dma.windows == (a,)
    assert dma.remove_range(0x4000, 0x2000) == [a]
    assert dma.remove_range(0x4000, 0x2000) == []


@pytest.mark.parametrize("iova,size", [(0x5000, 0x2000), (0x3000, 0x2000), (0x4000, 0x1000), (0x5000, 0x1000)])
def test_straddling_range_fails_and_removes_nothing(dma, mem, iova, size):
    a = add(dma, mem, 0x2000, 0x1000)
    b = add(dma, mem, 0x4000, 0x2000)
    with pytest.raises(MalformedRequest) as info:
        dma.remove_range(iova, size)
    assert info.value.errno == errno.EINVAL
    assert dma.windows == (a, b)
    assert dma.read(0x4000, 4) == (4).to_bytes(4, "little")


def test_straddle_with_a_whole_window_inside_removes_nothing(dma, mem):
    a = add(dma, mem, 0x0, 0x1000)
    b = add(dma, mem, 0x2000, 0x2000)
    with pytest.raises(MalformedRequest):
        dma.remove_range(0x0, 0x3000)
    assert dma.windows == (a, b)


def test_remove_all(dma, mem):
    ws = [add(dma, mem, i * 0x2000, 0x1000) for i in range(5)]
    ws.append(dma.add(0x100000, 0x1000, PROT_READ))
    assert dma.remove_all() == ws
    assert len(dma) == 0
    assert all(dma.hfn_window(w.hfn_base) is None for w in ws)


# --- permissions ---------------------------------------------------------------------------


def test_write_only_window_is_never_read(dma, mem):
    w = add(dma, mem, 0x40000, 0x2000, prot=PROT_WRITE)
    dma.write(0x40000, b"wo")
    assert mem.read(0x40000, 2) == b"wo"
    for call in (lambda: dma.read(0x40000, 4), lambda: dma.view(0x40000, 4)):
        with pytest.raises(DmaFault):
            call()
    assert dma.page(w.hfn_base) is None
    page = dma.page(w.hfn_base, write=True)
    assert page is not None and not page.readonly
    page[2:4] = b"ok"
    assert mem.read(0x40000, 4) == b"wook"


def test_reads_get_read_only_views_of_writable_windows(dma, mem):
    w = add(dma, mem, 0x0, 0x2000)
    assert dma.view(0x0, 4).readonly and dma.page(w.hfn_base).readonly
    assert not dma.view(0x0, 4, PROT_WRITE).readonly and not dma.page(w.hfn_base, write=True).readonly


def test_window_that_permits_nothing_is_not_mapped(dma, mem):
    fd = mem.dup_fd()
    w = dma.add(0x50000, 0x1000, 0, fd, 0x50000)
    assert not is_open(fd) and w.mapping is None and w.view is None
    assert dma.page(w.hfn_base) is None and dma.page(w.hfn_base, write=True) is None
    with pytest.raises(DmaFault):
        dma.read(0x50000, 1)


# --- host frames ---------------------------------------------------------------------------


def test_gfn_to_hfn_and_page_agree(dma, mem):
    a = add(dma, mem, 0x10000, 0x4000)
    b = add(dma, mem, 0x200000, 0x3000, offset=0x1000)
    for w in (a, b):
        for k in range(w.page_count):
            gfn = w.first_gfn + k
            hfn = dma.gfn_to_hfn(gfn)
            assert hfn == w.hfn_base + k
            assert dma.hfn_window(hfn) is w
            assert bytes(dma.page(hfn)) == bytes(dma.view(gfn * PAGE_SIZE, PAGE_SIZE))
            assert bytes(dma.page(hfn)) == mem.read(w.offset + k * PAGE_SIZE, PAGE_SIZE)
    assert dma.gfn_to_hfn(0xF) is None and dma.gfn_to_hfn(0x14) is None
    # Host frames of different windows do not overlap, and none is a device frame.
    ra = range(a.hfn_base, a.hfn_base + a.page_count)
    rb = range(b.hfn_base, b.hfn_base + b.page_count)
    assert not set(ra) & set(rb)
    assert max(rb) < DEVICE_HFN_BASE and min(ra) > 0
    # A page view for writing writes through to guest memory.
    dma.page(a.hfn_base + 1, write=True)[0:4] = b"PAGE"
    assert mem.read(0x11000, 4) == b"PAGE"


def test_unmapped_frames_are_reused(dma, mem):
    free = dma.free_window_frames
    w = add(dma, mem, 0x10000, 0x4000)
    old = w.hfn_base
    dma.remove_range(0x10000, 0x4000)
    assert dma.hfn_window(old) is None and dma.page(old) is None and dma.gfn_to_hfn(0x10) is None
    assert dma.free_window_frames == free
    # The same run comes back (best fit, lowest first), now naming the new window.
    w2 = add(dma, mem, 0x80000, 0x4000)
    assert w2.hfn_base == old
    assert dma.hfn_window(old) is w2
    assert bytes(dma.page(old)[:4]) == (0x80).to_bytes(4, "little")


def test_map_unmap_pairs_of_the_largest_windows_never_run_out(dma):
    # 2^33 window frames hold three 8 TiB windows (2^31 frames each) and a bit: without
    # reuse the fifth pair failed with ENOSPC.
    free = dma.free_window_frames
    for i in range(64):
        iova = (i % 7) << 44
        w = dma.add(iova, MAX_WINDOW_SIZE, RW)
        assert w.hfn_base + w.page_count <= DEVICE_HFN_BASE
        assert dma.remove_range(iova, MAX_WINDOW_SIZE) == [w]
    assert dma.free_window_frames == free


def test_frame_exhaustion_leaves_the_fd_with_the_caller_and_changes_nothing(dma, mem):
    # Fill the real frame space (no knobs): three 8 TiB windows and one two pages short.
    giants = [dma.add(i << 44, MAX_WINDOW_SIZE, RW) for i in range(1, 4)]
    giants.append(dma.add(4 << 44, MAX_WINDOW_SIZE - 2 * PAGE_SIZE, RW))
    assert dma.free_window_frames == 1  # frame 0 is never used
    before = snapshot(dma)
    fd = mem.dup_fd()
    with pytest.raises(NoSpace) as info:
        dma.add(0x10000, 0x4000, RW, fd, 0x10000)
    assert info.value.errno == errno.ENOSPC
    assert is_open(fd)  # failure: the caller closes it
    os.close(fd)
    assert snapshot(dma) == before  # and no mapping or frame was left behind
    assert dma.find(0x10000) is None
    # One page still fits, and an unmap makes room for the rest.
    one = add(dma, mem, 0x0, 0x1000)
    assert dma.free_window_frames == 0
    dma.remove_range(giants[0].iova, giants[0].size)
    w = add(dma, mem, 0x10000, 0x4000)
    assert dma.read(0x10000, 4) == (0x10).to_bytes(4, "little")
    assert dma.hfn_window(w.hfn_base) is w
    assert all(x.hfn_base + x.page_count <= DEVICE_HFN_BASE for x in dma.windows)
    assert one in dma.windows


def test_pages_spans_consecutive_frames_up_to_the_window_end(dma, mem):
    w = add(dma, mem, 0x10000, 0x4000)
    view = dma.pages(w.hfn_base + 1, 8)
    assert view is not None and view.readonly
    assert len(view) == 3 * PAGE_SIZE  # the window ends after three more pages
    assert bytes(view) == mem.read(w.offset + PAGE_SIZE, 3 * PAGE_SIZE)
    dma.pages(w.hfn_base, 2, write=True)[PAGE_SIZE : PAGE_SIZE + 4] = b"RUNS"
    assert mem.read(w.offset + PAGE_SIZE, 4) == b"RUNS"
    ro = add(dma, mem, 0x100000, 0x2000, prot=PROT_READ, offset=0x100000)
    assert dma.pages(ro.hfn_base, 2, write=True) is None
    assert len(dma.pages(ro.hfn_base, 2)) == 2 * PAGE_SIZE
    hfn, page = dma.alloc_device_page()
    assert dma.pages(hfn, 4, write=True) is page  # a device page stands alone


def test_device_pages(dma):
    hfn, page = dma.alloc_device_page()
    assert hfn >= DEVICE_HFN_BASE and len(page) == PAGE_SIZE and bytes(page) == bytes(PAGE_SIZE)
    hfn2, _ = dma.alloc_device_page()
    assert hfn2 != hfn
    assert dma.page(hfn, write=True) is page
    page[:4] = b"scr!"
    assert dma.page(hfn).readonly and bytes(dma.page(hfn)[:4]) == b"scr!"
    assert dma.hfn_window(hfn) is None
    dma.free_device_page(hfn)
    assert dma.page(hfn) is None


def test_device_page_cap_and_reuse():
    dma = DmaMap(max_device_pages=3)
    frames = [dma.alloc_device_page()[0] for _ in range(3)]
    with pytest.raises(NoSpace) as info:
        dma.alloc_device_page()
    assert info.value.errno == errno.ENOSPC and "cap" in str(info.value)
    assert dma.device_pages == 3
    dma.free_device_page(frames[1])
    dma.free_device_page(frames[1])  # a second free of the same frame changes nothing
    again, page = dma.alloc_device_page()
    assert again == frames[1] and bytes(page) == bytes(PAGE_SIZE)
    with pytest.raises(NoSpace):
        dma.alloc_device_page()
    assert all(DEVICE_HFN_BASE <= f < HFN_LIMIT for f in frames)


def test_device_pages_in_bulk():
    dma = DmaMap(max_device_pages=5)
    hfns, pages = dma.alloc_device_pages(3, b"\xab" * PAGE_SIZE)
    assert len(set(hfns)) == 3 and all(bytes(p) == b"\xab" * PAGE_SIZE for p in pages)
    assert all(dma.page(h, write=True) is p for h, p in zip(hfns, pages, strict=True))
    with pytest.raises(NoSpace):
        dma.alloc_device_pages(3)  # two left under the cap: none is taken
    assert dma.device_pages == 3
    dma.free_device_page(hfns[1])
    again, fresh = dma.alloc_device_pages(3)
    assert again[0] == hfns[1] and all(bytes(p) == bytes(PAGE_SIZE) for p in fresh)  # reused, zeroed
    # A page's slab and place: the same memory as the page.
    slab, offset = dma.device_slab(again[0])
    slab[offset : offset + 4] = b"slab"
    assert bytes(fresh[0][:4]) == b"slab"


@pytest.mark.parametrize("cap", [0, HFN_LIMIT - DEVICE_HFN_BASE + 1])
def test_device_page_cap_must_fit_the_frame_bits(cap):
    with pytest.raises(ValueError):
        DmaMap(max_device_pages=cap)


def test_largest_device_cap_stays_inside_the_frame_bits():
    dma = DmaMap(max_device_pages=HFN_LIMIT - DEVICE_HFN_BASE)
    assert dma.alloc_device_page()[0] < HFN_LIMIT


# --- windows without an fd -----------------------------------------------------------------


def test_window_without_fd_has_frames_but_faults(dma):
    w = dma.add(0x30000, 0x2000, RW)
    assert w.view is None and w.mapping is None
    assert dma.gfn_to_hfn(0x31) == w.hfn_base + 1
    assert dma.hfn_window(w.hfn_base + 1) is w
    assert dma.page(w.hfn_base) is None and dma.page(w.hfn_base, write=True) is None
    for call in (lambda: dma.view(0x30000, 4), lambda: dma.read(0x30000, 4), lambda: dma.write(0x30000, b"x")):
        with pytest.raises(DmaFault) as info:
            call()
        assert info.value.errno == errno.EFAULT and "no fd" in str(info.value)


def test_too_many_windows(mem):
    dma = DmaMap(max_windows=2)
    add(dma, mem, 0x0, 0x1000)
    add(dma, mem, 0x1000, 0x1000)
    fd = mem.dup_fd()
    with pytest.raises(NoSpace) as info:
        dma.add(0x2000, 0x1000, RW, fd, 0x2000)
    assert info.value.errno == errno.ENOSPC
    os.close(fd)
    dma.remove_all()


# --- listeners -----------------------------------------------------------------------------


class Recorder:
    def __init__(self, dma: DmaMap) -> None:
        self.dma = dma
        self.events: list[tuple[str, int, bool, bool]] = []

    def on_dma_map(self, w):
        # Called once the window is in the table.
        self.events.append(("map", w.iova, self.dma.find(w.iova) is w, w.view is not None))

    def on_dma_unmap(self, w):
        # Called before the window leaves the table, while its memory is still reachable.
        self.events.append(("unmap", w.iova, self.dma.find(w.iova) is w, w.view is not None))
        if w.view is not None:
            page = self.dma.page(w.hfn_base)
            assert page is not None and bytes(page[:4]) == bytes(w.view[:4])
        assert self.dma.hfn_window(w.hfn_base) is w  # its frames are not free yet


def test_listeners_see_map_after_insert_and_unmap_before_removal(dma, mem):
    rec = Recorder(dma)
    dma.listeners.append(rec)
    add(dma, mem, 0x0, 0x2000)
    add(dma, mem, 0x4000, 0x1000)
    dma.add(0x8000, 0x1000, RW)
    dma.remove_range(0x0, 0x2000)
    dma.remove_all()
    assert rec.events == [
        ("map", 0x0, True, True),
        ("map", 0x4000, True, True),
        ("map", 0x8000, True, False),
        ("unmap", 0x0, True, True),
        ("unmap", 0x4000, True, True),
        ("unmap", 0x8000, True, False),
    ]


def test_failed_requests_call_no_listener(dma, mem):
    rec = Recorder(dma)
    add(dma, mem, 0x2000, 0x2000)
    dma.listeners.append(rec)
    with pytest.raises(DmaOverlap):
        dma.add(0x3000, 0x1000, RW)
    with pytest.raises(MalformedRequest):
        dma.remove_range(0x3000, 0x1000)
    assert rec.events == []


def test_generation_moves_on_every_unmap_that_removes_a_window(dma, mem):
    g = dma.generation
    add(dma, mem, 0x0, 0x1000)
    add(dma, mem, 0x1000, 0x1000)
    assert dma.generation == g  # mapping moves no frame
    dma.remove_range(0x100000, 0x1000)
    assert dma.generation == g  # nothing removed, nothing to invalidate
    dma.remove_range(0x0, 0x1000)
    assert dma.generation == g + 1
    dma.remove_all()
    assert dma.generation == g + 2
    dma.remove_all()
    assert dma.generation == g + 2


# --- fds, mappings and revocation ----------------------------------------------------------


def test_no_fd_is_kept_after_mapping(dma, mem, caplog):
    baseline = fd_count()
    ro = add(dma, mem, 0x300000, 0x1000, prot=PROT_READ)
    for i in range(32):
        add(dma, mem, i * 0x2000, 0x1000)
    assert fd_count() == baseline  # each window maps with libc mmap, which keeps no fd
    assert dma.read(0x300000, 4) == (0x300).to_bytes(4, "little")
    with caplog.at_level(logging.WARNING, logger="devmodel.device.dma"):
        dma.remove_range(0x0, 0x100000)
        dma.remove_all()
    assert not caplog.records
    assert ro.view is None
    assert fd_count() == baseline


def test_unmap_unmaps_the_window_memory(dma, mem, caplog):
    w = add(dma, mem, 0x0, 0x2000)
    addr = w.mapping.addr
    assert is_mapped(addr)
    with caplog.at_level(logging.WARNING, logger="devmodel.device.dma"):
        dma.remove_all()
    assert w.view is None and not w.mapping.alive
    assert not is_mapped(addr)
    assert not caplog.records


def test_view_held_across_unmap_no_longer_reaches_guest_memory(dma, mem, caplog):
    w = add(dma, mem, 0x0, 0x3000)
    held = dma.view(0x1000, 0x1000, PROT_WRITE)
    held_page = dma.page(w.hfn_base + 2, write=True)
    held_ro = dma.view(0x0, 8)
    assert bytes(held[:4]) == (1).to_bytes(4, "little")
    guest_before = mem.read(0x0, 0x3000)
    with caplog.at_level(logging.WARNING, logger="devmodel.device.dma"):
        dma.remove_all()
    assert any("still held" in r.getMessage() for r in caplog.records)
    # Writes through every held view land in throw-away memory, not in the memfd...
    held[:8] = b"stale!!!"
    held_page[100:104] = b"gone"
    assert mem.read(0x0, 0x3000) == guest_before
    # ...and reads no longer see guest memory.
    mem.write(0x0, b"guest writes after the unmap")
    assert bytes(held_ro) == bytes(8)
    assert bytes(held[8:16]) == bytes(8)
    assert dma.find(0x1000) is None
    # The addresses go back to the system with the last view.
    addr = w.mapping.addr
    assert w.mapping.alive and is_mapped(addr)
    del held_ro, held_page
    assert w.mapping.alive
    held.release()
    del held
    assert not w.mapping.alive and not is_mapped(addr)


def test_other_windows_of_the_same_file_survive_an_unmap(dma, mem):
    # Two iovas over the same file pages (a vIOMMU alias) and a neighbour: unmapping one
    # revokes only its own mapping.
    a = add(dma, mem, 0x100000, 0x2000, offset=0x4000)
    add(dma, mem, 0x200000, 0x2000, offset=0x4000)
    add(dma, mem, 0x6000, 0x1000)
    dma.remove_range(a.iova, a.size)
    assert dma.read(0x200000, 4) == (4).to_bytes(4, "little")
    dma.write(0x200000, b"alias")
    assert mem.read(0x4000, 5) == b"alias"
    assert dma.read(0x6000, 4) == (6).to_bytes(4, "little")


def test_mapping_aligned_out_to_a_huge_page_granule(mem):
    # What a hugetlbfs file needs (its st_blksize is the huge page size): the mapping starts
    # and ends on the granule, the view covers the window only.
    m = HostMapping(mem.fd, 0x3000, 0x2000, True, granule=2 * MiB)
    assert m.length == 2 * MiB
    view, read_view = m.view, m.read_view
    assert view is not None and read_view is not None
    assert len(view) == 0x2000 and len(read_view) == 0x2000
    assert bytes(read_view[:4]) == (3).to_bytes(4, "little")
    view[0x1000:0x1004] = b"huge"
    del view, read_view
    assert mem.read(0x4000, 4) == b"huge"
    addr = m.addr
    assert m.revoke() and not is_mapped(addr)


def test_remap_after_unmap_sees_current_memory(dma, mem):
    add(dma, mem, 0x0, 0x1000)
    dma.remove_all()
    mem.write(0x0, b"later")
    add(dma, mem, 0x0, 0x1000)
    assert dma.read(0x0, 5) == b"later"


# --- seals ---------------------------------------------------------------------------------


def test_guest_memory_is_sealed_as_qemu_seals_it(mem):
    # What makes a memfd safe: the client cannot shrink it under the mapping.
    with pytest.raises(PermissionError):
        os.ftruncate(mem.fd, PAGE_SIZE)


def test_sealed_memfd_is_mapped_without_a_warning(mem, caplog):
    dma = DmaMap(refuse_unsealed=True)
    with caplog.at_level(logging.WARNING, logger="devmodel.device.dma"):
        add(dma, mem, 0x0, 0x1000)
    assert not caplog.records
    dma.remove_all()


@pytest.fixture(params=["memfd", "shm-file"])
def unsealed_fd(request):
    """An fd the client could truncate: an unsealed memfd, or a file on /dev/shm (QEMU's
    memory-backend-file there, which cannot be sealed at all)."""
    if request.param == "memfd":
        m = GuestMemory(1 * MiB, sealed=False)
        yield m.fd
        m.close()
    else:
        path = f"/dev/shm/devmodel-test-{os.getpid()}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(path)
        os.ftruncate(fd, 1 * MiB)
        yield fd
        os.close(fd)


def test_unsealed_fd_is_accepted_with_one_warning(dma, unsealed_fd, caplog):
    with caplog.at_level(logging.WARNING, logger="devmodel.device.dma"):
        dma.add(0x0, 0x1000, RW, os.dup(unsealed_fd), 0)
        dma.add(0x1000, 0x1000, RW, os.dup(unsealed_fd), 0x1000)
    warnings = [r for r in caplog.records if "not sealed" in r.getMessage()]
    assert len(warnings) == 1 and "SIGBUS" in warnings[0].getMessage()
    dma.write(0x1000, b"ok")
    assert os.pread(unsealed_fd, 2, 0x1000) == b"ok"


def test_unsealed_fd_is_refused_when_asked(unsealed_fd, mem):
    dma = DmaMap(refuse_unsealed=True)
    add(dma, mem, 0x100000, 0x1000)
    before = snapshot(dma)
    fd = os.dup(unsealed_fd)
    with pytest.raises(UnsafeMemory) as info:
        dma.add(0x0, 0x1000, RW, fd, 0)
    assert info.value.errno == errno.EPERM
    assert is_open(fd)
    os.close(fd)
    assert snapshot(dma) == before
    dma.remove_all()


def test_windows_sit_between_guard_pages_in_the_tests(mem: GuestMemory) -> None:
    """tests/conftest.py turns the guards on; a stray access past a window would fault. Read the
    process's own map: the window's mapping has an inaccessible region on each side."""
    import ctypes

    dma = DmaMap()
    w = dma.add(0x10000, 0x4000, PROT_READ | PROT_WRITE, mem.dup_fd(), 0)
    assert w.view is not None
    start = ctypes.addressof(ctypes.c_char.from_buffer(w.view))
    below = above = False
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if hi == start and perms.startswith("---"):
                below = True
            if lo == start + 0x4000 and perms.startswith("---"):
                above = True
    dma.remove_all()
    assert below and above
