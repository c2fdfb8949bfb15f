"""The guest's own, unmodified i915 (Debian's 6.1 generic kernel) probing the vGPU.

Loads the module closure in order with no module parameters (a GVT-g guest passes none), waits
for the probe, then reports one TAP line per check in CHECKS, in that order, with the i915 and
DRM kernel messages and what /dev/dri holds as diagnostics. The full kernel log is printed by
/init (devmodel.dmesg=1) and kept by the harness as dmesg.log.
"""
# devmodel-guest: image=i915 timeout=420
import os
import re
import subprocess
import sys
import time

import gvtlib
import i915lib

# Deadline of one insmod. i915's probe on a device without the vGPU registers takes the
# bare-metal path and waits out every forcewake and reset timeout (minutes under TCG).
INSMOD_TIMEOUT = 300.0
# Kernel messages of the DRM stack, the lines every check below reads: the i915 device's own
# lines ("i915 0000:00:03.0: ..."), DRM's ("[drm] ...", "[drm:func [i915]] ..."), and the head of
# a WARN raised in DRM code ("WARNING: ... at drivers/gpu/drm/i915/...").
DRM_LINE = re.compile(r"^i915 [0-9a-f]{4}:|\[drm[]:]|drivers/gpu/drm/")
# The firmware loader's own warning when the SKL display's DMC firmware is not in the image
# (it is optional: i915 runs without it and says so at notice level); not a device problem.
FIRMWARE_ABSENT = re.compile(r"(Direct firmware load for|firmware: failed to load) i915/\S+_dmc_")
# debugfs file that reads 1 while the GT is wedged (i915_debugfs.c i915_wedged_get).
WEDGED_FILE = "/sys/kernel/debug/dri/0/i915_wedged"

# (key, description) of each check, in TAP order. The host's pytest test keys its expectations
# on these keys (tests/guest/test_i915_probe.py); keep them stable.
CHECKS = (
    ("modules", "the i915 module closure loads in order"),
    ("bound", "i915 is bound to the vGPU (/sys/bus/pci/drivers/i915)"),
    ("detected", "dmesg: Virtual GPU for Intel GVT-g detected"),
    ("gt-not-wedged", "the GT is not wedged (debugfs i915_wedged reads 0)"),
    ("no-wedged-lines", "dmesg: no 'wedged'"),
    ("irq-regs-zero", "dmesg: no 'Interrupt register ... is not zero'"),
    ("no-timeouts", "dmesg: no 'timed out' or 'timeout'"),
    ("workarounds-kept", "dmesg: no 'workaround lost'"),
    ("no-unclaimed", "dmesg: no unclaimed register access"),
    ("no-drm-warnings", "dmesg: no i915/DRM line at warning level or above"),
    ("card0", "/dev/dri/card0 exists"),
    ("renderD128", "/dev/dri/renderD128 exists"),
    ("rps-freqs", "sysfs: RPS frequencies not 0 (RP0 > RPn > 0, min <= cur <= max)"),
)
# i915's RPS frequencies (intel_gt_sysfs_pm.c: the legacy files under the card).
RPS_FILES = ("gt_RP0_freq_mhz", "gt_RP1_freq_mhz", "gt_RPn_freq_mhz", "gt_min_freq_mhz", "gt_max_freq_mhz",
             "gt_act_freq_mhz", "gt_cur_freq_mhz")


def grep(lines: list[str], pattern: str) -> list[str]:
    rx = re.compile(pattern, re.IGNORECASE)
    return [line for line in lines if rx.search(line)]


def absent(lines: list[str], pattern: str, show: int = 3) -> str:
    """A failure reason naming the first matching lines, or "" when none matches."""
    hits = grep(lines, pattern)
    if not hits:
        return ""
    first = " | ".join(h.strip() for h in hits[:show])
    return f"{len(hits)} line(s), first: {first}"


def wedged() -> str:
    """A failure reason when debugfs says the GT is wedged or cannot say, else ""."""
    try:
        if not os.path.isdir("/sys/kernel/debug/dri"):
            subprocess.run(["mount", "-t", "debugfs", "debugfs", "/sys/kernel/debug"], check=True)
        with open(WEDGED_FILE) as f:
            value = f.read().strip()
    except (OSError, subprocess.CalledProcessError) as e:
        return f"cannot read {WEDGED_FILE}: {e}"
    return "" if value == "0" else f"i915_wedged reads {value}"


