"""Whole-table operations: a 4 KiB table as one Python int of 512 64-bit lanes.

Pure Python cannot touch 262,144 entries one by one in 10 ms, but CPython's big-int ``&``,
``|``, ``+`` and ``-`` run in C over the whole 32,768-bit number. As long as no lane carries
into or borrows from its neighbour, a lane-wise operation is one big-int operation; the
translation of a page table whose present entries all fall in one DMA window is such an
operation (add the window's constant frame offset to every present lane). Multiplications of
the 512-lane number are avoided: they cost ten times an ``&``.
"""

from __future__ import annotations

__all__ = ["FRAME_STEPS", "LANES", "ONES", "TABLE_BYTES", "WindowShift", "lanes_of", "present_mask", "repeat"]

LANES = 512
TABLE_BYTES = LANES * 8
_TOP = 1 << 63
# Bit 0 of every lane: the present bits, and the multiplier that repeats a lane value.
ONES = sum(1 << (64 * i) for i in range(LANES))
_TOPS = ONES << 63


def repeat(value: int) -> int:
    """``value`` (one 64-bit lane) in every lane."""
    return ONES * value


def lanes_of(table: bytes) -> int:
    return int.from_bytes(table, "little")


def present_mask(present: int) -> int:
    """All-ones lanes where ``present`` (bit 0 of each lane) is set: (P << 64) - P, no product."""
    return present if present == 0 else (present << 64) - present


class WindowShift:
    """Everything a lane-wise translation through one DMA window needs, computed once per
    window: the bounds of its frames and the shift from guest to host frame numbers, each
    repeated in every lane."""

    def __init__(self, first_gfn: int, page_count: int, hfn_base: int, frame_mask: int) -> None:
        lo = first_gfn << 12
        hi = (first_gfn + page_count) << 12
        # lane + (2^63 - bound) has bit 63 set exactly when lane >= bound; frames stay below
        # 2^46, so no lane overflows.
        self._lo = repeat(_TOP - lo)
        self._hi = repeat(_TOP - hi)
        delta = (hfn_base - first_gfn) << 12
        self._add = repeat(delta) if delta >= 0 else 0
        self._sub = repeat(-delta) if delta < 0 else 0
        self._frames = repeat(frame_mask)

    def translate(self, entries: int, present: int, keep: int | None, fill: int) -> int | None:
        """Shadow lanes for ``entries`` whose present bits (bit 0 of each lane) are ``present``:
        every present lane gets its frame moved into the window's host frames and is ANDed with
        ``keep`` (a repeated flag mask; None keeps every bit); every other lane becomes ``fill``
        (a repeated entry). None when a present frame lies outside the window (the caller then
        goes entry by entry)."""
        if present == ONES:
            frames = entries & self._frames
            # Bit 63 of a lane: frame >= lo in the first sum, frame >= hi in the second; a frame
            # inside the window has exactly the first, so the XOR has every top bit set.
            if ((frames + self._lo) ^ (frames + self._hi)) & _TOPS != _TOPS:
                return None
            moved = entries + self._add if self._add else entries - self._sub
            return moved if keep is None else moved & keep
        mask = present_mask(present)
        frames = entries & self._frames & mask
        if ((frames + (self._lo & mask)) ^ (frames + (self._hi & mask))) & _TOPS != _TOPS & mask:
            return None
        moved = entries & mask
        moved = moved + (self._add & mask) if self._add else moved - (self._sub & mask)
        if keep is not None:
            moved &= keep
        return moved | (fill & ~mask)


# Lane i holds i << 12: added to a repeated entry it numbers 512 consecutive 4 KiB frames.
FRAME_STEPS = sum(i << (64 * i + 12) for i in range(LANES))
