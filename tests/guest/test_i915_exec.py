"""Batches from guest user space through the guest's own i915, on BDW and SKL: one boot per
platform runs guest-tests/guest/test_i915_exec.py (stores on every engine, blits checked pixel
by pixel, 1,000 batches in a row, two processes, a hung batch reset by i915, an unload and
reload of i915, the kernel log), and each of its checks is one pytest test here.
"""
import pytest

import harness
from test_i915_probe import guest_checks

pytestmark = pytest.mark.guest

PLATFORMS = ("bdw", "skl")
SCRIPT = "i915_exec"
CHECKS = guest_checks(SCRIPT)


def cases():
    for platform in PLATFORMS:
        group = pytest.mark.xdist_group(f"i915-exec-{platform}")  # one boot per platform, one worker
        for key, _desc in CHECKS:
            yield pytest.param(platform, key, marks=[group], id=f"{platform}-{key}")


@pytest.fixture(scope="module")
def boots():
    """{platform: GuestResult or HarnessError}: each platform boots once for all its checks."""
    return {}


def boot(boots, platform):
    if platform not in boots:
        outdir = harness.output_dir(f"guest/test_i915_exec.py/{platform}")
        try:
            boots[platform] = harness.run_guest([SCRIPT], outdir, platform=platform,
                                                timeout=harness.script_options(SCRIPT)["timeout"])
        except harness.HarnessError as e:
            boots[platform] = e
    result = boots[platform]
    if isinstance(result, harness.HarnessError):
        pytest.fail(f"the i915 exec boot on {platform} did not complete: {result}", pytrace=False)
    return result


@pytest.mark.parametrize("platform,key", list(cases()))
def test_i915_exec(platform, key, boots):
    result = boot(boots, platform)
    section = result.sections.get(SCRIPT)
    assert section is not None and not section.open, "test_i915_exec.py did not finish:\n" + result.console[-4000:]
    desc = dict(CHECKS)[key]
    found = [r for r in section.results if r.description == desc]
    if not found:
        pytest.fail(f"test_i915_exec.py reported no line for {desc!r} (logs in {result.outdir})", pytrace=False)
    line = found[0]
    assert line.ok, f"{line}\n(logs in {result.outdir}: console.log, dmesg.log, device.log)"
