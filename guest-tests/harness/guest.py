"""Boot the guest with the device attached, run guest scripts, collect their TAP."""
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .device import DeviceModel
from .errors import HarnessError
from .paths import find_guest_image, repo_root, timeout_scale
from .qemu import DEFAULT_MEMORY_MB, Qemu
from .tap import parse_console

GUEST_DIR = repo_root() / "guest-tests" / "guest"
DONE = "# devmodel-guest done"
OPTION = re.compile(r"^#\s*devmodel-guest:\s*(.*)$", re.M)
# /init prints the whole kernel log between these lines when asked (devmodel.dmesg=1).
DMESG = re.compile(r"^# devmodel-dmesg begin\r?\n(.*?)^# devmodel-dmesg end\r?$", re.MULTILINE | re.DOTALL)


def script_options(name):
    """Options a guest script declares in a '# devmodel-guest: ...' line:
    reboot (it reboots the guest, so it runs alone and QEMU may reset), manual (not run by
    the lane on its own), timeout=SECONDS, image=NAME (the guest image it needs; "base" when
    not given), no-posted-writes (QEMU's vfio-user client waits for each BAR write's reply:
    the script reads back at once, through guest RAM, what it wrote through the aperture;
    docs/igt.md), memory=MIB (guest RAM; DEFAULT_MEMORY_MB when not given)."""
    path = GUEST_DIR / ("test_%s.py" % name)
    if not path.is_file():
        raise HarnessError("no guest script %s" % path.relative_to(repo_root()))
    text = path.read_text()
    opts = {}
    for m in OPTION.finditer(text):
        for word in m.group(1).split():
            key, _, val = word.partition("=")
            opts[key] = (float(val) if key == "timeout" else int(val) if key == "memory"
                         else val if key == "image" else True)
    return opts


def script_memory(tests):
    """The guest RAM a boot of TESTS needs, in MiB: the most any of them asks for."""
    return max([DEFAULT_MEMORY_MB] + [script_options(t).get("memory", 0) for t in tests])


def script_image(name):
    return script_options(name).get("image", "base")


def guest_scripts(include_manual=False, image="base"):
    """The guest scripts that run on IMAGE (without the manual ones unless asked)."""
    names = sorted(p.stem[len("test_"):] for p in GUEST_DIR.glob("test_*.py"))
    return [n for n in names if (include_manual or not script_options(n).get("manual"))
            and script_image(n) == image]


def dmesg_of(console):
    """The kernel log /init printed (one "<level>[seconds] text" a line), or None."""
    m = DMESG.search(console)
    return m.group(1).replace("\r", "") if m else None


@dataclass
class GuestResult:
    sections: dict
    console: str
    outdir: Path
    seconds: float          # QEMU start to exit
    device_log: str = ""
    dmesg: str | None = None  # the guest's whole kernel log, when /init printed it

    def problems(self, name):
        s = self.sections.get(name)
        return s.problems() if s else ["the guest never started test_%s.py" % name]


def run_guest(tests, outdir, timeout=90.0, device="auto", platform=None, reboot=None,
              append="", device_props=None, qemu_args=(), done_grace=45.0, image=None, dmesg=True,
              display=None):
    """Boot QEMU with the guest image and run guest-tests/guest/test_NAME.py for each NAME.

    device: "auto" starts a device model for this run (stopped at the end), a DeviceModel
    uses that one, a path attaches the server listening there (not watched), None boots
    without the device. image: the guest image ("base", "i915"); by default the one the
    scripts declare. dmesg: the guest prints its whole kernel log before powering off, kept
    as OUTDIR/dmesg.log and GuestResult.dmesg. display: the device model's --display for a
    device started here: "none" (headless) unless a test asks for "dp"; the display tests
    ask for it (docs/display.md says why the GT tests stay headless). done_grace: how long the
    guest may take to power off once its scripts are done, a hang guard (the guest's hung-task
    detector reports a task blocked for 5 s on the console, and /init prints every blocked
    task's and CPU's stack if the machine is still up 20 s on). A run killed at a deadline
    keeps the device's state (OUTDIR/device-state.json) and each vCPU's registers and
    instructions from QEMU's monitor (OUTDIR/qemu-state.txt). Raises HarnessError when the run
    itself failed (QEMU did not start, the guest did not power off by the deadline, the device
    model died); a finished run returns a GuestResult with the TAP of each script."""
    outdir = Path(outdir)
    tests = list(tests)
    if reboot is None:
        reboot = any(script_options(t).get("reboot") for t in tests)
    if image is None:
        wanted = {script_image(t) for t in tests} or {"base"}
        if len(wanted) > 1:
            raise HarnessError(f"the scripts {', '.join(tests)} need different guest images "
                               f"({', '.join(sorted(wanted))}): boot them separately")
        image = wanted.pop()
    kernel, initrd = find_guest_image(image)
    if any(script_options(t).get("no-posted-writes") for t in tests):
        device_props = {"x-no-posted-writes": True, **(device_props or {})}
    own = device == "auto"
    if own:
        dev = DeviceModel(outdir, platform=platform, display=display or "none").start()
    elif isinstance(device, (str, Path)):
        dev = None
    else:
        dev = device
    socket = dev.socket if dev else (device or None)
    # log_buf_len: the default 128 KiB ring loses the start of a boot in which i915 WARNs a lot.
    # no_timer_check: on a loaded host the TCG guest's early check of the IO-APIC timer can miss
    # its ticks and panic ("IO-APIC + timer doesn't work", seen in the lane); the timer works.
    # DEVMODEL_GUEST_APPEND adds to every guest's command line: "loglevel=7" keeps the whole
    # kernel log on the console, for a run that hangs before /init can print it.
    cmdline = "console=ttyS0 panic=-1 quiet no_timer_check devmodel.tests=%s%s %s %s" % (
        ",".join(tests), " devmodel.dmesg=1 log_buf_len=1M" if dmesg else "", append,
        os.environ.get("DEVMODEL_GUEST_APPEND", ""))
    qemu = Qemu(outdir, socket=socket, kernel=kernel, initrd=initrd, memory_mb=script_memory(tests),
                append=cmdline.strip(), reboot=reboot, device_props=device_props, extra_args=qemu_args,
                qmp=True)
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
                state = dev.save_state() if dev is not None else "device state: not ours to ask"
                state += "\n" + qemu.save_cpu_state()
                qemu.kill()
                why = ("the guest finished its scripts but did not power off within %.0f s" % done_grace
                       if done_at is not None else "the guest did not power off within %.0f s" % timeout)
                raise HarnessError("%s; QEMU killed.\n%s\n--- guest console (%s) ---\n%s"
                                   % (why, state, qemu.console_path, qemu.console_tail()))
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
                             dev.log_text() if dev else "", dmesg_of(console))
        if result.dmesg is not None:
            (outdir / "dmesg.log").write_text(result.dmesg)
        (outdir / "result.txt").write_text("".join(
            "%s: %s\n" % (t, "; ".join(result.problems(t)) or "ok") for t in tests)
            + "qemu start to exit: %.2f s\n" % seconds)
        return result
    finally:
        qemu.kill()
        if own:
            dev.stop()
