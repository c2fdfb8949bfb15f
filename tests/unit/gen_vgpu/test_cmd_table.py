"""The command table is one row per command, the engine binds every row's handler, and
docs/commands.md shows exactly what the rows say."""

from __future__ import annotations

from pathlib import Path

from gen_vgpu.cmd import doc
from gen_vgpu.cmd.opcodes import SPECS
from gen_vgpu.engine import run

DOC = Path(__file__).resolve().parents[3] / "docs" / "commands.md"


def test_docs_command_table_is_generated_from_the_rows() -> None:
    text = DOC.read_text()
    assert text == doc.render(text), "docs/commands.md is stale: run python -m gen_vgpu.cmd.doc docs/commands.md"


def test_a_stale_table_is_noticed() -> None:
    text = DOC.read_text()
    stale = text.replace("| MI_USER_INTERRUPT |", "| MI_USER_INTERRUPTS |")
    assert stale != text and doc.render(stale) != stale


def test_one_row_per_command_and_record() -> None:
    assert len({s.name for s in SPECS}) == len(SPECS)
    assert len({(s.header, s.mask) for s in SPECS}) == len(SPECS)
    handled = [s.record for s in SPECS if s.handler is not None]
    assert len(set(handled)) == len(handled)


def test_the_engine_binds_each_rows_handler() -> None:
    for spec in SPECS:
        if spec.handler is None:
            assert spec.skip and spec.record not in run._HANDLERS
        else:
            assert run._HANDLERS[spec.record] is getattr(run._Run, spec.handler), spec.name
