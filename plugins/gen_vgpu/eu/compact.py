"""Compacted (64-bit) EU instructions: the GEN8 index tables and the expansion to the native
128-bit form, and the reverse (the assembler compacts what the tables can express).

The tables are hardware facts (PRM Volume 7, "EU Compact Instruction Format"; GEN9 uses the
GEN8 tables). Each table entry packs several native fields; the docstrings of :func:`expand`
and :func:`try_compact` say which bits. Three-source instructions have their own two tables;
on GEN9 their entries carry two more bits (the source types' high bits on CHV/SKL).
"""

from __future__ import annotations

from .isa import THREE_SOURCE, bits

__all__ = ["CONTROL", "DATATYPE", "SRC_INDEX", "SUBREG", "expand", "is_compact", "try_compact"]

CONTROL = (
    0b0000000000000000010, 0b0000100000000000000, 0b0000100000000000001, 0b0000100000000000010,
    0b0000100000000000011, 0b0000100000000000100, 0b0000100000000000101, 0b0000100000000000111,
    0b0000100000000001000, 0b0000100000000001001, 0b0000100000000001101, 0b0000110000000000000,
    0b0000110000000000001, 0b0000110000000000010, 0b0000110000000000011, 0b0000110000000000100,
    0b0000110000000000101, 0b0000110000000000111, 0b0000110000000001001, 0b0000110000000001101,
    0b0000110000000010000, 0b0000110000100000000, 0b0001000000000000000, 0b0001000000000000010,
    0b0001000000000000100, 0b0001000000100000000, 0b0010110000000000000, 0b0010110000000010000,
    0b0011000000000000000, 0b0011000000100000000, 0b0101000000000000000, 0b0101000000100000000,
)  # fmt: skip

DATATYPE = (
    0b001000000000000000001, 0b001000000000001000000, 0b001000000000001000001, 0b001000000000011000001,
    0b001000000000101011101, 0b001000000010111011101, 0b001000000011101000001, 0b001000000011101000101,
    0b001000000011101011101, 0b001000001000001000001, 0b001000011000001000000, 0b001000011000001000001,
    0b001000101000101000101, 0b001000111000101000100, 0b001000111000101000101, 0b001011100011101011101,
    0b001011101011100011101, 0b001011101011101011100, 0b001011101011101011101, 0b001011111011101011100,
    0b000000000010000001100, 0b001000000000001011101, 0b001000000000101000101, 0b001000001000001000000,
    0b001000101000101000100, 0b001000111000100000100, 0b001001001001000001001, 0b001010111011101011101,
    0b001011111011101011101, 0b001001111001101001100, 0b001001001001001001000, 0b001001011001001001000,
)  # fmt: skip

SUBREG = (
    0b000000000000000, 0b000000000000001, 0b000000000001000, 0b000000000001111,
    0b000000000010000, 0b000000010000000, 0b000000100000000, 0b000000110000000,
    0b000001000000000, 0b000001000010000, 0b000001010000000, 0b001000000000000,
    0b001000000000001, 0b001000010000001, 0b001000010000010, 0b001000010000011,
    0b001000010000100, 0b001000010000111, 0b001000010001000, 0b001000010001110,
    0b001000010001111, 0b001000110000000, 0b001000111101000, 0b010000000000000,
    0b010000110000000, 0b011000000000000, 0b011110010000111, 0b100000000000000,
    0b101000000000000, 0b110000000000000, 0b111000000000000, 0b111000000011100,
)  # fmt: skip

SRC_INDEX = (
    0b000000000000, 0b000000000010, 0b000000010000, 0b000000010010,
    0b000000011000, 0b000000100000, 0b000000101000, 0b000001001000,
    0b000001010000, 0b000001110000, 0b000001111000, 0b001100000000,
    0b001100000010, 0b001100001000, 0b001100010000, 0b001100010010,
    0b001100100000, 0b001100101000, 0b001100111000, 0b001101000000,
    0b001101000010, 0b001101001000, 0b001101010000, 0b001101100000,
    0b001101101000, 0b001101110000, 0b001101110001, 0b001101111000,
    0b010001101000, 0b010001101001, 0b010001101010, 0b010110001000,
)  # fmt: skip

