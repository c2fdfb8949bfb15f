"""The screen decode's fast path: the planes' pages resolved and detiled by the compiled
accelerator's blitter (the GGTT's shadow entries checked against the DMA windows in C, as the
blits read them: scratch, absent and unbacked pages read as zeros), the pixel formats and the
cursor's blend done by numpy on whole arrays. decode.py's Python drawing is the oracle
(tests/unit/gen_vgpu/test_decode_fast.py compares them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engine.blit_accel import BlitAccel
from ..gtt.ggtt import Ggtt
from .decode import TILING, Frame, Surface

# numpy (11 MiB resident) is imported by the functions that use it, on the first decode: the
# device imports this module at start, and an idle device need not hold numpy.
if TYPE_CHECKING:
    import numpy as np

__all__ = ["FastDecode"]

PAGE = 4096
_GGTT_PAGES = 1 << 20


def _to_xrgb(fmt: str, raw: bytearray, w: int, h: int) -> np.ndarray:
    """h x w pixels of ``fmt`` (rows packed) as XRGB8888 words (decode.py's _to_xrgb)."""
    import numpy as np

    if fmt == "rgb565":
        p = np.frombuffer(raw, dtype="<u2").reshape(h, w).astype(np.uint32)
        r = ((p >> 11) * 527 + 23) >> 6
        g = (((p >> 5) & 63) * 259 + 33) >> 6
        b = ((p & 31) * 527 + 23) >> 6
        return np.asarray(r << 16 | g << 8 | b, dtype=np.uint32)
    p = np.frombuffer(raw, dtype="<u4").reshape(h, w)
    if fmt == "xbgr8888":
        return np.asarray((p & 0xFF00FF00) | (p & 0xFF) << 16 | (p >> 16) & 0xFF, dtype=np.uint32)
    hi, mid, lo = (p >> 22) & 0xFF, (p >> 12) & 0xFF, (p >> 2) & 0xFF
    if fmt == "xrgb2101010":
        return np.asarray(hi << 16 | mid << 8 | lo, dtype=np.uint32)
    return np.asarray(lo << 16 | mid << 8 | hi, dtype=np.uint32)  # xbgr2101010


class FastDecode:
    def __init__(self, blit: BlitAccel, ggtt: Ggtt) -> None:
        self.blit = blit
        self.ggtt = ggtt

    def _copy(self, s: Surface, cpp: int, w: int, h: int, dst: bytearray, dst_pitch: int, dx: int, dy: int) -> None:
        """Rows [s.y, s.y + h) of the surface, w pixels from s.x, into dst at (dx bytes, dy)."""
        rows = TILING[s.tiling].height
        lo = s.y // rows * rows * s.stride
        if s.tiling == "linear":
            hi = (s.y + h - 1) * s.stride + (s.x + w) * cpp
        else:
            hi = ((s.y + h - 1) // rows + 1) * rows * s.stride
        first = (s.gma + lo) // PAGE
        n = min((s.gma + hi + PAGE - 1) // PAGE, _GGTT_PAGES) - first
        if n <= 0:
            return
        pages = self.blit.ggtt_pages(self.ggtt, first, n)
        self.blit.copy_out(
            pages,
            first * PAGE,
            n,
            (s.gma, s.stride, TILING[s.tiling]),
            s.x * cpp,
            s.y,
            dst,
            dst_pitch,
            dx,
            dy,
            w * cpp,
            h,
        )

    def draw_plane(self, frame: Frame, s: Surface) -> None:
        import numpy as np

        cpp = 2 if s.fmt == "rgb565" else 4
        w = min(s.width, frame.width - s.pos_x)
        h = min(s.height, frame.height - s.pos_y)
        if w <= 0 or h <= 0 or s.stride <= 0:
            return
        if s.fmt in ("xrgb8888", "argb8888"):
            self._copy(s, cpp, w, h, frame.pixels, frame.width * 4, s.pos_x * 4, s.pos_y)
            return
        raw = bytearray(w * h * cpp)
        self._copy(s, cpp, w, h, raw, w * cpp, 0, 0)
        out = np.frombuffer(frame.pixels, dtype="<u4").reshape(frame.height, frame.width)
        out[s.pos_y : s.pos_y + h, s.pos_x : s.pos_x + w] = _to_xrgb(s.fmt, raw, w, h)

    def draw_cursor(self, frame: Frame, c: Surface) -> None:
        import numpy as np

        # The part of the cursor inside the frame: rows y0..y1, columns x0..x1 of the cursor.
        x0, y0 = max(0, -c.pos_x), max(0, -c.pos_y)
        x1, y1 = min(c.width, frame.width - c.pos_x), min(c.height, frame.height - c.pos_y)
        if x1 <= x0 or y1 <= y0:
            return
        raw = bytearray(c.width * 4 * c.height)
        self._copy(c, 4, c.width, c.height, raw, c.width * 4, 0, 0)
        src = np.frombuffer(raw, dtype="<u4").reshape(c.height, c.width)[y0:y1, x0:x1]
        out = np.frombuffer(frame.pixels, dtype="<u4").reshape(frame.height, frame.width)
        dst = out[c.pos_y + y0 : c.pos_y + y1, c.pos_x + x0 : c.pos_x + x1]
        a = src >> 24
        opaque = a == 255
        partial = (a != 0) & ~opaque
        if partial.any():
            # premultiplied alpha: out = src + dst x (1 - a), per channel, at most 255
            keep = 255 - a[partial]
            s, d = src[partial], dst[partial]
            blended = d & 0xFF000000
            for shift in (0, 8, 16):
                ch = ((s >> shift) & 0xFF) + ((d >> shift) & 0xFF) * keep // 255
                blended |= np.minimum(ch, 255) << shift
            dst[partial] = blended
        dst[opaque] = src[opaque] | 0xFF000000
