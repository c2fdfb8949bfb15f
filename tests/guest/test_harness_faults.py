"""The lane's own failure paths: each must end quickly with a message that says what went
wrong and shows the log that explains it, never hang."""
import threading
import time

import pytest

import harness

pytestmark = pytest.mark.guest


def expect_harness_error(fn, within):
    t0 = time.monotonic()
    with pytest.raises(harness.HarnessError) as info:
        fn()
    elapsed = time.monotonic() - t0
    assert elapsed < within * harness.timeout_scale(), "took %.1f s" % elapsed
    return str(info.value)


def test_no_server_on_the_socket(guest_image, outdir, tmp_path):
    missing = tmp_path / "nobody-listens.sock"
    msg = expect_harness_error(lambda: harness.run_guest(["env"], outdir, timeout=60, device=missing), 15)
    assert "QEMU exited with status 1" in msg
    assert str(missing) in msg, "QEMU's own error (naming the socket) is shown:\n" + msg


def test_no_server_under_qtest(qemu_binary, outdir, tmp_path):
    missing = tmp_path / "nobody-listens.sock"
    q = harness.Qtest(outdir, socket=missing).start()
    try:
        msg = expect_harness_error(lambda: q.cmd("readl 0x0"), 15)
    finally:
        q.kill()
    assert "QEMU exited with status 1" in msg and str(missing) in msg, msg


def test_guest_that_never_powers_off_is_killed(guest_image, device_model, outdir):
    # The deadline must hold the boot up to the script's hang: 60 s leaves room for a loaded
    # machine (a quiet one boots in about 10 s); the harness then kills QEMU there.
    msg = expect_harness_error(
        lambda: harness.run_guest(["fault_hang"], outdir, timeout=60, device=device_model), 100)
    assert "did not power off within 60 s" in msg
    assert "devmodel-fault: hanging now" in msg, "the console tail is shown:\n" + msg
    # Where the vCPU was when QEMU was killed, from QEMU's monitor, kept with the console.
    state = (outdir / "qemu-state.txt").read_text()
    assert "(qemu) info registers -a" in state and "RIP=" in state, state
    assert "qemu-state.txt" in msg


def test_dead_device_model_is_reported_with_its_log(guest_image, device_model, outdir):
    console = outdir / "console.log"

    def kill_when_hanging():
        deadline = time.monotonic() + 60 * harness.timeout_scale()
        while time.monotonic() < deadline:
            if console.exists() and "hanging now" in console.read_text(errors="replace"):
                device_model.proc.kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_hanging, daemon=True)
    killer.start()
    msg = expect_harness_error(
        lambda: harness.run_guest(["fault_hang"], outdir, timeout=60, device=device_model), 60)
    killer.join(5)
    assert "the device model died (exit status -9)" in msg
    assert "-m devmodel serve" in msg, "the device log is shown:\n" + msg


def test_device_model_that_fails_to_start(qemu_binary, outdir):
    dev = harness.DeviceModel(outdir, extra_args=["--no-such-option"])
    msg = expect_harness_error(dev.start, 20)
    assert "exited with status" in msg and "--no-such-option" in msg, msg


def test_missing_guest_script_is_refused_before_boot(guest_image, outdir):
    msg = expect_harness_error(lambda: harness.run_guest(["no_such_script"], outdir, device=None), 2)
    assert "no guest script guest-tests/guest/test_no_such_script.py" in msg
