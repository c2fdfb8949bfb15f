"""Typed records of decoded commands: what an engine needs to execute each one.

Addresses are graphics addresses: GGTT when ``ggtt`` is set, else the context's PPGTT; in a
store-index form the address is a byte offset in the context's per-process status page
(PPHWSP). Blit addresses are always PPGTT (the XY commands have no address-space bit).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
    "Atomic",
    "AtomicOp",
    "CompareOp",
    "CondBatchEnd",
    "CopyMemMem",
    "LoadRegisterMem",
    "LoadRegisterReg",
    "Math",
    "ReportHead",
    "SemaphoreWait",
    "StoreDataIndex",
    "PPHWSP_SIZE",
    "ArbCheck",
    "ArbOnOff",
    "BatchEnd",
    "BatchStart",
    "ColorBlt",
    "Command",
    "FlushDw",
    "GfxState",
    "LoadRegisterImm",
    "Noop",
    "PipeControl",
    "PostSync",
    "SrcCopyBlt",
    "StoreDataImm",
    "StoreRegisterMem",
    "UserInterrupt",
]

PPHWSP_SIZE = 4096  # a store-index offset plus its access must stay inside this page


class PostSync(enum.IntEnum):
    """Post-sync operation of PIPE_CONTROL (DW1 15:14) and MI_FLUSH_DW (DW0 15:14)."""

    NONE = 0
    WRITE_IMM = 1
    DEPTH_COUNT = 2  # PIPE_CONTROL only (reserved in MI_FLUSH_DW)
    TIMESTAMP = 3


class Noop(NamedTuple):
    pass


class ArbCheck(NamedTuple):
    pass


class ArbOnOff(NamedTuple):
    enable: bool


class UserInterrupt(NamedTuple):
    pass


class BatchEnd(NamedTuple):
    pass


class BatchStart(NamedTuple):
    address: int
    ppgtt: bool  # DW0 bit 8; clear = GGTT ("secure", privileged) batch
    second_level: bool  # DW0 bit 22


class StoreDataImm(NamedTuple):
    address: int
    ggtt: bool
    size: int  # 4 (dword form) or 8 (qword form, DW0 bit 21)
    value: int


class LoadRegisterImm(NamedTuple):
    writes: tuple[tuple[int, int], ...]  # (MMIO offset, value) in command order


class StoreRegisterMem(NamedTuple):
    register: int
    address: int
    ggtt: bool


class FlushDw(NamedTuple):
    post_sync: PostSync
    address: int
    ggtt: bool
    store_index: bool
    size: int  # bytes the post-sync op writes: 4 or 8 (0 without one)
    value: int
    notify: bool
    invalidate_tlb: bool


class PipeControl(NamedTuple):
    flags: int  # DW1 as encoded
    post_sync: PostSync
    address: int
    ggtt: bool
    store_index: bool
    value: int  # 64-bit immediate (DW4 | DW5 << 32); the write is always a qword
    notify: bool
    invalidate_tlb: bool


class GfxState(NamedTuple):
    """A 3D/media client-3 command, length-checked; the render pipeline (render/) reads it."""

    header: int
    length: int
    dwords: tuple[int, ...]  # the whole command


class ColorBlt(NamedTuple):
    """XY_COLOR_BLT: fill [x1, x2) x [y1, y2) of a 32 bpp surface (pitch in bytes; tiled: X or Y
    as BCS_SWCTRL says when it runs)."""

    dst: int
    pitch: int
    x1: int
    y1: int
    x2: int
    y2: int
    color: int
    rop: int
    tiled: bool = False


class SrcCopyBlt(NamedTuple):
    """XY_SRC_COPY_BLT: copy a (x2 - x1) x (y2 - y1) rectangle between 32 bpp surfaces (pitches
    in bytes; a tiled one X or Y as BCS_SWCTRL says when it runs)."""

    dst: int
    dst_pitch: int
    x1: int
    y1: int
    x2: int
    y2: int
    src: int
    src_pitch: int
    src_x: int
    src_y: int
    rop: int
    dst_tiled: bool = False
    src_tiled: bool = False


class CondBatchEnd(NamedTuple):
    """MI_CONDITIONAL_BATCH_BUFFER_END: the batch ends when the dword at ``address`` is at
    most ``value`` (unsigned), else it goes on."""

    address: int
    ggtt: bool
    value: int


class CompareOp(enum.IntEnum):
    """MI_SEMAPHORE_WAIT's compare operation (DW0 14:12): memory (SAD) against the data (SDD)."""

    SAD_GT_SDD = 0
    SAD_GTE_SDD = 1
    SAD_LT_SDD = 2
    SAD_LTE_SDD = 3
    SAD_EQ_SDD = 4
    SAD_NEQ_SDD = 5


class SemaphoreWait(NamedTuple):
    """MI_SEMAPHORE_WAIT in polling mode: the engine waits until the dword at ``address``
    compares true against ``value``."""

    address: int
    ggtt: bool
    value: int
    op: CompareOp


class Math(NamedTuple):
    """MI_MATH: ALU instructions over the engine's GPRs, each (opcode, operand1, operand2)."""

    instructions: tuple[tuple[int, int, int], ...]


class LoadRegisterReg(NamedTuple):
    src: int
    dst: int


class LoadRegisterMem(NamedTuple):
    register: int
    address: int
    ggtt: bool


class CopyMemMem(NamedTuple):
    """MI_COPY_MEM_MEM: one dword from ``src`` to ``dst``."""

    dst: int
    dst_ggtt: bool
    src: int
    src_ggtt: bool


class AtomicOp(enum.IntEnum):
    """MI_ATOMIC operations (DW0 15:8, low nibble; 0x20 set for the qword forms)."""

    AND = 0x1
    OR = 0x2
    XOR = 0x3
    MOVE = 0x4
    INC = 0x5
    DEC = 0x6
    ADD = 0x7
    SUB = 0x8
    RSUB = 0x9
    IMAX = 0xA
    IMIN = 0xB
    UMAX = 0xC
    UMIN = 0xD
    CMP_WR = 0xE
    PREDEC = 0xF


class Atomic(NamedTuple):
    """MI_ATOMIC on a dword or qword at ``address``; ``operands`` are the inline source
    values (empty without inline data: 0 for the operations that need one)."""

    address: int
    ggtt: bool
    op: AtomicOp
    size: int  # 4 or 8
    operands: tuple[int, int]  # source 1, source 2 (CMP_WR: compare value, new value)


class StoreDataIndex(NamedTuple):
    """MI_STORE_DATA_INDEX: a dword or qword at ``offset`` in the context's PPHWSP."""

    offset: int
    size: int
    value: int


class ReportHead(NamedTuple):
    """MI_REPORT_HEAD: a legacy ring's head report; nothing to do under execlists."""


Command = (
    Noop
    | ArbCheck
    | ArbOnOff
    | UserInterrupt
    | BatchEnd
    | BatchStart
    | StoreDataImm
    | LoadRegisterImm
    | StoreRegisterMem
    | FlushDw
    | PipeControl
    | GfxState
    | ColorBlt
    | SrcCopyBlt
    | CondBatchEnd
    | SemaphoreWait
    | Math
    | LoadRegisterReg
    | LoadRegisterMem
    | CopyMemMem
    | Atomic
    | StoreDataIndex
    | ReportHead
)
