"""Decoding: a kernel's bytes into :class:`Instruction` records, each with its operands'
regions resolved (file, type, register, byte offset, strides), and their disassembly.

Only what the interpreter can run decodes without error: direct addressing, align1 regions
for one- and two-source instructions, align16 for three-source ones (the only form GEN8/GEN9
have for them), execution sizes 1 to 16. Anything else raises :class:`EuError` with the
instruction's name and offset, so a kernel is refused before any of it runs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .compact import expand, is_compact
from .isa import (
    ARF_ACC,
    ARF_ADDRESS,
    ARF_FLAG,
    ARF_NULL,
    COND_NAMES,
    HW_TYPES,
    HW_TYPES_3SRC,
    IMM_TYPES,
    MATH_NAMES,
    THREE_SOURCE,
    Cond,
    EuError,
    Math,
    Opcode,
    RegFile,
    Sfid,
    TypeInfo,
    bits,
    exec_size,
    hstride,
    vstride,
    width,
)

__all__ = ["Dst", "Instruction", "Send", "Src", "decode", "decode_kernel", "disassemble"]

# The longest kernel decoded: a kernel without an EOT in this many bytes is refused.
MAX_KERNEL = 64 * 1024


@dataclass(frozen=True)
class Src:
    file: RegFile
    type: TypeInfo
    reg: int  # GRF number, or the ARF number (0x30 = f0, ...)
    subreg: int  # bytes into the register
    vstride: int  # elements
    width: int
    hstride: int
    negate: bool = False
    abs: bool = False
    imm: int = 0  # the raw bits of an immediate
    swizzle: tuple[int, int, int, int] = (0, 1, 2, 3)  # align16 (three-source) only
    replicate: bool = False  # three-source: one scalar for every channel

    @property
    def scalar(self) -> bool:
        return self.replicate or (self.vstride == 0 and self.width == 1 and self.hstride == 0)


@dataclass(frozen=True)
class Dst:
    file: RegFile
    type: TypeInfo
    reg: int
    subreg: int
    hstride: int
    writemask: int = 0xF  # align16 only

    @property
    def is_null(self) -> bool:
        return self.file == RegFile.ARF and self.reg == ARF_NULL


@dataclass(frozen=True)
class Send:
    sfid: int
    desc: int  # the message descriptor (the immediate src1)
    mlen: int
    rlen: int
    header: bool
    eot: bool

    @property
    def function(self) -> int:
        return self.desc & 0x7FFFF


@dataclass(frozen=True)
class Instruction:
    offset: int
    size: int  # 8 compacted, 16 native
    raw: int  # the native 128-bit form
    opcode: Opcode
    align16: bool
    exec_size: int
    group: int  # first channel of the execution mask and flags this instruction uses
    no_mask: bool
    predicate: int  # 0 none, 1 per-channel flag
    pred_inv: bool
    flag: int  # flag subregister 0..3 (f0.0, f0.1, f1.0, f1.1)
    cond: Cond
    saturate: bool
    math: Math | None
    dst: Dst
    srcs: tuple[Src, ...]
    send: Send | None

    def __str__(self) -> str:
        return disassemble(self)


def _name(opcode: int) -> str:
    try:
        return Opcode(opcode).name.lower()
    except ValueError:
        return f"opcode {opcode:#x}"


def _type(table: dict[int, TypeInfo], code: int, what: str) -> TypeInfo:
    t = table.get(code)
    if t is None:
        raise EuError(f"{what} type code {code} is reserved")
    return t


def _check_arf(reg: int, what: str) -> None:
    kind = reg & 0xF0
    if kind == ARF_NULL and reg == 0:
        return
    if kind == ARF_FLAG and reg & 0xF <= 1:
        return
    names = {ARF_ADDRESS: "the address register", ARF_ACC: "the accumulator"}
    raise EuError(f"{what} is {names.get(kind, f'architecture register {reg:#x}')}, not modelled")


def _src_align1(n: int, which: int) -> Src:
    if which == 0:
        file_, type_code = bits(n, 42, 41), bits(n, 46, 43)
        reg, subreg, amode = bits(n, 76, 69), bits(n, 68, 64), bits(n, 79, 79)
        neg, ab = bits(n, 78, 78), bits(n, 77, 77)
        vs, w, hs = bits(n, 88, 85), bits(n, 84, 82), bits(n, 81, 80)
    else:
        file_, type_code = bits(n, 90, 89), bits(n, 94, 91)
        reg, subreg, amode = bits(n, 108, 101), bits(n, 100, 96), bits(n, 111, 111)
        neg, ab = bits(n, 110, 110), bits(n, 109, 109)
        vs, w, hs = bits(n, 120, 117), bits(n, 116, 114), bits(n, 113, 112)
    what = f"src{which}"
    rf = RegFile(file_)
    if rf == RegFile.IMM:
        t = _type(IMM_TYPES, type_code, what)
        value = bits(n, 127, 64) if t.size == 8 else bits(n, 127, 96)
        return Src(rf, t, 0, 0, 0, 1, 0, imm=value)
    t = _type(HW_TYPES, type_code, what)
    if rf == RegFile.MRF:
        raise EuError(f"{what} is in the message register file, which GEN8 does not have")
    if amode:
        raise EuError(f"{what} uses indirect addressing, not modelled")
    if rf == RegFile.ARF:
        _check_arf(reg, what)
    if vs == 0xF or w > 4 or hs > 3:
        raise EuError(f"{what} region code <{vs};{w},{hs}> is not a direct align1 region")
    return Src(rf, t, reg, subreg, vstride(vs), width(w), hstride(hs), bool(neg), bool(ab))


def _dst_align1(n: int, send: bool) -> Dst:
    rf = RegFile(bits(n, 36, 35))
    t = _type(HW_TYPES, bits(n, 40, 37), "dst")
    if rf in (RegFile.IMM, RegFile.MRF):
        raise EuError(f"dst register file {rf.name} is not writable on GEN8")
    if bits(n, 63, 63):
        raise EuError("dst uses indirect addressing, not modelled")
    reg = bits(n, 60, 53)
    if rf == RegFile.ARF and not send:  # a SEND without a response writes nothing there
        _check_arf(reg, "dst")
    hs = bits(n, 62, 61)
    if hs == 0 and not (rf == RegFile.ARF and reg == ARF_NULL):
        raise EuError("dst horizontal stride 0 is reserved")
    return Dst(rf, t, reg, bits(n, 52, 48), max(1, hstride(hs)))


def _three_source(n: int, offset: int) -> tuple[Dst, tuple[Src, ...]]:
    if not bits(n, 8, 8):
        raise EuError("three-source instructions are align16 on GEN8/GEN9", offset=offset)
    st = _type(HW_TYPES_3SRC, bits(n, 45, 43), "source")
    dt = _type(HW_TYPES_3SRC, bits(n, 48, 46), "dst")
    if st.size != 4 or dt.size != 4:
        raise EuError(f"three-source types {dt.name}/{st.name} are not modelled (32-bit only)")
    dst = Dst(RegFile.GRF, dt, bits(n, 63, 56), bits(n, 55, 53) * 4, 1, bits(n, 52, 49))
    layout = (
        (83, 76, 75, 73, 72, 65, 64, 38, 37),
        (104, 97, 96, 94, 93, 86, 85, 40, 39),
        (125, 118, 117, 115, 114, 107, 106, 42, 41),
    )
    srcs = []
    for rh, rl, sh, sl, wh, wl, rep, neg, ab in layout:
        sw = bits(n, wh, wl)
        swizzle = (sw & 3, sw >> 2 & 3, sw >> 4 & 3, sw >> 6 & 3)
        srcs.append(
            Src(
                RegFile.GRF,
                st,
                bits(n, rh, rl),
                bits(n, sh, sl) * 4,
                4,
                4,
                1,
                bool(bits(n, neg, neg)),
                bool(bits(n, ab, ab)),
                swizzle=swizzle,
                replicate=bool(bits(n, rep, rep)),
            )
        )
    return dst, tuple(srcs)


_SOURCES = {
    Opcode.MOV: 1,
    Opcode.NOT: 1,
    Opcode.FRC: 1,
    Opcode.RNDU: 1,
    Opcode.RNDD: 1,
    Opcode.RNDE: 1,
    Opcode.RNDZ: 1,
    Opcode.LZD: 1,
    Opcode.CBIT: 1,
    Opcode.FBH: 1,
    Opcode.FBL: 1,
    Opcode.BFREV: 1,
    Opcode.SEL: 2,
    Opcode.AND: 2,
    Opcode.OR: 2,
    Opcode.XOR: 2,
    Opcode.SHR: 2,
    Opcode.SHL: 2,
    Opcode.ASR: 2,
    Opcode.CMP: 2,
    Opcode.ADD: 2,
    Opcode.MUL: 2,
    Opcode.AVG: 2,
    Opcode.PLN: 2,
    Opcode.MATH: 2,
    Opcode.SEND: 2,
    Opcode.SENDC: 2,
    Opcode.NOP: 0,
}


def decode(data: bytes | memoryview, offset: int, gen: int) -> Instruction:
    """The instruction at ``offset`` of a kernel's bytes."""
    if offset + 8 > len(data):
        raise EuError("the kernel ends inside an instruction", offset=offset)
    low = int.from_bytes(data[offset : offset + 8], "little")
    if is_compact(low):
        raw, size = expand(low, gen), 8
    else:
        if offset + 16 > len(data):
            raise EuError("the kernel ends inside an instruction", offset=offset)
        raw, size = int.from_bytes(data[offset : offset + 16], "little"), 16
    code = bits(raw, 6, 0)
    name = _name(code)
    try:
        return _decode(raw, code, offset, size, gen)
    except EuError as exc:
        if exc.offset >= 0:
            raise
        raise EuError(exc.reason, offset=offset, name=name) from None


