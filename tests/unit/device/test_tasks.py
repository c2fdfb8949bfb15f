"""The device's work queue: time-bounded steps, round-robin fairness, suspend/resume, timers,
cancellation, and quiesce cancelling exactly what uses guest memory. A clock the test moves
stands in for time, so nothing here depends on the machine's speed."""

from __future__ import annotations

import pytest

from devmodel.device.device import ResetKind
from devmodel.device.tasks import LATE_STEP, STEP_TIME, Task, TaskQueue, TaskState, TimerHeap
from gen_vgpu import GenVgpu


def state(task: Task) -> TaskState:
    """A task's state read anew (mypy would keep an earlier assertion's narrowing)."""
    return task.state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Worker(Task):
    """Does ``units`` units of work, each taking ``unit`` seconds of the test clock, and
    stops at its step's deadline like a real task."""

    def __init__(
        self,
        clock: Clock,
        units: int,
        unit: float = 0.0001,
        uses_guest_memory: bool = True,
        log: list[str] | None = None,
        name: str = "",
    ) -> None:
        super().__init__(uses_guest_memory=uses_guest_memory, name=name)
        self.clock = clock
        self.left = units
        self.unit = unit
        self.deadlines: list[float] = []
        self.log = log if log is not None else []
        self.cancelled_calls = 0

    def step(self, deadline: float) -> bool:
        self.deadlines.append(deadline)
        self.log.append(self.name)
        while self.left and self.clock.now < deadline:
            self.clock.now += self.unit
            self.left -= 1
        return self.left > 0

    def on_cancel(self) -> None:
        self.cancelled_calls += 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def q(clock: Clock) -> TaskQueue:
    return TaskQueue(clock)


def test_a_step_is_bounded_by_its_deadline_not_a_count(clock: Clock, q: TaskQueue) -> None:
    w = q.spawn(Worker(clock, units=100, unit=0.0001))
    start = clock.now
    q.run_step(0.0005)
    assert w.deadlines == [start + 0.0005]
    assert w.left == 95  # five units fit in the step's time
    assert q.has_ready() and w.state is TaskState.READY
    assert q.run_until_idle(step_time=0.0005) == 19
    assert state(w) is TaskState.DONE and w.steps == 20 and len(q) == 0


def test_round_robin_between_tasks(clock: Clock, q: TaskQueue) -> None:
    log: list[str] = []
    q.spawn(Worker(clock, 3, unit=STEP_TIME, log=log, name="a"))
    q.spawn(Worker(clock, 1, unit=STEP_TIME, log=log, name="b"))
    q.spawn(Worker(clock, 2, unit=STEP_TIME, log=log, name="c"))
    q.run_until_idle()
    assert log == ["a", "b", "c", "a", "c", "a"]


def test_spawned_during_a_step_runs_after_the_others(clock: Clock, q: TaskQueue) -> None:
    order: list[str] = []

    def first(deadline: float) -> bool:
        order.append("first")
        q.call_soon(lambda: order.append("child"), uses_guest_memory=False)
        return False

    def second(deadline: float) -> bool:
        order.append("second")
        return False

    q.spawn(Task(first, uses_guest_memory=False))
    q.spawn(Task(second, uses_guest_memory=False))
    q.run_until_idle()
    assert order == ["first", "second", "child"]


def test_cancel_before_and_during_a_step(clock: Clock, q: TaskQueue) -> None:
    a = q.spawn(Worker(clock, 10))
    b = q.spawn(Worker(clock, 10))
    assert a.cancel() and a.state is TaskState.CANCELLED and a.cancelled_calls == 1
    assert not a.cancel() and a.cancelled_calls == 1  # once
    assert a.steps == 0

    def suicide(deadline: float) -> bool:
        assert q.current is c
        c.cancel()
        return True  # would have more, but is cancelled

    c = q.spawn(Task(suicide, uses_guest_memory=False))
    q.run_until_idle()
    assert c.state is TaskState.CANCELLED and c.steps == 1
    assert b.state is TaskState.DONE and a.steps == 0


def test_suspend_and_resume(clock: Clock, q: TaskQueue) -> None:
    w = q.spawn(Worker(clock, 10, unit=STEP_TIME))
    q.suspend(w)
    assert not q.has_ready() and q.run_until_idle() == 0 and w.left == 10
    q.resume(w)
    q.resume(w)  # twice is once
    q.run_step()
    assert w.left == 9

    def waits(deadline: float) -> bool:
        if not timer_set:
            timer_set.append(q.call_later(1.0, lambda: q.resume(t), uses_guest_memory=False))
            q.suspend(t)  # from inside its own step
            return True
        return False

    timer_set: list[object] = []
    t = q.spawn(Task(waits, uses_guest_memory=False))
    q.cancel(w)
    q.run_until_idle()
    assert t.state is TaskState.SUSPENDED and t.steps == 1
    clock.now += 1.0
    q.run_until_idle()
    assert state(t) is TaskState.DONE and t.steps == 2


