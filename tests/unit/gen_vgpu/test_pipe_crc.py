"""Pipe CRC (display/crc.py): PIPE_CRC_CTL/RES_1 and the CRC-done interrupt as i915 6.1 uses
them on gen8+ (``hsw_pipe_crc_irq_handler`` reads RES_1 at each CRC-done), computed from the
decoded picture: equal pictures give equal CRCs whatever their format, tiling and address;
different ones do not. Each test runs with the Python decode and with the compiled drawing the
device uses once the accelerator is attached: both must give the same CRCs."""

from __future__ import annotations

import zlib

import pytest

from devmodel import accel as accel_module
from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.testing import GuestMemory
from gen_vgpu import GenVgpu, Platform
from gen_vgpu.display.crc import source_layers
from gen_vgpu.display.decode import tiled_offset
from gen_vgpu.mmio import display_regs as r

from .test_display import MASTER, Clock, light_pipe_a

GGTT = 8 << 20
W, H = 128, 32
STRIDE = 512  # one X tile wide
PAGES_PER_FB = STRIDE * H // 4096
CURSOR_GMA = 0x400000
BANK = r.DE_PIPE_BANK


def pattern(x: int, y: int) -> tuple[int, int, int]:
    return (x * 2) & 0xFF, (y * 8) & 0xFF, (x ^ y) & 0xFF


