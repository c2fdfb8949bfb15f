"""The compiled accelerator carries a digest of the sources it was built from, and a module
built from other sources than the checkout's accel/ is never used: refused loudly when asked
for, left for the Python path (with an error in the log) otherwise."""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path

import pytest

from devmodel import accel
from devmodel.transport.server import Server
from gen_vgpu import GenVgpu


def test_the_installed_accelerator_was_built_from_this_tree() -> None:
    module = accel.load(True)
    assert module is not None, "the compiled accelerator is not installed: run ci/setup-python"
    assert accel.staleness(module) is None
    built = module.ffi.string(module.lib.dm_source_digest())
    assert built.decode() == accel.source_digest(accel.SOURCE_DIR)


@pytest.fixture
def edited_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of accel/ with one line of dm_accel.c changed, standing for the checkout's."""
    tree = tmp_path / "accel"
    shutil.copytree(accel.SOURCE_DIR, tree)
    c_file = tree / "dm_accel.c"
    c_file.write_text(c_file.read_text() + "\n/* an edit not yet rebuilt */\n")
    monkeypatch.setattr(accel, "SOURCE_DIR", tree)
    return tree


def test_an_edited_source_makes_the_module_stale(edited_tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert accel.source_digest(edited_tree) != accel.source_digest(Path(accel.__file__).parents[1] / "accel")
    with pytest.raises(accel.StaleAccelerator, match="rerun ci/setup-python"):
        accel.load(True)
    with caplog.at_level(logging.ERROR, logger="devmodel.accel"):
        assert accel.load(None) is None  # by default: the Python path, said in the log
    assert "built from other sources" in caplog.text
    assert accel.load(False) is None


def test_a_server_asked_for_a_stale_accelerator_does_not_start(edited_tree: Path) -> None:
    a, b = socket.socketpair()
    try:
        with pytest.raises(accel.StaleAccelerator):
            Server(GenVgpu(), a, accel=True)
    finally:
        a.close()
        b.close()
