"""The blitter in the compiled accelerator (accel/dm_blit.c).

A step of a blit is one C call, ``dm_blit_step``: the surfaces' graphics pages resolved to host
addresses, up to ``MAX_PAGES`` of each ahead (C walks from the context's shadow roots to the
shadow PTs itself, reading the tables where the device keeps them, in its slabs of device
pages; the GGTT's shadow entries for a GGTT blit), then bands of rows moved until the step's
budget has passed, C resolving again where the bands reach past the pages resolved. The leaf
entries resolve through the current DMA windows: scratch, absent and read-only entries resolve
to 0 (reads give zeros, writes are dropped, as on the Python path), and so does a page under a
directory entry that names no device page. C copies or fills the rows in the largest pieces
both surfaces keep contiguous (a run of host pages of a linear row, a tile's row of an X-tiled
one, an OWord of a Y-tiled one).

A blit's description is a tuple of the call's arguments made once (:meth:`BlitAccel.job`), its
progress the row reached: a step is the window table's and the slab table's freshness checks,
the roots, and the call (no allocation: right after a blit of megabytes has flushed the
caches, an ffi.new cost 1-2 µs more than a call).
"""

from __future__ import annotations

from typing import Any

from devmodel.accel import Accel
from devmodel.device.dma import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PROT_READ,
    PROT_WRITE,
    DmaMap,
)

from ..cmd.records import ColorBlt, SrcCopyBlt
from ..gtt.device_pages import DevicePages
from ..gtt.ggtt import Ggtt
from ..gtt.mm import RootKind
from ..gtt.ops import PteOps
from ..gtt.space import GgttSpace, PpgttSpace
from ..tiles import Tiling
from .tiling import SWCTRL_DST_Y, SWCTRL_SRC_Y

__all__ = ["MAX_PAGES", "BlitAccel", "has_blit_accel"]

_FUNCTIONS = ("dm_frames_resolve", "dm_blit_copy", "dm_blit_fill", "dm_blit_step")
# Pages one surface of a step may have resolved at once: one row of Y tiles at the largest
# pitch a blit decodes (256 KiB) is 2048 pages; a band asks for at most that much more.
MAX_PAGES = 4096
_GGTT_PAGES = 1 << 20  # 4 GiB of graphics memory
_FAILED = (1 << 64) - 1  # dm_blit_step: a band spans more than MAX_PAGES pages
# dm_blit.h's DM_SPACE_* and DM_TILE_* (tiles.py's Tiling holds the same values), as plain ints
# for the job's arguments.
_GGTT, _L3, _L4 = 0, 1, 2
_ROOT_L4 = RootKind.L4
_LINEAR, _X, _Y = int(Tiling.LINEAR), int(Tiling.X), int(Tiling.Y)


def has_blit_accel(accel: Accel | None) -> bool:
    return accel is not None and all(hasattr(accel.lib, f) for f in _FUNCTIONS)


