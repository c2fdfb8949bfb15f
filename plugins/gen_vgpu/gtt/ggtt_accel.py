"""The GGTT as the compiled accelerator sees it (``struct dm_ggtt``, accel/dm_accel.h).

C writes entries into the GGTT's own arrays (guest, shadow, owner: pointers to them, which
stay valid because the GGTT never replaces them) and keeps the rest of the bookkeeping the
way :class:`~.ggtt.Ggtt` does, in the struct, while it is *synced*: before its first write
in a drain C asks for a sync (the count of unbacked entries, their bounds), and after the
drain :meth:`GgttAccel.settle` folds what it did back into the Ggtt (counts by owner code,
counters, bounds). Python's own paths therefore always see the Ggtt current, and C never
works from a stale count.

C also needs the DMA windows (reloaded when ``Ggtt.epoch`` moved) with their owner codes. A
window gets its code when an entry first points into it; C asks (DM_NEED_CODE) at exactly
that entry, so codes are handed out in the same order as on the Python path.
"""

from __future__ import annotations

from typing import Any

from devmodel.accel import Accel
from devmodel.device.dma import DmaWindow

from .ggtt import _NONE, _PENDING_HIGH, _PENDING_LOW, _UNBACKED, GGTT_ENTRY_COUNT, Ggtt
from .ops import PteOps

__all__ = ["GgttAccel"]


class GgttAccel:
    def __init__(self, accel: Accel, ggtt: Ggtt) -> None:
        if type(ggtt.ops) is not PteOps:
            # C knows PteOps' encoding (present bit, frame mask); another would need its own.
            raise ValueError(f"no compiled GGTT for {type(ggtt.ops).__name__}")
        ffi = accel.ffi
        self.ffi = ffi
        self.ggtt = ggtt
        g = self.struct = ffi.new("struct dm_ggtt *")
        # the buffers stay exported (and so unresizable) for as long as this object lives
        self._buffers = [ffi.from_buffer(a) for a in (ggtt.guest, ggtt.shadow, ggtt.owner)]
        g.guest = ffi.cast("uint64_t *", self._buffers[0])
        g.shadow = ffi.cast("uint64_t *", self._buffers[1])
        g.owner = ffi.cast("uint32_t *", self._buffers[2])
        g.entries = GGTT_ENTRY_COUNT  # until a window table says otherwise
        g.scratch_entry = ggtt._scratch_entry
        g.absent_entry = ggtt._absent_entry
        g.present_bit = ggtt.ops.present_bit
        g.addr_mask = ggtt.ops.addr_mask
        g.code_none, g.code_pending_low, g.code_pending_high, g.code_unbacked = (
            _NONE,
            _PENDING_LOW,
            _PENDING_HIGH,
            _UNBACKED,
        )
        self._frame_limit = (ggtt.ops.addr_mask >> 12) + 1
        self._epoch = -1
        self._windows: tuple[DmaWindow, ...] = ()
        self._table: Any = None

    def _load_windows(self) -> None:
        ggtt, ffi = self.ggtt, self.ffi
        windows = ggtt.dma.windows  # in iova order, as the C search wants them
        table = ffi.new("struct dm_window[]", max(1, len(windows)))
        codes = ggtt._window_code
        # PteOps.set_pfn refuses a frame beyond the entry's frame bits. The DMA map hands out
        # no such frames; should one appear, C serves no GGTT access while it is mapped, so
        # that Python gives the answer (C could only find out halfway through a batch).
        fits = all(w.hfn_base + w.page_count <= self._frame_limit for w in windows)
        self.struct.entries = GGTT_ENTRY_COUNT if fits else 0
        for slot, w in zip(table, windows, strict=False):
            slot.iova = w.iova
            slot.end = w.end
            slot.hfn_base = w.hfn_base
            slot.code = codes.get(w, 0)
        self.struct.windows = table
        self.struct.nwindows = len(windows)
        self._table = table
        self._windows = windows
        self._epoch = ggtt.epoch

    def sync(self) -> None:
        """Load the counts C keeps in step while it writes (DM_NEED_SYNC)."""
        ggtt, g = self.ggtt, self.struct
        if ggtt.epoch != self._epoch:
            self._load_windows()
        g.unbacked = ggtt._count.get(_UNBACKED, 0)
        g.unbacked_lo = ggtt._unbacked_lo
        g.unbacked_hi = ggtt._unbacked_hi
        g.writes = g.partial_writes = g.scratch_mappings = 0
        g.ndeltas = 0
        g.synced = 1

    def give_code(self) -> None:
        """Hand out the owner code of the window C stopped at (DM_NEED_CODE)."""
        self.ggtt._code_of(self._windows[self.struct.need_window])
        self._load_windows()

    def settle(self) -> None:
        """Fold what C did since the sync into the Ggtt; then C must sync again."""
        g = self.struct
        if not g.synced:
            return
        ggtt = self.ggtt
        count = ggtt._count
        for d in g.deltas[0 : g.ndeltas]:
            count[d.code] = count.get(d.code, 0) + d.delta
        counters = ggtt.counters
        counters.writes += g.writes
        counters.partial_writes += g.partial_writes
        counters.scratch_mappings += g.scratch_mappings
        ggtt._unbacked_lo = g.unbacked_lo
        ggtt._unbacked_hi = g.unbacked_hi
        g.synced = 0
