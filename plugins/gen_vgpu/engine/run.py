"""The executor: runs each workload the execlists start as a task of the device's loop.

A workload goes through three phases, each in steps bounded by the loop's deadline:

1. **shadow**: pin the shadow PPGTT for the context's roots (addressing mode 1: PDP0..3,
   3-level; mode 3: the PML4 in PDP0) and bring it up to date (``ResyncTask``);
2. **ring**: read the ring commands between head and tail (RING_START, RING_CTL's size;
   wrapping) through the GGTT a page at a time and scan them (``ring_scan``, in steps); a
   rejection hangs the context before anything ran;
3. **run**: execute the scanned records, each by the handler its command's row names
   (cmd/opcodes.py), bound here to a method of the workload. A GGTT batch is read and scanned
   whole (``batch_scan``, in steps) when its MI_BATCH_BUFFER_START runs, before any of it
   runs; a PPGTT batch is scanned one command at a time as it runs (``scan_next``), confined
   by the shadow PPGTT.

Memory is reached only through :mod:`.memory` (the shadow GGTT and the pinned shadow PPGTT).
The watchdog counts the engine time spent in the workload's own steps and the commands it
walked (every command the scanner walked, skipped ones included, and every command of a
PPGTT batch); past either limit the context hangs. Between steps the state is plain data (records,
positions, a blit's next line), so a quiesce that cancels the task (a DMA_MAP or DMA_UNMAP)
loses nothing: the workload continues in a new task once the map has changed. A reset (GDRST,
device reset) cancels it through :meth:`Runner.cancel` and it is gone.
"""

from __future__ import annotations

import logging
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devmodel.device.registers import RegisterFile
from devmodel.device.tasks import Task, TaskQueue
from devmodel.errors import DeviceError

from ..cmd import CommandRejected, Frame, Scan, Segment, batch_scan, ring_scan, scan_next
from ..cmd import decode as alu
from ..cmd.opcodes import SPECS
from ..cmd.records import (
    Atomic,
    AtomicOp,
    BatchEnd,
    BatchStart,
    ColorBlt,
    Command,
    CompareOp,
    CondBatchEnd,
    CopyMemMem,
    FlushDw,
    GfxState,
    LoadRegisterImm,
    LoadRegisterMem,
    LoadRegisterReg,
    Math,
    PipeControl,
    PostSync,
    SemaphoreWait,
    SrcCopyBlt,
    StoreDataImm,
    StoreDataIndex,
    StoreRegisterMem,
    UserInterrupt,
)
from ..cmd.scan_accel import ScanAccel
from ..graphics_memory import GraphicsMemory
from ..gtt.mm import Ppgtt, ResyncTask, RootKind, ShadowMm
from ..gtt.space import AddressSpace, GgttSpace, PpgttSpace, SpaceSource, read, write
from ..gtt.walker import ShadowWalker
from ..interrupts import GtEvent
from ..mmio import engine_regs as r
from ..render.errors import RenderRefused
from ..timestamp import CsClock
from ..trace_events import SCAN_REJECT
from .blit import BlitJob
from .blit_accel import BlitAccel
from .context import ADDRESSING_LEGACY_32
from .execlist import Engines
from .executor import Workload
from .tiling import BCS_SWCTRL

if TYPE_CHECKING:
    from ..render.pipeline import Job as RenderJob
    from ..render.pipeline import Pipeline as RenderPipeline

__all__ = ["Runner", "RunnerCounters", "Watchdog"]

log = logging.getLogger(__name__)

_USER = int(GtEvent.USER)
_NOTIFY = int(GtEvent.NOTIFY)


@dataclass(frozen=True)
class Watchdog:
    """Optional limits on one workload: engine seconds (time in its own steps, not time spent
    waiting behind other work or sleeping in a poll) and commands walked. Both are off by
    default: hardware has no such limit, and i915 finds a stuck request itself (its
    heartbeat and engine reset), while IGT keeps spinners running for as long as a test
    needs. ``devmodel serve --watchdog SECONDS`` turns the engine-time limit on."""

    engine_seconds: float | None = None
    commands: int | None = None


# A workload that only waits (a semaphore not yet true, a loop on itself whose last lap
# changed nothing) sleeps this long between looks at memory, instead of spinning the loop.
POLL_INTERVAL = 0.001
# Registers the engine itself produces (offsets from the engine's base).
GPR_BASE = 0x600  # 16 64-bit general purpose registers, the MI_MATH ALU's
_M64 = (1 << 64) - 1


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
    render_refused: int = 0  # draws and dispatches the render pipeline refused
    render_jobs: int = 0
    render_pixels: int = 0


