"""The blitter in the compiled accelerator (accel/dm_blit.c).

A band of a blit's rows is resolved to host addresses one 4 KiB graphics page at a time, a
page table (512 pages) per call: the shadow PPGTT's leaf tables, or the shadow GGTT's entries,
read by C through the current DMA windows (scratch, absent and read-only entries resolve to 0:
reads give zeros, writes are dropped, as on the Python path). C then copies or fills the
band's rows in the largest pieces both surfaces keep contiguous (a page of a linear row, a
tile's row of an X-tiled one, an OWord of a Y-tiled one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from devmodel.accel import Accel
from devmodel.device.dma import PAGE_SHIFT, PAGE_SIZE, PROT_READ, PROT_WRITE, DmaMap

from ..gtt.ggtt import Ggtt
from ..gtt.lanes import LANES
from ..gtt.ops import PteOps
from ..gtt.shadow import ShadowTable
from ..gtt.space import GgttSpace, PpgttSpace
from ..tiles import Tiling
from .tiling import rows_span

__all__ = ["MAX_PAGES", "BlitAccel", "has_blit_accel"]

_FUNCTIONS = ("dm_frames_resolve", "dm_frames_resolve_tables", "dm_blit_copy", "dm_blit_fill", "dm_blit_bands")
# Pages one surface of a band may span: one row of Y tiles at the largest pitch a blit
# decodes (256 KiB) is 2048 pages; a band asks for at most that much more.
MAX_PAGES = 4096
_GGTT_PAGES = 1 << 20  # 4 GiB of graphics memory


def has_blit_accel(accel: Accel | None) -> bool:
    return accel is not None and all(hasattr(accel.lib, f) for f in _FUNCTIONS)


class _Surface:
    """A struct dm_surface and the page array behind it: pages [first, first + count) as the
    current step resolved them (count 0: none yet)."""

    def __init__(self, ffi: Any) -> None:
        self.pages = ffi.new("uint64_t[]", MAX_PAGES)
        self.struct = ffi.new("struct dm_surface *")
        self.struct.pages = self.pages
        self.space: PpgttSpace | GgttSpace | None = None
        self.first = 0
        self.count = 0


class BlitAccel:
    def __init__(self, accel: Accel, dma: DmaMap, ops: PteOps) -> None:
        if type(ops) is not PteOps:
            raise ValueError(f"no compiled blitter for {type(ops).__name__}")
        self.ffi = ffi = accel.ffi
        self.lib = accel.lib
        self.dma = dma
        self.ops = ops
        self.dst = _Surface(ffi)
        self.src = _Surface(ffi)
        f = self.frames = ffi.new("struct dm_frames *")
        f.present_bit = ops.present_bit
        f.rw_bit = ops.rw_bit
        f.frame_mask = ops.addr_mask
        self._tables = ffi.new("uint64_t[]", MAX_PAGES // LANES + 2)  # a band's PTs, for _resolve
        self._key: tuple[int, int] | None = None
        self._table: Any = None

    def new_step(self) -> None:
        """Forget the surfaces' translations: between two steps the shadow tables may change."""
        self.dst.count = self.src.count = 0

    @property
    def table(self) -> Any:
        """The window table load_windows built last (a new object each time it rebuilds)."""
        return self._table

    def load_windows(self) -> None:
        """The window table, when the DMA map changed since it was built."""
        dma = self.dma
        # Every unmap moves the generation and every map the count: the pair moves with any change.
        key = (dma.generation, len(dma))
        if key == self._key:
            return
        windows = dma.windows
        ordered = sorted(windows, key=lambda w: w.hfn_base)
        table = self.ffi.new("struct dm_frame_window[]", max(1, len(ordered)))
        for slot, w in zip(table, ordered, strict=False):
            slot.hfn_base = w.hfn_base
            slot.hfn_end = w.hfn_base + w.page_count
            view = None if w.mapping is None else (w.mapping.view or w.mapping.read_view)
            slot.addr = 0 if view is None else int(self.ffi.cast("uintptr_t", self.ffi.from_buffer(view)))
            slot.readable = int(bool(w.prot & PROT_READ) and w.mapping is not None and w.mapping.read_view is not None)
            slot.writable = int(bool(w.prot & PROT_WRITE) and w.mapping is not None and w.mapping.view is not None)
        self.frames.windows = table
        self.frames.nwindows = len(ordered)
        self._table = table
        self._key = key

    def _resolve(self, space: PpgttSpace | GgttSpace, first: int, n: int, write: bool, out: Any) -> None:
        """out[0:n]: the host pages of graphics pages [first, first + n)."""
        f = self.frames
        if isinstance(space, PpgttSpace):
            f.need_rw = 1
            inside = min(n, (space.limit >> PAGE_SHIFT) - first)
            if inside > 0:
                # The band's shadow PTs found in one walk, their entries resolved in one call.
                walker = space.walker
                get = walker.ppgtt.store.by_hfn.get
                count = ((first + inside - 1) >> 9) - (first >> 9) + 1
                self._tables[0:count] = [
                    t.haddr if (t := get(hfn)) is not None and t.haddr else self._table_address(hfn, get)
                    for hfn in walker.leaf_tables(space.mm, first << PAGE_SHIFT, count)
                ]
                self.lib.dm_frames_resolve_tables(f, self._tables, first & (LANES - 1), inside, write, out)
            else:
                inside = 0
        else:
            assert isinstance(space, GgttSpace)
            f.need_rw = 0
            inside = max(0, min(n, _GGTT_PAGES - first))
            if inside:
                ffi = self.ffi
                base = int(ffi.cast("uintptr_t", ffi.from_buffer(space.ggtt.shadow)))
                self.lib.dm_frames_resolve(f, base + 8 * first, inside, write, out)
        if inside < n:
            self.ffi.memmove(out + inside, bytes(8 * (n - inside)), 8 * (n - inside))

    def _table_address(self, hfn: int, tables: Callable[[int], ShadowTable | None]) -> int:
        """Where the shadow table in frame hfn is, 0 if no page: a live table's page is a
        bytearray of the store's that never moves, so its address is kept on the table (the
        compiled shadow PPGTT keeps the same one); a scratch PT's entries resolve to 0 anyway."""
        ffi = self.ffi
        t = tables(hfn)
        if t is not None:
            t.haddr = int(ffi.cast("uintptr_t", ffi.from_buffer(t.page)))
            return t.haddr
        pt = self.dma.page(hfn)
        return 0 if pt is None else int(ffi.cast("uintptr_t", ffi.from_buffer(pt)))

    def ggtt_pages(self, ggtt: Ggtt, first: int, n: int) -> Any:
        """The host addresses of GGTT pages [first, first + n) for reading, 0 where the page
        reads as zeros (scratch, absent, past the 4 GiB): a uint64_t[n] (the screen decode's
        planes)."""
        self.load_windows()
        out = self.ffi.new("uint64_t[]", max(1, n))
        self._resolve(GgttSpace(ggtt, self.dma), first, n, False, out)
        return out

    def copy_out(
        self,
        pages: Any,
        page_gma: int,
        npages: int,
        src: tuple[int, int, Tiling],
        sx: int,
        sy: int,
        dst: Any,
        dst_pitch: int,
        dx: int,
        dy: int,
        width: int,
        rows: int,
    ) -> None:
        """Rows of a graphics surface (src: address, pitch, tiling; its pages resolved by
        ggtt_pages from page_gma) into a host buffer of dst_pitch bytes per row, detiled."""
        s = self.src.struct
        s.pages, s.page_gma, s.npages = pages, page_gma, npages
        s.base, s.pitch, s.tiling = src[0], src[1], int(src[2])
        buf = self.ffi.from_buffer(dst)
        nbuf = (len(dst) + PAGE_SIZE - 1) >> PAGE_SHIFT
        addr = int(self.ffi.cast("uintptr_t", buf))
        dpages = self.ffi.new("uint64_t[]", [addr + (i << PAGE_SHIFT) for i in range(nbuf)])
        d = self.dst.struct
        d.pages, d.page_gma, d.npages, d.base, d.pitch, d.tiling = dpages, 0, nbuf, 0, dst_pitch, int(Tiling.LINEAR)
        try:
            self.lib.dm_blit_copy(d, dx, dy, s, sx, sy, width, rows)
        finally:
            s.pages, d.pages = self.src.pages, self.dst.pages
            self.new_step()  # the structs described other surfaces meanwhile

    def _surface(
        self,
        s: _Surface,
        space: PpgttSpace | GgttSpace,
        surface: tuple[int, int, Tiling],
        x: int,
        y: int,
        width: int,
        rows: int,
        left: int,
        write: bool,
    ) -> Any:
        """The struct for rows [y, y + rows) of a surface (address, pitch, tiling) from byte x,
        whose pages the step resolved already or are resolved now, with those of the blit's
        ``left`` rows from y (as many as MAX_PAGES allows) for the step's later bands."""
        base, pitch, tiling = surface
        linear = tiling is Tiling.LINEAR
        if linear:  # rows_span's, written out: a step resolves each surface here
            first = (base + y * pitch + x) >> PAGE_SHIFT
            end = (base + (y + rows - 1) * pitch + x + width + PAGE_SIZE - 1) >> PAGE_SHIFT
        else:
            lo, hi = rows_span(tiling, pitch, x, y, width, rows)
            first = (base + lo) >> PAGE_SHIFT
            end = (base + hi + PAGE_SIZE - 1) >> PAGE_SHIFT
        if end - first > MAX_PAGES:
            raise ValueError(f"a band of {end - first} pages")
        st = s.struct
        if not (s.count and s.space is space and s.first <= first and end <= s.first + s.count):
            last = (y + left - 1) * pitch + x + width if linear else rows_span(tiling, pitch, x, y, width, left)[1]
            ahead = (base + last + PAGE_SIZE - 1) >> PAGE_SHIFT
            n = end - first
            if ahead > end:
                n = min(ahead, first + MAX_PAGES) - first
            self._resolve(space, first, n, write, s.pages)
            s.space, s.first, s.count = space, first, n
            st.page_gma = first << PAGE_SHIFT
            st.npages = n
            st.base = base
            st.pitch = pitch
            st.tiling = int(tiling)
        return st

    def bands(
        self,
        space: PpgttSpace | GgttSpace,
        dst: tuple[int, int, Tiling],
        src: tuple[int, int, Tiling] | None,
        dx: int,
        dy: int,
        sx: int,
        sy: int,
        width: int,
        rows: int,
        left: int,
        color: int,
        band: int,
        budget: float,
    ) -> int:
        """A step's bands of a blit between surfaces (address, pitch, tiling; src None: a
        fill with the colour), from rows [dy, dy + rows), the first band, of the ``left`` the
        blit has from there: in C, ``band`` bytes of each surface at a time, until ``budget``
        seconds have passed after a band. Returns the rows done. :meth:`new_step` first."""
        self.load_windows()
        d = self._surface(self.dst, space, dst, dx, dy, width, rows, left, True)
        if src is None:
            return int(self.lib.dm_blit_bands(d, dx, dy, self.ffi.NULL, 0, 0, width, left, color, band, budget))
        s = self._surface(self.src, space, src, sx, sy, width, rows, left, False)
        return int(self.lib.dm_blit_bands(d, dx, dy, s, sx, sy, width, left, 0, band, budget))
