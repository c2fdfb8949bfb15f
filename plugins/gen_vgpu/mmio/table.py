"""The register table: the single declaration of what BAR0's registers are, per platform.

``AREAS`` lists each area's rows (``row.Row``); every BAR0 register the device implements is
one row, or one element of an array row. From it come:

- the device's register file (:func:`populate`): each row's registers with their reset value,
  write mask, masked / write-1-to-clear behaviour and the handler a device part supplies by
  name;
- what a command stream may load or store (:func:`may_write`, :func:`may_read`: the command
  scanner's LRI and SRM checks);
- the ranges the unlisted-register log leaves alone (:meth:`RegisterTable.plain_ranges`);
- ``docs/registers.md`` (``regdoc.py``; ``python -m gen_vgpu.mmio.regdoc`` prints it, and a
  test fails when the file differs).

A new area adds a module of rows beside these (constants and ``ROWS``, no behaviour), one
entry in ``AREAS``, and the handlers its behaviour supplies to :func:`populate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from devmodel.device.registers import Register, RegisterFile

from ..engines import ENGINES, EngineId, EngineInfo
from ..platform import Platform
from . import display_regs, engine_regs, gt, gt_status, irq, pvinfo, workarounds
from .row import ALL_PLATFORMS, Cmd, Hooks, HookTable, Kind, Row

__all__ = [
    "AREAS",
    "TABLE",
    "Declared",
    "RegisterTable",
    "command_access",
    "may_read",
    "may_write",
    "populate",
    "table_for",
]

AREAS: tuple[tuple[str, tuple[Row, ...]], ...] = (
    ("PVINFO (contract §2.1)", pvinfo.ROWS),
    ("Interrupts (§4.4)", irq.ROWS),
    ("Per-engine registers (§4.1), at each engine's base", engine_regs.ROWS),
    ("GT registers (§4.3)", gt.ROWS),
    ("Render registers i915 loads from command streams", workarounds.ROWS),
    ("Registers i915 reads to report: error capture, debugfs, RPS", gt_status.ROWS),
    ("Display (§6); its interrupt banks are with the interrupts", display_regs.ROWS),
)
TABLE: tuple[Row, ...] = tuple(row for _, rows in AREAS for row in rows)


@dataclass(frozen=True)
class Declared:
    """One register of a platform's table: its row, BAR0 offset, name and engine."""

    row: Row
    offset: int
    name: str
    engine: EngineInfo | None


def _expand(row: Row) -> Iterator[tuple[int, str, EngineInfo | None]]:
    """(BAR0 offset, name, engine) of every dword a row covers."""
    for engine in ENGINES if row.engine else (None,):
        base = engine.base if engine is not None else 0
        tag = engine.name if engine is not None else None
        for i, off in enumerate(row.offsets()):
            index = i if row.kind is Kind.REGISTER else 0
            yield base + off, row.register_name(index, tag), engine


class RegisterTable:
    """The table's rows on one platform, with the display or headless, expanded to registers
    and checked: no register is declared twice, every range row's dwords are whole."""

    def __init__(self, platform: Platform, rows: tuple[Row, ...] = TABLE, *, display: bool = False) -> None:
        self.platform = platform
        self.display = display
        self.rows = tuple(row for row in rows if platform in row.platforms and row.display in (None, display))
        self.registers: dict[int, Declared] = {}
        for row in self.rows:
            if row.kind is not Kind.REGISTER:
                continue
            for offset, name, engine in _expand(row):
                if offset in self.registers:
                    raise ValueError(f"{name} at {offset:#x}: already declared as {self.registers[offset].name}")
                self.registers[offset] = Declared(row, offset, name, engine)
        for row in self.rows:
            if row.kind is Kind.FILL:
                for offset, name, engine in _expand(row):
                    self.registers.setdefault(offset, Declared(row, offset, f"{name}+{offset & 0xFFF:#x}", engine))

    def plain_ranges(self) -> list[tuple[int, int, str]]:
        """[start, end) of the ranges listed as plain storage without a row per register."""
        out = []
        for row in self.rows:
            if row.kind is Kind.PLAIN:
                for engine in ENGINES if row.engine else (None,):
                    base = engine.base if engine is not None else 0
                    out.append((base + row.offset, base + row.offset + row.size, row.name))
        return out

    def register(
        self,
        declared: Declared,
        hooks: HookTable,
        engine_hooks: Mapping[EngineId, HookTable],
        values: Mapping[str, int],
    ) -> Register:
        row = declared.row
        handler = Hooks()
        if row.handler is not None:
            own = engine_hooks.get(declared.engine.id, {}) if declared.engine is not None else {}
            found = own.get(row.handler) or hooks.get(row.handler)
            if found is None:
                raise LookupError(f"{declared.name}: no device part supplies the handler {row.handler!r}")
            handler = found
        if row.compiled and not handler.effect:
            raise LookupError(f"{declared.name}: compiled, but {row.handler!r} has no compiled effect")
        if handler.effect and not row.compiled:
            raise LookupError(f"{declared.name}: {row.handler!r} has a compiled effect the row does not declare")
        return Register(
            declared.offset,
            declared.name,
            reset=self.reset_value(row, values),
            rw_mask=row.rw_mask,
            masked=row.masked,
            w1c=row.w1c,
            read=handler.read,
            write=handler.write,
            published=row.published,
            gate=handler.gate if row.published else None,
            effect=handler.effect,
        )

    def reset_value(self, row: Row, values: Mapping[str, int]) -> int:
        reset = row.reset
        if isinstance(reset, int):
            return reset
        if isinstance(reset, str):
            return values[reset]
        return reset[self.platform]


