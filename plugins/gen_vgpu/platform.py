"""Per-platform data (BDW = GEN8, SKL = GEN9), chosen once when the vGPU is created."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .gtt.ops import GEN8_GMA_OPS, GEN8_PTE_OPS, GmaOps, PteOps

__all__ = ["Platform", "PlatformInfo", "PLATFORMS"]


class Platform(enum.Enum):
    BDW = "bdw"
    SKL = "skl"


@dataclass(frozen=True)
class PlatformInfo:
    platform: Platform
    gen: int
    device_id: int
    revision: int
    msi_offset: int
    pte_ops: PteOps
    gma_ops: GmaOps
    # GEN9 may use 64 KiB pages (IPS in a PDE); GEN8 has no such bit.
    has_ips: bool


PLATFORMS: dict[Platform, PlatformInfo] = {
    Platform.BDW: PlatformInfo(Platform.BDW, 8, 0x1616, 0x09, 0x90, GEN8_PTE_OPS, GEN8_GMA_OPS, False),
    Platform.SKL: PlatformInfo(Platform.SKL, 9, 0x1912, 0x06, 0xAC, GEN8_PTE_OPS, GEN8_GMA_OPS, True),
}
