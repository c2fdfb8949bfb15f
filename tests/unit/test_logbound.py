"""The log bound: any number of identical warnings make a bounded log, and nothing is silently lost."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from devmodel.logbound import LogBound, OncePerReason, install


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> Iterator[tuple[logging.Logger, io.StringIO, LogBound, Clock]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    clock = Clock()
    bound = LogBound(burst=5, interval=60.0, max_sites=8, clock=clock)
    handler.addFilter(bound)
    log = logging.getLogger(f"test.logbound.{id(out)}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield log, out, bound, clock
    log.removeHandler(handler)


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_many_identical_warnings_make_a_bounded_log(setup: tuple[logging.Logger, io.StringIO, LogBound, Clock]) -> None:
    log, out, bound, _ = setup
    for i in range(200_000):
        log.warning("command %s (id %d) failed", "REGION_READ", i)
    got = lines(out)
    assert len(got) == 5
    assert got[0] == "WARNING command REGION_READ (id 0) failed"
    assert "further ones dropped" in got[-1]
    assert bound.dropped_total == 200_000 - 5


def test_the_dropped_count_is_reported_when_the_site_speaks_again(
    setup: tuple[logging.Logger, io.StringIO, LogBound, Clock],
) -> None:
    log, out, _, clock = setup
    for i in range(105):
        log.warning("guest did %d", i)
    clock.now += 61
    log.warning("guest did %d", 999)
    got = lines(out)
    assert len(got) == 6
    assert got[-1].startswith("WARNING guest did 999 [100 more like this dropped")


def test_sites_are_bounded_separately(setup: tuple[logging.Logger, io.StringIO, LogBound, Clock]) -> None:
    log, out, _, _ = setup
    for i in range(100):
        log.warning("first kind %d", i)
        log.warning("second kind %d", i)
        log.info("first kind %d", i)  # another level is another site
    got = lines(out)
    assert sum(line.startswith("WARNING first") for line in got) == 5
    assert sum(line.startswith("WARNING second") for line in got) == 5
    assert sum(line.startswith("INFO first") for line in got) == 5


def test_tracked_sites_are_bounded_and_critical_always_passes(
    setup: tuple[logging.Logger, io.StringIO, LogBound, Clock],
) -> None:
    log, out, bound, _ = setup
    for i in range(1000):
        log.warning(f"distinct message {i}")  # a format string per message: a site each
    assert len(bound._sites) == 8
    for _ in range(50):
        log.critical("fatal")
    assert sum(line == "CRITICAL fatal" for line in lines(out)) == 50


def test_install_puts_the_bound_on_a_handler() -> None:
    handler = logging.StreamHandler(io.StringIO())
    bound = install(handler, burst=3, interval=10.0)
    assert bound in handler.filters and bound.burst == 3 and bound.interval == 10.0


def test_a_site_may_set_its_own_burst(setup: tuple[logging.Logger, io.StringIO, LogBound, Clock]) -> None:
    log, out, _, _ = setup
    for i in range(100):
        log.info("register %d first read", i, extra={"log_burst": 50})
    assert len(lines(out)) == 50


def test_once_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    once = OncePerReason(logging.getLogger("test.logbound.once"))
    with caplog.at_level(logging.WARNING, logger="test.logbound.once"):
        said = [once.warn(reason, "refused %s (%d)", reason, i) for i, reason in enumerate("abab")]
    assert said == [True, True, False, False]
    assert [r.getMessage() for r in caplog.records] == [
        "refused a (0); further ones not logged",
        "refused b (1); further ones not logged",
    ]


def test_once_per_reason_counts_repeats_and_holds_a_bounded_set(caplog: pytest.LogCaptureFixture) -> None:
    once = OncePerReason(logging.getLogger("test.logbound.bounded"), max_reasons=3)
    with caplog.at_level(logging.WARNING, logger="test.logbound.bounded"):
        for i in range(1000):
            once.warn(f"reason {i % 10}", "refused %d", i)
    assert once.counts == {"reason 0": 100, "reason 1": 100, "reason 2": 100}
    assert once.other == 700 and len(caplog.records) == 3
