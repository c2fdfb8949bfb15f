"""The shadow PPGTT's per-table work in the compiled accelerator (accel/dm_ppgtt.c).

:class:`~.shadow.TableStore` calls it where its Python path works entry by entry or lane by
lane: the shadow of a leaf table (every present frame moved into its DMA window's host frames,
across any number of windows, 64 KiB pages included), the entries of a directory that changed,
and the first table of a list whose guest bytes differ from their snapshot (a resync of an
unchanged tree is that one call). The results are the Python path's, entry for entry; the
stateful PPGTT tests run both.

C reads the window table built here from the DMA map (rebuilt after every map and unmap) and
the entry encoding of :class:`~.ops.PteOps`; it keeps no state between calls.
"""

from __future__ import annotations

from array import array
from typing import Any

from devmodel.accel import Accel
from devmodel.device.dma import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    DmaMap,
    DmaWindow,
)

from .device_pages import DevicePages
from .ops import PteOps
from .types import GttType

__all__ = ["LEAF_BATCH", "ShadowAccel", "has_shadow_accel"]

# Leaf tables synced per call (their bookkeeping is Python's, one by one, after it). 128: a
# new PD's chunk of 128 PTs takes about 0.25 ms, well inside a step, and the per-chunk cost
# spread over twice the tables of 64 took 0.04 ms off a 1 GiB build (1.06 -> 1.02 ms).
LEAF_BATCH = 128
SNAPSHOT_SLAB = 64
_FUNCTIONS = (
    "dm_pt_sync_leaf",
    "dm_pt_sync_leaves",
    "dm_pt_same",
    "dm_pt_diff",
    "dm_pt_first_changed",
    "dm_pt_pde_frames",
    "dm_pt_first_pts",
    "dm_pt_present",
    "dm_device_page",
)


def has_shadow_accel(accel: Accel | None) -> bool:
    """Whether the module has the PPGTT helpers (one built from older sources has not)."""
    return accel is not None and all(hasattr(accel.lib, f) for f in _FUNCTIONS)


