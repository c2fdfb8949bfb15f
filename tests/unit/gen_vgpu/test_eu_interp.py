"""The EU interpreter against a reference model written lane by lane.

Instructions are drawn at random over opcodes, execution sizes, types, regions (vstride,
width, hstride, subregister), source modifiers, saturation, predication, conditional
modifiers, NoMask and channel groups; each is assembled (native or compacted), decoded and
run by a batch of threads with random registers, flags and dispatch masks, and every byte
of every thread's GRF and flags is compared with the model's.
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gen_vgpu.eu.asm import NULL, Assembler, Operand, g, imm
from gen_vgpu.eu.compact import CONTROL, DATATYPE, SRC_INDEX, SUBREG, expand, try_compact
from gen_vgpu.eu.decode import Instruction, decode, decode_kernel
from gen_vgpu.eu.interp import Threads
from gen_vgpu.eu.isa import Cond, EuError, Opcode, RegFile

THREADS = 3
INT_TYPES = {"UD": (4, False), "D": (4, True), "UW": (2, False), "W": (2, True), "UB": (1, False), "B": (1, True)}
TYPES = [*INT_TYPES, "F"]
SIZE = {"UD": 4, "D": 4, "UW": 2, "W": 2, "UB": 1, "B": 1, "F": 4}
FMT = {"UD": "<I", "D": "<i", "UW": "<H", "W": "<h", "UB": "<B", "B": "<b", "F": "<f"}
BINARY = [
    Opcode.ADD,
    Opcode.MUL,
    Opcode.AND,
    Opcode.OR,
    Opcode.XOR,
    Opcode.SHL,
    Opcode.SHR,
    Opcode.ASR,
    Opcode.SEL,
    Opcode.CMP,
    Opcode.AVG,
]
UNARY = [Opcode.MOV, Opcode.NOT]
LOGIC = {Opcode.AND, Opcode.OR, Opcode.XOR, Opcode.NOT, Opcode.SHL, Opcode.SHR, Opcode.ASR, Opcode.AVG}
CONDS = [Cond.NONE, Cond.Z, Cond.NZ, Cond.G, Cond.GE, Cond.L, Cond.LE]


class _NoMessages:
    def send(self, inst: Instruction, payload: np.ndarray, lanes: np.ndarray) -> np.ndarray | None:
        raise AssertionError("no message expected")


class _Silent:
    def send(self, inst: Instruction, payload: np.ndarray, lanes: np.ndarray) -> np.ndarray | None:
        return None


# --- the reference model: one lane at a time, Python numbers --------------------------------


def _load(grf: bytearray, off: int, t: str) -> int | float:
    return struct.unpack_from(FMT[t], grf, off)[0]


def _store(grf: bytearray, off: int, t: str, v: int | float) -> None:
    struct.pack_into(FMT[t], grf, off, v)


def _to_dst(v: int | float | np.float32, t: str, sat: bool) -> int | float:
    if t == "F":
        f = float(np.float32(v))
        if sat:
            f = 0.0 if math.isnan(f) else min(max(f, 0.0), 1.0)
        return f
    size, signed = INT_TYPES[t]
    lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << 8 * size) - 1)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return (
            0 if math.isnan(f) else int(min(max(math.trunc(f) if math.isfinite(f) else (hi if f > 0 else lo), lo), hi))
        )
    if sat:
        return min(max(int(v), lo), hi)
    w = int(v) & ((1 << 8 * size) - 1)
    return w - (1 << 8 * size) if signed and w >> (8 * size - 1) else w


def _cmp(cond: Cond, a: Any, b: Any) -> bool:
    return {
        Cond.Z: a == b,
        Cond.NZ: a != b,
        Cond.G: a > b,
        Cond.GE: a >= b,
        Cond.L: a < b,
        Cond.LE: a <= b,
    }[cond]


@dataclass
class Case:
    op: Opcode
    es: int
    group: int
    dst: Operand
    srcs: list[Operand]
    pred: int | None
    pred_inv: bool
    flag: int
    cond: Cond
    sat: bool
    no_mask: bool
    compact: bool


def _src_off(s: Operand, i: int) -> int:
    size = SIZE[s.type]
    return s.reg * 32 + s.sub * size + ((i // s.width) * s.vstride + (i % s.width) * s.hstride) * size


def reference(case: Case, grf: bytearray, flags: list[int], dispatch: int) -> None:
    """Run ``case`` on one thread's registers in place."""
    src_types = [s.type for s in case.srcs]
    is_float = "F" in src_types
    logic = case.op in (Opcode.AND, Opcode.OR, Opcode.XOR, Opcode.NOT)
    results = []
    for i in range(case.es):
        vals: list[int | np.float32] = []
        for s in case.srcs:
            if s.file == 3:  # immediate
                raw = s.value & ((1 << 8 * SIZE[s.type]) - 1)
                v = struct.unpack(FMT[s.type], raw.to_bytes(SIZE[s.type], "little"))[0]
            else:
                v = _load(grf, _src_off(s, i), s.type)
            if is_float:
                v = np.float32(v)
                if s.abs:
                    v = abs(v)
                if s.negate:
                    v = -v
            else:
                v = int(v)
                if s.abs:
                    v = abs(v)
                if s.negate:
                    v = ~v if logic else -v
            vals.append(v)
        results.append(vals)
    channel = case.group
    enabled_mask = [(case.no_mask or bool(dispatch >> (channel + i) & 1)) for i in range(case.es)]
    fword = flags[case.flag >> 1] if case.pred is None else flags[case.pred >> 1]
    pflag = case.flag if case.pred is None else case.pred
    pred_bits = [bool(fword >> (16 * (pflag & 1) + channel + i) & 1) ^ case.pred_inv for i in range(case.es)]
    new_flag = flags[case.flag >> 1]
    writes: list[tuple[int, Any, bool]] = []
    for i, vals in enumerate(results):
        en = enabled_mask[i] and (case.pred is None or case.op == Opcode.SEL or pred_bits[i])
        a = vals[0]
        b = vals[1] if len(vals) > 1 else a
        op = case.op
        flag_bit: bool | None = None
        with np.errstate(all="ignore"):
            if op == Opcode.MOV:
                r = a
            elif op == Opcode.NOT:
                r = ~int(a)
            elif op == Opcode.ADD:
                r = a + b
            elif op == Opcode.MUL:
                r = a * b
            elif op == Opcode.AND:
                r = int(a) & int(b)
            elif op == Opcode.OR:
                r = int(a) | int(b)
            elif op == Opcode.XOR:
                r = int(a) ^ int(b)
            elif op in (Opcode.SHL, Opcode.SHR, Opcode.ASR):
                n = int(b) & 31
                bitsz = 8 * SIZE[case.srcs[0].type]
                if op == Opcode.SHL:
                    r = int(a) << n
                elif op == Opcode.SHR:
                    r = (int(a) & ((1 << bitsz) - 1)) >> n
                else:
                    r = int(a) >> n
            elif op == Opcode.AVG:
                r = (int(a) + int(b) + 1) >> 1
            elif op == Opcode.SEL:
                if case.cond != Cond.NONE:
                    r = a if _cmp(case.cond, a, b) else b
                elif case.pred is not None:
                    r = a if pred_bits[i] else b
                else:
                    r = a
            elif op == Opcode.CMP:
                flag_bit = _cmp(case.cond, a, b)
                r = 0
            else:
                raise AssertionError(op)
        if not is_float:
            r = (int(r) + (1 << 63)) % (1 << 64) - (1 << 63)  # integers execute in 64 bits
        if case.cond != Cond.NONE and op not in (Opcode.SEL, Opcode.CMP):
            flag_bit = _cmp(case.cond, r, 0)
        if en and flag_bit is not None:
            bit = 1 << (16 * (case.flag & 1) + channel + i)
            new_flag = (new_flag | bit) if flag_bit else (new_flag & ~bit)
        if en and case.dst.file != 0:
            off = case.dst.reg * 32 + (case.dst.sub + i * case.dst.hstride) * SIZE[case.dst.type]
            if op == Opcode.CMP:
                writes.append((off, (1 << 8 * SIZE[case.dst.type]) - 1 if flag_bit else 0, True))
            else:
                writes.append((off, _to_dst(r, case.dst.type, case.sat), False))
    for off, v, raw in writes:
        if raw:
            grf[off : off + SIZE[case.dst.type]] = int(v).to_bytes(SIZE[case.dst.type], "little")
        else:
            _store(grf, off, case.dst.type, v)
    flags[case.flag >> 1] = new_flag


