"""The event loop's order of work: watched fds first, then due timers, then one step; the
select timeout from the nearest timer; bugs in steps and timers contained (or raised in
strict mode); no re-entry."""

from __future__ import annotations

import selectors
import socket
from collections.abc import Iterator

import pytest

from devmodel.device.tasks import Task, TaskQueue, TaskState
from devmodel.errors import DmaFault
from devmodel.transport.loop import EventLoop


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_a_ready_fd_is_served_before_each_step(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    tasks = TaskQueue()
    loop = EventLoop(tasks)
    order: list[str] = []
    loop.watch(a, selectors.EVENT_READ, lambda mask: order.append(f"msg {a.recv(16).decode()}"))

    def forever(deadline: float) -> bool:
        order.append("step")
        return True

    tasks.spawn(Task(forever, uses_guest_memory=False))
    loop.run_once(None)  # a ready task: the select does not wait
    b.send(b"1")
    loop.run_once(None)
    loop.run_once(None)
    b.send(b"2")
    loop.run_once(None)
    assert order == ["step", "msg 1", "step", "step", "msg 2", "step"]
    loop.close()


def test_the_select_wakes_for_the_nearest_timer() -> None:
    tasks = TaskQueue()
    loop = EventLoop(tasks)
    fired: list[str] = []
    tasks.call_later(0.02, lambda: fired.append("device"), uses_guest_memory=False)
    loop.timers.call_later(0.01, lambda: fired.append("transport"), uses_guest_memory=False)
    while len(fired) < 2:
        loop.run_once(None)  # with no fds, only the timers can end these waits
    assert fired == ["transport", "device"]
    loop.close()


@pytest.mark.parametrize("error", [RuntimeError("a bug"), DmaFault("a fault")])
def test_a_failing_step_or_timer_does_not_end_the_loop(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskQueue()
    loop = EventLoop(tasks)

    def bad(deadline: float) -> bool:
        raise error

    def bad_timer() -> None:
        raise error

    t = tasks.spawn(Task(bad, uses_guest_memory=False))
    tasks.call_later(0, bad_timer, uses_guest_memory=False)
    good = tasks.spawn(Task(lambda d: False, uses_guest_memory=False))
    for _ in range(3):
        loop.run_once(0)
    assert t.state is TaskState.FAILED and good.state is TaskState.DONE
    assert sum(str(error) in r.getMessage() or r.exc_info is not None for r in caplog.records) == 2
    loop.close()


def test_strict_mode_raises_bugs() -> None:
    tasks = TaskQueue()
    loop = EventLoop(tasks, strict=True)
    tasks.spawn(Task(lambda d: 1 / 0 > 0, uses_guest_memory=False))
    with pytest.raises(ZeroDivisionError):
        loop.run_once(0)
    loop.close()


def test_no_reentry(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    loop = EventLoop(TaskQueue())
    seen: list[BaseException] = []

    def reenter(mask: int) -> None:
        a.recv(16)
        try:
            loop.run_once(0)
        except RuntimeError as exc:
            seen.append(exc)

    loop.watch(a, selectors.EVENT_READ, reenter)
    b.send(b"x")
    loop.run_once(0)
    assert len(seen) == 1 and "inside itself" in str(seen[0])
    loop.close()