def _decode(n: int, code: int, offset: int, size: int, gen: int) -> Instruction:
    try:
        op = Opcode(code)
    except ValueError:
        raise EuError(f"unknown opcode {code:#x}") from None
    es_code = bits(n, 23, 21)
    if es_code > 4:
        raise EuError(f"execution size {exec_size(es_code)} is not modelled (1 to 16)")
    es = exec_size(es_code)
    pred = bits(n, 19, 16)
    if pred > 1:
        raise EuError(f"predicate control {pred} (a group predicate) is not modelled")
    group = bits(n, 13, 12) * 8 + bits(n, 11, 11) * 4
    if group + es > 32:
        raise EuError(f"channels {group}..{group + es - 1} are past 32")
    cond = Cond(bits(n, 27, 24)) if bits(n, 27, 24) in Cond._value2member_map_ else None
    math: Math | None = None
    send: Send | None = None
    if op in THREE_SOURCE:
        if op != Opcode.MAD and op != Opcode.LRP:
            raise EuError("not modelled")
        dst, srcs = _three_source(n, offset)
        flag = bits(n, 33, 33) * 2 + bits(n, 32, 32)
    else:
        if op not in _SOURCES:
            raise EuError("not modelled (no control flow, no accumulator forms)")
        if bits(n, 8, 8):
            raise EuError("align16 two-source instructions are not modelled")
        flag = bits(n, 33, 33) * 2 + bits(n, 32, 32)
        dst = _dst_align1(n, op in (Opcode.SEND, Opcode.SENDC))
        count = _SOURCES[op]
        src_list: list[Src] = []
        if count >= 1:
            src_list.append(_src_align1(n, 0))
        if count == 2:
            if src_list[0].file == RegFile.IMM and op not in (Opcode.SEND, Opcode.SENDC):
                raise EuError("src0 is an immediate in a two-source instruction")
            src_list.append(_src_align1(n, 1))
        srcs = tuple(src_list)
        if op == Opcode.MATH:
            try:
                math = Math(bits(n, 27, 24))
            except ValueError:
                raise EuError(f"math function {bits(n, 27, 24)} is reserved") from None
            cond = Cond.NONE
        if op in (Opcode.SEND, Opcode.SENDC):
            if srcs[1].file != RegFile.IMM:
                raise EuError("a message descriptor in a register (indirect) is not modelled")
            if srcs[0].file != RegFile.GRF:
                raise EuError("the payload is not in the GRF")
            desc = srcs[1].imm
            send = Send(
                sfid=bits(n, 27, 24),
                desc=desc,
                mlen=bits(desc, 28, 25),
                rlen=bits(desc, 24, 20),
                header=bool(bits(desc, 19, 19)),
                eot=bool(bits(desc, 31, 31)),
            )
            cond = Cond.NONE
            if send.mlen == 0:
                raise EuError("message length 0")
            if srcs[0].reg + send.mlen > 128 or (send.rlen and dst.reg + send.rlen > 128):
                raise EuError("the message runs past g127")
            if send.rlen and dst.file != RegFile.GRF:
                raise EuError("a response to a register outside the GRF")
    if cond is None:
        raise EuError(f"conditional modifier {bits(n, 27, 24)} is reserved")
    return Instruction(
        offset=offset,
        size=size,
        raw=n,
        opcode=op,
        align16=bool(bits(n, 8, 8)),
        exec_size=es,
        group=group,
        no_mask=bool(bits(n, 34, 34)),
        predicate=pred,
        pred_inv=bool(bits(n, 20, 20)),
        flag=flag,
        cond=cond,
        saturate=bool(bits(n, 31, 31)),
        math=math,
        dst=dst,
        srcs=srcs,
        send=send,
    )