def _merge(tables: Iterable[HookTable]) -> dict[str, Hooks]:
    out: dict[str, Hooks] = {}
    for table in tables:
        for name, hooks in table.items():
            if name in out:
                raise LookupError(f"two device parts supply the handler {name!r}")
            out[name] = hooks
    return out


def populate(
    rf: RegisterFile,
    table: RegisterTable,
    hooks: Iterable[HookTable],
    engine_hooks: Iterable[Mapping[EngineId, HookTable]] = (),
    values: Mapping[str, int] | None = None,
) -> None:
    """Declare every register of ``table`` in ``rf``. The device parts supply the handlers
    the rows name: ``hooks`` for any register, ``engine_hooks`` per engine (looked up first
    for per-engine rows); ``values`` the resets rows name. A handler no row names is refused
    as a row naming a handler nobody supplies is: both are a row and a part that disagree."""
    common = _merge(hooks)
    per_engine_sources = list(engine_hooks)
    per_engine = {e.id: _merge(source.get(e.id, {}) for source in per_engine_sources) for e in ENGINES}
    named = {row.handler for row in table.rows if row.handler is not None}
    supplied = set(common).union(*(set(h) for h in per_engine.values()))
    if supplied - named:
        raise LookupError(f"handlers no row of the table names: {sorted(supplied - named)}")
    resets = values or {}
    wanted = {row.reset for row in table.rows if isinstance(row.reset, str)}
    if wanted - set(resets):
        raise LookupError(f"reset values not supplied: {sorted(wanted - set(resets))}")
    for declared in table.registers.values():
        rf.add(table.register(declared, common, per_engine, resets))


_TABLES = {
    (platform, display): RegisterTable(platform, display=display) for platform in Platform for display in (False, True)
}


def table_for(platform: Platform, display: bool) -> RegisterTable:
    """The platform's registers with the display (contract §6) or headless."""
    return _TABLES[platform, display]


# --- what a command stream may load and store ------------------------------------------------


def _cmd_access(rows: tuple[Row, ...]) -> tuple[dict[EngineId, frozenset[int]], dict[EngineId, frozenset[int]]]:
    """Per engine, the registers it may write and read. Range rows first, then registers,
    which override the range they sit in. The scanner does not know the platform: a row with
    command access must exist on every platform."""
    access: dict[EngineId, dict[int, Cmd]] = {e.id: {} for e in ENGINES}
    ordered = [row for row in rows if row.kind is not Kind.REGISTER] + [r for r in rows if r.kind is Kind.REGISTER]
    for row in ordered:
        if row.cmd is not Cmd.NONE and (row.platforms != ALL_PLATFORMS or row.display is not None):
            raise ValueError(f"{row.name}: command access on some platforms or display choices only")
        for offset, _name, engine in _expand(row):
            if engine is not None:
                access[engine.id][offset] = row.cmd
            else:
                for engine_id, table in access.items():
                    table[offset] = row.cmd if engine_id in row.cmd_engines else Cmd.NONE
    writable = {e: frozenset(o for o, c in t.items() if Cmd.WRITE in c) for e, t in access.items()}
    readable = {e: frozenset(o for o, c in t.items() if Cmd.READ in c) for e, t in access.items()}
    return writable, readable


# One set lookup per register on the scanner's path.
_WRITABLE, _READABLE = _cmd_access(TABLE)


def may_write(engine: EngineId, register: int) -> bool:
    """Whether MI_LOAD_REGISTER_IMM on ``engine`` may write ``register``."""
    return register in _WRITABLE[engine]


def may_read(engine: EngineId, register: int) -> bool:
    """Whether MI_STORE_REGISTER_MEM on ``engine`` may read ``register``."""
    return register in _READABLE[engine]


def command_access(engine: EngineId) -> tuple[frozenset[int], frozenset[int]]:
    """Every register a command stream on ``engine`` may write, and every one it may read:
    the sets may_write and may_read answer from (the compiled scanner's bitmaps)."""
    return _WRITABLE[engine], _READABLE[engine]
