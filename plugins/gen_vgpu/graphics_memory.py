"""The vGPU's graphics memory: the mappable (aperture) slice and the hidden slice of the
GGTT's 4 GiB. PVINFO's avail_rs publishes these ranges; the device hands the same slices to
the command scanner, which checks GGTT addresses against its own record of them
(``cmd/ranges.py``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_APERTURE_SIZE", "DEFAULT_HIDDEN_SIZE", "GGTT_SPAN", "GraphicsMemory"]

GGTT_SPAN = 4 << 30  # 1M entries of 4 KiB pages
DEFAULT_APERTURE_SIZE = 256 << 20
# Small on purpose: under KVM i915 clears every GGTT entry of the holes one by one at probe,
# so the more of the 4 GiB the vGPU owns, the more posted writes the guest sends.
DEFAULT_HIDDEN_SIZE = 256 << 20
_PAGE = 4096


@dataclass(frozen=True)
class GraphicsMemory:
    aperture_size: int = DEFAULT_APERTURE_SIZE
    hidden_size: int = DEFAULT_HIDDEN_SIZE

    def __post_init__(self) -> None:
        a, h = self.aperture_size, self.hidden_size
        if a < _PAGE or a & (a - 1):
            raise ValueError(f"aperture size {a:#x} is not a power of two of at least 4 KiB (it is BAR2)")
        if h < 0 or h % _PAGE:
            raise ValueError(f"hidden size {h:#x} is not a multiple of 4 KiB")
        if a + h > GGTT_SPAN:
            raise ValueError(f"aperture {a:#x} + hidden {h:#x} exceed the GGTT's 4 GiB")

    @property
    def mappable(self) -> range:
        """Graphics addresses the guest reaches through BAR2: all of the aperture, from 0."""
        return range(self.aperture_size)

    @property
    def hidden(self) -> range:
        """The non-mappable slice, right after the aperture."""
        return range(self.aperture_size, self.aperture_size + self.hidden_size)

    def contains(self, gma: int, size: int = 1) -> bool:
        """Whether [gma, gma + size) lies inside the vGPU's graphics memory (the two slices
        are adjacent, so one range)."""
        return 0 <= gma and gma + size <= self.aperture_size + self.hidden_size
