"""The real-QEMU lane: guest scripts under a TCG guest, QEMU's vfio-user client driven by
qtest and QMP. Setup (ci/setup-qemu, ci/setup-guest) is a precondition: without it these
tests fail and say what to run; they never skip.

Markers (registered in pyproject.toml): `guest` boots a Linux guest, `qemu` drives QEMU
without a guest OS. Each test keeps its logs (device.log, qemu.log, console.log) under
test-output/<test name>/.
"""

import pytest

import harness


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
