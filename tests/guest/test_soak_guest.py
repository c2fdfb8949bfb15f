"""The soak (guest-tests/guest/test_soak.py) with the device model's resident memory sampled
from the host: before the guest boots, after the guest's warm-up and at the end of its
workloads (the guest asks over the line channel and waits, so the device still holds the
soak's state), and after QEMU exited (the device reset dropped that state). The growth from
the warm-up to the end must stay within RSS_GROWTH_BOUND.

The bounded form runs in the lane (2,000 workloads); the full form is one variable away:
DEVMODEL_SOAK_WORKLOADS=20000 ci/test tests/guest/test_soak_guest.py -n 0
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import harness

pytestmark = pytest.mark.guest

SCRIPT = "soak"
DEFAULT_WORKLOADS = 2000
RSS_GROWTH_BOUND = 16 << 20  # bytes: the device model's VmRSS from the warm-up to the end
BOOT_SECONDS = 120.0  # the boot and the script's setup, before its workloads
WORKLOAD_SECONDS = 0.05  # a generous bound per workload under TCG on a loaded machine


def vm_rss(pid: int) -> int:
    """The process's resident memory in bytes (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class RssSampler:
    """Answers the guest's rss-start and rss-end questions with the device model's VmRSS."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: dict[str, int] = {}

    def __call__(self, tag: str, payload: Any) -> str:
        rss = self.samples[tag] = vm_rss(self.pid)
        if tag == "rss-start":
            return f"ok VmRSS {rss >> 10} kB after {payload['workloads']} workloads"
        if tag == "rss-end":
            growth = rss - self.samples["rss-start"]
            words = (f"VmRSS {rss >> 10} kB after {payload['workloads']} workloads, {growth >> 10:+d} kB since "
                     f"the warm-up (bound {RSS_GROWTH_BOUND >> 10} kB)")
            return ("ok " if growth <= RSS_GROWTH_BOUND else "fail: ") + words
        return f"fail: unknown question {tag}"


@pytest.mark.parametrize("platform", ["bdw", "skl"])
def test_soak(platform: str, outdir: Path, guest_image: Any) -> None:
    workloads = int(os.environ.get("DEVMODEL_SOAK_WORKLOADS", DEFAULT_WORKLOADS))
    dev = harness.DeviceModel(outdir, platform=platform, log_level="info").start()
    try:
        sampler = RssSampler(dev.proc.pid)
        before = vm_rss(dev.proc.pid)
        with harness.GuestChannel() as channel:
            channel.serve(sampler)
            try:
                result = harness.run_guest([SCRIPT], outdir, timeout=BOOT_SECONDS + workloads * WORKLOAD_SECONDS,
                                           device=dev, append=f"devmodel.soak={workloads} devmodel.soak_host=1",
                                           qemu_args=channel.qemu_args())
            except harness.HarnessError as e:
                pytest.fail(f"{e}\n(logs in {outdir})", pytrace=False)
        after = vm_rss(dev.proc.pid)
    finally:
        dev.stop()
    section = result.sections.get(SCRIPT)
    print(section.text() if section else result.console)
    s = sampler.samples
    print(f"device model VmRSS: {before >> 10} kB before the boot, {s.get('rss-start', 0) >> 10} kB after the "
          f"warm-up, {s.get('rss-end', 0) >> 10} kB at the end, {after >> 10} kB after QEMU exited")
    assert not channel.errors, channel.errors
    assert list(s) == ["rss-start", "rss-end"], f"the guest asked {channel.asked}"
    problems = result.problems(SCRIPT)
    assert not problems, "\n".join(problems) + f"\n(logs in {outdir})"
    assert s["rss-end"] - s["rss-start"] <= RSS_GROWTH_BOUND
    assert after - s["rss-start"] <= RSS_GROWTH_BOUND, "resident memory grew after the guest went away"
