"""Shadow PPGTT mms: one per set of guest root pointers, and their lifecycle.

An mm is created by a g2v "PPGTT create" notification or at first use by a submission, found
again for the same roots, pinned while a workload uses it, reclaimed least-recently-used when
the shadow-page cap is reached (it survives, unshadowed, and is shadowed again at its next
pin), dropped on "PPGTT destroy" once nothing uses it, and destroyed on reset.

Bringing an mm up to date is a :class:`ResyncTask`: a walk of the distinct shadow tables
reachable from its roots, each synced once, in steps bounded by a deadline so that MMIO replies
are never held back. Its work is bounded by the number of shadow tables, which the cap bounds.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from devmodel.accel import Accel
from devmodel.device.dma import PAGE_SHIFT, DmaMap, DmaWindow
from devmodel.errors import NoSpace

from .lanes import LANES
from .ops import PteOps
from .scratch import ScratchTree
from .shadow import DEFAULT_MAX_SHADOW_PAGES, DirectorySync, ShadowTable, StoreCounters, TableStore
from .shadow_accel import LEAF_BATCH
from .types import GttType, next_pt_type

# Shadow mms kept at once: each i915 context with its own PPGTT is one (and each g2v create
# with new roots). A few hundred covers a busy desktop; past it the least recently used idle
# one goes, and a guest that holds them all (pinned or claimed) is refused.
DEFAULT_MAX_SHADOW_MMS = 1024
# Shadow tables past which an mm no workload has pinned is not shadowed ahead of its use (a
# g2v create): it waits unshadowed, as a reclaimed one does, and is shadowed at its first pin.
# Each table costs about 17 KiB (the shadow page, its snapshot, a directory's child list); a
# create storm naming garbage roots held 2,929 tables (50 MiB) under the mm cap without this.
# An i915 ppgtt is announced while it is still empty (its roots and scratch), so shadowing it
# ahead saves its first submission little.
SHADOW_AHEAD_TABLES = 512

__all__ = ["DEFAULT_MAX_SHADOW_MMS", "Ppgtt", "ResyncStats", "ResyncTask", "RootKind", "ShadowMm", "parse_roots"]

log = logging.getLogger(__name__)

T = GttType


class RootKind(enum.Enum):
    """The context's addressing mode: legacy 32-bit (four PDP roots) or 48-bit (one PML4)."""

    L3 = 3
    L4 = 4

    @property
    def root_count(self) -> int:
        return 4 if self is RootKind.L3 else 1

    @property
    def root_table_type(self) -> GttType:
        return next_pt_type(T.PPGTT_ROOT_L3_ENTRY if self is RootKind.L3 else T.PPGTT_ROOT_L4_ENTRY)


@dataclass
class ResyncStats:
    tables: int = 0  # distinct shadow tables visited
    tables_changed: int = 0
    entries_changed: int = 0
    restarts: int = 0  # the DMA map changed under a stepped resync
    steps: int = 0
    seconds: float = 0.0  # time spent in steps (not counting the gaps between them)


@dataclass(eq=False, repr=False)
class ShadowMm:
    kind: RootKind
    roots: tuple[int, ...]
    root_tables: list[ShadowTable | None]
    shadow_roots: list[int]  # what the shadow context holds: host addresses of the root tables
    pincount: int = 0
    claims: int = 0  # g2v creates not yet destroyed
    doomed: bool = False  # destroyed by the guest; goes when unpinned
    alive: bool = True
    resyncing: int = 0  # resync tasks in flight (an mm being synced is never reclaimed)
    resyncs: int = 0
    last_resync: ResyncStats = field(default_factory=ResyncStats)
    flat: FlatTree | None = None  # the compiled path's list of its tables, as of a full walk

    def __repr__(self) -> str:
        return f"ShadowMm({self.kind.name}, roots={_hexes(self.roots)}, pincount={self.pincount}, claims={self.claims})"

    @property
    def key(self) -> tuple[RootKind, tuple[int, ...]]:
        return self.kind, self.roots

    @property
    def shadowed(self) -> bool:
        return any(t is not None for t in self.root_tables)


