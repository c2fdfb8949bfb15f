"""The host's view of the screen (contract §6.15): the live planes of the pipe that drives the
monitor, read through the GGTT and composed into one XRGB8888 frame.

Pages are reached through the shadow GGTT, whose entries were validated against the DMA
windows: a page that is not present, or not backed, reads as black. Linear XRGB8888 (fbcon,
dumb buffers) is copied row by row; the other formats and the tiled layouts are converted
here too, more slowly.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from devmodel.logbound import OncePerReason

from .. import tiles
from ..mmio import display_regs as r
from ..platform import Platform
from ..tiles import Tiling
from .display import Display, PlaneState

__all__ = [
    "FastPlanes",
    "Frame",
    "Surface",
    "TILING",
    "cursor_surface",
    "decode_pipe",
    "decode_screen",
    "read_surface",
    "tiled_offset",
]

log = logging.getLogger(__name__)
_unsupported = OncePerReason(log)

PAGE = 4096
PageOf = Callable[[int], "memoryview | None"]  # GGTT index -> the page's bytes, or None


@dataclass
class Frame:
    width: int
    height: int
    pixels: bytearray  # XRGB8888, width * 4 bytes per row
    pipe: int | None


@dataclass
class Surface:
    """One plane's scan-out parameters."""

    gma: int
    stride: int  # bytes
    tiling: str  # "linear", "x", "y"
    fmt: str  # "xrgb8888", "xbgr8888", "rgb565", "xrgb2101010", "xbgr2101010", "argb8888"
    x: int
    y: int
    width: int
    height: int
    pos_x: int = 0
    pos_y: int = 0


_BDW_FORMATS = {6: "xrgb8888", 14: "xbgr8888", 5: "rgb565", 10: "xrgb2101010", 8: "xbgr2101010"}
_SKL_TILING = {0: "linear", 1: "x", 4: "y"}
TILING = {"linear": Tiling.LINEAR, "x": Tiling.X, "y": Tiling.Y}  # a plane's tiling name
_SKL_STRIDE_MULT = {"linear": 64, "x": 512, "y": 128}
_CPP = {"rgb565": 2}


def _skl_format(ctl: int) -> str | None:
    fmt = (ctl >> 24) & 0xF
    bgr = bool(ctl & (1 << 20))
    if fmt == 4:
        return "xbgr8888" if bgr else "xrgb8888"
    if fmt == 2:
        return "xbgr2101010" if bgr else "xrgb2101010"
    if fmt == 14:
        return "rgb565"
    return None


def tiled_offset(tiling: str, stride: int, x_bytes: int, y: int) -> int:
    """Byte offset of (x_bytes, y) in a surface of ``stride`` bytes per row, for a plane's
    tiling name (the layouts are tiles.py's)."""
    return int(tiles.offset(TILING[tiling], stride, x_bytes, y))


def read_surface(page_of: PageOf, gma: int, size: int) -> memoryview:
    """``size`` bytes of graphics memory from ``gma`` (page aligned), absent pages as zeros
    (one copy: the pages joined)."""
    first = gma >> 12
    count = (size + PAGE - 1) >> 12
    zero = bytes(PAGE)
    parts: list[bytes | memoryview] = []
    for i in range(first, first + count):
        page = page_of(i) if 0 <= i < 1 << 20 else None
        parts.append(zero if page is None else page)
    return memoryview(b"".join(parts))[:size]


