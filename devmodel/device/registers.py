"""A declarative MMIO register file.

Unlisted offsets behave as plain storage (a virtual register file: a read returns the last
value written, 0 after reset). Listed registers add a reset value, a writable mask, masked-write
semantics (the upper 16 bits of a write select which lower bits change, as GEN's "masked"
registers do), write-1-to-clear bits, and read/write hooks. Registers are 32 bits wide; an
8-byte access is two 32-bit accesses, low dword first. ``on_unlisted``, when set, hears of
every guest access to an offset no declaration covers (offset, is_write), before it acts.

``plain`` holds one byte per dword: ``PLAIN`` where the dword is plain storage (an unlisted
offset while no ``on_unlisted`` hook listens, or a declaration with a full writable mask and
no masked, write-1-to-clear or hook behaviour), ``PLAIN_TOLD_LATER`` for an unlisted offset
whose hook was set with :meth:`listen_unlisted` (``told_later=True``: it only records, so it
may hear of an access after the access acted), ``READ_STORAGE`` for a register with a write
hook whose read value is its storage, ``CLASS_BASE + k`` for a declared register whose read
value is its storage and whose write behaviour (writable mask, write-1-to-clear bits, masked,
and the write hook's ``effect``, below) is ``classes[k]`` (four dwords: rw_mask, w1c, masked,
effect), 0 elsewhere (a read hook, or more kinds of write behaviour than the map has codes
for). A load at any marked dword is its storage (at a ``timed`` one, before ``until``); a
store at a plain one is the bytes, at a classed one what :meth:`write32` would do, at a
``READ_STORAGE`` one the write hook's (Python's); so the compiled accelerator may serve the
loads and those stores from ``storage`` (and tell a told-later hook afterwards, in order);
every other access goes through :meth:`read32` / :meth:`write32`. The map, the classes and
the timed marks are kept current by :meth:`add`, by setting the hook and by a
:class:`ReadGate`, in place (the accelerator holds pointers to them).

A write hook with an ``effect`` (non-zero) is one the compiled path also runs: the number names
the behaviour in the accelerator of the device (for the GEN vGPU, the interrupt line's
re-evaluation), whose state the part supplying the hook keeps where the accelerator reads it.
The hook still serves :meth:`write32`, so again the two paths differ exactly when the
accelerator's version of the behaviour does.

A register's read value is its storage when it has no read hook, or when it is ``published``:
its read hook computes a value from device state, and the part that owns that state also
writes the value into storage whenever the state changes, so storage always holds what the
hook would return, except while the register's ``gate`` is closed (its owner closes it while
a read has work to do first, such as a lazy catch-up, and the hook serves every read). The
hook still serves :meth:`read32`, so the Python path and the accelerator differ exactly when
a publication is missing, which the equivalence tests look for.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "CLASS_BASE",
    "MAX_CLASSES",
    "PLAIN",
    "PLAIN_TOLD_LATER",
    "READ_STORAGE",
    "UNTIL_MARGIN_NS",
    "ReadHook",
    "Register",
    "RegisterBlock",
    "ReadGate",
    "RegisterFile",
    "WriteHook",
]

ReadHook = Callable[[int], int]  # (offset) -> value
WriteHook = Callable[[int, int, int], None]  # (offset, old, new)
UnlistedHook = Callable[[int, bool], None]  # (offset, is_write)

PLAIN = 1
PLAIN_TOLD_LATER = 2
READ_STORAGE = 3
CLASS_BASE = 4
MAX_CLASSES = 256 - CLASS_BASE


# A deadline is handed to the compiled path this much early: the owner's own test of "is
# there work" (floating-point arithmetic on the same clock) may round the other way right at it.
UNTIL_MARGIN_NS = 1000


class ReadGate:
    """Whether the published registers that name this gate read their storage now. Open at
    first; the owner closes it while a read of them must run its hook first (work with
    effects elsewhere, a catch-up that may change the value), and opens it again when their
    storage holds what the hook returns. When that work is due only from a known instant on
    (the display's next vblank), the owner opens it :meth:`open_until` that instant instead:
    the compiled path reads storage before it and hands every read after it to the hook,
    whose work opens the gate until the next one (``RegisterFile.timed`` and ``until``)."""

    def __init__(self) -> None:
        self.open = True
        self.until: float | None = None
        self._members: list[tuple[RegisterFile, int]] = []

    def _join(self, rf: RegisterFile, offset: int) -> None:
        self._members.append((rf, offset))

    def set_open(self, open_: bool) -> None:
        self._set(open_, None)

    def open_until(self, deadline: float) -> None:
        """Open until ``deadline``, in seconds of time.monotonic (CLOCK_MONOTONIC, the clock
        the compiled path reads): the published registers read storage before it; from it on
        every read runs the hook again."""
        until_ns = math.floor(deadline * 1e9) - UNTIL_MARGIN_NS
        for rf, _offset in self._members:
            rf.until[0] = until_ns
        self._set(True, deadline)

    def _set(self, open_: bool, until: float | None) -> None:
        timed = until is not None
        if open_ == self.open and timed == (self.until is not None):
            self.until = until
            return
        self.open, self.until = open_, until
        for rf, offset in self._members:
            rf.plain[offset >> 2] = rf._code(rf.regs[offset])
            rf.timed[offset >> 2] = timed


@dataclass(frozen=True)
class Register:
    offset: int
    name: str
    reset: int = 0
    rw_mask: int = 0xFFFFFFFF
    masked: bool = False
    w1c: int = 0
    read: ReadHook | None = None
    write: WriteHook | None = None
    # The read hook's value is in storage whenever ``gate`` (if any) is open (module docstring).
    published: bool = False
    gate: ReadGate | None = None
    # The write hook's behaviour as the compiled path runs it too (module docstring); 0: none.
    effect: int = 0

    def __post_init__(self) -> None:
        if self.effect and self.write is None:
            raise ValueError(f"{self.name}: a compiled write effect without a write hook")
        if self.published and self.read is None:
            raise ValueError(f"{self.name}: published, but no read hook computes the value")
        if self.published and self.rw_mask and self.write is None:
            # A write would change storage while the hook's value stays: nothing publishes again.
            raise ValueError(f"{self.name}: published with writable bits but no write hook")
        if self.gate is not None and not self.published:
            raise ValueError(f"{self.name}: a read gate on a register that is not published")

    @property
    def plain(self) -> bool:
        """Whether the register is storage and nothing else."""
        return (
            self.rw_mask == 0xFFFFFFFF and not self.masked and not self.w1c and self.read is None and self.write is None
        )


class RegisterFile:
    def __init__(self, size: int, registers: Iterable[Register] = ()) -> None:
        if size & 3:
            raise ValueError("register file size must be a multiple of 4")
        self.size = size
        self._store = bytearray(size)
        self.storage = memoryview(self._store)
        self.dwords = self.storage.cast("I")
        self.regs: dict[int, Register] = {}
        self._on_unlisted: UnlistedHook | None = None
        self.unlisted_told_later = False
        self.plain = bytearray(bytes([PLAIN]) * (size >> 2))
        # Per dword, 1 while its read gate is open until a deadline: ``until[0]``, in
        # CLOCK_MONOTONIC nanoseconds (ReadGate.open_until); one gate per file has one.
        self.timed = bytearray(size >> 2)
        self.until = array("q", [0])
        self._timed_gate: ReadGate | None = None
        self.classes = array("I", bytes(16 * MAX_CLASSES))
        self._class_codes: dict[tuple[int, int, bool, int], int] = {}
        for reg in registers:
            self.add(reg)

    @property
    def on_unlisted(self) -> UnlistedHook | None:
        return self._on_unlisted

    @on_unlisted.setter
    def on_unlisted(self, hook: UnlistedHook | None) -> None:
        self.listen_unlisted(hook)

    def listen_unlisted(self, hook: UnlistedHook | None, *, told_later: bool = False) -> None:
        """Set the hook that hears of accesses to unlisted offsets. ``told_later``: it only
        records what it hears, so it may hear of an access after the access acted (the
        accelerator then serves those offsets and replays what it did to the hook)."""
        self._on_unlisted = hook
        self.unlisted_told_later = told_later and hook is not None
        unlisted = PLAIN if hook is None else PLAIN_TOLD_LATER if told_later else 0
        # same length: the buffer is rewritten in place
        self.plain[:] = bytes([unlisted]) * len(self.plain)
        for offset, reg in self.regs.items():
            self.plain[offset >> 2] = self._code(reg)

    def _code(self, reg: Register) -> int:
        """The register's byte in ``plain``."""
        if reg.read is not None and not (reg.published and (reg.gate is None or reg.gate.open)):
            return 0
        if reg.write is not None and not reg.effect:
            return READ_STORAGE
        if reg.rw_mask == 0xFFFFFFFF and not reg.masked and not reg.w1c and not reg.effect:
            return PLAIN
        key = (reg.rw_mask, reg.w1c, reg.masked, reg.effect)
        code = self._class_codes.get(key)
        if code is None:
            k = len(self._class_codes)
            if k == MAX_CLASSES:
                return 0
            self.classes[4 * k : 4 * k + 4] = array("I", [reg.rw_mask, reg.w1c, int(reg.masked), reg.effect])
            code = self._class_codes[key] = CLASS_BASE + k
        return code

    @property
    def nclasses(self) -> int:
        return len(self._class_codes)

    def add(self, reg: Register) -> None:
        if reg.offset & 3 or not 0 <= reg.offset < self.size:
            raise ValueError(f"bad register offset {reg.offset:#x}")
        if reg.offset in self.regs:
            raise ValueError(f"register {reg.offset:#x} declared twice")
        self.regs[reg.offset] = reg
        self.dwords[reg.offset >> 2] = reg.reset
        self.plain[reg.offset >> 2] = self._code(reg)
        if reg.gate is not None:
            if self._timed_gate not in (None, reg.gate):
                raise ValueError(f"{reg.name}: a second read gate in one register file (one deadline)")
            self._timed_gate = reg.gate
            reg.gate._join(self, reg.offset)
            self.timed[reg.offset >> 2] = reg.gate.until is not None

    def reset(self) -> None:
        self._store[:] = bytes(self.size)
        for reg in self.regs.values():
            self.dwords[reg.offset >> 2] = reg.reset

    def read32(self, offset: int) -> int:
        reg = self.regs.get(offset)
        if reg is None:
            if self._on_unlisted is not None:
                self._on_unlisted(offset, False)
        elif reg.read is not None:
            return reg.read(offset) & 0xFFFFFFFF
        return self.dwords[offset >> 2]

    def write32(self, offset: int, value: int) -> None:
        idx = offset >> 2
        reg = self.regs.get(offset)
        if reg is None:
            if self._on_unlisted is not None:
                self._on_unlisted(offset, True)
            self.dwords[idx] = value
            return
        old = self.dwords[idx]
        if reg.masked:
            sel = (value >> 16) & reg.rw_mask & 0xFFFF
            new = (old & ~sel) | (value & sel)
        else:
            new = (old & ~reg.rw_mask) | (value & reg.rw_mask)
        if reg.w1c:
            new = (new & ~reg.w1c) | (old & reg.w1c & ~value)
        new &= 0xFFFFFFFF
        self.dwords[idx] = new
        if reg.write is not None:
            reg.write(offset, old, new)

    def set(self, offset: int, value: int) -> None:
        """Device-side update, no hooks or masks."""
        self.dwords[offset >> 2] = value & 0xFFFFFFFF

    def get(self, offset: int) -> int:
        return self.dwords[offset >> 2]


class RegisterBlock:
    """A part of a device that keeps the state behind registers and reaches the register file
    as ``rf``: either it declares its registers itself (:meth:`registers`, added by
    :meth:`install`), or a table declares them and it is only :meth:`attach`-ed."""

    _rf: RegisterFile | None = None

    def registers(self) -> list[Register]:
        raise NotImplementedError

    def install(self, rf: RegisterFile) -> None:
        for reg in self.registers():
            rf.add(reg)
        self.attach(rf)

    def attach(self, rf: RegisterFile) -> None:
        self._rf = rf

    @property
    def rf(self) -> RegisterFile:
        if self._rf is None:
            raise RuntimeError(f"{type(self).__name__}: attach() or install() first")
        return self._rf
