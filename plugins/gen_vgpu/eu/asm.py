"""A small EU assembler for the project's own kernels and tests: operands are built with
:func:`g`, :func:`imm` and :data:`NULL`; :class:`Assembler` appends instructions in the native
form and, when asked, in the compacted form the tables allow. It encodes exactly the forms
:mod:`.decode` accepts (the interpreter's repertoire), in the same bit positions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from .compact import try_compact
from .isa import ARF_FLAG, ARF_NULL, HW_TYPES, HW_TYPES_3SRC, IMM_TYPES, THREE_SOURCE, Cond, Math, Opcode, RegFile

__all__ = ["NULL", "Assembler", "Operand", "flag", "g", "imm"]

_CODES = {t.name: c for c, t in HW_TYPES.items()}
_IMM_CODES = {t.name: c for c, t in IMM_TYPES.items()}
_CODES_3SRC = {t.name: c for c, t in HW_TYPES_3SRC.items()}
_V = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5, 32: 6}
_W = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4}
_H = {0: 0, 1: 1, 2: 2, 4: 3}
_ES = {1: 0, 2: 1, 4: 2, 8: 3, 16: 4}


@dataclass(frozen=True)
class Operand:
    file: RegFile
    reg: int
    type: str
    sub: int = 0  # in elements of the type
    vstride: int = 8
    width: int = 8
    hstride: int = 1
    negate: bool = False
    abs: bool = False
    value: int = 0  # immediate bits
    swizzle: str = "xyzw"
    replicate: bool = False
    writemask: str = "xyzw"

    def region(self, v: int, w: int, h: int) -> Operand:
        return replace(self, vstride=v, width=w, hstride=h)

    def scalar(self) -> Operand:
        return replace(self, vstride=0, width=1, hstride=0, replicate=True)

    def stride(self, h: int) -> Operand:
        """As a destination: the horizontal stride."""
        return replace(self, hstride=h)

    def at(self, sub: int) -> Operand:
        return replace(self, sub=sub)

    def __neg__(self) -> Operand:
        return replace(self, negate=not self.negate)

    def absolute(self) -> Operand:
        return replace(self, abs=True)

    def swz(self, swizzle: str) -> Operand:
        return replace(self, swizzle=swizzle)

    def mask(self, writemask: str) -> Operand:
        return replace(self, writemask=writemask)

    @property
    def size(self) -> int:
        return {"UD": 4, "D": 4, "F": 4, "UW": 2, "W": 2, "HF": 2, "UB": 1, "B": 1, "DF": 8, "UQ": 8, "Q": 8}[self.type]


def g(reg: int, type: str = "F", sub: int = 0) -> Operand:
    return Operand(RegFile.GRF, reg, type, sub)


def flag(n: int, type: str = "UW", sub: int = 0) -> Operand:
    return Operand(RegFile.ARF, ARF_FLAG | n, type, sub, 0, 1, 0)


NULL = Operand(RegFile.ARF, ARF_NULL, "UD", 0, 0, 1, 0)


def imm(value: int | float, type: str = "UD") -> Operand:
    if type == "F":
        bits = struct.unpack("<I", struct.pack("<f", float(value)))[0]
    elif type == "DF":
        bits = struct.unpack("<Q", struct.pack("<d", float(value)))[0]
    elif type in ("W", "UW"):
        v = int(value) & 0xFFFF
        bits = v | v << 16  # a 16-bit immediate is repeated in both halves of the dword
    else:
        bits = int(value) & ((1 << 64) - 1 if type in ("Q", "UQ") else 0xFFFFFFFF)
    return Operand(RegFile.IMM, 0, type, 0, 0, 1, 0, value=bits)


def _set(word: int, high: int, low: int, value: int) -> int:
    mask = (1 << (high - low + 1)) - 1
    if value & ~mask:
        raise ValueError(f"{value:#x} does not fit bits {high}:{low}")
    return (word & ~(mask << low)) | (value << low)


class Assembler:
    """Collects instructions; :meth:`bytes` is the kernel."""

    def __init__(self, gen: int = 8, compact: bool = False) -> None:
        self.gen = gen
        self.compact = compact
        self.code = bytearray()

    def bytes(self) -> bytes:
        return bytes(self.code)

    # --- encoding -------------------------------------------------------------------------

    def _control(
        self,
        n: int,
        op: Opcode,
        es: int,
        *,
        pred: int | None,
        pred_inv: bool,
        flag_nr: int,
        cond: Cond,
        sat: bool,
        no_mask: bool,
        group: int,
        align16: bool,
    ) -> int:
        n = _set(n, 6, 0, int(op))
        n = _set(n, 8, 8, int(align16))
        n = _set(n, 23, 21, _ES[es])
        n = _set(n, 13, 12, group // 8)
        n = _set(n, 11, 11, group % 8 // 4)
        if pred is not None:
            n = _set(n, 19, 16, 1)
            n = _set(n, 20, 20, int(pred_inv))
            flag_nr = pred
        n = _set(n, 33, 33, flag_nr >> 1)
        n = _set(n, 32, 32, flag_nr & 1)
        n = _set(n, 27, 24, int(cond))
        n = _set(n, 31, 31, int(sat))
        n = _set(n, 34, 34, int(no_mask))
        return n

    @staticmethod
    def _dst(n: int, d: Operand) -> int:
        n = _set(n, 36, 35, int(d.file))
        n = _set(n, 40, 37, _CODES[d.type])
        n = _set(n, 60, 53, d.reg)
        n = _set(n, 52, 48, d.sub * d.size)
        return _set(n, 62, 61, _H[d.hstride] if d.hstride else 1)

    @staticmethod
    def _src(n: int, s: Operand, which: int) -> int:
        if which == 0:
            f, t, r, sub, v, w, h, ng, ab = (42, 41), (46, 43), (76, 69), (68, 64), (88, 85), (84, 82), (81, 80), 78, 77
        else:
            f, t, r, sub, v, w, h, ng, ab = (
                (90, 89),
                (94, 91),
                (108, 101),
                (100, 96),
                (120, 117),
                (116, 114),
                (113, 112),
                110,
                109,
            )
        n = _set(n, *f, int(s.file))
        if s.file == RegFile.IMM:
            n = _set(n, *t, _IMM_CODES[s.type])
            if s.type in ("DF", "Q", "UQ"):
                return _set(n, 127, 64, s.value)
            return _set(n, 127, 96, s.value)
        n = _set(n, *t, _CODES[s.type])
        n = _set(n, *r, s.reg)
        n = _set(n, *sub, s.sub * s.size)
        n = _set(n, *v, _V[s.vstride])
        n = _set(n, *w, _W[s.width])
        n = _set(n, *h, _H[s.hstride])
        n = _set(n, ng, ng, int(s.negate))
        return _set(n, ab, ab, int(s.abs))

    def _emit(self, n: int, compact: bool | None) -> None:
        want = self.compact if compact is None else compact
        c = try_compact(n, self.gen) if want else None
        if c is not None:
            self.code += c.to_bytes(8, "little")
        else:
            self.code += n.to_bytes(16, "little")

    def op(
        self,
        op: Opcode,
        es: int,
        dst: Operand,
        *srcs: Operand,
        pred: int | None = None,
        pred_inv: bool = False,
        flag: int = 0,
        cond: Cond = Cond.NONE,
        sat: bool = False,
        no_mask: bool = False,
        group: int = 0,
        math: Math | None = None,
        compact: bool | None = None,
    ) -> None:
        """One instruction. ``pred``: the flag subregister (0..3) predicating it; ``flag``:
        the one a conditional modifier writes."""
        if op in THREE_SOURCE:
            self._three(op, es, dst, srcs, pred, pred_inv, flag, cond, sat, no_mask, group, compact)
            return
        n = self._control(
            0,
            op,
            es,
            pred=pred,
            pred_inv=pred_inv,
            flag_nr=flag,
            cond=Cond(int(math)) if math is not None else cond,
            sat=sat,
            no_mask=no_mask,
            group=group,
            align16=False,
        )
        n = self._dst(n, dst)
        for k, s in enumerate(srcs):
            n = self._src(n, s, k)
        if len(srcs) == 1:
            # An absent src1 carries src0's type (the compaction tables expect it so).
            n = _set(n, 94, 91, _CODES.get(srcs[0].type, 0) if srcs[0].file != RegFile.IMM else 0)
        self._emit(n, compact)

    def _three(
        self,
        op: Opcode,
        es: int,
        dst: Operand,
        srcs: tuple[Operand, ...],
        pred: int | None,
        pred_inv: bool,
        flag_nr: int,
        cond: Cond,
        sat: bool,
        no_mask: bool,
        group: int,
        compact: bool | None,
    ) -> None:
        n = self._control(
            0,
            op,
            es,
            pred=pred,
            pred_inv=pred_inv,
            flag_nr=flag_nr,
            cond=cond,
            sat=sat,
            no_mask=no_mask,
            group=group,
            align16=True,
        )
        n = _set(n, 63, 56, dst.reg)
        n = _set(n, 55, 53, dst.sub * dst.size // 4)
        n = _set(n, 52, 49, sum(1 << "xyzw".index(c) for c in dst.writemask))
        n = _set(n, 48, 46, _CODES_3SRC[dst.type])
        n = _set(n, 45, 43, _CODES_3SRC[srcs[0].type])
        layout = (
            ((83, 76), (75, 73), (72, 65), 64, 38, 37),
            ((104, 97), (96, 94), (93, 86), 85, 40, 39),
            ((125, 118), (117, 115), (114, 107), 106, 42, 41),
        )
        for s, (r, sub, sw, rep, ng, ab) in zip(srcs, layout, strict=True):
            n = _set(n, *r, s.reg)
            n = _set(n, *sub, s.sub * s.size // 4)
            n = _set(n, *sw, sum("xyzw".index(c) << 2 * k for k, c in enumerate(s.swizzle)))
            n = _set(n, rep, rep, int(s.replicate))
            n = _set(n, ng, ng, int(s.negate))
            n = _set(n, ab, ab, int(s.abs))
        self._emit(n, compact)

    def send(
        self,
        es: int,
        dst: Operand,
        payload: int,
        sfid: int,
        desc: int,
        *,
        eot: bool = False,
        no_mask: bool = False,
        group: int = 0,
        pred: int | None = None,
    ) -> None:
        """SEND: ``payload`` is the first GRF of the message; ``desc`` the descriptor without
        the EOT bit (``eot`` sets it)."""
        src0 = g(payload, "UD").region(8, 8, 1)
        n = self._control(
            0,
            Opcode.SEND,
            es,
            pred=pred,
            pred_inv=False,
            flag_nr=0,
            cond=Cond(0),
            sat=False,
            no_mask=no_mask,
            group=group,
            align16=False,
        )
        n = _set(n, 27, 24, sfid)
        n = self._dst(n, dst)
        n = self._src(n, src0, 0)
        n = self._src(n, imm(desc | (1 << 31 if eot else 0), "UD"), 1)
        self._emit(n, None)
