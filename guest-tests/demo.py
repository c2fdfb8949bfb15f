"""The demo. Its headline: a Linux guest's own, unmodified i915 (Debian's generic 6.1 kernel,
the i915 image) binds to the vGPU and runs batches through it: the probe stage by stage
(modules, "Virtual GPU for Intel GVT-g detected", the engines, the render node), a store batch
on every engine, 1,000 batches in a row with their rate, and the test picture drawn with
XY_COLOR_BLT and XY_SRC_COPY_BLT on the blitter by execbuf, checked pixel by pixel in the guest
(guest-tests/guest/test_i915_demo.py); the host saves it as a PNG.

Then the display (the i915 image, the vGPU's DisplayPort monitor on): the console i915's fbcon
draws, decoded by the host through devmodel's inspection socket and saved as a PNG with what it
shows, and a small KMS client in the guest (test_i915_kms_demo.py: dumb buffers, SETCRTC and a
page flip with its event) whose test pattern the host decodes and checks pixel for pixel.

Then the vGPU driven directly, without i915 (the base image): the guest finds the device,
builds an i915-style 4-level PPGTT in its own memory and draws the same picture through the
vGPU's blitter, with the other engines, interrupts and a hang (test_enum, bar0, ggtt, intx,
engines); that picture is saved too. After each boot the device's counters are summarised from
its exit log. Exit status 0 only if every script passed and both pictures came back right.
Run through ci/demo, which sets everything up first."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE / "guest"))  # gpulib: the picture the guest must have drawn

import gpulib  # noqa: E402
from harness import DeviceModel, GuestChannel, HarnessError, picture_from_console, run_guest, write_png  # noqa: E402
from harness.screen import ScreenQuestions  # noqa: E402

PICTURE_ARG = "devmodel.picture=1"
TAP_LINE = re.compile(r"^(ok|not ok) \d+ - (.*)$")
COUNTERS = re.compile(r"devmodel: (execlists|workloads|interrupts|shadow PPGTT|display): (.*)$", re.MULTILINE)
FIGURE = "# figure: "


@dataclass(frozen=True)
class Part:
    """One boot of the demo: its guest scripts (all for one image) and how to present them."""

    name: str          # the log subdirectory and the prefix of its progress lines
    title: str         # what the boot shows
    scripts: tuple[str, ...]
    timeout: float     # the boot's deadline, seconds
    drawn_by: str      # who drew the picture, for the line that names its PNG
    every_line: bool   # print each TAP result; else one line per script (and every failure)
    display: bool = False  # the monitor on; the host answers the guest's screen questions


PARTS = (
    Part("i915", "Debian's generic 6.1 kernel with its own, unmodified i915",
         ("i915_demo",), 300.0, "by the vGPU's blitter through i915 (execbuf from guest user space)", True),
    Part("display", "i915 with the vGPU's display: fbcon's console and a KMS client's page flip",
         ("i915_kms_demo",), 600.0, "by a KMS client (dumb buffer, page flip)", True, display=True),
    # What each base-image script shows, in the order a reader wants it: the device, its
    # registers and GGTT, INTx, then the engines and the picture.
    Part("direct", "scripts that drive the vGPU directly, without i915 (PPGTT, execlists, CSB, INTx)",
         ("enum", "bar0", "ggtt", "intx", "engines"), 300.0,
         "by the vGPU's blitter through the guest's own 4-level PPGTT, no driver", False),
)


def say(msg: str) -> None:
    print(msg, flush=True)


class ConsoleFollower(threading.Thread):
    """Prints the guest's progress while it runs, from the console file QEMU writes: each TAP
    result (every_line) or each script's count of passed checks and its failures, and the
    figures the script printed ("# figure: ..." comments, which precede their result line)
    under the result they belong to."""

    def __init__(self, path: Path, prefix: str, every_line: bool) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.prefix = prefix
        self.every_line = every_line
        self.done = threading.Event()
        self.script = "?"
        self.figures: list[str] = []
        self.passed = self.ran = 0

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
                self.flush()
                return
            self.done.wait(0.2)

    def flush(self) -> None:
        for figure in self.figures:
            say(f"  [{self.prefix}]        {figure}")
        self.figures.clear()

    def show(self, line: str) -> None:
        if line.startswith("# devmodel-test begin "):
            self.script = line.split()[-1]
            self.passed = self.ran = 0
            if self.every_line:
                say(f"  [{self.prefix}] running test_{self.script}.py")
            return
        if line.startswith("# devmodel-test end "):
            if not self.every_line:
                say(f"  [{self.prefix}] test_{self.script}.py: {self.passed} of {self.ran} checks passed")
            self.flush()
            return
        m = TAP_LINE.match(line)
        if m:
            ok = m.group(1) == "ok"
            self.ran += 1
            self.passed += ok
            if self.every_line or not ok:
                say(f"  [{self.prefix}] {'ok  ' if ok else 'FAIL'} {m.group(2)}")
                self.flush()
        elif line.startswith(FIGURE):
            self.figures.append(line[len(FIGURE):])


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
    if "display" in lines:
        out.append(f"display: {lines['display']}")
    if "shadow PPGTT" in lines:
        s = fields(lines["shadow PPGTT"])
        out.append(f"shadow page tables: {s.get('tables_created', 0)} built for the guest's PPGTT "
                   f"({s.get('tables_freed', 0)} freed when the guest went away)")
    return out


def boot(part: Part, out: Path, platform: str, trace: str | None = None) -> bool:
    """One part: a device model of its own, one boot, the picture and the counters. True when
    every script passed and the picture is right. ``trace``: devmodel serve --trace patterns,
    their lines to the part's trace.log, an excerpt shown after the boot."""
    logs = out / part.name
    logs.mkdir()
    traced = f" --trace '{trace}'" if trace else ""
    say(f"[{part.name} 1/3] devmodel serve --device gen_vgpu --platform {platform}{traced}; QEMU (TCG) boots a "
        f"Linux guest on it: {part.title}")
    extra = ("--trace", trace, "--trace-file", str(logs / "trace.log")) if trace else ()
    device = DeviceModel(logs, platform=platform, log_level="info", extra_args=extra,
                         display="dp" if part.display else "none")
    follower = ConsoleFollower(logs / "console.log", part.name, part.every_line)
    channel = GuestChannel() if part.display else None
    questions = None
    try:
        device.start()
        follower.start()
        qemu_args: list[str] = []
        if channel is not None:
            questions = ScreenQuestions(str(device.socket), logs, lambda line: say(f"  [{part.name}] {line}"))
            channel.serve(questions)
            qemu_args = channel.qemu_args()
        try:
            result = run_guest(list(part.scripts), logs, timeout=part.timeout, device=device, append=PICTURE_ARG,
                               qemu_args=qemu_args)
        finally:
            follower.done.set()
            follower.join(5.0)
            if channel is not None:
                channel.close()
            device.stop()  # the device model logs its counters as it exits
    except HarnessError as exc:
        say(f"  FAILED: {exc}")
        return False
    failed = [name for name in part.scripts if result.problems(name)]
    for name in failed:
        for p in result.problems(name):
            say(f"  problem in test_{name}.py: {p}")

    say(f"[{part.name} 2/3] the picture")
    if questions is not None:
        picture_ok = questions.ok.get("console", False) and questions.ok.get("pattern", False)
        say("  the host found the console's text and every pixel of the pattern" if picture_ok
            else f"  the host's screen checks: {questions.ok}")
    else:
        picture_ok = save_picture(result.console, logs / "picture.png", part.drawn_by)
    say(f"[{part.name} 3/3] what the device did (its counters at exit)")
    for line in summary(counters(device.log_text())):
        say(f"  {line}")
    if trace:
        show_trace(logs / "trace.log")
    say(f"  QEMU start to power-off: {result.seconds:.1f} s; logs: {logs}")
    if failed:
        say(f"  guest script(s) {', '.join(failed)} did not pass")
    return picture_ok and not failed


