"""The shared functions a kernel's SENDs reach: the sampler (sample, sample_l, ld; nearest
filtering, clamp or wrap), the render target write, media block read and write (render cache
and data cache 1 data ports) and the thread spawner's end of thread. Every other message is
refused with its target and function; docs/render.md lists the descriptor fields read.

Each call serves one SEND for every thread of a batch at once: addresses of all lanes are
computed as arrays and memory is reached a page at a time (:func:`.surface.gather`,
:func:`.surface.scatter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..eu.decode import Instruction
from ..eu.isa import EuError, Sfid
from ..gtt.space import AddressSpace
from .surface import Surface, gather, scatter

__all__ = ["Sampler", "SharedFunctions"]

U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]

SAMPLE, SAMPLE_L, SAMPLE_LD = 0, 2, 7
RC_MEDIA_BLOCK_READ, RC_MEDIA_BLOCK_WRITE, RC_RENDER_TARGET_WRITE = 4, 10, 12
DC1_MEDIA_BLOCK_READ, DC1_MEDIA_BLOCK_WRITE = 4, 10
WRAP, CLAMP = 0, 2


@dataclass(frozen=True)
class Sampler:
    """SAMPLER_STATE (GEN8, 4 dwords) as far as it is modelled."""

    wrap_s: int
    wrap_t: int
    normalized: bool

    @classmethod
    def from_state(cls, dw: list[int], where: str) -> Sampler:
        min_filter, mag_filter, mip_filter = dw[0] >> 14 & 7, dw[0] >> 17 & 7, dw[0] >> 20 & 3
        if min_filter or mag_filter:
            raise EuError(f"{where}: filters {min_filter}/{mag_filter} are not modelled (nearest only)")
        if mip_filter:
            raise EuError(f"{where}: mip filter {mip_filter} is not modelled")
        wrap_t, wrap_s = dw[3] >> 3 & 7, dw[3] >> 6 & 7
        for w in (wrap_s, wrap_t):
            if w not in (WRAP, CLAMP):
                raise EuError(f"{where}: texture coordinate mode {w} is not modelled (wrap, clamp)")
        return cls(wrap_s, wrap_t, not dw[3] >> 10 & 1)


def _address(i: I64, size: int, mode: int) -> I64:
    if mode == WRAP:
        out: I64 = np.mod(i, size)
        return out
    return np.clip(i, 0, size - 1)


class SharedFunctions:
    """The ``Messages`` of :class:`gen_vgpu.eu.interp.Threads` for one draw or walker.
    ``surface(index)`` and ``sampler(index)`` resolve binding table and sampler indices;
    ``pixels`` (x, y of each lane) and ``coverage`` are set by the dispatcher for pixel
    shader batches."""

    def __init__(
        self,
        space: AddressSpace,
        gen: int,
        surface: Callable[[int], Surface],
        sampler: Callable[[int], Sampler],
    ) -> None:
        self.space = space
        self.gen = gen
        self.surface = surface
        self.sampler = sampler
        self.pixels: tuple[I64, I64] | None = None
        self.coverage: Bools | None = None
        self.pixels_written = 0

    def send(self, inst: Instruction, payload: U8, lanes: Bools) -> U8 | None:
        s = inst.send
        assert s is not None
        desc = s.desc
        if s.sfid == Sfid.SAMPLER:
            return self._sample(inst, payload, lanes)
        msg = desc >> 14 & 0xF
        if s.sfid == Sfid.RENDER_CACHE and msg == RC_RENDER_TARGET_WRITE:
            self._rt_write(inst, payload, lanes)
            return None
        if (s.sfid, msg) in ((Sfid.RENDER_CACHE, RC_MEDIA_BLOCK_WRITE), (Sfid.DATA_CACHE1, DC1_MEDIA_BLOCK_WRITE)):
            self._media_block(inst, payload, write=True)
            return None
        if (s.sfid, msg) in ((Sfid.RENDER_CACHE, RC_MEDIA_BLOCK_READ), (Sfid.DATA_CACHE1, DC1_MEDIA_BLOCK_READ)):
            return self._media_block(inst, payload, write=False)
        if s.sfid == Sfid.THREAD_SPAWNER and s.eot:
            return None
        try:
            name = Sfid(s.sfid).name.lower()
        except ValueError:
            name = f"shared function {s.sfid}"
        raise EuError(f"a message to the {name} (descriptor {desc:#010x}) is not modelled")

    # --- sampler ----------------------------------------------------------------------------

    def _sample(self, inst: Instruction, payload: U8, lanes: Bools) -> U8:
        s = inst.send
        assert s is not None
        desc = s.desc
        simd = desc >> 17 & 3
        msg = desc >> 12 & 0x1F
        if simd not in (1, 2):
            raise EuError(f"sampler SIMD mode {simd} is not modelled (SIMD8, SIMD16)")
        if msg not in (SAMPLE, SAMPLE_L, SAMPLE_LD):
            raise EuError(f"sampler message type {msg} is not modelled (sample, sample_l, ld)")
        n = 8 if simd == 1 else 16
        regs = n // 8
        count = payload.shape[0]
        first = 0
        disabled = 0
        if s.header:
            disabled = int(np.bitwise_or.reduce(payload[:, 8:12].copy().view("<u4")[:, 0] >> 12 & 0xF))
            if disabled and not (payload[:, 8:12].copy().view("<u4")[:, 0] >> 12 & 0xF == disabled).all():
                raise EuError("threads of one batch disable different sampler channels")
            first = 1
        params = (s.mlen - first) // regs

        def param(k: int, dtype: str) -> npt.NDArray[np.generic]:
            if k >= params:
                raise EuError(f"sampler message with {params} parameters, needs {k + 1}")
            start = (first + k * regs) * 32
            return payload[:, start : start + 32 * regs].copy().view(dtype).reshape(count, n)

        surf = self.surface(desc & 0xFF)
        if msg == SAMPLE_LD:
            u = param(0, "<i4").astype(np.int64)
            v = param(2 if self.gen == 8 else 1, "<i4").astype(np.int64)
            x, y = np.clip(u, 0, surf.width - 1), np.clip(v, 0, surf.height - 1)
            outside = (u < 0) | (u >= surf.width) | (v < 0) | (v >= surf.height)
        else:
            smp = self.sampler(desc >> 8 & 0xF)
            u = param(0, "<f4").astype(np.float64)
            v = param(1, "<f4").astype(np.float64)
            if smp.normalized:
                u, v = u * surf.width, v * surf.height
            # NaN and infinities become some integer, then an edge or wrapped texel.
            with np.errstate(invalid="ignore"):
                fx = np.floor(np.clip(u, -1e9, 1e9)).astype(np.int64)
                fy = np.floor(np.clip(v, -1e9, 1e9)).astype(np.int64)
            x, y = _address(fx, surf.width, smp.wrap_s), _address(fy, surf.height, smp.wrap_t)
            outside = np.zeros(x.shape, dtype=np.bool_)
        active = lanes[:, :n]
        channels = [c for c in range(4) if not disabled >> c & 1]
        if s.rlen < len(channels) * regs:
            raise EuError(f"sampler response of {s.rlen} registers, {len(channels) * regs} needed")
        every = bool(active.all())
        if every:
            addrs = surf.texel_addresses(x.reshape(-1), y.reshape(-1))
        else:
            addrs = surf.texel_addresses(x[active], y[active])
        rgba = surf.to_rgba(gather(self.space, addrs, surf.format.bpp))
        if msg == SAMPLE_LD:
            rgba[(outside.reshape(-1) if every else outside[active])] = 0.0  # ld out of bounds returns zero
        if every:
            full = rgba.reshape(count, n, 4)
        else:
            full = np.zeros((count, n, 4), dtype=np.float32)
            full[active] = rgba
        out = np.zeros((count, s.rlen * 8), dtype=np.float32)
        planes = np.moveaxis(full[:, :, channels], 2, 1).reshape(count, -1)
        out[:, : planes.shape[1]] = planes
        return out.view(np.uint8)

    # --- render target ----------------------------------------------------------------------

    def _rt_write(self, inst: Instruction, payload: U8, lanes: Bools) -> None:
        s = inst.send
        assert s is not None
        control = s.desc >> 8 & 0x3F
        subtype = control & 7
        if subtype == 0:
            n, base_lane = 16, 0
        elif subtype == 4:
            n, base_lane = 8, 8 if control >> 3 & 1 else 0
        else:
            raise EuError(f"render target write type {subtype} is not modelled (SIMD16, SIMD8 single source)")
        if self.pixels is None or self.coverage is None:
            raise EuError("a render target write from a thread that is not a pixel shader")
        regs = n // 8
        first = 2 if s.header else 0
        if s.mlen < first + 4 * regs:
            raise EuError(f"render target write of {s.mlen} registers, {first + 4 * regs} needed")
        count = payload.shape[0]
        color = payload[:, first * 32 : (first + 4 * regs) * 32].copy().view("<f4").reshape(count, 4, n)
        sel = slice(base_lane, base_lane + n)
        active = lanes[:, :n] & self.coverage[:, sel]
        xs, ys = self.pixels[0][:, sel][active], self.pixels[1][:, sel][active]
        surf = self.surface(s.desc & 0xFF)
        inside = (xs >= 0) & (xs < surf.width) & (ys >= 0) & (ys < surf.height)
        rgba = np.moveaxis(color, 1, 2)[active][inside]
        addrs = surf.texel_addresses(xs[inside], ys[inside])
        old = (
            gather(self.space, addrs, surf.format.bpp)
            if None in surf.format.channels
            else np.zeros((len(addrs), surf.format.bpp), dtype=np.uint8)
        )
        scatter(self.space, addrs, surf.from_rgba(rgba, old))
        self.pixels_written += len(addrs)

    # --- media block ------------------------------------------------------------------------

    def _media_block(self, inst: Instruction, payload: U8, write: bool) -> U8 | None:
        s = inst.send
        assert s is not None
        if not s.header:
            raise EuError("a media block message without its header")
        count = payload.shape[0]
        head = payload[:, :32].copy().view("<i4")
        x0, y0 = head[:, 0].astype(np.int64), head[:, 1].astype(np.int64)
        size = head[:, 2].view("<u4")
        widths, heights = (size & 0x3FF) + 1, (size >> 16 & 0x3FF) + 1
        if (widths != widths[0]).any() or (heights != heights[0]).any():
            raise EuError("threads of one batch move media blocks of different sizes")
        w, h = int(widths[0]), int(heights[0])
        row = max(4, 1 << (w - 1).bit_length())
        regs = (row * h + 31) // 32
        if w > 64 or (s.mlen - 1 if write else s.rlen) < regs:
            raise EuError(f"a {w}x{h} media block does not fit its {s.mlen - 1 if write else s.rlen} registers")
        surf = self.surface(s.desc & 0xFF)
        bpp = surf.format.bpp
        if w % bpp:
            raise EuError(f"a media block {w} bytes wide on {bpp}-byte texels")
        cols = np.arange(0, w, bpp, dtype=np.int64)
        rows = np.arange(h, dtype=np.int64)
        xb = x0[:, None, None] + cols[None, None, :]
        yy = y0[:, None, None] + rows[None, :, None]
        xb, yy = np.broadcast_arrays(xb, yy)
        inside = (xb >= 0) & (xb + bpp <= surf.width * bpp) & (yy >= 0) & (yy < surf.height)
        grf_off = (rows[:, None] * row + cols[None, :])[None].repeat(count, 0)
        thread = np.arange(count)[:, None, None].repeat(h, 1).repeat(len(cols), 2)
        if write:
            data = payload[:, 32:]
            offs = grf_off[inside][:, None] + np.arange(bpp)
            texels = data[thread[inside][:, None], offs]
            scatter(self.space, surf.base + surf.offsets(xb[inside], yy[inside]), texels)
            self.pixels_written += int(inside.sum())
            return None
        # Reads outside the surface return the nearest edge texel.
        cx = np.clip(xb, 0, surf.width * bpp - bpp) // bpp * bpp
        cy = np.clip(yy, 0, surf.height - 1)
        texels = gather(self.space, surf.base + surf.offsets(cx.reshape(-1), cy.reshape(-1)), bpp)
        out = np.zeros((count, s.rlen * 32), dtype=np.uint8)
        offs = grf_off.reshape(count, -1)
        for k in range(bpp):
            out[np.arange(count)[:, None], offs + k] = texels[:, k].reshape(count, -1)
        return out
