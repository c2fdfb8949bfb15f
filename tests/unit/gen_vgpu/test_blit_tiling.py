"""XY_SRC_COPY_BLT and XY_COLOR_BLT on linear, X- and Y-tiled surfaces, on the Python path and
with the compiled accelerator, checked against a detiler of the test's own.

The detiler is written from the PRM's tile layouts, tile by tile (not address by address as
the device computes them): a tiled surface is a row-major grid of 4 KiB tiles; an X tile holds
8 rows of 512 bytes one after the other, a Y tile 32 rows of 128 bytes as eight 16-byte
columns, each column's 32 rows in turn. Whether a tiled surface is X or Y comes from
BCS_SWCTRL, loaded by MI_LOAD_REGISTER_IMM before the blit as IGT does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from devmodel import accel as accel_module
from gen_vgpu.cmd.records import ColorBlt, SrcCopyBlt
from gen_vgpu.engine import blit as blit_module
from gen_vgpu.engine import blit_accel as blit_accel_module
from gen_vgpu.engine.blit import BlitJob
from gen_vgpu.engine.blit_accel import BlitAccel, has_blit_accel
from gen_vgpu.engines import EngineId, engine_by_id
from gen_vgpu.gtt.mm import RootKind
from gen_vgpu.gtt.space import PpgttSpace

from . import cmd_streams as c
from .engine_rig import GGTT_GPA, PAGE, Rig, Tree
from .test_engine_run import BUF, done

BCS = engine_by_id(EngineId.BCS)
BCS_SWCTRL = 0x22200
SRC_Y, DST_Y = 1 << 0, 1 << 1
PITCH = 1024  # 2 X tiles or 8 Y tiles a row
HEIGHT = 64  # 8 rows of X tiles, 2 of Y tiles
SIZE = PITCH * HEIGHT
COMPILED = has_blit_accel(accel_module.load(True))


def detile(raw: bytes, tiling: str, pitch: int = PITCH) -> list[bytearray]:
    """The surface's rows, from its bytes in memory."""
    rows = [bytearray(pitch) for _ in range(len(raw) // pitch)]
    if tiling == "linear":
        for y, row in enumerate(rows):
            row[:] = raw[y * pitch : (y + 1) * pitch]
        return rows
    for t in range(len(raw) // 4096):
        tile = raw[t * 4096 : (t + 1) * 4096]
        if tiling == "X":
            ty, tx = divmod(t, pitch // 512)
            for r in range(8):
                rows[ty * 8 + r][tx * 512 : (tx + 1) * 512] = tile[r * 512 : (r + 1) * 512]
        else:
            ty, tx = divmod(t, pitch // 128)
            for col in range(8):
                for r in range(32):
                    x = tx * 128 + col * 16
                    rows[ty * 32 + r][x : x + 16] = tile[col * 512 + r * 16 : col * 512 + r * 16 + 16]
    return rows


@pytest.fixture(params=["python", "compiled"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "compiled" and not COMPILED:
        pytest.skip("the compiled accelerator is not installed")
    r = Rig()
    if request.param == "compiled":
        accel = accel_module.load(True)
        assert accel is not None
        r.dev.ppgtt.store.use_accel(accel)
        r.dev.runner.blit_accel = BlitAccel(accel, r.dev.dma, r.dev.info.pte_ops)
    yield r
    r.close()


def surface(rig: Rig, tree: Tree, gva: int, seed: int) -> list[int]:
    pages = tree.buffer(gva, SIZE)  # pages in reverse order: every page its own run
    rnd = random.Random(seed)
    for p in pages:
        rig.mem.write(p, rnd.randbytes(PAGE))
    return pages


def raw(rig: Rig, pages: list[int]) -> bytes:
    return b"".join(rig.mem.read(p, PAGE) for p in pages)


def swctrl(dst: str, src: str) -> list[int]:
    bits = (DST_Y if dst == "Y" else 0) | (SRC_Y if src == "Y" else 0)
    return c.lri((BCS_SWCTRL, (SRC_Y | DST_Y) << 16 | bits))  # a masked register


def pitch_field(tiling: str) -> int:
    return PITCH if tiling == "linear" else PITCH // 4  # tiled pitches count dwords


def tile_bits(dst: str, src: str | None) -> int:
    return (1 << 11 if dst != "linear" else 0) | (1 << 15 if src not in (None, "linear") else 0)


LAYOUTS = ["linear", "X", "Y"]


@pytest.mark.parametrize("src_tiling", LAYOUTS)
@pytest.mark.parametrize("dst_tiling", LAYOUTS)
def test_copy_between_layouts_matches_the_detiler(rig: Rig, dst_tiling: str, src_tiling: str) -> None:
    tree = Tree(rig.guest, 4)
    src_va, dst_va = BUF, BUF + 0x10_0000
    src = surface(rig, tree, src_va, 1)
    dst = surface(rig, tree, dst_va, 2)
    want = detile(raw(rig, dst), dst_tiling)
    have_src = detile(raw(rig, src), src_tiling)
    x1, y1, x2, y2, sx, sy = 3, 5, 200, 50, 17, 9
    for r in range(y2 - y1):
        want[y1 + r][4 * x1 : 4 * x2] = have_src[sy + r][4 * sx : 4 * (sx + x2 - x1)]
    blt = c.src_copy_blt(dst_va, pitch_field(dst_tiling), x1, y1, x2, y2, src_va, pitch_field(src_tiling), sx, sy)
    blt[0] |= tile_bits(dst_tiling, src_tiling)
    ctx = rig.context(BCS, tree)
    rig.submit(ctx, swctrl(dst_tiling, src_tiling) + blt)
    rig.run()
    assert done(rig, BCS, ctx.ctx_id), rig.dev.engines[EngineId.BCS].last_hang
    got = detile(raw(rig, dst), dst_tiling)
    for y in range(HEIGHT):
        assert got[y] == want[y], f"row {y}"
    assert detile(raw(rig, src), src_tiling) == have_src  # the source is only read


@pytest.mark.parametrize(("dst_tiling", "src_tiling"), [("X", "X"), ("Y", "Y"), ("X", "linear"), ("Y", "linear")])
def test_whole_tiles_copied_tile_by_tile_match_the_detiler(rig: Rig, dst_tiling: str, src_tiling: str) -> None:
    """Rectangles on tile boundaries (the compiled path copies whole tiles, or a tile's rows or
    columns from a linear source) and the whole surface with touching rows."""
    tree = Tree(rig.guest, 4)
    src_va, dst_va = BUF, BUF + 0x10_0000
    src = surface(rig, tree, src_va, 6)
    dst = surface(rig, tree, dst_va, 7)
    want = detile(raw(rig, dst), dst_tiling)
    have_src = detile(raw(rig, src), src_tiling)
    x1, y1, x2, y2, sx, sy = 128, 32, 256, 64, 0, 0  # 512 bytes and 32 rows: X and Y boundaries
    for r in range(y2 - y1):
        want[y1 + r][4 * x1 : 4 * x2] = have_src[sy + r][4 * sx : 4 * (sx + x2 - x1)]
    blt = c.src_copy_blt(dst_va, pitch_field(dst_tiling), x1, y1, x2, y2, src_va, pitch_field(src_tiling), sx, sy)
    blt[0] |= tile_bits(dst_tiling, src_tiling)
    ctx = rig.context(BCS, tree)
    rig.submit(ctx, swctrl(dst_tiling, src_tiling) + blt)
    rig.run()
    assert done(rig, BCS, ctx.ctx_id), rig.dev.engines[EngineId.BCS].last_hang
    assert detile(raw(rig, dst), dst_tiling) == want


def test_linear_rows_that_touch_copy_as_one(rig: Rig) -> None:
    tree = Tree(rig.guest, 4)
    src = surface(rig, tree, BUF, 8)
    dst = surface(rig, tree, BUF + 0x10_0000, 9)
    rig.submit(
        ctx := rig.context(BCS, tree),
        c.src_copy_blt(BUF + 0x10_0000, PITCH, 0, 1, PITCH // 4, HEIGHT - 1, BUF, PITCH, 0, 0),
    )
    rig.run()
    assert done(rig, BCS, ctx.ctx_id)
    s, d = raw(rig, src), raw(rig, dst)
    assert d[PITCH : SIZE - PITCH] == s[: SIZE - 2 * PITCH]


@pytest.mark.parametrize("tiling", LAYOUTS)
def test_fill_matches_the_detiler(rig: Rig, tiling: str) -> None:
    tree = Tree(rig.guest, 3)
    pages = surface(rig, tree, BUF, 3)
    want = detile(raw(rig, pages), tiling)
    x1, y1, x2, y2, color = 1, 7, 255, 63, 0x11223344
    for y in range(y1, y2):
        want[y][4 * x1 : 4 * x2] = color.to_bytes(4, "little") * (x2 - x1)
    blt = c.color_blt(BUF, pitch_field(tiling), x1, y1, x2, y2, color)
    blt[0] |= tile_bits(tiling, None)
    ctx = rig.context(BCS, tree)
    rig.submit(ctx, swctrl(tiling, "linear") + blt)
    rig.run()
    assert done(rig, BCS, ctx.ctx_id), rig.dev.engines[EngineId.BCS].last_hang
    assert detile(raw(rig, pages), tiling) == want


def test_a_tiled_blit_through_unmapped_and_read_only_pages(rig: Rig) -> None:
    """Source pages with no mapping read as zeros; a read-only destination page is not written."""
    tree = Tree(rig.guest, 4)
    src_va, dst_va = BUF, BUF + 0x10_0000
    src = surface(rig, tree, src_va, 4)
    dst = surface(rig, tree, dst_va, 5)
    g = rig.guest
    # Unmap source page 3 and make destination page 2 read-only in the guest's PT.
    pte = _pte_slot(tree, src_va + 3 * PAGE)
    g.set_q(pte, 0)
    tree.map(dst_va + 2 * PAGE, dst[2], writable=False)
    before = raw(rig, dst)
    src_bytes = bytearray(raw(rig, src))
    src_bytes[3 * PAGE : 4 * PAGE] = bytes(PAGE)
    want = detile(before, "X")
    have_src = detile(bytes(src_bytes), "Y")
    for y in range(HEIGHT):
        want[y][:] = have_src[y]
    # Rows of page 2 of the X-tiled destination keep their bytes.
    expect = bytearray(b"".join(_tile_rows_to_raw(want, "X")))
    expect[2 * PAGE : 3 * PAGE] = before[2 * PAGE : 3 * PAGE]
    blt = c.src_copy_blt(dst_va, PITCH // 4, 0, 0, PITCH // 4, HEIGHT, src_va, PITCH // 4, 0, 0)
    blt[0] |= tile_bits("X", "Y")
    ctx = rig.context(BCS, tree)
    rig.submit(ctx, swctrl("X", "Y") + blt)
    rig.run()
    assert done(rig, BCS, ctx.ctx_id), rig.dev.engines[EngineId.BCS].last_hang
    assert raw(rig, dst) == bytes(expect)


def _pte_slot(tree: Tree, gva: int) -> int:
    g = tree.guest
    table = tree.roots[0]
    for shift in (39, 30, 21):
        table = g.q(table + 8 * (gva >> shift & 511)) & ~0xFFF
    return table + 8 * (gva >> 12 & 511)


def _tile_rows_to_raw(rows: list[bytearray], tiling: str) -> list[bytes]:
    """The inverse of ``detile`` for X (tile by tile), to build expected memory."""
    assert tiling == "X"
    tiles_per_row = PITCH // 512
    out = []
    for t in range(len(rows) * PITCH // 4096):
        ty, tx = divmod(t, tiles_per_row)
        out.append(b"".join(bytes(rows[ty * 8 + r][tx * 512 : (tx + 1) * 512]) for r in range(8)))
    return out


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
@pytest.mark.parametrize("seed", range(6))
def test_compiled_and_python_blits_write_the_same_bytes(seed: int) -> None:
    images = []
    for compiled in (False, True):
        rig = Rig()
        try:
            if compiled:
                accel = accel_module.load(True)
                assert accel is not None
                rig.dev.runner.blit_accel = BlitAccel(accel, rig.dev.dma, rig.dev.info.pte_ops)
            r = random.Random(seed)
            tree = Tree(rig.guest, 4)
            a = surface(rig, tree, BUF, seed)
            b = surface(rig, tree, BUF + 0x10_0000, seed + 100)
            cmds: list[int] = []
            for _ in range(4):
                dt, st = r.choice(LAYOUTS), r.choice(LAYOUTS)
                x1, y1 = r.randrange(0, 200), r.randrange(0, 40)
                x2, y2 = r.randrange(x1, 256), r.randrange(y1, HEIGHT)
                sx, sy = r.randrange(0, 256 - (x2 - x1) + 1), r.randrange(0, HEIGHT - (y2 - y1) + 1)
                blt = c.src_copy_blt(BUF + 0x10_0000, pitch_field(dt), x1, y1, x2, y2, BUF, pitch_field(st), sx, sy)
                blt[0] |= tile_bits(dt, st)
                fill = c.color_blt(BUF, pitch_field(st), sx, sy, sx + 3, sy + 2, r.getrandbits(32))
                fill[0] |= tile_bits(st, None)
                cmds += swctrl(dt, st) + blt + swctrl(st, "linear") + fill
            ctx = rig.context(BCS, tree)
            rig.submit(ctx, cmds)
            rig.run()
            assert done(rig, BCS, ctx.ctx_id), rig.dev.engines[EngineId.BCS].last_hang
            images.append((raw(rig, a), raw(rig, b)))
        finally:
            rig.close()
    assert images[0] == images[1]


def test_pages_in_order_fill_and_copy_as_runs(rig: Rig) -> None:
    """Pages in guest order (the compiled path fills and copies a run of them at once), rows
    that touch, a colour that is not one byte repeated, at an odd pixel offset."""
    tree = Tree(rig.guest, 4)
    size = 8 * PAGE
    a = tree.buffer(BUF, size, shuffle=False)
    b = tree.buffer(BUF + 0x10_0000, size, shuffle=False)
    rig.mem.write(a[0], random.Random(10).randbytes(size))
    rig.mem.write(b[0], bytes(size))
    ctx = rig.context(BCS, tree)
    rig.submit(
        ctx,
        c.color_blt(BUF, PITCH, 0, 3, PITCH // 4, 30, 0x11223344)
        + c.src_copy_blt(BUF + 0x10_0000, PITCH, 0, 0, PITCH // 4, 31, BUF, PITCH, 0, 1)
        + c.color_blt(BUF + 0x10_0000, PITCH, 5, 31, 11, 32, 0xA0B0C0D0),
    )
    rig.run()
    assert done(rig, BCS, ctx.ctx_id)
    src = bytearray(random.Random(10).randbytes(size))
    src[3 * PITCH : 30 * PITCH] = b"\x44\x33\x22\x11" * (27 * PITCH // 4)
    want = bytearray(size)
    want[: 31 * PITCH] = src[PITCH : 32 * PITCH]
    want[31 * PITCH + 20 : 31 * PITCH + 44] = b"\xd0\xc0\xb0\xa0" * 6
    assert rig.mem.read(a[0], size) == bytes(src)
    assert rig.mem.read(b[0], size) == bytes(want)


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
def test_compiled_blits_through_the_ggtt_match_python() -> None:
    """The blit job over the GGTT (graphics addresses [0, 16 MiB) are guest RAM page for page
    in the rig; past the GGTT's 4 GiB is scratch): both paths write the same bytes."""
    images = []
    for compiled in (False, True):
        rig = Rig()
        try:
            accel = accel_module.load(True) if compiled else None
            blit_accel = None if accel is None else BlitAccel(accel, rig.dev.dma, rig.dev.info.pte_ops)
            rig.mem.write(GGTT_GPA, random.Random(11).randbytes(SIZE))
            space = rig.dev.ggtt_space
            for rec, swctrl in (
                (SrcCopyBlt(0x2_0000, PITCH, 3, 1, 250, 60, 0, PITCH // 4 * 4, 5, 2, 0xCC, False, True), SRC_Y),
                (ColorBlt(0x4_0000, PITCH, 0, 0, 256, 64, 0x01020304, 0xF0, True), 0),
                (SrcCopyBlt(0x6_0000, PITCH, 0, 0, 256, 8, (1 << 32) - 4096, PITCH, 0, 0, 0xCC), 0),
            ):
                BlitJob(space, rec, blit_accel, swctrl).run()
            images.append(rig.mem.read(GGTT_GPA, 0x8_0000))
        finally:
            rig.close()
    assert images[0] == images[1]
    assert images[0][0x6_0000 : 0x6_0000 + 8 * PITCH] == bytes(8 * PITCH)  # read from scratch


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
@pytest.mark.parametrize("seed", range(4))
def test_compiled_bands_steps_and_translations_match_python(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bands of 4 KiB of each surface and translations of 8 pages (a row of Y tiles), over
    surfaces of 16 pages whose pages are each their own run: a step whose deadline has passed
    does one band in C and stops; a step without one goes through every band and resolves
    the surfaces again where its translation ends. Both write the bytes the Python path does."""
    monkeypatch.setattr(blit_module, "ACCEL_BAND", 2 * PAGE)
    monkeypatch.setattr(blit_accel_module, "MAX_PAGES", 8)
    r = random.Random(seed)
    recs: list[tuple[ColorBlt | SrcCopyBlt, int]] = []
    band_rows = {"linear": 4, "X": 8, "Y": 32}  # 4 KiB, or a row of tiles when that is more
    first_steps = 0
    for i in range(4):
        dt, st = r.choice(LAYOUTS), r.choice(LAYOUTS)
        sw = (DST_Y if dt == "Y" else 0) | (SRC_Y if st == "Y" else 0)
        x1, y1 = (0, 0) if i == 0 else (r.randrange(0, 200), r.randrange(0, 40))
        x2, y2 = (256, HEIGHT) if i == 0 else (r.randrange(x1, 256), r.randrange(y1, HEIGHT))
        sx, sy = r.randrange(0, 256 - (x2 - x1) + 1), r.randrange(0, HEIGHT - (y2 - y1) + 1)
        if i == 0:
            first_steps = HEIGHT // min(band_rows[dt], band_rows[st])
        tiled = (dt != "linear", st != "linear")
        recs.append((SrcCopyBlt(BUF + 0x10_0000, PITCH, x1, y1, x2, y2, BUF, PITCH, sx, sy, 0xCC, *tiled), sw))
        fill = ColorBlt(BUF, PITCH, sx, sy, sx + 40, sy + 9, r.getrandbits(32), 0xF0, st != "linear")
        recs.append((fill, DST_Y if st == "Y" else 0))
    images = []
    for mode in ("python", "stepped", "run"):
        rig = Rig()
        try:
            accel = accel_module.load(True) if mode != "python" else None
            blit_accel = None if accel is None else BlitAccel(accel, rig.dev.dma, rig.dev.info.pte_ops)
            tree = Tree(rig.guest, 4)
            a = surface(rig, tree, BUF, seed)
            b = surface(rig, tree, BUF + 0x10_0000, seed + 100)
            mm, resync = rig.dev.ppgtt.pin(RootKind.L4, (tree.roots[0],))
            resync.run()
            space = PpgttSpace(rig.dev.runner.walker, mm)
            for n, (rec, sw) in enumerate(recs):
                job = BlitJob(space, rec, blit_accel, sw)
                if mode == "stepped":
                    steps = 1
                    while job.step(float("-inf"), lambda: 0.0):
                        steps += 1
                    if n == 0:  # the whole surface: one band a step
                        assert steps == first_steps
                else:
                    job.run()
            rig.dev.ppgtt.unpin(mm)
            images.append((raw(rig, a), raw(rig, b)))
        finally:
            rig.close()
    assert images[0] == images[1] == images[2]


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
@pytest.mark.parametrize("levels", [3, 4])
def test_compiled_blits_across_a_gib_match_python(levels: int) -> None:
    """Surfaces of 2 MiB across the 1 GiB boundaries (another PD, and for 3 levels another
    root), pages reversed on one side: the band's walk to the PTs goes PD by PD."""
    images = []
    for compiled in (False, True):
        rig = Rig()
        try:
            accel = accel_module.load(True) if compiled else None
            blit_accel = None if accel is None else BlitAccel(accel, rig.dev.dma, rig.dev.info.pte_ops)
            tree = Tree(rig.guest, levels)
            src_gva, dst_gva = (1 << 30) - (1 << 20), (2 << 30) - (1 << 20)
            a = tree.buffer(src_gva, 2 << 20)
            b = tree.buffer(dst_gva, 2 << 20, shuffle=False)
            rnd = random.Random(levels)
            for p in a:
                rig.mem.write(p, rnd.randbytes(PAGE))
            kind = RootKind.L4 if levels == 4 else RootKind.L3
            mm, resync = rig.dev.ppgtt.pin(kind, (tree.roots[0],) if levels == 4 else tuple(tree.roots[:4]))
            resync.run()
            space = PpgttSpace(rig.dev.runner.walker, mm)
            before = raw(rig, a)
            BlitJob(space, SrcCopyBlt(dst_gva, 4096, 0, 0, 1024, 512, src_gva, 4096, 0, 0, 0xCC), blit_accel).run()
            assert raw(rig, b) == before
            BlitJob(space, ColorBlt(src_gva + 200 * PAGE, 4096, 3, 0, 700, 100, 0x12345678, 0xF0), blit_accel).run()
            rig.dev.ppgtt.unpin(mm)
            images.append(raw(rig, a) + raw(rig, b))
        finally:
            rig.close()
    assert images[0] == images[1]


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
def test_resolve_runs_stop_at_window_ends_and_entry_changes() -> None:
    """dm_frames_resolve takes entries naming the next frames with the same bits as a run:
    a run must still end where a window ends (the next one read-only, or a gap), where the
    bits change, and at the top of the frame field; each page checked against a per-entry
    resolve of the test's own."""
    accel = accel_module.load(True)
    assert accel is not None
    ffi, lib = accel.ffi, accel.lib
    present, rw, mask = 1 << 0, 1 << 1, ((1 << 20) - 1) << 12  # a 20-bit frame field
    # (first frame, end, address, readable, writable): two windows back to back, the second
    # read-only, then a gap, then one at the very top of the frame field.
    spans = [
        (0x100, 0x108, 0x7000_0000, 1, 1),
        (0x108, 0x10C, 0x7100_0000, 1, 0),
        (0xFFFFC, 0x100000, 0x7200_0000, 1, 1),
    ]
    windows = ffi.new("struct dm_frame_window[]", len(spans))
    for slot, (lo, hi, addr, r, w) in zip(windows, spans, strict=True):
        slot.hfn_base, slot.hfn_end, slot.addr, slot.readable, slot.writable = lo, hi, addr, r, w
    f = ffi.new("struct dm_frames *")
    f.windows, f.nwindows, f.need_rw, f.present_bit, f.rw_bit, f.frame_mask = windows, len(spans), 1, present, rw, mask

    def expect(e: int, write: bool) -> int:
        if not e & present or (write and not e & rw):
            return 0
        hfn = (e & mask) >> 12
        for lo, hi, addr, r, w in spans:
            if lo <= hfn < hi:
                return addr + ((hfn - lo) << 12) if (w if write else r) else 0
        return 0

    rng = random.Random(7)
    runs = [
        [((0x100 + i) << 12) | 3 for i in range(16)],  # across both windows into the gap
        [((0xFFFF8 + i) << 12) | 3 for i in range(8)] + [(1 << 32) | 3],  # to the top, then a bit above the field
        [((0x104 + i) << 12) | (3 if i != 2 else 1) for i in range(6)],  # the RW bit drops mid-run
    ]
    for _ in range(20):
        base = rng.choice([0x100, 0x105, 0x10A, 0xFFFFA])
        runs.append([((base + i) << 12) | rng.choice([3, 3, 3, 1, 0]) for i in range(rng.randint(1, 12))])
    for entries in runs:
        table = ffi.new("uint64_t[]", entries)
        out = ffi.new("uint64_t[]", len(entries))
        for write in (False, True):
            lib.dm_frames_resolve(f, int(ffi.cast("uintptr_t", table)), len(entries), write, out)
            assert list(out) == [expect(e, write) for e in entries], (entries, write)


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
@pytest.mark.parametrize("space", ["L4", "L3", "GGTT"])
def test_compiled_step_walks_device_pages_only(space: str) -> None:
    """dm_blit_step over tables of the test's own: device pages in one slab, guest memory in
    one window. Each 2 MiB of a fill goes through another kind of directory entry: a shadow PT
    mapping guest pages (filled), a guest frame (its page holds entries naming another guest
    page: never read as a table, nothing written), a device frame past the slabs, and a PT
    whose entries name device frames (no window: scratch). The 3-level form's second root is a
    guest frame; the GGTT's entries run past its 4 GiB after a page not present. Only the
    pages the PT maps are written, the device pages keep their bytes."""
    accel = accel_module.load(True)
    assert accel is not None
    ffi, lib = accel.ffi, accel.lib
    present, rw, mask = 1 << 0, 1 << 1, ((1 << 39) - 1) << 12
    dev_base, guest_hfn = 0x10_0000, 0x10  # frames of device pages and of the window
    slab = bytearray(64 * PAGE)
    guest = bytearray(16 * PAGE)
    views = [ffi.from_buffer(slab), ffi.from_buffer(guest)]  # held for the calls
    slab_addr, guest_addr = (int(ffi.cast("uintptr_t", v)) for v in views)

    def put(buf: bytearray, page: int, index: int, frame: int, bits: int = present | rw) -> None:
        buf[page * PAGE + 8 * index : page * PAGE + 8 * index + 8] = ((frame << 12) | bits).to_bytes(8, "little")

    # Device page 0: PML4, 1: PDP, 2: PD, 3: a PT of guest pages 0-7, 4: a PT of device frames.
    put(slab, 0, 0, dev_base + 1)
    put(slab, 1, 0, dev_base + 2)
    for i in range(8):
        put(slab, 3, i, guest_hfn + i)
        put(slab, 4, i, dev_base + 5 + i)
    put(slab, 2, 0, dev_base + 3)  # the first 2 MiB: guest pages 0-7
    put(slab, 2, 1, guest_hfn + 15)  # a guest frame
    put(slab, 2, 2, dev_base + 64)  # past the one slab
    put(slab, 2, 3, dev_base + 4)  # device frames below
    for i in range(8):
        put(guest, 15, i, guest_hfn + 14)  # what a walk into guest page 15 would write through
    ggtt = ffi.new("uint64_t[]", 1 << 20)
    for i in range(8):
        ggtt[(1 << 20) - 8 + i] = ((guest_hfn + i) << 12) | present
    ggtt[(1 << 20) - 9] = (guest_hfn + 14) << 12  # not present
    slab_before = bytes(slab)

    windows = ffi.new("struct dm_frame_window[]", 1)
    windows[0].hfn_base, windows[0].hfn_end, windows[0].addr = guest_hfn, guest_hfn + 16, guest_addr
    windows[0].readable = windows[0].writable = 1
    slabs = ffi.new("uint64_t[]", [slab_addr])
    pages = [ffi.new("uint64_t[]", 4096) for _ in range(2)]
    env = ffi.new("struct dm_blit_env *")
    f = env.frames
    f.windows, f.nwindows, f.present_bit, f.rw_bit, f.frame_mask = windows, 1, present, rw, mask
    device = ffi.new("struct dm_device_pages *")
    device.slabs, device.nslabs, device.base_hfn = slabs, 1, dev_base
    env.device = device
    env.dst_pages, env.src_pages, env.max_pages = pages[0], pages[1], 4096

    roots, base, rows = [0, 0, 0, 0], 0, 4 * 512
    if space == "L4":
        kind, roots[0] = lib.DM_SPACE_PPGTT_L4, dev_base << 12
    elif space == "L3":
        kind, roots[0:2] = lib.DM_SPACE_PPGTT_L3, [(dev_base + 2) << 12, (guest_hfn + 15) << 12]
        base, rows = (1 << 30) - 4 * (2 << 20), 5 * 512  # the PD's last four stretches, then the second root's
        for i in range(4):
            slab[2 * PAGE + 8 * (508 + i) : 2 * PAGE + 8 * (509 + i)] = slab[2 * PAGE + 8 * i : 2 * PAGE + 8 * (i + 1)]
        slab_before = bytes(slab)
    else:
        kind, roots[0] = lib.DM_SPACE_GGTT, int(ffi.cast("uintptr_t", ggtt))
        base, rows = (1 << 32) - 9 * PAGE, 9 + 16  # 9 pages below the 4 GiB, 16 past it
    # a fill of rows of one page from row 0, bands of 1 MiB, no deadline
    args = (kind, 0, base, PAGE, lib.DM_TILE_LINEAR, 0, 0, 0, 0, 0, 0, 0, PAGE, rows, 1 << 20, 0x11223344, 0)
    assert lib.dm_blit_step(env, *roots, *args, float("inf")) == rows
    fill = b"\x44\x33\x22\x11" * (PAGE // 4)
    assert [bytes(guest[p * PAGE : (p + 1) * PAGE]) == fill for p in range(16)] == [True] * 8 + [False] * 8
    assert bytes(slab) == slab_before


@pytest.mark.skipif(not COMPILED, reason="the compiled accelerator is not installed")
def test_compiled_blits_reach_tables_in_slabs_made_after_the_first() -> None:
    """The blitter's table of the device's slabs grows with them: a context whose shadow
    tables the device made after the first blit, in a slab of its own, is walked too."""
    rig = Rig()
    try:
        accel = accel_module.load(True)
        assert accel is not None
        blit_accel = BlitAccel(accel, rig.dev.dma, rig.dev.info.pte_ops)
        dma = rig.dev.dma
        spaces = []
        for n in range(2):
            tree = Tree(rig.guest, 4)
            pages = tree.buffer(BUF, 4 * PAGE, shuffle=False)
            slabs = dma.device_slab_count
            if n == 1:  # fill the last slab: this tree's tables go to a new one
                dma.alloc_device_pages(64 - dma.device_pages % 64)
            mm, resync = rig.dev.ppgtt.pin(RootKind.L4, (tree.roots[0],))
            resync.run()
            if n == 1:
                assert dma.device_slab_count > slabs
            space = PpgttSpace(rig.dev.runner.walker, mm)
            spaces.append(space)
            color = 0x01020304 * (n + 1)
            BlitJob(space, ColorBlt(BUF, PAGE, 0, 0, PAGE // 4, 4, color, 0xF0), blit_accel).run()
            assert rig.mem.read(pages[0], 4 * PAGE) == color.to_bytes(4, "little") * PAGE
        for space in spaces:
            rig.dev.ppgtt.unpin(space.mm)
    finally:
        rig.close()
