"""Host frame numbers: who hands them out, and where each kind lives.

Every page the device can reach has a host frame number (``hfn``); a shadow entry holds one.
A GEN8 entry keeps a frame in bits 45:12, 34 bits, so every hfn is below 2^34: window frames
in [1, 2^33) (0 stays unused, so a zeroed entry never names a window), device-owned frames
(scratch, shadow tables) in [2^33, 2^34).

Window frames come in runs, one per DMA window, from :class:`ExtentAllocator`; a run goes back
when its window is unmapped (after the listeners have re-pointed their shadow entries), and
freed runs merge with their free neighbours, so the free list never holds more extents than
there are live windows plus one. Device frames are single pages from :class:`FramePool`, up to
a cap, reused once freed.
"""

from __future__ import annotations

from ..errors import NoSpace

__all__ = [
    "DEFAULT_MAX_DEVICE_PAGES",
    "DEVICE_HFN_BASE",
    "FIRST_WINDOW_HFN",
    "FRAME_BITS",
    "HFN_LIMIT",
    "ExtentAllocator",
    "FramePool",
]

FRAME_BITS = 34  # GEN8 entry bits 45:12
HFN_LIMIT = 1 << FRAME_BITS
DEVICE_HFN_BASE = 1 << (FRAME_BITS - 1)
FIRST_WINDOW_HFN = 1
# 256 MiB of device-owned pages: the scratch page and the shadow tables of a few busy guests.
DEFAULT_MAX_DEVICE_PAGES = 64 * 1024


class ExtentAllocator:
    """Runs of frame numbers in [first, limit), each given back whole.

    A run of n frames comes from a free extent of exactly n if there is one (a window
    unmapped and mapped again, as firmware does, gets its old frames), else from the smallest
    size class whose every extent holds it (class k holds lengths in [2^k, 2^(k+1)); a good
    fit that leaves the large tail whole for large windows), and only when none is left from
    an extent of n's own class that happens to be long enough. A freed run merges with the
    free extents that end where it starts and start where it ends, found by two dicts. Every
    operation is O(1) but for the scan of 35 classes and that last resort; the free list never
    holds more extents than there are live runs plus one.
    """

    def __init__(self, first: int, limit: int) -> None:
        if not 0 <= first < limit <= HFN_LIMIT:
            raise ValueError(f"frame range [{first:#x}, {limit:#x}) outside [0, 2^{FRAME_BITS})")
        self.first = first
        self.limit = limit
        self._by_start: dict[int, int] = {}  # free extent start -> length
        self._by_end: dict[int, int] = {}  # free extent end -> start
        self._classes: list[dict[int, None]] = [{} for _ in range(FRAME_BITS + 1)]
        self._exact: dict[int, dict[int, None]] = {}  # length -> starts of free extents
        self._runs: dict[int, int] = {}  # allocated run start -> length
        self.free_frames = 0
        self._insert(first, limit - first)

    @property
    def extents(self) -> int:
        """How many free extents the allocator holds (its memory)."""
        return len(self._by_start)

    def alloc(self, count: int) -> int:
        """The first frame of a fresh run of ``count`` frames; NoSpace when no extent holds it."""
        if count <= 0:
            raise ValueError(f"frame run of {count}")
        start = self._fit(count)
        if start is None:
            raise NoSpace("host frame numbers exhausted", frames=count, free=self.free_frames)
        length = self._by_start[start]
        self._remove(start)
        if length > count:
            self._insert(start + count, length - count)
        self._runs[start] = count
        return start

    def _fit(self, count: int) -> int | None:
        same = self._exact.get(count)
        if same:
            return next(iter(same))
        for cls in self._classes[(count - 1).bit_length() :]:
            if cls:
                return next(iter(cls))
        for start in self._classes[count.bit_length() - 1]:
            if self._by_start[start] >= count:
                return start
        return None

    def free(self, start: int, count: int) -> None:
        """Give back a run exactly as it was allocated; anything else is a bug and changes
        nothing."""
        if self._runs.get(start) != count:
            raise ValueError(f"frame run {start:#x}+{count:#x} was not allocated")
        del self._runs[start]
        end = start + count
        prev = self._by_end.get(start)
        if prev is not None:
            self._remove(prev)
            start = prev
        if end in self._by_start:
            length = self._by_start[end]
            self._remove(end)
            end += length
        self._insert(start, end - start)

    def _insert(self, start: int, length: int) -> None:
        self._by_start[start] = length
        self._by_end[start + length] = start
        self._classes[length.bit_length() - 1][start] = None
        self._exact.setdefault(length, {})[start] = None
        self.free_frames += length

    def _remove(self, start: int) -> None:
        length = self._by_start.pop(start)
        del self._by_end[start + length]
        del self._classes[length.bit_length() - 1][start]
        same = self._exact[length]
        del same[start]
        if not same:
            del self._exact[length]
        self.free_frames -= length


class FramePool:
    """Single frames from [first, first + cap): freed frames first (LIFO), then fresh ones."""

    def __init__(self, first: int, cap: int, limit: int) -> None:
        if not 0 < cap <= limit - first:
            raise ValueError(f"a cap of {cap} frames does not fit [{first:#x}, {limit:#x})")
        self.first = first
        self.cap = cap
        self._next = first
        self._free: list[int] = []
        self.in_use = 0

    def alloc(self) -> int:
        if self.in_use >= self.cap:
            raise NoSpace("device page cap reached", cap=self.cap)
        self.in_use += 1
        if self._free:
            return self._free.pop()
        hfn = self._next
        self._next += 1
        return hfn

    def alloc_many(self, count: int) -> list[int]:
        """``count`` frames at once, or NoSpace (and none taken) when fewer remain."""
        if self.in_use + count > self.cap:
            raise NoSpace("device page cap reached", cap=self.cap)
        self.in_use += count
        free = self._free
        reused = min(count, len(free))
        frames = free[len(free) - reused :]
        del free[len(free) - reused :]
        frames.reverse()  # the order alloc() would give: the last freed first
        fresh = self._next
        self._next += count - reused
        frames.extend(range(fresh, self._next))
        return frames

    def free(self, hfn: int) -> None:
        """The caller frees only what it holds (DmaMap checks its table first)."""
        self._free.append(hfn)
        self.in_use -= 1
