"""Translating graphics addresses through a shadow PPGTT, in runs, and explaining one address.

The engines see only the shadow: :meth:`ShadowWalker.runs` walks the shadow tables (device
pages the device built, so every entry at every level is present and points at a shadow table,
a scratch table or a host frame) and returns the range as runs of contiguous host frames with
one permission, walking from the root once per 2 MiB, not once per page. The permission is that
of the final entry. :meth:`ShadowWalker.explain` adds the guest's own path, read through the DMA
map, for the inspection command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devmodel.device.dma import PAGE_SHIFT, PAGE_SIZE, PROT_READ
from devmodel.errors import OutOfRange

from .lanes import LANES, repeat
from .mm import Ppgtt, RootKind, ShadowMm
from .shadow import IPS_GROUP as _IPS_GROUP
from .types import GttType

__all__ = ["ADDRESS_BITS", "Run", "ShadowWalker"]

T = GttType
ADDRESS_BITS = {RootKind.L3: 32, RootKind.L4: 48}
# Bits of the graphics address that index each level, from the root down.
_SHIFTS = {RootKind.L3: (21, 12), RootKind.L4: (39, 30, 21, 12)}
_LIMIT_L3, _LIMIT_L4 = 1 << ADDRESS_BITS[RootKind.L3], 1 << ADDRESS_BITS[RootKind.L4]
_LEVEL_NAMES = {39: "pml4", 30: "pdp", 21: "pd", 12: "pt"}
_INDEX_MASK = LANES - 1
_FRAME_STEP = repeat(1 << PAGE_SHIFT)  # 4 KiB in every lane


def _consecutive(chunk: memoryview, n: int) -> bool:
    """Whether the ``n`` entries in ``chunk`` differ only by one frame each, in order: entry
    k + 1 minus entry k is 4 KiB in every lane. One big-int subtraction instead of n Python
    steps. Whatever the entries hold (a guest's bits 46-63 pass through to the shadow): a
    lane whose entry is smaller than the one before borrows from the lane above, which the
    big-int difference alone can hide, but every borrow makes the last entry minus the first
    fall short of (n - 1) frames by about 2^64, so the second test rules them all out."""
    later = int.from_bytes(chunk[8:], "little")
    earlier = int.from_bytes(chunk[:-8], "little")
    if later - earlier != _FRAME_STEP & ((1 << (64 * (n - 1))) - 1):
        return False
    first = int.from_bytes(chunk[:8], "little")
    return int.from_bytes(chunk[-8:], "little") - first == (n - 1) << PAGE_SHIFT


@dataclass(frozen=True)
class Run:
    """``size`` bytes from graphics address ``gma``. ``hfn`` is the host frame holding ``gma``
    (the run's later bytes are in the frames that follow it), or None for the scratch page:
    reads give zeros and writes are dropped."""

    gma: int
    size: int
    hfn: int | None
    writable: bool


class ShadowWalker:
    def __init__(self, ppgtt: Ppgtt) -> None:
        self.ppgtt = ppgtt
        self.dma = ppgtt.dma
        self.ops = ppgtt.ops
        self.scratch = ppgtt.scratch

    def _check(self, mm: ShadowMm, gma: int, size: int) -> None:
        limit = _LIMIT_L4 if mm.kind is RootKind.L4 else _LIMIT_L3  # no enum hash per access
        if gma < 0 or size <= 0 or gma + size > limit:
            raise OutOfRange("graphics address range outside the context's address space", gma=gma, size=size)

    def _root_hfn(self, mm: ShadowMm, gma: int) -> int:
        slot = (gma >> 30) & 3 if mm.kind is RootKind.L3 else 0
        return mm.shadow_roots[slot] >> PAGE_SHIFT

    def _shadow_pt(self, mm: ShadowMm, gma: int) -> list[tuple[int, int, int]]:
        """The shadow path to ``gma``'s PT entry: (table hfn, index, entry) per level."""
        path = []
        hfn = self._root_hfn(mm, gma)
        for shift in _SHIFTS[mm.kind]:
            page = self.dma.page(hfn)
            i = (gma >> shift) & _INDEX_MASK
            if page is None:  # cannot happen for tables the store built; scratch if it does
                e = self.scratch.leaf_entry
            else:
                e = page.cast("Q")[i]
            path.append((hfn, i, e))
            hfn = self.ops.get_pfn(e)
        return path

    def leaf_entry(self, mm: ShadowMm, gma: int) -> int:
        """The shadow PTE that maps ``gma`` (its cache bits are what an engine passes on)."""
        self._check(mm, gma, 1)
        return self._shadow_pt(mm, gma)[-1][2]

    def translate(self, mm: ShadowMm, gma: int) -> Run:
        """From ``gma`` to the end of its 4 KiB page."""
        self._check(mm, gma, 1)
        e = self._shadow_pt(mm, gma)[-1][2]
        hfn = self.ops.get_pfn(e)
        if hfn == self.scratch.page_hfn:
            return Run(gma, PAGE_SIZE - (gma & (PAGE_SIZE - 1)), None, False)
        return Run(gma, PAGE_SIZE - (gma & (PAGE_SIZE - 1)), hfn, bool(e & self.ops.rw_bit))

    def runs(self, mm: ShadowMm, gma: int, size: int) -> list[Run]:
        """[gma, gma + size) as runs of contiguous host frames (or scratch) of one permission."""
        self._check(mm, gma, size)
        ops, rw, scratch_hfn = self.ops, self.ops.rw_bit, self.scratch.page_hfn
        end = gma + size
        runs: list[Run] = []
        # The open run: start address, frame at its start, frame expected next, writable.
        start = gma
        first_hfn: int | None = -1
        next_hfn: int | None = -1
        writable = False
        page = gma >> PAGE_SHIFT
        last_page = (end - 1) >> PAGE_SHIFT
        while page <= last_page:
            pt_hfn = self._shadow_pt(mm, page << PAGE_SHIFT)[-1][0]
            i = page & _INDEX_MASK
            n = min(LANES - i, last_page - page + 1)
            pt = self.dma.page(pt_hfn)
            if pt is None:
                entries = [self.scratch.leaf_entry] * n
            else:
                chunk = pt[8 * i : 8 * (i + n)]
                if n > 1 and _consecutive(chunk, n):
                    # n entries with one set of flags mapping n consecutive frames: the first
                    # decides whether the run goes on, the rest only extend it.
                    entries = [int.from_bytes(chunk[:8], "little")]
                    hfn0 = ops.get_pfn(entries[0])
                    if hfn0 != scratch_hfn:
                        e = entries[0]
                        w0 = bool(e & rw)
                        if hfn0 != next_hfn or w0 != writable:
                            at = max(gma, page << PAGE_SHIFT)
                            if first_hfn != -1:
                                runs.append(Run(start, at - start, first_hfn, writable))
                            start, first_hfn, writable = at, hfn0, w0
                        next_hfn = hfn0 + n
                        page += n
                        continue
                entries = chunk.cast("Q").tolist()
            for k, e in enumerate(entries):
                hfn: int | None = ops.get_pfn(e)
                w = bool(e & rw)
                if hfn == scratch_hfn:
                    hfn, w = None, False
                if hfn != next_hfn or w != writable:
                    at = max(gma, (page + k) << PAGE_SHIFT)
                    if first_hfn != -1:
                        runs.append(Run(start, at - start, first_hfn, writable))
                    start, first_hfn, writable = at, hfn, w
                next_hfn = None if hfn is None else hfn + 1
            page += n
        runs.append(Run(start, end - start, first_hfn, writable))
        return runs

    # --- inspection --------------------------------------------------------------------------

    def explain(self, mm: ShadowMm, gma: int) -> dict[str, Any]:
        """The guest path, the shadow path and the final frame of ``gma`` (inspection)."""
        self._check(mm, gma, 1)
        shadow = []
        for hfn, i, e in self._shadow_pt(mm, gma):
            shadow.append(
                {"table_hfn": hex(hfn), "scratch_table": self.scratch.is_scratch(hfn), "index": i, "entry": hex(e)}
            )
        for level, shift in zip(shadow, _SHIFTS[mm.kind], strict=True):
            level["level"] = _LEVEL_NAMES[shift]
        run = self.translate(mm, gma)
        window = None if run.hfn is None else self.dma.hfn_window(run.hfn)
        return {
            "gma": hex(gma),
            "guest_path": self._guest_path(mm, gma),
            "shadow_path": shadow,
            "host_frame": "scratch" if run.hfn is None else hex(run.hfn),
            "writable": run.writable,
            "dma_window": None
            if window is None
            else {"iova": hex(window.iova), "size": hex(window.size), "prot": window.prot},
            "mm": self.ppgtt.mm_stats(mm),
            "counters": vars(self.ppgtt.counters),
        }

    def _guest_path(self, mm: ShadowMm, gma: int) -> list[dict[str, Any]]:
        """The guest's own tables for ``gma``, read through the DMA map (what the shadow mirrors)."""
        ops = self.ops
        slot = (gma >> 30) & 3 if mm.kind is RootKind.L3 else 0
        root = mm.roots[slot]
        path: list[dict[str, Any]] = [{"level": "root", "entry": hex(root)}]
        if not ops.test_root_present(root):
            return path
        gfn = ops.get_pfn(root)
        ips = False
        for shift in _SHIFTS[mm.kind]:
            i = (gma >> shift) & _INDEX_MASK
            if ips:  # a 64 KiB page's entry is the first of its 16 slots
                i &= ~(_IPS_GROUP - 1)
            name = _LEVEL_NAMES[shift]
            w = self.dma.find(gfn << PAGE_SHIFT, PAGE_SIZE)
            if w is None or w.view is None or not w.prot & PROT_READ:
                path.append({"level": name, "table_gfn": hex(gfn), "unreadable": True})
                return path
            off = ((gfn - w.first_gfn) << PAGE_SHIFT) + 8 * i
            e = int.from_bytes(w.view[off : off + 8], "little")
            step: dict[str, Any] = {"level": name, "table_gfn": hex(gfn), "index": i, "entry": hex(e)}
            path.append(step)
            if not ops.test_present(e):
                return path
            if shift == 12:
                if ips:
                    step["page_gfn"] = hex(ops.get_pfn(e, T.PPGTT_PTE_64K_ENTRY) + ((gma >> 12) & (_IPS_GROUP - 1)))
                else:
                    step["page_gfn"] = hex(ops.get_pfn(e))
                return path
            if shift == 21 and ops.test_pse(e):
                step["page_gfn"] = hex(ops.get_pfn(e, T.PPGTT_PTE_2M_ENTRY) + ((gma >> 12) & _INDEX_MASK))
                return path
            if shift == 30 and ops.test_pse(e):
                step["page_1g"] = "mapped to scratch (1 GiB pages are not supported)"
                return path
            ips = shift == 21 and self.ppgtt.store.has_ips and ops.test_ips(e)
            gfn = ops.get_pfn(e)
        return path
