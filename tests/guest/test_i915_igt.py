"""What IGT does to the vGPU, from inside the i915 guest, on BDW and SKL; one boot per platform
and guest script, each of the script's checks one pytest test here:

- guest-tests/guest/test_igt.py: IGT's packaged programs (Debian's intel-gpu-tools: lsgpu,
  intel_gem_info, intel_gpu_top and the benchmarks) as outside clients of i915, each clean (exit
  0, its figure printed, no i915 warning, hang or reset);
- guest-tests/guest/test_i915_sync.py: the busy ioctl and fence waits on a running batch, a
  GTT-mmap write read back through a CPU mmap, parallel submission on every engine for 10 s
  with i915's heartbeat alive;
- guest-tests/guest/test_i915_tiled.py: blits between linear, X- and Y-tiled objects and GTT-mmap
  reads and writes through fences, checked against a CPU tiler (gem_tiled_blits' row).

The checks that fail for want of work outside this area are xfail(strict=True) with the owner
and reason in EXPECTED_TO_FAIL (docs/igt.md has the device log behind each); a change that
makes one pass turns it into a failure here, so the mark goes with that change.
"""
import re

import pytest

import harness
from script_boots import boot, check_line
from test_i915_probe import guest_checks

pytestmark = pytest.mark.guest

PLATFORMS = ("bdw", "skl")


def igt_checks():
    """test_igt.py's checks: its first line, then one per PROGRAMS entry (key = description)."""
    text = (harness.guest.GUEST_DIR / "test_igt.py").read_text()
    block = text[text.index("PROGRAMS:"):text.index("\n)\n", text.index("PROGRAMS:"))]
    keys = re.findall(r'^\s*\("([a-z0-9_-]+)", \[', block, re.M)
    return (("loaded", "i915 binds, renderD128 exists, the GT is not wedged"),) + tuple((k, k) for k in keys)


CHECKS = {"igt": igt_checks(), "i915_sync": guest_checks("i915_sync"), "i915_tiled": guest_checks("i915_tiled")}
# (script, key) -> (platforms, reason): what fails today for want of other work.
EXPECTED_TO_FAIL: dict[tuple[str, str], tuple[set[str], str]] = {}

_unknown = {k for k in EXPECTED_TO_FAIL if k[1] not in dict(CHECKS[k[0]])}
assert not _unknown, f"EXPECTED_TO_FAIL names checks the scripts do not have: {sorted(_unknown)}"


def cases():
    for script, checks in CHECKS.items():
        for platform in PLATFORMS:
            group = pytest.mark.xdist_group(f"{script}-{platform}")  # one boot each, on one worker
            # The first check boots: the script's own deadline and a margin, not the lane's default.
            timeout = pytest.mark.timeout((harness.script_options(script)["timeout"] + 120) * harness.timeout_scale())
            for key, _desc in checks:
                marks = [group, timeout]
                platforms, reason = EXPECTED_TO_FAIL.get((script, key), (set(), ""))
                if platform in platforms:
                    marks.append(pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason))
                yield pytest.param(script, platform, key, marks=marks, id=f"{script}-{platform}-{key}")


@pytest.fixture(scope="module")
def boots():
    """{(script, platform): GuestResult or HarnessError}: one boot for all the checks of each."""
    return {}


@pytest.mark.parametrize("script,platform,key", list(cases()))
def test_i915_igt(script, platform, key, boots):
    result = boot(boots, "test_i915_igt.py", script, platform)
    check_line(result, script, dict(CHECKS[script])[key])
