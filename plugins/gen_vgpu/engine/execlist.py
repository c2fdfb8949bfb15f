"""Execlist submission and completion for one engine, and the four engines together
(contract §4.1, §4.2; GVT-g's execlist.c).

State per engine: the *current execlist*, up to two elements of which the first is running,
and at most one *pending* execlist: a submission whose element 0 is not the running context,
which on GEN8/GEN9 hardware is a preemption request. An element is one context; it runs as
one or more workloads (ring segments): a lite restore (the running context resubmitted with a
new tail) appends a segment from the old tail to the new one, which runs after the current one
without a context switch.

Event sequences (each CSB write raises the engine's context-switch interrupt):

- submit while idle: {IDLE_ACTIVE}, element 0 starts;
- resubmission of the running context (lite restore): {PREEMPTED | LITE_RESTORE}; the new
  element 1 replaces the old one, as a new execlist replaces the old one on hardware;
- submit while busy with another context: a preemption request, no event yet; it is served
  at the next arbitration point, the end of the running segment (i915 ends every request with
  arbitration enabled and MI_ARB_CHECK): {PREEMPTED, ctx of the preempted element}, and the
  new execlist replaces the whole current one (an element 1 that never ran is dropped, as
  hardware drops it). The preempted context's image head is where it stopped, so a later
  submission of it continues there. A second request before the first is served replaces it.
  i915 6.1 on a vGPU has no preemption or timeslicing (no I915_ENGINE_HAS_PREEMPTION), but it
  writes such an ELSP whenever its breadcrumbs say the running requests completed before the
  completion event arrived; GVT-g queued it instead, behind the running context;
- element 0 done and element 1 follows: {ELEMENT_SWITCH | COMPLETE}, element 1 starts;
- last element done: {ACTIVE_IDLE | COMPLETE}.

Completion writes the image's RING_HEAD := tail before the CSB entry. CTX_TIMESTAMP counts the
timestamp clock while a context is active: loaded from the image when the context switches in
and saved to it when it switches out (completed or preempted), before the CSB entry, as
hardware's context save does (i915 reads the saved value for each context's run time). A hung workload gets no
event and stays current, as a hung context does on hardware: EXECLIST_STATUS shows it active
with its context ID, nothing behind it on this engine runs (a lite restore or element 1 waits,
a preemption request is never served: a hung context reaches no arbitration point), and only
the guest's GDRST of the engine (or a device reset) drops it.
i915 needs that: its engine reset reads EXECLIST_STATUS_HI to find the guilty context.

EXECLIST_STATUS is published (its rows say so): every entry point that changes the current or
pending execlist (submit, complete, reset, power-on) ends by writing both dwords' values into
their storage, which the compiled path reads.
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from devmodel.device.registers import RegisterBlock, RegisterFile
from devmodel.logbound import OncePerReason

from ..engines import ENGINES, EngineId, EngineInfo
from ..graphics_memory import GraphicsMemory
from ..interrupts import GtEvent, Interrupts
from ..mmio import engine_regs as r
from ..mmio.row import Hooks
from ..timestamp import CsClock
from ..trace_events import (
    CSB,
    EXECLIST_COMPLETE,
    EXECLIST_HANG,
    EXECLIST_LITE_RESTORE,
    EXECLIST_PREEMPT_REQUEST,
    EXECLIST_REFUSED,
    EXECLIST_SUBMIT,
)
from .context import (
    PAGE_SIZE,
    BadDescriptor,
    ContextDescriptor,
    GmReader,
    GmWriter,
    RingContext,
    read_ctx_timestamp,
    read_ring_context,
    write_ctx_timestamp,
    write_ring_head,
)
from .executor import Executor, Workload

__all__ = ["Execlist", "Engines", "ExeclistCounters"]

log = logging.getLogger(__name__)

# CSB statuses as plain ints: IntFlag arithmetic costs a few microseconds per event.
_IDLE_ACTIVE = int(r.CsbStatus.IDLE_ACTIVE)
_PREEMPTED = int(r.CsbStatus.PREEMPTED)
_LITE_RESTORE = int(r.CsbStatus.PREEMPTED | r.CsbStatus.LITE_RESTORE)
_ELEMENT_SWITCH = int(r.CsbStatus.ELEMENT_SWITCH | r.CsbStatus.COMPLETE)
_ACTIVE_IDLE = int(r.CsbStatus.ACTIVE_IDLE | r.CsbStatus.COMPLETE)
_CONTEXT_SWITCH = int(GtEvent.CONTEXT_SWITCH)

_ELSP_WRITES = 4


@dataclass
class _Element:
    descriptor: ContextDescriptor
    segments: deque[Workload]
    tail: int  # tail of the newest segment: where a lite restore continues

    @property
    def lrca(self) -> int:
        return self.descriptor.lrca


_Execlist = list[_Element]  # one or two elements; [0] runs first


@dataclass
class ExeclistCounters:
    submissions: int = 0
    rejected: int = 0
    lite_restores: int = 0
    preempt_requests: int = 0
    preemptions: int = 0
    requests_replaced: int = 0  # a preemption request replaced before it was served
    completed: int = 0
    hung: int = 0
    cancelled: int = 0
    csb_events: int = 0


class Execlist(RegisterBlock):
    def __init__(
        self,
        engine: EngineInfo,
        interrupts: Interrupts,
        executor: Executor,
        read_gm: GmReader,
        write_gm: GmWriter,
        memory: GraphicsMemory,
        timestamp: CsClock,
    ) -> None:
        self.engine = engine
        self.timestamp = timestamp
        self.interrupts = interrupts
        self.executor = executor
        self.read_gm = read_gm
        self.write_gm = write_gm
        self.memory = memory
        self.counters = ExeclistCounters()
        self._once = OncePerReason(log)
        self._elsp: list[int] = []
        self._current: _Execlist = []
        self._pending: _Execlist | None = None  # a preemption request, served at arbitration
        self._running: Workload | None = None
        self.hung = False  # the current element hung: it stays current until GDRST
        self._seq = 0
        self.last_hang: tuple[Workload, str] | None = None
        # The active context's CTX_TIMESTAMP is ``_ctx_count`` at tick ``_ctx_since``; no
        # context active: None, and the register holds the last one's saved count.
        self._ctx_count = 0
        self._ctx_since: int | None = None

    # --- declarations ----------------------------------------------------------------------

    def _warn(self, engine: EngineInfo, category: str, detail: object) -> None:
        """A guest mistake, once per category (the guest may repeat it at MMIO speed); the
        category is fixed text, what the guest chose is only in ``detail``."""
        self._once.warn(category, "%s: %s (%s)", engine.name, category, detail)

    def hooks(self) -> dict[str, Hooks]:
        """This engine's handlers for the register table (mmio/engine_regs.py)."""
        return {
            "elsp": Hooks(read=lambda off: 0, write=self._write_elsp),
            "execlist_status_lo": Hooks(read=self._status_lo),
            "execlist_status_hi": Hooks(read=self._status_hi),
            "ring_timestamp": Hooks(read=lambda off: self.timestamp.ticks() & 0xFFFFFFFF),
            "ring_timestamp_udw": Hooks(read=lambda off: self.timestamp.ticks() >> 32 & 0xFFFFFFFF),
            "ctx_timestamp": Hooks(read=self._ctx_timestamp, write=self._write_ctx_timestamp),
        }

    # --- state -----------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return not self._current

    @property
    def running(self) -> Workload | None:
        return self._running

    @property
    def queued(self) -> int:
        """Execlists waiting for the engine: the preemption request, if any."""
        return 0 if self._pending is None else 1

    def _status_lo(self, offset: int) -> int:
        cur = self._current
        value = r.EXECLIST_QUEUE_FULL if self._pending is not None else 0
        if cur:
            value |= r.EXECLIST0_VALID | r.EXECLIST0_ACTIVE
            if len(cur) > 1:
                value |= r.EXECLIST1_VALID
        return value

    def _status_hi(self, offset: int) -> int:
        return self._current[0].descriptor.context_id if self._current else 0

    def _publish_status(self) -> None:
        rf, e = self.rf, self.engine
        rf.set(e.reg(r.EXECLIST_STATUS_LO), self._status_lo(0))
        rf.set(e.reg(r.EXECLIST_STATUS_HI), self._status_hi(0))

    # --- CTX_TIMESTAMP -----------------------------------------------------------------------

    def _ctx_timestamp(self, offset: int) -> int:
        if self._ctx_since is None:
            return self.rf.get(offset)
        return (self._ctx_count + self.timestamp.ticks() - self._ctx_since) & 0xFFFFFFFF

    def _write_ctx_timestamp(self, offset: int, old: int, new: int) -> None:
        if self._ctx_since is not None:
            self._ctx_count = new
            self._ctx_since = self.timestamp.ticks()

    def _context_in(self, lrca: int) -> None:
        self._ctx_count = read_ctx_timestamp(self.read_gm, lrca)
        self._ctx_since = self.timestamp.ticks()

    def _context_out(self, lrca: int) -> None:
        reg = self.engine.reg(r.RING_CTX_TIMESTAMP)
        count = self._ctx_timestamp(reg)
        self._ctx_since = None
        self.rf.set(reg, count)
        write_ctx_timestamp(self.write_gm, lrca, count)

    # --- submission ------------------------------------------------------------------------

    def _write_elsp(self, offset: int, old: int, new: int) -> None:
        self._elsp.append(new)
        if len(self._elsp) < _ELSP_WRITES:
            return
        # On the wire: element 1 high, element 1 low, element 0 high, element 0 low.
        el1_hi, el1_lo, el0_hi, el0_lo = self._elsp
        self._elsp.clear()
        self.submit(ContextDescriptor.from_dwords(el0_lo, el0_hi), ContextDescriptor.from_dwords(el1_lo, el1_hi))

    def submit(self, el0: ContextDescriptor, el1: ContextDescriptor) -> None:
        """An ELSP submission: validate everything, then act; a refused one changes nothing."""
        self._submit(el0, el1)
        self._publish_status()

    def _submit(self, el0: ContextDescriptor, el1: ContextDescriptor) -> None:
        try:
            execlist = self._check(el0, el1)
        except BadDescriptor as exc:
            self.counters.rejected += 1
            if EXECLIST_REFUSED.on:
                EXECLIST_REFUSED(self.engine.name, exc.args[0])
            self._warn(self.engine, "ELSP submission refused", exc)
            return
        self.counters.submissions += 1
        cur = self._current
        if cur and self._pending is not None:
            # Hardware takes the newest ELSP; i915 never writes one before the last was served.
            self.counters.requests_replaced += 1
            log.info(
                "%s: a submission replaces a preemption request not yet served (ctx %#x)",
                self.engine.name,
                self._pending[0].descriptor.context_id,
            )
            self._pending = None
        if cur and execlist[0].lrca == cur[0].lrca:
            self._lite_restore(execlist)
        elif cur:
            self.counters.preempt_requests += 1
            self._pending = execlist
            if EXECLIST_PREEMPT_REQUEST.on:
                ids = (execlist[0].descriptor.context_id, cur[0].descriptor.context_id)
                EXECLIST_PREEMPT_REQUEST(self.engine.name, *ids)
        else:
            self._switch_in(execlist)

    def _check(self, el0: ContextDescriptor, el1: ContextDescriptor) -> _Execlist:
        if not self.rf.get(self.engine.reg(r.GFX_MODE)) & r.GFX_RUN_LIST_ENABLE:
            raise BadDescriptor("execlists not enabled (GFX_MODE bit 15 clear)")
        descs = [el0] + ([el1] if el1.valid else [])
        for d in descs:
            d.check(self.memory)
        return [self._element(d) for d in descs]

    def _element(self, desc: ContextDescriptor) -> _Element:
        ring = read_ring_context(self.read_gm, desc.lrca)
        # The image's head is stale while an earlier submission of this context is still
        # outstanding: continue from that one's tail (GVT-g does the same).
        head = self._outstanding_tail(desc.lrca)
        if head is None:
            head = ring.head
        w = self._workload(desc, ring, head, ring.tail)
        return _Element(desc, deque([w]), ring.tail)

    def _workload(self, desc: ContextDescriptor, ring: RingContext, head: int, tail: int) -> Workload:
        self._seq += 1
        return Workload(self.engine, desc, ring, head, tail, self._seq)

    def _outstanding_tail(self, lrca: int) -> int | None:
        # Only the running element has consumed part of its ring; an element 1 never ran, and a
        # preemption puts the preempted context's stop point right at the switch (_preempt).
        cur = self._current
        if cur and cur[0].lrca == lrca:
            return cur[0].tail
        return None

    def _lite_restore(self, execlist: _Execlist) -> None:
        running, new0 = self._current[0], execlist[0]
        self.counters.lite_restores += 1
        if EXECLIST_LITE_RESTORE.on:
            EXECLIST_LITE_RESTORE(self.engine.name, new0.descriptor.context_id, new0.tail)
        # Same context: the new element's segment starts at the running one's tail
        # (_element saw it outstanding) and runs after it, without a context switch.
        segment = new0.segments[0]
        if segment.tail != running.tail:
            running.segments.append(segment)
            running.tail = segment.tail
        running.descriptor = new0.descriptor
        dropped = self._current[1:]
        if dropped:
            log.info(
                "%s: lite restore replaces element 1 (ctx %#x), which never ran",
                self.engine.name,
                dropped[0].descriptor.context_id,
            )
        self._current[1:] = execlist[1:]
        self._csb(_LITE_RESTORE, new0.descriptor.context_id)

    def _switch_in(self, execlist: _Execlist) -> None:
        self._current = execlist
        if EXECLIST_SUBMIT.on:
            first = execlist[0].segments[0]
            second = f" then ctx {execlist[1].descriptor.context_id:#x}" if len(execlist) > 1 else ""
            EXECLIST_SUBMIT(self.engine.name, first.context_id, first.descriptor.lrca, first.head, first.tail, second)
        self._context_in(execlist[0].lrca)
        # GVT-g reports idle-to-active with context ID 0; i915 looks only at the status.
        self._csb(_IDLE_ACTIVE, 0)
        self._start_next()

    def _start_next(self) -> None:
        w = self._current[0].segments[0]
        self._running = w
        self.executor.start(w)  # last: an executor may report completion from inside

    # --- completion ------------------------------------------------------------------------

    def complete(self, w: Workload) -> None:
        self._complete(w)
        self._publish_status()

    def _complete(self, w: Workload) -> None:
        if w is not self._running:
            log.debug("%s: completion of %r ignored: not the running workload", self.engine.name, w)
            return
        self.counters.completed += 1
        self._running = None
        if EXECLIST_COMPLETE.on:
            EXECLIST_COMPLETE(self.engine.name, w.context_id, w.tail)
        write_ring_head(self.write_gm, w.descriptor.lrca, w.tail)
        element = self._current[0]
        if self._pending is not None:
            self._preempt(element, w.tail)
            return
        element.segments.popleft()
        if element.segments:
            self._start_next()
            return
        self._current.pop(0)
        self._context_out(element.lrca)
        ctx = element.descriptor.context_id
        if self._current:
            self._context_in(self._current[0].lrca)
            self._csb(_ELEMENT_SWITCH, ctx)
            self._start_next()
            return
        self._csb(_ACTIVE_IDLE, ctx)

    def _preempt(self, element: _Element, stop: int) -> None:
        """The arbitration point at the end of a segment, with a preemption request pending:
        the request's execlist replaces the current one. The preempted context's later
        segments are dropped unrun (its image head, just written, is where it stopped), and a
        new element of that context starts there."""
        pending = self._pending
        assert pending is not None
        self._pending = None
        self.counters.preemptions += 1
        for el in pending:
            if el.lrca == element.lrca:
                el.segments[0] = dataclasses.replace(el.segments[0], head=stop)
        self._current = pending
        self._context_out(element.lrca)
        self._context_in(pending[0].lrca)
        self._csb(_PREEMPTED, element.descriptor.context_id)
        self._start_next()

    def hang(self, w: Workload, reason: str) -> None:
        if w is not self._running:
            log.debug("%s: hang of %r ignored: not the running workload", self.engine.name, w)
            return
        self.counters.hung += 1
        self.last_hang = (w, reason)
        if EXECLIST_HANG.on:
            EXECLIST_HANG(self.engine.name, w.context_id, reason)
        self._warn(self.engine, "context hung", f"{reason}: {w!r}")
        # Stuck, not idle: i915's engine reset takes the guilty context from
        # EXECLIST_STATUS_HI (execlists_reset_prepare, active_ccid); an idle engine there
        # makes the hang nobody's, the request is replayed unmarked and the context never
        # learns it hung. Dropping it and running the next submission would also replay the
        # hung context's ring when i915 resubmits it, side effects and all.
        self._running = None
        self.hung = True

    def notify(self, w: Workload, events: GtEvent) -> None:
        """User / notify interrupts from a running workload's commands."""
        if w is self._running:
            self.interrupts.fire(self.engine, events)

    # --- reset -----------------------------------------------------------------------------

    def reset(self) -> None:
        """GDRST of this engine: drop queued and running work, CSB pointer back to 7,
        EXECLIST_STATUS idle, a half-written ELSP forgotten."""
        self._drop_all(cancel=True)
        self._elsp.clear()
        rf = self.rf
        rf.set(self.engine.reg(r.CSB_PTR), r.CSB_PTR_RESET)
        self._publish_status()

    def power_on(self) -> None:
        """Device reset, after the register file's: no registers to touch, state only."""
        self._drop_all(cancel=True)
        self._elsp.clear()
        self._seq = 0
        self.last_hang = None
        self._publish_status()

    def _drop_all(self, cancel: bool) -> None:
        running = self._running
        self._running = None
        self.hung = False
        self._current = []
        self._pending = None
        self._ctx_since = None  # a reset saves no context
        if running is not None and cancel:
            self.counters.cancelled += 1
            self.executor.cancel(running)

    # --- the context status buffer ---------------------------------------------------------

    def _csb(self, status: int, context_id: int) -> None:
        rf = self.rf
        e = self.engine
        ptr_off = e.reg(r.CSB_PTR)
        ptr = rf.get(ptr_off)
        slot = r.csb_next_slot(ptr & r.CSB_PTR_WRITE_MASK)
        entry = e.reg(r.CSB_BASE + slot * r.CSB_ENTRY_SIZE)
        rf.set(entry, status)
        rf.set(entry + 4, context_id)
        hws = rf.get(e.reg(r.HWS_PGA)) & ~(PAGE_SIZE - 1)
        if hws:
            if self.memory.contains(hws, PAGE_SIZE):
                # The entry before the index that publishes it: i915 spins on poisoned entries.
                self.write_gm(hws + (r.HWSP_CSB_DWORD + 2 * slot) * 4, struct.pack("<II", status, context_id))
                self.write_gm(hws + r.HWSP_CSB_WRITE_INDEX_DWORD * 4, struct.pack("<I", slot))
            else:
                self._warn(e, "HWS_PGA outside the vGPU's graphics memory, status page not written", hex(hws))
        rf.set(ptr_off, (ptr & ~r.CSB_PTR_WRITE_MASK) | slot)
        self.counters.csb_events += 1
        if CSB.on:
            CSB(e.name, slot, status, context_id)
        self.interrupts.fire(e, _CONTEXT_SWITCH)


