"""The vGPU's display (contract §6): one virtual DisplayPort monitor, its VBT in the expansion
ROM, the registers i915 modesets with, the frame clock, and the host's decode of the screen.

``DisplayOptions`` come from the command line; ``build_display`` makes what the PCI config
space needs before the device exists (the ROM), and ``DisplayParts.make`` the display part
whose handlers device.py passes to the register table's ``populate`` with the other parts'
(the rows are in mmio/display_regs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from devmodel.device.region import Region, RegionFlags
from devmodel.device.tasks import TaskQueue
from devmodel.errors import OutOfRange

from ..interrupts import Interrupts
from ..mmio.gt import GtRegisters
from ..platform import Platform, PlatformInfo
from .crc import pipe_crc
from .decode import FastPlanes, PageOf
from .display import Display, DisplayConfig
from .edid import make_edid
from .monitor import Monitor
from .vbt import make_rom, make_vbt

__all__ = ["DisplayOptions", "DisplayParts", "RomRegion", "build_display", "Display", "ROM_REGION"]

ROM_REGION = 6
VENDOR_INTEL = 0x8086
# The monitor's DVO port and AUX channel in the VBT: DP on DDI B (BDW), DDI D (SKL).
_VBT_CHILD = {Platform.BDW: (7, 0x10), Platform.SKL: (9, 0x30)}

# pcode commands the display's bring-up sends (i915 6.1 intel_cdclk.c, skl_watermark.c).
SKL_PCODE_CDCLK_CONTROL = 0x07
SKL_CDCLK_READY_FOR_CHANGE = 0x1
GEN9_PCODE_READ_MEM_LATENCY = 0x06
GEN9_PCODE_SAGV_CONTROL = 0x21
GEN9_SAGV_DISABLE = 0x0
GEN9_SAGV_IS_DISABLED = 0x1
# Memory latencies in µs, one byte per watermark level: levels 0-3, then 4-7.
SKL_MEM_LATENCY = (0x20100802, 0x80604030)


@dataclass(frozen=True)
class DisplayOptions:
    mode: str = "dp"  # "dp": one DisplayPort monitor; "none": headless, the display fused off
    edid: bytes | None = None  # None: the generated 1024x768 EDID
    vbt: bool = True  # the VBT in the expansion ROM; without it i915 uses its defaults


class RomRegion:
    """The expansion ROM: read-only bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, count: int) -> bytes:
        return self.data[offset : offset + count]

    def write(self, offset: int, data: bytes) -> None:
        raise OutOfRange("the expansion ROM is read-only", region=ROM_REGION)


def pcode_reply(command: int, data0: int) -> int | None:
    """DATA0's answer to a display pcode command, or None to keep what the guest wrote."""
    if command == SKL_PCODE_CDCLK_CONTROL:
        return data0 | SKL_CDCLK_READY_FOR_CHANGE
    if command == GEN9_PCODE_SAGV_CONTROL and data0 == GEN9_SAGV_DISABLE:
        return GEN9_SAGV_IS_DISABLED
    if command == GEN9_PCODE_READ_MEM_LATENCY:
        return SKL_MEM_LATENCY[1 if data0 == 1 else 0]
    return None


@dataclass
class DisplayParts:
    info: PlatformInfo
    options: DisplayOptions
    rom: RomRegion | None

    @property
    def present(self) -> bool:
        return self.options.mode == "dp"

    def make(
        self,
        tasks: TaskQueue,
        interrupts: Interrupts,
        gt: GtRegisters,
        page_of: PageOf,
        fast: Callable[[], FastPlanes | None],
    ) -> Display | None:
        """The display part (None headless) with its pcode answers and its pipe CRC, which
        reads the planes through ``page_of`` (with the compiled drawing ``fast()`` returns once
        the accelerator is attached: a CRC decodes a frame at every vblank); the device passes
        its handlers to the table's ``populate`` and attaches it once the rows are in."""
        if not self.present:
            return None
        monitor = Monitor(self.options.edid or make_edid())
        gt.pcode_reply = pcode_reply
        display = Display(self.info.platform, tasks, interrupts, DisplayConfig(monitor))
        display.frame_crc = lambda pipe, ctl: pipe_crc(display, page_of, pipe, ctl, fast())
        return display

    def rom_region(self) -> Region | None:
        """Region 6, the expansion ROM with the VBT, when there is one."""
        if self.rom is None:
            return None
        return Region(ROM_REGION, len(self.rom.data), self.rom, flags=RegionFlags.READ)


def build_display(info: PlatformInfo, options: DisplayOptions) -> DisplayParts:
    if options.mode not in ("dp", "none"):
        raise ValueError(f"display mode {options.mode!r}: dp or none")
    rom = None
    if options.mode == "dp" and options.vbt:
        dvo_port, aux = _VBT_CHILD[info.platform]
        rom = RomRegion(make_rom(VENDOR_INTEL, info.device_id, make_vbt(dvo_port, aux)))
    return DisplayParts(info, options, rom)