# Three-source tables (GEN9 form; on GEN8 the extra high bits are zero).
CONTROL_3SRC = (
    0b00100000000110000000000001, 0b00000000000110000000000001,
    0b00000000001000000000000001, 0b00000000001000000000100001,
)  # fmt: skip
SOURCE_3SRC = (
    0b0000001110010011100100111001000001111000000000000,
    0b0000001110010011100100111001000001111000000000010,
    0b0000001110010011100100111001000001111000000001000,
    0b0000001110010011100100111001000001111000000100000,
)  # fmt: skip

CMPT_BIT = 29


def is_compact(low_dword: int) -> bool:
    return bool(low_dword >> CMPT_BIT & 1)


def _put(word: int, high: int, low: int, value: int) -> int:
    mask = (1 << (high - low + 1)) - 1
    return (word & ~(mask << low)) | ((value & mask) << low)


# (native high, native low, shift in the table entry) for each table.
_CONTROL_MAP = ((33, 31, 16), (23, 12, 4), (10, 9, 2), (34, 34, 1), (8, 8, 0))
_DATATYPE_MAP = ((63, 61, 18), (94, 89, 12), (46, 35, 0))
_SUBREG_MAP = ((100, 96, 10), (68, 64, 5), (52, 48, 0))
_SUBREG_MAP_IMM = ((68, 64, 5), (52, 48, 0))
_CONTROL_3SRC_MAP = {8: ((34, 32, 21), (28, 8, 0)), 9: ((36, 35, 24), (34, 32, 21), (28, 8, 0))}
_SOURCE_3SRC_MAP = {
    8: ((125, 125, 45), (104, 104, 44), (83, 83, 43), (114, 107, 35), (93, 86, 27), (72, 65, 19), (55, 37, 0)),
    9: (
        (126, 125, 47),
        (105, 104, 45),
        (84, 84, 44),
        (83, 83, 43),
        (114, 107, 35),
        (93, 86, 27),
        (72, 65, 19),
        (55, 37, 0),
    ),
}


def _scatter(word: int, entry: int, fields: tuple[tuple[int, int, int], ...]) -> int:
    for high, low, shift in fields:
        word = _put(word, high, low, entry >> shift)
    return word


def _gather(word: int, fields: tuple[tuple[int, int, int], ...]) -> int:
    out = 0
    for high, low, shift in fields:
        out |= bits(word, high, low) << shift
    return out


def expand(c: int, gen: int) -> int:
    """The native 128-bit instruction a 64-bit compacted one stands for."""
    opcode = bits(c, 6, 0)
    n = 0
    n = _put(n, 6, 0, opcode)
    if opcode in THREE_SOURCE:
        n = _scatter(n, CONTROL_3SRC[bits(c, 9, 8)], _CONTROL_3SRC_MAP[gen])
        n = _scatter(n, SOURCE_3SRC[bits(c, 11, 10)], _SOURCE_3SRC_MAP[gen])
        n = _put(n, 63, 56, bits(c, 18, 12))
        n = _put(n, 64, 64, bits(c, 28, 28))
        n = _put(n, 30, 30, bits(c, 30, 30))
        n = _put(n, 31, 31, bits(c, 31, 31))
        n = _put(n, 85, 85, bits(c, 32, 32))
        n = _put(n, 106, 106, bits(c, 33, 33))
        n = _put(n, 83, 76, bits(c, 49, 43))
        n = _put(n, 104, 97, bits(c, 56, 50))
        n = _put(n, 125, 118, bits(c, 63, 57))
        n = _put(n, 75, 73, bits(c, 36, 34))
        n = _put(n, 96, 94, bits(c, 39, 37))
        n = _put(n, 117, 115, bits(c, 42, 40))
        return n
    n = _put(n, 7, 7, bits(c, 7, 7))
    n = _scatter(n, CONTROL[bits(c, 12, 8)], _CONTROL_MAP)
    n = _scatter(n, DATATYPE[bits(c, 17, 13)], _DATATYPE_MAP)
    imm = bits(n, 42, 41) == 3 or bits(n, 90, 89) == 3
    n = _scatter(n, SUBREG[bits(c, 22, 18)], _SUBREG_MAP_IMM if imm else _SUBREG_MAP)
    n = _put(n, 28, 28, bits(c, 23, 23))
    n = _put(n, 27, 24, bits(c, 27, 24))
    n = _put(n, 88, 77, SRC_INDEX[bits(c, 34, 30)])
    n = _put(n, 60, 53, bits(c, 47, 40))
    n = _put(n, 76, 69, bits(c, 55, 48))
    if imm:
        # Thirteen bits: the src1 index gives 12:8 and its top bit is repeated up to 31.
        value = bits(c, 39, 35) << 8 | bits(c, 63, 56)
        if value & 0x1000:
            value |= 0xFFFFE000
        n = _put(n, 127, 96, value)
    else:
        n = _put(n, 120, 109, SRC_INDEX[bits(c, 39, 35)])
        n = _put(n, 108, 101, bits(c, 63, 56))
    return n


