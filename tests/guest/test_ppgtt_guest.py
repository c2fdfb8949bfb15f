"""The shadow PPGTT of trees a real guest builds in its own RAM (guest-tests/guest/test_ppgtt.py),
checked through the device model's inspection socket while the guest waits.

The guest announces each stage over the harness's GuestChannel (its second serial port) with
what it built: the roots, graphics addresses and the guest page each must reach (or the level
whose non-present entry must leave it on the device's scratch), the tables the shadow must
share, and the mm's expected statistics. ShadowChecker answers "ok" or "fail: why" after
checking the device's answers; the guest turns the answer into its TAP line, so a failure
shows in both places. One boot per platform.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

import harness
from devmodel.transport.control import control_path, query

pytestmark = pytest.mark.guest

SCRIPT = "ppgtt"
STAGES = [f"{tree}-{step}" for tree in ("l4", "l3") for step in ("create", "resync", "destroy-1", "destroy-2")]
LEVELS = {"L4": ["pml4", "pdp", "pd", "pt"], "L3": ["pd", "pt"]}
RESYNC_WAIT = 60.0  # seconds for the device's resync task to finish (scaled)
PAGE_SHIFT = 12


class ShadowChecker:
    """The host side of the guest's questions: checks the device's shadow for one stage."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.ctl = control_path(socket)
        self.verdicts: dict[str, str] = {}
        self.seconds: dict[str, float] = {}  # per stage: from the question to the answer
        self.cli_compared = False

    def inspect(self, what: str, *args: str) -> dict[str, Any]:
        return query(self.ctl, {"what": what, "args": list(args)})

    def __call__(self, tag: str, payload: dict[str, Any]) -> str:
        start = time.monotonic()
        problems = self.check(payload)
        verdict = "ok" if not problems else "fail: " + "; ".join(problems)
        self.verdicts[tag] = verdict
        self.seconds[tag] = time.monotonic() - start
        return verdict

    def check(self, payload: dict[str, Any]) -> list[str]:
        roots = ",".join(payload["roots"])
        want_mm = payload["mm"]
        checks = payload.get("checks", [])
        if want_mm is None:
            answer = self.inspect("ppgtt", roots, "0x0")
            if "no shadow PPGTT" not in answer.get("error", ""):
                return ["the shadow mm is still there after the last destroy: %s" % answer.get("mm", answer)]
            return []
        answer = self.settled(roots, checks[0]["gma"] if checks else "0x0", want_mm.get("resyncs", 0))
        if "error" in answer:
            return ["no shadow: %s" % answer["error"]]
        problems = self.check_mm(answer["mm"], want_mm)
        for c in checks:
            found = self.check_address(payload["kind"], roots, c)
            problems += ["%s (%s): %s" % (c["what"], c["gma"], p) for p in found]
        for group in payload.get("same_table", []):
            problems += self.check_shared(roots, group)
        if checks and not self.cli_compared:
            self.cli_compared = True
            problems += self.compare_cli(roots, checks[0]["gma"])
        return problems

    def settled(self, roots: str, gma: str, resyncs: int) -> dict[str, Any]:
        """The answer for gma once the mm has finished its resyncs-th resync (it is a loop task
        the notification started), or the last answer at the deadline."""
        deadline = time.monotonic() + RESYNC_WAIT * harness.timeout_scale()
        while True:
            answer = self.inspect("ppgtt", roots, gma)
            done = "mm" in answer and answer["mm"]["resyncs"] >= resyncs
            if done or time.monotonic() > deadline:
                return answer
            time.sleep(0.05)

    @staticmethod
    def check_mm(mm: dict[str, Any], want: dict[str, Any]) -> list[str]:
        problems = ["mm %s %s, want %s" % (k, mm[k], want[k])
                    for k in ("claims", "resyncs", "tables", "references") if k in want and mm[k] != want[k]]
        last = mm["last_resync"]
        if "tables" in want and last["tables"] != want["tables"]:
            # The i915 pattern: a resync visits each distinct table once, never each path to it.
            problems.append("the last resync visited %d tables, want %d" % (last["tables"], want["tables"]))
        if want.get("changed") is not None:
            got = [last["tables_changed"], last["entries_changed"]]
            if got != want["changed"]:
                problems.append("the resync changed %s (tables, entries), want %s" % (got, want["changed"]))
        return problems

    def check_address(self, kind: str, roots: str, c: dict[str, Any]) -> list[str]:
        a = self.inspect("ppgtt", roots, c["gma"])
        if "error" in a:
            return [a["error"]]
        guest_end, shadow = a["guest_path"][-1], a["shadow_path"]
        if "scratch_at" in c:
            level = c["scratch_at"]
            problems = []
            if a["host_frame"] != "scratch":
                problems.append("host frame %s, want scratch" % a["host_frame"])
            if guest_end.get("level") != level or int(guest_end.get("entry", "0x1"), 16) & 1:
                problems.append("the guest walk ends at %s, want a non-present %s entry" % (guest_end, level))
            below = LEVELS[kind].index(level) + 1
            flags = [s["scratch_table"] for s in shadow]
            if flags != [False] * below + [True] * (len(flags) - below):
                problems.append("shadow tables that are the device's scratch tables: %s, want those below %s"
                                % ([s["level"] for s in shadow if s["scratch_table"]], level))
            return problems
        problems = []
        gfn = int(c["page_gfn"], 16)
        if guest_end.get("page_gfn") != c["page_gfn"]:
            problems.append("the guest walk ends at %s, want page gfn %s" % (guest_end, c["page_gfn"]))
        if a["host_frame"] == "scratch":
            return problems + ["mapped to the scratch page"]
        if any(s["scratch_table"] for s in shadow):
            problems.append("the shadow path goes through a scratch table: %s" % shadow)
        window = a["dma_window"]
        span = (0, 0) if window is None else (int(window["iova"], 16), int(window["size"], 16))
        if not span[0] <= gfn << PAGE_SHIFT < span[0] + span[1]:
            problems.append("host frame %s is in DMA window %s, which does not hold gfn %#x"
                            % (a["host_frame"], window, gfn))
        ggtt = self.inspect("ggtt", c["ggtt_gma"])
        if ggtt.get("guest_gfn") != c["page_gfn"]:
            problems.append("the guest's GGTT entry at %s holds gfn %s, not %s"
                            % (c["ggtt_gma"], ggtt.get("guest_gfn"), c["page_gfn"]))
        elif ggtt["host_frame"] != a["host_frame"]:
            problems.append("host frame %s, but the GGTT maps the same guest page to %s"
                            % (a["host_frame"], ggtt["host_frame"]))
        if a["writable"] != c["writable"]:
            problems.append("writable %s, want %s" % (a["writable"], c["writable"]))
        return problems

    def check_shared(self, roots: str, group: dict[str, Any]) -> list[str]:
        """Addresses that reach the same guest table at ``level`` reach the same shadow table."""
        level, found = group["level"], {}
        for gma in group["gmas"]:
            a = self.inspect("ppgtt", roots, gma)
            step = next((s for s in a.get("shadow_path", []) if s["level"] == level), None)
            found[gma] = None if step is None else step["table_hfn"]
        if len(set(found.values())) != 1 or None in found.values():
            return ["one guest %s table, but shadow tables %s" % (level, found)]
        return []

    def compare_cli(self, roots: str, gma: str) -> list[str]:
        """`devmodel inspect ... ppgtt ROOTS GMA` prints what the socket answers."""
        root = harness.repo_root()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), str(root / "plugins")]))
        r = subprocess.run([sys.executable, "-m", "devmodel", "inspect", "--socket", self.socket, "ppgtt", roots, gma],
                           capture_output=True, text=True, timeout=60 * harness.timeout_scale(), env=env, check=False)
        if r.returncode:
            return ["devmodel inspect ppgtt failed: %s" % r.stderr.strip()]
        printed, answer = json.loads(r.stdout), self.inspect("ppgtt", roots, gma)
        keys = ("guest_path", "shadow_path", "host_frame", "writable")
        if any(printed[k] != answer[k] for k in keys):
            return ["devmodel inspect printed %s, the socket answers %s" % (printed, answer)]
        return []