class _Hang(Exception):
    """Ends a workload as a hang with the reason (internal to this module)."""


class _Listed:
    """Records already scanned (the ring segment, a GGTT batch), run in order."""

    __slots__ = ("address", "commands", "frame", "frames", "index")

    def __init__(self, seg: Segment, frame: Frame, address: int | None) -> None:
        self.address = address  # the batch's start (None for the ring)
        self.commands = seg.commands
        self.frames = {b.offset: b.frame for b in seg.batches}  # batch start offset -> its batch's frame
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

    @property
    def address(self) -> int:
        return self.source.address

    def next(self) -> tuple[Command, Frame | None] | None:
        step = scan_next(self.source, self.pos, self.frame)
        self.pos += step.length
        return step.command, step.child


_Cursor = _Listed | _Streamed


class RingSource:
    """The ring's commands from ``head`` on as one unwrapped run of dwords (a
    ``cmd.DwordSource``), read through the GGTT a page at a time as the scan asks."""

    __slots__ = ("head", "size", "space", "start")

    def __init__(self, space: AddressSpace, start: int, size: int, head: int) -> None:
        self.space = space
        self.start = start
        self.size = size
        self.head = head

    def read(self, pos: int, count: int) -> array[int]:
        off = (self.head + 4 * pos) % self.size
        first = min(4 * count, self.size - off)
        data = read(self.space, self.start + off, first)
        if first < 4 * count:
            data += read(self.space, self.start, 4 * count - first)
        return array("I", data)


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
        self.scan: Scan | None = None  # a ring or GGTT batch being scanned, across steps
        self.scan_chained = False  # the GGTT batch being scanned replaces the one that started it
        self.scan_address = 0
        self.waiting: SemaphoreWait | None = None  # a semaphore wait not yet satisfied
        self.sleep = False  # the step ends in a poll: sleep POLL_INTERVAL before the next
        self.effects = 0  # commands run that change memory, registers or interrupts
        self.lap_effects = -1  # ``effects`` when the running batch last started itself
        self.polls = 0
        # 3D/media state lives for the workload (IGT and i915 re-emit all of it per batch).
        self.render: RenderPipeline | None = None
        self.render_job: RenderJob | None = None
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
            limit = watchdog.engine_seconds
            if more and limit is not None and self.engine_time > limit:
                self.runner.counters.watchdog += 1
                raise _Hang(f"watchdog: {self.engine_time:.2f} s of engine time (limit {watchdog.engine_seconds} s)")
        except CommandRejected as exc:
            self.runner.counters.rejected += 1
            if SCAN_REJECT.on:
                SCAN_REJECT(self.workload.engine.name, exc)
            return self._hang(f"command rejected: {exc}")
        except RenderRefused as exc:
            self.runner.counters.render_refused += 1
            return self._hang(f"render: {exc}")
        except _Hang as exc:
            return self._hang(str(exc))
        except DeviceError as exc:
            self.runner.counters.faults += 1
            return self._hang(f"fault: {exc}")
        if not more:
            self._complete()
        elif self.sleep:
            self._sleep()
        return more

    def _sleep(self) -> None:
        """Off the ready queue for POLL_INTERVAL: the workload only waits for memory to change."""
        self.sleep = False
        self.polls += 1
        task, tasks = self.task, self.runner.tasks
        if task is None:
            return
        tasks.suspend(task)
        tasks.call_later(POLL_INTERVAL, lambda: tasks.resume(task), uses_guest_memory=False)

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
            if self.scan is None:
                self.scan = self._ring_scan()
            seg = self._scan_step(deadline, clock)
            if seg is None:
                return True
            self.stack.append(_Listed(seg, self.scan_frame(seg), None))
            self.phase = "run"
            if clock() >= deadline:
                return True
        return self._execute(deadline, clock)

    def scan_frame(self, seg: Segment) -> Frame:
        scan = self.scan
        assert scan is not None
        self.scan = None
        return scan.frame

    def _scan_step(self, deadline: float, clock: Callable[[], float]) -> Segment | None:
        """One step of the scan under way; its commands count toward the command limit."""
        scan = self.scan
        assert scan is not None
        before = scan.scanned
        seg = scan.step(deadline, clock)
        self._count(scan.scanned - before)
        return seg

    def _count(self, n: int) -> None:
        self.commands += n
        limit = self.runner.watchdog.commands
        if limit is not None and self.commands > limit:
            self.runner.counters.watchdog += 1
            raise _Hang(f"watchdog: more than {limit} commands")

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

    def _ring_scan(self) -> Scan:
        w = self.workload
        memory = self.runner.memory
        start = w.ring.ring_start & ~0xFFF
        size = r.ring_size(w.ring.ring_ctl)
        if not memory.contains(start, size):
            raise _Hang(f"ring {start:#x}+{size:#x} outside this vGPU's graphics memory")
        head, tail = w.head, w.tail
        if head >= size or tail >= size:
            raise _Hang(f"ring head {head:#x} / tail {tail:#x} past the ring's {size:#x} bytes")
        length = ((tail - head) % size) // 4
        return ring_scan(
            RingSource(self.space_ggtt, start, size, head), length, w.engine.id, memory, self.runner.scan_accel
        )

    # --- running commands ------------------------------------------------------------------

    def _execute(self, deadline: float, clock: Callable[[], float]) -> bool:
        stack = self.stack
        handlers = _HANDLERS
        for cursor in stack:
            if isinstance(cursor, _Streamed):
                cursor.source.forget()  # the guest may have written its batch meanwhile
        while True:
            if self.scan is not None:
                seg = self._scan_step(deadline, clock)
                if seg is None:
                    return True
                frame = self.scan.frame
                self.scan = None
                self._enter(_Listed(seg, frame, self.scan_address), self.scan_chained)
            if self.waiting is not None:
                if not self._semaphore_true(self.waiting):
                    self._count(1)  # each look at memory is the command again, for the limit
                    self.sleep = True
                    return True
                self.waiting = None
            if self.blit is not None:
                if self.blit.step(deadline, clock):
                    return True
                self.runner.counters.blit_bytes += self.blit.bytes
                self.blit = None
            if self.render_job is not None:
                if self.render_job.step(deadline, clock):
                    return True
                self.runner.counters.render_pixels += self.render_job.pixels
                self.render_job = None
            if not stack:
                return False
            got = stack[-1].next()
            if got is None:
                stack.pop()  # the ring's end (a batch ends with its MI_BATCH_BUFFER_END)
                continue
            rec, child = got
            if isinstance(stack[-1], _Streamed):
                self._count(1)  # a listed command was counted when it was scanned
            handler = handlers.get(type(rec))
            if handler is not None:
                if type(rec) not in _PURE:
                    self.effects += 1
                handler(self, rec, child)
            if self.sleep or self.waiting is not None or clock() >= deadline:
                return True

    def batch_start(self, rec: BatchStart, child: Frame | None) -> None:
        assert child is not None  # the scanner gives every batch start its frame
        # The batch the engine is in, as i915's error capture and debugfs read it.
        rf, base = self.runner.registers, self.workload.engine.base
        rf.set(base + r.RING_BBADDR, rec.address & 0xFFFFFFFF)
        rf.set(base + r.RING_BBADDR_UDW, rec.address >> 32)
        rf.set(base + r.RING_BBSTATE, r.BBSTATE_PPGTT if rec.ppgtt else 0)
        chained = bool(self.stack[-1].frame.level) and not rec.second_level
        if chained and rec.address == self.stack[-1].address:
            # A batch that starts itself again (IGT's spinner): it runs until the CPU writes
            # the memory that ends it. A lap that changed nothing sleeps before the next.
            if self.effects == self.lap_effects:
                self.sleep = True
            self.lap_effects = self.effects
        if rec.ppgtt:
            assert self.ppgtt_space is not None
            self._enter(_Streamed(SpaceSource(self.ppgtt_space, rec.address, self.ppgtt_space.limit), child), chained)
        else:
            # Scanned whole before any of it runs, in steps (_execute goes on with it).
            self.scan = batch_scan(
                SpaceSource(self.space_ggtt, rec.address), child, rec.address, self.runner.scan_accel
            )
            self.scan_chained = chained
            self.scan_address = rec.address

    def _enter(self, cursor: _Cursor, chained: bool) -> None:
        if chained:
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
        write(self._space(rec.ggtt), rec.address, struct.pack("<I", self.runner.registers.read32(rec.register)))

    def _dword(self, ggtt: bool, address: int) -> int:
        value: int = struct.unpack("<I", read(self._space(ggtt), address, 4))[0]
        return value

    def cond_batch_end(self, rec: CondBatchEnd, child: Frame | None) -> None:
        if self._dword(rec.ggtt, rec.address) <= rec.value:
            self.stack.pop()

    def semaphore_wait(self, rec: SemaphoreWait, child: Frame | None) -> None:
        if not self._semaphore_true(rec):
            self.waiting = rec  # looked at again after POLL_INTERVAL, the command not passed

    def _semaphore_true(self, rec: SemaphoreWait) -> bool:
        sad, sdd, op = self._dword(rec.ggtt, rec.address), rec.value, rec.op
        if op is CompareOp.SAD_GT_SDD:
            return sad > sdd
        if op is CompareOp.SAD_GTE_SDD:
            return sad >= sdd
        if op is CompareOp.SAD_LT_SDD:
            return sad < sdd
        if op is CompareOp.SAD_LTE_SDD:
            return sad <= sdd
        if op is CompareOp.SAD_EQ_SDD:
            return sad == sdd
        return sad != sdd

    def _gpr(self, n: int) -> int:
        rf, reg = self.runner.registers, self.workload.engine.base + GPR_BASE + 8 * n
        return rf.read32(reg) | rf.read32(reg + 4) << 32

    def _set_gpr(self, n: int, value: int) -> None:
        rf, reg = self.runner.registers, self.workload.engine.base + GPR_BASE + 8 * n
        rf.write32(reg, value & 0xFFFFFFFF)
        rf.write32(reg + 4, (value >> 32) & 0xFFFFFFFF)

    def math(self, rec: Math, child: Frame | None) -> None:
        srca = srcb = accu = 0
        zf = cf = False

        def source(operand: int) -> int:
            if operand == alu.ALU_ACCU:
                return accu
            if operand == alu.ALU_ZF:
                return _M64 if zf else 0  # a flag reads as all ones when set
            if operand == alu.ALU_CF:
                return _M64 if cf else 0
            return self._gpr(operand)

        for opcode, a, c in rec.instructions:
            if opcode in (alu.ALU_LOAD, alu.ALU_LOADINV, alu.ALU_LOAD0, alu.ALU_LOAD1):
                if opcode == alu.ALU_LOAD0:
                    value = 0
                elif opcode == alu.ALU_LOAD1:
                    value = 1
                else:
                    value = source(c) ^ (_M64 if opcode == alu.ALU_LOADINV else 0)
                if a == alu.ALU_SRCA:
                    srca = value
                else:
                    srcb = value
            elif opcode in (alu.ALU_STORE, alu.ALU_STOREINV):
                self._set_gpr(a, source(c) ^ (_M64 if opcode == alu.ALU_STOREINV else 0))
            elif opcode != alu.ALU_NOOP:
                if opcode == alu.ALU_ADD:
                    total = srca + srcb
                    cf = total > _M64
                elif opcode == alu.ALU_SUB:
                    total = srca - srcb
                    cf = srca < srcb  # the borrow
                else:
                    cf = False
                    if opcode == alu.ALU_AND:
                        total = srca & srcb
                    elif opcode == alu.ALU_OR:
                        total = srca | srcb
                    else:
                        total = srca ^ srcb
                accu = total & _M64
                zf = accu == 0

    def load_register_reg(self, rec: LoadRegisterReg, child: Frame | None) -> None:
        self.runner.registers.write32(rec.dst, self.runner.registers.read32(rec.src))

    def load_register_mem(self, rec: LoadRegisterMem, child: Frame | None) -> None:
        self.runner.registers.write32(rec.register, self._dword(rec.ggtt, rec.address))

    def copy_mem_mem(self, rec: CopyMemMem, child: Frame | None) -> None:
        write(self._space(rec.dst_ggtt), rec.dst, read(self._space(rec.src_ggtt), rec.src, 4))

    def atomic(self, rec: Atomic, child: Frame | None) -> None:
        space = self._space(rec.ggtt)
        bits = 8 * rec.size
        mask = (1 << bits) - 1
        old = int.from_bytes(read(space, rec.address, rec.size), "little")
        a, b = (v & mask for v in rec.operands)
        new = _atomic_result(rec.op, old, a, b, bits) & mask
        write(space, rec.address, new.to_bytes(rec.size, "little"))

    def store_data_index(self, rec: StoreDataIndex, child: Frame | None) -> None:
        if not self.stack[-1].frame.privileged:
            # A privileged command in a user batch: a no-op with CP_PRIV in EIR (which i915
            # masks in EMR: "the HW is validating and suppressing the mistakes").
            eir = self.workload.engine.reg(r.EIR)
            rf = self.runner.registers
            rf.set(eir, rf.get(eir) | r.EIR_CP_PRIV)
            return
        data = rec.value.to_bytes(8, "little")[: rec.size]
        write(self.space_ggtt, self.workload.descriptor.lrca + rec.offset, data)

    def _post_sync(self, op: PostSync, store_index: bool, ggtt: bool, address: int, size: int, value: int) -> None:
        if op is PostSync.NONE:
            return
        if op is PostSync.TIMESTAMP:
            value = self.runner.timestamp.ticks()
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

    def gfx_state(self, rec: GfxState, child: Frame | None) -> None:
        if self.render is None:
            assert self.ppgtt_space is not None
            # A served device loaded it when its client attached (GenVgpu.client_attached), not
            # at start: there this import only names it and costs no step the module's loading.
            from ..render.pipeline import Pipeline as RenderPipeline

            self.render = RenderPipeline(self.ppgtt_space, self.runner.gen)
        job = self.render.command(rec.dwords)
        if job is not None:
            self.runner.counters.render_jobs += 1
            self.render_job = job

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


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _atomic_result(op: AtomicOp, old: int, a: int, b: int, bits: int) -> int:
    if op is AtomicOp.AND:
        return old & a
    if op is AtomicOp.OR:
        return old | a
    if op is AtomicOp.XOR:
        return old ^ a
    if op is AtomicOp.MOVE:
        return a
    if op is AtomicOp.INC:
        return old + 1
    if op in (AtomicOp.DEC, AtomicOp.PREDEC):
        return old - 1
    if op is AtomicOp.ADD:
        return old + a
    if op is AtomicOp.SUB:
        return old - a
    if op is AtomicOp.RSUB:
        return a - old
    if op is AtomicOp.IMAX:
        return old if _signed(old, bits) >= _signed(a, bits) else a
    if op is AtomicOp.IMIN:
        return old if _signed(old, bits) <= _signed(a, bits) else a
    if op is AtomicOp.UMAX:
        return max(old, a)
    if op is AtomicOp.UMIN:
        return min(old, a)
    return b if old == a else old  # CMP_WR: the new value where memory holds the compare value