class Rig:
    """A device with guest memory behind graphics pages, pipe A lit at W x H."""

    def __init__(self, platform: Platform, compiled: bool) -> None:
        self.dev = GenVgpu(platform)
        if compiled:
            accel = accel_module.load(True)
            assert accel is not None  # tests/conftest.py fails the run when it is missing
            self.dev.region_accel(accel)
            assert self.dev.screen_decode is not None
        self.mem = GuestMemory(16 << 20)
        self.dev.dma.add(0, self.mem.size, PROT_READ | PROT_WRITE, self.mem.dup_fd(), 0)
        self.next_page = 16
        self.clock: Clock = light_pipe_a(self.dev)
        self.rf = self.dev.registers
        self.rf.write32(r.PIPESRC, (W - 1) << 16 | (H - 1))
        self.period = 1344 * 806 / 65e6

    def map(self, gma: int, pages: int) -> int:
        """Graphics pages at ``gma`` onto fresh guest frames; the first frame's address."""
        first = self.next_page
        for i in range(pages):
            self.dev.region_write(0, GGTT + 8 * ((gma >> 12) + i), ((first + i) << 12 | 1).to_bytes(8, "little"))
        self.next_page += pages
        return first << 12

    def framebuffer(self, gma: int, tiling: str, fmt: str, differ: bool = False, x_byte: int = 0) -> None:
        base = self.map(gma, PAGES_PER_FB)
        for y in range(H):
            for x in range(W):
                red, green, blue = pattern(x, y)
                if differ and (x, y) == (77, 19):
                    blue ^= 1
                if fmt == "xrgb8888":
                    px = bytes((blue, green, red, x_byte))
                else:  # xbgr8888
                    px = bytes((red, green, blue, x_byte))
                self.mem.write(base + tiled_offset(tiling, STRIDE, 4 * x, y), px)

    def show(self, gma: int, tiling: str, fmt: str) -> None:
        """A flip to the framebuffer, as i915 programs the primary plane."""
        rf = self.rf
        if self.dev.info.platform is Platform.BDW:
            ctl = 1 << 31 | (6 if fmt == "xrgb8888" else 14) << 26 | (1 << 10 if tiling == "x" else 0)
            rf.write32(r.PLANE_CTL, ctl)
            rf.write32(r.PLANE_STRIDE, STRIDE)
        else:
            ctl = 1 << 31 | 4 << 24 | (1 << 20 if fmt == "xbgr8888" else 0) | (1 << 10 if tiling == "x" else 0)
            rf.write32(r.PLANE_CTL, ctl)
            rf.write32(r.PLANE_STRIDE, STRIDE // (512 if tiling == "x" else 64))
            rf.write32(r.PLANE_SIZE, (H - 1) << 16 | (W - 1))
        rf.write32(r.PLANE_SURF, gma)

    def cursor(self) -> None:
        base = self.map(CURSOR_GMA, 4)
        self.mem.write(base, bytes((0xFF, 0xFF, 0xFF, 0xFF)) * 64 * 8)  # 8 opaque white rows
        self.rf.write32(r.CURPOS, 5 << 16 | 9)
        self.rf.write32(r.CURCNTR, 0x27)
        self.rf.write32(r.CURBASE, CURSOR_GMA)

    def frame(self) -> int:
        """One frame on: the CRC reported at its vblank (as i915's interrupt handler reads it)."""
        self.clock.now += self.period
        assert self.rf.read32(MASTER) & 1 << 16
        iir = self.rf.read32(BANK + 0x8)
        assert iir & r.DE_PIPE_CRC_DONE
        self.rf.write32(BANK + 0x8, iir)
        return self.rf.read32(r.PIPE_CRC_RES_1)


def enable(rig: Rig, source: int) -> None:
    # gen8_de_irq_postinstall leaves CRC-done unmasked and enabled; the master on.
    rig.rf.write32(BANK + 0xC, r.DE_PIPE_VBLANK | r.DE_PIPE_CRC_DONE)
    rig.rf.write32(BANK + 0x4, ~r.DE_PIPE_CRC_DONE & 0xFFFFFFFF)
    rig.rf.write32(MASTER, 1 << 31)
    rig.rf.write32(r.PIPE_CRC_CTL, r.PIPE_CRC_ENABLE | source)


def pipe_source(platform: Platform) -> int:
    if platform is Platform.BDW:
        return r.PIPE_CRC_SOURCE_PF_IVB << r.PIPE_CRC_SOURCE_SHIFT_IVB
    return r.PIPE_CRC_SOURCE_DMUX_SKL << r.PIPE_CRC_SOURCE_SHIFT_SKL


@pytest.fixture(params=["bdw-python", "skl-python", "bdw-compiled", "skl-compiled"])
def rig(request: pytest.FixtureRequest) -> Rig:
    platform, path = request.param.split("-")
    return Rig(Platform(platform), path == "compiled")


def test_equal_pictures_equal_crcs_different_pictures_differ(rig: Rig) -> None:
    rig.framebuffer(0x100000, "linear", "xrgb8888")
    rig.framebuffer(0x200000, "x", "xbgr8888", x_byte=0xA5)  # the same picture, other layout
    rig.framebuffer(0x300000, "linear", "xrgb8888", differ=True)  # one blue bit differs
    rig.show(0x100000, "linear", "xrgb8888")
    enable(rig, pipe_source(rig.dev.info.platform))
    first = rig.frame()
    assert rig.frame() == first  # a still picture: the same CRC each frame
    expected = bytearray()
    for y in range(H):
        for x in range(W):
            red, green, blue = pattern(x, y)
            expected += bytes((blue, green, red, 0))
    assert first == zlib.crc32(expected)  # docs: CRC-32 of the XRGB rows, X zeroed
    rig.show(0x200000, "x", "xbgr8888")
    assert rig.frame() == first
    rig.show(0x300000, "linear", "xrgb8888")
    assert rig.frame() != first
    rig.show(0x100000, "linear", "xrgb8888")
    assert rig.frame() == first
    assert rig.dev.display.counters.crcs == 5  # type: ignore[union-attr]


def test_sources_pipe_sees_the_cursor_the_primary_plane_does_not(rig: Rig) -> None:
    platform = rig.dev.info.platform
    rig.framebuffer(0x100000, "linear", "xrgb8888")
    rig.show(0x100000, "linear", "xrgb8888")
    enable(rig, pipe_source(platform))
    plain = rig.frame()
    rig.cursor()
    with_cursor = rig.frame()
    assert with_cursor != plain
    primary = 0  # PRIMARY_IVB and PLANE_1_SKL are both 0
    rig.rf.write32(r.PIPE_CRC_CTL, r.PIPE_CRC_ENABLE | primary)
    assert rig.frame() == plain  # the primary plane alone: no cursor in it


def test_crc_done_needs_no_reader_and_stops_when_disabled(rig: Rig) -> None:
    dev = rig.dev
    enable(rig, pipe_source(dev.info.platform))
    assert len(dev.tasks.timers) == 1  # CRC-done unmasked: a vblank timer runs
    rig.rf.write32(r.PIPE_CRC_CTL, 0)
    assert len(dev.tasks.timers) == 0  # vblank masked, CRC off: nothing runs
    crcs = dev.display.counters.crcs  # type: ignore[union-attr]
    rig.clock.now += 5 * rig.period
    assert not rig.rf.read32(BANK + 0x8) & r.DE_PIPE_CRC_DONE
    assert dev.display.counters.crcs == crcs  # type: ignore[union-attr]


def test_a_huge_pipe_source_is_not_decoded(rig: Rig) -> None:
    rig.framebuffer(0x100000, "linear", "xrgb8888")
    rig.show(0x100000, "linear", "xrgb8888")
    enable(rig, pipe_source(rig.dev.info.platform))
    assert rig.frame() != 0
    rig.rf.write32(r.PIPESRC, 0x1FFF << 16 | 0xFFF)  # 8192x4096, 128 MiB a frame
    assert rig.frame() == 0  # CRC-done still comes, with no decode behind it


def test_source_fields() -> None:
    skl, bdw = Platform.SKL, Platform.BDW
    assert source_layers(skl, 4 << 28, 3) is None
    assert [source_layers(skl, f << 28, 3) for f in (0, 2, 6)] == [1, 2, 4]
    assert source_layers(skl, 7 << 28, 3) == 0  # plane 4: SKL has three, a black picture
    assert source_layers(bdw, 2 << 29, 1) is None and source_layers(bdw, 0, 1) == 1
    assert source_layers(bdw, 1 << 29, 1) == 0  # the sprite is not decoded