def decode_kernel(data: bytes | memoryview, gen: int, start: int = 0) -> list[Instruction]:
    """Every instruction from ``start`` up to and including the first end-of-thread SEND.
    Straight-line code only: the interpreter has no jumps (a jump does not decode)."""
    out: list[Instruction] = []
    offset = start
    while True:
        if offset - start >= MAX_KERNEL:
            raise EuError(f"no end of thread in {MAX_KERNEL} bytes", offset=offset)
        inst = decode(data, offset, gen)
        out.append(inst)
        offset += inst.size
        if inst.send is not None and inst.send.eot:
            return out


# --- disassembly ------------------------------------------------------------------------


def _reg(file: RegFile, reg: int) -> str:
    if file == RegFile.GRF:
        return f"g{reg}"
    if reg == ARF_NULL:
        return "null"
    if reg & 0xF0 == ARF_FLAG:
        return f"f{reg & 0xF}"
    return f"arf{reg:#x}"


def _imm(s: Src) -> str:
    t = s.type
    if t.name == "F":
        return f"{struct.unpack('<f', s.imm.to_bytes(4, 'little'))[0]!r}F"
    if t.name == "DF":
        return f"{struct.unpack('<d', s.imm.to_bytes(8, 'little'))[0]!r}DF"
    return f"{s.imm:#x}{t.name}"


