"""The GGTT: the guest's (virtual) entries, and the shadow entries the engines use.

A guest write stores the guest's entry, translates its GFN through the DMA map to a host
frame and writes the shadow entry with the guest's flag bits. Non-present entries and GFNs
that no DMA window covers get the scratch page, so nothing the guest writes can make an
engine reach host memory outside the DMA windows. A 4-byte write to one half of an entry is
held until the other half arrives (GVT-g's partial PTEs); meanwhile the shadow is scratch.

The shadow follows the DMA map: an unmapped window's entries fall back to scratch before the
unmap is answered, and a later map that covers their GFNs makes them live again.

Bookkeeping. Besides the guest and shadow arrays (8 MiB each) the GGTT keeps one 4-byte
*owner code* per entry (4 MiB): what the shadow entry depends on — nothing (not present), a
pending half, no window ("unbacked": present, but its GFN is outside every window), or one
window. A DMA_UNMAP finds the window's entries as runs of its code (``runs.find_runs``) and
slice-assigns scratch over each run; a DMA_MAP finds the unbacked runs and, inside them, runs
of equal guest entries, and revives those whose GFN the new window covers. i915 points every
unused entry at one scratch GFN, so a full GGTT is one run: both take milliseconds.
"""

from __future__ import annotations

import logging
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from devmodel.device.dma import DmaMap, DmaWindow

from .ops import PteOps
from .runs import find_runs, run_end

__all__ = ["GGTT_ENTRY_COUNT", "EntryState", "Ggtt", "GgttCounters", "GgttLookup"]

log = logging.getLogger(__name__)

GGTT_ENTRY_COUNT = 1 << 20  # 8 MiB of entries: 4 GiB of graphics address space

_OWNER_TYPE = "I"
assert array(_OWNER_TYPE).itemsize == 4
_TAG_LIMIT = 1 << 28  # 7 bits in each of the four bytes of an owner code


def _owner_code(tag: int) -> int:
    """The owner array's element for ``tag``. Bit 7 is set in the element's first byte in
    memory and in no other byte, so a byte search for a code can only match on an element
    boundary. The tag's low bits go in the last byte, the one the search tests first, so
    codes that differ usually differ there."""
    raw = bytes((0x80 | tag >> 21, tag >> 14 & 0x7F, tag >> 7 & 0x7F, tag & 0x7F))
    return int.from_bytes(raw, sys.byteorder)


_NONE = _owner_code(0)  # not present (or never written): depends on nothing
_PENDING_LOW = _owner_code(1)  # one half written, waiting for the other; shadow is scratch
_PENDING_HIGH = _owner_code(2)
_UNBACKED = _owner_code(3)  # present, GFN outside every window; shadow is scratch
_FIRST_WINDOW_TAG = 4

EntryState = str  # "absent", "pending-low", "pending-high", "unbacked", "window"
_STATE_OF_CODE = {_NONE: "absent", _PENDING_LOW: "pending-low", _PENDING_HIGH: "pending-high", _UNBACKED: "unbacked"}


@dataclass
class GgttCounters:
    writes: int = 0
    partial_writes: int = 0
    scratch_mappings: int = 0
    unmap_fallbacks: int = 0
    revivals: int = 0


@dataclass(frozen=True)
class GgttLookup:
    index: int
    guest_entry: int
    shadow_entry: int
    hfn: int | None  # None: the shadow points at scratch
    window: DmaWindow | None
    state: EntryState


