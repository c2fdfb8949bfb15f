"""The display (contract §6) through the register file, as i915 drives it: the EDID and VBT,
AUX transfers to the sink, live lock/idle bits, the frame clock, plane latching, hotplug,
and the host's decode of the planes."""

from __future__ import annotations

import struct
import time

import pytest

from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.testing import GuestMemory
from gen_vgpu import GenVgpu, Platform
from gen_vgpu.display import DisplayOptions
from gen_vgpu.display.control import inspect_display, page_reader
from gen_vgpu.display.decode import decode_screen, tiled_offset
from gen_vgpu.display.edid import EdidError, make_edid, preferred_timing, validate_edid
from gen_vgpu.display.png import decode_png_rgb, encode_png
from gen_vgpu.display.vbt import make_vbt
from gen_vgpu.mmio import display_regs as r
from gen_vgpu.mmio import gt

GGTT = 8 << 20
MASTER = 0x44200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["bdw", "skl"])
def dev(request: pytest.FixtureRequest) -> GenVgpu:
    return GenVgpu(Platform(request.param))


def published_reads(dev: GenVgpu) -> dict[str, bool]:
    """For each published register: whether the compiled path reads its storage now, and if
    it does, that storage holds what the Python path's read returns."""
    rf = dev.registers
    out = {}
    for off, reg in rf.regs.items():
        if reg.published:
            served = rf.plain[off >> 2] != 0
            assert reg.read is not None
            assert not served or rf.get(off) == reg.read(off), reg.name
            out[reg.name] = served
    return out


def aux_ctl(dev: GenVgpu) -> int:
    return r.AUX_CTL_PCH if dev.info.platform is Platform.BDW else r.AUX_CTL_CPU + 0x300


def aux(dev: GenVgpu, request: bytes) -> tuple[int, bytes]:
    """One AUX transfer as intel_dp_aux_xfer does it: the reply code and data."""
    rf = dev.registers
    ctl = aux_ctl(dev)
    padded = request + bytes(-len(request) % 4)
    for i in range(0, len(padded), 4):
        rf.write32(ctl + 4 + i, int.from_bytes(padded[i : i + 4], "big"))
    rf.write32(ctl, r.AUX_SEND_BUSY | r.AUX_STATUS | len(request) << r.AUX_SIZE_SHIFT)
    status = rf.read32(ctl)
    assert status & r.AUX_DONE and not status & r.AUX_SEND_BUSY
    assert not status & r.AUX_TIME_OUT_ERROR, "the sink did not answer"
    n = (status & r.AUX_SIZE_MASK) >> r.AUX_SIZE_SHIFT
    data = b"".join(rf.read32(ctl + 4 + i).to_bytes(4, "big") for i in range(0, 20, 4))[:n]
    rf.write32(ctl, r.AUX_STATUS)  # clear
    assert not rf.read32(ctl) & r.AUX_STATUS
    return data[0], data[1:]


def test_edid_checksums_modes_and_user_files() -> None:
    for mode, size in (("1024x768", (1024, 768)), ("1920x1080", (1920, 1080))):
        e = make_edid(mode)
        assert len(e) == 128 and sum(e) % 256 == 0 and validate_edid(e) == e
        assert preferred_timing(e) == size
    bad = bytearray(make_edid())
    bad[60] ^= 1
    with pytest.raises(EdidError, match="checksum"):
        validate_edid(bytes(bad))
    with pytest.raises(EdidError, match="128-byte"):
        validate_edid(b"\0" * 100)


def test_vbt_has_one_dp_child_on_the_monitors_port() -> None:
    vbt = make_vbt(7, 0x10)
    assert vbt[:4] == b"$VBT" and sum(vbt) % 256 == 0
    _version, _header, size, _csum, _res, bdb = struct.unpack_from("<HHHBBI", vbt, 20)
    assert size == len(vbt) and bdb == 48
    assert vbt[bdb : bdb + 16] == b"BIOS_DATA_BLOCK "
    block_id, block_size = struct.unpack_from("<BH", vbt, bdb + 22)
    assert block_id == 2 and block_size == 5 + 33
    child = vbt[bdb + 25 + 5 :]
    assert struct.unpack_from("<H", child, 2)[0] == 0x68C6 and child[16] == 7 and child[25] == 0x10


def test_rom_region_and_headless_mode(dev: GenVgpu) -> None:
    rom = dev.region_read(6, 0, dev.regions[6].size)
    assert rom[:2] == b"\x55\xaa" and b"$VBT" in rom
    headless = GenVgpu(dev.info.platform, display=DisplayOptions("none"))
    assert headless.display is None and headless.regions[6].size == 0
    fuse = gt.FUSE_STRAP if dev.info.platform is Platform.BDW else gt.SKL_DFSM
    assert dev.registers.read32(fuse) == 0 and headless.registers.read32(fuse) != 0


