"""A bound on log volume that a client or a guest can cause.

A hostile client can send a million malformed messages and a hostile guest can provoke the
same device warning a million times; each is worth knowing about, but a million lines are a
denial of service on the host's disk and journal. :class:`LogBound` is a logging filter that
lets the first ``burst`` records of each call site (logger, level, format string: not the
arguments, which differ per message) through in every ``interval`` seconds (a site may set its
own burst with ``extra={"log_burst": N}``), drops the rest,
and when the site speaks again after a quiet interval says how many it dropped. Memory is
bounded too: at most ``max_sites`` call sites are tracked, the least recently heard of is
forgotten first.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LogBound", "OncePerReason", "install"]

Site = tuple[str, int, str]


@dataclass
class _Window:
    start: float
    passed: int = 0
    dropped: int = 0


class LogBound(logging.Filter):
    def __init__(
        self,
        burst: int = 20,
        interval: float = 60.0,
        max_sites: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.max_sites = max_sites
        self.clock = clock
        self._sites: OrderedDict[Site, _Window] = OrderedDict()
        self.dropped_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        site: Site = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        window = self._sites.get(site)
        if window is None:
            window = self._sites[site] = _Window(now)
            if len(self._sites) > self.max_sites:
                self._sites.popitem(last=False)
        else:
            self._sites.move_to_end(site)
            if now - window.start >= self.interval:
                if window.dropped:
                    # Said with the first record of the new window, so the count is not lost.
                    record.msg = (
                        f"{record.msg} [{window.dropped} more like this dropped in the last {now - window.start:.0f} s]"
                    )
                window.start, window.passed, window.dropped = now, 0, 0
        # A call site that bounds itself (a message once per register, say) may say how many
        # of its lines an interval holds: ``extra={"log_burst": N}``.
        burst = getattr(record, "log_burst", self.burst)
        if window.passed < burst:
            window.passed += 1
            if window.passed == burst:
                record.msg = f"{record.msg} [further ones dropped for up to {self.interval:.0f} s]"
            return True
        window.dropped += 1
        self.dropped_total += 1
        return False


def install(handler: logging.Handler, burst: int = 20, interval: float = 60.0) -> LogBound:
    """Put a bound on ``handler`` (the process's log output)."""
    bound = LogBound(burst, interval)
    handler.addFilter(bound)
    return bound


class OncePerReason:
    """Warn once per reason, for what a guest or a client can repeat at MMIO speed (a refused
    submission, an ignored access): the first time says what happened and that the rest goes
    unsaid; :class:`LogBound` bounds what passes anyway.

    A reason is a fixed category chosen by the caller ("context hung"), never text that holds
    guest data (an offset, a header): what differs per event goes in the message's arguments.
    Repeats are counted per reason. At most ``max_reasons`` reasons are kept, so a caller that
    got this wrong still holds a bounded set: past it, new reasons are counted as ``other``.
    """

    def __init__(self, logger: logging.Logger, max_reasons: int = 64) -> None:
        self.logger = logger
        self.max_reasons = max_reasons
        self.counts: dict[str, int] = {}  # reason -> times warned of (the first one logged)
        self.other = 0  # events of reasons past max_reasons, neither kept nor logged

    @property
    def seen(self) -> set[str]:
        return set(self.counts)

    def warn(self, reason: str, message: str, *args: object) -> bool:
        """Log ``message % args`` if ``reason`` is new; whether it was logged."""
        counts = self.counts
        n = counts.get(reason)
        if n is not None:
            counts[reason] = n + 1
            return False
        if len(counts) >= self.max_reasons:
            self.other += 1
            return False
        counts[reason] = 1
        self.logger.warning(message + "; further ones not logged", *args)
        return True
