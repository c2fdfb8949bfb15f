"""The Intel GEN (Broadwell/Skylake class) vGPU plugin for devmodel."""

from __future__ import annotations

from typing import Any

from devmodel.device.plugin import PluginInfo

from .device import GenVgpu
from .graphics_memory import DEFAULT_APERTURE_SIZE, DEFAULT_HIDDEN_SIZE
from .platform import Platform

__all__ = ["GenVgpu", "Platform", "plugin"]


def _create(
    platform: str = "bdw",
    aperture_size: int = DEFAULT_APERTURE_SIZE,
    hidden_size: int = DEFAULT_HIDDEN_SIZE,
    **_: Any,
) -> GenVgpu:
    """``aperture_size`` (BAR2, a power of two) and ``hidden_size`` (the non-mappable slice of
    graphics memory after it) are in bytes; together at most 4 GiB."""
    return GenVgpu(Platform(platform), aperture_size, hidden_size)


plugin = PluginInfo(name="gen_vgpu", create=_create, description="Intel GEN8/GEN9 vGPU (GVT-g style)")
