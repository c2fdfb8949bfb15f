"""The protocol fuzzer's bounded form: mutated vfio-user traffic against ``devmodel serve`` in
its own process. The long run is ``python -m devmodel.testing.fuzz --seconds N``."""

from __future__ import annotations

import os

import pytest

from devmodel.testing import fuzz


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fuzzed_streams_find_nothing(seed: int) -> None:
    own_fds = len(os.listdir("/proc/self/fd"))
    report = fuzz.run(seed, steps=400)
    # The fuzzer closes the fds of messages it never sent (after a framing error) too.
    assert len(os.listdir("/proc/self/fd")) == own_fds
    assert report.steps == 400
    # The run really exercised the server: requests answered, errors returned, framing
    # errors survived by reconnecting.
    assert report.replies > 400 and sum(report.errnos.values()) > 50 and report.expected_drops > 10, report.summary()
    assert not report.findings, "\n".join(report.findings)


def test_a_dead_server_is_a_finding() -> None:
    """The fuzzer's own check can fail: a server killed mid-run is reported, not passed over."""
    report = fuzz.FuzzReport()
    with fuzz.serving() as server:
        fuzzer = fuzz.Fuzzer(7, server, report)
        try:
            fuzzer.step()
            server.proc.kill()
            server.proc.wait()
            with pytest.raises(fuzz.ServerDied):
                for _ in range(50):
                    fuzzer.step()
        finally:
            fuzzer.close()
    assert any("died" in f for f in report.findings), report.findings