@pytest.mark.parametrize("platform", ["bdw", "skl"])
def test_shadow_ppgtt_of_trees_the_guest_builds(platform, guest_image, outdir):
    opts = harness.script_options(SCRIPT)
    with harness.DeviceModel(outdir, platform=platform) as dev, harness.GuestChannel() as channel:
        checker = ShadowChecker(dev.socket)
        channel.serve(checker)
        try:
            result = harness.run_guest([SCRIPT], outdir, timeout=opts["timeout"], device=dev,
                                       qemu_args=channel.qemu_args())
        except harness.HarnessError as e:
            pytest.fail("%s\n(logs in %s)" % (e, outdir), pytrace=False)
    section = result.sections.get(SCRIPT)
    print(section.text() if section else result.console)
    print("QEMU start to exit %.2f s; host checks: %s" % (
        result.seconds, ", ".join("%s %.2f s" % kv for kv in checker.seconds.items())))
    assert not channel.errors, "the host checker failed:\n" + "\n".join(channel.errors)
    assert channel.asked == STAGES, "the guest asked for %s" % channel.asked
    bad = {tag: v for tag, v in checker.verdicts.items() if v != "ok"}
    problems = result.problems(SCRIPT)
    if bad or problems:
        pytest.fail("shadow PPGTT checks failed:\n  %s\n  %s\n--- guest output ---\n%s\n(logs in %s)"
                    % ("\n  ".join("%s: %s" % kv for kv in bad.items()), "\n  ".join(problems),
                       section.text() if section else "", outdir), pytrace=False)
