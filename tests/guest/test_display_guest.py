"""The display under the guest's own i915, on BDW and SKL: guest-tests/guest/test_i915_display.py
binds i915, checks the connector, its modes and fbcon's framebuffer, writes to the console
and a pattern to /dev/fb0, and asks this test, on the line channel, to decode the screen
through devmodel's inspection socket and check it; then to unplug and plug the monitor.
The console's picture is kept as OUTDIR/console.png and the pattern's as pattern.png.
"""

import time

import pytest

import harness
from devmodel.transport.control import control_path, query
from harness.screen import Screen
from test_i915_probe import guest_checks

pytestmark = pytest.mark.guest

SCRIPT = "i915_display"
STAGES = ["console", "pattern", "unplug", "plug"]
CHECK_KEYS = [k for k, _d in guest_checks(SCRIPT)]


def pattern_pixel(x, y, width):
    """The guest's pattern_row, as R, G, B."""
    bars = [
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (255, 255, 0),
        (0, 255, 255),
        (255, 0, 255),
        (255, 255, 255),
        (64, 64, 64),
    ]
    shade = 128 + (y * 2) % 128
    return tuple(c * shade // 255 for c in bars[x * 8 // width])


class ScreenChecker:
    def __init__(self, socket, outdir):
        self.ctl = control_path(socket)
        self.screen = Screen(socket, outdir).grab
        self.seconds = {}

    def __call__(self, tag, payload):
        start = time.monotonic()
        try:
            if tag == "console":
                width, height, rgb, ms = self.screen("console.png")
                lit = sum(1 for i in range(0, len(rgb), 3) if rgb[i] | rgb[i + 1] | rgb[i + 2])
                # Eight lines of text in an 8x16 font cover thousands of pixels, not the screen.
                if not 2000 < lit < width * height // 4:
                    return "fail: %d lit pixels of %dx%d" % (lit, width, height)
                return "ok: %dx%d, %d lit pixels, decoded in %.1f ms" % (width, height, lit, ms)
            if tag == "pattern":
                width, height, rgb, ms = self.screen("pattern.png")
                y0, rows, w = payload["y0"], payload["rows"], payload["width"]
                for y in range(y0, y0 + rows):
                    for x in range(w):
                        i = 3 * (y * width + x)
                        got, want = tuple(rgb[i : i + 3]), pattern_pixel(x, y, w)
                        if got != want:
                            return "fail: pixel (%d, %d) is %s, the guest wrote %s" % (x, y, got, want)
                return "ok: %d rows of %d pixels match, decoded in %.1f ms" % (rows, w, ms)
            if tag in ("unplug", "plug"):
                answer = query(self.ctl, {"what": "display", "args": ["disconnect" if tag == "unplug" else "connect"]})
                return "fail: %s" % answer["error"] if "error" in answer else "ok"
            return "fail: unknown question %s" % tag
        finally:
            self.seconds[tag] = time.monotonic() - start


# Checks a device gap makes fail now and then: none today. (QEMU's read time-outs behind
# fbcon's posted aperture writes made clean-dmesg one; docs/display.md says why they are gone.)
SOMETIMES_FAILS: dict[str, str] = {}


@pytest.fixture(scope="module")
def boots():
    return {}


def boot(boots, platform):
    if platform not in boots:
        outdir = harness.output_dir(f"guest/test_display_guest.py/{platform}")
        opts = harness.script_options(SCRIPT)
        with harness.DeviceModel(outdir, platform=platform, display="dp") as dev, harness.GuestChannel() as channel:
            checker = ScreenChecker(dev.socket, outdir)
            channel.serve(checker)
            try:
                result = harness.run_guest(
                    [SCRIPT], outdir, timeout=opts["timeout"], device=dev, qemu_args=channel.qemu_args()
                )
            except harness.HarnessError as e:
                result = e
        boots[platform] = (result, checker, channel)
    result, checker, channel = boots[platform]
    if isinstance(result, harness.HarnessError):
        pytest.fail(f"the display boot on {platform} did not complete: {result}", pytrace=False)
    return result, checker, channel


def cases():
    for platform in ("bdw", "skl"):
        group = pytest.mark.xdist_group(f"i915-display-{platform}")
        for key in CHECK_KEYS:
            marks = [group]
            if key in SOMETIMES_FAILS:
                marks.append(pytest.mark.xfail(strict=False, raises=AssertionError, reason=SOMETIMES_FAILS[key]))
            yield pytest.param(platform, key, marks=marks, id=f"{platform}-{key}")


@pytest.mark.parametrize(
    "platform", [pytest.param(p, marks=pytest.mark.xdist_group(f"i915-display-{p}")) for p in ("bdw", "skl")]
)
def test_display_boot_asks_the_host_and_finishes(platform, boots):
    result, checker, channel = boot(boots, platform)
    section = result.sections.get(SCRIPT)
    print(section.text() if section else result.console)
    print("host checks: %s" % ", ".join("%s %.2f s" % kv for kv in checker.seconds.items()))
    assert not channel.errors, "the host checker failed:\n" + "\n".join(channel.errors)
    assert channel.asked == STAGES, "the guest asked for %s" % channel.asked
    assert section is not None and not section.open, "test_i915_display.py did not finish"
    assert [r.description for r in section.results] == [d for _k, d in guest_checks(SCRIPT)]


@pytest.mark.parametrize("platform,key", list(cases()))
def test_display_check(platform, key, boots):
    result, _checker, _channel = boot(boots, platform)
    section = result.sections.get(SCRIPT)
    desc = dict(guest_checks(SCRIPT))[key]
    found = [r for r in section.results if r.description == desc] if section else []
    if not found:
        pytest.fail(f"test_i915_display.py reported no line for {desc!r} (logs in {result.outdir})", pytrace=False)
    assert found[0].ok, f"{found[0]}\n(logs in {result.outdir}: console.log, dmesg.log, device.log, *.png)"