class ShadowAccel:
    def __init__(self, accel: Accel, dma: DmaMap, ops: PteOps, scratch_entry: int) -> None:
        if type(ops) is not PteOps:
            raise ValueError(f"no compiled PPGTT for {type(ops).__name__}")
        ffi = self.ffi = accel.ffi
        self.lib = accel.lib
        self.dma = dma
        o = self.struct = ffi.new("struct dm_pt_ops *")
        o.present_bit = ops.present_bit
        o.rw_bit = ops.rw_bit
        o.addr_mask = ops.addr_mask
        o.addr_mask_64k = ops.addr_mask & ~((1 << 16) - 1)
        assert ops.get_pfn(o.addr_mask_64k, GttType.PPGTT_PTE_64K_ENTRY) == o.addr_mask_64k >> 12
        o.scratch_entry = scratch_entry
        self._used = ffi.new("uint32_t[512]")
        self._nused = ffi.new("uint32_t *")
        self._diff = ffi.new("uint16_t[512]")
        self._frames = ffi.new("uint64_t[]", LEAF_BATCH)
        self._results = ffi.new("uint32_t[]", LEAF_BATCH)
        self._window_of = ffi.new("int32_t[]", LEAF_BATCH)
        self.same_flag = accel.lib.DM_PT_SAME
        self.unbacked_flag = accel.lib.DM_PT_UNBACKED
        self.unusable_flag = accel.lib.DM_PT_UNUSABLE
        self._table: Any = None
        self._bases: dict[DmaWindow, int] = {}  # window -> address of its mapping
        self._slot_views: list[memoryview] = []  # free snapshot slots, the next one last
        self._slot_addrs: list[int] = []  # their addresses
        self.device = DevicePages(ffi, dma)  # where the shadow tables are, for C and TableStore
        self._shadow_out = ffi.new("uint64_t[]", LEAF_BATCH)
        self._windows: tuple[DmaWindow, ...] = ()
        # guest_address's last window: (first gfn, end gfn, address of gfn 0 as if mapped).
        self._last = (0, 0, 0)

    def windows_changed(self) -> None:
        self._table = None
        self._bases.clear()
        self._last = (0, 0, 0)

    def _load(self) -> None:
        windows = self.dma.windows  # iova order: gfn order
        table = self.ffi.new("struct dm_pt_window[]", max(1, len(windows)))
        for slot, w in zip(table, windows, strict=False):
            slot.first_gfn = w.first_gfn
            slot.end_gfn = w.first_gfn + w.page_count
            slot.hfn_base = w.hfn_base
            slot.usable = int(w.view is not None and bool(w.prot & PROT_READ))
            slot.writable = int(bool(w.prot & PROT_WRITE))
        self.struct.windows = table
        self.struct.nwindows = len(windows)
        self._table = table
        self._windows = windows

    def address(self, buffer: Any) -> int:
        """Where a buffer's bytes are. No export is kept: the caller keeps the object alive and
        never resizes it (snapshots, device pages; a window's mapping lives until unmapped)."""
        ffi = self.ffi
        return int(ffi.cast("uintptr_t", ffi.from_buffer(buffer)))

    def snapshot(self) -> tuple[memoryview, int]:
        """A 4 KiB slot for a table's snapshot and its address: slices of one allocation per
        SNAPSHOT_SLAB tables (one address lookup for them all). A table that goes gives its
        slot back (:meth:`release`); one dropped otherwise (a snapshot invalidated) goes with
        the last reference to it, the slab with the last of its slots."""
        if not self._slot_views:
            self._slab()
        return self._slot_views.pop(), self._slot_addrs.pop()

    def release(self, slot: memoryview, address: int) -> None:
        """A slot of :meth:`snapshot` free again; its slab's memory is kept for the next."""
        self._slot_views.append(slot)
        self._slot_addrs.append(address)

    def snapshots(self, n: int) -> tuple[list[memoryview], list[int]]:
        """``snapshot()`` for n tables at once: the slots and their addresses."""
        views, addrs = self._slot_views, self._slot_addrs
        while len(views) < n:
            self._slab()
        k = len(views) - n
        taken = views[k:], addrs[k:]
        del views[k:], addrs[k:]
        return taken

    def _slab(self) -> None:
        """SNAPSHOT_SLAB more free slots, taken after those there are."""
        slab = memoryview(bytearray(SNAPSHOT_SLAB * PAGE_SIZE))
        base = self.address(slab)
        ends = range(SNAPSHOT_SLAB * PAGE_SIZE, 0, -PAGE_SIZE)
        self._slot_views[:0] = [slab[end - PAGE_SIZE : end] for end in ends]
        self._slot_addrs[:0] = [base + end - PAGE_SIZE for end in ends]

    def guest_addresses(self, gfns: list[int]) -> list[int]:
        """``guest_address`` for each of gfns."""
        first, end, origin = self._last
        out = []
        for gfn in gfns:
            if first <= gfn < end:
                out.append(origin + (gfn << PAGE_SHIFT))
            else:
                out.append(self.guest_address(gfn))
                first, end, origin = self._last
        return out

    def guest_run(self, lo: int, hi: int) -> int:
        """When guest pages lo..hi (inclusive) all lie in one readable window with an fd, the
        origin whose sum with ``gfn << PAGE_SHIFT`` is where each is; else 0."""
        if not self.guest_address(lo):
            return 0
        first, end, origin = self._last
        return origin if first <= lo and hi < end else 0

    def guest_address(self, gfn: int) -> int:
        """Where the guest page ``gfn`` is in this process, if a readable window with an fd
        holds it; else 0."""
        first, end, origin = self._last
        if first <= gfn < end:
            return origin + (gfn << PAGE_SHIFT)
        w = self.dma.find(gfn << PAGE_SHIFT, PAGE_SIZE)
        if w is None:
            return 0
        base = self._bases.get(w)
        if base is None:
            view = w.view
            if view is None or not w.prot & PROT_READ:
                return 0
            base = self._bases[w] = self.address(view)
        first = w.first_gfn
        self._last = (first, first + w.page_count, base - (first << PAGE_SHIFT))
        return base + ((gfn - first) << PAGE_SHIFT)

    def read(self, address: int) -> bytes:
        ffi = self.ffi
        return ffi.buffer(ffi.cast("char *", address), PAGE_SIZE)[:]  # type: ignore[no-any-return]

    def sync_leaf(
        self, guest: int, snap: int, shadow: int, ips: bool, valid: bool
    ) -> tuple[set[DmaWindow], bool, bool] | None:
        """dm_pt_sync_leaf: None when the guest table equals the valid snapshot; else the
        windows whose frames the shadow now holds, whether a present entry found no usable
        window, and whether one of those lay in a window without an fd or read right."""
        if self._table is None:
            self._load()
        lib = self.lib
        flags = lib.dm_pt_sync_leaf(self.struct, guest, snap, shadow, ips, valid, self._used, self._nused)
        if flags & lib.DM_PT_SAME:
            return None
        windows = self._windows
        used = {windows[i] for i in self._used[0 : self._nused[0]]}
        return used, bool(flags & lib.DM_PT_UNBACKED), bool(flags & lib.DM_PT_UNUSABLE)

    def sync_leaves(
        self, guest: array[int], snap: array[int], shadow: array[int], flags: bytes
    ) -> tuple[list[int], list[int]]:
        """dm_pt_sync_leaves over at most LEAF_BATCH tables: each one's dm_pt_sync_leaf result and
        the index in :attr:`windows` of the one window it uses (-1 none, -2 several)."""
        if self._table is None:
            self._load()
        ffi = self.ffi
        n = len(flags)
        self.lib.dm_pt_sync_leaves(
            self.struct,
            n,
            ffi.from_buffer("uint64_t[]", guest),
            ffi.from_buffer("uint64_t[]", snap),
            ffi.from_buffer("uint64_t[]", shadow),
            flags,
            self._results,
            self._window_of,
        )
        return ffi.unpack(self._results, n), ffi.unpack(self._window_of, n)

    def pde_frames(self, pde: array[int], large: int) -> list[int] | None:
        """The frames of at most LEAF_BATCH PD entries, or None unless each is present and
        names a PT of 4 KiB pages (none of the ``large`` bits)."""
        n = len(pde)
        if not self.lib.dm_pt_pde_frames(self.struct, large, n, self.ffi.from_buffer("uint64_t[]", pde), self._frames):
            return None
        return self.ffi.unpack(self._frames, n)  # type: ignore[no-any-return]

    def first_pts(
        self, pde: array[int], hfns: list[int], origin: int, saddrs: list[int], pd: int
    ) -> tuple[list[int], list[int], list[int]]:
        """dm_pt_first_pts over at most LEAF_BATCH new PTs in device pages ``hfns``: the shadow
        PD entries written at address ``pd``, each PT synced; the shadow pages' addresses and
        the results as :meth:`sync_leaves`'."""
        if self._table is None:
            self._load()
        self.device.refresh()
        ffi = self.ffi
        n = len(pde)
        self.lib.dm_pt_first_pts(
            self.struct,
            self.device.struct,
            n,
            ffi.from_buffer("uint64_t[]", pde),
            ffi.from_buffer("uint64_t[]", array("Q", hfns)),
            origin,
            ffi.from_buffer("uint64_t[]", array("Q", saddrs)),
            ffi.cast("uint64_t *", pd),
            self._shadow_out,
            self._results,
            self._window_of,
        )
        return ffi.unpack(self._shadow_out, n), ffi.unpack(self._results, n), ffi.unpack(self._window_of, n)

    def present(self, table: bytes, present_bit: int) -> list[int]:
        """The indexes of a table's entries with the present bit."""
        n = self.lib.dm_pt_present(table, present_bit, self._diff)
        return self.ffi.unpack(self._diff, n)  # type: ignore[no-any-return]

    @property
    def windows(self) -> tuple[DmaWindow, ...]:
        return self._windows

    def same(self, a: int, b: int) -> bool:
        return bool(self.lib.dm_pt_same(a, b))

    def diff(self, old: int, new: bytes) -> list[int]:
        n = self.lib.dm_pt_diff(old, new, self._diff)
        # A list of its own: a slice of the cdata would be a view of the buffer the next call
        # rewrites, and a directory's job holds its list across steps.
        return self.ffi.unpack(self._diff, n)  # type: ignore[no-any-return]

    def first_changed(self, guest: Any, snap: Any, start: int, n: int) -> int:
        """The first of tables [start, n) whose guest table (at the address in ``guest``,
        an array of "Q") differs from its snapshot (``snap``), or n."""
        ffi = self.ffi
        return self.lib.dm_pt_first_changed(  # type: ignore[no-any-return]
            ffi.from_buffer("uint64_t[]", guest), ffi.from_buffer("uint64_t[]", snap), start, n
        )