def show_trace(path: Path, head: int = 12) -> None:
    """The first lines of the trace and how many of each event it holds."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        say(f"  no trace: {exc}")
        return
    counts: dict[str, int] = {}
    for line in lines:
        parts = line.split(" ", 2)
        if len(parts) > 1:
            counts[parts[1]] = counts.get(parts[1], 0) + 1
    say(f"  trace: {len(lines)} lines ({', '.join(f'{k} {v}' for k, v in counts.items())}); the first {head}:")
    for line in lines[:head]:
        say(f"    {line}")


def save_picture(console: str, path: Path, drawn_by: str) -> bool:
    """Read the guest's picture off its console, save it as a PNG, check it against the
    pattern. True when it is there and right."""
    try:
        picture = picture_from_console(console)
    except HarnessError as exc:
        say(f"  {exc}")
        return False
    if picture is None:
        say("  the guest printed no picture")
        return False
    png = write_png(path, picture)
    want = gpulib.picture_expected(copied=True)
    say(f"  {picture.width}x{picture.height} pixels drawn {drawn_by}, saved on the host: {png}")
    if picture.bgrx != want:
        say("  the picture differs from the pattern: " + str(gpulib.first_bad_pixel(picture.bgrx, want)))
        return False
    say("  the host finds every pixel as the pattern says")
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--platform", choices=("bdw", "skl"), default="bdw", help="the vGPU's platform (default bdw)")
    ap.add_argument("--trace", metavar="PATTERNS",
                    help="trace events to turn on, e.g. 'execlist_*,csb' (docs/trace.md)")
    args = ap.parse_args(argv)
    out = Path(tempfile.mkdtemp(prefix="devmodel-demo-"))
    t0 = time.monotonic()
    passed = {}
    for part in PARTS:
        passed[part.name] = boot(part, out, args.platform, args.trace)
        say("")
    say(f"whole demo {time.monotonic() - t0:.1f} s; logs: {out}")
    if not all(passed.values()):
        say("FAILED: " + ", ".join(f"the {name} part" for name, ok in passed.items() if not ok))
        return 1
    say("PASSED: Debian's unmodified i915 bound to the vGPU and ran batches on its four engines from guest user "
        f"space; the picture it drew: {out / 'i915' / 'picture.png'}; its console on the vGPU's monitor: "
        f"{out / 'display' / 'console.png'}, a KMS client's page flip: {out / 'display' / 'kms.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
