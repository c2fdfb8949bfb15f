"""The Intel GEN (Broadwell/Skylake class) vGPU plugin for devmodel."""

from __future__ import annotations

from typing import Any

from devmodel.device.frames import DEFAULT_MAX_DEVICE_PAGES
from devmodel.device.plugin import PluginInfo

from .device import GenVgpu
from .display import DisplayOptions
from .display.edid import make_edid, validate_edid
from .engine.run import Watchdog
from .graphics_memory import DEFAULT_APERTURE_SIZE, DEFAULT_HIDDEN_SIZE
from .gtt.mm import DEFAULT_MAX_SHADOW_MMS
from .gtt.shadow import DEFAULT_MAX_SHADOW_PAGES
from .platform import Platform

__all__ = ["GenVgpu", "Platform", "plugin"]


def _create(
    platform: str = "bdw",
    aperture_size: int = DEFAULT_APERTURE_SIZE,
    hidden_size: int = DEFAULT_HIDDEN_SIZE,
    max_shadow_pages: int = DEFAULT_MAX_SHADOW_PAGES,
    max_device_pages: int = DEFAULT_MAX_DEVICE_PAGES,
    watchdog_seconds: float | None = None,
    max_shadow_mms: int = DEFAULT_MAX_SHADOW_MMS,
    display: str = "dp",
    edid: str | None = None,
    **_: Any,
) -> GenVgpu:
    """``display``: "dp" (one DisplayPort monitor, the default) or "none" (headless); ``edid``:
    its EDID, a mode name or a file. ``aperture_size`` (BAR2, a power of two) and
    ``hidden_size`` (the non-mappable slice of graphics memory after it) are in bytes;
    together at most 4 GiB. The bounds: shadow PPGTT tables, device-owned pages, the engine
    seconds a workload may run before it is hung, and shadow PPGTTs."""
    if max_shadow_mms < 1:
        raise ValueError(f"--max-shadow-mms must be at least 1, not {max_shadow_mms}")
    watchdog = Watchdog(engine_seconds=watchdog_seconds) if watchdog_seconds is not None else None
    options = DisplayOptions(display, _edid(edid))
    return GenVgpu(
        Platform(platform),
        aperture_size,
        hidden_size,
        watchdog,
        max_shadow_pages,
        max_device_pages,
        max_shadow_mms,
        options,
    )


def _edid(choice: str | None) -> bytes | None:
    """``--edid``: a mode name (1024x768, 1920x1080) or the path of an EDID file."""
    if choice is None:
        return None
    if "x" in choice and "/" not in choice and "." not in choice:
        return make_edid(choice)
    try:
        with open(choice, "rb") as f:
            return validate_edid(f.read())
    except OSError as exc:
        raise ValueError(f"cannot read the EDID file {choice}: {exc}") from exc


plugin = PluginInfo(name="gen_vgpu", create=_create, description="Intel GEN8/GEN9 vGPU (GVT-g style)")
