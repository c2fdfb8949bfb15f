"""Host frame allocators: runs of window frames with best fit and coalescing, and the pool of
device frames with its cap."""

from __future__ import annotations

import errno
import itertools
import random

import pytest

from devmodel.device.frames import DEVICE_HFN_BASE, FIRST_WINDOW_HFN, HFN_LIMIT, ExtentAllocator, FramePool
from devmodel.errors import NoSpace


def test_frame_ranges_fit_a_gen8_entry():
    assert FIRST_WINDOW_HFN == 1 and DEVICE_HFN_BASE == 1 << 33 and HFN_LIMIT == 1 << 34


def test_runs_are_disjoint_and_come_back():
    a = ExtentAllocator(1, 101)
    x, y, z = a.alloc(10), a.alloc(20), a.alloc(30)
    assert {x, y, z} <= set(range(1, 101))
    runs = sorted([(x, 10), (y, 20), (z, 30)])
    assert all(s1 + n1 <= s2 for (s1, n1), (s2, _) in itertools.pairwise(runs))
    assert a.free_frames == 40
    with pytest.raises(NoSpace) as info:
        a.alloc(41)
    assert info.value.errno == errno.ENOSPC
    a.free(y, 20)
    assert a.free_frames == 60 and a.extents == 2
    a.free(x, 10)
    a.free(z, 30)
    assert a.free_frames == 100 and a.extents == 1  # everything merged back into one
    assert a.alloc(100) == 1


def test_good_fit_keeps_the_large_extent_whole():
    a = ExtentAllocator(0, 1000)
    runs = [a.alloc(10) for _ in range(5)]  # [0, 50)
    a.free(runs[1], 10)  # a 10-frame hole at 10
    a.free(runs[3], 10)  # and one at 30
    assert a.alloc(10) == 10  # an exact fit first
    assert a.alloc(7) == 30  # then a hole whose class surely holds it, not the tail
    assert a.alloc(3) == 37  # the rest of that hole, exactly
    assert a.alloc(950) == 50  # the tail was left whole
    with pytest.raises(NoSpace):
        a.alloc(1)
    a.free(10, 10)
    with pytest.raises(NoSpace):
        a.alloc(11)
    assert a.alloc(9) == 10  # last resort: an extent of its own class that is long enough


@pytest.mark.parametrize("start,count", [(4, 5), (5, 1), (0, 3), (9, 2), (12, 1), (10, 10), (1, 0), (-1, 1), (20, 1)])
def test_bad_free_is_refused_and_changes_nothing(start, count):
    a = ExtentAllocator(0, 20)
    a.alloc(4)  # [0, 4)
    a.alloc(6)  # [4, 10); [10, 20) is free
    before = (a.free_frames, a.extents)
    with pytest.raises(ValueError):
        a.free(start, count)
    assert (a.free_frames, a.extents) == before
    a.free(4, 6)
    with pytest.raises(ValueError):
        a.free(4, 6)  # twice


def test_random_churn_matches_a_model_and_stays_bounded():
    rnd = random.Random(7)
    a = ExtentAllocator(1, 1 << 16)
    live: dict[int, int] = {}
    used: set[int] = set()
    for _ in range(4000):
        if live and (rnd.random() < 0.5 or a.free_frames < 64):
            start = rnd.choice(list(live))
            count = live.pop(start)
            a.free(start, count)
            used -= set(range(start, start + count))
        else:
            count = rnd.randint(1, 64)
            start = a.alloc(count)
            frames = set(range(start, start + count))
            assert not frames & used and 1 <= start and start + count <= 1 << 16
            used |= frames
            live[start] = count
        assert a.free_frames == (1 << 16) - 1 - len(used)
        assert a.extents <= len(live) + 1  # coalescing bounds the free list
    for start, count in live.items():
        a.free(start, count)
    assert a.extents == 1 and a.free_frames == (1 << 16) - 1


def test_pool_reuses_freed_frames_and_holds_its_cap():
    p = FramePool(100, 3, 200)
    got = [p.alloc(), p.alloc(), p.alloc()]
    assert got == [100, 101, 102]
    with pytest.raises(NoSpace):
        p.alloc()
    p.free(101)
    assert p.alloc() == 101
    assert p.in_use == 3


@pytest.mark.parametrize("cap", [0, 101])
def test_pool_cap_must_fit_its_range(cap):
    with pytest.raises(ValueError):
        FramePool(100, cap, 200)
