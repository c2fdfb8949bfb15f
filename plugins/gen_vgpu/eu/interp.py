"""The EU interpreter: one kernel run by a batch of threads in lockstep, every lane of every
thread in one array operation per instruction.

A batch is :class:`Threads`: each thread's GRF (128 registers of 32 bytes), its flag
registers f0/f1 and its dispatch mask (the channels the thread was started with). The kernel
is straight-line code (no jumps decode), so threads never diverge in control flow; lanes
differ only in their execution mask, predication and data. :meth:`Threads.run` executes
instructions until the end of thread or the deadline and keeps its position, so a long
batch spreads over several loop steps.

Semantics (PRM Volume 7, "Execution", "Instruction Set Reference"):

- A source region reads, for channel ``i``, the element at ``subreg + (i // width) *
  vstride + (i % width) * hstride`` (elements, from the register's start, across registers);
  a destination writes channel ``i`` at ``subreg + i * hstride``.
- Sources are converted to the execution type: float if any source is float, else a 64-bit
  integer (a result past 64 bits wraps; the destination takes its low bits or saturates);
  ``abs`` then ``negate`` apply (for and/or/xor/not, negate is a bitwise not).
- The result converts to the destination type: float to integer rounds toward zero and
  clamps (NaN gives 0), integer to integer wraps, ``.sat`` clamps floats to [0, 1] and
  integers to the destination's range.
- A channel is enabled when its dispatch-mask bit (at the instruction's channel group) is set,
  or always under NoMask, and, when predicated, its flag bit (inverted by ``-``) is set.
  ``sel`` is the exception: its predicate chooses src0 or src1 in every enabled channel.
- A conditional modifier sets the flag bit of each enabled channel: ``cmp`` compares src0 with
  src1, every other instruction compares its result (in the execution type, before
  saturation) with zero. ``cmp`` writes all ones or zero to its destination.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .decode import Dst, Instruction, Src
from .isa import ARF_FLAG, ARF_NULL, Cond, EuError, Math, Opcode, RegFile, TypeInfo

__all__ = ["GRF_BYTES", "Messages", "Threads"]

GRF_BYTES = 128 * 32
_FLAG_BYTES = 8  # f0 and f1, 32 bits each

Array = npt.NDArray[Any]
Bytes = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]


class Messages(Protocol):
    """The shared functions a SEND reaches. ``payload`` is (threads, mlen * 32) bytes, ``lanes``
    the (threads, exec size) enabled channels; the answer is (threads, rlen * 32) bytes or
    None for a message without a response."""

    def send(self, inst: Instruction, payload: Bytes, lanes: Bools) -> Bytes | None: ...


def _range(t: TypeInfo) -> tuple[int, int]:
    bits = 8 * t.size
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if t.signed else (0, (1 << bits) - 1)


def _vf(byte: int) -> float:
    """An 8-bit restricted float of a VF immediate: sign, 3-bit exponent (bias 3), 4-bit
    mantissa; exponent 0 is zero."""
    sign = -1.0 if byte & 0x80 else 1.0
    exp = byte >> 4 & 7
    mant = byte & 0xF
    if exp == 0 and mant == 0:
        return sign * 0.0
    return sign * (1 + mant / 16) * 2.0 ** (exp - 3)


def _immediate(s: Src, es: int) -> Array:
    t = s.type
    if t.name in ("V", "UV"):
        nib = [(s.imm >> (4 * k)) & 0xF for k in range(8)]
        if t.name == "V":
            nib = [v - 16 if v & 8 else v for v in nib]
        return np.array([nib[i % 8] for i in range(es)], dtype=np.int64)
    if t.name == "VF":
        vals = [_vf((s.imm >> (8 * k)) & 0xFF) for k in range(4)]
        return np.array([vals[i % 4] for i in range(es)], dtype=np.float32)
    raw = s.imm & ((1 << (8 * t.size)) - 1)
    value = np.frombuffer(raw.to_bytes(t.size, "little"), dtype=t.numpy)[0]
    return np.full(es, value)


def region_offsets(s: Src, es: int) -> list[int]:
    """Byte offset (from g0) of each channel's element: the align1 formula, or align16's
    swizzle within groups of four."""
    size = s.type.size
    base = s.reg * 32 + s.subreg
    if s.replicate:
        return [base] * es
    if s.swizzle != (0, 1, 2, 3) or (s.vstride, s.width, s.hstride) == (4, 4, 1):
        return [base + ((i // 4) * 4 + s.swizzle[i % 4]) * size for i in range(es)]
    return [base + ((i // s.width) * s.vstride + (i % s.width) * s.hstride) * size for i in range(es)]


def dst_offsets(d: Dst, es: int) -> list[int]:
    return [d.reg * 32 + d.subreg + i * d.hstride * d.type.size for i in range(es)]


class _Access:
    """How one operand reaches its register file: element indices into a typed view when
    every element is aligned, byte indices otherwise."""

    __slots__ = ("aligned", "file", "index", "type")

    def __init__(self, file: str, offsets: list[int], t: TypeInfo, limit: int) -> None:
        self.file = file
        self.type = t
        size = t.size
        if any(o < 0 or o + size > limit for o in offsets):
            raise EuError(f"a region reaches past the {file} register file")
        self.aligned = all(o % size == 0 for o in offsets)
        if self.aligned:
            self.index = np.array([o // size for o in offsets], dtype=np.intp)
        else:
            self.index = np.array([[o + k for k in range(size)] for o in offsets], dtype=np.intp)


def _access(file: str, offsets: list[int], t: TypeInfo) -> _Access:
    return _Access(file, offsets, t, GRF_BYTES if file == "grf" else _FLAG_BYTES)


class _Plan:
    """What :class:`Threads` precomputes once per instruction."""

    __slots__ = ("dst", "lanes_mask", "srcs")

    def __init__(self, inst: Instruction) -> None:
        es = inst.exec_size
        self.srcs: list[_Access | Array] = []
        for k, s in enumerate(inst.srcs):
            if inst.send is not None or (inst.opcode == Opcode.PLN and k == 1):
                self.srcs.append(np.zeros(0))
                continue
            if s.file == RegFile.IMM:
                self.srcs.append(_immediate(s, es))
            elif s.file == RegFile.GRF:
                self.srcs.append(_access("grf", region_offsets(s, es), s.type))
            elif s.reg == ARF_NULL:
                self.srcs.append(np.zeros(es, dtype=s.type.numpy))
            else:
                self.srcs.append(
                    _access("flag", [(s.reg - ARF_FLAG) * 4 + o - s.reg * 32 for o in region_offsets(s, es)], s.type)
                )
        d = inst.dst
        self.dst: _Access | None = None
        if inst.send is not None:
            pass  # the response is whole registers (Threads._send)
        elif d.file == RegFile.GRF:
            self.dst = _access("grf", dst_offsets(d, es), d.type)
        elif d.reg != ARF_NULL:
            self.dst = _access("flag", [(d.reg - ARF_FLAG) * 4 + o - d.reg * 32 for o in dst_offsets(d, es)], d.type)
        self.lanes_mask = None
        if inst.align16 and d.writemask != 0xF:
            self.lanes_mask = np.array([bool(d.writemask >> (i % 4) & 1) for i in range(es)])


def _exec_float(types: Sequence[TypeInfo]) -> np.dtype[np.generic] | None:
    if any(t.is_float for t in types):
        return np.dtype(np.float64) if any(t.name == "DF" for t in types) else np.dtype(np.float32)
    return None


_COMPARE: dict[Cond, Callable[[Array, Array], Bools]] = {
    Cond.Z: np.equal,
    Cond.NZ: np.not_equal,
    Cond.G: np.greater,
    Cond.GE: np.greater_equal,
    Cond.L: np.less,
    Cond.LE: np.less_equal,
}


class Threads:
    """A batch of threads running one kernel. ``grf``: (threads, 4096) bytes; ``flags``:
    (threads, 8) bytes (f0, f1); ``dispatch``: (threads, 32) channel enables."""

    def __init__(self, kernel: list[Instruction], count: int, messages: Messages) -> None:
        self.kernel = kernel
        self.count = count
        self.messages = messages
        self.grf: Bytes = np.zeros((count, GRF_BYTES), dtype=np.uint8)
        self.flags: Bytes = np.zeros((count, _FLAG_BYTES), dtype=np.uint8)
        self.dispatch: Bools = np.ones((count, 32), dtype=np.bool_)
        self.pc = 0  # index into kernel
        self.done = False
        self._plans: dict[int, _Plan] = {}

    # --- register access ------------------------------------------------------------------

    def _file(self, name: str) -> Bytes:
        return self.grf if name == "grf" else self.flags

    def _read(self, a: _Access) -> Array:
        f = self._file(a.file)
        if a.aligned:
            return f.view(a.type.numpy)[:, a.index]
        return np.ascontiguousarray(f[:, a.index]).view(a.type.numpy)[..., 0]

    def _write(self, a: _Access, values: Array, enabled: Bools) -> None:
        f = self._file(a.file)
        if a.aligned:
            view = f.view(a.type.numpy)
            if enabled.all():
                view[:, a.index] = values
            else:
                view[:, a.index] = np.where(enabled, values, view[:, a.index])
            return
        new = np.ascontiguousarray(values.astype(a.type.numpy)).view(np.uint8).reshape(self.count, -1, a.type.size)
        old = f[:, a.index]
        f[:, a.index] = np.where(enabled[..., None], new, old)

    def flag_bits(self, flag: int, group: int, es: int) -> Bools:
        """(threads, es): channel bits ``group..group+es`` of flag subregister ``flag``."""
        word = self.flags.view("<u4")[:, flag >> 1].astype(np.uint64)
        shifts = np.arange(group, group + es, dtype=np.uint64) + np.uint64(16 * (flag & 1))
        return ((word[:, None] >> shifts) & np.uint64(1)).astype(np.bool_)

    def _set_flags(self, flag: int, group: int, bits_: Bools, enabled: Bools) -> None:
        view = self.flags.view("<u4")
        word = view[:, flag >> 1].astype(np.uint64)
        es = bits_.shape[1]
        shifts = np.arange(group, group + es, dtype=np.uint64) + np.uint64(16 * (flag & 1))
        one = np.uint64(1)
        keep = ~np.bitwise_or.reduce(np.where(enabled, one << shifts, np.uint64(0)), axis=1)
        set_ = np.bitwise_or.reduce(np.where(enabled & bits_, one << shifts, np.uint64(0)), axis=1)
        view[:, flag >> 1] = ((word & keep) | set_).astype(np.uint32)

    # --- running --------------------------------------------------------------------------

    def plan(self, inst: Instruction) -> _Plan:
        p = self._plans.get(inst.offset)
        if p is None:
            try:
                p = self._plans[inst.offset] = _Plan(inst)
            except EuError as exc:
                raise EuError(exc.reason, offset=inst.offset, name=inst.opcode.name.lower()) from None
        return p

    def run(self, deadline: float, clock: Callable[[], float]) -> bool:
        """Execute until the end of thread (False) or the deadline (True: call again)."""
        kernel = self.kernel
        while not self.done:
            if self.pc >= len(kernel):
                raise EuError("the kernel ended without an end of thread", offset=kernel[-1].offset if kernel else 0)
            inst = kernel[self.pc]
            self.pc += 1
            self.execute(inst)
            if clock() >= deadline and not self.done:
                return True
        return False

    def lanes(self, inst: Instruction) -> Bools:
        es = inst.exec_size
        if inst.no_mask:
            return np.ones((self.count, es), dtype=np.bool_)
        return self.dispatch[:, inst.group : inst.group + es]

    def execute(self, inst: Instruction) -> None:
        try:
            self._execute(inst)
        except EuError as exc:
            if exc.offset >= 0:
                raise
            raise EuError(exc.reason, offset=inst.offset, name=inst.opcode.name.lower()) from None

    def _execute(self, inst: Instruction) -> None:
        op = inst.opcode
        if op == Opcode.NOP:
            return
        plan = self.plan(inst)
        lanes = self.lanes(inst)
        if inst.send is not None:
            self._send(inst, lanes)
            return
        if (inst.predicate or inst.cond != Cond.NONE) and 16 * (inst.flag & 1) + inst.group + inst.exec_size > 32:
            raise EuError(f"channels {inst.group}+ of f{inst.flag >> 1}.{inst.flag & 1} are past the flag register")
        pred: Bools | None = None
        if inst.predicate:
            pred = self.flag_bits(inst.flag, inst.group, inst.exec_size)
            if inst.pred_inv:
                pred = ~pred
        enabled = lanes if pred is None or op == Opcode.SEL else lanes & pred
        if plan.lanes_mask is not None:
            enabled = enabled & plan.lanes_mask
        result, flags_from = self._compute(inst, plan, pred)
        if op == Opcode.CMP and inst.cond == Cond.NONE:
            raise EuError("cmp without a condition")
        if inst.cond != Cond.NONE:
            compare = _COMPARE.get(inst.cond)
            if compare is None:
                raise EuError(f"conditional modifier {inst.cond.name} is not modelled")
            if op == Opcode.CMP:
                a, b = flags_from
                bits_ = compare(a, b)
            elif op != Opcode.SEL:
                bits_ = compare(result, np.zeros(1, dtype=result.dtype))
            else:
                bits_ = None
            if bits_ is not None:
                self._set_flags(inst.flag, inst.group, bits_, enabled)
            if op == Opcode.CMP and plan.dst is not None and bits_ is not None:
                t = inst.dst.type
                ones = np.array([-1], dtype=np.int64).astype(f"<u{t.size}").view(t.numpy)[0]
                self._write(plan.dst, np.where(bits_, ones, np.zeros(1, dtype=t.numpy)), enabled)
                return
        if plan.dst is not None:
            self._write(plan.dst, self._convert(result, inst.dst.type, inst.saturate), enabled)

    def _sources(self, inst: Instruction, plan: _Plan, exec_type: np.dtype[np.generic]) -> list[Array]:
        out: list[Array] = []
        logic = inst.opcode in (Opcode.AND, Opcode.OR, Opcode.XOR, Opcode.NOT)
        for s, a in zip(inst.srcs, plan.srcs, strict=True):
            v = self._read(a) if isinstance(a, _Access) else np.broadcast_to(a, (self.count, inst.exec_size))
            v = v.astype(exec_type)
            if s.abs:
                v = np.abs(v)
            if s.negate:
                v = ~v if logic else -v
            out.append(v)
        return out

    def _compute(self, inst: Instruction, plan: _Plan, pred: Bools | None) -> tuple[Array, tuple[Array, Array]]:
        op = inst.opcode
        types = [s.type for s in inst.srcs]
        if op == Opcode.PLN:
            return self._pln(inst), (np.zeros(0), np.zeros(0))
        fdt = _exec_float(types)
        srcs = self._sources(inst, plan, fdt if fdt is not None else np.dtype(np.int64))
        none = (srcs[0], srcs[-1])
        if op == Opcode.MOV:
            return srcs[0], none
        if op == Opcode.SEL:
            a, b = srcs
            if inst.cond != Cond.NONE:
                compare = _COMPARE.get(inst.cond)
                if compare is None:
                    raise EuError(f"sel.{inst.cond.name} is not modelled")
                return np.where(compare(a, b), a, b), none
            if pred is None:
                return a, none
            return np.where(pred, a, b), none
        if op == Opcode.CMP:
            a, b = srcs
            return np.zeros_like(a), (a, b)
        if op in (Opcode.AND, Opcode.OR, Opcode.XOR, Opcode.NOT, Opcode.SHL, Opcode.SHR, Opcode.ASR):
            if fdt is not None:
                raise EuError("a logic or shift instruction with float operands")
            if op == Opcode.NOT:
                return ~srcs[0], none
            a, b = srcs
            if op == Opcode.AND:
                return a & b, none
            if op == Opcode.OR:
                return a | b, none
            if op == Opcode.XOR:
                return a ^ b, none
            size = types[0].size * 8
            count = b & (63 if size == 64 else 31)
            if op == Opcode.SHL:
                return a << count, none
            if op == Opcode.SHR:
                return (a & ((1 << size) - 1) if size < 64 else a) >> count, none
            return a >> count, none  # ASR: sources are sign-extended already when signed
        if op == Opcode.ADD:
            return srcs[0] + srcs[1], none
        if op == Opcode.MUL:
            return srcs[0] * srcs[1], none
        if op == Opcode.AVG:
            if fdt is not None:
                raise EuError("avg of floats")
            return (srcs[0] + srcs[1] + 1) >> 1, none
        if op == Opcode.MAD:
            return srcs[0] + srcs[1] * srcs[2], none
        if op == Opcode.LRP:
            return srcs[0] * srcs[1] + (1 - srcs[0]) * srcs[2], none
        if op in (Opcode.FRC, Opcode.RNDD, Opcode.RNDU, Opcode.RNDE, Opcode.RNDZ):
            if fdt is None:
                raise EuError("a rounding instruction on integers")
            a = srcs[0]
            rounded: dict[Opcode, Callable[[], Array]] = {
                Opcode.FRC: lambda: a - np.floor(a),
                Opcode.RNDD: lambda: np.floor(a),
                Opcode.RNDU: lambda: np.ceil(a),
                Opcode.RNDE: lambda: np.rint(a),
                Opcode.RNDZ: lambda: np.trunc(a),
            }
            return np.asarray(rounded[op]()).astype(a.dtype), none
        if op == Opcode.MATH:
            return self._math(inst, srcs, fdt is not None), none
        raise EuError("not modelled by the interpreter")

    def _math(self, inst: Instruction, srcs: list[Array], is_float: bool) -> Array:
        m = inst.math
        with np.errstate(all="ignore"):
            if m in (Math.INT_DIV_Q, Math.INT_DIV_R):
                if is_float:
                    raise EuError("integer division of floats")
                a, b = srcs
                safe = np.where(b == 0, 1, b)
                q = np.trunc(a / safe).astype(np.int64)
                q = np.where(b == 0, -1, q)
                return q if m == Math.INT_DIV_Q else np.where(b == 0, a, a - q * b)
            if not is_float:
                raise EuError(f"math {m.name.lower() if m else '?'} of integers")
            a = srcs[0].astype(np.float32)
            b = srcs[1].astype(np.float32) if len(srcs) > 1 else a
            table: dict[Math, Callable[[], Array]] = {
                Math.INV: lambda: np.float32(1) / a,
                Math.SQRT: lambda: np.sqrt(a),
                Math.RSQ: lambda: np.float32(1) / np.sqrt(a),
                Math.LOG: lambda: np.log2(a),
                Math.EXP: lambda: np.exp2(a),
                Math.SIN: lambda: np.sin(a),
                Math.COS: lambda: np.cos(a),
                Math.FDIV: lambda: a / b,
                Math.POW: lambda: np.power(a, b),
            }
            fn = table.get(m) if m is not None else None
            if fn is None:
                raise EuError(f"math function {m!r} is not modelled")
            return np.asarray(fn()).astype(np.float32)

    def _pln(self, inst: Instruction) -> Array:
        """dst = p.x * b1 + p.y * b2 + p.w: p is src0's four floats, (b1, b2) the barycentric
        pair at src1 (per eight channels: a register of b1 then one of b2)."""
        p, b = inst.srcs
        if p.type.name != "F" or b.type.name != "F" or p.file != RegFile.GRF or b.file != RegFile.GRF:
            raise EuError("pln takes float GRF operands")
        base = p.reg * 32 + p.subreg
        if base % 16 or base + 16 > GRF_BYTES:
            raise EuError("pln's src0 is not an aligned vec4")
        f = self.grf.view("<f4")
        coef = f[:, base // 4 : base // 4 + 4]
        es = inst.exec_size
        idx = [b.reg * 8 + (i // 8) * 16 + i % 8 for i in range(es)]
        if max(idx) + 8 >= GRF_BYTES // 4:
            raise EuError("pln's barycentrics run past g127")
        first = idx[0]
        if idx == list(range(first, first + es)):
            b1, b2 = f[:, first : first + es], f[:, first + 8 : first + 8 + es]
        else:
            i1 = np.array(idx, dtype=np.intp)
            b1, b2 = f[:, i1], f[:, i1 + 8]
        out: Array = coef[:, 0:1] * b1 + coef[:, 1:2] * b2 + coef[:, 3:4]
        return out

    @staticmethod
    def _convert(v: Array, t: TypeInfo, sat: bool) -> Array:
        if t.is_float:
            out = v.astype(np.float64).astype(t.numpy) if v.dtype.kind != "f" else v.astype(t.numpy)
            if sat:
                out = np.where(np.isnan(out), 0, np.clip(out, 0, 1)).astype(t.numpy)
            return out
        lo, hi = _range(t)
        if v.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                w = np.where(np.isnan(v), 0, np.clip(np.trunc(v.astype(np.float64)), lo, hi))
            return w.astype(np.int64).astype(t.numpy)
        if sat:
            return np.clip(v, lo, hi).astype(t.numpy)
        return v.astype(t.numpy)

    def _send(self, inst: Instruction, lanes: Bools) -> None:
        s = inst.send
        assert s is not None
        if inst.predicate:
            pred = self.flag_bits(inst.flag, inst.group, inst.exec_size)
            lanes = lanes & (~pred if inst.pred_inv else pred)
        start = inst.srcs[0].reg * 32
        payload = self.grf[:, start : start + 32 * s.mlen]
        answer = self.messages.send(inst, payload, lanes)
        if s.rlen:
            if answer is None or answer.shape != (self.count, 32 * s.rlen):
                raise EuError(
                    f"the shared function answered {None if answer is None else answer.shape}, not {s.rlen} registers"
                )
            d = inst.dst.reg * 32
            self.grf[:, d : d + 32 * s.rlen] = answer
        if s.eot:
            self.done = True
