"""The executor: runs each workload the execlists start as a task of the device's loop.

A workload goes through three phases, each in steps bounded by the loop's deadline:

1. **shadow**: pin the shadow PPGTT for the context's roots (addressing mode 1: PDP0..3,
   3-level; mode 3: the PML4 in PDP0) and bring it up to date (``ResyncTask``);
2. **ring**: copy the ring commands between head and tail out of the ring (RING_START,
   RING_CTL's size; wrapping) through the GGTT and scan them whole (``scan_ring``); a
   rejection hangs the context before anything ran;
3. **run**: execute the scanned records. A GGTT batch is read and scanned whole
   (``scan_batch``) when its MI_BATCH_BUFFER_START runs, before any of it runs; a PPGTT batch
   is scanned one command at a time as it runs (``scan_next``), confined by the shadow PPGTT.

Memory is reached only through :mod:`.memory` (the shadow GGTT and the pinned shadow PPGTT).
The watchdog counts the engine time spent in the workload's own steps and the commands it
executed; past either limit the context hangs. Between steps the state is plain data (records,
positions, a blit's next line), so a quiesce that cancels the task (a DMA_MAP or DMA_UNMAP)
loses nothing: the workload continues in a new task once the map has changed. A reset (GDRST,
device reset) cancels it through :meth:`Runner.cancel` and it is gone.
"""

from __future__ import annotations

import logging
import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devmodel.device.registers import RegisterFile
from devmodel.device.tasks import Task, TaskQueue
from devmodel.errors import DeviceError

from ..cmd import CommandRejected, Frame, scan_batch, scan_next, scan_ring
from ..cmd.ranges import GraphicsMemory as ScanMemory
from ..cmd.records import (
    BatchEnd,
    BatchStart,
    ColorBlt,
    Command,
    FlushDw,
    LoadRegisterImm,
    PipeControl,
    PostSync,
    SrcCopyBlt,
    StoreDataImm,
    StoreRegisterMem,
    UserInterrupt,
)
from ..gtt.mm import Ppgtt, ResyncTask, RootKind, ShadowMm
from ..gtt.walker import ShadowWalker
from ..interrupts import GtEvent
from . import regs as r
from .blit import BlitJob
from .blit_accel import BlitAccel
from .context import ADDRESSING_LEGACY_32
from .execlist import Engines
from .executor import Workload
from .memory import GgttSpace, PpgttSpace, SpaceSource, write
from .tiling import BCS_SWCTRL

__all__ = ["TIMESTAMP_NS", "Runner", "RunnerCounters", "Watchdog"]

log = logging.getLogger(__name__)

TIMESTAMP_NS = 80  # the command streamer's timestamp ticks at 12.5 MHz (GEN8; GEN9 12 MHz)
_USER = int(GtEvent.USER)
_NOTIFY = int(GtEvent.NOTIFY)


@dataclass(frozen=True)
class Watchdog:
    """Limits on one workload: engine seconds (time in its own steps, not time spent waiting
    behind other work) and commands executed. i915 declares a request hung after seconds."""

    engine_seconds: float = 2.0
    commands: int = 1_000_000


@dataclass
class RunnerCounters:
    started: int = 0
    completed: int = 0
    rejected: int = 0  # scanner rejections
    watchdog: int = 0
    faults: int = 0  # other device errors while running
    cancelled: int = 0  # reset by GDRST / device reset
    continued: int = 0  # carried over a quiesce into a new task
    commands: int = 0
    blit_bytes: int = 0
    resync_steps: int = 0


class _Hang(Exception):
    """Ends a workload as a hang with the reason (internal to this module)."""


class _Listed:
    """Records already scanned (the ring segment, a GGTT batch), run in order."""

    __slots__ = ("commands", "frame", "frames", "index")

    def __init__(self, commands: list[tuple[int, Command]], frames: dict[int, Frame], frame: Frame) -> None:
        self.commands = commands
        self.frames = frames  # MI_BATCH_BUFFER_START offset -> the frame its batch runs in
        self.frame = frame
        self.index = 0

    def next(self) -> tuple[Command, Frame | None] | None:
        if self.index >= len(self.commands):
            return None
        offset, rec = self.commands[self.index]
        self.index += 1
        return rec, self.frames.get(offset)


