"""One row of the register table (table.py): everything about one register, or one array or
range of them, that the device, the command scanner, the trace and the docs need.

A row declares *what* a register is; *what it does* beyond storage is a named handler that a
part of the device (the interrupts, an engine's execlist, the GT block, the PVINFO
notification) supplies when the register file is built. A row names its handler, the part
supplies it under that name, and the build refuses a name either side leaves unmatched.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from devmodel.device.registers import ReadGate, ReadHook, WriteHook

from ..engines import EngineId
from ..platform import Platform

__all__ = ["ALL_PLATFORMS", "BDW", "RO", "SKL", "Cmd", "Hooks", "Kind", "Reset", "Row"]

ALL_PLATFORMS = frozenset(Platform)
BDW = frozenset({Platform.BDW})
SKL = frozenset({Platform.SKL})
RO = 0  # rw_mask of a read-only register: writes change nothing


class Cmd(enum.Flag):
    """What a command stream may do to the register (GVT-g's F_CMD_ACCESS, split in two)."""

    NONE = 0
    READ = enum.auto()  # the source of MI_STORE_REGISTER_MEM
    WRITE = enum.auto()  # the target of MI_LOAD_REGISTER_IMM
    RW = READ | WRITE


class Kind(enum.Enum):
    REGISTER = "register"  # each dword is declared with the row's attributes
    FILL = "fill"  # declares every dword of its span that no REGISTER row declares
    PLAIN = "plain"  # plain storage listed as a range, no declaration per dword
    ACCESS = "access"  # only command access for the dwords of its span no row declares


# A reset value: a constant, one per platform, or the name of a value the device supplies
# when it builds the file (PVINFO's graphics-memory split is chosen per vGPU).
Reset = int | Mapping[Platform, int] | str


@dataclass(frozen=True)
class Hooks:
    """A handler: what a device part does on a read (returns the value) or after a write.
    ``gate``: for a published row's handler, closed while its read must run first.
    ``effect``: the write's behaviour as the compiled accelerator runs it too (its number
    there, devmodel/device/registers.py), for a ``compiled`` row; 0: Python's alone."""

    read: ReadHook | None = None
    write: WriteHook | None = None
    gate: ReadGate | None = None
    effect: int = 0


HookTable = Mapping[str, Hooks]
HookSource = Callable[[], HookTable]


@dataclass(frozen=True)
class Row:
    name: str  # "{i}" in it is the index of an array row; per-engine rows add "(engine)"
    offset: int  # in BAR0, or from each engine's MMIO base when ``engine`` is set
    engine: bool = False  # one register per engine
    count: int = 1  # an array of ``count`` registers ``stride`` bytes apart
    stride: int = 4
    first: int = 0  # the index "{i}" names the array's first register with
    size: int = 0  # FILL and PLAIN rows: the span in bytes
    platforms: frozenset[Platform] = ALL_PLATFORMS
    # True: the row exists only with the display (contract §6), False: only headless (the
    # display fused off), None: either way.
    display: bool | None = None
    reset: Reset = 0
    rw_mask: int = 0xFFFFFFFF
    masked: bool = False  # the upper 16 bits of a write select the lower bits it changes
    w1c: int = 0  # bits a write of 1 clears
    cmd: Cmd = Cmd.NONE  # per-engine rows: for that engine's command streams
    cmd_engines: frozenset[EngineId] = frozenset()  # BAR0 rows: the engines ``cmd`` is for
    handler: str | None = None
    # The handler's read value depends on device state without changing anything, and the part
    # that owns that state publishes it into the register's storage whenever the state
    # changes: the compiled path reads storage (devmodel/device/registers.py, "published").
    published: bool = False
    # The handler's write behaviour also runs in the compiled path (its ``Hooks.effect``): a
    # write there is C's unless it changes the interrupt line, which stays Python's.
    compiled: bool = False
    kind: Kind = Kind.REGISTER
    note: str = ""

    def __post_init__(self) -> None:
        if self.offset & 3 or self.stride & 3 or self.count < 1:
            raise ValueError(f"{self.name}: offsets and strides are whole dwords")
        if self.engine and self.cmd_engines:
            raise ValueError(f"{self.name}: a per-engine row's command access is its own engine's")
        if self.kind in (Kind.PLAIN, Kind.ACCESS) and (
            self.handler or self.rw_mask != 0xFFFFFFFF or self.masked or self.w1c
        ):
            raise ValueError(f"{self.name}: a plain range has no behaviour")
        if (self.kind is Kind.REGISTER) == bool(self.size) or (self.size and self.count != 1):
            raise ValueError(f"{self.name}: a register row has a count, a range row a size")
        if self.compiled and self.handler is None:
            raise ValueError(f"{self.name}: compiled, but no handler has a write behaviour")
        if self.published and self.handler is None:
            raise ValueError(f"{self.name}: published, but no handler computes the value")
        if "{i}" in self.name and self.count == 1:
            raise ValueError(f"{self.name}: an index in the name of a single register")

    def offsets(self) -> range:
        """The row's dwords, relative to the engine base for per-engine rows."""
        if self.kind is Kind.REGISTER:
            return range(self.offset, self.offset + self.count * self.stride, self.stride)
        return range(self.offset, self.offset + self.size, 4)

    def register_name(self, index: int, engine: str | None) -> str:
        name = self.name.replace("{i}", str(self.first + index)) if self.count > 1 else self.name
        return f"{name}({engine})" if engine else name

    @property
    def plain(self) -> bool:
        return self.rw_mask == 0xFFFFFFFF and not (self.masked or self.w1c or self.handler)
