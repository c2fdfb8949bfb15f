"""QEMU's QMP (through QEMU's own Python client, qemu.qmp) against a QEMU attached to the
device model: a machine reset reaches the device, and the device model outlives its QEMU."""
import re
import time

import pytest
from qemu.qmp.legacy import QEMUMonitorProtocol

import harness
from test_qtest import BAR0, DEV, PVINFO, PVINFO_MAGIC, program_bars

pytestmark = pytest.mark.qemu


def qmp_connect(q):
    mon = QEMUMonitorProtocol(q.wait_qmp_socket())
    mon.connect()
    mon.settimeout(10 * harness.timeout_scale())
    return mon


def device_resets(dev):
    return len(re.findall(r"device reset", dev.log_text()))


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout * harness.timeout_scale()
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.0f s waiting for %s" % (timeout, what), pytrace=False)
        time.sleep(0.02)


def test_system_reset_resets_the_device(device_model, outdir):
    with harness.Qtest(outdir, socket=device_model.socket, qmp=True, reboot=True) as q:
        program_bars(q)
        q.writel(BAR0 + 0x4000, 0xA5A5A5A5)
        assert q.readl(BAR0 + 0x4000) == 0xA5A5A5A5
        resets = device_resets(device_model)
        mon = qmp_connect(q)
        try:
            mon.cmd("system_reset")
            event = mon.pull_event(wait=10.0 * harness.timeout_scale())
            while event["event"] != "RESET":
                event = mon.pull_event(wait=10.0 * harness.timeout_scale())
        finally:
            mon.close()
        wait_for(lambda: device_resets(device_model) > resets, 10, "DEVICE_RESET in the device log")
        # QEMU's reset zeroes the BARs and the command register; program them again.
        program_bars(q)
        assert q.readl(BAR0 + 0x4000) == 0, "register value survived system_reset"
        assert q.readq(BAR0 + PVINFO) == PVINFO_MAGIC
    assert device_model.alive(), device_model.log_tail()


def test_server_outlives_quit_and_serves_a_second_qemu(device_model, outdir):
    with harness.Qtest(outdir / "first", socket=device_model.socket, qmp=True) as q:
        program_bars(q)
        q.writel(BAR0 + 0x4000, 0x11111111)
        mon = qmp_connect(q)
        mon.cmd("quit")
        try:
            mon.close()
        except EOFError:
            pass  # QEMU may close the socket before the client does
        assert q.wait(10 * harness.timeout_scale()) == 0, q.exit_message()
    time.sleep(0.2)
    assert device_model.alive(), "the device model exited with its client:\n" + device_model.log_tail()
    with harness.Qtest(outdir / "second", socket=device_model.socket) as q:
        assert q.cfg_read(DEV, 0) == 0x16168086
        program_bars(q)
        assert q.readq(BAR0 + PVINFO) == PVINFO_MAGIC
        assert q.readl(BAR0 + 0x4000) == 0, "QEMU's start-up reset must clear the register"
        q.writel(BAR0 + 0x4000, 0x22222222)
        assert q.readl(BAR0 + 0x4000) == 0x22222222
    assert device_model.alive(), device_model.log_tail()


def test_qemu_killed_mid_use_leaves_nothing_behind(device_model, outdir):
    """SIGKILL of QEMU while its device is in use (guest RAM mapped, registers written): the
    kernel closes the socket, the device model tears down and serves the next QEMU, holding no
    more fds than it did between the two."""
    import os
    import signal

    def fds():
        return len(os.listdir("/proc/%d/fd" % device_model.proc.pid))

    with harness.Qtest(outdir / "first", socket=device_model.socket) as q:
        program_bars(q)
        q.writel(BAR0 + 0x4000, 0x33333333)
        assert q.readl(BAR0 + 0x4000) == 0x33333333
        q.proc.send_signal(signal.SIGKILL)
        q.proc.wait(10)
    wait_for(lambda: "client gone" in device_model.log_text(), 10, "the device model to see QEMU gone")
    idle = fds()
    assert device_model.alive(), "the device model died with its QEMU:\n" + device_model.log_tail()
    with harness.Qtest(outdir / "second", socket=device_model.socket) as q:
        program_bars(q)
        assert q.readl(BAR0 + 0x4000) == 0, "the killed QEMU's register value survived"
        q.writel(BAR0 + 0x4000, 0x44444444)
        assert q.readl(BAR0 + 0x4000) == 0x44444444
    wait_for(lambda: device_model.log_text().count("client gone") >= 2, 10, "the second QEMU gone")
    wait_for(lambda: fds() <= idle, 10, "the fds of the second QEMU released")
    assert device_model.alive(), device_model.log_tail()
