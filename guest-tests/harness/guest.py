"""Boot the guest with the device attached, run guest scripts, collect their TAP."""
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .device import DeviceModel
from .errors import HarnessError
from .paths import find_guest_image, repo_root, timeout_scale
from .qemu import Qemu
from .tap import parse_console

GUEST_DIR = repo_root() / "guest-tests" / "guest"
DONE = "# devmodel-guest done"
OPTION = re.compile(r"^#\s*devmodel-guest:\s*(.*)$", re.M)


def script_options(name):
    """Options a guest script declares in a '# devmodel-guest: ...' line:
    reboot (it reboots the guest, so it runs alone and QEMU may reset), manual (not run by
    the lane on its own), timeout=SECONDS."""
    path = GUEST_DIR / ("test_%s.py" % name)
    if not path.is_file():
        raise HarnessError("no guest script %s" % path.relative_to(repo_root()))
    text = path.read_text()
    opts = {}
    for m in OPTION.finditer(text):
        for word in m.group(1).split():
            key, _, val = word.partition("=")
            opts[key] = float(val) if key == "timeout" else True
    return opts


def guest_scripts(include_manual=False):
    names = sorted(p.stem[len("test_"):] for p in GUEST_DIR.glob("test_*.py"))
    return [n for n in names if include_manual or not script_options(n).get("manual")]


@dataclass
class GuestResult:
    sections: dict
    console: str
    outdir: Path
    seconds: float          # QEMU start to exit
    device_log: str = ""

    def problems(self, name):
        s = self.sections.get(name)
        return s.problems() if s else ["the guest never started test_%s.py" % name]


def run_guest(tests, outdir, timeout=90.0, device="auto", platform=None, reboot=None,
              append="", device_props=None, qemu_args=(), done_grace=15.0):
    """Boot QEMU with the guest image and run guest-tests/guest/test_NAME.py for each NAME.

    device: "auto" starts a device model for this run (stopped at the end), a DeviceModel
    uses that one, a path attaches the server listening there (not watched), None boots
    without the device. Raises HarnessError when the run itself
    failed (QEMU did not start, the guest did not power off by the deadline, the device
    model died); a finished run returns a GuestResult with the TAP of each script."""
    outdir = Path(outdir)
    tests = list(tests)
    if reboot is None:
        reboot = any(script_options(t).get("reboot") for t in tests)
    kernel, initrd = find_guest_image()
    own = device == "auto"
    if own:
        dev = DeviceModel(outdir, platform=platform).start()
    elif isinstance(device, (str, Path)):
        dev = None
    else:
        dev = device
    socket = dev.socket if dev else (device or None)
    cmdline = "console=ttyS0 panic=-1 quiet devmodel.tests=%s %s" % (",".join(tests), append)
    qemu = Qemu(outdir, socket=socket, kernel=kernel, initrd=initrd,
                append=cmdline.strip(), reboot=reboot, device_props=device_props, extra_args=qemu_args)
    try:
        qemu.start()
        deadline = qemu.started + timeout * timeout_scale()
        done_at = None
        while True:
            rc = qemu.wait(0.05)
            if rc is not None:
                break
            now = time.monotonic()
            if dev is not None and not dev.alive():
                qemu.kill()
                raise HarnessError("%s\n--- guest console (%s) ---\n%s"
                                   % (dev.died_message(), qemu.console_path, qemu.console_tail()))
            if done_at is None and DONE in qemu.console_text():
                done_at = now
            if now > deadline or (done_at is not None and now > done_at + done_grace * timeout_scale()):
                qemu.kill()
                why = ("the guest finished its scripts but did not power off within %.0f s" % done_grace
                       if done_at is not None else "the guest did not power off within %.0f s" % timeout)
                raise HarnessError("%s; QEMU killed.\n--- guest console (%s) ---\n%s"
                                   % (why, qemu.console_path, qemu.console_tail()))
        seconds = time.monotonic() - qemu.started
        console = qemu.console_text()
        if rc != 0:
            raise HarnessError("%s\n--- guest console ---\n%s" % (qemu.exit_message(), qemu.console_tail()))
        if dev is not None and not dev.alive():
            raise HarnessError(dev.died_message())
        if DONE not in console:
            raise HarnessError("QEMU exited before the guest finished (a guest panic or reset?).\n"
                               "--- guest console (%s) ---\n%s" % (qemu.console_path, qemu.console_tail()))
        result = GuestResult(parse_console(console), console, outdir, seconds,
                             dev.log_text() if dev else "")
        (outdir / "result.txt").write_text("".join(
            "%s: %s\n" % (t, "; ".join(result.problems(t)) or "ok") for t in tests)
            + "qemu start to exit: %.2f s\n" % seconds)
        return result
    finally:
        qemu.kill()
        if own:
            dev.stop()
