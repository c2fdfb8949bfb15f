"""One boot per (guest script, platform), shared by all the checks of that boot, and the check
of one TAP line: the lanes that run i915 guest scripts (test_i915_batches.py, test_i915_igt.py)
use both, each with its own output folder."""

import pytest

import harness


def boot(boots, lane, script, platform):
    """The GuestResult of ``script``'s boot on ``platform``, booting it the first time it is asked
    for; a boot that did not complete fails every check that asks for it."""
    if (script, platform) not in boots:
        outdir = harness.output_dir(f"guest/{lane}/{script}-{platform}")
        try:
            boots[script, platform] = harness.run_guest([script], outdir, platform=platform,
                                                        timeout=harness.script_options(script)["timeout"])
        except harness.HarnessError as e:
            boots[script, platform] = e
    result = boots[script, platform]
    if isinstance(result, harness.HarnessError):
        pytest.fail(f"the boot of test_{script}.py on {platform} did not complete: {result}", pytrace=False)
    return result


def check_line(result, script, description):
    """The script finished and reported ``description`` as ok."""
    section = result.sections.get(script)
    assert section is not None and not section.open, f"test_{script}.py did not finish:\n" + result.console[-4000:]
    found = [r for r in section.results if r.description == description]
    if not found:
        pytest.fail(f"test_{script}.py reported no line for {description!r} (logs in {result.outdir})", pytrace=False)
    line = found[0]
    assert line.ok, f"{line}\n(logs in {result.outdir}: console.log, dmesg.log, device.log)"
