"""The vGPU's register file: which registers are more than plain storage."""

from __future__ import annotations

from devmodel.device.registers import Register, RegisterFile

from . import regs

__all__ = ["build_register_file", "pvinfo_values"]

_READ_ONLY = 0


def pvinfo_values(aperture_size: int, vgt_id: int = 0, fence_count: int = 4) -> dict[int, int]:
    """The host-written (read-only) half of the PVINFO page, dword by dword."""
    hidden_base = aperture_size
    hidden_size = (4 << 30) - aperture_size
    return {
        regs.PVINFO_MAGIC: regs.VGT_MAGIC & 0xFFFFFFFF,
        regs.PVINFO_MAGIC + 4: regs.VGT_MAGIC >> 32,
        regs.PVINFO_VERSION_MAJOR: regs.VGT_VERSION_MAJOR | regs.VGT_VERSION_MINOR << 16,
        regs.PVINFO_VGT_ID: vgt_id,
        regs.PVINFO_VGT_CAPS: regs.VGT_CAPS_FULL_PPGTT,
        regs.PVINFO_AVAIL_RS + 0x0: 0,  # mappable (aperture) base
        regs.PVINFO_AVAIL_RS + 0x4: aperture_size,
        regs.PVINFO_AVAIL_RS + 0x8: hidden_base,
        regs.PVINFO_AVAIL_RS + 0xC: hidden_size & 0xFFFFFFFF,
        regs.PVINFO_AVAIL_RS + 0x10: fence_count,
    }


def build_register_file(aperture_size: int) -> RegisterFile:
    rf = RegisterFile(regs.MMIO_SIZE)
    values = pvinfo_values(aperture_size)
    # The whole host half of the PVINFO page is read-only, reserved dwords included.
    for off in range(regs.PVINFO_BASE, regs.PVINFO_GUEST_HALF, 4):
        rf.add(Register(off, f"PVINFO+{off - regs.PVINFO_BASE:#x}", reset=values.get(off, 0), rw_mask=_READ_ONLY))
    # The flush only orders GGTT updates on hardware; here writes act at once.
    rf.add(Register(regs.GFX_FLSH_CNTL, "GFX_FLSH_CNTL", rw_mask=_READ_ONLY))
    return rf
