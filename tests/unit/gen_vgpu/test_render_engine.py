"""The render pipeline behind the engine: a render copy and a GPGPU fill submitted as PPGTT
batches on RCS run to completion with every pixel right, and a draw the device does not
model hangs the context with the reason (BDW and SKL)."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import pytest

from gen_vgpu.engines import EngineId, engine_by_id
from gen_vgpu.gtt.mm import RootKind, ShadowMm
from gen_vgpu.gtt.space import PpgttSpace, read, write
from gen_vgpu.platform import Platform

from . import cmd_streams as c
from .engine_rig import PAGE, Rig, Tree
from .render_rig import cmd, copy_kernel, fill_kernel
from .test_render import BGRA, DST, HEAP, SRC, copy_setup, media_setup

RCS = engine_by_id(EngineId.RCS)
BATCH = 0x7000_0000
W, H, PITCH = 128, 32, 512


class _Writer:
    def __init__(self, space: PpgttSpace) -> None:
        self.space = space

    def put(self, gma: int, data: bytes) -> None:
        write(self.space, gma, data)

    def dwords(self, gma: int, values: Sequence[int]) -> None:
        self.put(gma, struct.pack(f"<{len(values)}I", *values))


def _setup(platform: Platform) -> tuple[Rig, Tree, PpgttSpace, ShadowMm]:
    rig = Rig(platform)
    tree = Tree(rig.guest, 4)
    tree.buffer(HEAP, 0x4000)
    tree.buffer(SRC, PITCH * H)
    tree.buffer(DST, PITCH * H)
    tree.buffer(BATCH, 4 * PAGE)
    mm, resync = rig.dev.ppgtt.pin(RootKind.L4, (tree.roots[0],))
    resync.run()
    return rig, tree, PpgttSpace(rig.dev.runner.walker, mm), mm


def _submit(rig: Rig, tree: Tree, space: PpgttSpace, commands: list[list[int]]) -> bool:
    words = [d for command in commands for d in command] + [c.MI_BATCH_BUFFER_END]
    write(space, BATCH, struct.pack(f"<{len(words)}I", *words))
    ctx = rig.context(RCS, tree)
    rig.submit(ctx, c.bb_start(BATCH))
    rig.run()
    status = rig.csb(RCS)
    return any(cid == ctx.ctx_id for _, cid in status) and rig.dev.engines[EngineId.RCS].last_hang is None


@pytest.mark.parametrize(("platform", "gen"), [(Platform.BDW, 8), (Platform.SKL, 9)])
def test_a_render_copy_through_the_engine(platform: Platform, gen: int) -> None:
    rig, tree, space, mm = _setup(platform)
    try:
        pixels = np.random.default_rng(gen).integers(0, 256, size=(H, W, 4), dtype=np.uint8)
        image = np.zeros((H, PITCH), dtype=np.uint8)
        image[:, : W * 4] = pixels.reshape(H, -1)
        write(space, SRC, image.tobytes())
        surf = (W, H, PITCH, BGRA, 0)
        commands = copy_setup(_Writer(space), gen, surf, surf, (0, 0, W, H, 0, 0), copy_kernel(gen))
        assert _submit(rig, tree, space, commands), rig.dev.engines[EngineId.RCS].last_hang
        got = np.frombuffer(read(space, DST, PITCH * H), dtype=np.uint8).reshape(H, PITCH)[:, : W * 4]
        assert (got == pixels.reshape(H, -1)).all()
        counters = rig.dev.runner.counters
        assert counters.render_jobs == 1 and counters.render_pixels == W * H and counters.render_refused == 0
    finally:
        rig.dev.ppgtt.unpin(mm)
        rig.close()


def test_a_gpgpu_fill_through_the_engine() -> None:
    rig, tree, space, mm = _setup(Platform.SKL)
    try:
        commands = media_setup(_Writer(space), 9, 2, fill_kernel(9, 1, gpgpu=True), 0x77, 0, PITCH, (W, H))
        commands.append(cmd(0x7105, 0, 0, 0, 1 << 30, 0, 0, W // 16, 0, 0, H, 0, 1, 0xFFFF, 0xFFFFFFFF))
        assert _submit(rig, tree, space, commands), rig.dev.engines[EngineId.RCS].last_hang
        got = np.frombuffer(read(space, DST, PITCH * H), dtype=np.uint8).reshape(H, PITCH)
        assert (got[:, :W] == 0x77).all() and not got[:, W:].any()
    finally:
        rig.dev.ppgtt.unpin(mm)
        rig.close()


def test_a_draw_the_device_does_not_model_hangs_its_context() -> None:
    rig, tree, space, mm = _setup(Platform.BDW)
    try:
        surf = (W, H, PITCH, BGRA, 0)
        blend = [cmd(0x784D, 1 << 30 | 1 << 29)]
        commands = copy_setup(_Writer(space), 8, surf, surf, (0, 0, W, H, 0, 0), copy_kernel(8), extra=blend)
        assert not _submit(rig, tree, space, commands)
        hang = rig.dev.engines[EngineId.RCS].last_hang
        assert hang is not None and hang[1].startswith("render: a RECTLIST draw needs blending")
        assert rig.dev.runner.counters.render_refused == 1
        assert not any(read(space, DST, PITCH * H))
        assert any(line.startswith("rcs last hang: render:") for line in rig.dev.describe())
    finally:
        rig.dev.ppgtt.unpin(mm)
        rig.close()


def test_a_refused_kernel_is_shown_disassembled_by_inspect_stats() -> None:
    rig, tree, space, mm = _setup(Platform.BDW)
    try:
        surf = (W, H, PITCH, BGRA, 0)
        commands = copy_setup(_Writer(space), 8, surf, surf, (0, 0, W, H, 0, 0), copy_kernel(8, sample_type=3))
        assert not _submit(rig, tree, space, commands)
        text = "\n".join(rig.dev.describe())
        assert "rcs last hang: render: the pixel shader: send at 0x40: sampler message type 3" in text
        assert "0x0040: send (16) g20.0<1>:F g10.0<8;8,1>:UD" in text
    finally:
        rig.dev.ppgtt.unpin(mm)
        rig.close()
