"""XY_COLOR_BLT and XY_SRC_COPY_BLT on 32 bpp surfaces, linear, X- or Y-tiled.

With the compiled accelerator (``blit_accel``), a blit is a C struct made with the job and a
step is one call into C: the surfaces' graphics pages resolved to host pages (C walks the
shadow tables from the context's roots), up to ``MAX_PAGES`` ahead, then bands of rows of
``ACCEL_BAND`` bytes moved (that much of the destination for a fill, half of it of each surface
for a copy, or one row of tiles), each copied or filled in the largest pieces both layouts
keep contiguous, C looking at the clock after every band. The translation holds for the step
alone (nothing changes the shadow tables or the DMA windows inside a step): the next step
resolves again, and so does the step whose bands reach past the pages resolved.

On Python alone, linear blits go as follows, and tiled ones by bands too, one slice
assignment per piece (a tile's row of 512 bytes for X, an OWord for Y: correct, not fast).

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
from ..gtt.space import AddressSpace, GgttSpace, PpgttSpace, Span
from ..tiles import Tiling, locate
from .blit_accel import BlitAccel
from .tiling import SWCTRL_DST_Y, SWCTRL_SRC_Y, blit_tiling, rows_span

__all__ = ["BAND", "LINE", "BlitJob"]

# A line is at most 16 pages: at worst 16 single-page runs, some tens of µs, between two
# deadline checks. A band amortises one walk of the shadow tables over up to 256 KiB
# (64 pages: the walk costs about 0.5 µs a page, so a band of single-page runs stays
# near the 0.25 ms step).
LINE = 1 << 16
BAND = 1 << 18
# The compiled path's band, in bytes moved (a fill writes its bytes once, a copy reads and
# writes them; C checks the clock after each): 1 MiB is 10-40 µs of C with the surfaces in
# the caches or out of them, and 0.9-1.0 ms of CPU when every page is touched for the first
# time (the kernel's fault and zeroing, about 3 µs a page), inside the 2 ms a step may take;
# bands of 2 MiB measured 1.6-2.0 ms then on the loaded machine, 8 MiB 6.2 ms.
ACCEL_BAND = 1 << 20
_BPP = 4
_ZEROS = memoryview(bytes(LINE))

_NEVER = float("inf")

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


def _no_clock() -> float:
    return 0.0


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


_Surface = tuple[int, int, Tiling]  # address, pitch in bytes, tiling


def _band_rows(surfaces: list[tuple[_Surface, int]], remaining: int, band: int) -> int:
    """Rows from here whose bytes in each (surface, first row) span about ``band`` at most, or
    one row (of tiles) when a row alone is more."""
    k = remaining
    for (_, pitch, tiling), y in surfaces:
        if tiling is Tiling.LINEAR:
            cap = max(1, band // max(pitch, 1))
        else:
            h = tiling.height
            cap = (h - y % h) + (max(1, band // max(pitch * h, 1)) - 1) * h
        k = min(k, cap)
    return k


class BlitJob:
    """One blit in progress; :meth:`step` does lines (or bands) until the deadline or the end.
    ``swctrl``: BCS_SWCTRL as the blit starts (which tiled surface is Y-tiled)."""

    def __init__(
        self, space: AddressSpace, rec: ColorBlt | SrcCopyBlt, accel: BlitAccel | None = None, swctrl: int = 0
    ) -> None:
        self.space = space
        width = max(0, (rec.x2 - rec.x1) * _BPP)
        rows = max(0, rec.y2 - rec.y1)
        self.bytes = width * rows
        if accel is not None and isinstance(space, (PpgttSpace, GgttSpace)):
            # The compiled path: a step is one call (blit_accel.py).
            self._accel: BlitAccel | None = accel
            self._job = accel.job(space, rec, swctrl, width, rows, ACCEL_BAND)
            self._row = 0  # rows done
            self._rows = rows
            return
        self._width = width
        self._rows = rows
        if isinstance(rec, SrcCopyBlt):
            dst_tiling = blit_tiling(rec.dst_tiled, swctrl, SWCTRL_DST_Y)
            src_tiling = blit_tiling(rec.src_tiled, swctrl, SWCTRL_SRC_Y)
        else:
            dst_tiling = blit_tiling(rec.tiled, swctrl, SWCTRL_DST_Y)
            src_tiling = Tiling.LINEAR
        self._accel = None
        self._row = 0  # the band path: rows done
        if isinstance(rec, SrcCopyBlt):
            self._dst: _Surface = (rec.dst, rec.dst_pitch, dst_tiling)
            self._src: _Surface | None = (rec.src, rec.src_pitch, src_tiling)
            self._src_xy = (rec.src_x * _BPP, rec.src_y)
            self._color = 0
        else:
            self._dst = (rec.dst, rec.pitch, dst_tiling)
            self._src = None
            self._src_xy = (0, 0)
            self._color = rec.color & 0xFFFFFFFF
        self._dst_xy = (rec.x1 * _BPP, rec.y1)
        self._banded = dst_tiling is not Tiling.LINEAR or src_tiling is not Tiling.LINEAR
        self._todo: deque[_Line] = deque()  # lines taken from the generator, not yet done
        if self._banded:
            self._lines: Iterator[_Line] = iter(())
            self._pattern: memoryview | None = None
            return
        dst = rec.dst + rec.y1 * self._dst[1] + rec.x1 * _BPP
        self._pattern = None
        if isinstance(rec, SrcCopyBlt):
            src = rec.src + rec.src_y * rec.src_pitch + rec.src_x * _BPP
            self._lines = _lines(dst, rec.dst_pitch, src, rec.src_pitch, rows, width)
        else:
            self._lines = _lines(dst, rec.pitch, -1, 0, rows, width)
            # One more pixel than a line holds, so a piece can start at any byte of a pixel.
            self._pattern = memoryview(struct.pack("<I", rec.color & 0xFFFFFFFF) * (LINE // _BPP + 1))
        self._refill()

    # --- by bands: tiled surfaces on Python -----------------------------------------------------

    def _band_step(self, deadline: float, clock: Callable[[], float]) -> bool:
        """Bands until the deadline or the end; True while rows remain."""
        if self._width == 0:
            self._row = self._rows
        while self._row < self._rows:
            r = self._row
            dx, dy = self._dst_xy
            _, sy = self._src_xy
            dst, src = self._dst, self._src
            surfaces = [(dst, dy + r)] if src is None else [(dst, dy + r), (src, sy + r)]
            k = _band_rows(surfaces, self._rows - r, BAND)
            dlo, dhi = rows_span(dst[2], dst[1], dx, dy + r, self._width, k)
            self._python_band(dlo, dhi, r, k)
            self._row = r + k
            if clock() >= deadline:
                break
        return self._row < self._rows

    def _python_band(self, dlo: int, dhi: int, r: int, k: int) -> None:
        dst_addr, dst_pitch, dst_tiling = self._dst
        dx, dy = self._dst_xy
        sx, sy = self._src_xy
        dspans = _Spans(self.space.spans(dst_addr + dlo, dhi - dlo, True))
        src = self._src
        sspans = None
        if src is not None:
            slo, shi = rows_span(src[2], src[1], sx, sy + r, self._width, k)
            sspans = _Spans(self.space.spans(src[0] + slo, shi - slo, False))
        else:
            pattern = memoryview(struct.pack("<I", self._color) * (4096 // _BPP + 1))
        for row in range(r, r + k):
            done = 0
            while done < self._width:
                doff, drun = locate(dst_tiling, dst_pitch, dx + done, dy + row)
                n = min(self._width - done, drun, 4096)
                data: bytes | memoryview
                if src is not None:
                    soff, srun = locate(src[2], src[1], sx + done, sy + row)
                    n = min(n, srun)
                    assert sspans is not None
                    data = b"".join(
                        bytes(take) if view is None else view[off : off + take]
                        for view, off, take in sspans.pieces(src[0] + soff, n)
                    )
                else:
                    phase = done & 3
                    data = pattern[phase : phase + n]
                at = 0
                for view, off, take in dspans.pieces(dst_addr + doff, n):
                    if view is not None:
                        view[off : off + take] = data[at : at + take]
                    at += take
                done += n

    # --- linear, on Python ---------------------------------------------------------------------

    def _refill(self) -> None:
        if not self._todo:
            nxt = next(self._lines, None)
            if nxt is not None:
                self._todo.append(nxt)

    def step(self, deadline: float, clock: Callable[[], float]) -> bool:
        """True while lines remain."""
        accel = self._accel
        if accel is not None:
            assert isinstance(self.space, (PpgttSpace, GgttSpace))
            self._row = accel.step(self._job, self.space, self._row, deadline - clock())
            return self._row < self._rows
        if self._banded:
            return self._band_step(deadline, clock)
        while self._todo:
            if self._band(deadline, clock):
                break
        return bool(self._todo)

    def run(self) -> None:
        accel = self._accel
        if accel is not None:
            assert isinstance(self.space, (PpgttSpace, GgttSpace))
            self._row = accel.step(self._job, self.space, self._row, _NEVER)
            return
        if self._banded:
            self._band_step(_NEVER, _no_clock)
            return
        while self._todo:
            self._band(_NEVER, _no_clock)

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