@dataclass(eq=False)
class FlatTree:
    """Every table reachable from an mm with its guest table in memory, as its last full
    walk found them: where each guest table and its snapshot are (array of addresses, for
    dm_pt_first_changed). Valid while the store's generation and the DMA map stay; a resync
    then compares the lot in C and syncs only the leaves that differ."""

    generation: int
    map_changes: int
    tables: list[ShadowTable]
    guest: array[int]
    snap: array[int]

    @classmethod
    def of(cls, ppgtt: Ppgtt, seen: Iterable[ShadowTable]) -> FlatTree | None:
        """None when a table of guest memory was left without a snapshot (two syncs of a
        directory overlapped): only a walk rebuilds it."""
        tables = [t for t in seen if t.alive and t.gaddr]
        snap = [t.saddr for t in tables]
        if snap and min(snap) <= 0:
            return None
        return cls(
            ppgtt.store.generation, ppgtt.map_changes, tables, array("Q", [t.gaddr for t in tables]), array("Q", snap)
        )


# Tables compared per dm_pt_first_changed call between two looks at the step's deadline
# (1 MiB of guest tables and as much of snapshots).
_FLAT_CHUNK = 256


class ResyncTask:
    """Brings mms up to date with the guest's tables; ``step(deadline)`` returns whether there
    is more to do. A loop task, or run to completion with :meth:`run`."""

    def __init__(self, ppgtt: Ppgtt, mms: Iterable[ShadowMm], sweeps: bool = False) -> None:
        self.ppgtt = ppgtt
        self._pending: OrderedDict[ShadowMm, None] = OrderedDict()  # an ordered set
        for mm in mms:
            self.add(mm)
        # The device's one background resync also answers TLB invalidations: each takes every
        # shadowed mm once the flag it finds set (Ppgtt.tlb_stale) is cleared.
        self._sweeps = sweeps
        self._mm: ShadowMm | None = None
        self._work: list[ShadowTable] = []
        self._seen: set[ShadowTable] = set()
        self._leaves: list[ShadowTable] = []  # leaves seen, waiting for one sync_leaves call
        self._job: DirectorySync | None = None  # a directory's sync under way
        self._map_changes = 0
        self._stats = ResyncStats()
        self._flat: FlatTree | None = None  # comparing this list in C instead of walking
        self._flat_pos = 0
        self.done = False

    def add(self, mm: ShadowMm) -> None:
        """Resync ``mm`` too, unless it already waits here: an mm has at most one pending
        resync (and one under way, which began before the reason for this one)."""
        if mm not in self._pending:
            self._pending[mm] = None

    def discard(self, mm: ShadowMm) -> None:
        """``mm`` is gone: it no longer waits here (nothing dead is held)."""
        self._pending.pop(mm, None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def step(self, deadline: float) -> bool:
        start = time.perf_counter()
        try:
            while True:
                mm = self._mm
                if mm is None:
                    if not self._pending and self._sweeps and self.ppgtt.tlb_stale:
                        self.ppgtt.tlb_stale = False
                        for m in self.ppgtt.mms.values():
                            if m.shadowed:
                                self.add(m)
                    if not self._pending:
                        self._finish()
                        return False
                    mm = self._pending.popitem(last=False)[0]
                    if self._sweeps and self.ppgtt.defers_shadow(mm):
                        continue
                    self._begin(mm)
                    continue
                if not mm.alive:
                    self._end()
                    continue
                stats = self._stats
                if self._map_changes != self.ppgtt.map_changes:
                    # Tables already visited may have been re-pointed at scratch: start over.
                    stats.restarts += 1
                    self._restart(mm)
                if self._flat is not None:
                    if self._step_flat(mm, deadline):
                        return True
                    if self._flat is not None:
                        mm.last_resync = stats
                        mm.resyncs += 1
                        self._end()
                        continue
                store = self.ppgtt.store
                begin = store.begin_sync
                batched = store.batches_leaves
                work, seen, leaves = self._work, self._seen, self._leaves
                while work or leaves or self._job is not None:
                    job = self._job
                    if job is not None:
                        if not store.sync_some(job, work, deadline, seen):
                            return True
                        self._job = None
                        counts = [job.entries_changed] + [LANES] * job.leaves_synced
                        stats.tables += job.leaves_synced
                    elif work:
                        t = work.pop()
                        if not t.alive or t in seen:
                            continue
                        seen.add(t)
                        stats.tables += 1
                        if batched(t):
                            leaves.append(t)
                            if len(leaves) < LEAF_BATCH and work:
                                continue
                            counts = store.sync_leaves(leaves)
                            leaves.clear()
                        else:
                            done = begin(t, work)
                            if not isinstance(done, int):
                                # A changed directory: its entries in bounded chunks.
                                self._job = done
                                continue
                            counts = [done]
                    else:
                        counts = store.sync_leaves(leaves)
                        leaves.clear()
                    for n in counts:
                        if n:
                            stats.tables_changed += 1
                            stats.entries_changed += n
                    if time.monotonic() >= deadline:
                        return True
                if self.ppgtt.store.accel is not None:
                    mm.flat = FlatTree.of(self.ppgtt, seen)
                mm.last_resync = stats
                mm.resyncs += 1
                self._end()
        finally:
            self._stats.steps += 1
            self._stats.seconds += time.perf_counter() - start

    def _step_flat(self, mm: ShadowMm, deadline: float) -> bool:
        """Compare the mm's flat list in C, syncing the leaves that changed; whether there is
        more to do. Drops the list (self._flat None) and starts a walk when it no longer
        holds: a directory changed or a table went."""
        flat = self._flat
        assert flat is not None
        store = self.ppgtt.store
        accel = store.accel
        stats = self._stats
        n = len(flat.tables)
        pos = self._flat_pos
        while pos < n:
            if flat.generation != store.generation or flat.map_changes != self.ppgtt.map_changes or accel is None:
                self._abandon_flat(mm)
                return False
            stop = min(n, pos + _FLAT_CHUNK)
            j = accel.first_changed(flat.guest, flat.snap, pos, stop)
            if j < stop:
                t = flat.tables[j]
                if not t.is_leaf:
                    self._abandon_flat(mm)
                    return False
                changed = store.sync(t, [])
                if changed:
                    stats.tables_changed += 1
                    stats.entries_changed += changed
                stop = j + 1
            stats.tables += stop - pos
            pos = self._flat_pos = stop
            if time.monotonic() >= deadline and pos < n:
                return True
        return False

    def _abandon_flat(self, mm: ShadowMm) -> None:
        self._flat = None
        mm.flat = None
        self._stats.tables = 0
        self._restart(mm)

    def run(self) -> None:
        """Run to completion (tests, and callers that may block)."""
        while self.step(math.inf):
            pass

    def cancel(self) -> None:
        self._job = None
        if self._mm is not None:
            self._mm.resyncing -= 1
            self._mm = None
            self.ppgtt.releases += 1
        self._pending.clear()
        self._finish()

    def _finish(self) -> None:
        self.done = True
        if self.ppgtt.background is self:
            self.ppgtt.background = None

    def _begin(self, mm: ShadowMm) -> None:
        self._mm = mm
        self._stats = ResyncStats()
        if not mm.alive:
            return
        mm.resyncing += 1
        self._restart(mm)

    def _restart(self, mm: ShadowMm) -> None:
        self._map_changes = self.ppgtt.map_changes
        self.ppgtt.shadow_roots(mm)
        self._work = [t for t in mm.root_tables if t is not None]
        self._seen = set()
        self._leaves = []
        self._job = None
        flat = mm.flat
        self._flat = None
        if (
            flat is not None
            and flat.generation == self.ppgtt.store.generation
            and flat.map_changes == self.ppgtt.map_changes
            and self.ppgtt.store.accel is not None
        ):
            self._flat = flat
            self._flat_pos = 0

    def _end(self) -> None:
        mm = self._mm
        self._mm = None
        self._job = None
        if mm is not None and mm.resyncing:
            mm.resyncing -= 1
            self.ppgtt.releases += 1
            self.ppgtt.drop_if_unused(mm)


class Ppgtt:
    """Every shadow PPGTT of one vGPU: the scratch tree, the shared tables and the mms."""

    def __init__(
        self,
        dma: DmaMap,
        ops: PteOps,
        has_ips: bool,
        max_shadow_pages: int = DEFAULT_MAX_SHADOW_PAGES,
        max_mms: int = DEFAULT_MAX_SHADOW_MMS,
        accel: Accel | None = None,
        ahead_tables: int = SHADOW_AHEAD_TABLES,
    ) -> None:
        self.dma = dma
        self.ops = ops
        self.scratch = ScratchTree(dma, ops)
        self.store = TableStore(dma, ops, self.scratch, has_ips, max_shadow_pages, reclaim=self._reclaim_one)
        self.store.use_accel(accel)
        self.mms: OrderedDict[tuple[RootKind, tuple[int, ...]], ShadowMm] = OrderedDict()  # oldest use first
        self.max_mms = max_mms
        self.ahead_tables = ahead_tables
        self.deferred = 0  # background resyncs of unused, unshadowed mms left for their first pin
        self.map_changes = 0
        self.reclaims = 0
        # The one resync not tied to a workload (g2v creates, TLB invalidations), and whether
        # a TLB invalidation came since its last sweep began: a storm of either queues nothing
        # more than one pending resync per mm.
        self.background: ResyncTask | None = None
        self.tlb_stale = False
        # Bumped whenever an mm may have become free to reclaim (an unpin, a destroy, a resync
        # ending): while it stands still, a cap found full stays full, and a storm of new
        # roots is refused without a walk over every mm.
        self.releases = 0
        self._full_at = -1
        self._tables_full_at = -1
        dma.listeners.append(self)

    @property
    def counters(self) -> StoreCounters:
        return self.store.counters

    # --- finding mms -------------------------------------------------------------------------

    def _check_roots(self, kind: RootKind, roots: tuple[int, ...]) -> tuple[int, ...]:
        if len(roots) != kind.root_count:
            raise ValueError(f"{kind.name} takes {kind.root_count} root pointer(s), not {len(roots)}")
        if any(not 0 <= r < 1 << 64 for r in roots):
            raise ValueError(f"root pointers are 64-bit: {roots}")
        return roots

    def find(self, kind: RootKind, roots: tuple[int, ...]) -> ShadowMm | None:
        return self.mms.get((kind, tuple(roots)))

    def get(self, kind: RootKind, roots: tuple[int, ...]) -> ShadowMm:
        """The mm for these roots, created (not yet shadowed) if need be; now most recently
        used. With ``max_mms`` mms already, the least recently used one nothing holds goes;
        when every one is held (pinned, claimed by a g2v create, being resynced) the new
        roots are refused with NoSpace (logged once, counted): a workload that needs them
        hangs as a fault."""
        roots = self._check_roots(kind, tuple(roots))
        mm = self.mms.get((kind, roots))
        if mm is None:
            if len(self.mms) >= self.max_mms and (self._full_at == self.releases or not self._reclaim_mm()):
                self._full_at = self.releases
                self.counters.mms_refused += 1
                self.store.log_once("the shadow-mm cap is reached", f"cap {self.max_mms} mms")
                raise NoSpace("no shadow PPGTT for new roots: every one of the cap is held", cap=self.max_mms)
            n = kind.root_count
            root_entry = self.scratch.table_hfn[kind.root_table_type] << PAGE_SHIFT
            mm = ShadowMm(kind, roots, [None] * n, [root_entry] * n)
            self.mms[mm.key] = mm
        else:
            self.mms.move_to_end(mm.key)
        mm.doomed = False
        return mm

    # --- lifecycle ---------------------------------------------------------------------------

    def notify_create(self, kind: RootKind, roots: tuple[int, ...]) -> ResyncTask | None:
        """g2v PPGTT create: the guest claims an mm, shadowed ahead of submissions by the
        background resync. Returns that resync when it is new (to run as a task), None when
        the one already queued takes it, or when no mm could be had."""
        try:
            mm = self.get(kind, roots)
        except NoSpace:
            return None  # logged and counted by get
        mm.claims += 1
        return self._resync_later(mm)

    def _resync_later(self, mm: ShadowMm | None) -> ResyncTask | None:
        job = self.background
        if job is not None and not job.done:
            if mm is not None:
                job.add(mm)
            return None
        self.background = job = ResyncTask(self, [] if mm is None else [mm], sweeps=True)
        return job

    def notify_destroy(self, kind: RootKind, roots: tuple[int, ...]) -> None:
        mm = self.find(kind, tuple(roots))
        if mm is None or mm.claims == 0:
            self.store.log_once("g2v PPGTT destroy for roots not created", f"{kind.name} {_hexes(roots)}")
            return
        mm.claims -= 1
        self.releases += 1
        if mm.claims == 0:
            mm.doomed = True
            self.drop_if_unused(mm)

    def pin(self, kind: RootKind, roots: tuple[int, ...]) -> tuple[ShadowMm, ResyncTask]:
        """A workload will use these roots: the mm, pinned, and the resync to run before it
        (NoSpace when no mm can be had, see :meth:`get`)."""
        mm = self.get(kind, roots)
        mm.pincount += 1
        return mm, ResyncTask(self, [mm])

    def unpin(self, mm: ShadowMm) -> None:
        if mm.pincount <= 0:
            raise ValueError("unpin of an mm that is not pinned")
        mm.pincount -= 1
        self.releases += 1
        self.drop_if_unused(mm)

    def on_tlb_invalidate(self) -> ResyncTask | None:
        """A TLB-invalidation register was written: every shadowed mm is stale. O(1) per
        write: the background resync sweeps them once it gets to it; returned when it is new
        (to run as a task), None when one is already queued."""
        self.tlb_stale = True
        return self._resync_later(None)

    def destroy(self, mm: ShadowMm) -> None:
        if not mm.alive:
            return
        self.unshadow(mm)
        mm.alive = False
        del self.mms[mm.key]
        if self.background is not None:
            self.background.discard(mm)

    def reset(self) -> None:
        """Device reset: every mm and every shadow table goes (the scratch tree stays)."""
        for mm in self.mms.values():
            mm.alive = False
            mm.root_tables = [None] * len(mm.root_tables)
        self.mms.clear()
        self.store.clear()
        self.map_changes += 1
        if self.background is not None:
            self.background.cancel()
        self.tlb_stale = False

    def defers_shadow(self, mm: ShadowMm) -> bool:
        """Whether the background resync leaves ``mm`` unshadowed: nothing uses it and the
        store already holds ``ahead_tables`` tables. What g2v creates alone make the device
        hold is then that many tables (and one mm's tree), not a tree per claimed mm."""
        if mm.pincount or mm.shadowed or len(self.store) < self.ahead_tables:
            return False
        self.deferred += 1
        return True

    def drop_if_unused(self, mm: ShadowMm) -> None:
        if mm.doomed and mm.pincount == 0 and mm.claims == 0 and not mm.resyncing:
            self.destroy(mm)

    # --- shadow roots and reclaim ------------------------------------------------------------

    def shadow_roots(self, mm: ShadowMm) -> None:
        """Give each present root without a shadow table one (a reclaimed mm, an unbacked root)."""
        ops, store = self.ops, self.store
        for i, root in enumerate(mm.roots):
            if mm.root_tables[i] is not None or not ops.test_root_present(root):
                continue
            t = store.get(mm.kind.root_table_type, ops.get_pfn(root))
            if t is not None:
                mm.flat = None
                t.refs += 1
                mm.root_tables[i] = t
                mm.shadow_roots[i] = t.hfn << PAGE_SHIFT

    def unshadow(self, mm: ShadowMm) -> None:
        scratch_root = self.scratch.table_hfn[mm.kind.root_table_type] << PAGE_SHIFT
        for i, t in enumerate(mm.root_tables):
            if t is not None:
                mm.flat = None
                mm.root_tables[i] = None
                mm.shadow_roots[i] = scratch_root
                if t.alive:
                    self.store.unref(t)

    def _reclaim_mm(self) -> bool:
        """Make room for one mm: the least recently used that nothing holds (not pinned, not
        claimed by a g2v create, not being resynced) goes. False when every one is held."""
        for mm in self.mms.values():
            if mm.pincount or mm.claims or mm.resyncing:
                continue
            self.destroy(mm)
            self.counters.mms_reclaimed += 1
            return True
        return False

    def _reclaim_one(self) -> bool:
        """Unshadow idle mms, oldest use first, until the store is under its cap. A walk that
        found nothing more to unshadow is not repeated until an mm may have become idle: a
        guest table naming 512 new tables at the cap costs one walk, not 512."""
        store = self.store
        if self._tables_full_at == self.releases:
            return False
        for mm in list(self.mms.values()):
            if len(store) < store.max_pages:
                return True
            if mm.pincount or mm.resyncing or not mm.shadowed:
                continue
            self.unshadow(mm)
            self.reclaims += 1
        if len(store) < store.max_pages:
            return True
        self._tables_full_at = self.releases
        return False

    # --- the DMA map (a DmaListener) ---------------------------------------------------------

    def on_dma_map(self, window: DmaWindow) -> None:
        self.map_changes += 1
        self.store.on_dma_map(window)

    def on_dma_unmap(self, window: DmaWindow) -> None:
        self.map_changes += 1
        self.store.on_dma_unmap(window)

    # --- inspection --------------------------------------------------------------------------

    def mm_stats(self, mm: ShadowMm) -> dict[str, object]:
        """Tables reachable from the mm now, the parent references to them, and the last resync."""
        seen: set[ShadowTable] = set()
        work = [t for t in mm.root_tables if t is not None]
        while work:
            t = work.pop()
            if t in seen:
                continue
            seen.add(t)
            work.extend(t.child_refs)
        references = sum(t.refs for t in seen)
        return {
            "kind": mm.kind.name,
            "roots": _hexes(mm.roots),
            "shadow_roots": _hexes(mm.shadow_roots),
            "tables": len(seen),
            "references": references,
            "shares": references - len(seen),
            "pincount": mm.pincount,
            "claims": mm.claims,
            "resyncs": mm.resyncs,
            "last_resync": vars(mm.last_resync),
        }


def parse_roots(text: str) -> tuple[RootKind, tuple[int, ...]]:
    """``ROOTS`` of the inspection command: one PML4 address (4-level) or four comma-separated
    PDP addresses (legacy 3-level)."""
    parts = [p for p in text.split(",") if p]
    try:
        roots = tuple(int(p, 0) for p in parts)
    except ValueError:
        raise ValueError(f"root pointers must be integers: {text!r}") from None
    if len(roots) == 1:
        return RootKind.L4, roots
    if len(roots) == 4:
        return RootKind.L3, roots
    raise ValueError("give one PML4 address or four PDP addresses, comma-separated")


def _hexes(values: Iterable[int]) -> list[str]:
    return [hex(v) for v in values]
