"""The DMA map over memfd-backed guest memory: windows, lookups, views, host frames, unmap
by range, listeners, fd ownership and the message channel for windows without an fd."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from devmodel.device import dma as dma_mod
from devmodel.device.dma import DEVICE_HFN_BASE, PAGE_SIZE, PROT_READ, PROT_WRITE, DmaMap
from devmodel.errors import DmaFault, DmaOverlap, MalformedRequest, NoSpace
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


def test_exact_duplicate_is_a_noop(dma, mem):
    seen = []

    class L:
        def on_dma_map(self, w):
            seen.append(w)

        def on_dma_unmap(self, w):
            pass

    dma.listeners.append(L())
    w = add(dma, mem, 0x10000, 0x4000)
    fd = mem.dup_fd()
    assert dma.add(0x10000, 0x4000, RW, fd, 0x10000) is w
    assert not is_open(fd)  # taken over (and closed) on success
    assert dma.windows == (w,) and seen == [w]
    # Same range, different prot, offset or file: an overlap.
    with GuestMemory(1 * MiB) as other:
        for args in ((PROT_READ, mem.dup_fd(), 0x10000), (RW, mem.dup_fd(), 0), (RW, other.dup_fd(), 0x10000)):
            with pytest.raises(DmaOverlap):
                dma.add(0x10000, 0x4000, *args)
            os.close(args[1])


def test_exact_duplicate_without_fd_is_a_noop(dma):
    w = dma.add(0xC0000, 0x40000, PROT_READ)
    assert dma.add(0xC0000, 0x40000, PROT_READ) is w
    assert len(dma) == 1
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
    # A page view writes through to guest memory.
    dma.page(a.hfn_base + 1)[0:4] = b"PAGE"
    assert mem.read(0x11000, 4) == b"PAGE"


def test_hfns_are_never_reused(dma, mem):
    used: set[int] = set()
    for _ in range(5):
        w = add(dma, mem, 0x10000, 0x4000)
        frames = set(range(w.hfn_base, w.hfn_base + w.page_count))
        assert not frames & used
        used |= frames
        old_hfn = w.hfn_base
        dma.remove_range(0x10000, 0x4000)
        assert dma.hfn_window(old_hfn) is None
        assert dma.page(old_hfn) is None
        assert dma.gfn_to_hfn(0x10) is None


def test_device_pages(dma):
    hfn, page = dma.alloc_device_page()
    assert hfn >= DEVICE_HFN_BASE and len(page) == PAGE_SIZE and bytes(page) == bytes(PAGE_SIZE)
    hfn2, _ = dma.alloc_device_page()
    assert hfn2 != hfn
    assert dma.page(hfn) is page
    assert dma.hfn_window(hfn) is None
    dma.free_device_page(hfn)
    assert dma.page(hfn) is None


def test_window_without_fd_has_frames_but_no_page(dma):
    w = dma.add(0x30000, 0x2000, RW)
    assert w.view is None
    assert dma.gfn_to_hfn(0x31) == w.hfn_base + 1
    assert dma.hfn_window(w.hfn_base + 1) is w
    assert dma.page(w.hfn_base) is None
    with pytest.raises(DmaFault):
        dma.view(0x30000, 4)


def test_hfn_exhaustion_leaves_the_fd_with_the_caller(dma, mem, monkeypatch):
    first = add(dma, mem, 0x0, 0x1000)
    monkeypatch.setattr(dma_mod, "DEVICE_HFN_BASE", first.hfn_base + 3)
    baseline = fd_count()
    fd = mem.dup_fd()
    with pytest.raises(NoSpace):
        dma.add(0x10000, 0x4000, RW, fd, 0x10000)
    assert is_open(fd)  # failure: the caller closes it
    os.close(fd)
    assert fd_count() == baseline  # and no mapping was left behind
    assert dma.windows == (first,)
    assert dma.find(0x10000) is None
    monkeypatch.undo()
    w = add(dma, mem, 0x10000, 0x4000)
    assert dma.read(0x10000, 4) == (0x10).to_bytes(4, "little")
    assert dma.hfn_window(w.hfn_base) is w


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


# --- fds and mappings ----------------------------------------------------------------------


def test_fds_are_closed_after_mapping(dma, mem, caplog):
    baseline = fd_count()
    ro = add(dma, mem, 0x300000, 0x1000, prot=PROT_READ)
    for i in range(32):
        add(dma, mem, i * 0x2000, 0x1000)
    # At most one mapping (which keeps one fd) per file and protection.
    assert fd_count() <= baseline + 2
    assert dma.read(0x300000, 4) == (0x300).to_bytes(4, "little")
    with caplog.at_level(logging.ERROR, logger="devmodel.device.dma"):
        dma.remove_range(0x0, 0x100000)
        dma.remove_all()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert ro.view is None
    assert fd_count() == baseline


def test_unmap_releases_the_window_view(dma, mem, caplog):
    w = add(dma, mem, 0x0, 0x2000)
    dma.remove_all()
    assert w.view is None and w.mm is None and w.file is None
    assert not caplog.records


def test_view_held_across_unmap_stays_valid_and_is_logged(dma, mem, caplog):
    add(dma, mem, 0x0, 0x2000)
    v = dma.view(0x1000, 4)
    with caplog.at_level(logging.ERROR, logger="devmodel.device.dma"):
        dma.remove_all()
    assert any("still has views" in r.getMessage() for r in caplog.records)
    assert bytes(v) == (1).to_bytes(4, "little")  # the mapping lives as long as the view
    assert dma.find(0x1000) is None
    v.release()


def test_remap_after_unmap_sees_current_memory(dma, mem):
    add(dma, mem, 0x0, 0x1000)
    dma.remove_all()
    mem.write(0x0, b"later")
    add(dma, mem, 0x0, 0x1000)
    assert dma.read(0x0, 5) == b"later"


# --- windows without an fd: the channel ----------------------------------------------------


class FakeChannel:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.memory: dict[int, int] = {}

    def dma_read(self, iova: int, count: int) -> bytes:
        self.calls.append(("read", iova, count))
        return bytes(self.memory.get(iova + i, 0) for i in range(count))

    def dma_write(self, iova: int, data: bytes) -> None:
        self.calls.append(("write", iova, bytes(data)))
        for i, b in enumerate(data):
            self.memory[iova + i] = b


def test_window_without_fd_uses_the_channel(dma, mem):
    ch = FakeChannel()
    dma.channel = ch
    dma.add(0x100000, 0x10000, RW)
    add(dma, mem, 0x0, 0x1000)
    dma.write(0x100010, b"hello")
    assert dma.read(0x100010, 5) == b"hello"
    assert dma.read(0x0, 4) == (0).to_bytes(4, "little")  # fd-backed: no message
    dma.write(0x0, b"fd")
    assert ch.calls == [("write", 0x100010, b"hello"), ("read", 0x100010, 5)]
    assert mem.read(0x0, 2) == b"fd"


def test_channel_respects_window_protection(dma):
    ch = FakeChannel()
    dma.channel = ch
    dma.add(0xFFFC0000, 0x40000, PROT_READ)
    assert dma.read(0xFFFC0000, 4) == bytes(4)
    with pytest.raises(DmaFault):
        dma.write(0xFFFC0000, b"x")
    with pytest.raises(DmaFault):
        dma.read(0xFFFBF000, 4)  # outside every window
    assert ch.calls == [("read", 0xFFFC0000, 4)]


def test_window_without_fd_and_without_channel_faults(dma):
    dma.add(0x100000, 0x1000, RW)
    with pytest.raises(DmaFault):
        dma.read(0x100000, 4)
    with pytest.raises(DmaFault):
        dma.write(0x100000, b"x")