class _Streamed:
    """A PPGTT batch, decoded and checked one command at a time as it runs."""

    __slots__ = ("frame", "pos", "source")

    def __init__(self, source: SpaceSource, frame: Frame) -> None:
        self.source = source
        self.frame = frame
        self.pos = 0

    def next(self) -> tuple[Command, Frame | None] | None:
        step = scan_next(self.source, self.pos, self.frame)
        self.pos += step.length
        return step.command, step.child


_Cursor = _Listed | _Streamed


class _WorkloadTask(Task):
    def __init__(self, run: _Run) -> None:
        super().__init__(uses_guest_memory=True, name=f"workload-{run.workload.engine.name}")
        self.run = run

    def step(self, deadline: float) -> bool:
        return self.run.step(deadline)

    def on_cancel(self) -> None:
        self.run.task_cancelled(self)


class _ResyncJob(Task):
    """A shadow PPGTT resync on its own (a TLB invalidation). Cancelled by a quiesce it is
    simply dropped: every submission resyncs its own context before running anyway."""

    def __init__(self, resync: ResyncTask, name: str) -> None:
        super().__init__(uses_guest_memory=True, name=name)
        self.resync = resync

    def step(self, deadline: float) -> bool:
        return self.resync.step(deadline)

    def on_cancel(self) -> None:
        self.resync.cancel()


