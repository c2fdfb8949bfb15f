"""Named trace events, as QEMU's ``-trace`` and GVT-g's tracepoints: what the device did, by
event name, for a driver developer.

Each event is declared once at import (:func:`event`) with a name, a format and a line of
help; ``devmodel serve --trace PATTERN[,PATTERN]`` turns on the events whose names match a
glob, ``devmodel trace --list`` prints them all. A call site tests the event's ``on``
attribute before it builds anything, so an event that is off costs one attribute test; the
MMIO events cost nothing at all while off (BAR0 looks at them once, when it is built).

Lines go to the ``devmodel.trace`` logger, one format per event, so the log's bound
(:mod:`devmodel.logbound`) holds them per event: a guest that writes a register a million
times a second cannot fill the disk with its trace either.
"""

from __future__ import annotations

import fnmatch
import logging
import sys
from collections.abc import Iterable

from .logbound import LogBound

__all__ = ["DEFAULT_TRACE_BURST", "EVENTS", "TraceEvent", "configure", "enable", "enabled", "event", "logger"]

DEFAULT_TRACE_BURST = 10000  # lines of one event per log interval

logger = logging.getLogger("devmodel.trace")


class TraceEvent:
    __slots__ = ("doc", "fmt", "name", "on")

    def __init__(self, name: str, fmt: str, doc: str) -> None:
        self.name = name
        self.fmt = f"{name} {fmt}"
        self.doc = doc
        self.on = False

    def __call__(self, *args: object) -> None:
        """Emit the event (the caller has checked ``on``)."""
        logger.info(self.fmt, *args)

    def __repr__(self) -> str:
        return f"TraceEvent({self.name!r}, on={self.on})"


EVENTS: dict[str, TraceEvent] = {}


def event(name: str, fmt: str, doc: str) -> TraceEvent:
    """Declare an event (at import). Declaring a name twice returns the first declaration if
    it says the same, and refuses otherwise: one declaration per event."""
    found = EVENTS.get(name)
    if found is not None:
        if (found.fmt, found.doc) != (f"{name} {fmt}", doc):
            raise ValueError(f"trace event {name!r} declared twice")
        return found
    ev = EVENTS[name] = TraceEvent(name, fmt, doc)
    return ev


def enable(patterns: Iterable[str]) -> list[str]:
    """Turn on the events matching any glob (and off all others); the names turned on. A
    pattern that matches no event is refused, as a misspelt one would trace nothing."""
    patterns = [p.strip() for p in patterns if p.strip()]
    for pattern in patterns:
        if not fnmatch.filter(EVENTS, pattern):
            raise ValueError(f"no trace event matches {pattern!r} (devmodel trace --list)")
    names = []
    for name, ev in EVENTS.items():
        ev.on = any(fnmatch.fnmatchcase(name, p) for p in patterns)
        if ev.on:
            names.append(name)
    return names


def enabled(pattern: str) -> bool:
    """Whether any event matching ``pattern`` is on."""
    return any(ev.on for name, ev in EVENTS.items() if fnmatch.fnmatchcase(name, pattern))


def configure(
    patterns: Iterable[str],
    path: str | None = None,
    burst: int = DEFAULT_TRACE_BURST,
    interval: float = 60.0,
) -> list[str]:
    """Turn on the events matching ``patterns`` and send their lines to ``path`` (standard
    error without one), at most ``burst`` lines of each event per ``interval`` seconds; the
    names turned on."""
    names = enable(patterns)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(created).6f %(message)s"))
    handler.addFilter(LogBound(burst, interval))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the trace has its own output and bound
    return names
