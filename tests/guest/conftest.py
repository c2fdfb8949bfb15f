"""The real-QEMU lane: guest scripts under a TCG guest, QEMU's vfio-user client driven by
qtest and QMP. Setup (ci/setup-qemu, ci/setup-guest) is a precondition: without it these
tests fail and say what to run; they never skip.

Markers (registered in pyproject.toml): `guest` boots a Linux guest, `qemu` drives QEMU
without a guest OS. Each test keeps its logs (device.log, qemu.log, console.log) under
test-output/<test name>/. Their per-test timeout is GUEST_TEST_TIMEOUT (scaled like every
harness deadline) instead of pyproject's default; the harness's own deadlines come first.
"""

import pytest

import harness

GUEST_TEST_TIMEOUT = 600.0  # seconds: a TCG boot, its scripts (120 s each by default), teardown


def pytest_collection_modifyitems(items):
    for item in items:
        marked = item.get_closest_marker("guest") or item.get_closest_marker("qemu")
        if marked and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(GUEST_TEST_TIMEOUT * harness.timeout_scale()))


@pytest.fixture
def outdir(request):
    return harness.output_dir(request.node.nodeid.replace("tests/guest/", "guest/"))


@pytest.fixture(scope="session")
def qemu_binary():
    try:
        return harness.find_qemu()
    except harness.HarnessError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def guest_image(qemu_binary):
    try:
        return harness.find_guest_image()
    except harness.HarnessError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def device_model(outdir, qemu_binary):
    """A running `devmodel serve` (gen_vgpu) for one test; stopped afterwards."""
    try:
        dev = harness.DeviceModel(outdir).start()
    except harness.HarnessError as e:
        pytest.fail(str(e), pytrace=False)
    yield dev
    dev.stop()
