"""The per-engine dispatch tables over the command rows: one list index on DW0 >> 22 (client
and the opcode bits every client shares), then a header match, so a scan makes no per-dword
objects."""

from __future__ import annotations

from .engines import Engine
from .opcodes import SPECS
from .records import Command
from .reject import CommandRejected, FieldError
from .spec import Check, CommandSpec, Decoder, Dwords

__all__ = ["DISPATCH", "KEY_SHIFT", "Entry", "command_name", "decode_one", "header", "lookup"]

KEY_SHIFT = 22


class Entry:
    """A dispatch slot: a row, what of it the scanner needs per command, whether this engine
    may run it, and the next candidate for the same slot when the header does not match."""

    __slots__ = ("allowed", "check", "decode", "fallback", "header", "length", "mask", "reserved", "skip", "spec")

    def __init__(self, spec: CommandSpec, allowed: bool, fallback: Entry | None) -> None:
        self.spec = spec
        self.header = spec.header
        self.mask = spec.mask
        self.decode: Decoder = spec.decode
        self.check: Check | None = spec.check
        self.allowed = allowed
        self.skip = spec.skip
        self.fallback = fallback
        self.reserved = spec.reserved_bits(0xFFFFFFFF)  # the header bits that must be clear
        self.length = spec.length


def _build(engine: Engine) -> list[Entry | None]:
    table: list[Entry | None] = [None] * (1 << (32 - KEY_SHIFT))
    # Least specific first, so that more specific specs end up in front of each slot's chain.
    for spec in reversed(SPECS):
        key_mask = spec.mask >> KEY_SHIFT
        key_bits = spec.header >> KEY_SHIFT
        for key in range(len(table)):
            if key & key_mask == key_bits:
                table[key] = Entry(spec, engine in spec.engines, table[key])
    return table


DISPATCH: dict[Engine, list[Entry | None]] = {e: _build(e) for e in Engine}


def lookup(table: list[Entry | None], dw0: int) -> Entry | None:
    entry = table[dw0 >> KEY_SHIFT]
    while entry is not None and dw0 & entry.mask != entry.header:
        entry = entry.fallback
    return entry


def header(table: list[Entry | None], engine: Engine, dw0: int) -> tuple[Entry, int]:
    """The dispatch entry for a header and the command's length, or FieldError."""
    entry = lookup(table, dw0)
    if entry is None:
        raise FieldError(f"unknown command header {dw0:#010x}")
    if not entry.allowed:
        raise FieldError(f"not allowed on {engine.name}")
    if dw0 & entry.reserved:
        raise FieldError(f"reserved header bits {dw0 & entry.reserved:#x} set in {dw0:#010x}")
    return entry, entry.length(dw0)


def command_name(engine: Engine, dw0: int) -> str:
    entry = lookup(DISPATCH[engine], dw0)
    return "unknown command" if entry is None else entry.spec.name


def decode_one(buf: Dwords, pos: int, engine: Engine, end: int | None = None) -> tuple[Command, int]:
    """Decode the command at ``buf[pos]`` as ``engine`` would: its record and its length.

    Validates the header and the fields only; the register allow-list, GGTT ranges and batch
    nesting need a scan's context (frame.py). Raises CommandRejected (level 0, offset from buf[0]).
    """
    end = len(buf) if end is None else end
    dw0 = buf[pos]
    try:
        entry, n = header(DISPATCH[engine], engine, dw0)
        if pos + n > end:
            raise FieldError(f"{n}-dword command runs past the end of the buffer ({end - pos} dwords left)")
        record: Command = entry.decode(buf, pos, n, dw0)
        return record, n
    except FieldError as e:
        raise CommandRejected(
            str(e), command=command_name(engine, dw0), offset=pos * 4, engine=engine, level=0, header=dw0
        ) from None
