"""The event loop: watched fds first, then due timers, then one step of device work.

One thread runs everything, so client commands are handled strictly in arrival order and no
handler ever runs inside a task's step (or the reverse). Each turn of :meth:`EventLoop.run_once`
is::

    select(timeout)        0 when a task is ready, else up to the nearest timer
    callbacks              the client's messages, inspection clients, signals
    due timers             the transport's own (reply timeouts, inspection limits), the device's
    one step               of the task at the head of the device's round-robin queue

so a request that arrives while a step runs is read by the next turn's select: it waits for
the rest of that step and no more. A bug in a timer or a step is logged and the loop goes on
(``strict`` re-raises it, for the tests); a bug in a callback is the callback's to contain.

The loop drives ``select.epoll`` itself rather than through ``selectors``: the selector's key
objects, its mask translation and its timeout rounding cost about a microsecond a turn, a
tenth of a whole REGION_READ round trip (docs/performance.md). Callbacks still receive the
``selectors`` masks (EVENT_READ / EVENT_WRITE). ``waiter``, when the server sets one, may do
the wait instead of ``epoll.poll`` (the compiled accelerator's, which serves the client's
messages itself while it waits); it is asked only when no task is ready, with the same
timeout, and returns the ready events as ``epoll.poll`` would.
"""

from __future__ import annotations

import logging
import select
import selectors
from collections.abc import Callable
from typing import Protocol

from ..device.tasks import STEP_TIME, TaskQueue, TimerHeap
from ..errors import DevModelError

__all__ = ["EventLoop", "FdCallback", "FileObject"]

log = logging.getLogger(__name__)

# Called with the selector's event mask (EVENT_READ / EVENT_WRITE) that is ready.
FdCallback = Callable[[int], None]
# A wait in place of epoll.poll (the compiled accelerator's): given the timeout, the ready
# (fd, epoll events) pairs, or None to let epoll.poll wait instead.
Waiter = Callable[[float | None], "list[tuple[int, int]] | None"]


class HasFileno(Protocol):
    def fileno(self) -> int: ...


FileObject = int | HasFileno

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


def _epoll_events(events: int) -> int:
    return (_EPOLLIN if events & _READ else 0) | (_EPOLLOUT if events & _WRITE else 0)


def _fileno(fileobj: FileObject) -> int:
    return fileobj if isinstance(fileobj, int) else fileobj.fileno()


class EventLoop:
    def __init__(self, tasks: TaskQueue, strict: bool = False, step_time: float = STEP_TIME) -> None:
        self.tasks = tasks
        # The transport's own timers: a device reset cancels the device's, not these.
        self.timers = TimerHeap(tasks.clock)
        self.strict = strict
        self.step_time = step_time
        self._epoll = select.epoll()
        # fd -> (the watched object, its callback); the object lets unwatch find a socket
        # that was closed (fileno -1) before it was unwatched.
        self._watched: dict[int, tuple[FileObject, FdCallback]] = {}
        self._running = False
        self.waiter: Waiter | None = None

    @property
    def epoll_fd(self) -> int:
        return self._epoll.fileno()

    # --- fds ---------------------------------------------------------------------------------

    def watch(self, fileobj: FileObject, events: int, callback: FdCallback) -> None:
        fd = _fileno(fileobj)
        if fd in self._watched:
            raise KeyError(f"fd {fd} is already watched")
        self._epoll.register(fd, _epoll_events(events))
        self._watched[fd] = (fileobj, callback)

    def modify(self, fileobj: FileObject, events: int, callback: FdCallback) -> None:
        fd = _fileno(fileobj)
        if fd not in self._watched:
            raise KeyError(f"fd {fd} is not watched")
        self._epoll.modify(fd, _epoll_events(events))
        self._watched[fd] = (fileobj, callback)

    def unwatch(self, fileobj: FileObject) -> None:
        fd = _fileno(fileobj)
        if fd < 0:
            fd = next((k for k, (obj, _) in self._watched.items() if obj is fileobj), -1)
        if self._watched.pop(fd, None) is None:
            raise KeyError(f"{fileobj!r} is not watched")
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # closed already: the kernel dropped it from the set with its last reference

    # --- running -----------------------------------------------------------------------------

    def run_once(self, timeout: float | None = 0.0) -> None:
        """One turn. ``timeout`` caps the wait when nothing is ready (None: until an fd or a
        timer wants the loop)."""
        if self._running:
            raise RuntimeError("the event loop was entered again from inside itself")
        self._running = True
        try:
            tasks = self.tasks
            if tasks.has_ready():
                timeout = 0.0
            elif self.timers.heap or tasks.timers.heap:
                due = _earliest(self.timers.next_due(), tasks.timers.next_due())
                if due is not None:
                    wait = max(0.0, due - tasks.clock())
                    timeout = wait if timeout is None else min(timeout, wait)
            # epoll.poll rounds a timeout up to its millisecond, so a timer is never polled
            # for before it is due; a negative one would mean "forever".
            ready = None
            if self.waiter is not None and timeout != 0.0:
                ready = self.waiter(timeout)
            if ready is None:
                ready = self._epoll.poll(-1 if timeout is None else max(timeout, 0.0))
            watched = self._watched
            for fd, ev in ready:
                entry = watched.get(fd)  # a callback earlier in this turn may have unwatched it
                if entry is not None:
                    if ev == _EPOLLIN:
                        entry[1](_READ)
                    else:  # as selectors reports them: errors and hang-ups wake both sides
                        entry[1]((_WRITE if ev & ~_EPOLLIN else 0) | (_READ if ev & ~_EPOLLOUT else 0))
            if self.timers.heap:
                self._contain("a transport timer", self.timers.run_due)
            if tasks.timers.heap:
                self._contain("a device timer", tasks.timers.run_due)
            if tasks.has_ready():
                self._contain("a device task", self._step)
        finally:
            self._running = False

    def next_due(self) -> float | None:
        """When the nearest timer (the transport's or the device's) is due, or None."""
        return _earliest(self.timers.next_due(), self.tasks.timers.next_due())

    def _step(self) -> None:
        self.tasks.run_step(self.step_time)

    def _contain(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except DevModelError as exc:
            log.warning("%s failed: %s", what, exc)
        except Exception:
            if self.strict:
                raise
            log.exception("bug: %s raised", what)

    def close(self) -> None:
        self._epoll.close()


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