# Records that neither write memory or registers nor raise interrupts: a loop of only these
# changes nothing, and may sleep between laps.
_PURE = frozenset({BatchStart, BatchEnd, CondBatchEnd, SemaphoreWait})

# Each row of the command table names its handler, a method of _Run taking the row's record
# type; records are dispatched by type.
_Handler = Callable[[_Run, Any, Frame | None], None]


def _bind_handlers() -> dict[type, _Handler]:
    handlers: dict[type, _Handler] = {}
    for spec in SPECS:
        if spec.handler is not None:
            fn = getattr(_Run, spec.handler, None)
            if not callable(fn):
                raise TypeError(f"{spec.name}: the executor has no handler {spec.handler!r}")
            handlers[spec.record] = fn
    return handlers


_HANDLERS = _bind_handlers()


class Runner:
    """The Executor (engine/executor.py) of the vGPU: one task per running workload."""

    def __init__(
        self,
        tasks: TaskQueue,
        ggtt_space: GgttSpace,
        ppgtt: Ppgtt,
        registers: RegisterFile,
        memory: GraphicsMemory,
        timestamp: CsClock,
        watchdog: Watchdog | None = None,
        gen: int = 8,
    ) -> None:
        self.tasks = tasks
        self.timestamp = timestamp
        self.gen = gen  # the EU instruction set and state layouts the render pipeline reads
        self.clock = tasks.clock
        self.ggtt_space = ggtt_space
        self.ppgtt = ppgtt
        self.walker = ShadowWalker(ppgtt)
        self.blit_accel: BlitAccel | None = None  # the blitter in the compiled accelerator
        self.scan_accel: ScanAccel | None = None  # the scanner's walk in the compiled accelerator
        self.registers = registers
        self.memory = memory
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
        """A TLB-invalidation register was written: every shadowed PPGTT is resynced by the
        one background resync task (a new task only when none is queued)."""
        self.spawn_resync(self.ppgtt.on_tlb_invalidate(), "tlb-invalidate")

    def spawn_resync(self, resync: ResyncTask | None, name: str) -> None:
        """Run a shadow PPGTT resync as a loop task (a quiesce drops it); None: the resync
        already queued took the work."""
        if resync is not None:
            self.tasks.spawn(_ResyncJob(resync, name))

    def running(self) -> dict[str, str]:
        """Per engine, what its workload is doing (inspection)."""
        return {run.workload.engine.name: f"{run.workload!r} {run.phase}" for run in self._runs.values()}