def _plane_surface(display: Display, plane: PlaneState, src_w: int, src_h: int) -> Surface | None:
    live = plane.live
    ctl = live.get(0, 0)
    if not ctl & (1 << 31):
        return None
    offset = live.get(0x24, 0)
    if display.platform is Platform.BDW:
        fmt = _BDW_FORMATS.get((ctl >> 26) & 0xF)
        tiling = "x" if ctl & (1 << 10) else "linear"
        stride = live.get(0x8, 0)
        width, height, pos = src_w, src_h, 0
    else:
        fmt = _skl_format(ctl)
        tiling_s = _SKL_TILING.get((ctl >> 10) & 7)
        if tiling_s is None:
            _unsupported.warn(
                f"tiling{(ctl >> 10) & 7}", "plane tiling %d (Yf or compressed) not decoded", (ctl >> 10) & 7
            )
            return None
        tiling = tiling_s
        stride = (live.get(0x8, 0) & 0xFFF) * _SKL_STRIDE_MULT[tiling]
        size = live.get(0x10, 0)
        width, height = (size & 0xFFFF) + 1, (size >> 16) + 1
        pos = live.get(0xC, 0)
        if fmt is not None and fmt.startswith("xrgb8888") and (ctl >> 4) & 3:
            fmt = "argb8888"
    if fmt is None:
        _unsupported.warn("format", "plane format of control %#x not decoded", ctl)
        return None
    return Surface(
        live.get(0x1C, 0) & ~0xFFF,
        stride,
        tiling,
        fmt,
        offset & 0xFFFF,
        offset >> 16,
        width,
        height,
        pos & 0xFFFF,
        pos >> 16,
    )


def _to_xrgb(fmt: str, row: bytes | bytearray) -> bytes | bytearray:
    """One row of ``fmt`` pixels as XRGB8888."""
    if fmt in ("xrgb8888", "argb8888"):
        return row
    if fmt == "xbgr8888":
        out = bytearray(row)
        out[0::4] = row[2::4]
        out[2::4] = row[0::4]
        return out
    if fmt == "rgb565":
        px = array("H", bytes(row))
        out32 = array(
            "I",
            (
                ((p >> 11) * 527 + 23) >> 6 << 16 | (((p >> 5) & 63) * 259 + 33) >> 6 << 8 | ((p & 31) * 527 + 23) >> 6
                for p in px
            ),
        )
        return out32.tobytes()
    px = array("I", bytes(row))  # 2:10:10:10, 10 bits per channel down to 8
    if fmt == "xrgb2101010":
        gen = ((p >> 22 & 0xFF) << 16 | (p >> 12 & 0xFF) << 8 | (p >> 2 & 0xFF) for p in px)
    else:
        gen = ((p >> 2 & 0xFF) << 16 | (p >> 12 & 0xFF) << 8 | (p >> 22 & 0xFF) for p in px)
    return array("I", gen).tobytes()


def _draw_plane(frame: Frame, page_of: PageOf, s: Surface) -> None:
    cpp = _CPP.get(s.fmt, 4)
    w = min(s.width, frame.width - s.pos_x)
    h = min(s.height, frame.height - s.pos_y)
    if w <= 0 or h <= 0 or s.stride <= 0:
        return
    row_bytes = w * cpp
    out = frame.pixels
    out_stride = frame.width * 4
    if s.tiling == "linear":
        start = s.y * s.stride + s.x * cpp
        first_page = start & ~0xFFF
        span = read_surface(page_of, s.gma + first_page, start - first_page + (h - 1) * s.stride + row_bytes)
        base = start - first_page
        if s.fmt in ("xrgb8888", "argb8888") and s.stride == row_bytes and s.pos_x == 0 and w == frame.width:
            at = s.pos_y * out_stride
            out[at : at + h * out_stride] = span[base : base + h * row_bytes]
            return
        for y in range(h):
            row = bytes(span[base + y * s.stride : base + y * s.stride + row_bytes])
            at = (s.pos_y + y) * out_stride + s.pos_x * 4
            out[at : at + w * 4] = _to_xrgb(s.fmt, row)
        return
    # Tiled: gather the tiles the visible rows cross, then copy each row piece by piece.
    tiling = TILING[s.tiling]
    tile_rows = tiling.height
    y_last = s.y + h - 1
    first_tile_row, last_tile_row = s.y // tile_rows, y_last // tile_rows
    span_start = first_tile_row * tile_rows * s.stride
    span = read_surface(page_of, s.gma + span_start, (last_tile_row - first_tile_row + 1) * tile_rows * s.stride)
    x0 = s.x * cpp
    for y in range(h):
        sy = s.y + y
        parts = []
        xb = x0
        end = x0 + row_bytes
        while xb < end:
            o, run = tiles.locate(tiling, s.stride, xb, sy)
            o -= span_start
            n = min(run, end - xb)
            parts.append(span[o : o + n])
            xb += n
        at = (s.pos_y + y) * out_stride + s.pos_x * 4
        out[at : at + w * 4] = _to_xrgb(s.fmt, b"".join(parts))


