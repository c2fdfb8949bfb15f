"""The render pipelines drawing and dispatching from hand-built state and the project's own
kernels in a test memory: render copies between linear, X- and Y-tiled surfaces, media and
GPGPU fills, every pixel checked; and the refusals of state and kernels not modelled."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from gen_vgpu.eu.asm import Assembler, g
from gen_vgpu.eu.isa import Opcode
from gen_vgpu.render.errors import RenderRefused
from gen_vgpu.render.pipeline import Pipeline

from .render_rig import FlatSpace, Memory, cmd, copy_kernel, fill_kernel, run, run_all, surface_state, tile_offset

HEAP = 0x10000
BT, SS_DST, SS_SRC, SAMPLER, KERNEL, VB, CURBE, IDD = 0x0, 0x40, 0x80, 0x100, 0x200, 0x1000, 0x1100, 0x1200
SRC, DST = 0x100000, 0x1000000
BGRA, RGBA, R8 = 0x0C0, 0x0C7, 0x140


def base_address(gen: int) -> list[int]:
    body = [1, 0, 1, HEAP | 1, 0, HEAP | 1, 0, 0, 0, HEAP | 1, 0, 0xFFFFF001, 0x1001, 0xFFFFF001, 0x1001]
    if gen == 9:
        body += [1, 0, 0xFFFFF000]
    return cmd(0x6101, *body)


def select(gen: int, pipe: int) -> list[int]:
    return [0x69040000 | pipe | (3 << 8 if gen == 9 else 0)]


def fill_surface(
    space: FlatSpace, base: int, width: int, height: int, pitch: int, bpp: int, tiling: int, pixels: np.ndarray
) -> None:
    xb = (np.arange(width)[None, :, None] * bpp + np.arange(bpp)[None, None, :]).repeat(height, 0)
    yy = np.arange(height)[:, None, None].repeat(width, 1).repeat(bpp, 2)
    offs = tile_offset(xb, yy, pitch, tiling) + base
    arr = np.frombuffer(space.buf, dtype=np.uint8)
    arr[offs.reshape(-1)] = pixels.reshape(-1)


def read_surface(space: FlatSpace, base: int, width: int, height: int, pitch: int, bpp: int, tiling: int) -> np.ndarray:
    xb = (np.arange(width)[None, :, None] * bpp + np.arange(bpp)[None, None, :]).repeat(height, 0)
    yy = np.arange(height)[:, None, None].repeat(width, 1).repeat(bpp, 2)
    offs = tile_offset(xb, yy, pitch, tiling) + base
    return np.frombuffer(space.buf, dtype=np.uint8)[offs]


def copy_setup(
    space: Memory,
    gen: int,
    src: tuple[int, int, int, int, int],  # width, height, pitch, format, tiling
    dst: tuple[int, int, int, int, int],
    rect: tuple[int, int, int, int, int, int],  # sx, sy, w, h, dx, dy
    kernel: bytes,
    sampler: tuple[int, int] = (0, 2 << 6 | 2 << 3 | 2),
    extra: list[list[int]] | None = None,
) -> list[list[int]]:
    sx, sy, w, h, dx, dy = rect
    space.dwords(HEAP + BT, [SS_DST, SS_SRC])
    space.dwords(HEAP + SS_DST, surface_state(DST, dst[0], dst[1], dst[2], dst[3], dst[4]))
    space.dwords(HEAP + SS_SRC, surface_state(SRC, src[0], src[1], src[2], src[3], src[4]))
    space.dwords(HEAP + SAMPLER, [sampler[0], 0, 0, sampler[1]])
    space.put(HEAP + KERNEL, kernel)
    sw, sh = src[0], src[1]
    verts = [
        (dx + w, dy + h, (sx + w) / sw, (sy + h) / sh),
        (dx, dy + h, sx / sw, (sy + h) / sh),
        (dx, dy, sx / sw, sy / sh),
    ]
    space.put(HEAP + VB, b"".join(struct.pack("<hhff", *v) for v in verts))
    elements = [
        1 << 25 | 0x000 << 16 | 0, 2 << 28 | 2 << 24 | 2 << 20 | 2 << 16,
        1 << 25 | 0x0F6 << 16 | 0, 1 << 28 | 1 << 24 | 2 << 20 | 3 << 16,
        1 << 25 | 0x085 << 16 | 4, 1 << 28 | 1 << 24 | 2 << 20 | 3 << 16,
    ]  # fmt: skip
    return [
        select(gen, 0),
        base_address(gen),
        cmd(0x781F, 1 << 22 | 1 << 29 | 1 << 28 | 1 << 11 | 1 << 5, 0, 0),
        cmd(0x7851, *[0] * 10),
        cmd(0x7850, 0, 0, 0, 0),
        cmd(0x7813, 0, 0, 0),
        cmd(0x7812, 0, 0, 0),
        cmd(0x782A, BT),
        cmd(0x782F, SAMPLER),
        cmd(0x7814, 1 << 11),
        cmd(0x7817, *[0] * 10),
        cmd(0x7820, KERNEL, 0, 1 << 27 | 2 << 18, 0, 0, 62 << 23 | 2, 6 << 16, 0, 0, 0, 0),
        cmd(0x784D, 1 << 30),
        cmd(0x784F, 1 << 31 | 1 << 8),
        cmd(0x784E, 0, 0),
        cmd(0x7900, 0, (dst[1] - 1) << 16 | (dst[0] - 1), 0),
        cmd(0x7808, 1 << 14 | 12, HEAP + VB, 0, 36),
        cmd(0x7809, *elements),
        cmd(0x784B, 0x0F),
        *(extra or []),
        cmd(0x7B00, 0, 3, 0, 1, 0, 0),
    ]


TILINGS = {"linear": 0, "x": 2, "y": 3}


@pytest.mark.parametrize("gen", [8, 9])
@pytest.mark.parametrize(
    ("src_tiling", "dst_tiling"), [("linear", "linear"), ("x", "y"), ("y", "x"), ("linear", "y"), ("x", "linear")]
)
def test_render_copy_every_pixel(gen: int, src_tiling: str, dst_tiling: str) -> None:
    space = FlatSpace()
    rng = np.random.default_rng(gen * 7 + len(src_tiling + dst_tiling))
    sw, sh, dw_, dh = 300, 70, 260, 90
    spitch, dpitch = 1536, 1536
    st, dt = TILINGS[src_tiling], TILINGS[dst_tiling]
    src_pixels = rng.integers(0, 256, size=(sh, sw, 4), dtype=np.uint8)
    dst_pixels = rng.integers(0, 256, size=(dh, dw_, 4), dtype=np.uint8)
    fill_surface(space, SRC, sw, sh, spitch, 4, st, src_pixels)
    fill_surface(space, DST, dw_, dh, dpitch, 4, dt, dst_pixels)
    rect = (13, 5, 201, 53, 29, 31)
    p = Pipeline(space, gen)
    run_all(
        p,
        copy_setup(
            space,
            gen,
            (sw, sh, spitch, BGRA, st),
            (dw_, dh, dpitch, BGRA, dt),
            rect,
            copy_kernel(gen, compact=gen == 9),
        ),
    )
    sx, sy, w, h, dx, dy = rect
    expect = dst_pixels.copy()
    expect[dy : dy + h, dx : dx + w] = src_pixels[sy : sy + h, sx : sx + w]
    got = read_surface(space, DST, dw_, dh, dpitch, 4, dt)
    bad = np.argwhere((got != expect).any(axis=2))
    assert len(bad) == 0, f"{len(bad)} pixels differ, first at (y, x) {bad[:5].tolist()}"


def test_render_copy_r8_and_format_conversion() -> None:
    """R8 to R8 copies the byte; BGRA to RGBA swaps channels."""
    space = FlatSpace()
    rng = np.random.default_rng(5)
    src_pixels = rng.integers(0, 256, size=(40, 64, 1), dtype=np.uint8)
    fill_surface(space, SRC, 64, 40, 128, 1, 3, src_pixels)
    fill_surface(space, DST, 64, 40, 512, 1, 2, np.zeros((40, 64, 1), dtype=np.uint8))
    p = Pipeline(space, 8)
    run_all(p, copy_setup(space, 8, (64, 40, 128, R8, 3), (64, 40, 512, R8, 2), (0, 0, 64, 40, 0, 0), copy_kernel(8)))
    assert (read_surface(space, DST, 64, 40, 512, 1, 2) == src_pixels).all()

    space = FlatSpace()
    src_pixels = rng.integers(0, 256, size=(8, 16, 4), dtype=np.uint8)
    fill_surface(space, SRC, 16, 8, 64, 4, 0, src_pixels)
    p = Pipeline(space, 8)
    run_all(p, copy_setup(space, 8, (16, 8, 64, BGRA, 0), (16, 8, 64, RGBA, 0), (0, 0, 16, 8, 0, 0), copy_kernel(8)))
    got = read_surface(space, DST, 16, 8, 64, 4, 0)
    assert (got == src_pixels[:, :, [2, 1, 0, 3]]).all()


def test_a_draw_runs_in_bounded_steps() -> None:
    space = FlatSpace()
    p = Pipeline(space, 8)
    cmds = copy_setup(
        space, 8, (256, 256, 1024, BGRA, 0), (256, 256, 1024, BGRA, 0), (0, 0, 256, 256, 0, 0), copy_kernel(8)
    )
    for c in cmds[:-1]:
        assert p.command(c) is None
    job = p.command(cmds[-1])
    assert job is not None
    steps = run(job)
    assert steps > 4 and job.pixels == 256 * 256 and job.threads == 256 * 256 // 16


def media_setup(
    space: Memory, gen: int, pipe: int, kernel: bytes, color: int, tiling: int, pitch: int, size: tuple[int, int]
) -> list[list[int]]:
    space.dwords(HEAP + BT, [SS_DST])
    space.dwords(HEAP + SS_DST, surface_state(DST, size[0], size[1], pitch, R8, tiling))
    space.put(HEAP + KERNEL, kernel)
    space.put(HEAP + CURBE, bytes([color]) + bytes(63))
    space.dwords(HEAP + IDD, [KERNEL, 0, 1 << 18, 0, BT, 1 << 16, 0, 0])
    return [
        select(gen, pipe),
        base_address(gen),
        cmd(0x7000, 0, 0, 1 << 16 | 2 << 8, 0, 2 << 16 | 2, 0, 0, 0),
        cmd(0x7001, 0, 64, CURBE),
        cmd(0x7002, 0, 32, IDD),
    ]


@pytest.mark.parametrize("gen", [8, 9])
@pytest.mark.parametrize("tiling", [0, 2, 3])
def test_media_fill_every_byte(gen: int, tiling: int) -> None:
    space = FlatSpace()
    width, height, pitch = 128, 64, 512
    before = np.random.default_rng(tiling).integers(0, 256, size=(height, width, 1), dtype=np.uint8)
    fill_surface(space, DST, width, height, pitch, 1, tiling, before)
    cmds = media_setup(space, gen, 1, fill_kernel(gen, 16), 0x5A, tiling, pitch, (width, height))
    x0, y0, w, h = 32, 16, 64, 32
    for bx in range(x0, x0 + w, 16):
        for by in range(y0, y0 + h, 16):
            cmds += [cmd(0x7100, 0, 0, 0, 0, 0, bx, by), cmd(0x7004, 0)]
    p = Pipeline(space, gen)
    run_all(p, cmds)
    expect = before.copy()
    expect[y0 : y0 + h, x0 : x0 + w] = 0x5A
    assert (read_surface(space, DST, width, height, pitch, 1, tiling) == expect).all()


@pytest.mark.parametrize("gen", [8, 9])
def test_gpgpu_fill_every_byte(gen: int) -> None:
    space = FlatSpace()
    width, height, pitch = 96, 24, 128
    before = np.zeros((height, width, 1), dtype=np.uint8)
    fill_surface(space, DST, width, height, pitch, 1, 3, before)
    cmds = media_setup(space, gen, 2, fill_kernel(gen, 1, gpgpu=True), 0xC3, 3, pitch, (width, height))
    fill_w, fill_h = 80, 20
    cmds.append(cmd(0x7105, 0, 0, 0, 1 << 30, 0, 0, fill_w // 16, 0, 0, fill_h, 0, 1, 0xFFFF, 0xFFFFFFFF))
    p = Pipeline(space, gen)
    run_all(p, cmds)
    expect = before.copy()
    expect[:fill_h, :fill_w] = 0xC3
    assert (read_surface(space, DST, width, height, pitch, 1, 3) == expect).all()


# --- refusals -----------------------------------------------------------------------------


def _refused(cmds: list[list[int]], match: str, gen: int = 8, space: FlatSpace | None = None) -> None:
    p = Pipeline(space or FlatSpace(), gen)
    with pytest.raises(RenderRefused, match=match):
        run_all(p, cmds)


def _copy(space: FlatSpace, **kw: object) -> list[list[int]]:
    return copy_setup(space, 8, (32, 32, 128, BGRA, 0), (32, 32, 128, BGRA, 0), (0, 0, 32, 32, 0, 0), **kw)  # type: ignore[arg-type]


def test_refused_state_leaves_the_target_untouched() -> None:
    cases = [
        ([cmd(0x784D, 1 << 30 | 1 << 29)], "blending"),
        ([cmd(0x784E, 1 << 1, 0)], "depth and stencil"),
        ([cmd(0x7813, 1 << 1, 0, 0)], "viewport transform"),
        ([cmd(0x7810, 0, 0, 0, 0, 0, 0, 1, 0)], "vertex shader"),
        ([cmd(0x7817, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)], "push constants"),
        ([cmd(0x7851, 1, *[0] * 9)], "attribute swizzles"),
        ([cmd(0x7859, 0)], "command 0x78590000"),
    ]
    for extra, match in cases:
        space = FlatSpace()
        _refused(_copy(space, kernel=copy_kernel(8), extra=extra), match, space=space)
        assert not any(space.buf[DST : DST + 32 * 128]), match


def test_refused_samplers_surfaces_and_kernels() -> None:
    space = FlatSpace()
    _refused(
        _copy(space, kernel=copy_kernel(8), sampler=(1 << 14, 2 << 6 | 2 << 3)),
        "filters 1/0 are not modelled",
        space=space,
    )
    space = FlatSpace()
    cmds = copy_setup(space, 8, (32, 32, 128, 0x1AB, 0), (32, 32, 128, BGRA, 0), (0, 0, 32, 32, 0, 0), copy_kernel(8))
    _refused(cmds, "surface format 0x1ab is not modelled", space=space)
    a = Assembler(8)
    a.op(Opcode.IF, 8, g(2, "D"), g(2, "D"), g(2, "D"))
    space = FlatSpace()
    _refused(
        _copy(space, kernel=a.bytes() + copy_kernel(8)),
        r"pixel shader at 0x10200: if at 0x0: not modelled",
        space=space,
    )
    space = FlatSpace()
    _refused(_copy(space, kernel=copy_kernel(8, sample_type=3)), r"sampler message type 3 is not modelled", space=space)


def test_refused_kernel_shows_its_disassembly() -> None:
    space = FlatSpace()
    with pytest.raises(RenderRefused) as info:
        run_all(Pipeline(space, 8), _copy(space, kernel=copy_kernel(8, sample_type=3)))
    text = str(info.value)
    assert "send (16)" in text and "pln (8)" in text and "0x0040:" in text


def test_walker_needs_its_pipeline_and_descriptor() -> None:
    space = FlatSpace()
    cmds = media_setup(space, 8, 1, fill_kernel(8, 1, gpgpu=True), 1, 0, 128, (64, 4))
    cmds.append(cmd(0x7105, 0, 0, 0, 1 << 30, 0, 0, 1, 0, 0, 1, 0, 1, 0xFFFF, 0xFFFFFFFF))
    _refused(cmds, "GPGPU pipeline is not selected", space=space)
    space = FlatSpace()
    cmds = media_setup(space, 8, 1, fill_kernel(8, 16), 1, 0, 128, (64, 32))
    cmds.append(cmd(0x7100, 5, 0, 0, 0, 0, 0, 0))
    _refused(cmds, "interface descriptor 5 was not loaded", space=space)


def test_guest_kernels_are_the_assemblers() -> None:
    """The guest render script carries the project's kernels as bytes (it has no devmodel)."""
    import ast
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "guest-tests" / "guest" / "test_i915_render.py"
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            name = getattr(node.targets[0], "id", "")
            if name.endswith("_KERNEL"):
                found[name] = bytes.fromhex("".join(ast.literal_eval(a) for a in node.value.args))
    assert found == {
        "COPY_KERNEL": copy_kernel(8),
        "MEDIA_FILL_KERNEL": fill_kernel(8, 16),
        "GPGPU_FILL_KERNEL": fill_kernel(8, 1, gpgpu=True),
    }


def test_a_state_command_shorter_than_its_fields_is_unmodelled_state() -> None:
    """A guest's MEDIA_VFE_STATE with a 1-dword length: noted, so the dispatch that needs it is
    refused, instead of an exception in the engine's task."""
    from gen_vgpu.render.state import RenderState, apply

    st = RenderState(8)
    assert apply(st, [0x70000001, 0, 0]) == "MEDIA_VFE_STATE"
    assert "shorter than its fields" in st.unmodelled["MEDIA_VFE_STATE"]
