"""The bounds ``devmodel serve`` takes on what a client or guest can make it hold, each
enforced with a clear error."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from devmodel.errors import ErrorReply
from devmodel.testing import GuestMemory, VfioUserClient, fuzz


def test_max_dma_maps_is_advertised_and_enforced() -> None:
    with fuzz.serving(["--max-dma-maps", "2"]) as server, GuestMemory(1 << 20) as mem:
        with VfioUserClient.connect(server.path, mem) as c:
            caps = c.negotiate()
            assert caps["max_dma_maps"] == 2
            c.dma_map(0x0, 0x1000)
            c.dma_map(0x1000, 0x1000)
            with pytest.raises(ErrorReply) as e:
                c.dma_map(0x2000, 0x1000)
            assert e.value.errno == errno.ENOSPC
            c.dma_unmap(0x0, 0x1000)
            c.dma_map(0x2000, 0x1000)  # room again


def test_bounds_reach_the_device() -> None:
    from gen_vgpu import GenVgpu, plugin

    dev = plugin.create(
        platform="skl", max_shadow_pages=123, max_device_pages=4567, watchdog_seconds=0.5, max_shadow_mms=89
    )
    assert isinstance(dev, GenVgpu)
    assert dev.ppgtt.store.max_pages == 123 and dev.ppgtt.max_mms == 89
    assert dev.dma.max_device_pages == 4567
    assert dev.runner.watchdog.engine_seconds == 0.5


def test_a_bound_the_device_cannot_take_is_refused_at_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "devmodel",
            "serve",
            "--socket",
            str(tmp_path / "s.sock"),
            "--device",
            "gen_vgpu",
            "--max-device-pages",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=fuzz.ServerProcess.environment(),
    )
    assert proc.returncode == 2, proc.stderr
    assert "cap" in proc.stderr
