"""XY_COLOR_BLT and XY_SRC_COPY_BLT on linear 32 bpp surfaces, a page run at a time.

A blit is cut into *lines*: each row of the rectangle, or, when the rows touch (pitch equal to
the row's bytes), the whole rectangle as one line; lines longer than ``LINE`` are cut again.
Consecutive lines whose span of graphics memory fits in ``BAND`` form a *band*: the band's
range is translated once (``AddressSpace.spans``: runs of contiguous host frames through the
shadow tables, one view per window) and each line is then one slice assignment per run it
crosses, never a loop over bytes or pixels. The deadline is checked after every line; lines of
a band not done when it passes go back to the front of the queue and the next step translates
them again (no view is kept between steps), so a big blit spreads over as many loop steps as
it needs and a step overruns its deadline by one line at most.

Rows are copied top to bottom, each with one memmove: a copy whose source and destination
rectangles overlap with the destination below the source reads rows it already wrote (the
contract asks for no overlap direction; i915 never overlaps them).
"""

from __future__ import annotations

import bisect
import struct
from collections import deque
from collections.abc import Callable, Iterator

from ..cmd.records import ColorBlt, SrcCopyBlt
from .memory import AddressSpace, Span

__all__ = ["BAND", "LINE", "BlitJob"]

# A line is at most 16 pages: at worst 16 single-page runs, some tens of µs, between two
# deadline checks. A band amortises one walk of the shadow tables over up to 256 KiB
# (64 pages: the walk costs about 0.5 µs a page, so a band of single-page runs stays
# near the 0.25 ms step).
LINE = 1 << 16
BAND = 1 << 18
_BPP = 4
_ZEROS = memoryview(bytes(LINE))

_Line = tuple[int, int, int]  # (destination gma, source gma or -1, bytes)


def _lines(dst: int, pitch: int, src: int, src_pitch: int, rows: int, width: int) -> Iterator[_Line]:
    if rows <= 0 or width <= 0:
        return
    if pitch == width and (src < 0 or src_pitch == width):
        rows, width = 1, rows * width  # the rows touch: one line
    for r in range(rows):
        d = dst + r * pitch
        s = src + r * src_pitch if src >= 0 else -1
        for off in range(0, width, LINE):
            yield d + off, s + off if s >= 0 else -1, min(LINE, width - off)


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
    """One blit in progress; :meth:`step` does lines until the deadline or the end."""

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
            self._pattern = memoryview(struct.pack("<I", rec.color & 0xFFFFFFFF) * (LINE // _BPP + 1))
        self._todo: deque[_Line] = deque()  # lines taken from the generator, not yet done
        self._refill()

    def _refill(self) -> None:
        if not self._todo:
            nxt = next(self._lines, None)
            if nxt is not None:
                self._todo.append(nxt)

    def step(self, deadline: float, clock: Callable[[], float]) -> bool:
        """True while lines remain."""
        while self._todo:
            if self._band(deadline, clock):
                break
        return bool(self._todo)

    def run(self) -> None:
        while self._todo:
            self._band(float("inf"), lambda: 0.0)

    def _take_band(self) -> list[_Line]:
        todo = self._todo
        first = todo.popleft()
        band = [first]
        while True:
            if not todo:
                nxt = next(self._lines, None)
                if nxt is None:
                    break
                todo.append(nxt)
            nxt = todo[0]
            if nxt[0] + nxt[2] - first[0] > BAND or (nxt[1] >= 0 and nxt[1] + nxt[2] - first[1] > BAND):
                break
            band.append(todo.popleft())
        return band

    def _band(self, deadline: float, clock: Callable[[], float]) -> bool:
        """Do one band, or its lines up to the deadline; True if the deadline stopped it."""
        band = self._take_band()
        first, last = band[0], band[-1]
        dst = _Spans(self.space.spans(first[0], last[0] + last[2] - first[0], True))
        pattern = self._pattern
        src = None if pattern is not None else _Spans(self.space.spans(first[1], last[1] + last[2] - first[1], False))
        for k, (d, s, n) in enumerate(band):
            if pattern is not None:
                at = 0  # bytes of the line done: byte j of a line is byte j % 4 of the colour
                for view, off, take in dst.pieces(d, n):
                    if view is not None:
                        phase = at & 3
                        view[off : off + take] = pattern[phase : phase + take]
                    at += take
            else:
                assert src is not None
                at = 0
                for view, off, take in dst.pieces(d, n):
                    if view is not None:
                        pos = off
                        for sview, soff, stake in src.pieces(s + at, take):
                            view[pos : pos + stake] = _ZEROS[:stake] if sview is None else sview[soff : soff + stake]
                            pos += stake
                    at += take
            if clock() >= deadline and k + 1 < len(band):
                self._todo.extendleft(reversed(band[k + 1 :]))
                return True
        self._refill()
        return clock() >= deadline