@dataclass
class Ggtt:
    dma: DmaMap
    ops: PteOps
    scratch_hfn: int
    counters: GgttCounters = field(default_factory=GgttCounters)

    def __post_init__(self) -> None:
        self._scratch_entry = self.ops.build(self.scratch_hfn)
        self._absent_entry = self.ops.clear_present(self._scratch_entry)
        self.guest = array("Q", bytes(8 * GGTT_ENTRY_COUNT))
        self.shadow = array("Q", [self._scratch_entry]) * GGTT_ENTRY_COUNT
        self.owner = array(_OWNER_TYPE, [_NONE]) * GGTT_ENTRY_COUNT
        self._count: dict[int, int] = {_NONE: GGTT_ENTRY_COUNT}  # owner code -> entries
        self._window_code: dict[DmaWindow, int] = {}
        self._free_codes: list[int] = []
        self._next_tag = _FIRST_WINDOW_TAG
        # Conservative bounds of the unbacked entries' GFNs, so a DMA_MAP elsewhere skips the
        # scan; they only widen, and start afresh when no entry is unbacked.
        self._unbacked_lo = self._unbacked_hi = 0
        # Bumped whenever the windows or their owner codes change, so that the accelerator's
        # copy of the window table (gtt/ggtt_accel.py) knows to reload.
        self.epoch = 0
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
            self.guest[index] = value
            self._update(index, value)
            return
        self.counters.partial_writes += 1
        e = self.guest[index]
        e = (e & 0xFFFFFFFF) | (value << 32) if high else (e & ~0xFFFFFFFF) | value
        self.guest[index] = e
        waiting = self.owner[index]
        if waiting == (_PENDING_LOW if high else _PENDING_HIGH):
            self._update(index, e)
        else:
            self._retag(index, _PENDING_HIGH if high else _PENDING_LOW)
            self.shadow[index] = self._scratch_entry
            self.counters.scratch_mappings += 1

    # --- shadowing -------------------------------------------------------------------------

    def _retag(self, index: int, code: int) -> None:
        old = self.owner[index]
        if old != code:
            self.owner[index] = code
            count = self._count
            count[old] -= 1
            count[code] = count.get(code, 0) + 1

    def _code_of(self, window: DmaWindow) -> int:
        code = self._window_code.get(window)
        if code is None:
            if self._free_codes:
                code = self._free_codes.pop()
            else:
                # Codes are freed at unmap, so tags stay below the number of live windows.
                if self._next_tag >= _TAG_LIMIT:
                    raise AssertionError("GGTT owner tags exhausted")
                code = _owner_code(self._next_tag)
                self._next_tag += 1
            self._window_code[window] = code
            self.epoch += 1
        return code

    def _widen_unbacked(self, lo: int, hi: int) -> None:
        if self._count.get(_UNBACKED, 0) == 0:
            self._unbacked_lo, self._unbacked_hi = lo, hi
        else:
            self._unbacked_lo = min(self._unbacked_lo, lo)
            self._unbacked_hi = max(self._unbacked_hi, hi)

    def _update(self, index: int, e: int) -> None:
        ops = self.ops
        if not ops.test_present(e):
            self.shadow[index] = self._absent_entry
            self._retag(index, _NONE)
            return
        gfn = ops.get_pfn(e)
        window = self.dma.find(gfn << 12, 4096)
        if window is None:
            self.shadow[index] = self._scratch_entry
            self.counters.scratch_mappings += 1
            self._widen_unbacked(gfn, gfn)
            self._retag(index, _UNBACKED)
            return
        self.shadow[index] = ops.set_pfn(e, window.hfn_base + gfn - window.first_gfn)
        self._retag(index, self._code_of(window))

    def _runs(self, code: int, count: int) -> Iterator[tuple[int, int]]:
        """Runs of the ``count`` entries whose owner is ``code``, over a snapshot of the owner
        array (the caller rewrites the owners as it goes)."""
        if not count:
            return iter(())
        return find_runs(self.owner.tobytes(), array(_OWNER_TYPE, [code]).tobytes(), count)

    def _fill(self, start: int, stop: int, shadow_entry: int, code: int) -> None:
        n = stop - start
        if n == 1:
            self.shadow[start] = shadow_entry
            self.owner[start] = code
        else:
            self.shadow[start:stop] = array("Q", [shadow_entry]) * n
            self.owner[start:stop] = array(_OWNER_TYPE, [code]) * n

    # DmaListener

    def on_dma_map(self, window: DmaWindow) -> None:
        self.epoch += 1
        unbacked = self._count.get(_UNBACKED, 0)
        first, end = window.first_gfn, window.first_gfn + window.page_count
        if not unbacked or end <= self._unbacked_lo or first > self._unbacked_hi:
            return
        ops, guest = self.ops, self.guest
        guest_bytes: bytes | None = None
        code: int | None = None
        revived = 0
        for start, stop in self._runs(_UNBACKED, unbacked):
            i = start
            while i < stop:
                e = guest[i]
                j = i + 1
                if j < stop and guest[j] == e:
                    if guest_bytes is None:
                        guest_bytes = guest.tobytes()
                    j = run_end(guest_bytes, 8 * i, 8, 8 * stop) // 8
                gfn = ops.get_pfn(e)
                if first <= gfn < end:
                    if code is None:
                        code = self._code_of(window)
                    self._fill(i, j, ops.set_pfn(e, window.hfn_base + gfn - first), code)
                    revived += j - i
                i = j
        if revived:
            assert code is not None
            self._count[_UNBACKED] -= revived
            self._count[code] = self._count.get(code, 0) + revived
            self.counters.revivals += revived

    def on_dma_unmap(self, window: DmaWindow) -> None:
        self.epoch += 1
        code = self._window_code.pop(window, None)
        if code is None:
            return
        users = self._count.pop(code, 0)
        if users:
            scratch = self._scratch_entry
            for start, stop in self._runs(code, users):
                self._fill(start, stop, scratch, _UNBACKED)
            # Widened before the count grows, so bounds left from earlier unbacked entries
            # that are all gone by now start afresh.
            self._widen_unbacked(window.first_gfn, window.first_gfn + window.page_count - 1)
            self._count[_UNBACKED] = self._count.get(_UNBACKED, 0) + users
            self.counters.unmap_fallbacks += users
        self._free_codes.append(code)

    # --- device side -----------------------------------------------------------------------

    def shadow_hfn(self, index: int) -> int | None:
        """The host frame graphics page ``index`` reaches, or None for scratch/not present."""
        e = self.shadow[index]
        if not e & 1:
            return None
        hfn = self.ops.get_pfn(e)
        return None if hfn == self.scratch_hfn else hfn

    def state(self, index: int) -> EntryState:
        return _STATE_OF_CODE.get(self.owner[index], "window")

    def pending_halves(self) -> dict[int, str]:
        """Entries with one half written and the other awaited: index -> "low" or "high"."""
        found: dict[int, str] = {}
        for code, half in ((_PENDING_LOW, "low"), (_PENDING_HIGH, "high")):
            for start, stop in self._runs(code, self._count.get(code, 0)):
                found.update(dict.fromkeys(range(start, stop), half))
        return found

    def entries_by_state(self) -> dict[EntryState, int]:
        totals: dict[EntryState, int] = {}
        for code, n in self._count.items():
            state = _STATE_OF_CODE.get(code, "window")
            totals[state] = totals.get(state, 0) + n
        return totals

    def lookup(self, index: int) -> GgttLookup:
        hfn = self.shadow_hfn(index)
        return GgttLookup(
            index,
            self.guest[index],
            self.shadow[index],
            hfn,
            self.dma.hfn_window(hfn) if hfn is not None else None,
            self.state(index),
        )

    def reset(self) -> None:
        # In place: the accelerator holds pointers to the arrays.
        self.guest[:] = array("Q", bytes(8 * GGTT_ENTRY_COUNT))
        self.shadow[:] = array("Q", [self._scratch_entry]) * GGTT_ENTRY_COUNT
        self.owner[:] = array(_OWNER_TYPE, [_NONE]) * GGTT_ENTRY_COUNT
        self._count = {_NONE: GGTT_ENTRY_COUNT}
        self.epoch += 1
        self._window_code.clear()
        self._free_codes.clear()
        self._next_tag = _FIRST_WINDOW_TAG