def test_timers_run_in_time_order_and_can_be_cancelled(clock: Clock) -> None:
    heap = TimerHeap(clock)
    fired: list[str] = []
    heap.call_later(0.3, lambda: fired.append("c"), uses_guest_memory=False)
    a = heap.call_later(0.1, lambda: fired.append("a"), uses_guest_memory=False)
    heap.call_later(0.1, lambda: fired.append("a2"), uses_guest_memory=False)  # ties keep their order
    b = heap.call_later(0.2, lambda: fired.append("b"), uses_guest_memory=False)
    assert heap.next_due() == pytest.approx(clock.now + 0.1)
    assert b.cancel() and not b.cancel()
    assert heap.run_due() == 0
    clock.now += 0.25
    assert heap.run_due() == 2 and fired == ["a", "a2"]
    assert not a.cancel()  # already fired
    assert heap.next_due() == pytest.approx(clock.now + 0.05) and len(heap) == 1
    clock.now += 1
    heap.run_due()
    assert fired == ["a", "a2", "c"] and heap.next_due() is None


def test_a_timer_that_raises_leaves_the_rest_for_the_next_call(clock: Clock) -> None:
    heap = TimerHeap(clock)
    fired: list[int] = []

    def boom() -> None:
        raise RuntimeError("timer bug")

    heap.call_later(0.1, boom, uses_guest_memory=False)
    heap.call_later(0.2, lambda: fired.append(1), uses_guest_memory=False)
    clock.now += 1
    with pytest.raises(RuntimeError):
        heap.run_due()
    assert heap.run_due() == 1 and fired == [1]


def test_a_step_that_raises_fails_only_its_task(clock: Clock, q: TaskQueue) -> None:
    def bad(deadline: float) -> bool:
        raise ValueError("step bug")

    t = q.spawn(Task(bad, uses_guest_memory=True))
    w = q.spawn(Worker(clock, 3))
    with pytest.raises(ValueError):
        q.run_step()
    assert t.state is TaskState.FAILED and q.stats.failed == 1 and t not in q.tasks
    q.run_until_idle()
    assert w.state is TaskState.DONE


def test_quiesce_cancels_exactly_what_uses_guest_memory(clock: Clock, q: TaskQueue) -> None:
    mem = q.spawn(Worker(clock, 10, uses_guest_memory=True))
    pure = q.spawn(Worker(clock, 10, uses_guest_memory=False))
    asleep = q.spawn(Worker(clock, 10, uses_guest_memory=True))
    q.suspend(asleep)
    fired: list[str] = []
    q.call_later(0.1, lambda: fired.append("completion"), uses_guest_memory=True)
    q.call_later(0.1, lambda: fired.append("watchdog"), uses_guest_memory=False)
    assert q.quiesce() == 3
    assert mem.state is TaskState.CANCELLED and asleep.state is TaskState.CANCELLED
    assert mem.cancelled_calls == asleep.cancelled_calls == 1 and mem.steps == 0
    clock.now += 1
    q.run_until_idle()
    assert pure.state is TaskState.DONE and fired == ["watchdog"]


def test_cancel_all_and_failing_hooks(clock: Clock, q: TaskQueue) -> None:
    class BadHook(Worker):
        def on_cancel(self) -> None:
            super().on_cancel()
            raise RuntimeError("hook bug")

    a = q.spawn(BadHook(clock, 5, uses_guest_memory=False))
    b = q.spawn(Worker(clock, 5, uses_guest_memory=False))
    q.call_later(0.1, lambda: None, uses_guest_memory=False)
    with pytest.raises(RuntimeError, match="hook bug"):
        q.cancel_all()
    # every task is out and every hook ran, though one raised
    assert a.cancelled_calls == b.cancelled_calls == 1
    assert len(q) == 0 and not q.has_ready() and q.timers.next_due() is None


def test_late_steps_are_counted(clock: Clock, q: TaskQueue) -> None:
    q.spawn(Worker(clock, 1, unit=STEP_TIME + 2 * LATE_STEP))  # one unit overruns the step
    q.run_until_idle()
    assert q.stats.late_steps == 1 and q.stats.longest_step == pytest.approx(STEP_TIME + 2 * LATE_STEP)


def test_spawning_twice_is_refused(clock: Clock, q: TaskQueue) -> None:
    w = q.spawn(Worker(clock, 1))
    with pytest.raises(ValueError):
        q.spawn(w)


def test_device_quiesce_and_reset() -> None:
    dev = GenVgpu()
    clock = Clock()
    dev.tasks = TaskQueue(clock)
    mem = dev.tasks.spawn(Worker(clock, 10, uses_guest_memory=True))
    pure = dev.tasks.spawn(Worker(clock, 10, uses_guest_memory=False))
    dev.quiesce()
    assert mem.state is TaskState.CANCELLED and pure.state is TaskState.READY
    dev.reset(ResetKind.DEVICE)
    assert state(pure) is TaskState.CANCELLED and len(dev.tasks) == 0
