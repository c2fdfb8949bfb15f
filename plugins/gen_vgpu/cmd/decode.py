"""One validating decoder per command (the rows of opcodes.py name them).

A decoder gets the dword buffer, the command's position, its length (already checked against
the header's length rule) and DW0, and returns the command's record or raises FieldError with
what is wrong.
"""

from __future__ import annotations

from ..mmio.regs import MMIO_SIZE
from .records import (
    PPHWSP_SIZE,
    ArbCheck,
    ArbOnOff,
    Atomic,
    AtomicOp,
    BatchEnd,
    BatchStart,
    ColorBlt,
    Command,
    CompareOp,
    CondBatchEnd,
    CopyMemMem,
    FlushDw,
    GfxState,
    LoadRegisterImm,
    LoadRegisterMem,
    LoadRegisterReg,
    Math,
    Noop,
    PipeControl,
    PostSync,
    ReportHead,
    SemaphoreWait,
    SrcCopyBlt,
    StoreDataImm,
    StoreDataIndex,
    StoreRegisterMem,
    UserInterrupt,
)
from .reject import FieldError
from .spec import Dwords, bit

__all__ = [
    "atomic",
    "cond_batch_end",
    "copy_mem_mem",
    "load_register_mem",
    "load_register_reg",
    "math",
    "report_head",
    "semaphore_wait",
    "store_data_index",
    "arb_check",
    "arb_on_off",
    "batch_end",
    "batch_start",
    "color_blt",
    "flush_dw",
    "gfx_state",
    "load_register_imm",
    "noop",
    "pipe_control",
    "src_copy_blt",
    "store_data_imm",
    "store_register_mem",
    "user_interrupt",
]

ADDR_HI_UPPER = 0xFFFF0000  # bits 63:48 of an upper address dword: bit 47's sign extension
_BIT47 = 0x8000
PIPE_CONTROL_MMIO_WRITE = bit(23)
# Header and flag bits as constants: the decoders run per command.
_B8 = bit(8)
_B11 = bit(11)
_B15 = bit(15)
_B18 = bit(18)
_B21 = bit(21)
_B22 = bit(22)
_B24 = bit(24)
BLT_DEPTH_32 = 3
ROP_PATCOPY = 0xF0  # XY_COLOR_BLT: fill with the colour
ROP_SRCCOPY = 0xCC  # XY_SRC_COPY_BLT: copy the source
_POST_SYNC = tuple(PostSync)  # indexed by the 2-bit field: cheaper than calling the enum


def _address(lo: int, hi: int, what: str) -> int:
    """A 48-bit graphics address from its two dwords. Canonical addresses (bits 63:48 a copy
    of bit 47, as i915 and IGT write them for the top of the address space) are accepted and
    taken as their 48 bits, as hardware ignores the copy; anything else in 63:48 is refused."""
    upper = hi & ADDR_HI_UPPER
    if upper and (upper != ADDR_HI_UPPER or not hi & _BIT47):
        raise FieldError(f"{what} bits 63:48 are not a sign extension of bit 47 (upper dword {hi:#x})")
    return ((hi & 0xFFFF) << 32) | lo


def _register(dw: int) -> int:
    # Register dwords hold an MMIO offset in bits 22:2; refuse anything that is not one.
    if dw & 3 or dw >= MMIO_SIZE:
        raise FieldError(f"register dword {dw:#x} is not a dword-aligned MMIO offset below {MMIO_SIZE:#x}")
    return dw