# --- generating cases -----------------------------------------------------------------------


@st.composite
def regions(draw: st.DrawFn, t: str, es: int) -> Operand:
    size = SIZE[t]
    width = draw(st.sampled_from([w for w in (1, 2, 4, 8, 16) if w <= es]))
    hstride = draw(st.sampled_from([0, 1, 2, 4]))
    vstride = draw(st.sampled_from([0, 1, 2, 4, 8, 16]))
    sub = draw(st.integers(0, 32 // size - 1))
    span = sub * size + ((es - 1) // width * vstride + (width - 1) * hstride + 1) * size
    reg = draw(st.integers(1, 127 - (span + 31) // 32))
    s = g(reg, t, sub).region(vstride, width, hstride)
    if draw(st.booleans()):
        s = s.absolute()
    if draw(st.booleans()):
        s = -s
    return s


FLOATS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    op = draw(st.sampled_from(BINARY + UNARY))
    es = draw(st.sampled_from([1, 2, 4, 8, 16]))
    group = draw(st.sampled_from([0, 8, 16] if es <= 8 else [0, 16]))
    logic = op in LOGIC
    types = [t for t in TYPES if not (logic and t == "F")]
    st_ = draw(st.sampled_from(types))
    dt = draw(st.sampled_from(types))
    srcs = [draw(regions(st_, es))]
    if op not in UNARY:
        if draw(st.booleans()):
            if st_ == "F":
                value = imm(draw(FLOATS), "F")
            else:
                size, signed = INT_TYPES[st_]
                lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else (0, (1 << 8 * size) - 1)
                value = imm(draw(st.integers(lo, hi)), st_ if size >= 2 else ("D" if signed else "UD"))
            srcs.append(value)
        else:
            srcs.append(draw(regions(st_, es)))
    if logic:
        srcs = [
            s
            if s.file == 3 or op in (Opcode.AND, Opcode.OR, Opcode.XOR, Opcode.NOT)
            else Operand(s.file, s.reg, s.type, s.sub, s.vstride, s.width, s.hstride)
            for s in srcs
        ]
    if op == Opcode.AVG:
        srcs = [Operand(s.file, s.reg, s.type, s.sub, s.vstride, s.width, s.hstride, value=s.value) for s in srcs]
    dhs = draw(st.sampled_from([1, 2, 4]))
    dsize = SIZE[dt]
    dsub = draw(st.integers(0, 32 // dsize - 1))
    span = dsub * dsize + ((es - 1) * dhs + 1) * dsize
    dst = g(draw(st.integers(1, 127 - (span + 31) // 32)), dt, dsub).stride(dhs)
    cond = draw(st.sampled_from(CONDS[1:] if op == Opcode.CMP else CONDS))
    if op == Opcode.CMP and draw(st.booleans()):
        dst = NULL
    pred = draw(st.one_of(st.none(), st.integers(0, 3)))
    flag = draw(st.integers(0, 3)) if pred is None else pred
    if 16 * (flag & 1) + group + es > 32:
        group = 0  # a channel group past the flag register is refused (test below)
    return Case(
        op=op,
        es=es,
        group=group,
        dst=dst,
        srcs=srcs,
        pred=pred,
        pred_inv=draw(st.booleans()),
        flag=flag,
        cond=cond,
        sat=draw(st.booleans()) and op != Opcode.CMP,
        no_mask=draw(st.booleans()),
        compact=draw(st.booleans()),
    )


def _assemble(case: Case) -> bytes:
    a = Assembler(8, compact=case.compact)
    a.op(
        case.op,
        case.es,
        case.dst,
        *case.srcs,
        pred=case.pred,
        pred_inv=case.pred_inv,
        flag=case.flag,
        cond=case.cond,
        sat=case.sat,
        no_mask=case.no_mask,
        group=case.group,
    )
    return a.bytes()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), seed=st.integers(0, 2**32 - 1))
def test_interpreter_matches_reference(case: Case, seed: int) -> None:
    rng = np.random.default_rng(seed)
    code = _assemble(case)
    inst = decode(code, 0, 8)
    assert inst.size == len(code)
    t = Threads([inst], THREADS, _NoMessages())
    grf = rng.integers(0, 256, size=(THREADS, 4096), dtype=np.uint8)
    if "F" in [s.type for s in case.srcs] or case.dst.type == "F":
        # Floats from a range where float32 arithmetic has no NaN: random bytes as floats.
        floats = rng.uniform(-1e4, 1e4, size=(THREADS, 1024)).astype(np.float32)
        floats[:, ::7] = np.round(floats[:, ::7])
        grf = floats.view(np.uint8).copy()
    t.grf[:] = grf
    t.flags[:] = rng.integers(0, 256, size=(THREADS, 8), dtype=np.uint8)
    t.dispatch[:] = rng.integers(0, 2, size=(THREADS, 32)).astype(bool)
    expect_grf = [bytearray(t.grf[k].tobytes()) for k in range(THREADS)]
    expect_flags = [list(struct.unpack("<II", t.flags[k].tobytes())) for k in range(THREADS)]
    dispatch = [int(sum(1 << i for i in range(32) if t.dispatch[k, i])) for k in range(THREADS)]
    t.execute(inst)
    for k in range(THREADS):
        reference(case, expect_grf[k], expect_flags[k], dispatch[k])
        got = t.grf[k].tobytes()
        if got != bytes(expect_grf[k]):
            diff = [i for i in range(4096) if got[i] != expect_grf[k][i]]
            raise AssertionError(f"{inst}: thread {k} GRF bytes differ at {diff[:8]}")
        assert list(struct.unpack("<II", t.flags[k].tobytes())) == expect_flags[k], str(inst)


# --- compaction ---------------------------------------------------------------------------


@pytest.mark.parametrize("gen", [8, 9])
def test_every_table_entry_expands_and_compacts_back(gen: int) -> None:
    for ci in range(len(CONTROL)):
        for di in range(len(DATATYPE)):
            for si in (0, 5, 31):
                word = (
                    Opcode.ADD
                    | 1 << 29
                    | ci << 8
                    | di << 13
                    | si << 18
                    | (ci % 32) << 30
                    | (di % 32) << 35
                    | 7 << 40
                    | 9 << 48
                    | 11 << 56
                )
                n = expand(word, gen)
                c = try_compact(n, gen)
                immediate = (n >> 41) & 3 == 3 or (n >> 89) & 3 == 3
                if immediate and SUBREG[si] >> 10:
                    continue  # an immediate has no src1 subregister: that entry cannot come back
                assert c is not None and expand(c, gen) == n
    for idx, entry in enumerate(SRC_INDEX):
        word = Opcode.MOV | 1 << 29 | idx << 30 | 1 << 13  # datatype 1: register sources
        assert (expand(word, gen) >> 77) & 0xFFF == entry
    assert len(SUBREG) == 32


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_compacted_and_native_decode_alike(case: Case) -> None:
    case.compact = False
    native = _assemble(case)
    case.compact = True
    packed = _assemble(case)
    a, b = decode(native, 0, 8), decode(packed, 0, 8)
    assert (a.raw, str(a).replace(" { compacted }", "").replace(", compacted", "")) == (
        b.raw,
        str(b).replace(" { compacted }", "").replace(", compacted", ""),
    )


@pytest.mark.parametrize("gen", [8, 9])
def test_three_source_compaction(gen: int) -> None:
    a = Assembler(gen, compact=True)
    a.op(Opcode.MAD, 8, g(20, "F"), g(2, "F"), g(4, "F"), g(6, "F").scalar())
    a.op(Opcode.MAD, 16, g(22, "F"), -g(2, "F"), g(4, "F"), g(6, "F"))
    code = a.bytes()
    insts = []
    off = 0
    while off < len(code):
        insts.append(decode(code, off, gen))
        off += insts[-1].size
    assert [i.size for i in insts] == [8, 8]
    assert insts[1].srcs[0].negate and not insts[0].srcs[0].negate
    assert insts[0].srcs[2].replicate and not insts[1].srcs[2].replicate


# --- refusals -----------------------------------------------------------------------------


def _native(op: int, extra: int = 0) -> bytes:
    return (op | 3 << 21 | 1 << 35 | 1 << 41 | 7 << 37 | 7 << 43 | 1 << 61 | extra).to_bytes(16, "little")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (_native(0x22), "if at 0x0: not modelled"),
        (_native(0x7F), "opcode 0x7f at 0x0: unknown opcode"),
        (_native(Opcode.MOV, 1 << 79), "mov at 0x0: src0 uses indirect addressing"),
        (_native(Opcode.MOV, 4 << 21), "mov at 0x0: execution size 128"),
        (_native(Opcode.MOV, 2 << 16), "predicate control 2"),
        (_native(Opcode.ADD, 1 << 8), "align16 two-source"),
    ],
)
def test_unknown_forms_are_refused_with_name_and_offset(code: bytes, message: str) -> None:
    with pytest.raises(EuError, match=message.replace("(", r"\(")):
        decode_kernel(code, 8)


def test_the_accumulator_is_refused() -> None:
    a = Assembler(8)
    a.op(Opcode.ADD, 8, g(2, "F"), Operand(RegFile.ARF, 0x20, "F"), g(3, "F"))
    with pytest.raises(EuError, match="add at 0x0: src0 is the accumulator"):
        decode_kernel(a.bytes(), 8)


def test_a_kernel_without_end_of_thread_is_refused() -> None:
    a = Assembler(8)
    a.op(Opcode.MOV, 8, g(2, "F"), g(3, "F"))
    with pytest.raises(EuError, match="ends inside an instruction"):
        decode_kernel(a.bytes(), 8)


def test_batches_resume_after_the_deadline() -> None:
    a = Assembler(8)
    for _ in range(5):
        a.op(Opcode.ADD, 8, g(2, "D"), g(2, "D"), imm(1, "D"))
    a.send(8, NULL, 2, 7, 1 << 25, eot=True)
    kernel = decode_kernel(a.bytes(), 8)
    t = Threads(kernel, 4, _Silent())
    steps = 0
    while t.run(0.0, time.monotonic):  # a deadline in the past: one instruction per call
        steps += 1
    assert steps == 5 and t.done
    assert (t.grf.view("<i4")[:, 16:24] == 5).all()
