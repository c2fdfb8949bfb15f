"""Pipe CRC (beyond GVT-g, which has none): what PIPE_CRC_RES_1 reports at each vblank while
PIPE_CRC_CTL is enabled, so that i915's debugfs ``crtc-N/crc`` and IGT's pipe CRC compare
pictures.

The value is not real hardware's polynomial over its internal pixel stream: it is the CRC-32
of zlib (the IEEE 802.3 polynomial 0x04C11DB7, reflected) over the source's picture as the host
decodes it: rows top to bottom of XRGB8888 pixels, little-endian, with the X byte zeroed (bits
a plane does not scan out must not change the CRC). Equal pictures give equal values whatever
the framebuffers' formats, tilings and addresses; any pixel that differs changes it.

Sources (i915 6.1 ``ivb_pipe_crc_ctl_reg``, ``skl_pipe_crc_ctl_reg``): a plane alone on black
at the pipe's source size, or the pipe (every plane and the cursor composed). BDW's sprite is
not decoded, so its source is a black picture.

A pipe source larger than MAX_PIXELS is not decoded and reports 0: the CRC runs at every vblank
inside the frame clock's processing, and a guest's PIPESRC can ask for 8192x4096 (128 MiB a
frame); real modes, up to 4096x2304, stay below it.
"""

from __future__ import annotations

import zlib

from ..mmio import display_regs as r
from ..platform import Platform
from .decode import FastPlanes, PageOf, decode_pipe
from .display import Display

__all__ = ["MAX_PIXELS", "pipe_crc", "source_layers"]

# SKL's source field (30:28) -> the plane (0-based) it selects; DMUX is the whole pipe.
_SKL_PLANE_OF_SOURCE = {0: 0, 2: 1, 6: 2, 7: 3, 5: 4, 3: 5, 1: 6}
MAX_PIXELS = 4096 * 2304


def source_layers(platform: Platform, ctl: int, planes: int) -> int | None:
    """The layers (a bit per plane of the pipe, the cursor last) PIPE_CRC_CTL's source selects,
    None for the whole pipe. ``planes`` counts the pipe's planes without the cursor."""
    if platform is Platform.BDW:
        source = (ctl & r.PIPE_CRC_SOURCE_MASK_IVB) >> r.PIPE_CRC_SOURCE_SHIFT_IVB
        if source == r.PIPE_CRC_SOURCE_PRIMARY_IVB:
            return 1
        if source == r.PIPE_CRC_SOURCE_SPRITE_IVB:
            return 0
        return None
    source = (ctl & r.PIPE_CRC_SOURCE_MASK_SKL) >> r.PIPE_CRC_SOURCE_SHIFT_SKL
    if source == r.PIPE_CRC_SOURCE_DMUX_SKL:
        return None
    plane = _SKL_PLANE_OF_SOURCE[source]
    return 1 << plane if plane < planes else 0


def pipe_crc(display: Display, page_of: PageOf, pipe: int, ctl: int, fast: FastPlanes | None = None) -> int:
    """The CRC of pipe ``pipe``'s picture from the source PIPE_CRC_CTL ``ctl`` selects."""
    src = display.rf.get(r.pipe_reg(r.PIPESRC, pipe))
    if ((src >> 16) + 1) * ((src & 0xFFFF) + 1) > MAX_PIXELS:
        return 0
    layers = source_layers(display.platform, ctl, len(display.pipes[pipe].planes) - 1)
    frame = decode_pipe(display, page_of, pipe, layers, fast)
    pixels = frame.pixels
    pixels[3::4] = bytes(len(pixels) // 4)
    return zlib.crc32(pixels)
