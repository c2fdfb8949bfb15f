"""What IGT's KMS basics do, on BDW and SKL: guest-tests/guest/test_i915_kms.py (framebuffers
of each format and tiling, a modeset, flips with events, the vblank counter, the legacy cursor,
property blobs, pipe CRCs of equal and different pictures, forced connector states, IGT's
kms_vblank benchmark), one boot per platform with the display on; each of its checks is one
test here. This test answers the script's "pattern" questions: it decodes the screen through
devmodel's inspection socket and checks the test pattern pixel for pixel (kept as
OUTDIR/kms-N.png). The figures the script prints (flips per second, the vblank clock's error,
kms_vblank's rates) are in the boot test's output.

Then ci/demo's display part on BDW (guest-tests/guest/test_i915_kms_demo.py, the host's side
harness/screen.py ScreenQuestions, as the demo runs it): the console fbcon draws, decoded and
checked for the guest's text lines, and a KMS client's page flip to the test pattern.
"""

import pytest

import harness
from harness.screen import Screen, ScreenQuestions
from test_i915_probe import guest_checks

pytestmark = pytest.mark.guest

SCRIPT = "i915_kms"
PLATFORMS = ("bdw", "skl")
CHECKS = guest_checks(SCRIPT)
# Checks a device gap makes fail now and then: none today. (QEMU's read time-outs behind
# fbcon's posted aperture writes made clean-dmesg one; docs/display.md says why they are gone.)
SOMETIMES_FAILS: dict[str, str] = {}


class PatternChecker:
    def __init__(self, socket, outdir):
        self.screen = Screen(socket, outdir)
        self.count = 0

    def __call__(self, tag, payload):
        if tag != "pattern":
            return "fail: unknown question %s" % tag
        self.count += 1
        return self.screen.check_pattern("kms-%d.png" % self.count, payload["width"], payload["height"])


@pytest.fixture(scope="module")
def boots():
    return {}


def boot(boots, platform):
    if platform not in boots:
        outdir = harness.output_dir(f"guest/test_kms_guest.py/{platform}")
        opts = harness.script_options(SCRIPT)
        with harness.DeviceModel(outdir, platform=platform, display="dp") as dev, harness.GuestChannel() as channel:
            channel.serve(PatternChecker(dev.socket, outdir))
            try:
                result = harness.run_guest(
                    [SCRIPT], outdir, timeout=opts["timeout"], device=dev, qemu_args=channel.qemu_args()
                )
            except harness.HarnessError as e:
                result = e
        boots[platform] = (result, channel)
    result, channel = boots[platform]
    if isinstance(result, harness.HarnessError):
        pytest.fail(f"the KMS boot on {platform} did not complete: {result}", pytrace=False)
    return result, channel


def cases():
    for platform in PLATFORMS:
        group = pytest.mark.xdist_group(f"i915-kms-{platform}")
        timeout = pytest.mark.timeout((harness.script_options(SCRIPT)["timeout"] + 120) * harness.timeout_scale())
        for key, desc in CHECKS:
            marks = [group, timeout]
            if key in SOMETIMES_FAILS:
                marks.append(pytest.mark.xfail(strict=False, raises=AssertionError, reason=SOMETIMES_FAILS[key]))
            yield pytest.param(platform, key, desc, marks=marks, id=f"{platform}-{key}")


@pytest.mark.parametrize("platform,key,desc", list(cases()))
def test_kms(platform, key, desc, boots):
    result, channel = boot(boots, platform)
    section = result.sections.get(SCRIPT)
    if key == CHECKS[0][0]:
        print(section.text() if section else result.console[-4000:])
        assert not channel.errors, "the host checker failed:\n" + "\n".join(channel.errors)
    assert section is not None and not section.open, f"test_{SCRIPT}.py did not finish:\n" + result.console[-4000:]
    found = [r for r in section.results if r.description == desc]
    if not found:
        pytest.fail(f"test_{SCRIPT}.py reported no line for {desc!r} (logs in {result.outdir})", pytrace=False)
    assert found[0].ok, f"{found[0]}\n(logs in {result.outdir}: console.log, dmesg.log, device.log, kms-*.png)"


DEMO = "i915_kms_demo"


@pytest.mark.xdist_group("i915-kms-demo-bdw")
@pytest.mark.timeout((harness.script_options(DEMO)["timeout"] + 120) * harness.timeout_scale())
def test_demo_display_part():
    outdir = harness.output_dir("guest/test_kms_guest.py/demo-bdw")
    lines: list[str] = []
    with harness.DeviceModel(outdir, platform="bdw", display="dp") as dev, harness.GuestChannel() as channel:
        questions = ScreenQuestions(dev.socket, outdir, lines.append)
        channel.serve(questions)
        result = harness.run_guest([DEMO], outdir, timeout=harness.script_options(DEMO)["timeout"], device=dev,
                                   qemu_args=channel.qemu_args())
    section = result.sections.get(DEMO)
    print("\n".join(lines))
    print(section.text() if section else result.console[-4000:])
    assert not channel.errors, "the host's answers failed:\n" + "\n".join(channel.errors)
    assert questions.ok == {"console": True, "pattern": True}, questions.ok
    assert section is not None and not section.open and not result.problems(DEMO), result.problems(DEMO)
