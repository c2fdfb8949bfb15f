"""The demo's headline on BDW: guest-tests/guest/test_i915_demo.py under the guest's own i915
(one boot, as ci/demo runs it, with devmodel.picture=1). Each of its stages is one pytest test;
then the picture it drew through i915 is read off the console, compared with the pattern on
the host, written as a PNG and read back pixel for pixel; and the demo's progress printer,
fed that boot's console, shows a line per stage with its figures.
"""
import pytest

import demo  # guest-tests/demo.py; it puts the guest scripts (gpulib) on sys.path
import gpulib
import harness
from test_i915_probe import guest_checks
from test_picture import read_png

pytestmark = [pytest.mark.guest, pytest.mark.xdist_group("i915_demo-bdw")]  # one boot, one worker

SCRIPT = "i915_demo"
CHECKS = guest_checks(SCRIPT)


@pytest.fixture(scope="module")
def result():
    outdir = harness.output_dir(f"guest/test_i915_picture.py/{SCRIPT}-bdw")
    try:
        return harness.run_guest([SCRIPT], outdir, platform="bdw", append=demo.PICTURE_ARG,
                                 timeout=harness.script_options(SCRIPT)["timeout"])
    except harness.HarnessError as e:
        pytest.fail(f"the boot of test_{SCRIPT}.py did not complete: {e}", pytrace=False)


@pytest.mark.parametrize("key", [k for k, _d in CHECKS])
def test_i915_demo_stage(key, result):
    section = result.sections.get(SCRIPT)
    assert section is not None and not section.open, f"test_{SCRIPT}.py did not finish:\n" + result.console[-4000:]
    assert [r.description for r in section.results] == [d for _k, d in CHECKS], section.text()
    line = section.results[[k for k, _d in CHECKS].index(key)]
    assert line.ok, f"{line}\n(logs in {result.outdir}: console.log, dmesg.log, device.log)"


def test_the_picture_drawn_through_i915_round_trips_as_png(result, tmp_path):
    picture = harness.picture_from_console(result.console)
    assert picture is not None, "the guest printed no picture"
    assert (picture.width, picture.height) == (gpulib.PICTURE_W, gpulib.PICTURE_H)
    want = gpulib.picture_expected(copied=True)
    assert picture.bgrx == want, gpulib.first_bad_pixel(picture.bgrx, want)
    width, height, rgb = read_png(harness.write_png(tmp_path / "i915.png", picture).read_bytes())
    assert (width, height, rgb) == (picture.width, picture.height, picture.rgb())
    # The copy landed: the bottom right corner holds the top left of the bars, not black.
    x, y = gpulib.COPY_DST[:2]
    pixel = 3 * (y * width + x)
    assert rgb[pixel:pixel + 3] == gpulib.BARS[0].to_bytes(3, "big")


def test_the_demo_prints_a_line_per_stage_with_its_figures(result, capsys):
    follower = demo.ConsoleFollower(result.outdir / "console.log", "i915", every_line=True)
    for line in result.console.splitlines():
        follower.show(line.rstrip("\r"))
    out = capsys.readouterr().out.splitlines()
    stages = [line for line in out if line.startswith("  [i915] ok   ")]
    assert [line[len("  [i915] ok   "):] for line in stages] == [d for _k, d in CHECKS]
    figures = "\n".join(out)
    for want in ("Virtual GPU for Intel GVT-g detected", "engines: rcs0 bcs0 vcs0 vecs0",
                 "/dev/dri/renderD128: chipset 0x1616", "batches/s from user space to completion"):
        assert want in figures, figures
    # Each figure is printed under the stage it belongs to.
    detected = out.index("  [i915] ok   " + dict(CHECKS)["detected"])
    assert "Virtual GPU for Intel GVT-g detected" in out[detected + 1]
