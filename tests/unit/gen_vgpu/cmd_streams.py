"""Encoders for GEN8 commands, written from the command layouts (docs/commands.md), so tests
can build streams without going through the decoders they test."""

from __future__ import annotations

MI_NOOP = 0x00000000
MI_USER_INTERRUPT = 0x01000000
MI_ARB_CHECK = 0x02800000
MI_ARB_ON_OFF = 0x04000000
MI_ARB_ENABLE = MI_ARB_ON_OFF | 1
MI_BATCH_BUFFER_END = 0x05000000
MI_STORE_DWORD_IMM = 0x10000002
MI_STORE_QWORD_IMM = 0x10000003 | 1 << 21
MI_USE_GGTT = 1 << 22
MI_FLUSH_DW = 0x13000002  # 4 dwords, dword data
MI_FLUSH_DW_STORE_INDEX = 1 << 21
MI_INVALIDATE_TLB = 1 << 18
MI_FLUSH_DW_OP_STOREDW = 1 << 14
MI_FLUSH_DW_NOTIFY = 1 << 8
MI_INVALIDATE_BSD = 1 << 7
MI_FLUSH_DW_USE_GTT = 1 << 2
GFX_OP_PIPE_CONTROL = 0x7A000004
PC_GLOBAL_GTT = 1 << 24
PC_MMIO_WRITE = 1 << 23
PC_STORE_DATA_INDEX = 1 << 21
PC_CS_STALL = 1 << 20
PC_TLB_INVALIDATE = 1 << 18
PC_QW_WRITE = 1 << 14
PC_NOTIFY = 1 << 8
XY_COLOR_BLT = 0x54000005 | 3 << 20
XY_SRC_COPY_BLT = 0x54C00008 | 3 << 20
BLT_DEPTH_32 = 3 << 24


def lo(addr: int) -> int:
    return addr & 0xFFFFFFFF


def hi(addr: int) -> int:
    return addr >> 32


def sdi(addr: int, value: int, *, ggtt: bool = False, qword: bool = False) -> list[int]:
    head = (MI_STORE_QWORD_IMM if qword else MI_STORE_DWORD_IMM) | (MI_USE_GGTT if ggtt else 0)
    data = [value & 0xFFFFFFFF, value >> 32] if qword else [value]
    return [head, lo(addr), hi(addr), *data]


def lri(*pairs: tuple[int, int]) -> list[int]:
    out = [0x11000000 | (2 * len(pairs) - 1)]
    for reg, val in pairs:
        out += [reg, val]
    return out


def srm(reg: int, addr: int, *, ggtt: bool = False) -> list[int]:
    return [0x12000002 | (MI_USE_GGTT if ggtt else 0), reg, lo(addr), hi(addr)]


def flush_dw(addr: int = 0, value: int = 0, flags: int = MI_FLUSH_DW_OP_STOREDW, *, qword: bool = False) -> list[int]:
    data = [value & 0xFFFFFFFF, value >> 32] if qword else [value]
    return [(MI_FLUSH_DW + (1 if qword else 0)) | flags, lo(addr), hi(addr), *data]


def bb_start(addr: int, *, ppgtt: bool = True, second_level: bool = False) -> list[int]:
    return [0x18800001 | (1 << 8 if ppgtt else 0) | (1 << 22 if second_level else 0), lo(addr), hi(addr)]


def pipe_control(flags: int, addr: int = 0, value: int = 0) -> list[int]:
    return [GFX_OP_PIPE_CONTROL, flags, lo(addr), hi(addr), value & 0xFFFFFFFF, value >> 32]


def color_blt(dst: int, pitch: int, x1: int, y1: int, x2: int, y2: int, color: int) -> list[int]:
    return [XY_COLOR_BLT, BLT_DEPTH_32 | 0xF0 << 16 | pitch, y1 << 16 | x1, y2 << 16 | x2, lo(dst), hi(dst), color]


def src_copy_blt(
    dst: int, dst_pitch: int, x1: int, y1: int, x2: int, y2: int, src: int, src_pitch: int, sx: int, sy: int
) -> list[int]:
    return [
        XY_SRC_COPY_BLT,
        BLT_DEPTH_32 | 0xCC << 16 | dst_pitch,
        y1 << 16 | x1,
        y2 << 16 | x2,
        lo(dst),
        hi(dst),
        sy << 16 | sx,
        src_pitch,
        lo(src),
        hi(src),
    ]


