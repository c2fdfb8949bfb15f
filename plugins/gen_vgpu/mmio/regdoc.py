"""docs/registers.md, rendered from the register table (table.py)."""

from __future__ import annotations

import sys

from .row import ALL_PLATFORMS, Cmd, Kind, Row
from .table import AREAS

__all__ = ["markdown"]


def _offset_text(row: Row) -> str:
    where = f"base + 0x{row.offset:03X}" if row.engine else f"0x{row.offset:05X}"
    if row.kind is not Kind.REGISTER:
        return f"{where} to +0x{row.size:X}"
    if row.count > 1:
        if row.first:
            return f"{where} + 0x{row.stride:X}·(i-{row.first}), {row.first} <= i < {row.first + row.count}"
        return f"{where} + 0x{row.stride:X}·i, i < {row.count}"
    return where


def _reset_text(row: Row) -> str:
    if isinstance(row.reset, str):
        return f"*{row.reset}*"
    if isinstance(row.reset, int):
        return f"0x{row.reset:X}" if row.reset else "0"
    return ", ".join(f"{p.name} 0x{v:X}" for p, v in sorted(row.reset.items(), key=lambda pv: pv[0].value))


def _behaviour_text(row: Row) -> str:
    parts = []
    if row.kind is Kind.PLAIN:
        parts.append("plain range")
    elif row.kind is Kind.ACCESS:
        return "(unnamed registers: unlisted)"
    elif row.kind is Kind.FILL:
        parts.append("every other dword")
    if row.rw_mask == 0 and not row.w1c:
        parts.append("read-only")
    elif row.rw_mask != 0xFFFFFFFF:
        parts.append(f"bits 0x{row.rw_mask:X}")
    if row.masked:
        parts.append("masked")
    if row.w1c:
        parts.append("W1C" if row.w1c == 0xFFFFFFFF else f"W1C 0x{row.w1c:X}")
    return ", ".join(parts) or "all bits"


def _cmd_text(row: Row) -> str:
    if row.cmd is Cmd.NONE:
        return ""
    what = {Cmd.READ: "SRM", Cmd.WRITE: "LRI", Cmd.RW: "LRI, SRM"}[row.cmd]
    if row.engine:
        return what + " (own engine)"
    return what + " (" + ", ".join(e.name for e in sorted(row.cmd_engines)) + ")"


def _handler_text(row: Row) -> str:
    if row.handler is None:
        return ""
    marks = [m for m, on in (("published", row.published), ("compiled", row.compiled)) if on]
    return ", ".join([f"`{row.handler}`", *marks])


def _platforms_text(row: Row) -> str:
    if row.platforms == ALL_PLATFORMS:
        return "all"
    return ", ".join(p.name for p in sorted(row.platforms, key=lambda p: p.value))


def _display_text(row: Row) -> str:
    if row.display is None:
        return "either"
    return "with" if row.display else "headless"


def markdown() -> str:
    out = [
        "# BAR0 registers",
        "",
        "Generated from the register table (`plugins/gen_vgpu/mmio/table.py`) by",
        "`PYTHONPATH=plugins python -m gen_vgpu.mmio.regdoc > docs/registers.md`; a test fails",
        "when this file is stale.",
        "",
        "Every register the vGPU implements is one row here (an array row is several registers).",
        "A register no row declares is plain storage: it reads what was last written, 0 after",
        "reset, and the unlisted-register log names it once (contract §2). *Commands*: what a",
        "command stream may do to the register — LRI (MI_LOAD_REGISTER_IMM) writes it, SRM",
        "(MI_STORE_REGISTER_MEM) reads it; the command scanner refuses every other register.",
        "*Writes*: the bits a write changes (read-only: none), masked (the upper 16 bits of a",
        "write select the lower bits it changes), W1C (a 1 clears the bit). *Handler*: the",
        "behaviour a device part supplies under that name. A reset in italics is chosen per vGPU",
        "(its graphics-memory split). *Display*: whether the row exists with the display",
        "(contract §6, `--display dp`), only headless (`--display none`, the display fused off),",
        "or either way.",
        "",
        "The compiled accelerator serves every row without a handler itself (plain, read-only,",
        "masked, W1C, partly writable: the register file's per-dword map and write classes,",
        "built from these rows). A row with a handler goes to Python for its writes, and for",
        "its reads when the handler computes the read value, unless the row is *published*:",
        "the device part that owns the state behind the value writes it into the register's",
        "storage whenever that state changes, and the accelerator reads storage (except while",
        "the part says a read has work to do first: the display's frame clock, while a pipe",
        "runs, for the master interrupt register and the display IIRs). A handler for writes",
        "alone leaves reads to storage, and the accelerator serves them. A *compiled* row's",
        "handler has its write behaviour in the accelerator too (the interrupt registers: the",
        "store, then the interrupt line's re-evaluation, which publishes the master's status),",
        "which serves a 4-byte or narrower write itself unless it raises or lowers the line.",
        "",
        "*Adding an area*: a module of rows beside these in",
        "`plugins/gen_vgpu/mmio/` (its offsets and `ROWS`, no behaviour), one entry in",
        "`AREAS` in `table.py`, and a device part whose `hooks()` (or per-engine hooks) supply",
        "the handlers its rows name, passed to `populate` in `device.py`. The build refuses a",
        "register declared twice, a handler nobody supplies and one no row names; then",
        "regenerate this file.",
        "",
    ]
    for title, rows in AREAS:
        out += [f"## {title}", ""]
        out += [
            "| Offset | Register | Platforms | Display | Reset | Writes | Commands | Handler | Notes |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            cells = [
                _offset_text(row),
                row.name.replace("{i}", "*i*"),
                _platforms_text(row),
                _display_text(row),
                _reset_text(row),
                _behaviour_text(row),
                _cmd_text(row),
                _handler_text(row),
                row.note.replace("|", "\\|"),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(markdown())