def noop(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return Noop()


def arb_check(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return ArbCheck()


def arb_on_off(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return ArbOnOff(bool(dw0 & 1))


def user_interrupt(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return UserInterrupt()


def batch_end(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return BatchEnd()


def batch_start(b: Dwords, p: int, n: int, dw0: int) -> Command:
    lo = b[p + 1]
    if lo & 3:
        raise FieldError(f"batch address {lo:#x} not dword aligned")
    return BatchStart(_address(lo, b[p + 2], "batch address"), bool(dw0 & _B8), bool(dw0 & _B22))


def store_data_imm(b: Dwords, p: int, n: int, dw0: int) -> Command:
    qword = bool(dw0 & _B21)
    if qword != (n == 5):
        raise FieldError("store-qword bit 21 and the length disagree (dword form: 4 dwords, qword form: 5)")
    lo = b[p + 1]
    if lo & (7 if qword else 3):
        raise FieldError(f"address {lo:#x} not aligned to the {'qword' if qword else 'dword'} written")
    value = b[p + 3] | (b[p + 4] << 32 if qword else 0)
    return StoreDataImm(_address(lo, b[p + 2], "address"), bool(dw0 & _B22), 8 if qword else 4, value)


def load_register_imm(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return LoadRegisterImm(tuple((_register(b[i]), b[i + 1]) for i in range(p + 1, p + n, 2)))


def store_register_mem(b: Dwords, p: int, n: int, dw0: int) -> Command:
    lo = b[p + 2]
    if lo & 3:
        raise FieldError(f"address {lo:#x} not dword aligned")
    return StoreRegisterMem(_register(b[p + 1]), _address(lo, b[p + 3], "address"), bool(dw0 & _B22))


def flush_dw(b: Dwords, p: int, n: int, dw0: int) -> Command:
    post_sync = _POST_SYNC[(dw0 >> 14) & 3]
    if post_sync is PostSync.DEPTH_COUNT:
        raise FieldError("post-sync operation 2 is reserved for MI_FLUSH_DW")
    lo = b[p + 1]
    if lo & 3:
        raise FieldError(f"address dword {lo:#x} has reserved bits 1:0 set")
    store_index = bool(dw0 & _B21)
    address = _address(lo & ~7, b[p + 2], "address")  # bits 47:3; bit 2 selects the GGTT
    size = 0
    if post_sync is PostSync.WRITE_IMM:
        size = 8 if n == 5 else 4
    elif post_sync is PostSync.TIMESTAMP:
        size = 8
    if size and store_index and address + size > PPHWSP_SIZE:
        raise FieldError(f"store-index offset {address:#x} + {size} runs past the {PPHWSP_SIZE}-byte PPHWSP")
    value = b[p + 3] | (b[p + 4] << 32 if n == 5 else 0)
    return FlushDw(post_sync, address, bool(lo & 4), store_index, size, value, bool(dw0 & _B8), bool(dw0 & _B18))


def pipe_control(b: Dwords, p: int, n: int, dw0: int) -> Command:
    flags = b[p + 1]
    if flags & PIPE_CONTROL_MMIO_WRITE:
        raise FieldError("the MMIO-write post-sync form (DW1 bit 23) is not supported")
    post_sync = _POST_SYNC[(flags >> 14) & 3]
    lo = b[p + 2]
    store_index = bool(flags & _B21)
    address = _address(lo, b[p + 3], "address")
    if post_sync is not PostSync.NONE:
        if lo & 7:
            raise FieldError(f"post-sync address {lo:#x} not aligned to the qword written")
        if store_index and address + 8 > PPHWSP_SIZE:
            raise FieldError(f"store-index offset {address:#x} + 8 runs past the {PPHWSP_SIZE}-byte PPHWSP")
    return PipeControl(
        flags,
        post_sync,
        address,
        bool(flags & _B24),
        store_index,
        b[p + 4] | (b[p + 5] << 32),
        bool(flags & _B8),
        bool(flags & _B18),
    )


def gfx_state(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return GfxState(dw0, n, tuple(b[p : p + n]))


def _blt_header(dw0: int, src: bool) -> tuple[bool, bool]:
    """(destination tiled, source tiled): DW0 bits 11 and 15."""
    if dw0 & (3 << 20) != 3 << 20:
        raise FieldError("only 32 bpp writes of all four channels (DW0 bits 21:20 = 3) are supported")
    return bool(dw0 & _B11), src and bool(dw0 & _B15)


def _br13(dw: int, rop: int, tiled: bool) -> int:
    """Check BR13 (depth, ROP, clipping) and return the destination pitch in bytes."""
    if dw >> 26:
        raise FieldError(f"BR13 {dw:#x}: clipping and bits 31:26 are not supported")
    if (dw >> 24) & 3 != BLT_DEPTH_32:
        raise FieldError(f"BR13 {dw:#x}: colour depth {(dw >> 24) & 3} is not 32 bpp (3)")
    if (dw >> 16) & 0xFF != rop:
        raise FieldError(f"BR13 {dw:#x}: ROP {(dw >> 16) & 0xFF:#x} is not {rop:#x}")
    return _pitch(dw, "destination", tiled)


def _pitch(dw: int, what: str, tiled: bool) -> int:
    """The pitch in bytes: the field is in bytes for a linear surface, in dwords for a tiled
    one, whose rows of tiles it must hold whole (a multiple of 128 bytes, Y's tile width)."""
    pitch = dw & 0xFFFF
    if pitch & 0x8000:
        raise FieldError(f"{what} pitch {pitch:#x} is negative")
    if not tiled:
        if pitch & 3:
            raise FieldError(f"{what} pitch {pitch:#x} is not a multiple of 4")
        return pitch
    if (pitch * 4) % 128:
        raise FieldError(f"tiled {what} pitch {pitch:#x} dwords is not a multiple of 128 bytes")
    return pitch * 4


def _tiled_address(address: int, tiled: bool, what: str) -> int:
    if tiled and address & 0xFFF:
        raise FieldError(f"tiled {what} {address:#x} is not 4 KiB aligned")
    return address


def _corner(dw: int, what: str) -> tuple[int, int]:
    x, y = dw & 0xFFFF, dw >> 16
    if x & 0x8000 or y & 0x8000:
        raise FieldError(f"{what} ({x:#x}, {y:#x}) is negative")
    return x, y


def _rect(b: Dwords, p: int) -> tuple[int, int, int, int]:
    x1, y1 = _corner(b[p], "top-left corner")
    x2, y2 = _corner(b[p + 1], "bottom-right corner")
    if x2 < x1 or y2 < y1:
        raise FieldError(f"rectangle ({x1}, {y1})-({x2}, {y2}) has its corners swapped")
    return x1, y1, x2, y2


def color_blt(b: Dwords, p: int, n: int, dw0: int) -> Command:
    tiled, _ = _blt_header(dw0, src=False)
    pitch = _br13(b[p + 1], ROP_PATCOPY, tiled)
    x1, y1, x2, y2 = _rect(b, p + 2)
    dst = _tiled_address(_address(b[p + 4], b[p + 5], "destination address"), tiled, "destination address")
    return ColorBlt(dst, pitch, x1, y1, x2, y2, b[p + 6], ROP_PATCOPY, tiled)


def src_copy_blt(b: Dwords, p: int, n: int, dw0: int) -> Command:
    dst_tiled, src_tiled = _blt_header(dw0, src=True)
    dst_pitch = _br13(b[p + 1], ROP_SRCCOPY, dst_tiled)
    x1, y1, x2, y2 = _rect(b, p + 2)
    dst = _tiled_address(_address(b[p + 4], b[p + 5], "destination address"), dst_tiled, "destination address")
    src_x, src_y = _corner(b[p + 6], "source corner")
    if b[p + 7] >> 16:
        raise FieldError(f"source pitch dword {b[p + 7]:#x} has bits 31:16 set")
    src_pitch = _pitch(b[p + 7], "source", src_tiled)
    src = _tiled_address(_address(b[p + 8], b[p + 9], "source address"), src_tiled, "source address")
    return SrcCopyBlt(dst, dst_pitch, x1, y1, x2, y2, src, src_pitch, src_x, src_y, ROP_SRCCOPY, dst_tiled, src_tiled)


def report_head(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return ReportHead()


def _dword_address(b: Dwords, p: int, what: str = "address") -> int:
    lo = b[p]
    if lo & 3:
        raise FieldError(f"{what} {lo:#x} not dword aligned")
    return _address(lo, b[p + 1], what)


def cond_batch_end(b: Dwords, p: int, n: int, dw0: int) -> Command:
    if not dw0 & _B21:
        raise FieldError("only the compare-semaphore form (DW0 bit 21) is supported")
    return CondBatchEnd(_dword_address(b, p + 2), bool(dw0 & _B22), b[p + 1])


SEMAPHORE_POLL = bit(15)
_COMPARE_OPS = tuple(CompareOp)


def semaphore_wait(b: Dwords, p: int, n: int, dw0: int) -> Command:
    if not dw0 & SEMAPHORE_POLL:
        raise FieldError("signal wait mode (DW0 bit 15 clear) is not supported: nothing signals")
    op = (dw0 >> 12) & 7
    if op >= len(_COMPARE_OPS):
        raise FieldError(f"compare operation {op} is reserved")
    return SemaphoreWait(_dword_address(b, p + 2), bool(dw0 & _B22), b[p + 1], _COMPARE_OPS[op])


# MI_MATH ALU (GEN8/GEN9): opcode 31:20, operand 1 19:10, operand 2 9:0.
ALU_NOOP, ALU_LOAD, ALU_LOADINV, ALU_LOAD0, ALU_LOAD1 = 0x000, 0x080, 0x480, 0x081, 0x481
ALU_ADD, ALU_SUB, ALU_AND, ALU_OR, ALU_XOR = 0x100, 0x101, 0x102, 0x103, 0x104
ALU_STORE, ALU_STOREINV = 0x180, 0x580
ALU_SRCA, ALU_SRCB, ALU_ACCU, ALU_ZF, ALU_CF = 0x20, 0x21, 0x31, 0x32, 0x33
GPR_COUNT = 16
_ALU_SOURCES = frozenset({*range(GPR_COUNT), ALU_ACCU, ALU_ZF, ALU_CF})
_ALU_NO_OPERANDS = frozenset({ALU_NOOP, ALU_ADD, ALU_SUB, ALU_AND, ALU_OR, ALU_XOR})


def _alu(dw: int) -> tuple[int, int, int]:
    opcode, a, c = dw >> 20, (dw >> 10) & 0x3FF, dw & 0x3FF
    if opcode in _ALU_NO_OPERANDS:
        ok = a == 0 and c == 0
    elif opcode in (ALU_LOAD, ALU_LOADINV):
        ok = a in (ALU_SRCA, ALU_SRCB) and c in _ALU_SOURCES
    elif opcode in (ALU_LOAD0, ALU_LOAD1):
        ok = a in (ALU_SRCA, ALU_SRCB) and c == 0
    elif opcode in (ALU_STORE, ALU_STOREINV):
        ok = a < GPR_COUNT and c in _ALU_SOURCES
    else:
        raise FieldError(f"ALU instruction {dw:#010x}: opcode {opcode:#x} is not a GEN8/GEN9 ALU operation")
    if not ok:
        raise FieldError(f"ALU instruction {dw:#010x}: operands {a:#x}, {c:#x} are not valid for opcode {opcode:#x}")
    return opcode, a, c


def math(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return Math(tuple(_alu(b[i]) for i in range(p + 1, p + n)))


def load_register_reg(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return LoadRegisterReg(_register(b[p + 1]), _register(b[p + 2]))


def load_register_mem(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return LoadRegisterMem(_register(b[p + 1]), _dword_address(b, p + 2), bool(dw0 & _B22))


def copy_mem_mem(b: Dwords, p: int, n: int, dw0: int) -> Command:
    dst = _dword_address(b, p + 1, "destination address")
    src = _dword_address(b, p + 3, "source address")
    return CopyMemMem(dst, bool(dw0 & _B21), src, bool(dw0 & _B22))


ATOMIC_INLINE = bit(18)
ATOMIC_RETURN = bit(16)
ATOMIC_POST_SYNC = bit(21)
_ATOMIC_QWORD = 0x20
_ATOMIC_NO_OPERAND = frozenset({AtomicOp.INC, AtomicOp.DEC, AtomicOp.PREDEC})


def atomic(b: Dwords, p: int, n: int, dw0: int) -> Command:
    if dw0 & (ATOMIC_RETURN | ATOMIC_POST_SYNC):
        raise FieldError("MI_ATOMIC's return-data and post-sync forms (DW0 bits 16, 21) are not supported")
    code = (dw0 >> 8) & 0xFF
    if code & ~(_ATOMIC_QWORD | 0xF) or not code & 0xF:
        raise FieldError(f"atomic operation {code:#x} is not a dword or qword operation")
    qword = bool(code & _ATOMIC_QWORD)
    if (dw0 >> 19) & 3 != int(qword):
        raise FieldError("data size (DW0 20:19) does not match the operation's dword or qword form")
    op = AtomicOp(code & 0xF)
    inline = bool(dw0 & ATOMIC_INLINE)
    if inline != (n == 11):
        raise FieldError("inline data (DW0 bit 18) and the length disagree (3 dwords, or 11 with inline data)")
    if not inline and op not in _ATOMIC_NO_OPERAND:
        raise FieldError(f"{op.name} needs its operands inline (DW0 bit 18)")
    size = 8 if qword else 4
    address = _dword_address(b, p + 1)
    if address & (size - 1):
        raise FieldError(f"address {address:#x} not aligned to the {size} bytes operated on")
    operands = (b[p + 3] | b[p + 4] << 32, b[p + 5] | b[p + 6] << 32) if inline else (0, 0)
    return Atomic(address, bool(dw0 & _B22), op, size, operands)


def store_data_index(b: Dwords, p: int, n: int, dw0: int) -> Command:
    qword = bool(dw0 & _B21)
    if qword != (n == 4):
        raise FieldError("store-qword bit 21 and the length disagree (dword form: 3 dwords, qword form: 4)")
    offset = b[p + 1]
    size = 8 if qword else 4
    if offset & (size - 1) or offset + size > PPHWSP_SIZE:
        raise FieldError(f"index offset {offset:#x} not aligned to {size} or past the {PPHWSP_SIZE}-byte PPHWSP")
    return StoreDataIndex(offset, size, b[p + 2] | (b[p + 3] << 32 if qword else 0))
