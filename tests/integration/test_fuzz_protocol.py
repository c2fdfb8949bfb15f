"""The protocol fuzzer's bounded form: mutated vfio-user traffic against ``devmodel serve`` in
its own process. The long run is ``python -m devmodel.testing.fuzz --seconds N``."""

from __future__ import annotations

import os
import signal
import threading

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


def test_the_fd_check_waits_for_the_servers_loop_not_a_clock() -> None:
    """A server that gets no CPU for longer than the old 10 s wait (stopped here, as a loaded
    machine can leave it) is not reported for a leak: its client's fds go on the loop turn
    that sees the client's end, and the check waits for a turn of that loop."""
    report = fuzz.FuzzReport()
    with fuzz.serving() as server:
        fuzzer = fuzz.Fuzzer(5, server, report)
        try:
            for _ in range(20):
                fuzzer.step()
            assert server.fd_count() > fuzzer.idle_fds  # a client is attached
            os.kill(server.proc.pid, signal.SIGSTOP)
            resume = threading.Timer(11.0, os.kill, (server.proc.pid, signal.SIGCONT))
            resume.start()
            try:
                fuzzer._reconnect("the test's stop")
            finally:
                resume.join()
            fuzzer.step()
        finally:
            fuzzer.close()
    assert not report.findings, report.findings
