"""The render engine's pipelines: 3D and media state commands applied to a
:class:`~.state.RenderState`, and the work they start: a 3DPRIMITIVE RECTLIST draw, a
MEDIA_OBJECT, a GPGPU_WALKER. Each runs as a :class:`Job` whose :meth:`Job.step` does thread
batches until the deadline, so the engine's task stays within its step (docs/render.md).

Every address is reached through the context's address space (the shadow PPGTT). A draw or
dispatch that needs unmodelled state, a kernel the interpreter refuses, or a message it does
not model raises :class:`RenderRefused` with the reason (and the kernel's disassembly around
the refused instruction): the engine hangs the context.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..eu.decode import MAX_KERNEL, Instruction, decode_kernel
from ..eu.interp import Threads
from ..eu.isa import EuError
from ..gtt.space import AddressSpace, read
from .errors import RenderRefused
from .shared import Sampler, SharedFunctions
from .state import (
    GPGPU_WALKER,
    MEDIA_CURBE_LOAD,
    MEDIA_INTERFACE_DESCRIPTOR_LOAD,
    MEDIA_OBJECT,
    PIPE_3D,
    PIPE_GPGPU,
    PIPE_MEDIA,
    PRIMITIVE,
    RECTLIST,
    RenderState,
    apply,
)
from .surface import Surface

__all__ = ["BATCH_LANES", "Job", "Pipeline"]

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

# Lanes run per batch: every instruction is one array operation over them, so a batch's
# instruction takes tens of microseconds and a step (0.25 ms) ends within one instruction.
BATCH_LANES = 4096
MAX_CURBE = 64 * 1024
MAX_DESCRIPTORS = 64
MAX_THREADS = 1 << 22  # one dispatch; past it the walker is refused

_VF_FORMATS: dict[int, tuple[str, int]] = {  # format -> (struct code per component, count)
    0x000: ("f", 4),
    0x040: ("f", 3),
    0x085: ("f", 2),
    0x0D8: ("f", 1),
    0x0F6: ("h", 2),
    0x0F7: ("H", 2),
    0x095: ("i", 2),
    0x096: ("I", 2),
}
_STORE_SRC, _STORE_0, _STORE_1_FLT, _STORE_1_INT = 1, 2, 3, 4


def _disassembly(kernel: Sequence[Instruction], offset: int) -> str:
    lines = [f"  {i.offset:#06x}: {i}" for i in kernel if abs(i.offset - offset) <= 48]
    return "\n".join(lines)


def load_kernel(space: AddressSpace, address: int, gen: int, what: str) -> list[Instruction]:
    size = 4096
    while True:
        data = read(space, address, size)
        try:
            return decode_kernel(data, gen)
        except EuError as exc:
            if "ends inside" in exc.reason and size < MAX_KERNEL:
                size *= 4
                continue
            raise RenderRefused(f"{what} at {address:#x}: {exc}") from None


class Job:
    """One draw or dispatch: batches of threads of one kernel."""

    def __init__(
        self, name: str, kernel: list[Instruction], shared: SharedFunctions, batches: list[Callable[[], Threads | None]]
    ) -> None:
        self.name = name
        self.kernel = kernel
        self.shared = shared
        self.batches = batches
        self.next = 0
        self.current: Threads | None = None
        self.threads = 0

    @property
    def pixels(self) -> int:
        return self.shared.pixels_written

    def step(self, deadline: float, clock: Callable[[], float]) -> bool:
        """Run until the deadline (True: more to do) or the end (False)."""
        while True:
            if self.current is None:
                if self.next >= len(self.batches):
                    return False
                self.current = self.batches[self.next]()
                self.next += 1
                if self.current is None:
                    continue
                self.threads += self.current.count
            try:
                more = self.current.run(deadline, clock)
            except EuError as exc:
                raise RenderRefused(f"{self.name}: {exc}\n{_disassembly(self.kernel, exc.offset)}") from None
            if more:
                return True
            self.current = None
            if clock() >= deadline:
                return self.next < len(self.batches)


@dataclass
class _Rect:
    x0: int
    y0: int
    x1: int
    y1: int


class Pipeline:
    """One context's 3D/media state and the jobs its commands start."""

    def __init__(self, space: AddressSpace, gen: int) -> None:
        self.space = space
        self.gen = gen
        self.state = RenderState(gen)

    def _dword(self, address: int) -> int:
        return int(struct.unpack("<I", read(self.space, address, 4))[0])

    def _dwords(self, address: int, count: int) -> list[int]:
        return list(struct.unpack(f"<{count}I", read(self.space, address, 4 * count)))

    def command(self, dw: Sequence[int]) -> Job | None:
        key = dw[0] >> 16
        st = self.state
        if key == MEDIA_CURBE_LOAD:
            length = dw[2] & 0x1FFFF
            bad = length > MAX_CURBE
            st.note("MEDIA_CURBE_LOAD", f"{length} bytes of constants (at most {MAX_CURBE})" if bad else None)
            st.curbe = b"" if bad else read(self.space, st.dynamic_base + dw[3], length)
            return None
        if key == MEDIA_INTERFACE_DESCRIPTOR_LOAD:
            length = dw[2] & 0x1FFFF
            bad = bool(length % 32 or length // 32 > MAX_DESCRIPTORS)
            st.note("MEDIA_INTERFACE_DESCRIPTOR_LOAD", f"{length} bytes of descriptors" if bad else None)
            data = [] if bad else self._dwords(st.dynamic_base + dw[3], length // 4)
            st.descriptors = [data[k : k + 8] for k in range(0, len(data), 8)]
            return None
        if key == PRIMITIVE:
            return self._primitive(dw)
        if key == MEDIA_OBJECT:
            return self._media_object(dw)
        if key == GPGPU_WALKER:
            return self._walker(dw)
        apply(st, dw)
        return None

    # --- binding tables and samplers ------------------------------------------------------

    def _shared(self, binding_table: int, samplers: int, what: str) -> SharedFunctions:
        surfaces: dict[int, Surface] = {}
        sampler_cache: dict[int, Sampler] = {}
        st = self.state

        def surface(index: int) -> Surface:
            s = surfaces.get(index)
            if s is None:
                entry = self._dword(st.surface_base + binding_table + 4 * index)
                dws = self._dwords(st.surface_base + (entry & ~0x3F), 16)
                try:
                    s = surfaces[index] = Surface.from_state(dws, f"{what} binding table entry {index}")
                except RenderRefused as exc:
                    raise EuError(str(exc)) from None
            return s

        def sampler(index: int) -> Sampler:
            s = sampler_cache.get(index)
            if s is None:
                dws = self._dwords(st.dynamic_base + samplers + 16 * index, 4)
                s = sampler_cache[index] = Sampler.from_state(dws, f"{what} sampler {index}")
            return s

        return SharedFunctions(self.space, self.gen, surface, sampler)

    # --- 3D -------------------------------------------------------------------------------

    def _vertices(self, first: int, count: int) -> F32:
        """(count, slots, 4) VUE contents of each vertex, from the vertex elements."""
        st = self.state
        out = np.zeros((count, max(1, len(st.elements)), 4), dtype=np.float32)
        for e, el in enumerate(st.elements):
            vb = st.vertex_buffers.get(el.buffer)
            if vb is None:
                raise RenderRefused(f"vertex element {e} reads vertex buffer {el.buffer}, which is not set")
            fmt = _VF_FORMATS.get(el.format)
            if fmt is None and any(c == _STORE_SRC for c in el.controls):
                raise RenderRefused(f"vertex element {e}: format {el.format:#x} is not modelled")
            code, n = fmt if fmt is not None else ("f", 0)
            if _STORE_SRC not in el.controls:
                n = 0  # nothing of the buffer is read
            size = struct.calcsize(f"<{n}{code}")
            for v in range(count):
                src: tuple[float, ...] = ()
                if n:
                    off = (first + v) * vb.pitch + el.offset
                    if off + size > vb.size:
                        raise RenderRefused(f"vertex {first + v} element {e} reads past its vertex buffer")
                    src = struct.unpack(f"<{n}{code}", read(self.space, vb.address + off, size))
                for c, ctl in enumerate(el.controls):
                    if ctl == _STORE_SRC:
                        out[v, e, c] = src[c] if c < len(src) else (1.0 if c == 3 else 0.0)
                    elif ctl == _STORE_0:
                        out[v, e, c] = 0.0
                    elif ctl == _STORE_1_FLT:
                        out[v, e, c] = 1.0
                    elif ctl == _STORE_1_INT:
                        out[v, e, c] = np.frombuffer(struct.pack("<I", 1), dtype=np.float32)[0]
                    elif ctl != 0:
                        raise RenderRefused(f"vertex element {e}: component control {ctl} is not modelled")
        return out

    def _primitive(self, dw: Sequence[int]) -> Job | None:
        st = self.state
        if st.pipeline != PIPE_3D:
            raise RenderRefused("3DPRIMITIVE while the media/GPGPU pipeline is selected")
        if dw[0] >> 8 & 1 or dw[0] >> 10 & 1:
            raise RenderRefused("3DPRIMITIVE: indirect or predicated draws are not modelled")
        if dw[1] >> 8 & 1:
            raise RenderRefused("3DPRIMITIVE: indexed draws are not modelled")
        count, first, instances = dw[2], dw[3], dw[4]
        if count == 0 or instances == 0:
            return None  # nothing to draw
        if not st.ps_valid or not st.ps_dispatch & 7:
            return None  # no pixel shader runs: nothing the device models is written
        if st.topology != RECTLIST:
            raise RenderRefused(f"3DPRIMITIVE: topology {st.topology:#x} is not modelled (RECTLIST)")
        if instances > 1:
            raise RenderRefused("3DPRIMITIVE: more than one instance is not modelled")
        st.check(
            [
                "vertex shader",
                "geometry shader",
                "hull shader",
                "domain shader",
                "tessellator",
                "stream output",
                "viewport transform",
                "clipping",
                "scissor",
                "depth and stencil tests",
                "blending",
                "push constants",
                "3DSTATE_PS_EXTRA",
                "attribute swizzles",
                "multisampling",
                "instancing",
                "scratch space for the pixel shader",
                "STATE_BASE_ADDRESS",
                "PIPELINE_SELECT",
                "3DSTATE_VERTEX_BUFFERS",
                "3DSTATE_VERTEX_ELEMENTS",
                *[n for n in st.unmodelled if n.startswith("command ")],
            ],
            "a RECTLIST draw",
        )
        if count % 3 or count > 3 * 1024:
            raise RenderRefused(f"3DPRIMITIVE: {count} vertices is not a list of rectangles (at most 1024)")
        if st.barycentric & ~0x3F:
            raise RenderRefused("unmodelled barycentric modes")
        simd, ksp, grf = self._ps_kernel()
        kernel = load_kernel(self.space, st.instruction_base + ksp, self.gen, "the pixel shader")
        shared = self._shared(st.ps_binding_table, st.ps_samplers, "the pixel shader")
        vue = self._vertices(first, count)
        slots = vue.shape[1]
        batches: list[Callable[[], Threads | None]] = []
        for r in range(count // 3):
            verts = vue[3 * r : 3 * r + 3]
            if slots < 2:
                raise RenderRefused("the vertices have no position (VUE slot 1)")
            attrs = []
            for k in range(st.sbe_outputs):
                slot = 2 * st.sbe_read_offset + k
                attrs.append(verts[:, slot, :] if slot < slots else np.zeros((3, 4), dtype=np.float32))
            batches.extend(self._rect_batches(kernel, shared, simd, grf, verts[:, 1, :2], attrs))
        return Job("the pixel shader", kernel, shared, batches)

    def _ps_kernel(self) -> tuple[int, int, int]:
        st = self.state
        d = st.ps_dispatch
        if d & 4:
            raise RenderRefused("3DSTATE_PS: 32-pixel dispatch is not modelled")
        if d == 1:
            return 8, st.ps_kernels[0], st.ps_grf_starts[0]
        if d == 2:
            return 16, st.ps_kernels[0], st.ps_grf_starts[0]
        if d == 3:
            return 16, st.ps_kernels[2], st.ps_grf_starts[2]
        raise RenderRefused("3DSTATE_PS enables no dispatch width")

    def _rect_batches(
        self,
        kernel: list[Instruction],
        shared: SharedFunctions,
        simd: int,
        grf_start: int,
        pos: F32,
        attrs: list[F32],
    ) -> list[Callable[[], Threads | None]]:
        st = self.state
        xs, ys = sorted({float(p) for p in pos[:, 0]}), sorted({float(p) for p in pos[:, 1]})
        v0, v1, v2 = (pos[i].astype(np.float64) for i in range(3))
        det = (v1[0] - v0[0]) * (v2[1] - v0[1]) - (v2[0] - v0[0]) * (v1[1] - v0[1])
        if det == 0 or len(xs) != 2 or len(ys) != 2:
            if det == 0:
                return []
            raise RenderRefused("a RECTLIST rectangle that is not axis-aligned")
        ox, oy = st.drawing_rect[4], st.drawing_rect[5]
        # Pixel centres inside [min, max): the first covered column is ceil(min - 0.5).
        x0 = max(int(np.ceil(xs[0] + ox - 0.5)), st.drawing_rect[0])
        x1 = min(int(np.ceil(xs[1] + ox - 0.5)), st.drawing_rect[2] + 1)
        y0 = max(int(np.ceil(ys[0] + oy - 0.5)), st.drawing_rect[1])
        y1 = min(int(np.ceil(ys[1] + oy - 0.5)), st.drawing_rect[3] + 1)
        if x0 >= x1 or y0 >= y1:
            return []
        rect = _Rect(x0, y0, x1, y1)
        bw = simd // 2  # a thread covers bw x 2 pixels: bw/2 subspans of 2x2
        bx = np.arange(x0 & ~1, x1, bw, dtype=np.int64)
        by = np.arange(y0 & ~1, y1, 2, dtype=np.int64)
        blocks = np.stack(np.meshgrid(bx, by, indexing="xy"), axis=-1).reshape(-1, 2)
        per_batch = max(1, BATCH_LANES // simd)
        setup = []
        for a in attrs:
            a64 = a.astype(np.float64)
            setup.append(np.stack([a64[1] - a64[0], a64[2] - a64[0], np.zeros(4), a64[0]], axis=1).astype(np.float32))
        tri = (v0 - (ox, oy), v1 - (ox, oy), v2 - (ox, oy), det)

        def make(chunk: I64) -> Callable[[], Threads | None]:
            return lambda: self._ps_batch(kernel, shared, simd, grf_start, chunk, rect, tri, setup)

        return [make(blocks[k : k + per_batch]) for k in range(0, len(blocks), per_batch)]

    def _ps_batch(
        self,
        kernel: list[Instruction],
        shared: SharedFunctions,
        simd: int,
        grf_start: int,
        blocks: I64,
        rect: _Rect,
        tri: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], float],
        setup: list[F32],
    ) -> Threads | None:
        st = self.state
        lane = np.arange(simd)
        px = blocks[:, 0:1] + 2 * (lane // 4) + (lane & 1)
        py = blocks[:, 1:2] + ((lane >> 1) & 1)
        cover = (px >= rect.x0) & (px < rect.x1) & (py >= rect.y0) & (py < rect.y1)
        keep = cover.any(axis=1)
        if not keep.any():
            return None
        px, py, cover, blocks = px[keep], py[keep], cover[keep], blocks[keep]
        count = len(px)
        t = Threads(kernel, count, shared)
        dwords = t.grf.view("<u4")
        # g1: the subspans' upper-left pixels and the pixel mask
        for s in range(simd // 4):
            dwords[:, 8 + 2 + s] = (py[:, 4 * s] << 16 | px[:, 4 * s]).astype(np.uint32)
        dwords[:, 8 + 7] = (cover * (1 << lane)).sum(axis=1).astype(np.uint32)
        # barycentrics of the pixel centres, per enabled mode (all equal without multisampling)
        v0, v1, v2, det = tri
        cx, cy = px + 0.5 - v0[0], py + 0.5 - v0[1]
        b1 = ((cx * (v2[1] - v0[1]) - (v2[0] - v0[0]) * cy) / det).astype(np.float32)
        b2 = (((v1[0] - v0[0]) * cy - cx * (v1[1] - v0[1])) / det).astype(np.float32)
        floats = t.grf.view("<f4")
        reg = 2
        for _mode in range(bin(st.barycentric).count("1")):
            for half in range(simd // 8):
                sl = slice(8 * half, 8 * half + 8)
                floats[:, reg * 8 : reg * 8 + 8] = b1[:, sl]
                floats[:, reg * 8 + 8 : reg * 8 + 16] = b2[:, sl]
                reg += 2
        if setup and grf_start < reg:
            raise RenderRefused(f"3DSTATE_PS: setup data at g{grf_start} overlaps the payload (to g{reg - 1})")
        for k, coef in enumerate(setup):
            base = (grf_start + 2 * k) * 8
            if base + 16 > 1024:
                raise RenderRefused("the setup data runs past g127")
            floats[:, base : base + 16] = coef.reshape(-1)
        t.dispatch[:, :simd] = cover
        t.dispatch[:, simd:] = False
        shared.pixels = (px, py)
        shared.coverage = cover
        return t

    # --- media and GPGPU -----------------------------------------------------------------

    def _descriptor(self, index: int, what: str) -> list[int]:
        st = self.state
        if index >= len(st.descriptors):
            raise RenderRefused(f"{what}: interface descriptor {index} was not loaded")
        return st.descriptors[index]

    def _curbe_regs(self, desc: list[int], thread: int) -> bytes:
        """The constant data a thread starts with: cross-thread then its own part."""
        st = self.state
        per_thread, offset = desc[5] >> 16 & 0xFFFF, desc[5] & 0xFFFF
        cross = desc[7] & 0xFF if self.gen >= 8 else 0
        start = offset * 32
        data = st.curbe[start : start + cross * 32]
        own = start + cross * 32 + thread * per_thread * 32
        data += st.curbe[own : own + per_thread * 32]
        need = (cross + per_thread) * 32
        return data + bytes(need - len(data))

    def _media_kernel(self, desc: list[int], what: str) -> tuple[list[Instruction], SharedFunctions]:
        st = self.state
        st.check(
            [
                "media scratch space",
                "MEDIA_CURBE_LOAD",
                "MEDIA_INTERFACE_DESCRIPTOR_LOAD",
                "STATE_BASE_ADDRESS",
                "PIPELINE_SELECT",
                *[n for n in st.unmodelled if n.startswith("command ")],
            ],
            what,
        )
        ksp = (desc[0] & ~0x3F) | (desc[1] & 0xFFFF) << 32
        kernel = load_kernel(self.space, st.instruction_base + ksp, self.gen, f"the {what} kernel")
        return kernel, self._shared(desc[4] & 0xFFE0, desc[3] & ~0x1F, what)

    def _media_object(self, dw: Sequence[int]) -> Job:
        st = self.state
        if st.pipeline != PIPE_MEDIA:
            raise RenderRefused("MEDIA_OBJECT while the media pipeline is not selected")
        if dw[2] & 0x1FFFF:
            raise RenderRefused("MEDIA_OBJECT: indirect data is not modelled")
        desc = self._descriptor(dw[1] & 0x3F, "MEDIA_OBJECT")
        kernel, shared = self._media_kernel(desc, "MEDIA_OBJECT")
        constants = self._curbe_regs(desc, 0)
        inline = b"".join(struct.pack("<I", d) for d in dw[6:])

        def batch() -> Threads:
            t = Threads(kernel, 1, shared)
            payload = constants + inline
            if 32 + len(payload) > 4096:
                raise RenderRefused("MEDIA_OBJECT: the payload runs past g127")
            t.grf[0, 32 : 32 + len(payload)] = np.frombuffer(payload, dtype=np.uint8)
            return t

        return Job("MEDIA_OBJECT", kernel, shared, [batch])

    def _walker(self, dw: Sequence[int]) -> Job:
        st = self.state
        if st.pipeline != PIPE_GPGPU:
            raise RenderRefused("GPGPU_WALKER while the GPGPU pipeline is not selected")
        if len(dw) != 15:
            raise RenderRefused(f"GPGPU_WALKER of {len(dw)} dwords (GEN8/GEN9 have 15)")
        if dw[0] >> 10 & 1 or dw[0] >> 8 & 1:
            raise RenderRefused("GPGPU_WALKER: indirect or predicated dispatch is not modelled")
        if dw[2]:
            raise RenderRefused("GPGPU_WALKER: indirect data is not modelled")
        desc = self._descriptor(dw[1] & 0x3F, "GPGPU_WALKER")
        simd_code = dw[4] >> 30 & 3
        if simd_code == 2:
            raise RenderRefused("GPGPU_WALKER: SIMD32 is not modelled")
        simd = 8 if simd_code == 0 else 16
        tw, th, td = (dw[4] & 0x3F) + 1, (dw[4] >> 8 & 0x3F) + 1, (dw[4] >> 16 & 0x3F) + 1
        gx0, gx1 = dw[5], dw[7]
        gy0, gy1 = dw[8], dw[10]
        gz0, gz1 = dw[11], dw[12]
        right, bottom = dw[13], dw[14]
        per_group = tw * th * td
        groups = max(0, gx1 - gx0) * max(0, gy1 - gy0) * max(0, gz1 - gz0)
        if groups * per_group > MAX_THREADS:
            raise RenderRefused(f"GPGPU_WALKER of {groups * per_group} threads")
        kernel, shared = self._media_kernel(desc, "GPGPU_WALKER")
        nx, ny = max(0, gx1 - gx0), max(0, gy1 - gy0)
        total = groups * per_group
        constants = [np.frombuffer(self._curbe_regs(desc, t), dtype=np.uint8) for t in range(per_group)]
        per_batch = max(1, BATCH_LANES // simd)
        lane_bits = np.arange(32)

        def make(first: int) -> Callable[[], Threads]:
            def batch() -> Threads:
                idx = np.arange(first, min(first + per_batch, total), dtype=np.int64)
                ti, g = idx % per_group, idx // per_group
                t = Threads(kernel, len(idx), shared)
                d = t.grf.view("<u4")
                d[:, 1] = gx0 + g % nx
                d[:, 6] = gy0 + g // nx % ny
                d[:, 7] = gz0 + g // (nx * ny)
                for k in range(per_group):
                    c = constants[k]
                    t.grf[ti == k, 32 : 32 + len(c)] = c
                mask = np.full(len(idx), (1 << simd) - 1, dtype=np.int64)
                mask = np.where(ti % tw == tw - 1, mask & right, mask)
                mask = np.where(ti // tw % th == th - 1, mask & bottom, mask)
                t.dispatch[:] = (mask[:, None] >> lane_bits) & 1 == 1
                return t

            return batch

        return Job("GPGPU_WALKER", kernel, shared, [make(k) for k in range(0, total, per_batch)])