def _src_text(s: Src, align16: bool) -> str:
    if s.file == RegFile.IMM:
        return _imm(s)
    mods = ("-" if s.negate else "") + ("(abs)" if s.abs else "")
    base = f"{_reg(s.file, s.reg)}.{s.subreg // s.type.size}"
    if align16:
        if s.replicate:
            return f"{mods}{base}<0>.x:{s.type.name}"
        sw = "".join("xyzw"[c] for c in s.swizzle)
        return f"{mods}{base}.{sw}:{s.type.name}"
    return f"{mods}{base}<{s.vstride};{s.width},{s.hstride}>:{s.type.name}"


def disassemble(i: Instruction) -> str:
    parts = []
    if i.predicate:
        parts.append(f"({'-' if i.pred_inv else '+'}f{i.flag >> 1}.{i.flag & 1})")
    name = i.opcode.name.lower()
    if i.math is not None:
        name += f" {MATH_NAMES[i.math]}"
    if i.saturate:
        name += ".sat"
    if i.cond != Cond.NONE:
        name += f".{COND_NAMES[i.cond]}.f{i.flag >> 1}.{i.flag & 1}"
    parts.append(f"{name} ({i.exec_size})")
    d = i.dst
    dst = f"{_reg(d.file, d.reg)}.{d.subreg // d.type.size}<{d.hstride}>:{d.type.name}"
    if i.align16 and d.writemask != 0xF:
        dst += "." + "".join(c for k, c in enumerate("xyzw") if d.writemask >> k & 1)
    if i.opcode != Opcode.NOP:
        parts.append(dst)
    parts.extend(_src_text(s, i.align16) for s in i.srcs)
    opts = []
    if i.no_mask:
        opts.append("NoMask")
    if i.group:
        opts.append(f"channels {i.group}+")
    if i.send is not None:
        s = i.send
        try:
            target = Sfid(s.sfid).name.lower()
        except ValueError:
            target = f"sfid {s.sfid}"
        opts.append(f"{target} mlen {s.mlen} rlen {s.rlen}{' header' if s.header else ''}")
        if s.eot:
            opts.append("EOT")
    if i.size == 8:
        opts.append("compacted")
    text = " ".join(parts)
    return f"{text} {{ {', '.join(opts)} }}" if opts else text
