"""The vGPU's graphics memory: the mappable (aperture) slice and the hidden slice of the
GGTT's 4 GiB. One type for every reader: PVINFO publishes the two slices (avail_rs), the
command scanner checks GGTT addresses against them, and the execlists check context images
and status pages against them."""

from __future__ import annotations

import bisect

from devmodel.errors import OutOfRange

__all__ = ["DEFAULT_APERTURE_SIZE", "DEFAULT_HIDDEN_SIZE", "GGTT_SPAN", "GraphicsMemory"]

GGTT_SPAN = 4 << 30  # 1M entries of 4 KiB pages
DEFAULT_APERTURE_SIZE = 256 << 20
# Small on purpose: under KVM i915 clears every GGTT entry of the holes one by one at probe,
# so the more of the 4 GiB the vGPU owns, the more posted writes the guest sends.
DEFAULT_HIDDEN_SIZE = 256 << 20
_PAGE = 4096


class GraphicsMemory:
    """The two slices of the GGTT this vGPU owns, ``mappable`` and ``hidden``, as ranges of
    graphics addresses. Adjacent slices count as one span for :meth:`span_from`."""

    __slots__ = ("_ends", "_starts", "hidden", "mappable")

    def __init__(self, mappable: range, hidden: range) -> None:
        for r in (mappable, hidden):
            if r.step != 1 or r.start < 0 or r.stop > GGTT_SPAN or r.stop < r.start:
                raise OutOfRange("graphics memory range outside the GGTT space", base=r.start, size=len(r))
        if len(mappable) and len(hidden) and mappable.start < hidden.stop and hidden.start < mappable.stop:
            raise OutOfRange("mappable and hidden graphics memory overlap", base=hidden.start, size=len(hidden))
        self.mappable = mappable
        self.hidden = hidden
        merged: list[tuple[int, int]] = []
        for start, end in sorted((r.start, r.stop) for r in (mappable, hidden) if len(r)):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        self._starts = [s for s, _ in merged]
        self._ends = [e for _, e in merged]

    @classmethod
    def sized(
        cls, aperture_size: int = DEFAULT_APERTURE_SIZE, hidden_size: int = DEFAULT_HIDDEN_SIZE
    ) -> GraphicsMemory:
        """The vGPU's layout: the aperture from graphics address 0 (BAR2 maps it), the hidden
        slice right after it. Raises ValueError for sizes the device cannot offer."""
        a, h = aperture_size, hidden_size
        if a < _PAGE or a & (a - 1):
            raise ValueError(f"aperture size {a:#x} is not a power of two of at least 4 KiB (it is BAR2)")
        if h < 0 or h % _PAGE:
            raise ValueError(f"hidden size {h:#x} is not a multiple of 4 KiB")
        if a + h > GGTT_SPAN:
            raise ValueError(f"aperture {a:#x} + hidden {h:#x} exceed the GGTT's 4 GiB")
        return cls(range(a), range(a, a + h))

    def span_from(self, address: int) -> int:
        """How many bytes from ``address`` stay inside one span (0 if outside every slice)."""
        i = bisect.bisect_right(self._starts, address) - 1
        if i < 0 or address >= self._ends[i]:
            return 0
        return self._ends[i] - address

    def spans(self) -> tuple[tuple[int, int], ...]:
        """The graphics memory as disjoint [start, end) spans in address order (adjacent slices
        merged): what :meth:`contains` checks against."""
        return tuple(zip(self._starts, self._ends, strict=True))

    def contains(self, address: int, size: int = 1) -> bool:
        """Whether [address, address + size) lies inside the vGPU's graphics memory."""
        return self.span_from(address) >= size > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GraphicsMemory) and (self.mappable, self.hidden) == (other.mappable, other.hidden)

    def __hash__(self) -> int:
        return hash((self.mappable, self.hidden))

    def __repr__(self) -> str:
        parts = ", ".join(f"[{s:#x}, {e:#x})" for s, e in zip(self._starts, self._ends, strict=True))
        return f"GraphicsMemory({parts})"
