"""The host's view of what a guest shows on the vGPU's display: the screen decoded through
devmodel's inspection socket (`inspect screen`, a PNG), the KMS test pattern that
guest-tests/guest/test_i915_kms.py draws (the host's copy of its pattern_row), checked pixel for
pixel, a description of a text console (fbcon) picture, and the answers to the demo's display
part."""
import base64
import time
from collections.abc import Callable
from pathlib import Path

from devmodel.transport.control import control_path, query
from gen_vgpu.display.png import decode_png_rgb

from .paths import timeout_scale

BARS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255), (255, 255, 255),
        (128, 128, 128))
CELL_ROWS = 16  # fbcon's 8x16 font: a text line is 16 pixel rows


def kms_row(y: int, width: int, height: int) -> bytes:
    """Row y of the KMS test pattern as R G B triples: eight vertical bars shaded by y, a
    black column every 16 pixels."""
    shade = 96 + y * 159 // (height - 1)
    out = bytearray()
    for r, g, b in BARS:
        px = bytes((r * shade // 255, g * shade // 255, b * shade // 255))
        out += (bytes(3) + px * 15) * (width // 8 // 16)
    return bytes(out)


def check_kms_pattern(rgb: bytes, width: int, height: int) -> str:
    """"" when every pixel is the pattern's, else where the first difference is."""
    for y in range(height):
        want = kms_row(y, width, height)
        got = rgb[3 * width * y: 3 * width * (y + 1)]
        if got != want:
            x = next(i for i in range(width) if got[3 * i: 3 * i + 3] != want[3 * i: 3 * i + 3])
            return "pixel (%d, %d) is %s, the pattern has %s" % (
                x, y, tuple(got[3 * x: 3 * x + 3]), tuple(want[3 * x: 3 * x + 3]))
    return ""


def describe_console(rgb: bytes, width: int, height: int) -> dict[str, int]:
    """What a text console's picture holds: its lit pixels, colours, and the text lines (16-row
    bands with lit pixels) and the widest line in 8-pixel character cells."""
    lit_rows = [any(rgb[i] | rgb[i + 1] | rgb[i + 2] for i in range(3 * width * y, 3 * width * (y + 1), 3))
                for y in range(height)]
    lines = sum(1 for band in range(0, height, CELL_ROWS) if any(lit_rows[band: band + CELL_ROWS]))
    colours = {rgb[i: i + 3] for i in range(0, len(rgb), 3)}
    lit = sum(1 for i in range(0, len(rgb), 3) if rgb[i] | rgb[i + 1] | rgb[i + 2])
    widest = 0
    for y in range(height):
        if lit_rows[y]:
            row = rgb[3 * width * y: 3 * width * (y + 1)]
            last = max(i for i in range(width) if row[3 * i] | row[3 * i + 1] | row[3 * i + 2])
            widest = max(widest, last // 8 + 1)
    return {"lit_pixels": lit, "colours": len(colours), "text_lines": lines, "widest_line_cells": widest}


class Screen:
    """The device's screen through its inspection socket; each picture kept as OUTDIR/NAME."""

    def __init__(self, socket: str, outdir: Path) -> None:
        self.ctl = control_path(socket)
        self.outdir = Path(outdir)

    def grab(self, name: str) -> tuple[int, int, bytes, float]:
        """(width, height, R G B pixels, decode ms) of the screen now, saved as NAME."""
        answer = query(self.ctl, {"what": "screen", "args": []}, timeout=60.0)
        if "error" in answer:
            raise AssertionError("inspect screen: %s" % answer["error"])
        png = base64.b64decode(answer["png_base64"])
        (self.outdir / name).write_bytes(png)
        width, height, rgb = decode_png_rgb(png)
        assert (width, height) == (answer["width"], answer["height"])
        return width, height, rgb, answer["decode_ms"]

    def check_pattern(self, name: str, width: int, height: int) -> str:
        """The line channel's answer to the KMS script's "pattern" question."""
        w, h, rgb, ms = self.grab(name)
        if (w, h) != (width, height):
            return "fail: the screen is %dx%d, the guest set %dx%d" % (w, h, width, height)
        wrong = check_kms_pattern(rgb, w, h)
        if wrong:
            return "fail: " + wrong
        return "ok: %dx%d, every pixel is the pattern's, decoded in %.1f ms" % (w, h, ms)


CONSOLE_DEADLINE = 60.0  # seconds for fbcon to draw a guest's console lines


class ScreenQuestions:
    """The host's answers to guest-tests/guest/test_i915_kms_demo.py (ci/demo's display part):
    "console" decodes the screen, keeps it as console.png, says what it shows and checks that the
    guest's text lines are on it; "pattern" checks the KMS client's test pattern pixel for pixel
    (kms.png). ``ok`` holds each question's verdict; ``report`` gets the lines to show."""

    def __init__(self, socket: str, outdir: Path, report: Callable[[str], None]) -> None:
        self.screen = Screen(socket, outdir)
        self.outdir = Path(outdir)
        self.report = report
        self.ok: dict[str, bool] = {}

    def __call__(self, tag: str, payload: dict[str, int]) -> str:
        if tag == "console":
            # fbcon draws from a work item, through the trapped aperture: look again until the
            # guest's lines are all there, under a deadline.
            deadline = time.monotonic() + CONSOLE_DEADLINE * timeout_scale()
            while True:
                width, height, rgb, ms = self.screen.grab("console.png")
                d = describe_console(rgb, width, height)
                if d["text_lines"] >= payload["lines"] or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            self.report(f"the console fbcon drew, decoded in {ms:.1f} ms and saved: {self.outdir / 'console.png'}")
            self.report(f"  {width}x{height}, {d['colours']} colours, {d['lit_pixels']} lit pixels; text on "
                        f"{d['text_lines']} of {height // CELL_ROWS} console lines ({CELL_ROWS} pixel rows each), "
                        f"the widest {d['widest_line_cells']} of {width // 8} character cells")
            good = (d["colours"] > 1 and d["text_lines"] >= payload["lines"]
                    and d["widest_line_cells"] == payload["cells"] and d["lit_pixels"] < width * height // 4)
            self.ok[tag] = good
            return ("ok: " if good else "fail: ") + ", ".join(f"{k} {v}" for k, v in d.items())
        if tag == "pattern":
            answer = self.screen.check_pattern("kms.png", payload["width"], payload["height"])
            self.report(f"the KMS client's flip, decoded and saved: {self.outdir / 'kms.png'}: {answer}")
            self.ok[tag] = answer.startswith("ok")
            return answer
        return f"fail: unknown question {tag}"
