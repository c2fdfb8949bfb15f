"""Shadow page tables: one per guest table, shared, refcounted per parent entry.

A shadow table is keyed by what it mirrors: a guest table (its type, its GFN and, for a PT,
whether the PDE above it has IPS), or a 2 MiB guest page split into a PT of 4 KiB entries
(the page's first GFN and its flags). Every parent entry that points at a table holds one
reference, and so does every shadow mm root; at zero the table goes, dropping its own
references. Shadow entries hold host frames; every entry the guest has not made present (or
that cannot be translated) points at the scratch table of the level below.

There is no write protection over vfio-user, so :meth:`TableStore.sync` compares a guest table
with the snapshot taken when it was last shadowed and re-shadows what changed, adding the new
mapping of an entry before dropping the old one. Leaf tables are translated whole, as 512-lane
integers (see ``lanes``), when their present entries fall in one DMA window.
"""

from __future__ import annotations

import logging
import math
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from devmodel.accel import Accel
from devmodel.device.dma import PAGE_SHIFT, PAGE_SIZE, PROT_READ, PROT_WRITE, DmaMap, DmaWindow
from devmodel.errors import NoSpace
from devmodel.logbound import OncePerReason

from .lanes import FRAME_STEPS, LANES, ONES, TABLE_BYTES, WindowShift, lanes_of, repeat
from .ops import PteOps
from .scratch import ScratchTree
from .shadow_accel import LEAF_BATCH, ShadowAccel, has_shadow_accel
from .types import GttType, next_pt_type

__all__ = [
    "DEFAULT_MAX_SHADOW_PAGES",
    "BULK_CHUNK",
    "DIRECTORY_CHUNK",
    "DirectorySync",
    "IPS_GROUP",
    "ShadowTable",
    "StoreCounters",
    "TableKey",
    "TableStore",
]

log = logging.getLogger(__name__)

T = GttType
# A guest table: ("guest", type, gfn, ips); a split 2 MiB page: ("2M", leaf entry of its first page).
TableKey = tuple[str, GttType, int, bool] | tuple[str, int]

DEFAULT_MAX_SHADOW_PAGES = 16384  # 64 MiB of shadow tables per vGPU
_PAT_LARGE = 1 << 12  # the PAT bit of a 2 MiB / 1 GiB leaf; bit 7 (PS's place) in a 4 KiB PTE
IPS_GROUP = 16  # a 64 KiB entry covers 16 PTE slots; only every 16th slot is read
_LANE_ALL = (1 << 64) - 1
_NO_WINDOWS: frozenset[DmaWindow] = frozenset()
# The child_refs of the leaves _fresh_pts makes, shared: a leaf names no child, so nothing
# writes it, and a dict per leaf was a twentieth of a 1 GiB build (the allocation and the
# collector's count). ppgtt_model.check_structure checks that it stays empty.
_LEAF: dict[ShadowTable, int] = {}


@dataclass
class StoreCounters:
    tables_created: int = 0
    tables_freed: int = 0
    refused: int = 0  # entries left at scratch because the shadow-page cap was reached
    unmap_fallbacks: int = 0  # leaf tables re-pointed at scratch by a DMA unmap
    mms_reclaimed: int = 0  # idle shadow mms dropped to make room under the mm cap
    mms_refused: int = 0  # new roots refused: the mm cap reached and every mm held


@dataclass(eq=False, repr=False, slots=True)  # a generated repr would follow the children: 512^depth
class ShadowTable:
    key: TableKey
    pt_type: GttType  # the kind of table (a split 2 MiB page is a PTE_PT)
    gfn: int  # the guest table's GFN, or the first GFN of a split 2 MiB page
    ips: bool  # a PT whose entries are 64 KiB pages
    hfn: int
    page: memoryview
    synth: bytes | None = None  # a split page's guest-equivalent PT (no guest memory behind it)
    refs: int = 0
    snapshot: bytes | memoryview | None = None  # guest bytes as last shadowed; None: rebuild at the next sync
    # The compiled path's addresses: the snapshot (a 4 KiB slot refilled in place; 0 on the
    # Python path, whose snapshots are bytes), the shadow page, and the guest table as last
    # read (0: none).
    saddr: int = 0
    haddr: int = 0
    gaddr: int = 0
    # A directory's child per entry is the live table whose frame the shadow entry holds
    # (TableStore.by_hfn; a scratch entry: none): no list of 512 per directory for the cyclic
    # garbage collector to traverse on every full collection.
    child_refs: dict[ShadowTable, int] = field(default_factory=dict)  # child -> entries naming it
    # Leaves: the windows whose frames it holds. Never changed in place, so that the leaves of
    # one window share one set.
    windows: frozenset[DmaWindow] = _NO_WINDOWS
    alive: bool = True
    syncs: int = 0  # moves when a directory sync ends or the snapshot is dropped (DirectorySync)

    def __repr__(self) -> str:
        return f"ShadowTable({self.key}, hfn={self.hfn:#x}, refs={self.refs}, alive={self.alive})"

    @property
    def is_leaf(self) -> bool:
        return self.pt_type is T.PPGTT_PTE_PT

    @property
    def entries(self) -> memoryview:
        return self.page.cast("Q")


