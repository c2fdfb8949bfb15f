"""Batches from guest user space through the guest's own i915, on BDW and SKL. One boot per
platform and guest script, each of the script's checks one pytest test here:

- guest-tests/guest/test_i915_exec.py: stores on every engine, blits checked pixel by pixel,
  1,000 batches in a row, two processes, a hung batch reset by i915, an unload and reload of
  i915, the kernel log;
- guest-tests/guest/test_i915_reboot.py: a batch on every engine, a reboot of the guest
  (DEVICE_RESET), i915 binds again and runs them again (a reboot script boots alone);
- guest-tests/guest/test_i915_spin.py: IGT's spinner on every engine, busy until the CPU ends
  it, and a store to a canonical 48-bit address.
- guest-tests/guest/test_i915_render.py: render copies (linear, X- and Y-tiled, R8), chains of
  copies as gem_render_linear_blits / gem_render_tiled_blits, media and GPGPU fills, every
  pixel checked.
"""
import pytest

import harness
from test_i915_probe import guest_checks

pytestmark = pytest.mark.guest

PLATFORMS = ("bdw", "skl")
SCRIPTS = ("i915_exec", "i915_reboot", "i915_spin", "i915_render")
CHECKS = {script: guest_checks(script) for script in SCRIPTS}


def cases():
    for script in SCRIPTS:
        for platform in PLATFORMS:
            group = pytest.mark.xdist_group(f"{script}-{platform}")  # one boot each, on one worker
            for key, _desc in CHECKS[script]:
                yield pytest.param(script, platform, key, marks=[group], id=f"{script}-{platform}-{key}")


@pytest.fixture(scope="module")
def boots():
    """{(script, platform): GuestResult or HarnessError}: one boot for all the checks of each."""
    return {}


def boot(boots, script, platform):
    if (script, platform) not in boots:
        outdir = harness.output_dir(f"guest/test_i915_batches.py/{script}-{platform}")
        try:
            boots[script, platform] = harness.run_guest([script], outdir, platform=platform,
                                                        timeout=harness.script_options(script)["timeout"])
        except harness.HarnessError as e:
            boots[script, platform] = e
    result = boots[script, platform]
    if isinstance(result, harness.HarnessError):
        pytest.fail(f"the boot of test_{script}.py on {platform} did not complete: {result}", pytrace=False)
    return result


@pytest.mark.parametrize("script,platform,key", list(cases()))
def test_i915_batches(script, platform, key, boots):
    result = boot(boots, script, platform)
    section = result.sections.get(script)
    assert section is not None and not section.open, f"test_{script}.py did not finish:\n" + result.console[-4000:]
    desc = dict(CHECKS[script])[key]
    found = [r for r in section.results if r.description == desc]
    if not found:
        pytest.fail(f"test_{script}.py reported no line for {desc!r} (logs in {result.outdir})", pytrace=False)
    line = found[0]
    assert line.ok, f"{line}\n(logs in {result.outdir}: console.log, dmesg.log, device.log)"