class _Run:
    """One workload's progress."""

    def __init__(self, runner: Runner, w: Workload) -> None:
        self.runner = runner
        self.workload = w
        self.space_ggtt = runner.ggtt_space
        self.mm: ShadowMm | None = None
        self.resync: ResyncTask | None = None
        self.ppgtt_space: PpgttSpace | None = None
        self.stack: list[_Cursor] = []
        self.blit: BlitJob | None = None
        self.phase = "shadow"
        self.engine_time = 0.0
        self.commands = 0
        self.finished = False
        self.task: _WorkloadTask | None = None

    # --- tasks -----------------------------------------------------------------------------

    def spawn(self) -> None:
        self.task = self.runner.tasks.spawn(_WorkloadTask(self))

    def task_cancelled(self, task: _WorkloadTask) -> None:
        if self.finished or task is not self.task:
            return
        # A quiesce: nothing of this workload holds guest memory between steps, so it goes
        # on in a new task, which runs after the map change the quiesce is for.
        self.runner.counters.continued += 1
        self.spawn()

    def stop(self) -> None:
        """Cancelled by a reset: no report, the task and the pin go."""
        if self.finished:
            return
        self._release()
        self.runner.counters.cancelled += 1
        if self.task is not None:
            self.task.cancel()

    def _release(self) -> None:
        self.finished = True
        if self.resync is not None and not self.resync.done:
            self.resync.cancel()
        if self.mm is not None:
            self.runner.ppgtt.unpin(self.mm)
            self.mm = None

    # --- the step --------------------------------------------------------------------------

    def step(self, deadline: float) -> bool:
        if self.finished:
            return False
        clock = self.runner.clock
        start = clock()
        watchdog = self.runner.watchdog
        try:
            more = self._advance(deadline, clock)
            self.engine_time += clock() - start
            if more and self.engine_time > watchdog.engine_seconds:
                self.runner.counters.watchdog += 1
                raise _Hang(f"watchdog: {self.engine_time:.2f} s of engine time (limit {watchdog.engine_seconds} s)")
        except CommandRejected as exc:
            self.runner.counters.rejected += 1
            return self._hang(f"command rejected: {exc}")
        except _Hang as exc:
            return self._hang(str(exc))
        except DeviceError as exc:
            self.runner.counters.faults += 1
            return self._hang(f"fault: {exc}")
        if not more:
            self._complete()
        return more

    def _advance(self, deadline: float, clock: Callable[[], float]) -> bool:
        if self.phase == "shadow":
            if self.resync is None:
                self._pin()
            assert self.resync is not None
            self.runner.counters.resync_steps += 1
            if self.resync.step(deadline):
                return True
            self.phase = "ring"
            if clock() >= deadline:
                return True
        if self.phase == "ring":
            self._load_ring()
            self.phase = "run"
            if clock() >= deadline:
                return True
        return self._execute(deadline, clock)

    def _pin(self) -> None:
        w = self.workload
        pdps = w.ring.pdps
        if w.descriptor.addressing_mode == ADDRESSING_LEGACY_32:
            kind, roots = RootKind.L3, tuple(pdps)
        else:
            kind, roots = RootKind.L4, (pdps[0],)
        mm, self.resync = self.runner.ppgtt.pin(kind, roots)
        self.mm = mm
        self.ppgtt_space = PpgttSpace(self.runner.walker, mm)

    def _load_ring(self) -> None:
        w = self.workload
        runner = self.runner
        start = w.ring.ring_start & ~0xFFF
        size = r.ring_size(w.ring.ring_ctl)
        if not runner.scan_memory.contains(start, size):
            raise _Hang(f"ring {start:#x}+{size:#x} outside this vGPU's graphics memory")
        head, tail = w.head, w.tail
        if head >= size or tail >= size:
            raise _Hang(f"ring head {head:#x} / tail {tail:#x} past the ring's {size:#x} bytes")
        ggtt = self.space_ggtt
        if head <= tail:
            data = ggtt.read(start + head, tail - head)
        else:
            data = ggtt.read(start + head, size - head) + ggtt.read(start, tail)
        frame = Frame.ring(w.engine.id, runner.scan_memory)
        seg = scan_ring(array("I", data), w.engine.id, runner.scan_memory)
        self.stack.append(_Listed(seg.commands, {b.offset: b.frame for b in seg.batches}, frame))

    # --- running commands ------------------------------------------------------------------

    def _execute(self, deadline: float, clock: Callable[[], float]) -> bool:
        stack = self.stack
        limit = self.runner.watchdog.commands
        handlers = _HANDLERS
        for cursor in stack:
            if isinstance(cursor, _Streamed):
                cursor.source.forget()  # the guest may have written its batch meanwhile
        while True:
            if self.blit is not None:
                if self.blit.step(deadline, clock):
                    return True
                self.runner.counters.blit_bytes += self.blit.bytes
                self.blit = None
            if not stack:
                return False
            got = stack[-1].next()
            if got is None:
                stack.pop()  # the ring's end (a batch ends with its MI_BATCH_BUFFER_END)
                continue
            rec, child = got
            self.commands += 1
            if self.commands > limit:
                self.runner.counters.watchdog += 1
                raise _Hang(f"watchdog: more than {limit} commands")
            handler = handlers.get(type(rec))
            if handler is not None:
                handler(self, rec, child)
            if clock() >= deadline:
                return True

    def batch_start(self, rec: BatchStart, child: Frame | None) -> None:
        assert child is not None  # the scanner gives every batch start its frame
        if rec.ppgtt:
            assert self.ppgtt_space is not None
            cursor: _Cursor = _Streamed(SpaceSource(self.ppgtt_space, rec.address, self.ppgtt_space.limit), child)
        else:
            seg = scan_batch(SpaceSource(self.space_ggtt, rec.address), child, rec.address)
            cursor = _Listed(seg.commands, {b.offset: b.frame for b in seg.batches}, child)
        if self.stack[-1].frame.level and not rec.second_level:
            self.stack[-1] = cursor  # chained: the batch does not continue
        else:
            self.stack.append(cursor)

    def batch_end(self, rec: BatchEnd, child: Frame | None) -> None:
        self.stack.pop()

    def _space(self, ggtt: bool) -> GgttSpace | PpgttSpace:
        if ggtt:
            return self.space_ggtt
        assert self.ppgtt_space is not None
        return self.ppgtt_space

    def store_data(self, rec: StoreDataImm, child: Frame | None) -> None:
        write(self._space(rec.ggtt), rec.address, rec.value.to_bytes(8, "little")[: rec.size])

    def load_register(self, rec: LoadRegisterImm, child: Frame | None) -> None:
        rf = self.runner.registers
        for register, value in rec.writes:  # every one on the allow-list (the scanner checked)
            rf.write32(register, value)

    def store_register(self, rec: StoreRegisterMem, child: Frame | None) -> None:
        value = self.runner.registers.read32(rec.register)
        write(self._space(rec.ggtt), rec.address, struct.pack("<I", value))

    def _post_sync(self, op: PostSync, store_index: bool, ggtt: bool, address: int, size: int, value: int) -> None:
        if op is PostSync.NONE:
            return
        if op is PostSync.TIMESTAMP:
            value = time.monotonic_ns() // TIMESTAMP_NS
        elif op is PostSync.DEPTH_COUNT:
            value = 0  # nothing is rasterised
        data = (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")[:size]
        if store_index:  # a byte offset in the context's PPHWSP, page 0 of the image
            write(self.space_ggtt, self.workload.descriptor.lrca + address, data)
        else:
            write(self._space(ggtt), address, data)

    def flush_dw(self, rec: FlushDw, child: Frame | None) -> None:
        self._post_sync(rec.post_sync, rec.store_index, rec.ggtt, rec.address, rec.size, rec.value)
        if rec.notify:
            self.runner.notify(self.workload, _NOTIFY)

    def pipe_control(self, rec: PipeControl, child: Frame | None) -> None:
        self._post_sync(rec.post_sync, rec.store_index, rec.ggtt, rec.address, 8, rec.value)
        if rec.notify:
            self.runner.notify(self.workload, _NOTIFY)

    def user_interrupt(self, rec: UserInterrupt, child: Frame | None) -> None:
        self.runner.notify(self.workload, _USER)

    def start_blit(self, rec: ColorBlt | SrcCopyBlt, child: Frame | None) -> None:
        assert self.ppgtt_space is not None
        runner = self.runner
        self.blit = BlitJob(self.ppgtt_space, rec, runner.blit_accel, runner.registers.read32(BCS_SWCTRL))

    # --- ends ------------------------------------------------------------------------------

    def _complete(self) -> None:
        self._release()
        self.runner.counters.completed += 1
        self.runner.finished(self, None)

    def _hang(self, reason: str) -> bool:
        self._release()
        self.runner.finished(self, reason)
        return False


# Records are dispatched by type; each handler takes its own record type.
_Handler = Callable[[_Run, Any, Frame | None], None]
_HANDLERS: dict[type, _Handler] = {
    BatchStart: _Run.batch_start,
    BatchEnd: _Run.batch_end,
    StoreDataImm: _Run.store_data,
    LoadRegisterImm: _Run.load_register,
    StoreRegisterMem: _Run.store_register,
    FlushDw: _Run.flush_dw,
    PipeControl: _Run.pipe_control,
    UserInterrupt: _Run.user_interrupt,
    ColorBlt: _Run.start_blit,
    SrcCopyBlt: _Run.start_blit,
}


class Runner:
    """The Executor (engine/executor.py) of the vGPU: one task per running workload."""

    def __init__(
        self,
        tasks: TaskQueue,
        ggtt_space: GgttSpace,
        ppgtt: Ppgtt,
        registers: RegisterFile,
        scan_memory: ScanMemory,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.tasks = tasks
        self.clock = tasks.clock
        self.ggtt_space = ggtt_space
        self.ppgtt = ppgtt
        self.walker = ShadowWalker(ppgtt)
        self.blit_accel: BlitAccel | None = None  # the blitter in the compiled accelerator
        self.registers = registers
        self.scan_memory = scan_memory
        self.watchdog = watchdog or Watchdog()
        self.counters = RunnerCounters()
        self.engines: Engines | None = None
        self._runs: dict[int, _Run] = {}  # engine id -> its workload's run

    def attach(self, engines: Engines) -> None:
        """The execlists this runner reports to (they are built with the runner)."""
        self.engines = engines

    # --- Executor --------------------------------------------------------------------------

    def start(self, workload: Workload) -> None:
        run = _Run(self, workload)
        self._runs[workload.engine.id] = run
        self.counters.started += 1
        run.spawn()  # runs at the loop's next turn, right after the ELSP write's reply

    def cancel(self, workload: Workload) -> None:
        run = self._runs.get(workload.engine.id)
        if run is not None and run.workload is workload:
            del self._runs[workload.engine.id]
            run.stop()

    # --- reports ---------------------------------------------------------------------------

    def notify(self, w: Workload, events: int) -> None:
        assert self.engines is not None
        self.engines.notify(w, GtEvent(events))

    def finished(self, run: _Run, reason: str | None) -> None:
        w = run.workload
        if self._runs.get(w.engine.id) is run:
            del self._runs[w.engine.id]
        self.counters.commands += run.commands
        assert self.engines is not None
        if reason is None:
            self.engines.complete(w)
        else:
            self.engines.hang(w, reason)

    def invalidate_tlb(self) -> None:
        """A TLB-invalidation register was written: resync every shadowed PPGTT, as a task."""
        self.spawn_resync(self.ppgtt.on_tlb_invalidate(), "tlb-invalidate")

    def spawn_resync(self, resync: ResyncTask, name: str) -> None:
        """Run a shadow PPGTT resync as a loop task (a quiesce drops it)."""
        self.tasks.spawn(_ResyncJob(resync, name))

    def running(self) -> dict[str, str]:
        """Per engine, what its workload is doing (inspection)."""
        return {run.workload.engine.name: f"{run.workload!r} {run.phase}" for run in self._runs.values()}