def test_dpcd_caps_link_training_and_edid_over_i2c(dev: GenVgpu) -> None:
    code, caps = aux(dev, bytes((0x90, 0x00, 0x00, 14)))  # native read of 15 bytes at 0
    assert code == 0 and caps[:3] == bytes((0x12, 0x14, 0x84)) and len(caps) == 15
    assert aux(dev, bytes((0x90, 0x02, 0x00, 0)))[1] == b"\x01"  # SINK_COUNT
    assert aux(dev, bytes((0x80, 0x01, 0x02, 0, 0x21)))[0] == 0  # TP1
    assert aux(dev, bytes((0x90, 0x02, 0x02, 1)))[1] == b"\x11\x11"
    aux(dev, bytes((0x80, 0x01, 0x02, 0, 0x22)))  # TP2
    assert aux(dev, bytes((0x90, 0x02, 0x02, 2)))[1] == b"\x77\x77\x01"
    # EDID: start, offset 0, then 16-byte reads, as drm_dp_i2c_xfer does
    assert aux(dev, bytes((0x40, 0x00, 0x50)))[0] == 0
    assert aux(dev, bytes((0x40, 0x00, 0x50, 0, 0)))[0] == 0
    edid = b"".join(aux(dev, bytes((0x50, 0x00, 0x50, 15)))[1] for _ in range(8))
    assert edid == dev.display.monitor.edid  # type: ignore[union-attr]
    assert aux(dev, bytes((0x50, 0x00, 0x37, 0)))[0] == 0x40  # nobody at 0x37: I2C NACK


def test_other_aux_channels_time_out(dev: GenVgpu) -> None:
    rf = dev.registers
    ctl = r.AUX_CTL_CPU  # AUX A
    rf.write32(ctl + 4, 0x90000000)
    rf.write32(ctl, r.AUX_SEND_BUSY | 4 << r.AUX_SIZE_SHIFT)
    assert rf.read32(ctl) & (r.AUX_DONE | r.AUX_TIME_OUT_ERROR) == r.AUX_DONE | r.AUX_TIME_OUT_ERROR


def test_live_bits_follow_their_enables(dev: GenVgpu) -> None:
    rf = dev.registers
    port = dev.display.port  # type: ignore[union-attr]
    buf = r.port_reg(r.DDI_BUF_CTL_BASE, port)
    assert rf.read32(buf) & r.DDI_BUF_IS_IDLE
    rf.write32(buf, r.DDI_BUF_CTL_ENABLE | 0x6)
    assert rf.read32(buf) == r.DDI_BUF_CTL_ENABLE | 0x6
    tp = r.port_reg(r.DP_TP_CTL_BASE, port)
    rf.write32(tp, r.DP_TP_CTL_ENABLE | r.DP_TP_CTL_LINK_TRAIN_IDLE)
    assert rf.read32(tp + 4) & r.DP_TP_STATUS_IDLE_DONE
    if dev.info.platform is Platform.BDW:
        rf.write32(gt.LCPLL_CTL, gt.LCPLL_PLL_LOCK | gt.LCPLL_CD_SOURCE_FCLK)
        assert rf.read32(gt.LCPLL_CTL) & r.LCPLL_CD_SOURCE_FCLK_DONE
        rf.write32(gt.LCPLL_CTL, gt.LCPLL_PLL_DISABLE)
        assert not rf.read32(gt.LCPLL_CTL) & gt.LCPLL_PLL_LOCK
    else:
        rf.write32(r.SKL_DPLL_ENABLE[1], r.SKL_PLL_ENABLE)
        assert rf.read32(r.SKL_DPLL_ENABLE[1]) & r.SKL_PLL_LOCK
        assert rf.read32(r.DPLL_STATUS) == 1 << 8
        rf.write32(r.DBUF_CTL, r.DBUF_POWER_REQUEST)
        assert rf.read32(r.DBUF_CTL) & r.DBUF_POWER_STATE


