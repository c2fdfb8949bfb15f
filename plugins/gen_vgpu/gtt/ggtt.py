"""The GGTT: the guest's (virtual) entries, and the shadow entries the engine uses.

A guest write stores the guest's entry, translates its GFN through the DMA map to a host
frame and writes the shadow entry with the guest's flag bits. Non-present entries and GFNs
that no DMA window covers get the scratch page, so nothing the guest writes can make the
engine reach host memory outside the DMA windows. A 4-byte write to one half of an entry is
held until the other half arrives (GVT-g's partial PTEs); meanwhile the shadow is scratch.

The shadow follows the DMA map: an unmapped window's entries fall back to scratch before the
unmap is answered, and a later map that covers their GFNs makes them live again.
"""

from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass, field

from devmodel.device.dma import DmaMap, DmaWindow

from .ops import PteOps

__all__ = ["GGTT_ENTRY_COUNT", "Ggtt", "GgttCounters", "GgttLookup"]

log = logging.getLogger(__name__)

GGTT_ENTRY_COUNT = 1 << 20  # 8 MiB of entries: 4 GiB of graphics address space
_LOW, _HIGH = 1, 2  # halves of an entry seen so far by a pending partial write


@dataclass
class GgttCounters:
    writes: int = 0
    partial_writes: int = 0
    scratch_mappings: int = 0
    unmap_fallbacks: int = 0


@dataclass(frozen=True)
class GgttLookup:
    index: int
    guest_entry: int
    shadow_entry: int
    hfn: int | None  # None: the shadow points at scratch
    window: DmaWindow | None


@dataclass
class Ggtt:
    dma: DmaMap
    ops: PteOps
    scratch_hfn: int
    counters: GgttCounters = field(default_factory=GgttCounters)

    def __post_init__(self) -> None:
        self.guest = array("Q", bytes(8 * GGTT_ENTRY_COUNT))
        self._scratch_entry = self.ops.build(self.scratch_hfn)
        self.shadow = array("Q", [self._scratch_entry]) * GGTT_ENTRY_COUNT
        self._pending: dict[int, int] = {}  # index -> halves seen
        self._users: dict[int, set[int]] = {}  # window hfn_base -> indexes mapped through it
        self._unbacked: dict[int, set[int]] = {}  # gfn -> present indexes no window covers
        self._owner: dict[int, int] = {}  # index -> window hfn_base or -gfn-1 (unbacked)
        self.dma.listeners.append(self)

    # --- guest access ----------------------------------------------------------------------

    def read(self, index: int, width: int, high: bool) -> int:
        e = self.guest[index]
        if width == 8:
            return e
        return (e >> 32) if high else (e & 0xFFFFFFFF)

    def write(self, index: int, value: int, width: int, high: bool) -> None:
        self.counters.writes += 1
        if width == 8:
            self._pending.pop(index, None)
            self.guest[index] = value
            self._update(index, value)
            return
        self.counters.partial_writes += 1
        e = self.guest[index]
        e = (e & 0xFFFFFFFF) | (value << 32) if high else (e & ~0xFFFFFFFF) | value
        self.guest[index] = e
        seen = self._pending.get(index, 0) | (_HIGH if high else _LOW)
        if seen == _LOW | _HIGH:
            del self._pending[index]
            self._update(index, e)
        else:
            self._pending[index] = seen
            self._set_scratch(index)

    # --- shadowing -------------------------------------------------------------------------

    def _detach(self, index: int) -> None:
        owner = self._owner.pop(index, None)
        if owner is None:
            return
        if owner >= 0:
            users = self._users.get(owner)
            if users is not None:
                users.discard(index)
        else:
            gfn = -owner - 1
            idxs = self._unbacked.get(gfn)
            if idxs is not None:
                idxs.discard(index)
                if not idxs:
                    del self._unbacked[gfn]

    def _set_scratch(self, index: int) -> None:
        self._detach(index)
        self.shadow[index] = self._scratch_entry
        self.counters.scratch_mappings += 1

    def _update(self, index: int, e: int) -> None:
        ops = self.ops
        self._detach(index)
        if not ops.test_present(e):
            self.shadow[index] = ops.clear_present(self._scratch_entry)
            return
        gfn = ops.get_pfn(e)
        window = self.dma.find(gfn << 12, 4096)
        if window is None:
            self.shadow[index] = self._scratch_entry
            self.counters.scratch_mappings += 1
            self._unbacked.setdefault(gfn, set()).add(index)
            self._owner[index] = -gfn - 1
            return
        self.shadow[index] = ops.set_pfn(e, window.hfn_base + gfn - window.first_gfn)
        self._users.setdefault(window.hfn_base, set()).add(index)
        self._owner[index] = window.hfn_base

    # DmaListener

    def on_dma_map(self, window: DmaWindow) -> None:
        if not self._unbacked:
            return
        first, count = window.first_gfn, window.page_count
        if count < len(self._unbacked):
            gfns = [g for g in range(first, first + count) if g in self._unbacked]
        else:
            gfns = [g for g in self._unbacked if first <= g < first + count]
        for gfn in gfns:
            for index in list(self._unbacked.get(gfn, ())):
                self._update(index, self.guest[index])

    def on_dma_unmap(self, window: DmaWindow) -> None:
        users = self._users.pop(window.hfn_base, None)
        if not users:
            return
        scratch = self._scratch_entry
        for index in users:
            self.shadow[index] = scratch
            gfn = self.ops.get_pfn(self.guest[index])
            self._unbacked.setdefault(gfn, set()).add(index)
            self._owner[index] = -gfn - 1
        self.counters.unmap_fallbacks += len(users)

    # --- device side -----------------------------------------------------------------------

    def shadow_hfn(self, index: int) -> int | None:
        """The host frame graphics page ``index`` reaches, or None for scratch/not present."""
        e = self.shadow[index]
        if not e & 1:
            return None
        hfn = self.ops.get_pfn(e)
        return None if hfn == self.scratch_hfn else hfn

    def lookup(self, index: int) -> GgttLookup:
        hfn = self.shadow_hfn(index)
        return GgttLookup(
            index, self.guest[index], self.shadow[index], hfn, self.dma.hfn_window(hfn) if hfn is not None else None
        )

    def reset(self) -> None:
        self.guest = array("Q", bytes(8 * GGTT_ENTRY_COUNT))
        self.shadow = array("Q", [self._scratch_entry]) * GGTT_ENTRY_COUNT
        self._pending.clear()
        self._users.clear()
        self._unbacked.clear()
        self._owner.clear()