class Engines:
    """The four engines' execlists; the executor reports back through here."""

    def __init__(
        self,
        interrupts: Interrupts,
        executor: Executor,
        read_gm: GmReader,
        write_gm: GmWriter,
        memory: GraphicsMemory,
        timestamp: CsClock,
    ) -> None:
        self.timestamp = timestamp
        self.execlists: dict[EngineId, Execlist] = {
            e.id: Execlist(e, interrupts, executor, read_gm, write_gm, memory, self.timestamp) for e in ENGINES
        }

    def __getitem__(self, engine_id: EngineId) -> Execlist:
        return self.execlists[engine_id]

    def __iter__(self) -> Iterator[Execlist]:
        return iter(self.execlists.values())

    def engine_hooks(self) -> dict[EngineId, dict[str, Hooks]]:
        return {engine_id: ex.hooks() for engine_id, ex in self.execlists.items()}

    def attach(self, rf: RegisterFile) -> None:
        for ex in self.execlists.values():
            ex.attach(rf)

    def complete(self, w: Workload) -> None:
        self.execlists[w.engine.id].complete(w)

    def hang(self, w: Workload, reason: str) -> None:
        self.execlists[w.engine.id].hang(w, reason)

    def notify(self, w: Workload, events: GtEvent) -> None:
        self.execlists[w.engine.id].notify(w, events)

    def reset_engines(self, selected: Callable[[EngineInfo], bool]) -> None:
        for ex in self.execlists.values():
            if selected(ex.engine):
                ex.reset()

    def power_on(self) -> None:
        for ex in self.execlists.values():
            ex.power_on()
