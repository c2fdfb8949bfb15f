"""The one declaration of the tile layouts (tiles.py): the render engine's vectorised offsets
and the blitter's and aperture's per-byte ones are the same function, checked here against the
layout written out by hand (X: 512-byte rows of 8; Y: 16-byte columns of 32 rows)."""

from __future__ import annotations

import numpy as np
import pytest

from gen_vgpu.tiles import TILE_BYTES, Tiling, locate, offset

PITCH = 1024  # two X tiles or eight Y tiles per row of tiles


def by_hand(tiling: Tiling, x: int, y: int) -> int:
    if tiling is Tiling.X:
        return ((y // 8) * (PITCH // 512) + x // 512) * TILE_BYTES + (y % 8) * 512 + x % 512
    if tiling is Tiling.Y:
        tile = (y // 32) * (PITCH // 128) + x // 128
        return tile * TILE_BYTES + (x % 128) // 16 * 512 + (y % 32) * 16 + x % 16
    return y * PITCH + x


@pytest.mark.parametrize("tiling", list(Tiling))
def test_scalar_and_array_offsets_are_the_layout(tiling: Tiling) -> None:
    xs, ys = np.meshgrid(np.arange(0, PITCH, 7), np.arange(0, 70, 3))
    got = offset(tiling, PITCH, xs.astype(np.int64), ys.astype(np.int64))
    want = np.vectorize(lambda x, y: by_hand(tiling, int(x), int(y)))(xs, ys)
    assert (got == want).all()
    for x, y in ((0, 0), (511, 7), (512, 8), (127, 31), (1000, 65)):
        pos, run = locate(tiling, PITCH, x, y)
        assert pos == offset(tiling, PITCH, x, y) == by_hand(tiling, x, y)
        # the bytes from there to the end of the run are contiguous
        assert all(locate(tiling, PITCH, x + i, y)[0] == pos + i for i in range(min(run, PITCH - x)))


def test_every_tile_byte_is_hit_once() -> None:
    for tiling in (Tiling.X, Tiling.Y):
        rows = tiling.height
        xs, ys = np.meshgrid(np.arange(PITCH), np.arange(rows))
        got = np.sort(offset(tiling, PITCH, xs.astype(np.int64), ys.astype(np.int64)).ravel())
        assert (got == np.arange(PITCH * rows)).all()
