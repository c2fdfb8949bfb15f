"""Aperture accesses inside a fenced range see the surface linear, checked against the tiling
test's detiler (written from the PRM's layouts); outside every valid fence they stay linear."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from gen_vgpu.aperture import decode_fence
from gen_vgpu.mmio.regs import FENCE_REG_BASE
from gen_vgpu.tiles import Tiling

from .engine_rig import GGTT_GPA, Rig
from .test_blit_tiling import detile

START = 0x10_0000  # graphics address of the fenced surface
PITCH, HEIGHT = 1024, 64
SIZE = PITCH * HEIGHT


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    yield r
    r.close()


def fence(rig: Rig, i: int, start: int, size: int, tiling: str, pitch: int) -> None:
    """As i915 writes a fence on GEN6+: off, then the high dword, then the low one."""
    reg = FENCE_REG_BASE + 8 * i
    rig.w(reg, 0)
    rig.w(reg + 4, (start + size - 4096) | (pitch // 128 - 1))
    rig.w(reg, start | (2 if tiling == "Y" else 0) | 1)


def test_decode_fence() -> None:
    assert decode_fence(0x10_0003, 0x10_F007) == (0x10_0000, 0x11_0000, Tiling.Y, 1024)
    assert decode_fence(0x10_0001, 0x10_F003) == (0x10_0000, 0x11_0000, Tiling.X, 512)
    assert decode_fence(0x10_0002, 0x10_F007) is None  # not valid
    assert decode_fence(0x20_0001, 0x10_F007) is None  # ends before it starts


@pytest.mark.parametrize("tiling", ["X", "Y"])
def test_fenced_reads_and_writes_are_detiled(rig: Rig, tiling: str) -> None:
    rnd = random.Random(tiling)
    tiled = rnd.randbytes(SIZE)
    rig.mem.write(GGTT_GPA + START, tiled)
    before = rnd.randbytes(4096)
    rig.mem.write(GGTT_GPA + START - 4096, before)  # the page before the fence stays linear
    fence(rig, 2, START, SIZE, tiling, PITCH)
    linear = b"".join(bytes(row) for row in detile(tiled, tiling))
    ap = rig.dev.aperture
    assert ap.read(START, SIZE) == linear
    assert ap.read(START - 4096, 4096) == before
    # Small and unaligned accesses, across the fence's start and inside rows and tiles.
    for off, n in [(START - 8, 16), (START + 5, 3), (START + 1020, 8), (START + 130 * 16 + 7, 40)]:
        want = (before + linear)[off - (START - 4096) : off - (START - 4096) + n]
        assert ap.read(off, n) == want, (hex(off), n)
    # A write of one linear row lands in the tiles the row spans.
    row = rnd.randbytes(PITCH)
    ap.write(START + 9 * PITCH, row)
    new = bytearray(linear)
    new[9 * PITCH : 10 * PITCH] = row
    rows = detile(rig.mem.read(GGTT_GPA + START, SIZE), tiling)
    assert b"".join(bytes(r) for r in rows) == bytes(new)
    # The fence off: the same bytes read tiled again.
    rig.w(FENCE_REG_BASE + 16, 0)
    assert ap.read(START, SIZE) == rig.mem.read(GGTT_GPA + START, SIZE)


@pytest.mark.parametrize("fenced", [False, True], ids=["linear", "fenced"])
def test_write_multi_runs_leave_what_single_writes_leave(fenced: bool) -> None:
    """REGION_WRITE_MULTI's aperture entries joined into runs (fbcon's rows of pixels), among
    BAR0 writes and jumps, leave the memory the same writes one by one leave."""
    rnd = random.Random(7)
    writes: list[tuple[int, int, bytes]] = []
    at = START - 64
    for _ in range(600):
        kind = rnd.random()
        if kind < 0.05:
            writes.append((0x4000, 0, rnd.randbytes(4)))  # a register between runs
        elif kind < 0.15:
            at = START + rnd.randrange(0, SIZE - 64, 4) - (64 if kind < 0.1 else 0)  # a jump
        else:
            n = rnd.choice((1, 2, 4, 8))
            writes.append((at, 2, rnd.randbytes(n)))
            at += n
    images = []
    for joined in (False, True):
        rig = Rig()
        try:
            if fenced:
                fence(rig, 1, START, SIZE, "X", 512 * 2)
            if joined:
                rig.dev.region_write_multi(writes)
            else:
                for offset, index, data in writes:
                    rig.dev.region_write(index, offset, data)
            images.append((rig.mem.read(GGTT_GPA + START - 4096, SIZE + 4096), rig.dev.registers.read32(0x4000)))
        finally:
            rig.close()
    assert images[0] == images[1]
