"""Where the device's own pages are, for C: the table ``struct dm_device_pages`` (accel/dm_ppgtt.h)
that the shadow PPGTT's compiled helpers and the compiled blitter read the shadow tables through.

The DMA map keeps device pages in slabs of DEVICE_SLAB_PAGES that it never gives back and never
resizes, so a slab's address, once looked up, holds for the map's life; :meth:`DevicePages.refresh`
adds the slabs made since the last look.
"""

from __future__ import annotations

from typing import Any

from devmodel.device.dma import DEVICE_HFN_BASE, DEVICE_SLAB_PAGES, PAGE_SHIFT, DmaMap

__all__ = ["DevicePages"]

_SLAB_SHIFT = DEVICE_SLAB_PAGES.bit_length() - 1
_SLAB_MASK = DEVICE_SLAB_PAGES - 1


class DevicePages:
    def __init__(self, ffi: Any, dma: DmaMap) -> None:
        self._ffi = ffi
        self._dma = dma
        self.struct = ffi.new("struct dm_device_pages *")
        self.struct.base_hfn = DEVICE_HFN_BASE
        self._slabs = ffi.new("uint64_t[]", 1)  # slab k's address
        self.struct.slabs = self._slabs
        self._count = 0

    def refresh(self) -> None:
        """Take in the slabs the map made since the last call (a few µs when there are none)."""
        count = self._dma.device_slab_count
        known = self._count
        if count == known:
            return
        ffi = self._ffi
        slabs = self._slabs
        if count > len(slabs):
            grown = ffi.new("uint64_t[]", max(count, 2 * len(slabs)))
            grown[0:known] = slabs[0:known]
            slabs = self._slabs = grown
            self.struct.slabs = slabs
        for k in range(known, count):
            slab, _ = self._dma.device_slab(DEVICE_HFN_BASE + k * DEVICE_SLAB_PAGES)
            slabs[k] = int(ffi.cast("uintptr_t", ffi.from_buffer(slab)))
        self.struct.nslabs = self._count = count

    def address(self, hfn: int) -> int:
        """Where device frame ``hfn``'s page is (the page may be free: only its place is told)."""
        k = hfn - DEVICE_HFN_BASE
        if k >> _SLAB_SHIFT >= self._count:
            self.refresh()
        return int(self._slabs[k >> _SLAB_SHIFT]) + ((k & _SLAB_MASK) << PAGE_SHIFT)

    def addresses(self, hfns: list[int]) -> list[int]:
        """:meth:`address` of each."""
        if (max(hfns) - DEVICE_HFN_BASE) >> _SLAB_SHIFT >= self._count:
            self.refresh()
        slabs, base, shift, mask = self._slabs, DEVICE_HFN_BASE, _SLAB_SHIFT, _SLAB_MASK
        return [slabs[(h - base) >> shift] + (((h - base) & mask) << PAGE_SHIFT) for h in hfns]