def light_pipe_a(dev: GenVgpu) -> Clock:
    """Pipe A at 1024x768@60 on the monitor's port, as i915's modeset leaves it."""
    clock = Clock()
    dev.display.clock = clock  # type: ignore[union-attr]
    rf = dev.registers
    port = dev.display.port  # type: ignore[union-attr]
    rf.write32(r.HTOTAL, (1344 - 1) << 16 | (1024 - 1))
    rf.write32(r.VTOTAL, (806 - 1) << 16 | (768 - 1))
    rf.write32(r.VBLANK, (806 - 1) << 16 | (768 - 1))
    rf.write32(r.PIPESRC, (1024 - 1) << 16 | (768 - 1))
    rf.write32(r.LINK_M1, 65000)
    rf.write32(r.LINK_N1, 162000)
    if dev.info.platform is Platform.BDW:
        rf.write32(r.PORT_CLK_SEL_BASE + 4 * port, 2 << r.PORT_CLK_SEL_SHIFT)  # 1.62 Gbps
    else:
        rf.write32(r.DPLL_CTRL1, 2 << (6 * 1 + 1))  # DPLL1 at 810 MHz
        rf.write32(r.DPLL_CTRL2, 1 << (3 * port + 1))
    rf.write32(r.TRANS_DDI_FUNC_CTL, r.TRANS_DDI_FUNC_ENABLE | port << r.TRANS_DDI_PORT_SHIFT)
    rf.write32(r.TRANSCONF, r.TRANSCONF_ENABLE)
    return clock


def test_frame_clock_counter_scanline_and_vblank_interrupt(dev: GenVgpu) -> None:
    assert all(published_reads(dev).values())  # no pipe on: nothing to catch up on a read
    clock = light_pipe_a(dev)
    rf = dev.registers
    # A pipe runs: the master and display IIR reads catch the frame clock up, in Python.
    served = published_reads(dev)
    assert not served["GEN8_MASTER_IRQ"] and not served["DE_PIPE_A_IIR"] and not served["DE_MISC_IIR"]
    assert served["EXECLIST_STATUS_LO(rcs)"]
    assert rf.read32(r.TRANSCONF) & r.TRANSCONF_STATE
    period = 1344 * 806 / 65e6
    assert rf.read32(r.PIPE_FRMCOUNT) == 0
    assert rf.read32(r.PIPEDSL) == 768  # at vblank start
    clock.now += period * 0.5
    assert rf.read32(r.PIPEDSL) in ((768 + 402) % 806, (768 + 403) % 806)  # half a frame on
    assert len(dev.tasks.timers) == 0  # nobody waits for the interrupt: no timer
    clock.now += period * 10
    assert rf.read32(r.PIPE_FRMCOUNT) == 10
    # i915's bdw_enable_vblank: unmask; IER has the bit since postinstall
    rf.write32(r.DE_PIPE_BANK + 0xC, r.DE_PIPE_VBLANK)
    rf.write32(r.DE_PIPE_BANK + 0x4, ~r.DE_PIPE_VBLANK & 0xFFFFFFFF)
    assert len(dev.tasks.timers) == 1
    rf.write32(MASTER, 1 << 31)
    clock.now += period
    assert rf.read32(MASTER) & 1 << 16  # the read caught up
    assert rf.read32(r.DE_PIPE_BANK + 0x8) & r.DE_PIPE_VBLANK
    assert rf.read32(r.PIPE_FRMCOUNT) == 11
    rf.write32(r.DE_PIPE_BANK + 0x4, 0xFFFFFFFF)
    rf.write32(r.TRANSCONF, 0)
    assert not rf.read32(r.TRANSCONF) & r.TRANSCONF_STATE
    # Every pipe off: storage again, with the vblank's IIR bit still in the master's status.
    assert all(published_reads(dev).values())
    assert rf.get(MASTER) & 1 << 16
    rf.write32(r.DE_PIPE_BANK + 0x8, r.DE_PIPE_VBLANK)
    assert all(published_reads(dev).values()) and not rf.get(MASTER) & 1 << 16
    dev.tasks.timers.next_due()
    assert len(dev.tasks.timers) == 0  # every pipe off: nothing runs


def test_on_the_monotonic_clock_a_lit_pipe_opens_the_status_reads_until_its_next_vblank(dev: GenVgpu) -> None:
    """The compiled path reads CLOCK_MONOTONIC: with the display on time.monotonic, a running
    pipe leaves the master and display IIR reads to storage until its next vblank, and every
    catch-up moves that deadline on; with every pipe off they are storage's for good."""
    light_pipe_a(dev)
    rf = dev.registers
    display = dev.display
    assert display is not None
    rf.write32(r.TRANSCONF, 0)
    display.clock = time.monotonic
    rf.write32(r.TRANSCONF, r.TRANSCONF_ENABLE)
    gate, pipe = dev.interrupts.read_gate, display.pipes[0]
    assert gate.open and gate.until == pipe.t0 + pipe.period
    served = published_reads(dev)
    assert served["GEN8_MASTER_IRQ"] and served["DE_PIPE_A_IIR"] and served["DE_MISC_IIR"]
    assert rf.timed[MASTER >> 2] and rf.timed[(r.DE_PIPE_BANK + 0x8) >> 2]
    assert not rf.timed[0x44308 >> 2]  # GT0 IIR: no catch-up on its read
    pipe.t0 -= 5 * pipe.period  # five vblanks due now
    rf.read32(MASTER)
    assert pipe.frames >= 5 and gate.until == pipe.t0 + (pipe.frames + 1) * pipe.period
    rf.write32(r.TRANSCONF, 0)
    assert gate.open and gate.until is None and not rf.timed[MASTER >> 2]


