"""The PVINFO page's rows (contract §2.1; i915's struct vgt_if at VGT_PVINFO_PAGE).

Every dword of the page is declared: the host's fields read as their value and ignore writes,
the guest's fields are plain storage, g2v_notify tells the device, and every unnamed dword
reads 0 and ignores writes.
"""

from __future__ import annotations

from ..graphics_memory import GraphicsMemory
from . import regs as r
from .row import RO, Kind, Row

__all__ = ["ROWS", "pvinfo_values"]

_HOST = "host field"

ROWS: tuple[Row, ...] = (
    Row("PVINFO magic_lo", r.PVINFO_MAGIC, reset=r.VGT_MAGIC & 0xFFFFFFFF, rw_mask=RO, note='"vGTv"'),
    Row("PVINFO magic_hi", r.PVINFO_MAGIC + 4, reset=r.VGT_MAGIC >> 32, rw_mask=RO, note='"GTvG"'),
    Row(
        "PVINFO version",
        r.PVINFO_VERSION_MAJOR,
        reset=r.VGT_VERSION_MAJOR | r.VGT_VERSION_MINOR << 16,
        rw_mask=RO,
        note="major u16, minor u16 (i915 reads each with readw)",
    ),
    Row("PVINFO vgt_id", r.PVINFO_VGT_ID, reset=r.VGT_ID, rw_mask=RO),
    Row("PVINFO vgt_caps", r.PVINFO_VGT_CAPS, reset=r.VGT_CAPS, rw_mask=RO, note="full PPGTT, HWSP emulation"),
    Row("PVINFO mappable_base", r.PVINFO_MAPPABLE_BASE, reset="mappable_base", rw_mask=RO, note=_HOST),
    Row("PVINFO mappable_size", r.PVINFO_MAPPABLE_SIZE, reset="mappable_size", rw_mask=RO, note=_HOST),
    Row("PVINFO hidden_base", r.PVINFO_HIDDEN_BASE, reset="hidden_base", rw_mask=RO, note=_HOST),
    Row("PVINFO hidden_size", r.PVINFO_HIDDEN_SIZE, reset="hidden_size", rw_mask=RO, note=_HOST),
    Row("PVINFO fence_num", r.PVINFO_FENCE_NUM, reset=r.FENCE_COUNT, rw_mask=RO),
    Row("PVINFO display_ready", r.PVINFO_DISPLAY_READY),
    Row("PVINFO g2v_notify", r.PVINFO_G2V_NOTIFY, handler="g2v_notify", note="PPGTT create/destroy"),
    Row("PVINFO cursor_x_hot", r.PVINFO_CURSOR_X_HOT),
    Row("PVINFO cursor_y_hot", r.PVINFO_CURSOR_Y_HOT),
    Row("PVINFO pdp{i}_lo", r.PVINFO_PDP, count=r.PVINFO_PDP_COUNT, stride=8),
    Row("PVINFO pdp{i}_hi", r.PVINFO_PDP + 4, count=r.PVINFO_PDP_COUNT, stride=8),
    Row("PVINFO execlist_context_descriptor_lo", r.PVINFO_EXECLIST_DESC_LO),
    Row("PVINFO execlist_context_descriptor_hi", r.PVINFO_EXECLIST_DESC_HI),
    Row("PVINFO reserved", r.PVINFO_BASE, size=r.PVINFO_SIZE, kind=Kind.FILL, rw_mask=RO),
)


def pvinfo_values(gmem: GraphicsMemory) -> dict[str, int]:
    """The PVINFO fields this vGPU's graphics-memory split decides (the rows' named resets)."""
    return {
        "mappable_base": gmem.mappable.start,
        "mappable_size": len(gmem.mappable),
        "hidden_base": gmem.hidden.start,
        "hidden_size": len(gmem.hidden),
    }
