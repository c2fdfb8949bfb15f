"""The 3D and media state commands, parsed and checked into one plain record.

Each command is given as its dwords (the scanner has checked its length); :func:`apply`
updates :class:`RenderState` and returns the draw or dispatch a command starts, if any.
State the device does not model is recorded in ``RenderState.unmodelled`` with the reason,
and a draw or dispatch that would need it is refused (:class:`RenderRefused`) before anything
is drawn. The header's bits 31:16 name the command (3D client 3, pipeline, opcode,
sub-opcode); docs/render.md lists every command and what is read of it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .errors import RenderRefused

__all__ = [
    "COMMANDS",
    "GPGPU_WALKER",
    "MEDIA_OBJECT",
    "PRIMITIVE",
    "Element",
    "RenderState",
    "VertexBuffer",
    "apply",
]


PIPE_3D, PIPE_MEDIA, PIPE_GPGPU = 0, 1, 2
RECTLIST = 0x0F


@dataclass(frozen=True)
class VertexBuffer:
    address: int
    pitch: int
    size: int


@dataclass(frozen=True)
class Element:
    buffer: int
    format: int
    offset: int
    controls: tuple[int, int, int, int]


@dataclass
class RenderState:
    gen: int
    pipeline: int = PIPE_3D
    general_base: int = 0
    surface_base: int = 0
    dynamic_base: int = 0
    indirect_base: int = 0
    instruction_base: int = 0
    # 3D
    ps_binding_table: int = 0
    ps_samplers: int = 0
    blend_state: int | None = None
    vertex_buffers: dict[int, VertexBuffer] = field(default_factory=dict)
    elements: list[Element] = field(default_factory=list)
    topology: int = 0
    ps_kernels: tuple[int, int, int] = (0, 0, 0)
    ps_dispatch: int = 0  # bit 0 SIMD8, 1 SIMD16, 2 SIMD32
    ps_grf_start: int = 0  # setup data start for the kernel used
    ps_grf_starts: tuple[int, int, int] = (0, 0, 0)
    ps_valid: bool = False
    barycentric: int = 0  # 3DSTATE_WM bits 16:11
    sbe_outputs: int = 0
    sbe_read_offset: int = 0
    sbe_read_length: int = 0
    drawing_rect: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)
    # media / GPGPU
    curbe: bytes = b""
    descriptors: list[list[int]] = field(default_factory=list)
    vfe_curbe_regs: int = 0
    # what a draw or dispatch must not need: name -> reason
    unmodelled: dict[str, str] = field(default_factory=dict)

    def note(self, name: str, reason: str | None) -> None:
        if reason is None:
            self.unmodelled.pop(name, None)
        else:
            self.unmodelled[name] = reason

    def check(self, names: Sequence[str], what: str) -> None:
        for n in names:
            if n in self.unmodelled:
                raise RenderRefused(f"{what} needs {n}: {self.unmodelled[n]}")


Apply = Callable[[RenderState, Sequence[int]], None]


def _addr(lo: int, hi: int) -> int:
    return (lo & ~0xFFF) | (hi & 0xFFFF) << 32


def _pipeline_select(st: RenderState, dw: Sequence[int]) -> None:
    sel = dw[0] & 3
    if st.gen >= 9 and not dw[0] >> 8 & 3:
        return  # GEN9: the mask bits say which fields change; none selected
    if sel == 3:
        raise RenderRefused("PIPELINE_SELECT: reserved pipeline 3")
    st.pipeline = sel


def _state_base_address(st: RenderState, dw: Sequence[int]) -> None:
    want = 16 if st.gen == 8 else 19
    if len(dw) != want:
        raise RenderRefused(f"STATE_BASE_ADDRESS of {len(dw)} dwords, GEN{st.gen} has {want}")
    pairs = {"general_base": 1, "surface_base": 4, "dynamic_base": 6, "indirect_base": 8, "instruction_base": 10}
    for name, i in pairs.items():
        if dw[i] & 1:  # modify enable
            setattr(st, name, _addr(dw[i], dw[i + 1]))


def _vertex_buffers(st: RenderState, dw: Sequence[int]) -> None:
    if (len(dw) - 1) % 4:
        raise RenderRefused("3DSTATE_VERTEX_BUFFERS: not whole 4-dword entries")
    for k in range(1, len(dw), 4):
        index = dw[k] >> 26 & 0x3F
        if dw[k] >> 13 & 1:  # null vertex buffer
            st.vertex_buffers.pop(index, None)
            continue
        st.vertex_buffers[index] = VertexBuffer(dw[k + 1] | (dw[k + 2] & 0xFFFF) << 32, dw[k] & 0xFFF, dw[k + 3])


def _vertex_elements(st: RenderState, dw: Sequence[int]) -> None:
    if (len(dw) - 1) % 2:
        raise RenderRefused("3DSTATE_VERTEX_ELEMENTS: not whole 2-dword entries")
    elements = []
    for k in range(1, len(dw), 2):
        if not dw[k] >> 25 & 1:
            continue  # not valid
        ctl = dw[k + 1]
        elements.append(
            Element(
                dw[k] >> 26 & 0x3F,
                dw[k] >> 16 & 0x1FF,
                dw[k] & 0xFFF,
                (ctl >> 28 & 7, ctl >> 24 & 7, ctl >> 20 & 7, ctl >> 16 & 7),
            )
        )
    st.elements = elements


def _ps(st: RenderState, dw: Sequence[int]) -> None:
    ksp = tuple((dw[i] & ~0x3F) | (dw[i + 1] & 0xFFFF) << 32 for i in (1, 8, 10))
    st.ps_kernels = (ksp[0], ksp[1], ksp[2])
    st.ps_dispatch = dw[6] & 7
    st.ps_grf_starts = (dw[7] >> 16 & 0x7F, dw[7] >> 8 & 0x7F, dw[7] & 0x7F)
    st.note(
        "scratch space for the pixel shader", "per-thread scratch is not modelled" if dw[4] & ~0x3FF or dw[5] else None
    )


def _ps_extra(st: RenderState, dw: Sequence[int]) -> None:
    st.ps_valid = bool(dw[1] >> 31 & 1)
    extra = dw[1] & ~(1 << 31 | 1 << 8)
    st.note(
        "3DSTATE_PS_EXTRA", f"bits {extra:#x} (depth, kill, coverage or sample inputs) not modelled" if extra else None
    )


def _wm(st: RenderState, dw: Sequence[int]) -> None:
    st.barycentric = dw[1] >> 11 & 0x3F


def _sbe(st: RenderState, dw: Sequence[int]) -> None:
    d = dw[1]
    st.sbe_outputs = d >> 22 & 0x3F
    st.sbe_read_length = d >> 11 & 0x1F
    st.sbe_read_offset = d >> 5 & 0x3F
    st.note("attribute swizzles", None)
    if d >> 21 & 1:
        st.note("attribute swizzles", "3DSTATE_SBE enables attribute swizzling (checked at 3DSTATE_SBE_SWIZ)")


def _sbe_swiz(st: RenderState, dw: Sequence[int]) -> None:
    if any(dw[1:]):
        st.note("attribute swizzles", "3DSTATE_SBE_SWIZ: attribute swizzles and overrides are not modelled")
    elif "attribute swizzles" in st.unmodelled:
        st.note("attribute swizzles", None)  # all zero: identity


def _sf(st: RenderState, dw: Sequence[int]) -> None:
    st.note("viewport transform", "3DSTATE_SF enables the viewport transform, not modelled" if dw[1] >> 1 & 1 else None)


def _clip(st: RenderState, dw: Sequence[int]) -> None:
    st.note("clipping", "3DSTATE_CLIP enables clipping, not modelled" if dw[2] >> 31 & 1 else None)


def _raster(st: RenderState, dw: Sequence[int]) -> None:
    st.note("scissor", "3DSTATE_RASTER enables the scissor rectangle, not modelled" if dw[1] >> 1 & 1 else None)


def _wm_depth_stencil(st: RenderState, dw: Sequence[int]) -> None:
    st.note(
        "depth and stencil tests", f"3DSTATE_WM_DEPTH_STENCIL {dw[1]:#x}: tests are not modelled" if dw[1] else None
    )


def _ps_blend(st: RenderState, dw: Sequence[int]) -> None:
    bad = dw[1] & (1 << 31 | 1 << 29)  # alpha to coverage, colour buffer blend
    st.note("blending", f"3DSTATE_PS_BLEND {dw[1]:#x}: blending is not modelled" if bad else None)


def _constant_ps(st: RenderState, dw: Sequence[int]) -> None:
    st.note("push constants", "3DSTATE_CONSTANT_PS reads push constants, not modelled" if dw[1] or dw[2] else None)


def _stage(name: str, enable_dw: int, bit: int) -> Apply:
    def apply_(st: RenderState, dw: Sequence[int]) -> None:
        on = len(dw) > enable_dw and dw[enable_dw] >> bit & 1
        st.note(name, f"the {name} is enabled, not modelled" if on else None)

    return apply_


def _multisample(st: RenderState, dw: Sequence[int]) -> None:
    st.note("multisampling", "3DSTATE_MULTISAMPLE asks for samples, not modelled" if dw[1] >> 1 & 7 else None)


def _drawing_rect(st: RenderState, dw: Sequence[int]) -> None:
    st.drawing_rect = (dw[1] & 0xFFFF, dw[1] >> 16, dw[2] & 0xFFFF, dw[2] >> 16, dw[3] & 0xFFFF, dw[3] >> 16)


def _vf_instancing(st: RenderState, dw: Sequence[int]) -> None:
    st.note("instancing", "3DSTATE_VF_INSTANCING enables instancing, not modelled" if dw[1] >> 8 & 1 else None)


def _set(attr: str, index: int, mask: int) -> Apply:
    def apply_(st: RenderState, dw: Sequence[int]) -> None:
        setattr(st, attr, dw[index] & mask)

    return apply_


def _blend_pointers(st: RenderState, dw: Sequence[int]) -> None:
    st.blend_state = dw[1] & ~0x3F if dw[1] & 1 else st.blend_state


def _vfe(st: RenderState, dw: Sequence[int]) -> None:
    st.vfe_curbe_regs = dw[5] & 0xFFFF
    scratch = dw[1] & ~0x3FF or (len(dw) > 2 and dw[2])
    st.note("media scratch space", "MEDIA_VFE_STATE asks for scratch space, not modelled" if scratch else None)


def _nothing(st: RenderState, dw: Sequence[int]) -> None:
    """State with no effect on what the modelled pipelines compute (URB and push-constant
    allocation, viewports, statistics, the SIP, hierarchical depth, clear values...)."""


# Commands the device reads here; MEDIA_CURBE_LOAD, MEDIA_INTERFACE_DESCRIPTOR_LOAD, the draw
# and the dispatches need memory and are handled by the pipeline (pipeline.py).
COMMANDS: dict[int, tuple[str, Apply]] = {
    0x6904: ("PIPELINE_SELECT", _pipeline_select),
    0x6101: ("STATE_BASE_ADDRESS", _state_base_address),
    0x6102: ("STATE_SIP", _nothing),
    0x680B: ("3DSTATE_VF_STATISTICS", _nothing),
    0x7808: ("3DSTATE_VERTEX_BUFFERS", _vertex_buffers),
    0x7809: ("3DSTATE_VERTEX_ELEMENTS", _vertex_elements),
    0x780A: ("3DSTATE_INDEX_BUFFER", _nothing),
    0x780C: ("3DSTATE_VF", _nothing),
    0x784B: ("3DSTATE_VF_TOPOLOGY", _set("topology", 1, 0x3F)),
    0x7849: ("3DSTATE_VF_INSTANCING", _vf_instancing),
    0x784A: ("3DSTATE_VF_SGVS", _nothing),
    0x7820: ("3DSTATE_PS", _ps),
    0x784F: ("3DSTATE_PS_EXTRA", _ps_extra),
    0x784D: ("3DSTATE_PS_BLEND", _ps_blend),
    0x7814: ("3DSTATE_WM", _wm),
    0x7852: ("3DSTATE_WM_HZ_OP", _nothing),
    0x784E: ("3DSTATE_WM_DEPTH_STENCIL", _wm_depth_stencil),
    0x7856: ("3DSTATE_WM_CHROMAKEY", _nothing),
    0x781F: ("3DSTATE_SBE", _sbe),
    0x7851: ("3DSTATE_SBE_SWIZ", _sbe_swiz),
    0x7813: ("3DSTATE_SF", _sf),
    0x7812: ("3DSTATE_CLIP", _clip),
    0x7850: ("3DSTATE_RASTER", _raster),
    0x7817: ("3DSTATE_CONSTANT_PS", _constant_ps),
    0x7815: ("3DSTATE_CONSTANT_VS", _nothing),
    0x7816: ("3DSTATE_CONSTANT_GS", _nothing),
    0x7819: ("3DSTATE_CONSTANT_HS", _nothing),
    0x781A: ("3DSTATE_CONSTANT_DS", _nothing),
    0x7810: ("3DSTATE_VS", _stage("vertex shader", 7, 0)),
    0x7811: ("3DSTATE_GS", _stage("geometry shader", 7, 0)),
    0x781B: ("3DSTATE_HS", _stage("hull shader", 1, 31)),
    0x781D: ("3DSTATE_DS", _stage("domain shader", 5, 0)),
    0x781C: ("3DSTATE_TE", _stage("tessellator", 1, 0)),
    0x781E: ("3DSTATE_STREAMOUT", _stage("stream output", 1, 31)),
    0x782A: ("3DSTATE_BINDING_TABLE_POINTERS_PS", _set("ps_binding_table", 1, 0xFFE0)),
    0x7826: ("3DSTATE_BINDING_TABLE_POINTERS_VS", _nothing),
    0x7827: ("3DSTATE_BINDING_TABLE_POINTERS_HS", _nothing),
    0x7828: ("3DSTATE_BINDING_TABLE_POINTERS_DS", _nothing),
    0x7829: ("3DSTATE_BINDING_TABLE_POINTERS_GS", _nothing),
    0x782F: ("3DSTATE_SAMPLER_STATE_POINTERS_PS", _set("ps_samplers", 1, 0xFFFFFFE0)),
    0x782B: ("3DSTATE_SAMPLER_STATE_POINTERS_VS", _nothing),
    0x782C: ("3DSTATE_SAMPLER_STATE_POINTERS_HS", _nothing),
    0x782D: ("3DSTATE_SAMPLER_STATE_POINTERS_DS", _nothing),
    0x782E: ("3DSTATE_SAMPLER_STATE_POINTERS_GS", _nothing),
    0x7824: ("3DSTATE_BLEND_STATE_POINTERS", _blend_pointers),
    0x780E: ("3DSTATE_CC_STATE_POINTERS", _nothing),
    0x7823: ("3DSTATE_VIEWPORT_STATE_POINTERS_CC", _nothing),
    0x7821: ("3DSTATE_VIEWPORT_STATE_POINTERS_SF_CLIP", _nothing),
    0x780F: ("3DSTATE_SCISSOR_STATE_POINTERS", _nothing),
    0x7830: ("3DSTATE_URB_VS", _nothing),
    0x7831: ("3DSTATE_URB_HS", _nothing),
    0x7832: ("3DSTATE_URB_DS", _nothing),
    0x7833: ("3DSTATE_URB_GS", _nothing),
    0x7912: ("3DSTATE_PUSH_CONSTANT_ALLOC_VS", _nothing),
    0x7913: ("3DSTATE_PUSH_CONSTANT_ALLOC_HS", _nothing),
    0x7914: ("3DSTATE_PUSH_CONSTANT_ALLOC_DS", _nothing),
    0x7915: ("3DSTATE_PUSH_CONSTANT_ALLOC_GS", _nothing),
    0x7916: ("3DSTATE_PUSH_CONSTANT_ALLOC_PS", _nothing),
    0x780D: ("3DSTATE_MULTISAMPLE", _multisample),
    0x7818: ("3DSTATE_SAMPLE_MASK", _nothing),
    0x7805: ("3DSTATE_DEPTH_BUFFER", _nothing),
    0x7807: ("3DSTATE_HIER_DEPTH_BUFFER", _nothing),
    0x7806: ("3DSTATE_STENCIL_BUFFER", _nothing),
    0x7804: ("3DSTATE_CLEAR_PARAMS", _nothing),
    0x7900: ("3DSTATE_DRAWING_RECTANGLE", _drawing_rect),
    0x7000: ("MEDIA_VFE_STATE", _vfe),
    0x7004: ("MEDIA_STATE_FLUSH", _nothing),
}

# Commands that need memory or start work (pipeline.py).
MEDIA_CURBE_LOAD = 0x7001
MEDIA_INTERFACE_DESCRIPTOR_LOAD = 0x7002
MEDIA_OBJECT = 0x7100
GPGPU_WALKER = 0x7105
PRIMITIVE = 0x7B00


def apply(st: RenderState, dw: Sequence[int]) -> str:
    """Apply one state command; returns its name. Unknown 3D/media commands are recorded as
    unmodelled state (the next draw or dispatch is refused)."""
    key = dw[0] >> 16
    entry = COMMANDS.get(key)
    if entry is None:
        name = f"command {dw[0] & 0xFFFF0000:#010x}"
        st.note(name, "a 3D/media command the device does not model")
        return name
    name, fn = entry
    try:
        fn(st, dw)
    except RenderRefused as exc:  # a state command never fails: the draw that needs it does
        st.note(name, str(exc))
    except IndexError:  # a guest's length field shorter than the command's fields
        st.note(name, f"{len(dw)} dwords: shorter than its fields")
    else:
        if name in st.unmodelled and name not in _RECORDS_ITSELF:
            st.note(name, None)
    return name


# Commands whose parser records its own reasons under its own name (cleared there).
_RECORDS_ITSELF = frozenset({"3DSTATE_PS_EXTRA"})
