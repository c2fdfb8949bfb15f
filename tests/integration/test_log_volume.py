"""A client that provokes the same warning thousands of times makes a bounded log."""

from __future__ import annotations

import pytest

from devmodel.errors import ErrorReply
from devmodel.testing import VfioUserClient, fuzz
from devmodel.vfio_user.constants import Command


def test_a_flood_of_failing_requests_makes_a_bounded_log() -> None:
    with fuzz.serving(["--log-burst", "10"]) as server:
        with VfioUserClient.connect(server.path) as c:
            c.negotiate()
            for _ in range(3000):
                with pytest.raises(ErrorReply):
                    c.request(Command.REGION_READ, b"\0" * 10)  # short: EINVAL, logged as a warning
            c.read32(7, 0)  # still served
        server.stop()
        log = server.log_tail(10_000).splitlines()
    failed = [line for line in log if "REGION_READ" in line and "failed" in line]
    assert len(failed) == 10, log[:20]
    assert "further ones dropped" in failed[-1]
