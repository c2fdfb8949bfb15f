"""One declaration of each command's encoding: client, opcode bits, length rule, allowed
header flags and the engines that may run it (contract §5, GEN8 forms).

A header's client is bits 31:29 (0 MI, 2 blitter, 3 3D/media). MI opcodes are bits 28:23,
blitter opcodes 28:22; the 3D client is split into pipeline 28:27, opcode 26:24 and sub-opcode
23:16. Lengths count every dword of the command; a length field holds that count minus two.
docs/commands.md renders this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .engines import Engine
from .reject import FieldError

__all__ = ["ALL_ENGINES", "LRI_MAX_REGS", "SPECS", "CommandSpec", "LengthRule", "bit"]


def bit(n: int) -> int:
    return 1 << n


ALL_ENGINES = frozenset(Engine)
LRI_MAX_REGS = 126  # i915's MI_LOAD_REGISTER_IMM_MAX_REGS; the 8-bit field allows no more pairs


class LengthRule(enum.Enum):
    ONE = "one dword"
    FIELD = "length field + 2, one of the listed lengths"
    LRI = "length field + 2, odd field: 1 + 2n dwords, 1 <= n <= 126"
    GFX = "pipeline (28:27) 1: one dword; else (dw0 & 0xFF) + 2"


@dataclass(frozen=True, eq=False)  # identity hash: specs key the scanner's dicts
class CommandSpec:
    name: str
    header: int  # the identifying bits
    mask: int  # which bits of DW0 identify the command
    rule: LengthRule
    engines: frozenset[Engine]
    len_mask: int = 0
    lengths: frozenset[int] = frozenset()
    flags: int = 0  # other DW0 bits a valid header may carry (checked for MI and blitter commands)
    skip: bool = False  # nothing for an engine to do: left out of a scan's command list

    def length(self, dw0: int) -> int:
        """The command's total length in dwords from its header, or FieldError."""
        rule = self.rule
        if rule is LengthRule.ONE:
            return 1
        if rule is LengthRule.GFX:
            return 1 if (dw0 >> 27) & 3 == 1 else (dw0 & 0xFF) + 2
        field = dw0 & self.len_mask
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


_MI = 0xFF800000  # client + MI opcode
_BLT = 0xFFC00000  # client + blitter opcode
_RCS = frozenset({Engine.RCS})
_BCS = frozenset({Engine.BCS})
_NOT_RCS = frozenset({Engine.BCS, Engine.VCS0, Engine.VECS0})


def _mi(opcode: int) -> int:
    return opcode << 23


# fmt: off
MI_NOOP = CommandSpec("MI_NOOP", _mi(0x00), _MI, LengthRule.ONE, ALL_ENGINES,
                      flags=0x3FFFFF, skip=True)  # bit 22 (write the NOPID register) is refused
MI_USER_INTERRUPT = CommandSpec("MI_USER_INTERRUPT", _mi(0x02), _MI, LengthRule.ONE, ALL_ENGINES)
MI_ARB_CHECK = CommandSpec("MI_ARB_CHECK", _mi(0x05), _MI, LengthRule.ONE, ALL_ENGINES, skip=True)
MI_ARB_ON_OFF = CommandSpec("MI_ARB_ON_OFF", _mi(0x08), _MI, LengthRule.ONE, ALL_ENGINES,
                            flags=bit(0), skip=True)
MI_BATCH_BUFFER_END = CommandSpec("MI_BATCH_BUFFER_END", _mi(0x0A), _MI, LengthRule.ONE, ALL_ENGINES)
MI_STORE_DATA_IMM = CommandSpec("MI_STORE_DATA_IMM", _mi(0x20), _MI, LengthRule.FIELD, ALL_ENGINES,
                                len_mask=0x3FF, lengths=frozenset({4, 5}), flags=bit(22) | bit(21))
MI_LOAD_REGISTER_IMM = CommandSpec("MI_LOAD_REGISTER_IMM", _mi(0x22), _MI, LengthRule.LRI, ALL_ENGINES,
                                   len_mask=0xFF, flags=bit(12))  # 12: force posted; 11:8 byte disables refused
MI_STORE_REGISTER_MEM = CommandSpec("MI_STORE_REGISTER_MEM", _mi(0x24), _MI, LengthRule.FIELD, ALL_ENGINES,
                                    len_mask=0xFF, lengths=frozenset({4}), flags=bit(22))
MI_FLUSH_DW = CommandSpec("MI_FLUSH_DW", _mi(0x26), _MI, LengthRule.FIELD, _NOT_RCS,
                          len_mask=0x3F, lengths=frozenset({4, 5}),
                          flags=bit(21) | bit(18) | (3 << 14) | bit(8) | bit(7))
MI_BATCH_BUFFER_START = CommandSpec("MI_BATCH_BUFFER_START", _mi(0x31), _MI, LengthRule.FIELD, ALL_ENGINES,
                                    len_mask=0xFF, lengths=frozenset({3}), flags=bit(22) | bit(8))
PIPE_CONTROL = CommandSpec("PIPE_CONTROL", 0x7A000000, 0xFFFF0000, LengthRule.FIELD, _RCS,
                           len_mask=0xFF, lengths=frozenset({6}))
GFX_STATE = CommandSpec("3D/media state", 0x60000000, 0xE0000000, LengthRule.GFX, _RCS)
XY_COLOR_BLT = CommandSpec("XY_COLOR_BLT", (2 << 29) | (0x50 << 22), _BLT, LengthRule.FIELD, _BCS,
                           len_mask=0xFF, lengths=frozenset({7}), flags=(3 << 20) | bit(11))
XY_SRC_COPY_BLT = CommandSpec("XY_SRC_COPY_BLT", (2 << 29) | (0x53 << 22), _BLT, LengthRule.FIELD, _BCS,
                              len_mask=0xFF, lengths=frozenset({10}), flags=(3 << 20) | bit(15) | bit(11))
# fmt: on

# Most specific first: a header that matches none of these is unknown.
SPECS: tuple[CommandSpec, ...] = (
    MI_NOOP,
    MI_USER_INTERRUPT,
    MI_ARB_CHECK,
    MI_ARB_ON_OFF,
    MI_BATCH_BUFFER_END,
    MI_STORE_DATA_IMM,
    MI_LOAD_REGISTER_IMM,
    MI_STORE_REGISTER_MEM,
    MI_FLUSH_DW,
    MI_BATCH_BUFFER_START,
    PIPE_CONTROL,
    XY_COLOR_BLT,
    XY_SRC_COPY_BLT,
    GFX_STATE,
)
