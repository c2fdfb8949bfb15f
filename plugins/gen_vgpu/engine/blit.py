"""XY_COLOR_BLT and XY_SRC_COPY_BLT on linear 32 bpp surfaces, a page run at a time.

A blit is cut into *lines*: each row of the rectangle, or, when the rows touch (pitch equal to
the row's bytes), the whole rectangle as one line; lines longer than ``CHUNK`` are cut again.
Consecutive lines whose span of graphics memory fits in ``CHUNK`` form a *band*: the band's
range is translated once (``AddressSpace.spans``: runs of contiguous host frames through the
shadow tables, one view per window) and each line is then one slice assignment per run it
crosses, never a loop over bytes or pixels. A band is the unit of work between two deadline
checks, so a big blit spreads over as many loop steps as it needs.

Rows are copied top to bottom, each with one memmove: a copy whose source and destination
rectangles overlap with the destination below the source reads rows it already wrote (the
contract asks for no overlap direction; i915 never overlaps them).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterator

from ..cmd.records import ColorBlt, SrcCopyBlt
from .memory import AddressSpace, Span

__all__ = ["CHUNK", "BlitJob"]

CHUNK = 1 << 20  # bytes per band: about 0.1-0.5 ms of copying, the loop's step scale
_BPP = 4
_ZEROS = memoryview(bytes(CHUNK))

_Line = tuple[int, int, int]  # (destination gma, source gma or -1, bytes)


def _lines(dst: int, pitch: int, src: int, src_pitch: int, rows: int, width: int) -> Iterator[_Line]:
    if rows <= 0 or width <= 0:
        return
    if pitch == width and (src < 0 or src_pitch == width):
        rows, width = 1, rows * width  # the rows touch: one line
    for r in range(rows):
        d = dst + r * pitch
        s = src + r * src_pitch if src >= 0 else -1
        for off in range(0, width, CHUNK):
            yield d + off, s + off if s >= 0 else -1, min(CHUNK, width - off)


class _Spans:
    """A band's spans with a bisect index, and the pieces of one line across them."""

    __slots__ = ("spans", "starts")

    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans
        self.starts = [s.start for s in spans]

    def pieces(self, gma: int, n: int) -> Iterator[tuple[memoryview | None, int, int]]:
        """(view or None, offset in it, length) covering [gma, gma + n)."""
        spans = self.spans
        i = bisect.bisect_right(self.starts, gma) - 1
        end = gma + n
        while gma < end:
            s = spans[i]
            take = min(end, s.end) - gma
            yield s.view, gma - s.start, take
            gma += take
            i += 1


class BlitJob:
    """One blit in progress; :meth:`step` does bands until the deadline or the end."""

    def __init__(self, space: AddressSpace, rec: ColorBlt | SrcCopyBlt) -> None:
        self.space = space
        width = (rec.x2 - rec.x1) * _BPP
        rows = rec.y2 - rec.y1
        dst = rec.dst + rec.y1 * (rec.dst_pitch if isinstance(rec, SrcCopyBlt) else rec.pitch) + rec.x1 * _BPP
        self.bytes = max(0, width) * max(0, rows)
        if isinstance(rec, SrcCopyBlt):
            src = rec.src + rec.src_y * rec.src_pitch + rec.src_x * _BPP
            self._lines = _lines(dst, rec.dst_pitch, src, rec.src_pitch, rows, width)
            self._pattern: memoryview | None = None
        else:
            self._lines = _lines(dst, rec.pitch, -1, 0, rows, width)
            # One more pixel than a line holds, so a piece can start at any byte of a pixel.
            self._pattern = memoryview(struct.pack("<I", rec.color & 0xFFFFFFFF) * (CHUNK // _BPP + 1))
        self._next: _Line | None = next(self._lines, None)

    def step(self, deadline: float, clock: Callable[[], float]) -> bool:
        """True while bands remain."""
        while self._next is not None:
            self._band()
            if clock() >= deadline:
                break
        return self._next is not None

    def run(self) -> None:
        while self._next is not None:
            self._band()

    def _band(self) -> None:
        first = self._next
        assert first is not None
        band = [first]
        d_end = first[0] + first[2]
        s_end = first[1] + first[2]
        nxt = next(self._lines, None)
        while nxt is not None:
            ne = nxt[0] + nxt[2]
            if ne - first[0] > CHUNK or (nxt[1] >= 0 and nxt[1] + nxt[2] - first[1] > CHUNK):
                break
            band.append(nxt)
            d_end, s_end = ne, nxt[1] + nxt[2]
            nxt = next(self._lines, None)
        self._next = nxt
        dst = _Spans(self.space.spans(first[0], d_end - first[0], True))
        pattern = self._pattern
        if pattern is not None:
            for d, _, n in band:
                at = 0  # bytes of the line done: byte j of a line is byte j % 4 of the colour
                for view, off, take in dst.pieces(d, n):
                    if view is not None:
                        phase = at & 3
                        view[off : off + take] = pattern[phase : phase + take]
                    at += take
            return
        src = _Spans(self.space.spans(first[1], s_end - first[1], False))
        for d, s, n in band:
            at = 0
            for view, off, take in dst.pieces(d, n):
                if view is None:
                    at += take
                    continue
                pos = off
                for sview, soff, stake in src.pieces(s + at, take):
                    view[pos : pos + stake] = _ZEROS[:stake] if sview is None else sview[soff : soff + stake]
                    pos += stake
                at += take
