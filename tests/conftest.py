"""Settings for every test: DMA windows get guard pages (devmodel/device/hostmem.py), here and
in every server process a test starts (they inherit the environment), so an access that strays
past a window kills the test instead of passing silently. DEVMODEL_TIMEOUT_SCALE (set by
``ci/test --hogs``) multiplies each test's hang guard, as it does the guest harness's deadlines:
the guard catches a hang, it must not fail a slow but working test on a loaded machine."""

from __future__ import annotations

import os

import pytest

from devmodel import accel
from devmodel.device.hostmem import GUARD_ENV

os.environ[GUARD_ENV] = "1"


@pytest.hookimpl(trylast=True)  # after tests/guest/conftest.py, which sets (scaled) guards of its own
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scale = float(os.environ.get("DEVMODEL_TIMEOUT_SCALE", "1"))
    if scale == 1:
        return
    guard = float(config.getini("timeout")) * scale
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(guard))


def pytest_sessionstart(session: pytest.Session) -> None:
    """The tests import devmodel from the tree and the compiled accelerator from the venv: one
    built from other sources than the tree's accel/ would be tested stale. Stop loudly."""
    try:
        accel.load(True)
    except accel.StaleAccelerator as exc:
        pytest.exit(str(exc), returncode=3)
