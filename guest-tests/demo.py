"""The demo: boot a Linux guest under QEMU against a fresh device model, let the guest
scripts drive the vGPU, and print what the guest did and saw. Exit status 0 only if every
script passed. Run through ci/demo, which sets everything up first."""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import DeviceModel, HarnessError, guest_scripts, run_guest

# What each guest script shows, in the order a reader wants it.
TOUR = ["enum", "bar0", "ggtt", "intx"]


def main() -> int:
    scripts = [s for s in TOUR if s in guest_scripts()]
    out = Path(tempfile.mkdtemp(prefix="devmodel-demo-"))
    print(f"devmodel demo: booting a guest (QEMU, TCG) with the gen_vgpu device; guest scripts: {', '.join(scripts)}")
    t0 = time.monotonic()
    device = DeviceModel(out, log_level="info")
    try:
        device.start()
        try:
            result = run_guest(scripts, out, timeout=180.0, device=device)
        finally:
            device.stop()  # the device model logs its counters as it exits
    except HarnessError as exc:
        print(f"\nFAILED: {exc}")
        print(f"logs: {out}")
        return 1
    failed = 0
    for name in scripts:
        section = result.sections.get(name)
        print(f"\n== {name} ==")
        if section is None:
            print("  the guest never ran it")
            failed += 1
            continue
        for r in section.results:
            print(f"  {'ok  ' if r.passed else 'FAIL'} {r.description}")
        for line in section.lines:
            if line.startswith("# ") and not line.startswith("# devmodel"):
                print(f"       {line[2:]}")
        problems = result.problems(name)
        if problems:
            failed += 1
            for p in problems:
                print(f"  problem: {p}")
    counters = re.findall(r"gen_vgpu \w+: .*", device.log_text())
    print("\n== device model ==")
    for line in counters[-1:]:
        print(f"  {line}")
    print(f"\nguest boot to power-off: {result.seconds:.1f} s; whole demo {time.monotonic() - t0:.1f} s; logs: {out}")
    if failed:
        print(f"FAILED: {failed} guest script(s) did not pass")
        return 1
    print("PASSED: the guest enumerated and drove the vGPU through QEMU's vfio-user client")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
