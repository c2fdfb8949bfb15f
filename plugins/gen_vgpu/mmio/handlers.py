"""The vGPU's register file: which registers are more than plain storage."""

from __future__ import annotations

from collections.abc import Callable

from devmodel.device.registers import Register, RegisterFile

from ..graphics_memory import GraphicsMemory
from . import regs

__all__ = ["build_register_file", "pvinfo_values"]

_READ_ONLY = 0


def pvinfo_values(gmem: GraphicsMemory) -> dict[int, int]:
    """The host-written fields of the PVINFO page, dword by dword."""
    return {
        regs.PVINFO_MAGIC: regs.VGT_MAGIC & 0xFFFFFFFF,
        regs.PVINFO_MAGIC + 4: regs.VGT_MAGIC >> 32,
        regs.PVINFO_VERSION_MAJOR: regs.VGT_VERSION_MAJOR | regs.VGT_VERSION_MINOR << 16,
        regs.PVINFO_VGT_ID: regs.VGT_ID,
        regs.PVINFO_VGT_CAPS: regs.VGT_CAPS,
        regs.PVINFO_MAPPABLE_BASE: gmem.mappable.start,
        regs.PVINFO_MAPPABLE_SIZE: len(gmem.mappable),
        regs.PVINFO_HIDDEN_BASE: gmem.hidden.start,
        regs.PVINFO_HIDDEN_SIZE: len(gmem.hidden),
        regs.PVINFO_FENCE_NUM: regs.FENCE_COUNT,
    }


def build_register_file(gmem: GraphicsMemory, on_g2v_notify: Callable[[int], None]) -> RegisterFile:
    """``on_g2v_notify(value)`` runs after each guest write to g2v_notify (recorded first)."""
    rf = RegisterFile(regs.MMIO_SIZE)
    values = pvinfo_values(gmem)
    writable = set(regs.PVINFO_GUEST_WRITABLE)
    # Every dword of the PVINFO page is declared: the host fields and everything unnamed read
    # as their value (0) and ignore writes; the guest's fields are plain storage.
    for off in range(regs.PVINFO_BASE, regs.PVINFO_BASE + regs.PVINFO_SIZE, 4):
        name = f"PVINFO+{off - regs.PVINFO_BASE:#x}"
        if off == regs.PVINFO_G2V_NOTIFY:
            rf.add(Register(off, "PVINFO g2v_notify", write=lambda _off, _old, new: on_g2v_notify(new)))
        elif off in writable:
            rf.add(Register(off, name))
        else:
            rf.add(Register(off, name, reset=values.get(off, 0), rw_mask=_READ_ONLY))
    # The flush only orders GGTT updates on hardware; here writes act at once.
    rf.add(Register(regs.GFX_FLSH_CNTL, "GFX_FLSH_CNTL", rw_mask=_READ_ONLY))
    return rf
