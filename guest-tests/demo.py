"""The demo: boot a Linux guest under QEMU against a fresh device model; the guest finds the
vGPU, builds an i915-style 4-level PPGTT in its own memory, draws a test pattern with
XY_COLOR_BLT through the vGPU's blitter, copies part of it with XY_SRC_COPY_BLT and checks
every pixel (guest-tests/guest/test_engines.py, which also exercises the other engines). The
host saves the guest's picture as a PNG and prints a summary of the submissions, CSB events,
interrupts and shadow tables involved. Exit status 0 only if every script passed and the
picture came back right. Run through ci/demo, which sets everything up first."""

from __future__ import annotations

import re
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE / "guest"))  # gpulib: the picture the guest must have drawn

import gpulib  # noqa: E402
from harness import DeviceModel, HarnessError, guest_scripts, picture_from_console, run_guest, write_png  # noqa: E402

# What each guest script shows, in the order a reader wants it: the device, its registers and
# GGTT, INTx, then the engines and the picture.
TOUR = ["enum", "bar0", "ggtt", "intx", "engines"]
PICTURE_ARG = "devmodel.picture=1"
TAP_LINE = re.compile(r"^(ok|not ok) \d+ - (.*)$")
COUNTERS = re.compile(r"devmodel: (execlists|workloads|interrupts|shadow PPGTT): (.*)$", re.MULTILINE)


def say(msg: str) -> None:
    print(msg, flush=True)


class ConsoleFollower(threading.Thread):
    """Prints the guest's progress (each script as it starts, each TAP result, each figure)
    while the guest runs, from the console file QEMU writes."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.done = threading.Event()
        self.script = "?"

    def run(self) -> None:
        pos, partial = 0, b""
        while True:
            finished = self.done.is_set()  # read the file once more after the guest is gone
            try:
                with open(self.path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            pos += len(chunk)
            *lines, partial = (partial + chunk).split(b"\n")
            for raw in lines:
                self.show(raw.decode(errors="replace").rstrip("\r"))
            if finished:
                return
            self.done.wait(0.2)

    def show(self, line: str) -> None:
        if line.startswith("# devmodel-test begin "):
            self.script = line.split()[-1]
            say(f"  [guest] running test_{self.script}.py")
            return
        m = TAP_LINE.match(line)
        if m:
            say(f"  [guest] {self.script}: {'ok  ' if m.group(1) == 'ok' else 'FAIL'} {m.group(2)}")
        elif line.startswith("# figure: "):
            say(f"  [guest] {self.script}: {line[2:]}")


def counters(device_log: str) -> dict[str, str]:
    """The device's summary lines of its exit log, by kind (the last of each)."""
    return {m.group(1): m.group(2) for m in COUNTERS.finditer(device_log)}


def fields(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", text)}


def summary(lines: dict[str, str]) -> list[str]:
    out = []
    if "execlists" in lines:
        per_engine = [part.split(" ", 1) for part in lines["execlists"].split("; ")]
        total = {k: sum(fields(rest).get(k, 0) for _, rest in per_engine)
                 for k in ("submissions", "completed", "hung", "csb_events", "rejected")}
        out.append("ELSP submissions: %d (%s); contexts completed %d, hung %d; submissions refused %d" % (
            total["submissions"], ", ".join(f"{name} {fields(rest)['submissions']}" for name, rest in per_engine),
            total["completed"], total["hung"], total["rejected"]))
        out.append(f"CSB events: {total['csb_events']} (each in MMIO and in the status page)")
    if "workloads" in lines:
        w = fields(lines["workloads"])
        out.append(f"workloads: {w.get('completed', 0)} run to the end, {w.get('rejected', 0)} rejected by the "
                   f"scanner, {w.get('commands', 0)} commands, {w.get('blit_bytes', 0)} bytes blitted")
    if "interrupts" in lines:
        i = fields(lines["interrupts"])
        out.append(f"interrupts: {i.get('events', 0)} engine events reached an IIR ({i.get('masked_events', 0)} "
                   f"masked by IMR); {i.get('raised', 0)} raised to QEMU")
    if "shadow PPGTT" in lines:
        s = fields(lines["shadow PPGTT"])
        out.append(f"shadow page tables: {s.get('tables_created', 0)} built for the guest's PPGTT "
                   f"({s.get('tables_freed', 0)} freed when the guest went away)")
    return out


def main() -> int:
    scripts = [s for s in TOUR if s in guest_scripts()]
    out = Path(tempfile.mkdtemp(prefix="devmodel-demo-"))
    t0 = time.monotonic()
    say("[demo 1/4] starting the device model (devmodel serve, gen_vgpu, Broadwell GT2)")
    device = DeviceModel(out, log_level="info")
    follower = ConsoleFollower(out / "console.log")
    try:
        device.start()
        say(f"[demo 2/4] booting a Linux guest under QEMU (TCG) with the vGPU; guest scripts: {', '.join(scripts)}")
        follower.start()
        try:
            result = run_guest(scripts, out, timeout=300.0, device=device, append=PICTURE_ARG)
        finally:
            follower.done.set()
            follower.join(5.0)
            device.stop()  # the device model logs its counters as it exits
    except HarnessError as exc:
        say(f"\nFAILED: {exc}")
        say(f"logs: {out}")
        return 1
    failed = []
    for name in scripts:
        problems = result.problems(name)
        if problems:
            failed.append(name)
            for p in problems:
                say(f"  problem in test_{name}.py: {p}")

    say("[demo 3/4] saving the guest's picture")
    picture_ok = False
    try:
        picture = picture_from_console(result.console)
    except HarnessError as exc:
        picture = None
        say(f"  {exc}")
    if picture is None:
        say("  the guest printed no picture")
    else:
        png = write_png(out / "guest-picture.png", picture)
        picture_ok = picture.bgrx == gpulib.picture_expected(copied=True)
        say(f"  {picture.width}x{picture.height} pixels drawn by the vGPU's blitter in guest memory: {png}")
        say("  the host finds every pixel as the pattern says" if picture_ok
            else "  the picture differs from the pattern: " + str(gpulib.first_bad_pixel(
                picture.bgrx, gpulib.picture_expected(copied=True))))

    say("[demo 4/4] what the device did (its counters at exit)")
    for line in summary(counters(device.log_text())):
        say(f"  {line}")
    say(f"\nguest boot to power-off: {result.seconds:.1f} s; whole demo {time.monotonic() - t0:.1f} s; logs: {out}")
    if failed or not picture_ok:
        why = ([f"guest script(s) {', '.join(failed)} did not pass"] if failed else []) + (
            [] if picture_ok else ["the picture did not come back right"])
        say("FAILED: " + "; ".join(why))
        return 1
    say("PASSED: the guest drove the vGPU's four engines through QEMU's vfio-user client; picture: " + str(png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
