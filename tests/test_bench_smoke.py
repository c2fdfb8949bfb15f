"""Every benchmark in bench/ runs once in its short form, so none of them rots unnoticed.

No figure is asserted (speed lives in the benchmarks' printed output, not in tests); a
benchmark passes when it exits 0 and prints something.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# bench_*.py print figures (bench/run runs them); profile_messages.py prints a profile.
BENCHES = sorted([*(ROOT / "bench").glob("bench_*.py"), ROOT / "bench" / "profile_messages.py"])
# Benchmarks that boot a guest belong to the guest lane (they need QEMU and the guest image).
GUEST_BENCHES = {"bench_guest_mmio.py", "bench_i915.py"}


def _param(path: Path) -> object:
    marks = [pytest.mark.guest] if path.name in GUEST_BENCHES else []
    return pytest.param(path, id=path.stem, marks=marks)


def test_every_benchmark_is_found() -> None:
    assert {p.name for p in BENCHES} >= {"bench_messages.py", *GUEST_BENCHES}


@pytest.mark.parametrize("bench", [_param(p) for p in BENCHES])
def test_benchmark_runs_in_short_form(bench: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(bench), "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{bench.name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{bench.name} printed nothing"
