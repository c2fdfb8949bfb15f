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
