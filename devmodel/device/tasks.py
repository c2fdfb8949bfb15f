"""Device work: tasks that run in time-bounded steps, timers, and the queue the loop drives.

Nothing here does I/O. The transport's event loop (``transport/loop.py``) serves every
pending client message first and then runs due timers and *one* step of one ready task, so
a request never waits behind more than one step. A device reaches its queue as
``device.tasks``; plugins never import the transport.

A step gets a deadline on the queue's clock and returns whether the task has more to do; it
must check the deadline often enough to return close to it (the loop cannot preempt it).
Every task and timer declares whether it uses guest memory: :meth:`TaskQueue.quiesce`
cancels exactly those before the DMA map changes, the device resets or the client goes.
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "STEP_TIME",
    "Clock",
    "Task",
    "TaskQueue",
    "TaskState",
    "TaskStats",
    "Timer",
    "TimerHeap",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# The time a step is given. A request that arrives while a step runs waits for the rest of
# it, so this bounds the delay a task adds to an MMIO reply. The loop's own cost between
# steps is a few microseconds: measured, a task got the same work per CPU-second with 0.1,
# 0.25, 0.5 and 1 ms steps, while the median request delay follows the step (0.3 ms at
# 0.25 ms, 0.6 ms at 0.5 ms). bench/bench_request_delay.py; docs/architecture.md.
STEP_TIME = 0.00025
# A step that returns later than this past its deadline is logged once per task name: it
# delayed every request waiting behind it by as much.
LATE_STEP = 0.001


class TaskState(enum.Enum):
    NEW = "new"
    READY = "ready"
    SUSPENDED = "suspended"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"  # its step raised


_FINISHED = (TaskState.DONE, TaskState.CANCELLED, TaskState.FAILED)


class Task:
    """One piece of device work, run in steps. Pass ``step`` or override :meth:`step`.

    ``uses_guest_memory`` says whether the task reaches guest memory (views, host frames,
    message DMA results); such tasks are cancelled by a quiesce, the others survive it.
    """

    def __init__(
        self,
        step: Callable[[float], bool] | None = None,
        *,
        uses_guest_memory: bool,
        name: str = "",
    ) -> None:
        self._step_fn = step
        self.uses_guest_memory = uses_guest_memory
        self.name = name or type(self).__name__
        self.state = TaskState.NEW
        self.steps = 0
        self._queue: TaskQueue | None = None

    def __repr__(self) -> str:
        return f"<Task {self.name} {self.state.value} steps={self.steps}>"

    def step(self, deadline: float) -> bool:
        """Work until ``deadline`` (the queue's clock) at most; True while work remains."""
        if self._step_fn is None:
            raise NotImplementedError(f"{type(self).__name__} has no step")
        return self._step_fn(deadline)

    def on_cancel(self) -> None:
        """Called once when the task is cancelled (quiesce, reset or :meth:`cancel`), when it
        is already out of the queue: the place to release what it holds or to note what was
        lost. It never runs another step."""

    def cancel(self) -> bool:
        return self._queue.cancel(self) if self._queue is not None else False

    @property
    def finished(self) -> bool:
        return self.state in _FINISHED


class _CallTask(Task):
    """A function run once as a task (:meth:`TaskQueue.call_soon`)."""

    def __init__(self, fn: Callable[[], None], *, uses_guest_memory: bool, name: str) -> None:
        super().__init__(uses_guest_memory=uses_guest_memory, name=name or getattr(fn, "__name__", "call"))
        self._fn = fn

    def step(self, deadline: float) -> bool:
        self._fn()
        return False


class Timer:
    """A function to run at a time; :meth:`cancel` before it fires and it never runs."""

    __slots__ = ("cancelled", "fired", "fn", "uses_guest_memory", "when")

    def __init__(self, when: float, fn: Callable[[], None], uses_guest_memory: bool) -> None:
        self.when = when
        self.fn = fn
        self.uses_guest_memory = uses_guest_memory
        self.cancelled = False
        self.fired = False

    def cancel(self) -> bool:
        """True if this stopped it from running."""
        if self.cancelled or self.fired:
            return False
        self.cancelled = True
        return True


class TimerHeap:
    """Timers ordered by time. Cancelled timers leave the heap lazily (when they reach its
    head, or at :meth:`cancel_where`), so a cancel costs O(1)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        # (when, sequence, timer); read-only outside this class. The loop tests it for
        # emptiness on every turn, which a plain list answers without a call.
        self.heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(1 for _, _, t in self.heap if not t.cancelled)

    def call_at(self, when: float, fn: Callable[[], None], *, uses_guest_memory: bool) -> Timer:
        timer = Timer(when, fn, uses_guest_memory)
        heapq.heappush(self.heap, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, fn: Callable[[], None], *, uses_guest_memory: bool) -> Timer:
        return self.call_at(self.clock() + max(0.0, delay), fn, uses_guest_memory=uses_guest_memory)

    def next_due(self) -> float | None:
        heap = self.heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, now: float | None = None) -> int:
        """Run every timer due at ``now``, earliest first (ties in the order they were set).
        A timer that raises has been taken off first; the rest run at the next call."""
        if now is None:
            now = self.clock()
        heap = self.heap
        ran = 0
        while heap and heap[0][0] <= now:
            timer = heapq.heappop(heap)[2]
            if timer.cancelled:
                continue
            timer.fired = True
            ran += 1
            timer.fn()
        return ran

    def cancel_where(self, uses_guest_memory: bool | None = None) -> int:
        """Cancel every pending timer (or only those whose flag matches); returns how many."""
        n = 0
        keep = []
        for entry in self.heap:
            timer = entry[2]
            if timer.cancelled:
                continue
            if uses_guest_memory is None or timer.uses_guest_memory == uses_guest_memory:
                timer.cancel()
                n += 1
            else:
                keep.append(entry)
        heapq.heapify(keep)
        self.heap = keep
        return n


@dataclass
class TaskStats:
    spawned: int = 0
    steps: int = 0
    cancelled: int = 0
    failed: int = 0
    longest_step: float = 0.0  # seconds, from the step's start to its return
    late_steps: int = 0  # returned more than LATE_STEP past the deadline


_T = TypeVar("_T", bound=Task)


class TaskQueue:
    """The device's work: ready tasks in round-robin order, suspended tasks, and timers."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.timers = TimerHeap(clock)
        self.stats = TaskStats()
        self.current: Task | None = None  # the task whose step is running
        self._ready: collections.deque[Task] = collections.deque()  # only READY tasks
        self._live: set[Task] = set()  # READY or SUSPENDED
        self._late_reported: set[str] = set()

    def __len__(self) -> int:
        return len(self._live)

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self._live)

    # --- for devices -----------------------------------------------------------------------

    def spawn(self, task: _T) -> _T:
        if task.state is not TaskState.NEW:
            raise ValueError(f"{task!r} was spawned before")
        task._queue = self
        task.state = TaskState.READY
        self._live.add(task)
        self._ready.append(task)
        self.stats.spawned += 1
        return task

    def call_soon(self, fn: Callable[[], None], *, uses_guest_memory: bool, name: str = "") -> Task:
        """Run ``fn`` once, as a task of its own (after the messages already waiting)."""
        return self.spawn(_CallTask(fn, uses_guest_memory=uses_guest_memory, name=name))

    def call_at(self, when: float, fn: Callable[[], None], *, uses_guest_memory: bool) -> Timer:
        """Run ``fn`` from the loop at ``when`` (the queue's clock), between steps. Keep it
        short: resume or spawn a task for anything long."""
        return self.timers.call_at(when, fn, uses_guest_memory=uses_guest_memory)

    def call_later(self, delay: float, fn: Callable[[], None], *, uses_guest_memory: bool) -> Timer:
        return self.timers.call_later(delay, fn, uses_guest_memory=uses_guest_memory)

    def suspend(self, task: Task) -> None:
        """Take a task off the ready queue until :meth:`resume` (a timer, a DMA reply)."""
        if task.state is not TaskState.READY:
            return
        task.state = TaskState.SUSPENDED
        if task is not self.current:
            self._ready.remove(task)

    def resume(self, task: Task) -> None:
        if task.state is not TaskState.SUSPENDED:
            return
        task.state = TaskState.READY
        if task is not self.current:  # a running task is re-queued when its step returns
            self._ready.append(task)

    def cancel(self, task: Task) -> bool:
        """Cancel one task; True if it was still live. Its on_cancel runs now."""
        if not self._drop(task):
            return False
        task.on_cancel()
        return True

    def quiesce(self) -> int:
        """Cancel every task and timer that uses guest memory; returns how many."""
        return self._cancel_matching(True)

    def cancel_all(self) -> int:
        """Cancel every task and timer (a reset)."""
        return self._cancel_matching(None)

    # --- for the loop ----------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(self._ready)

    def run_step(self, step_time: float = STEP_TIME) -> Task | None:
        """Run one step of the task at the head of the ready queue; it goes to the back if it
        has more to do. Returns the task, or None if none was ready. A step that raises fails
        its task (taken out of the queue) and the exception propagates."""
        if not self._ready:
            return None
        task = self._ready.popleft()
        clock = self.clock
        start = clock()
        deadline = start + step_time
        self.current = task
        try:
            more = task.step(deadline)
        except BaseException:
            if not task.finished:
                task.state = TaskState.FAILED
                self._live.discard(task)
                self.stats.failed += 1
            raise
        finally:
            self.current = None
            end = clock()
            task.steps += 1
            self._account(task, start, end, deadline)
        if task.state is TaskState.READY and more:
            self._ready.append(task)
        elif not more and task.state in (TaskState.READY, TaskState.SUSPENDED):
            task.state = TaskState.DONE
            self._live.discard(task)
        return task

    def run_until_idle(self, max_steps: int = 1_000_000, step_time: float = STEP_TIME) -> int:
        """Run steps (and due timers) until nothing is ready; for device code without a loop
        (unit tests, tools). Returns the number of steps run."""
        n = 0
        while n < max_steps:
            self.timers.run_due()
            if self.run_step(step_time) is None:
                return n
            n += 1
        raise RuntimeError(f"tasks still ready after {max_steps} steps")

    # --- internals -------------------------------------------------------------------------

    def _drop(self, task: Task) -> bool:
        if task.finished or task.state is TaskState.NEW or task._queue is not self:
            return False
        if task.state is TaskState.READY and task is not self.current:
            self._ready.remove(task)
        task.state = TaskState.CANCELLED
        self._live.discard(task)
        self.stats.cancelled += 1
        return True

    def _cancel_matching(self, uses_guest_memory: bool | None) -> int:
        victims = [t for t in self._live if uses_guest_memory is None or t.uses_guest_memory == uses_guest_memory]
        for task in victims:
            task.state = TaskState.CANCELLED
            self._live.discard(task)
        self._ready = collections.deque(t for t in self._ready if t.state is TaskState.READY)
        self.stats.cancelled += len(victims)
        n = len(victims) + self.timers.cancel_where(uses_guest_memory)
        # Every task is out of the queue before any hook runs, so a hook that raises leaves
        # nothing half cancelled; the first error is raised once every hook has run.
        error: BaseException | None = None
        for task in victims:
            try:
                task.on_cancel()
            except Exception as exc:  # noqa: BLE001 - every hook runs; the first error is raised below
                error = error or exc
        if error is not None:
            raise error
        return n

    def _account(self, task: Task, start: float, end: float, deadline: float) -> None:
        stats = self.stats
        stats.steps += 1
        took = end - start
        stats.longest_step = max(stats.longest_step, took)
        if end - deadline > LATE_STEP:
            stats.late_steps += 1
            if task.name not in self._late_reported:
                self._late_reported.add(task.name)
                log.warning(
                    "task %s returned %.1f ms after its step deadline (reported once per task)",
                    task.name,
                    (end - deadline) * 1e3,
                )