def test_planes_latch_at_vblank_when_armed(dev: GenVgpu) -> None:
    clock = light_pipe_a(dev)
    rf = dev.registers
    rf.write32(r.PLANE_CTL, 1 << 31)
    rf.write32(r.PLANE_SURF, 0x5000)
    assert rf.read32(r.PLANE_SURF) == 0x5000  # reads return what was written
    assert rf.read32(r.PLANE_SURFLIVE) == 0  # not latched before the vblank
    clock.now += 0.02
    assert rf.read32(r.PLANE_SURFLIVE) == 0x5000


def test_hotplug_changes_live_status_and_raises_the_south_interrupt(dev: GenVgpu) -> None:
    rf = dev.registers
    bit = r.SDE_HOTPLUG[dev.info.platform.value]
    assert rf.read32(r.SDE_BANK) & bit
    rf.write32(r.SDE_BANK + 0xC, 0xFFFFFFFF)
    rf.write32(r.SDE_BANK + 0x4, ~bit & 0xFFFFFFFF)
    rf.write32(MASTER, 1 << 31)
    inspect_display(dev.display, page_reader(dev.ggtt, dev.dma), "display", ["disconnect"])
    assert not rf.read32(r.SDE_BANK) & bit
    assert rf.read32(r.SDE_BANK + 0x8) & bit and rf.read32(MASTER) & 1 << 23
    assert all(published_reads(dev).values()) and rf.get(MASTER) & 1 << 23  # C's read too
    assert rf.read32(r.PCH_PORT_HOTPLUG)
    rf.write32(r.PCH_PORT_HOTPLUG, rf.read32(r.PCH_PORT_HOTPLUG))
    assert rf.read32(r.PCH_PORT_HOTPLUG) == 0
    answer = inspect_display(
        dev.display, page_reader(dev.ggtt, dev.dma), "display", ["edid", make_edid("1920x1080").hex()]
    )
    assert answer["preferred"] == "1920x1080"


@pytest.mark.parametrize("tiling", ["linear", "x", "y"])
def test_decode_reads_the_live_plane_through_the_ggtt(tiling: str) -> None:
    dev = GenVgpu(Platform.SKL)
    w, h, stride = 256, 64, 1024
    size = stride * ((h + 31) // 32 * 32)
    mem = GuestMemory(size + 0x10000)
    dev.dma.add(0, mem.size, PROT_READ | PROT_WRITE, mem.dup_fd(), 0)
    pages = size // 4096
    for i in range(pages):  # graphics pages 0x100.. -> guest frames in reverse
        dev.region_write(0, GGTT + 8 * (0x100 + i), ((pages - i) << 12 | 1).to_bytes(8, "little"))
    for y in range(h):
        for x in range(w):
            o = tiled_offset(tiling, stride, 4 * x, y)
            gpa = ((pages - (o >> 12)) << 12) + (o & 0xFFF)
            mem.write(gpa, bytes((x & 0xFF, y, 0x55, 0)))
    light_pipe_a(dev)
    rf = dev.registers
    rf.write32(r.PIPESRC, (w - 1) << 16 | (h - 1))
    mult = {"linear": 64, "x": 512, "y": 128}[tiling]
    tile_bits = {"linear": 0, "x": 1, "y": 4}[tiling]
    rf.write32(r.PLANE_CTL, 1 << 31 | 4 << 24 | tile_bits << 10)
    rf.write32(r.PLANE_STRIDE, stride // mult)
    rf.write32(r.PLANE_SIZE, (h - 1) << 16 | (w - 1))
    rf.write32(r.PLANE_SURF, 0x100000)
    dev.display.clock.now += 0.02  # type: ignore[union-attr]
    frame = decode_screen(dev.display, page_reader(dev.ggtt, dev.dma))  # type: ignore[arg-type]
    assert (frame.width, frame.height) == (w, h)
    for y in (0, 7, 8, 31, 32, 63):
        for x in (0, 31, 32, 128, 255):
            at = 4 * (y * w + x)
            assert frame.pixels[at : at + 3] == bytes((x & 0xFF, y, 0x55)), (x, y)
    png = encode_png(frame.width, frame.height, frame.pixels)
    pw, ph, rgb = decode_png_rgb(png)
    assert (pw, ph) == (w, h) and rgb[:3] == bytes((0x55, 0, 0))
