"""What one row of the command table holds (``CommandSpec``), and its length rules.

A header's client is bits 31:29 (0 MI, 2 blitter, 3 3D/media). MI opcodes are bits 28:23,
blitter opcodes 28:22; the 3D client is split into pipeline 28:27, opcode 26:24 and sub-opcode
23:16. Lengths count every dword of the command; a length field holds that count minus two.
The rows themselves are in opcodes.py.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engines import Engine
from .reject import FieldError

if TYPE_CHECKING:
    from .frame import Frame

__all__ = ["LRI_MAX_REGS", "Check", "CommandSpec", "Decoder", "Dwords", "LengthRule", "bit"]

Dwords = Sequence[int]  # array('I'), memoryview.cast('I') or list
# (buffer, position, length, DW0) -> the command's record, or FieldError
Decoder = Callable[[Dwords, int, int, int], Any]
# (record, frame) -> the frame of the batch it starts (MI_BATCH_BUFFER_START), else None; or FieldError
Check = Callable[[Any, "Frame"], "Frame | None"]

LRI_MAX_REGS = 126  # i915's MI_LOAD_REGISTER_IMM_MAX_REGS; the 8-bit field allows no more pairs


def bit(n: int) -> int:
    return 1 << n


class LengthRule(enum.Enum):
    ONE = "1"
    FIELD = "length field + 2, one of the listed lengths"
    ANY = "length field + 2"
    LRI = "1 + 2n, 1 <= n <= 126"
    GFX = "pipeline (28:27) = 1: 1 (PIPELINE_SELECT, 3DSTATE_VF_STATISTICS); else (DW0 & 0xFF) + 2"


@dataclass(frozen=True, eq=False)  # identity hash: specs key the scanner's dicts
class CommandSpec:
    """Everything about one command: its encoding and length rule, the engines that may run
    it, its validating decoder, the scanner's check that needs the frame (register lists,
    graphics memory, privilege, nesting) and the executor's handler.

    ``handler`` names the method of the engine's workload that executes the record; the
    engine binds it by name (cmd/ never imports the engine), and a command without one is
    left out of a scan's command list (``skip``). The ``doc_*`` strings fill the columns of
    docs/commands.md that the encoding alone does not say.
    """

    name: str
    header: int  # the identifying bits
    mask: int  # which bits of DW0 identify the command
    rule: LengthRule
    engines: frozenset[Engine]
    decode: Decoder
    record: type
    check: Check | None = None
    handler: str | None = None
    len_mask: int = 0
    lengths: frozenset[int] = frozenset()
    flags: int = 0  # other DW0 bits a valid header may carry (checked for MI and blitter commands)
    doc_dw0: str = ""  # the DW0 column when it is more than the header
    doc_flags: str = "none"
    doc_does: str = ""

    @property
    def skip(self) -> bool:
        """Nothing for an engine to do: left out of a scan's command list."""
        return self.handler is None

    def length(self, dw0: int) -> int:
        """The command's total length in dwords from its header, or FieldError."""
        rule = self.rule
        if rule is LengthRule.ONE:
            return 1
        if rule is LengthRule.GFX:
            return 1 if (dw0 >> 27) & 3 == 1 else (dw0 & 0xFF) + 2
        field = dw0 & self.len_mask
        if rule is LengthRule.ANY:
            return field + 2
        if rule is LengthRule.LRI:
            if not field & 1 or field > 2 * LRI_MAX_REGS - 1:
                raise FieldError(f"length field {field} is not 2n - 1 for 1 <= n <= {LRI_MAX_REGS}")
            return field + 2
        n = field + 2
        if n not in self.lengths:
            valid = " or ".join(str(v) for v in sorted(self.lengths))
            raise FieldError(f"length {n} dwords (field {field}); valid: {valid}")
        return n

    def reserved_bits(self, dw0: int) -> int:
        """Header bits set outside the opcode, length field and allowed flags (0 for 3D)."""
        if self.rule is LengthRule.GFX:
            return 0
        return dw0 & ~(self.mask | self.len_mask | self.flags) & 0xFFFFFFFF
