"""This vGPU's graphics memory as the scanner checks GGTT addresses against it.

The ranges come from one declaration elsewhere (PVINFO's mappable and hidden ranges); the
scanner only takes them as (base, size) pairs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from devmodel.errors import OutOfRange

__all__ = ["GGTT_SPACE", "GraphicsMemory"]

GGTT_SPACE = 1 << 32  # 1M GGTT entries of 4 KiB (contract §1, GGMS = 8 MiB)


class GraphicsMemory:
    """Sorted, merged [base, end) ranges of the GGTT address space this vGPU owns."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        spans: list[tuple[int, int]] = []
        for base, size in ranges:
            if base < 0 or size < 0 or base + size > GGTT_SPACE:
                raise OutOfRange("graphics memory range outside the GGTT space", base=base, size=size)
            if size:
                spans.append((base, base + size))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]

    def span_from(self, address: int) -> int:
        """How many bytes from ``address`` stay inside one range (0 if outside every range)."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0 or address >= self._ends[i]:
            return 0
        return self._ends[i] - address

    def contains(self, address: int, size: int) -> bool:
        return self.span_from(address) >= size > 0

    def __repr__(self) -> str:
        parts = ", ".join(f"[{s:#x}, {e:#x})" for s, e in zip(self._starts, self._ends, strict=True))
        return f"GraphicsMemory({parts})"
