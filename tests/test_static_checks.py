"""The type checker and the linter over the whole tree, with the settings in pyproject.toml.

Run as tests so that `pytest` (and so `ci/test`) holds the tree to them: a finding fails the
test with the checker's own report. Both come pinned from the test extra; nothing is cached
in the tree (mypy checks all of it from scratch in a few seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHECKERS = {
    "mypy": ["mypy", "--cache-dir", os.devnull],
    "ruff": ["ruff", "check", "--no-cache", "."],
}


# A hang guard only: mypy needs about 8 s of CPU for the tree, but took 111 s of wall time while
# other work kept the 2-core machine at a load average of 12, past the suite's 120 s guard.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_tree_is_clean(name: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", *CHECKERS[name]], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, "%s found problems:\n%s%s" % (name, r.stdout, r.stderr)