class BlitAccel:
    def __init__(self, accel: Accel, dma: DmaMap, ops: PteOps) -> None:
        if type(ops) is not PteOps:
            raise ValueError(f"no compiled blitter for {type(ops).__name__}")
        self.ffi = ffi = accel.ffi
        self.lib = accel.lib
        self.dma = dma
        self.ops = ops
        env = self.env = ffi.new("struct dm_blit_env *")
        self._dst_pages = ffi.new("uint64_t[]", MAX_PAGES)
        self._src_pages = ffi.new("uint64_t[]", MAX_PAGES)
        env.dst_pages, env.src_pages, env.max_pages = self._dst_pages, self._src_pages, MAX_PAGES
        self.pages = DevicePages(ffi, dma)
        env.device = self.pages.struct
        # The window table and the entries' bits, in the env (the aperture and the screen
        # decode read them too); need_rw 0: dm_frames_resolve is called for the GGTT alone.
        f = self.frames = ffi.addressof(env[0], "frames")
        f.present_bit = ops.present_bit
        f.rw_bit = ops.rw_bit
        f.frame_mask = ops.addr_mask
        f.need_rw = 0
        self._key = (-1, -1)  # the DMA map's (generation, window count) the table is of
        self._table: Any = None
        self._ggtt: tuple[Any, int] = (None, 0)  # a GGTT's shadow entries and their address
        # copy_out's surfaces (the screen decode's planes)
        self._copy_dst = ffi.new("struct dm_surface *")
        self._copy_src = ffi.new("struct dm_surface *")
        lib = self.lib
        if (lib.DM_SPACE_GGTT, lib.DM_SPACE_PPGTT_L3, lib.DM_SPACE_PPGTT_L4) != (_GGTT, _L3, _L4):
            raise ValueError("the compiled blitter numbers its spaces otherwise")

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

    def _ggtt_address(self, ggtt: Ggtt) -> int:
        shadow, address = self._ggtt
        if shadow is not ggtt.shadow:  # an array of fixed size: its address holds
            shadow = ggtt.shadow
            address = int(self.ffi.cast("uintptr_t", self.ffi.from_buffer(shadow)))
            self._ggtt = (shadow, address)
        return address

    def job(
        self, space: PpgttSpace | GgttSpace, rec: ColorBlt | SrcCopyBlt, swctrl: int, width: int, rows: int, band: int
    ) -> tuple[int, ...]:
        """dm_blit_step's arguments for the blit ``rec`` over ``space``, from the space's kind to
        the colour (its rectangle: width in bytes, rows; ``swctrl``: BCS_SWCTRL as it starts,
        which tiled surface is Y-tiled; ``band``: bytes moved between two looks at the clock,
        half of it of each surface for a copy). The tilings are blit_tiling's, written out."""
        if isinstance(space, PpgttSpace):
            kind = _L4 if space.mm.kind is _ROOT_L4 else _L3
        else:
            kind = _GGTT
        if isinstance(rec, SrcCopyBlt):
            dt = (_Y if swctrl & SWCTRL_DST_Y else _X) if rec.dst_tiled else _LINEAR
            st = (_Y if swctrl & SWCTRL_SRC_Y else _X) if rec.src_tiled else _LINEAR
            return (kind, 1, rec.dst, rec.dst_pitch, dt, rec.x1 * 4, rec.y1, rec.src, rec.src_pitch, st,
                    rec.src_x * 4, rec.src_y, width, rows, band // 2, 0)  # fmt: skip
        dt = (_Y if swctrl & SWCTRL_DST_Y else _X) if rec.tiled else _LINEAR
        return (kind, 0, rec.dst, rec.pitch, dt, rec.x1 * 4, rec.y1, 0, 0, 0, 0, 0, width, rows, band,
                rec.color & 0xFFFFFFFF)  # fmt: skip

    def step(self, job: tuple[int, ...], space: PpgttSpace | GgttSpace, row: int, budget: float) -> int:
        """A step of the blit ``job`` (:meth:`job`) from ``row``: C until ``budget`` seconds
        have passed after a band. Returns the row reached. The windows and the slabs are
        checked and the roots read again each step."""
        dma = self.dma
        if dma.generation != self._key[0] or len(dma) != self._key[1]:
            self.load_windows()
        self.pages.refresh()
        if type(space) is PpgttSpace:
            roots = space.mm.shadow_roots
            if len(roots) == 1:
                done: int = self.lib.dm_blit_step(self.env, roots[0], 0, 0, 0, *job, row, budget)
            else:
                done = self.lib.dm_blit_step(self.env, *roots, *job, row, budget)
        else:
            assert isinstance(space, GgttSpace)
            done = self.lib.dm_blit_step(self.env, self._ggtt_address(space.ggtt), 0, 0, 0, *job, row, budget)
        if done == _FAILED:
            raise RuntimeError("a band of the blit spans more pages than the compiled blitter resolves")
        return done

    def ggtt_pages(self, ggtt: Ggtt, first: int, n: int) -> Any:
        """The host addresses of GGTT pages [first, first + n) for reading, 0 where the page
        reads as zeros (scratch, absent, past the 4 GiB): a uint64_t[n] (the screen decode's
        planes)."""
        self.load_windows()
        out = self.ffi.new("uint64_t[]", max(1, n))
        inside = max(0, min(n, _GGTT_PAGES - first))
        if inside:
            self.lib.dm_frames_resolve(self.frames, self._ggtt_address(ggtt) + 8 * first, inside, False, out)
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
        s = self._copy_src
        s.pages, s.page_gma, s.npages = pages, page_gma, npages
        s.base, s.pitch, s.tiling = src[0], src[1], int(src[2])
        buf = self.ffi.from_buffer(dst)
        nbuf = (len(dst) + PAGE_SIZE - 1) >> PAGE_SHIFT
        addr = int(self.ffi.cast("uintptr_t", buf))
        dpages = self.ffi.new("uint64_t[]", [addr + (i << PAGE_SHIFT) for i in range(nbuf)])
        d = self._copy_dst
        d.pages, d.page_gma, d.npages, d.base, d.pitch, d.tiling = dpages, 0, nbuf, 0, dst_pitch, int(Tiling.LINEAR)
        try:
            self.lib.dm_blit_copy(d, dx, dy, s, sx, sy, width, rows)
        finally:
            s.pages = d.pages = self.ffi.NULL  # the arrays are the caller's and this call's
