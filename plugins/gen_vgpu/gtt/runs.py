"""Runs of equal elements in the bytes of a typed array, found with C-speed byte searches.

The GGTT's bulk updates (a DMA_UNMAP that re-points every entry of a window, a DMA_MAP that
revives entries) touch up to a million entries. A Python loop over them costs about a second;
finding *runs* with ``bytes.find`` and ``bytes.startswith`` and slice-assigning each run costs
one Python step per run instead, and i915 writes long runs (every unused entry points at one
scratch page).
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["find_runs", "run_end"]


def run_end(data: bytes, start: int, width: int, limit: int) -> int:
    """The byte offset just past the run of ``width``-byte elements equal to the one at
    ``start``, not past ``limit``. ``start`` and ``limit`` are element boundaries."""
    view = memoryview(data)
    # Double the checked stretch while the next stretch repeats it (each check is a memcmp
    # of the run so far), then add the remainder in halving steps: O(log n) comparisons.
    length = width
    while data.startswith(view[start : start + length], start + length, limit):
        length *= 2
    step = length // 2
    while step >= width:
        if data.startswith(view[start : start + step], start + length, limit):
            length += step
        step //= 2
    return start + length


def find_runs(data: bytes, needle: bytes, count: int) -> Iterator[tuple[int, int]]:
    """Maximal runs ``[first, stop)`` (element indexes) of the element ``needle`` in ``data``,
    stopping once ``count`` elements are found.

    The caller's encoding must make every occurrence of ``needle`` start on an element
    boundary (the GGTT's owner codes mark the first byte of each element).
    """
    width = len(needle)
    pos = 0
    limit = len(data)
    while count > 0:
        start = data.find(needle, pos)
        if start < 0:
            return
        if start % width:
            raise AssertionError(f"unaligned match at byte {start}: the encoding does not mark element starts")
        pos = run_end(data, start, width, limit)
        count -= (pos - start) // width
        yield start // width, pos // width