# --- the commands IGT's libraries add (encodings from i915's intel_gpu_commands.h) -------------

MI_REPORT_HEAD = 0x03800000
MI_COND_BATCH_BUFFER_END = 0x36 << 23
MI_DO_COMPARE = 1 << 21
MI_SEMAPHORE_WAIT = 0x1C << 23 | 2
MI_SEMAPHORE_POLL = 1 << 15
SAD_GT, SAD_GTE, SAD_LT, SAD_LTE, SAD_EQ, SAD_NEQ = range(6)
MI_MATH = 0x1A << 23
MI_LOAD_REGISTER_REG = 0x2A << 23 | 1
MI_LOAD_REGISTER_MEM = 0x29 << 23 | 2
MI_COPY_MEM_MEM = 0x2E << 23 | 3
MI_ATOMIC = 0x2F << 23
MI_ATOMIC_INLINE = 1 << 18
MI_STORE_DATA_INDEX = 0x21 << 23 | 1
GPR = 0x600  # CS_GPR(n) = engine base + 0x600 + 8 n
RING_TIMESTAMP = 0x358
ALU_LOAD, ALU_LOADINV, ALU_LOAD0, ALU_LOAD1 = 0x080, 0x480, 0x081, 0x481
ALU_ADD, ALU_SUB, ALU_AND, ALU_OR, ALU_XOR = 0x100, 0x101, 0x102, 0x103, 0x104
ALU_STORE, ALU_STOREINV = 0x180, 0x580
SRCA, SRCB, ACCU, ZF, CF = 0x20, 0x21, 0x31, 0x32, 0x33


def canonical(addr: int) -> int:
    """The 64-bit canonical form of a 48-bit address (bits 63:48 copy bit 47)."""
    return addr | (0xFFFF << 48 if addr >> 47 & 1 else 0)


def cond_bb_end(addr: int, value: int, *, ggtt: bool = False) -> list[int]:
    return [MI_COND_BATCH_BUFFER_END | MI_DO_COMPARE | (MI_USE_GGTT if ggtt else 0) | 2, value, lo(addr), hi(addr)]


def semaphore_wait(addr: int, value: int, op: int = SAD_EQ, *, ggtt: bool = False) -> list[int]:
    head = MI_SEMAPHORE_WAIT | MI_SEMAPHORE_POLL | op << 12 | (MI_USE_GGTT if ggtt else 0)
    return [head, value, lo(addr), hi(addr)]


def alu(opcode: int, a: int = 0, b: int = 0) -> int:
    return opcode << 20 | a << 10 | b


def math(*instructions: int) -> list[int]:
    return [MI_MATH | (len(instructions) - 1), *instructions]


def lrr(src: int, dst: int) -> list[int]:
    return [MI_LOAD_REGISTER_REG, src, dst]


def lrm(reg: int, addr: int, *, ggtt: bool = False) -> list[int]:
    return [MI_LOAD_REGISTER_MEM | (MI_USE_GGTT if ggtt else 0), reg, lo(addr), hi(addr)]


def copy_mem_mem(dst: int, src: int, *, dst_ggtt: bool = False, src_ggtt: bool = False) -> list[int]:
    head = MI_COPY_MEM_MEM | (1 << 21 if dst_ggtt else 0) | (1 << 22 if src_ggtt else 0)
    return [head, lo(dst), hi(dst), lo(src), hi(src)]


def atomic(addr: int, op: int, *operands: int, qword: bool = False, ggtt: bool = False) -> list[int]:
    code = op | (0x20 if qword else 0)
    head = MI_ATOMIC | code << 8 | (1 << 19 if qword else 0) | (MI_USE_GGTT if ggtt else 0)
    if not operands:
        return [head | 1, lo(addr), hi(addr)]
    data = []
    for v in (list(operands) + [0, 0, 0, 0])[:4]:
        data += [v & 0xFFFFFFFF, v >> 32 & 0xFFFFFFFF]
    return [head | MI_ATOMIC_INLINE | 9, lo(addr), hi(addr), *data]


def store_data_index(offset: int, value: int, *, qword: bool = False) -> list[int]:
    if qword:
        return [(MI_STORE_DATA_INDEX + 1) | 1 << 21, offset, value & 0xFFFFFFFF, value >> 32]
    return [MI_STORE_DATA_INDEX, offset, value]