def rps_frequencies() -> tuple[str, dict[str, int]]:
    """A failure reason unless i915's RPS reports a frequency range and runs inside it."""
    freqs: dict[str, int] = {}
    try:
        for name in RPS_FILES:
            with open(f"/sys/class/drm/card0/{name}") as f:
                freqs[name] = int(f.read())
    except (OSError, ValueError) as e:
        return f"cannot read {name}: {e}", freqs
    rp0, rpn, cur = freqs["gt_RP0_freq_mhz"], freqs["gt_RPn_freq_mhz"], freqs["gt_cur_freq_mhz"]
    # act reads 0 while the device is runtime-suspended (i915 reads CAGF only if awake)
    if not rp0 > rpn > 0 or not 0 < freqs["gt_min_freq_mhz"] <= cur <= freqs["gt_max_freq_mhz"]:
        return f"read {freqs}", freqs
    return "", freqs


def distinct(recs: list[i915lib.Record]) -> list[tuple[int, i915lib.Record]]:
    """[(count, first record)] of the records with the same level and text, in first-seen order."""
    counts: dict[tuple[int, str], int] = {}
    first: dict[tuple[int, str], i915lib.Record] = {}
    for rec in recs:
        key = (rec[0], rec[2])
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, rec)
    return [(counts[key], rec) for key, rec in first.items()]


def main() -> int:
    tap = gvtlib.Tap(len(CHECKS))
    dev = gvtlib.find_device()
    bdf = dev.path.rsplit("/", 1)[-1]
    tap.diag(f"vGPU {bdf} ({dev.config_read(0, 2):04x}:{dev.config_read(2, 2):04x})")

    failed_module = ""
    for name in i915lib.load_order():
        if i915lib.module_loaded(name):
            continue
        ok, secs, msg = i915lib.insmod(name, INSMOD_TIMEOUT)
        tap.diag(f"insmod {name}: ok in {secs:.2f} s" if ok else f"insmod {name}: FAILED in {secs:.2f} s ({msg})")
        if not ok:
            failed_module = f"insmod {name}: {msg}"
            break
    if not failed_module:
        i915lib.wait_for(lambda: bdf in i915lib.bound_devices() and "renderD128" in i915lib.dri_nodes(), 10.0)
    with open("/proc/uptime") as f:
        tap.diag(f"probe over at guest uptime {f.read().split()[0]} s")
    recs = i915lib.kmsg_settle()
    # Indented lines are the call-trace frames of a WARN, not messages of their own.
    drm = [r for r in recs if DRM_LINE.search(r[2]) and not r[2].startswith(" ")]
    lines = [text for _level, _secs, text in drm]
    loud = [i915lib.format_record(r) for r in drm if r[0] <= i915lib.KERN_WARNING and not FIRMWARE_ABSENT.search(r[2])]
    nodes = i915lib.dri_nodes()
    rps_fail, freqs = rps_frequencies()

    results = {
        "modules": failed_module,
        "bound": "" if bdf in i915lib.bound_devices() else f"bound: {i915lib.bound_devices() or 'none'}",
        "detected": "" if grep(lines, r"Virtual GPU for Intel GVT-g detected") else "not in dmesg",
        "gt-not-wedged": wedged(),
        "no-wedged-lines": absent(lines, r"wedged"),
        "irq-regs-zero": absent(lines, r"Interrupt register 0x[0-9a-f]+ is not zero"),
        "no-timeouts": absent(lines, r"timed out|timeout"),
        "workarounds-kept": absent(lines, r"workaround lost"),
        "no-unclaimed": absent(lines, r"unclaimed"),
        "no-drm-warnings": f"{len(loud)} line(s), first: {loud[0]}" if loud else "",
        "card0": "" if "card0" in nodes else f"/dev/dri holds {nodes or 'nothing'}",
        "renderD128": "" if "renderD128" in nodes else f"/dev/dri holds {nodes or 'nothing'}",
        "rps-freqs": rps_fail,
    }
    for key, desc in CHECKS:
        tap.ok(not results[key], desc, results[key])

    tap.diag(f"/dev/dri: {' '.join(nodes) or '(empty)'}")
    tap.diag("RPS (MHz): " + ", ".join(f"{k[3:-9]} {v}" for k, v in freqs.items()))
    groups = distinct(drm)
    tap.diag(f"i915/DRM kernel messages: {len(drm)}, {len(groups)} distinct (first of each, with its count; "
             "the whole log is in dmesg.log):")
    for count, rec in groups:
        times = f"x{count}" if count > 1 else ""
        tap.diag(f"  {times:>5} {i915lib.format_record(rec)}")
    return tap.finish()


if __name__ == "__main__":
    started = time.monotonic()
    rc = main()
    print(f"# test_i915.py ran {time.monotonic() - started:.1f} s")
    sys.exit(rc)
