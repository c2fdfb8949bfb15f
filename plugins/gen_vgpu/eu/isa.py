"""The GEN8/GEN9 EU instruction encoding: field positions, opcodes, types and region codes.

Bit positions are those of the public PRMs (Volume 7, "EU Instruction Format"), the same that
Mesa's brw_inst.h names. Every field is read from the 128-bit native form; a compacted
instruction is expanded to it first (:mod:`.compact`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ARF_ACC",
    "ARF_ADDRESS",
    "ARF_FLAG",
    "ARF_NULL",
    "COND_NAMES",
    "HW_TYPES",
    "HW_TYPES_3SRC",
    "IMM_TYPES",
    "MATH_NAMES",
    "Cond",
    "EuError",
    "Field",
    "Math",
    "Opcode",
    "RegFile",
    "Sfid",
    "TypeInfo",
    "bits",
    "exec_size",
    "hstride",
    "vstride",
    "width",
]


class EuError(Exception):
    """A kernel the EUs will not run: an unknown or unsupported instruction, a bad region, a
    message to a shared function the device does not model. ``offset`` is the instruction's
    byte offset from the kernel's start."""

    def __init__(self, reason: str, *, offset: int = -1, name: str = "") -> None:
        where = f" at {offset:#x}" if offset >= 0 else ""
        what = f"{name}{where}: " if name else (f"instruction{where}: " if where else "")
        super().__init__(what + reason)
        self.reason = reason
        self.offset = offset
        self.name = name


def bits(word: int, high: int, low: int) -> int:
    return (word >> low) & ((1 << (high - low + 1)) - 1)


@dataclass(frozen=True)
class Field:
    high: int
    low: int

    def get(self, word: int) -> int:
        return bits(word, self.high, self.low)

    def put(self, word: int, value: int) -> int:
        width_mask = (1 << (self.high - self.low + 1)) - 1
        if value & ~width_mask:
            raise ValueError(f"{value:#x} does not fit bits {self.high}:{self.low}")
        return (word & ~(width_mask << self.low)) | (value << self.low)


class Opcode(enum.IntEnum):
    MOV = 1
    SEL = 2
    MOVI = 3
    NOT = 4
    AND = 5
    OR = 6
    XOR = 7
    SHR = 8
    SHL = 9
    ASR = 12
    CMP = 16
    CMPN = 17
    CSEL = 18
    BFREV = 23
    BFE = 24
    BFI1 = 25
    BFI2 = 26
    JMPI = 32
    BRD = 33
    IF = 34
    BRC = 35
    ELSE = 36
    ENDIF = 37
    WHILE = 39
    BREAK = 40
    CONT = 41
    HALT = 42
    CALLA = 43
    CALL = 44
    RET = 45
    GOTO = 46
    JOIN = 47
    WAIT = 48
    SEND = 49
    SENDC = 50
    SENDS = 51
    SENDSC = 52
    MATH = 56
    ADD = 64
    MUL = 65
    AVG = 66
    FRC = 67
    RNDU = 68
    RNDD = 69
    RNDE = 70
    RNDZ = 71
    MAC = 72
    MACH = 73
    LZD = 74
    FBH = 75
    FBL = 76
    CBIT = 77
    ADDC = 78
    SUBB = 79
    SAD2 = 80
    SADA2 = 81
    DP4 = 84
    DPH = 85
    DP3 = 86
    DP2 = 87
    LINE = 89
    PLN = 90
    MAD = 91
    LRP = 92
    NOP = 126


THREE_SOURCE = frozenset({Opcode.MAD, Opcode.LRP, Opcode.BFE, Opcode.BFI2, Opcode.CSEL})


class RegFile(enum.IntEnum):
    ARF = 0
    GRF = 1
    MRF = 2
    IMM = 3


# Architecture register numbers (the high nibble names the register, the low its number).
ARF_NULL = 0x00
ARF_ADDRESS = 0x10
ARF_ACC = 0x20
ARF_FLAG = 0x30


@dataclass(frozen=True)
class TypeInfo:
    name: str
    size: int  # bytes
    numpy: str  # the numpy dtype string (little-endian)
    is_float: bool
    signed: bool


_T = TypeInfo
UD = _T("UD", 4, "<u4", False, False)
D = _T("D", 4, "<i4", False, True)
UW = _T("UW", 2, "<u2", False, False)
W = _T("W", 2, "<i2", False, True)
UB = _T("UB", 1, "u1", False, False)
B = _T("B", 1, "i1", False, True)
DF = _T("DF", 8, "<f8", True, True)
F = _T("F", 4, "<f4", True, True)
UQ = _T("UQ", 8, "<u8", False, False)
Q = _T("Q", 8, "<i8", False, True)
HF = _T("HF", 2, "<f2", True, True)
# Packed immediates: eight 4-bit integers (V signed, UV unsigned) or four 8-bit floats (VF).
V = _T("V", 2, "<i2", False, True)
UV = _T("UV", 2, "<u2", False, False)
VF = _T("VF", 4, "<f4", True, True)

# GEN8 register-operand type codes and immediate type codes (they differ from 4 up).
HW_TYPES: dict[int, TypeInfo] = {0: UD, 1: D, 2: UW, 3: W, 4: UB, 5: B, 6: DF, 7: F, 8: UQ, 9: Q, 10: HF}
IMM_TYPES: dict[int, TypeInfo] = {0: UD, 1: D, 2: UW, 3: W, 4: UV, 5: VF, 6: V, 7: F, 8: UQ, 9: Q, 10: DF, 11: HF}
# Three-source (align16) instructions: one type for all sources, another for the destination.
HW_TYPES_3SRC: dict[int, TypeInfo] = {0: F, 1: D, 2: UD, 3: DF, 4: HF}


def exec_size(code: int) -> int:
    return 1 << code


def vstride(code: int) -> int:
    """Elements; 0xF (VxH, indirect) is not a stride."""
    return 0 if code == 0 else 1 << (code - 1)


def width(code: int) -> int:
    return 1 << code


def hstride(code: int) -> int:
    return 0 if code == 0 else 1 << (code - 1)


class Cond(enum.IntEnum):
    NONE = 0
    Z = 1
    NZ = 2
    G = 3
    GE = 4
    L = 5
    LE = 6
    O = 8  # noqa: E741 - the PRM's name
    U = 9


COND_NAMES = {
    Cond.Z: "z",
    Cond.NZ: "nz",
    Cond.G: "g",
    Cond.GE: "ge",
    Cond.L: "l",
    Cond.LE: "le",
    Cond.O: "o",
    Cond.U: "u",
}


class Math(enum.IntEnum):
    INV = 1
    LOG = 2
    EXP = 3
    SQRT = 4
    RSQ = 5
    SIN = 6
    COS = 7
    FDIV = 9
    POW = 10
    INT_DIV_QR = 11
    INT_DIV_Q = 12
    INT_DIV_R = 13


MATH_NAMES = {m: m.name.lower() for m in Math}


class Sfid(enum.IntEnum):
    """Shared functions a SEND may address (the descriptor's target, bits 27:24)."""

    NULL = 0
    SAMPLER = 2
    GATEWAY = 3
    SAMPLER_CACHE = 4
    RENDER_CACHE = 5
    URB = 6
    THREAD_SPAWNER = 7
    VME = 8
    CONSTANT_CACHE = 9
    DATA_CACHE = 10
    PIXEL_INTERPOLATOR = 11
    DATA_CACHE1 = 12