def _index(table: tuple[int, ...], value: int) -> int | None:
    try:
        return table.index(value)
    except ValueError:
        return None


def try_compact(n: int, gen: int) -> int | None:
    """The compacted form of a native instruction, or None when the tables cannot express
    it. ``expand(try_compact(n)) == n`` whenever it returns a form."""
    opcode = bits(n, 6, 0)
    c = opcode | 1 << CMPT_BIT
    if opcode in THREE_SOURCE:
        ctrl = _index(CONTROL_3SRC, _gather(n, _CONTROL_3SRC_MAP[gen]))
        src = _index(SOURCE_3SRC, _gather(n, _SOURCE_3SRC_MAP[gen]) & ~(1 << 43))
        regs = (bits(n, 63, 56), bits(n, 83, 76), bits(n, 104, 97), bits(n, 125, 118))
        if ctrl is None or src is None or any(r >= 128 for r in regs):
            return None
        c = _put(c, 9, 8, ctrl)
        c = _put(c, 11, 10, src)
        fields = (
            (18, 12, 63, 56),
            (28, 28, 64, 64),
            (30, 30, 30, 30),
            (31, 31, 31, 31),
            (32, 32, 85, 85),
            (33, 33, 106, 106),
            (49, 43, 83, 76),
            (56, 50, 104, 97),
            (63, 57, 125, 118),
            (36, 34, 75, 73),
            (39, 37, 96, 94),
            (42, 40, 117, 115),
        )
        for ch, cl, nh, nl in fields:
            c = _put(c, ch, cl, bits(n, nh, nl))
    else:
        if opcode in (0x31, 0x32) and bits(n, 127, 127):  # SEND/SENDC with EOT
            return None
        if bits(n, 95, 95) or bits(n, 47, 47) or bits(n, 11, 11) or bits(n, 7, 7):
            return None
        imm = bits(n, 42, 41) == 3 or bits(n, 90, 89) == 3
        ctrl = _index(CONTROL, _gather(n, _CONTROL_MAP))
        dtype = _index(DATATYPE, _gather(n, _DATATYPE_MAP))
        sub = _index(SUBREG, _gather(n, _SUBREG_MAP_IMM if imm else _SUBREG_MAP))
        src0 = _index(SRC_INDEX, bits(n, 88, 77))
        if ctrl is None or dtype is None or sub is None or src0 is None:
            return None
        if imm:
            value = bits(n, 127, 96)
            if value & ~0xFFF not in (0, 0xFFFFF000):
                return None
            src1 = value >> 8 & 0x1F
            src1_reg = value & 0xFF
        else:
            found = _index(SRC_INDEX, bits(n, 120, 109))
            if found is None or bits(n, 127, 121):
                return None
            src1, src1_reg = found, bits(n, 108, 101)
        c = _put(c, 7, 7, bits(n, 7, 7))
        c = _put(c, 12, 8, ctrl)
        c = _put(c, 17, 13, dtype)
        c = _put(c, 22, 18, sub)
        c = _put(c, 23, 23, bits(n, 28, 28))
        c = _put(c, 27, 24, bits(n, 27, 24))
        c = _put(c, 34, 30, src0)
        c = _put(c, 39, 35, src1)
        c = _put(c, 47, 40, bits(n, 60, 53))
        c = _put(c, 55, 48, bits(n, 76, 69))
        c = _put(c, 63, 56, src1_reg)
    return c if expand(c, gen) == n else None
