"""The Intel GEN (Broadwell/Skylake class) vGPU plugin for devmodel."""

from __future__ import annotations

from typing import Any

from devmodel.device.plugin import PluginInfo

from .device import GenVgpu
from .platform import Platform

__all__ = ["GenVgpu", "Platform", "plugin"]


def _create(platform: str = "bdw", **_: Any) -> GenVgpu:
    return GenVgpu(Platform(platform))


plugin = PluginInfo(name="gen_vgpu", create=_create, description="Intel GEN8/GEN9 vGPU (GVT-g style)")
