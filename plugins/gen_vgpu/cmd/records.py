"""Typed records of decoded commands: what an engine needs to execute each one.

Addresses are graphics addresses: GGTT when ``ggtt`` is set, else the context's PPGTT; in a
store-index form the address is a byte offset in the context's per-process status page
(PPHWSP). Blit addresses are always PPGTT (the XY commands have no address-space bit).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = [
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
    """A 3D/media client-3 command the render engine length-checks and skips."""

    header: int
    length: int


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
)
