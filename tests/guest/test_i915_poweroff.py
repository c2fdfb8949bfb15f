"""Power-off with a batch still running (guest-tests/guest/test_i915_busy_exit.py): the guest's
/init makes i915 idle first, and the guest powers off. Booted without the kernel-log dump, so
that power-off follows the script at once; without /init's step this boot hung in i915's shutdown
hook every time (docs/i915-bringup.md)."""
import pytest

import harness
from script_boots import check_line
from test_i915_probe import guest_checks

pytestmark = pytest.mark.guest

SCRIPT = "i915_busy_exit"


def test_power_off_with_a_batch_still_running(outdir):
    # run_guest raises when the guest does not power off within its grace after the script.
    result = harness.run_guest([SCRIPT], outdir, platform="skl", dmesg=False,
                               timeout=harness.script_options(SCRIPT)["timeout"])
    # Its last check: the batch was still running as the script ended (GEM_BUSY).
    for _key, desc in guest_checks(SCRIPT):
        check_line(result, SCRIPT, desc)
