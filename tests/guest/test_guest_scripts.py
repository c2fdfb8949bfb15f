"""Each guest-tests/guest/test_*.py script, run inside a TCG guest with the device attached,
is one pytest test: it passes when the script's TAP plan is complete, every line is ok and
the script exited 0."""
import pytest

import harness

pytestmark = pytest.mark.guest


def run_script(script, outdir, **kw):
    opts = harness.script_options(script)
    try:
        result = harness.run_guest([script], outdir, timeout=opts.get("timeout", 120.0), **kw)
    except harness.HarnessError as e:
        pytest.fail("%s\n(logs in %s)" % (e, outdir), pytrace=False)
    section = result.sections.get(script)
    print(section.text() if section else result.console)
    problems = result.problems(script)
    if problems:
        pytest.fail("guest script test_%s.py:\n  %s\n--- its output ---\n%s\n(logs in %s)"
                    % (script, "\n  ".join(problems), section.text() if section else "", outdir), pytrace=False)


@pytest.mark.parametrize("script", harness.guest_scripts())
def test_guest_script(script, guest_image, device_model, outdir):
    run_script(script, outdir, device=device_model)


@pytest.mark.parametrize("script", ["enum", "bar0", "ggtt", "engines"])
def test_guest_script_on_skl(script, guest_image, outdir):
    run_script(script, outdir, device="auto", platform="skl")
