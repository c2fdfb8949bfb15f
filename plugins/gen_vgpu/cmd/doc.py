"""docs/commands.md's command table, generated from the rows of opcodes.py.

``python -m gen_vgpu.cmd.doc docs/commands.md`` rewrites the table between its markers; a
test fails when the file differs from what the rows give.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .engines import Engine
from .opcodes import ALL_ENGINES, SPECS
from .spec import CommandSpec, LengthRule

__all__ = ["BEGIN", "END", "render", "table"]

BEGIN = "<!-- The command table is generated from cmd/opcodes.py (python -m gen_vgpu.cmd.doc); edit the rows. -->"
END = "<!-- End of the generated command table. -->"


def _dw0(spec: CommandSpec) -> str:
    if spec.doc_dw0:
        return spec.doc_dw0
    if spec.rule is LengthRule.FIELD:
        return f"{spec.header | (min(spec.lengths) - 2):#010x}"
    return f"{spec.header:#010x}"


def _length(spec: CommandSpec) -> str:
    if spec.rule is LengthRule.FIELD:
        return " or ".join(str(n) for n in sorted(spec.lengths))
    return str(spec.rule.value)


def _engines(spec: CommandSpec) -> str:
    if spec.engines == ALL_ENGINES:
        return "all"
    return ", ".join(e.name for e in Engine if e in spec.engines)


def _code(name: str | None) -> str:
    return "–" if name is None else f"`{name}`"  # noqa: RUF001 (the docs' dash for "none")


def table() -> str:
    columns = ("Command", "DW0", "Length (dwords)", "Flags in DW0", "Engines", "Record", "Scanner's check")
    rows = ["| " + " | ".join((*columns, "Handler", "What the engine does")) + " |", "|---" * 9 + "|"]
    for spec in SPECS:
        check = None if spec.check is None else spec.check.__name__
        cells = (
            spec.name,
            _dw0(spec),
            _length(spec),
            spec.doc_flags,
            _engines(spec),
            f"`{spec.record.__name__}`",
            _code(check),
            _code(spec.handler),
            spec.doc_does,
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def render(doc: str) -> str:
    """``doc`` with the text between the markers replaced by the table."""
    head, sep, rest = doc.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError("the command table's markers are missing")
    return head + BEGIN + "\n" + table() + END + tail


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    path.write_text(render(path.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