_CURSOR_SIZES = {0x27: 64, 0x22: 128, 0x23: 256}


def cursor_surface(live: dict[int, int]) -> Surface | None:
    """The cursor's ARGB surface (its position may be negative), or None when it is off."""
    size = _CURSOR_SIZES.get(live.get(0, 0) & 0x3F)
    if size is None:
        return None
    height = size
    fbc = live.get(0x20, 0)
    if fbc & (1 << 31):
        height = (fbc & 0xFF) + 1
    pos = live.get(0x8, 0)
    cx = -(pos & 0x7FFF) if pos & 0x8000 else pos & 0x7FFF
    cy = -((pos >> 16) & 0x7FFF) if pos & 0x80000000 else (pos >> 16) & 0x7FFF
    return Surface(live.get(0x4, 0) & ~0xFFF, size * 4, "linear", "argb8888", 0, 0, size, height, cx, cy)


def _draw_cursor(frame: Frame, page_of: PageOf, c: Surface) -> None:
    size, height, cx, cy = c.width, c.height, c.pos_x, c.pos_y
    pixels = read_surface(page_of, c.gma, size * 4 * height)
    src = array("I", bytes(pixels))
    out = frame.pixels
    for y in range(height):
        fy = cy + y
        if not 0 <= fy < frame.height:
            continue
        for x in range(size):
            fx = cx + x
            if not 0 <= fx < frame.width:
                continue
            p = src[y * size + x]
            a = p >> 24
            if not a:
                continue
            at = (fy * frame.width + fx) * 4
            if a == 255:
                out[at : at + 4] = (p | 0xFF000000).to_bytes(4, "little")
                continue
            # premultiplied alpha: out = src + dst x (1 - a)
            for ch in range(3):
                sc = (p >> (8 * ch)) & 0xFF
                out[at + ch] = min(255, sc + out[at + ch] * (255 - a) // 255)


class FastPlanes(Protocol):
    """A faster way to draw the same planes (display/decode_fast.py); this module's Python
    drawing is its oracle."""

    def draw_plane(self, frame: Frame, s: Surface) -> None: ...

    def draw_cursor(self, frame: Frame, c: Surface) -> None: ...


def decode_screen(display: Display, page_of: PageOf, fast: FastPlanes | None = None) -> Frame:
    """The monitor's picture now: the live planes of the pipe driving it, bottom to top.
    With no pipe lit, an empty frame of the monitor's size is 0 x 0."""
    display.catch_up()
    p = display.lit_pipe()
    if p is None:
        return Frame(0, 0, bytearray(), None)
    return decode_pipe(display, page_of, p, fast=fast)


def decode_pipe(
    display: Display,
    page_of: PageOf,
    p: int,
    layers: int | None = None,
    fast: FastPlanes | None = None,
) -> Frame:
    """Pipe ``p``'s latched planes composed at its source size, without catching up on vblanks
    (the pipe CRC calls this from inside one). ``layers``: a bit per plane (the cursor last)
    to compose, every one when None; ``fast``: the compiled drawing, when there is one."""
    src = display.rf.get(r.pipe_reg(r.PIPESRC, p))
    width, height = (src >> 16) + 1, (src & 0xFFFF) + 1
    frame = Frame(width, height, bytearray(width * height * 4), p)
    pipe = display.pipes[p]
    for i, plane in enumerate(pipe.planes[:-1]):
        if layers is not None and not layers >> i & 1:
            continue
        surface = _plane_surface(display, plane, width, height)
        if surface is not None:
            if fast is not None:
                fast.draw_plane(frame, surface)
            else:
                _draw_plane(frame, page_of, surface)
    if layers is None or layers >> (len(pipe.planes) - 1) & 1:
        cursor = cursor_surface(pipe.planes[-1].live)
        if cursor is not None:
            if fast is not None:
                fast.draw_cursor(frame, cursor)
            else:
                _draw_cursor(frame, page_of, cursor)
    return frame
