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

from script_boots import boot, check_line
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


@pytest.mark.parametrize("script,platform,key", list(cases()))
def test_i915_batches(script, platform, key, boots):
    result = boot(boots, "test_i915_batches.py", script, platform)
    check_line(result, script, dict(CHECKS[script])[key])
