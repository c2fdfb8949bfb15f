"""Host-side rig for the render pipelines: a flat test memory as an address space, the
project's own kernels (assembled), and the command dwords a render copy, a media fill and a
GPGPU fill emit, built the way IGT's libraries lay them out (state in one buffer)."""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from gen_vgpu.eu.asm import NULL, Assembler, g, imm
from gen_vgpu.eu.isa import Opcode, Sfid
from gen_vgpu.gtt.space import Span
from gen_vgpu.render.pipeline import Job, Pipeline

MEM = 64 << 20


class Memory(Protocol):
    """Where a test lays out state, kernels and surfaces."""

    def put(self, gma: int, data: bytes) -> None: ...

    def dwords(self, gma: int, values: Sequence[int]) -> None: ...


class FlatSpace:
    """Graphics addresses [0, MEM) are one host buffer; the rest is scratch."""

    def __init__(self, size: int = MEM) -> None:
        self.buf = bytearray(size)

    def spans(self, gma: int, size: int, write: bool) -> list[Span]:
        end = gma + size
        inside = min(end, len(self.buf))
        out = []
        if gma < inside:
            out.append(Span(gma, inside, memoryview(self.buf)[gma:inside]))
        if end > max(gma, inside):
            out.append(Span(max(gma, inside), end, None))
        return out

    def put(self, gma: int, data: bytes) -> None:
        self.buf[gma : gma + len(data)] = data

    def dwords(self, gma: int, values: Sequence[int]) -> None:
        self.put(gma, struct.pack(f"<{len(values)}I", *values))


def cmd(key: int, *body: int) -> list[int]:
    return [key << 16 | (len(body) - 1), *body]


def run(job: Job | None) -> int:
    steps = 0
    while job is not None and job.step(time.monotonic() + 0.00025, time.monotonic):
        steps += 1
    return steps


def run_all(p: Pipeline, commands: list[list[int]]) -> int:
    steps = 0
    for c in commands:
        steps += run(p.command(c))
    return steps


# --- the project's kernels --------------------------------------------------------------

SAMPLE_SIMD16 = 2 << 17  # sampler message: SIMD16, type sample (0)
RT_WRITE_SIMD16 = 12 << 14 | 1 << 12  # render target write, last render target, SIMD16 single source


def copy_kernel(gen: int, compact: bool = False, sample_type: int = 0) -> bytes:
    """The pixel shader of a render copy: interpolate (u, v) from the setup data at g6 with
    the barycentrics at g2..g5, sample binding table entry 1 with sampler 0, write the colour
    to the render target at entry 0."""
    a = Assembler(gen, compact=compact)
    a.op(Opcode.PLN, 8, g(10, "F"), g(6, "F").scalar(), g(2, "F"))
    a.op(Opcode.PLN, 8, g(11, "F"), g(6, "F").scalar(), g(4, "F"), group=8)
    a.op(Opcode.PLN, 8, g(12, "F"), g(6, "F", 4).scalar(), g(2, "F"))
    a.op(Opcode.PLN, 8, g(13, "F"), g(6, "F", 4).scalar(), g(4, "F"), group=8)
    a.send(16, g(20, "F"), 10, Sfid.SAMPLER, 4 << 25 | 8 << 20 | SAMPLE_SIMD16 | sample_type << 12 | 1)
    a.send(16, NULL, 20, Sfid.RENDER_CACHE, 8 << 25 | RT_WRITE_SIMD16 | 0, eot=True)
    return a.bytes()


def fill_kernel(gen: int, height: int, sfid: int = Sfid.DATA_CACHE1, gpgpu: bool = False) -> bytes:
    """A media/GPGPU fill: the colour byte in g1 replicated over a 16-byte-wide block of
    ``height`` rows, written with a media block write at the (x, y) in g2 (a media object's
    inline data) or at (16 * group X, group Y) from g0 (a GPGPU thread)."""
    a = Assembler(gen)
    a.op(Opcode.MOV, 4, g(1, "UB"), g(1, "UB").region(0, 1, 0))
    if gpgpu:
        a.op(Opcode.MUL, 1, g(2, "D"), g(0, "D", 1).region(0, 1, 0), imm(16, "D"), no_mask=True)
        a.op(Opcode.MOV, 1, g(2, "D", 1), g(0, "D", 6).region(0, 1, 0), no_mask=True)
    a.op(Opcode.MOV, 8, g(4, "UD"), g(0, "UD"), no_mask=True)
    a.op(Opcode.MOV, 2, g(4, "UD"), g(2, "UD").region(2, 2, 1), no_mask=True)
    a.op(Opcode.MOV, 1, g(4, "UD", 2), imm((height - 1) << 16 | 15, "UD"), no_mask=True)
    regs = (16 * height + 31) // 32
    for r in range(0, regs, 2):
        a.op(Opcode.MOV, 16 if r + 1 < regs else 8, g(5 + r, "UD"), g(1, "UD").region(0, 1, 0), no_mask=True)
    a.send(16, NULL, 4, sfid, (1 + regs) << 25 | 1 << 19 | 10 << 14 | 0)
    a.op(Opcode.MOV, 8, g(112, "UD"), g(0, "UD"), no_mask=True)
    a.send(16, NULL, 112, Sfid.THREAD_SPAWNER, 1 << 25 | 0x10, eot=True)
    return a.bytes()


def surface_state(base: int, width: int, height: int, pitch: int, fmt: int, tiling: int) -> list[int]:
    dw = [0] * 16
    dw[0] = 1 << 29 | fmt << 18 | 1 << 16 | 1 << 14 | tiling << 12
    dw[2] = (height - 1) << 16 | (width - 1)
    dw[3] = pitch - 1
    dw[7] = 4 << 25 | 5 << 22 | 6 << 19 | 7 << 16
    dw[8] = base & 0xFFFFFFFF
    dw[9] = base >> 32
    return dw


def tile_offset(x_bytes: np.ndarray, y: np.ndarray, pitch: int, tiling: int) -> np.ndarray:
    """An independent statement of the tiled layouts (per byte, by the tile geometry)."""
    if tiling == 0:
        return y * pitch + x_bytes
    if tiling == 2:
        tiles_per_row = pitch // 512
        return ((y // 8) * tiles_per_row + x_bytes // 512) * 4096 + (y % 8) * 512 + x_bytes % 512
    tiles_per_row = pitch // 128
    return (
        ((y // 32) * tiles_per_row + x_bytes // 128) * 4096 + (x_bytes % 128) // 16 * 512 + (y % 32) * 16 + x_bytes % 16
    )