# Directory entries re-shadowed between two looks at a step's deadline: an entry that creates
# its child table costs about 10 µs, so a chunk stays well under a step.
DIRECTORY_CHUNK = 16
# The same on the compiled path for a PD's entries naming PTs of 4 KiB pages, the bulk of a
# tree: the chunk's new PTs are created together and synced in one call to C, about 2 µs an
# entry (LEAF_BATCH: C's results for one call).
BULK_CHUNK = LEAF_BATCH


@dataclass(eq=False, slots=True)
class DirectorySync:
    """A directory's sync under way (:meth:`TableStore.sync_some`): plain data between steps."""

    table: ShadowTable
    data: bytes  # the guest table as read when the job began
    changed: range | list[int]  # the entries that differ from the snapshot, in order
    syncs: int  # table.syncs when the job began
    new: array[int] = field(init=False)
    pos: int = 0  # changed[:pos] are done
    unbacked: bool = False  # a present entry found no table in guest memory
    entries_changed: int = 0  # once done
    leaves_synced: int = 0  # new PTs created and synced by the job itself (in the caller's seen)

    def __post_init__(self) -> None:
        self.new = array("Q", self.data)


class TableStore:
    def __init__(
        self,
        dma: DmaMap,
        ops: PteOps,
        scratch: ScratchTree,
        has_ips: bool,
        max_pages: int = DEFAULT_MAX_SHADOW_PAGES,
        reclaim: Callable[[], bool] = lambda: False,
    ) -> None:
        self.dma = dma
        self.ops = ops
        self.scratch = scratch
        self.has_ips = has_ips
        self.max_pages = max_pages
        self.reclaim = reclaim  # frees shadow pages of an idle mm; False when none could go
        self.tables: dict[TableKey, ShadowTable] = {}
        self.by_hfn: dict[int, ShadowTable] = {}  # every live table by its shadow page's frame
        self.by_window: dict[DmaWindow, set[ShadowTable]] = {}
        self.unbacked: set[ShadowTable] = set()  # hold entries no window covered: redo on a map
        self.counters = StoreCounters()
        self._shifts: dict[DmaWindow, WindowShift] = {}
        self._one_window: dict[DmaWindow, frozenset[DmaWindow]] = {}  # shared ShadowTable.windows
        self._last_window: tuple[int, int, DmaWindow] | None = None  # _guest_window's last find
        self._once = OncePerReason(log)
        self._leaf_scratch = scratch.leaf_entry
        self._scratch_fill = repeat(scratch.leaf_entry)
        self._keep_ro = repeat(_LANE_ALL & ~ops.rw_bit)
        # _fresh_pts: a PD's entries that name no child yet.
        self._below_run = array("Q", [scratch.entry_below[T.PPGTT_PDE_PT]] * LANES).tobytes()
        self.accel: ShadowAccel | None = None
        # Moves whenever a table goes, is blanked or loses its snapshot, or a directory entry
        # changes: a list of the tables reachable from an mm taken at one value stays that list
        # while the value stays (ShadowMm.flat).
        self.generation = 0

    def use_accel(self, accel: Accel | None) -> None:
        """Do the per-table work in the compiled accelerator (None: on Python alone)."""
        self.generation += 1
        if has_shadow_accel(accel):
            assert accel is not None
            self.accel = ShadowAccel(accel, self.dma, self.ops, self._leaf_scratch)
        else:
            self.accel = None

    def __len__(self) -> int:
        return len(self.tables)

    def log_once(self, reason: str, detail: str) -> None:
        """What the shadow PPGTT refuses or cannot honour, once per reason."""
        self._once.warn(reason, "PPGTT: %s (%s)", reason, detail)

    # --- tables and references --------------------------------------------------------------

    def get(self, pt_type: GttType, gfn: int, ips: bool = False) -> ShadowTable | None:
        """The shadow of a guest table, created (blank, to be synced) if need be. None when the
        guest table is not in readable guest memory or no shadow page can be had."""
        key: TableKey = ("guest", pt_type, gfn, ips)
        table = self.tables.get(key)
        if table is not None:
            return table
        if self._guest_window(gfn) is None:
            return None
        return self._create(key, pt_type, gfn, ips, None)

    def get_split(self, leaf: int) -> ShadowTable | None:
        """The PT of 512 4 KiB entries standing for a 2 MiB page; ``leaf`` is the entry of its
        first 4 KiB page (present, flags already in PTE form)."""
        key: TableKey = ("2M", leaf)
        table = self.tables.get(key)
        if table is not None:
            return table
        synth = (repeat(leaf) + FRAME_STEPS).to_bytes(TABLE_BYTES, "little")
        return self._create(key, T.PPGTT_PTE_PT, self.ops.get_pfn(leaf), False, synth)

    def _create(self, key: TableKey, pt_type: GttType, gfn: int, ips: bool, synth: bytes | None) -> ShadowTable | None:
        if len(self.tables) >= self.max_pages and not self.reclaim():
            self._refuse("the shadow-page cap is reached", f"cap {self.max_pages} pages")
            return None
        try:
            hfn, page = self.dma.alloc_device_page()
        except NoSpace as exc:
            self._refuse("no device page for a shadow table", str(exc))
            return None
        page[:] = self.scratch.filled[pt_type]
        table = ShadowTable(key, pt_type, gfn, ips, hfn, page, synth)
        self.tables[key] = table
        self.by_hfn[hfn] = table
        self.counters.tables_created += 1
        return table

    def _refuse(self, reason: str, detail: str) -> None:
        self.counters.refused += 1
        self.log_once(reason, detail)

    def _drop_entry_ref(self, parent: ShadowTable, child: ShadowTable) -> None:
        """One entry of ``parent`` no longer names ``child`` (it was just rewritten)."""
        child_refs = parent.child_refs
        m = child_refs[child] - 1
        if m:
            child_refs[child] = m
        else:
            del child_refs[child]
        self.unref(child)

    def unref(self, table: ShadowTable, count: int = 1) -> None:
        """Drop ``count`` references; a table at zero goes, and with it its references."""
        table.refs -= count
        if table.refs > 0:
            return
        doomed = [table]
        while doomed:
            t = doomed.pop()
            for child, n in t.child_refs.items():
                was = child.refs
                child.refs -= n
                if was > 0 >= child.refs:
                    doomed.append(child)
            self._free(t)

    def _free(self, t: ShadowTable) -> None:
        self.generation += 1
        t.alive = False
        self._release_snapshot(t)
        t.child_refs = {}
        del self.tables[t.key]
        del self.by_hfn[t.hfn]
        self._forget_windows(t)
        self.unbacked.discard(t)
        self.dma.free_device_page(t.hfn)
        self.counters.tables_freed += 1

    def _release_snapshot(self, t: ShadowTable) -> None:
        """A table that goes gives its snapshot slot back for the next table (a compiled
        build then takes no new slab, as the device pages come back to their pool). Nothing
        holds the address: a flat list that does is dropped with the generation."""
        if self.accel is not None and t.saddr > 0 and isinstance(t.snapshot, memoryview):
            self.accel.release(t.snapshot, t.saddr)
        t.snapshot = None
        t.saddr = 0

    def _forget_windows(self, t: ShadowTable) -> None:
        for w in t.windows:
            users = self.by_window.get(w)
            if users is not None:
                users.discard(t)
                if not users:
                    del self.by_window[w]
        t.windows = _NO_WINDOWS

    def clear(self) -> None:
        """Free every shadow table (reset): nothing refers to them any more."""
        self.generation += 1
        for t in list(self.tables.values()):
            t.alive = False
            self._release_snapshot(t)
            self.dma.free_device_page(t.hfn)
        self.counters.tables_freed += len(self.tables)
        self.tables.clear()
        self.by_hfn.clear()
        self.by_window.clear()
        self.unbacked.clear()
        self._shifts.clear()
        self._one_window.clear()
        self._last_window = None

    # --- bringing a table up to date ---------------------------------------------------------

    def sync(self, t: ShadowTable, queue: list[ShadowTable]) -> int:
        """Re-shadow what changed in ``t``'s guest table since its snapshot; put the distinct
        child tables on ``queue``. Returns the number of shadow entries rewritten. In one go:
        :meth:`begin_sync` and :meth:`sync_some` are the same in bounded steps."""
        job = self.begin_sync(t, queue)
        if isinstance(job, int):
            return job
        self.sync_some(job, queue, math.inf)
        return job.entries_changed

    def begin_sync(self, t: ShadowTable, queue: list[ShadowTable]) -> int | DirectorySync:
        """``sync``, done at once (the entries rewritten) for a leaf, an unchanged table or one
        that left guest memory; for a directory whose guest table changed, its job, to be
        run by :meth:`sync_some`."""
        if self.accel is not None and t.synth is None:
            return self._sync_compiled(t, queue, self.accel)
        if t.synth is not None:
            data: bytes | None = t.synth
        else:
            data = self._read_guest_table(t.gfn)
        if data is None:
            # The guest table left guest memory: nothing of it can be trusted.
            changed = self._blank(t)
            self.unbacked.add(t)
            return changed
        if data == t.snapshot:
            queue.extend(t.child_refs)
            return 0
        if not t.is_leaf:
            if t.snapshot is None:
                return DirectorySync(t, data, self._unsettled(t, data), t.syncs)
            old = array("Q", bytes(t.snapshot))
            new = array("Q", data)
            return DirectorySync(t, data, [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b], t.syncs)
        changed = self._sync_leaf(t, data)
        t.snapshot = data
        t.saddr = 0  # a Python snapshot (bytes): a compiled sync takes a slot again
        return changed

    def _sync_compiled(self, t: ShadowTable, queue: list[ShadowTable], accel: ShadowAccel) -> int | DirectorySync:
        """``begin_sync`` with the compare, the copy and the leaf's translation in C, reading
        the guest table where it is mapped."""
        gaddr = t.gaddr = accel.guest_address(t.gfn)
        if not gaddr:
            changed = self._blank(t)
            self.unbacked.add(t)
            return changed
        snap = t.snapshot
        valid = snap is not None and t.saddr > 0
        if not t.is_leaf:
            if valid and accel.same(gaddr, t.saddr):
                queue.extend(t.child_refs)
                return 0
            data = accel.read(gaddr)
            return DirectorySync(t, data, accel.diff(t.saddr, data) if valid else self._unsettled(t, data), t.syncs)
        if not valid:
            snap, t.saddr = accel.snapshot()
            t.snapshot = snap
        done = accel.sync_leaf(gaddr, t.saddr, self._haddr(t), t.ips, valid)
        if done is None:
            return 0
        windows, unbacked, unusable = done
        self._forget_windows(t)
        if unusable:
            self.log_once(
                "a page in a window without an fd or read permission is mapped to scratch", f"PT gfn {t.gfn:#x}"
            )
        self._note_windows(t, windows)
        self._mark_unbacked(t, bool(unbacked))
        return LANES

    def _unsettled(self, t: ShadowTable, data: bytes) -> range | list[int]:
        """A directory without a snapshot: the entries to redo, all but those the guest has not
        made present whose shadow already is the scratch below (redoing them changes nothing;
        a new table's entries are, and a fresh root holds mostly them)."""
        present = self.ops.present_bit
        listed = None
        if self.accel is not None:
            listed = self.accel.present(data, present)
            if len(listed) == LANES:
                return range(LANES)
        elif present == 1 and lanes_of(data) & ONES == ONES:
            return range(LANES)  # every entry present (a whole-table test: 1 µs, not 30)
        if t.page.tobytes() == self.scratch.filled[t.pt_type]:  # a blank table
            todo = listed if listed is not None else [i for i, e in enumerate(array("Q", data)) if e & present]
        else:
            guest = array("Q", data)
            below = self.scratch.entry_below[t.pt_type]
            todo = [i for i, (e, s) in enumerate(zip(guest, t.entries, strict=True)) if e & present or s != below]
        return range(LANES) if len(todo) == LANES else todo

    def batches_leaves(self, t: ShadowTable) -> bool:
        """Whether ``t`` goes to :meth:`sync_leaves` rather than :meth:`sync`."""
        return self.accel is not None and t.synth is None and t.pt_type is T.PPGTT_PTE_PT

    def sync_leaves(self, batch: list[ShadowTable]) -> list[int]:
        """``sync`` for leaf tables of guest memory (``batches_leaves``), at most LEAF_BATCH of
        them, compared and translated in one call to C; the entries rewritten per table."""
        accel = self.accel
        assert accel is not None and len(batch) <= LEAF_BATCH
        changed = [0] * len(batch)
        todo: list[int] = []
        for k, t in enumerate(batch):
            if not t.alive:  # freed by a directory synced after it was queued
                continue
            gaddr = t.gaddr = accel.guest_address(t.gfn)
            if not gaddr:
                changed[k] = self._blank(t)
                self.unbacked.add(t)
                continue
            if t.snapshot is None or not t.saddr:
                t.snapshot, t.saddr = accel.snapshot()
                t.saddr = -t.saddr  # negative: not valid yet
            self._haddr(t)
            todo.append(k)
        if not todo:
            return changed
        tables = [batch[k] for k in todo]
        flags = bytes((t.ips | (t.saddr > 0) << 1) for t in tables)
        for t in tables:
            if t.saddr < 0:
                t.saddr = -t.saddr
        results, window_of = accel.sync_leaves(
            array("Q", [t.gaddr for t in tables]),
            array("Q", [t.saddr for t in tables]),
            array("Q", [t.haddr for t in tables]),
            flags,
        )
        for k, n in zip(todo, self._leaf_results(tables, results, window_of), strict=True):
            changed[k] = n
        return changed

    def _leaf_results(self, tables: list[ShadowTable], results: list[int], window_of: list[int]) -> list[int]:
        """The window bookkeeping after ``accel.sync_leaves``; the entries rewritten per table."""
        accel = self.accel
        assert accel is not None
        windows = accel.windows
        same, unbacked_flag = accel.same_flag, accel.unbacked_flag
        unbacked = self.unbacked
        changed = []
        for t, result, w in zip(tables, results, window_of, strict=True):
            if result & same:
                changed.append(0)
                continue
            changed.append(LANES)
            if not result and w != -2:
                # The common case: every present frame in one usable window (or none present).
                if w >= 0:
                    window = windows[w]
                    held = t.windows
                    if len(held) != 1 or window not in held:
                        if held:
                            self._forget_windows(t)
                        only = self._window_set(window)
                        self._note_windows(t, only)
                elif t.windows:
                    self._forget_windows(t)
                if unbacked:
                    unbacked.discard(t)
                continue
            if t.windows:
                self._forget_windows(t)
            if w >= 0:
                self._note_windows(t, {windows[w]})
            elif w == -2:
                # Several windows: C lists them for one table at a time.
                done = accel.sync_leaf(t.gaddr, t.saddr, t.haddr, t.ips, False)
                assert done is not None
                self._note_windows(t, done[0])
            if result & accel.unusable_flag:
                self.log_once(
                    "a page in a window without an fd or read permission is mapped to scratch", f"PT gfn {t.gfn:#x}"
                )
            self._mark_unbacked(t, bool(result & unbacked_flag))
        return changed

    def _blank(self, t: ShadowTable) -> int:
        self.generation += 1
        was = t.snapshot
        self._invalidate(t)
        t.page[:] = self.scratch.filled[t.pt_type]
        self._forget_windows(t)
        if t.child_refs:
            old = t.child_refs
            t.child_refs = {}
            for child, n in old.items():
                self.unref(child, n)
        return 0 if was is None else LANES

    def sync_some(
        self, job: DirectorySync, queue: list[ShadowTable], deadline: float, seen: set[ShadowTable] | None = None
    ) -> bool:
        """Re-shadow the job's changed entries, DIRECTORY_CHUNK at a time, until all are done
        (True: the table's children are then on ``queue``) or ``time.monotonic()`` passes
        ``deadline`` (False: call again). A job whose table went is done, with nothing queued.

        Between two calls anything may happen to the store: other tasks sync the same table,
        tables go, the guest writes. Each entry's update is whole (the new child referenced
        before the old one is dropped) and redoing one is harmless, so a job only has to
        re-read the table's live fields per chunk and hold no table of its own across calls
        (the memo of entries is per call). The snapshot becomes the job's guest bytes at the
        end, unless another sync of the table ended or blanked it meanwhile (``syncs``
        moved): which entries then follow which bytes is unknown, and the next sync redoes
        all of them.

        ``seen``: the caller's walk's tables. Given, the compiled path syncs the PTs that a
        chunk creates at once and adds them to it (``job.leaves_synced``); without it they are
        only queued, as every other child is."""
        t = job.table
        changed = job.changed
        n = len(changed)
        new = job.new
        pt_type = t.pt_type
        test_present = self.ops.test_present
        by_hfn = self.by_hfn
        addr_mask = self.ops.addr_mask
        memo: dict[int, tuple[ShadowTable | None, int]] = {}
        bulk = self.accel is not None and pt_type is T.PPGTT_PDE_PT
        while job.pos < n:
            if not t.alive:
                return True
            self.generation += 1
            if bulk:
                stop = min(n, job.pos + BULK_CHUNK)
                if self._pt_chunk(job, stop, seen):
                    job.pos = stop
                    if stop < n and time.monotonic() >= deadline:
                        return False
                    continue
            entries = t.entries
            child_refs = t.child_refs
            stop = min(n, job.pos + DIRECTORY_CHUNK)
            for k in range(job.pos, stop):
                i = changed[k]
                e = new[i]
                found = memo.get(e)
                if found is None:
                    found = memo[e] = self._directory_entry(pt_type, e)
                    if found[0] is None and test_present(e):
                        job.unbacked = True
                child, shadow_entry = found
                # Add before remove: the new child is referenced before the old one may go.
                if child is not None:
                    child.refs += 1
                    child_refs[child] = child_refs.get(child, 0) + 1
                old_child = by_hfn.get((entries[i] & addr_mask) >> PAGE_SHIFT)
                entries[i] = shadow_entry
                if old_child is not None:
                    self._drop_entry_ref(t, old_child)
            job.pos = stop
            if stop < n and time.monotonic() >= deadline:
                return False
        if not t.alive:
            return True
        if job.syncs != t.syncs:
            self._invalidate(t)
        elif self.accel is not None and t.synth is None:
            snap = t.snapshot
            if not isinstance(snap, memoryview) or t.saddr <= 0:
                snap, t.saddr = self.accel.snapshot()
                t.snapshot = snap
            snap[:] = job.data
        else:
            t.snapshot = job.data
            t.saddr = 0  # a Python snapshot (bytes): a compiled sync takes a slot again
        t.syncs += 1
        if job.unbacked:
            self.unbacked.add(t)
        job.entries_changed = n
        # The children this job synced itself are in seen already: the walk need not see them.
        if seen is None:
            queue.extend(t.child_refs)
        elif not t.child_refs.keys() <= seen:  # a PD's new PTs are all there
            queue.extend([c for c in t.child_refs if c not in seen])
        return True

    def _pt_chunk(self, job: DirectorySync, stop: int, seen: set[ShadowTable] | None) -> bool:
        """The compiled path's chunk of a PD's changed entries [job.pos, stop) when every present
        one names a PT of 4 KiB pages: the missing PTs created together (device pages, tables)
        and, with ``seen``, synced in one call to C. The result is the entry-by-entry loop's,
        entry for entry. False, having done nothing, for any other chunk, or when the new PTs
        would pass the shadow-page cap or find too few device pages: the loop then takes it,
        table by table, with the reclaim and the refusals."""
        accel = self.accel
        assert accel is not None
        t = job.table
        ops = self.ops
        present, large, mask = ops.present_bit, ops.ps_bit | ops.ips_bit, ops.addr_mask
        new = job.new
        index = job.changed[job.pos : stop]
        if seen is not None:
            run = index
            if isinstance(run, list) and run and run[-1] - run[0] == len(run) - 1:
                run = range(run[0], run[-1] + 1)  # sorted and distinct: a run of entries
            if isinstance(run, range) and self._fresh_pts(job, run, seen):
                return True
        guest = [new[i] for i in index]
        # Per distinct entry value: i915 fills a PD with one entry (its scratch PT) where it
        # maps nothing.
        counts = Counter(guest)
        if any(e & present and e & large for e in counts):
            return False
        pt = T.PPGTT_PTE_PT
        tables = self.tables
        gfn_of = {e: (e & mask) >> PAGE_SHIFT for e in counts if e & present}
        child_of: dict[int, ShadowTable | None] = {g: tables.get(("guest", pt, g, False)) for g in gfn_of.values()}
        missing = [g for g, c in child_of.items() if c is None]
        fresh: list[ShadowTable] = []
        if missing:
            # A PT outside readable guest memory stays at scratch, as on the loop's path.
            found = [(g, a) for g, a in zip(missing, accel.guest_addresses(missing), strict=True) if a]
            if found:
                if len(tables) + len(found) > self.max_pages:
                    return False
                try:
                    # Synced below before anything reads them, C writing every entry.
                    hfns, pages = self.dma.alloc_device_pages(
                        len(found), None if seen is not None else self.scratch.filled[pt]
                    )
                except NoSpace:
                    return False
                by_hfn = self.by_hfn
                snaps: list[memoryview] | list[None]
                if seen is not None:  # synced below: their snapshot slots and addresses now
                    snaps, saddrs = accel.snapshots(len(found))
                    haddrs = accel.device.addresses(hfns)
                else:
                    snaps, saddrs = [None] * len(found), [0] * len(found)
                    haddrs = [0] * len(found)
                for (g, gaddr), hfn, page, snap, saddr, haddr in zip(
                    found, hfns, pages, snaps, saddrs, haddrs, strict=True
                ):
                    key: TableKey = ("guest", pt, g, False)
                    table = ShadowTable(key, pt, g, False, hfn, page, None, 0, snap, saddr, haddr, gaddr)
                    tables[key] = by_hfn[hfn] = table
                    child_of[g] = table
                    fresh.append(table)
                self.counters.tables_created += len(fresh)
        entries = t.entries
        child_refs = t.child_refs
        by_hfn = self.by_hfn
        below = self.scratch.entry_below[T.PPGTT_PDE_PT]
        olds = set(entries[index.start : index.stop]) if isinstance(index, range) else {entries[i] for i in index}
        if not any(by_hfn.get((o & mask) >> PAGE_SHIFT) for o in olds):
            # Entries none of which holds a child yet (a new PD's): no old child to drop, so
            # the references are added per distinct entry and the entries written at once.
            shadow_of: dict[int, int] = {}
            for e, n in counts.items():
                child = child_of.get(gfn_of[e]) if e & present else None
                if child is not None:
                    child.refs += n
                    child_refs[child] = child_refs.get(child, 0) + n
                    shadow_of[e] = (e & ~mask) | (child.hfn << PAGE_SHIFT)
                else:
                    shadow_of[e] = below
                    if e & present:
                        job.unbacked = True
            shadow = array("Q", [shadow_of[e] for e in guest])
            if isinstance(index, range):
                entries[index.start : index.stop] = shadow
            else:
                for i, v in zip(index, shadow, strict=True):
                    entries[i] = v
        else:
            # Every new reference before any old one goes: child_of was looked up before the
            # chunk, so an old child dropped to zero here could be a later entry's new child,
            # which would then name a freed table.
            dropped = []
            for i, e in zip(index, guest, strict=True):
                child = child_of.get(gfn_of[e]) if e & present else None
                if child is not None:
                    child.refs += 1
                    child_refs[child] = child_refs.get(child, 0) + 1
                    shadow_entry = (e & ~mask) | (child.hfn << PAGE_SHIFT)
                else:
                    shadow_entry = below
                    if e & present:
                        job.unbacked = True
                old_child = by_hfn.get((entries[i] & mask) >> PAGE_SHIFT)
                entries[i] = shadow_entry
                if old_child is not None:
                    dropped.append(old_child)
            for old_child in dropped:
                self._drop_entry_ref(t, old_child)
        if fresh and seen is not None:
            self._first_sync(fresh)
            seen.update(fresh)
            job.leaves_synced += len(fresh)
        return True

    def _fresh_pts(self, job: DirectorySync, index: range, seen: set[ShadowTable]) -> bool:
        """``_pt_chunk`` for its common case, in fewer passes: entries of a new PD (no shadow
        entry names a child yet), each present and naming a distinct PT of 4 KiB pages not
        shadowed yet, all in one readable window. A 1 GiB tree is 512 such PTs and i915 fills a
        PD so, and here per-PT Python was most of the build. The result is ``_pt_chunk``'s;
        False, having done nothing, for any other chunk."""
        accel = self.accel
        assert accel is not None
        t = job.table
        a, b = index.start, index.stop
        n = b - a
        if n < 1 or index.step != 1:
            return False
        ops = self.ops
        guest = job.new[a:b]
        gfns = accel.pde_frames(guest, ops.ps_bit | ops.ips_bit)
        if gfns is None:
            return False  # not present, or a 2 MiB / 64 KiB entry
        if t.page[a * 8 : b * 8] != self._below_run[: n * 8]:
            return False  # some entry already holds a child (or is not scratch)
        origin = accel.guest_run(min(gfns), max(gfns))
        if not origin or len(set(gfns)) != n:
            return False
        pt = T.PPGTT_PTE_PT
        keys: list[TableKey] = [("guest", pt, g, False) for g in gfns]
        tables = self.tables
        if not tables.keys().isdisjoint(keys) or len(tables) + n > self.max_pages:
            return False
        try:
            hfns, pages = self.dma.alloc_device_pages(n, None)  # C writes every entry below
        except NoSpace:
            return False
        snaps, saddrs = accel.snapshots(n)
        # Synced before the tables exist, so that each is made with its windows: new tables hold
        # no window yet and are not unbacked, and with every one in the same window (the common
        # case) nothing is left for _leaf_results. C writes the PD's entries too.
        haddrs, results, window_of = accel.first_pts(guest, hfns, origin, saddrs, self._haddr(t) + a * 8)
        w = window_of[0]
        regular = w >= 0 and not any(results) and window_of.count(w) == n
        only = self._window_set(accel.windows[w]) if regular else _NO_WINDOWS
        leaf, shift = _LEAF, PAGE_SHIFT
        fresh = [
            ShadowTable(key, pt, g, False, hfn, page, None, 1, snap, saddr, haddr, origin + (g << shift), leaf, only)
            for key, g, hfn, page, snap, saddr, haddr in zip(
                keys, gfns, hfns, pages, snaps, saddrs, haddrs, strict=True
            )
        ]
        tables.update(zip(keys, fresh, strict=True))
        self.by_hfn.update(zip(hfns, fresh, strict=True))
        if t.child_refs:
            t.child_refs.update(dict.fromkeys(fresh, 1))
        else:
            t.child_refs = dict.fromkeys(fresh, 1)
        self.counters.tables_created += n
        if regular:
            self.by_window.setdefault(next(iter(only)), set()).update(fresh)
        else:
            self._leaf_results(fresh, results, window_of)
        seen.update(fresh)
        job.leaves_synced += n
        return True

    def _haddr(self, t: ShadowTable) -> int:
        """Where t's shadow page is in this process, looked up once and kept on the table."""
        if not t.haddr:
            assert self.accel is not None
            t.haddr = self.accel.device.address(t.hfn)
        return t.haddr

    def _window_set(self, window: DmaWindow) -> frozenset[DmaWindow]:
        """The one set {window} that the leaves of one window share."""
        only = self._one_window.get(window)
        if only is None:
            only = self._one_window[window] = frozenset((window,))
        return only

    def _first_sync(self, fresh: list[ShadowTable]) -> None:
        """Sync new leaf tables of guest memory (their three addresses set) in one call to C."""
        accel = self.accel
        assert accel is not None and len(fresh) <= LEAF_BATCH
        results, window_of = accel.sync_leaves(
            array("Q", [c.gaddr for c in fresh]),
            array("Q", [c.saddr for c in fresh]),
            array("Q", [c.haddr for c in fresh]),
            bytes(len(fresh)),  # 4 KiB pages; no valid snapshot
        )
        w = window_of[0]
        if w >= 0 and not any(results) and window_of.count(w) == len(fresh):
            # Each in the same one window (new tables hold none yet, and are not unbacked).
            window = accel.windows[w]
            only = self._window_set(window)
            for c in fresh:
                c.windows = only
            self.by_window.setdefault(window, set()).update(fresh)
        else:
            self._leaf_results(fresh, results, window_of)

    def _invalidate(self, t: ShadowTable) -> None:
        """Forget ``t``'s snapshot: its next sync rebuilds every entry."""
        t.snapshot = None
        t.saddr = 0
        t.syncs += 1

    def _directory_entry(self, pt_type: GttType, e: int) -> tuple[ShadowTable | None, int]:
        """The child table and shadow entry for guest entry ``e`` of a directory."""
        ops = self.ops
        scratch = self.scratch.entry_below[pt_type]
        if not ops.test_present(e):
            return None, scratch
        child: ShadowTable | None
        if pt_type is T.PPGTT_PDE_PT and not e & (ops.ps_bit | ops.ips_bit):
            # The common case (a PT of 4 KiB pages), without the general path's calls.
            mask = ops.addr_mask
            gfn = (e & mask) >> PAGE_SHIFT
            child = self.tables.get(("guest", T.PPGTT_PTE_PT, gfn, False)) or self.get(T.PPGTT_PTE_PT, gfn)
            if child is None:
                return None, scratch
            return child, (e & ~mask) | (child.hfn << PAGE_SHIFT)
        if pt_type is T.PPGTT_PDE_PT and ops.test_pse(e):
            gfn = ops.get_pfn(e, T.PPGTT_PTE_2M_ENTRY)
            flags = e & ~ops.addr_mask & ~(ops.ps_bit | ops.ips_bit)
            if e & _PAT_LARGE:
                flags |= ops.ps_bit  # PAT moves to bit 7 in a 4 KiB entry
            child = self.get_split(flags | (gfn << PAGE_SHIFT))
            e &= ~(ops.ps_bit | ops.ips_bit)
        elif pt_type is T.PPGTT_PDP_PT and ops.test_pse(e):
            self.log_once("a 1 GiB page is mapped to scratch (not supported)", f"entry {e:#x}")
            return None, scratch
        elif pt_type is T.PPGTT_PDE_PT:
            ips = self.has_ips and ops.test_ips(e)
            child = self.get(T.PPGTT_PTE_PT, ops.get_pfn(e), ips)
            e &= ~ops.ips_bit  # 64 KiB pages are always split into 4 KiB shadow entries
        else:
            child = self.get(next_pt_type(pt_type), ops.get_pfn(e))
            # Bit 7 of a PML4 entry is reserved: ignored, and cleared so that no walker of the
            # shadow reads the entry as a huge page.
            e &= ~ops.ps_bit
        if child is None:
            return None, scratch
        return child, ops.set_pfn(e, child.hfn)

    def _sync_leaf(self, t: ShadowTable, data: bytes) -> int:
        self._forget_windows(t)
        if not t.ips:
            entries = lanes_of(data)
            present = entries & ONES
            if not present:
                t.page[:] = self.scratch.filled[T.PPGTT_PTE_PT]
                self.unbacked.discard(t)
                return LANES
            first = 0 if present & 1 else ((present & -present).bit_length() - 1) & ~63
            w = self._usable_window(self.ops.get_pfn(entries >> first & _LANE_ALL))
            if w is not None:
                keep = None if w.prot & PROT_WRITE else self._keep_ro
                shadow = self._shift(w).translate(entries, present, keep, self._scratch_fill)
                if shadow is not None:
                    t.page[:] = shadow.to_bytes(TABLE_BYTES, "little")
                    self._note_windows(t, {w})
                    self.unbacked.discard(t)
                    return LANES
        return self._sync_leaf_by_entry(t, array("Q", data))

    def _sync_leaf_by_entry(self, t: ShadowTable, guest: array[int]) -> int:
        """Entry by entry: present frames in several windows, outside them, or 64 KiB pages."""
        ops = self.ops
        scratch = self._leaf_scratch
        out = array("Q", [scratch]) * LANES
        windows: set[DmaWindow] = set()
        unbacked = False
        w: DmaWindow | None = None
        step = IPS_GROUP if t.ips else 1
        for i in range(0, LANES, step):
            e = guest[i]
            if not ops.test_present(e):
                continue
            if t.ips:
                gfn0 = ops.get_pfn(e, T.PPGTT_PTE_64K_ENTRY)
                pages = range(IPS_GROUP)
            else:
                gfn0 = ops.get_pfn(e)
                pages = range(1)
            for j in pages:
                gfn = gfn0 + j
                if w is None or not w.first_gfn <= gfn < w.first_gfn + w.page_count:
                    w = self._usable_window(gfn)
                    if w is None:
                        unbacked = True
                        continue
                windows.add(w)
                entry = ops.set_pfn(e, w.hfn_base + gfn - w.first_gfn)
                out[i + j] = entry if w.prot & PROT_WRITE else entry & ~ops.rw_bit
        t.page[:] = out.tobytes()
        self._note_windows(t, windows)
        self._mark_unbacked(t, bool(unbacked))
        return LANES

    def _note_windows(self, t: ShadowTable, windows: set[DmaWindow] | frozenset[DmaWindow]) -> None:
        t.windows = windows if isinstance(windows, frozenset) else frozenset(windows)
        for w in windows:
            self.by_window.setdefault(w, set()).add(t)

    def _mark_unbacked(self, t: ShadowTable, unbacked: bool) -> None:
        """Whether leaf ``t`` holds entries no DMA window backs: a later DMA map rebuilds it."""
        if unbacked:
            self.unbacked.add(t)
        else:
            self.unbacked.discard(t)

    # --- guest memory ----------------------------------------------------------------------

    def _guest_window(self, gfn: int) -> DmaWindow | None:
        last = self._last_window
        if last is not None and last[0] <= gfn < last[1]:
            return last[2]
        w = self.dma.find(gfn << PAGE_SHIFT, PAGE_SIZE)
        if w is None or w.view is None or not w.prot & PROT_READ:
            return None
        # Guest tables sit together: the next lookup is most likely in the same window.
        self._last_window = (w.first_gfn, w.first_gfn + w.page_count, w)
        return w

    def _usable_window(self, gfn: int) -> DmaWindow | None:
        """The window a leaf frame may map: one with an fd that the device may read."""
        w = self.dma.find(gfn << PAGE_SHIFT, PAGE_SIZE)
        if w is None:
            return None
        if w.view is None or not w.prot & PROT_READ:
            self.log_once("a page in a window without an fd or read permission is mapped to scratch", f"gfn {gfn:#x}")
            return None
        return w

    def _read_guest_table(self, gfn: int) -> bytes | None:
        w = self._guest_window(gfn)
        if w is None:
            return None
        assert w.view is not None
        off = (gfn - w.first_gfn) << PAGE_SHIFT
        return bytes(w.view[off : off + PAGE_SIZE])

    def _shift(self, w: DmaWindow) -> WindowShift:
        shift = self._shifts.get(w)
        if shift is None:
            shift = self._shifts[w] = WindowShift(w.first_gfn, w.page_count, w.hfn_base, self.ops.addr_mask)
        return shift

    # --- the DMA map changes -----------------------------------------------------------------

    def on_dma_map(self, window: DmaWindow) -> None:
        self.generation += 1
        self._last_window = None
        if self.accel is not None:
            self.accel.windows_changed()
        # Entries that found no window may find this one: rebuild them at the next sync.
        for t in self.unbacked:
            self._invalidate(t)
        self.unbacked.clear()

    def on_dma_unmap(self, window: DmaWindow) -> None:
        """Stop using the window's frames now; the tables are rebuilt at the next sync."""
        self.generation += 1
        self._last_window = None
        if self.accel is not None:
            self.accel.windows_changed()
        self._shifts.pop(window, None)
        self._one_window.pop(window, None)
        users = self.by_window.pop(window, None)
        if not users:
            return
        lo, hi = window.hfn_base, window.hfn_base + window.page_count
        scratch = self._leaf_scratch
        for t in users:
            t.windows = t.windows - {window}
            if not t.windows:
                t.page[:] = self.scratch.filled[T.PPGTT_PTE_PT]
            else:
                entries = t.entries
                for i, e in enumerate(entries):
                    if lo <= self.ops.get_pfn(e) < hi:
                        entries[i] = scratch
            self._invalidate(t)
            self.counters.unmap_fallbacks += 1
