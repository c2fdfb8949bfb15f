"""PCI config space of the GEN vGPU (region 7): BAR sizing, IDs, command/status, the
capability chain, MSI enable and reset to the power-on state."""

from __future__ import annotations

import struct

import pytest

from devmodel.device.device import ResetKind
from devmodel.device.pci_config import (
    CMD_INTX_DISABLE,
    CMD_MASTER,
    CMD_MEMORY,
    MSI_CAP_ID,
    STATUS_CAP_LIST,
    STATUS_INTERRUPT,
)
from gen_vgpu import GenVgpu, Platform
from gen_vgpu.display import DisplayOptions

CFG = 7
MiB = 1 << 20


@pytest.fixture(params=[Platform.BDW, Platform.SKL], ids=["bdw", "skl"])
def dev(request) -> GenVgpu:
    return GenVgpu(request.param)


def rd(dev: GenVgpu, off: int, n: int) -> int:
    return int.from_bytes(dev.region_read(CFG, off, n), "little")


def wr(dev: GenVgpu, off: int, n: int, value: int) -> None:
    dev.region_write(CFG, off, value.to_bytes(n, "little"))


def bar_size(dev: GenVgpu, index: int) -> tuple[int, int]:
    """Size a 64-bit BAR the way firmware does; returns (size, type bits)."""
    lo_off, hi_off = 0x10 + 4 * index, 0x14 + 4 * index
    wr(dev, lo_off, 4, 0xFFFFFFFF)
    wr(dev, hi_off, 4, 0xFFFFFFFF)
    lo, hi = rd(dev, lo_off, 4), rd(dev, hi_off, 4)
    mask = (hi << 32) | (lo & ~0xF)
    return ((~mask) & ((1 << 64) - 1)) + 1, lo & 0xF


def test_config_region_is_256_bytes(dev):
    assert dev.region(CFG).size == 256
    assert len(dev.region_read(CFG, 0, 256)) == 256


def test_bar0_sizing_64bit_non_prefetchable_16mib(dev):
    assert rd(dev, 0x10, 4) & 0xF == 0x4  # 64-bit memory, not prefetchable, before sizing
    wr(dev, 0x10, 4, 0xFFFFFFFF)
    assert rd(dev, 0x10, 4) == 0xFF000004
    wr(dev, 0x14, 4, 0xFFFFFFFF)
    assert rd(dev, 0x14, 4) == 0xFFFFFFFF
    assert bar_size(dev, 0) == (16 * MiB, 0x4)


def test_bar2_sizing_64bit_prefetchable_aperture(dev):
    assert rd(dev, 0x18, 4) & 0xF == 0xC
    wr(dev, 0x18, 4, 0xFFFFFFFF)
    assert rd(dev, 0x18, 4) == 0xF000000C  # 256 MiB
    assert bar_size(dev, 2) == (256 * MiB, 0xC)


def test_bar2_size_follows_aperture_size():
    dev = GenVgpu(Platform.BDW, aperture_size=512 * MiB)
    assert bar_size(dev, 2) == (512 * MiB, 0xC)
    assert dev.region(2).size == 512 * MiB


def test_bar4_bar5_are_absent(dev):
    for off in (0x20, 0x24):
        wr(dev, off, 4, 0xFFFFFFFF)
        assert rd(dev, off, 4) == 0, hex(off)


def test_rom_bar_sizes_as_the_vbt_rom_and_is_absent_when_headless(dev):
    wr(dev, 0x30, 4, 0xFFFFF800)
    assert rd(dev, 0x30, 4) == 0xFFFFE000  # 8 KiB
    assert dev.region_read(6, 0, 2) == b"\x55\xaa"
    headless = type(dev)(dev.info.platform, display=DisplayOptions("none"))
    wr(headless, 0x30, 4, 0xFFFFFFFF)
    assert rd(headless, 0x30, 4) == 0


def test_bar_takes_an_address_and_keeps_type_bits(dev):
    wr(dev, 0x10, 4, 0xFE000000 | 0xF)  # low type bits are read-only
    wr(dev, 0x14, 4, 0x1)
    assert rd(dev, 0x10, 4) == 0xFE000004
    assert rd(dev, 0x14, 4) == 0x1
    wr(dev, 0x10, 4, 0xFE123450)  # below the size: not writable
    assert rd(dev, 0x10, 4) == 0xFE000004


def test_ids_class_and_header(dev):
    plat = dev.info
    assert rd(dev, 0x00, 2) == 0x8086
    assert rd(dev, 0x02, 2) == plat.device_id
    assert rd(dev, 0x08, 1) == plat.revision
    assert (plat.device_id, plat.revision) in ((0x1616, 0x09), (0x1912, 0x06))
    assert rd(dev, 0x09, 3) == 0x038000
    assert rd(dev, 0x0E, 1) == 0  # type-0 header
    assert rd(dev, 0x3D, 1) == 1  # INTA


def test_ids_are_read_only(dev):
    before = dev.region_read(CFG, 0, 0x40)
    for off, n in ((0x00, 4), (0x08, 4), (0x2C, 4), (0x0E, 1), (0x3D, 1), (0x34, 1)):
        wr(dev, off, n, (1 << (8 * n)) - 1)
        wr(dev, off, n, 0)
    after = dev.region_read(CFG, 0, 0x40)
    assert after == before


def test_gmch_control_8mib_gsm_no_stolen(dev):
    ggc = rd(dev, 0x50, 2)
    assert (ggc >> 6) & 3 == 3  # GGMS: 8 MiB -> 1M GGTT entries
    assert (ggc >> 8) & 0xFF == 0  # GMS: no stolen memory
    wr(dev, 0x50, 2, 0xFFFF)
    assert rd(dev, 0x50, 2) == ggc


def test_command_writable_bits(dev):
    assert rd(dev, 0x04, 2) == 0  # IO, MEM, MASTER clear at power-on
    wr(dev, 0x04, 2, 0xFFFF)
    cmd = rd(dev, 0x04, 2)
    for bit in (CMD_MEMORY, CMD_MASTER, CMD_INTX_DISABLE):
        assert cmd & bit
    assert cmd & 0xF800 == 0  # reserved bits 15:11
    assert cmd & (1 << 3) == 0 and cmd & (1 << 4) == 0 and cmd & (1 << 5) == 0 and cmd & (1 << 9) == 0
    assert dev.config.bus_master and dev.config.intx_disabled
    wr(dev, 0x04, 2, CMD_MEMORY)
    assert rd(dev, 0x04, 2) == CMD_MEMORY
    assert not dev.config.bus_master and not dev.config.intx_disabled


def test_command_write_calls_hook(dev):
    seen = []
    dev.on_command_change = lambda old, new: seen.append((old, new))
    wr(dev, 0x04, 2, CMD_MEMORY | CMD_MASTER)
    wr(dev, 0x06, 2, 0)  # status only: no command change hook
    assert seen == [(0, CMD_MEMORY | CMD_MASTER)]


def test_status_rw1c(dev):
    status0 = rd(dev, 0x06, 2)
    assert status0 & STATUS_CAP_LIST
    # The device latches error bits (detected parity, SERR, master/target aborts).
    errors = 0xF900
    dev.config.data[0x06:0x08] = (status0 | errors).to_bytes(2, "little")
    wr(dev, 0x06, 2, 0)  # writing 0 changes nothing
    assert rd(dev, 0x06, 2) == status0 | errors
    wr(dev, 0x06, 2, 1 << 15)  # write-1-to-clear one bit
    assert rd(dev, 0x06, 2) == status0 | (errors & ~(1 << 15))
    wr(dev, 0x06, 2, 0xFFFF)  # clear all; cap-list and the other read-only bits stay
    assert rd(dev, 0x06, 2) == status0
    # A dword write of command+status with the status read back clears the latched errors too.
    dev.config.data[0x06:0x08] = (status0 | (1 << 13)).to_bytes(2, "little")
    wr(dev, 0x04, 4, ((status0 | (1 << 13)) << 16) | CMD_MEMORY)
    assert rd(dev, 0x04, 4) == (status0 << 16) | CMD_MEMORY


def test_status_bit3_reflects_intx(dev):
    assert not rd(dev, 0x06, 2) & STATUS_INTERRUPT
    dev.set_intx(True)
    assert rd(dev, 0x06, 2) & STATUS_INTERRUPT
    wr(dev, 0x06, 2, 0xFFFF)  # not RW1C: only deasserting the line clears it
    assert rd(dev, 0x06, 2) & STATUS_INTERRUPT
    wr(dev, 0x04, 2, CMD_INTX_DISABLE)  # masking does not hide the level (PCI 2.3)
    assert rd(dev, 0x06, 2) & STATUS_INTERRUPT
    dev.set_intx(False)
    assert not rd(dev, 0x06, 2) & STATUS_INTERRUPT


def walk_caps(dev: GenVgpu) -> list[tuple[int, int]]:
    assert rd(dev, 0x06, 2) & STATUS_CAP_LIST
    caps, ptr, seen = [], rd(dev, 0x34, 1) & ~3, set()
    while ptr:
        assert 0x40 <= ptr < 256 and ptr not in seen
        seen.add(ptr)
        caps.append((ptr, rd(dev, ptr, 1)))
        ptr = rd(dev, ptr + 1, 1) & ~3
    return caps


@pytest.mark.parametrize("platform,offset", [(Platform.BDW, 0x90), (Platform.SKL, 0xAC)])
def test_capability_chain_reaches_msi(platform, offset):
    dev = GenVgpu(platform)
    caps = walk_caps(dev)
    assert (offset, MSI_CAP_ID) in caps
    flags = rd(dev, offset + 2, 2)
    assert flags & 1 == 0  # disabled
    assert (flags >> 1) & 7 == 0  # one message capable
    assert not flags & (1 << 7)  # 32-bit address


def test_msi_enable_and_address_data(dev):
    off = dev.info.msi_offset
    assert not dev.config.msi_enabled
    wr(dev, off + 4, 4, 0xFEE00000 | 3)  # low two address bits are reserved
    wr(dev, off + 8, 2, 0x4021)
    wr(dev, off + 2, 2, 0x0001)
    assert dev.config.msi_enabled
    assert rd(dev, off + 4, 4) == 0xFEE00000
    assert rd(dev, off + 8, 2) == 0x4021
    assert rd(dev, off, 1) == MSI_CAP_ID  # id and next pointer read-only
    wr(dev, off, 2, 0xFFFF)
    assert rd(dev, off, 1) == MSI_CAP_ID
    wr(dev, off + 2, 2, 0)
    assert not dev.config.msi_enabled


def test_reset_restores_power_on_state(dev):
    power_on = dev.region_read(CFG, 0, 256)
    wr(dev, 0x04, 2, CMD_MEMORY | CMD_MASTER | CMD_INTX_DISABLE)
    wr(dev, 0x10, 4, 0xFE000000)
    wr(dev, 0x14, 4, 0x1)
    wr(dev, 0x18, 4, 0xFFFFFFFF)
    wr(dev, 0x1C, 4, 0xFFFFFFFF)
    wr(dev, 0x0C, 1, 0x10)
    wr(dev, 0x3C, 1, 11)
    wr(dev, dev.info.msi_offset + 2, 2, 1)
    wr(dev, dev.info.msi_offset + 4, 4, 0xFEE00000)
    dev.set_intx(True)
    assert dev.region_read(CFG, 0, 256) != power_on
    seen = []
    dev.on_command_change = lambda old, new: seen.append((old, new))
    dev.reset(ResetKind.DEVICE)
    assert dev.region_read(CFG, 0, 256) == power_on
    assert not dev.config.msi_enabled and not dev.config.bus_master and not dev.config.intx_disabled
    assert seen == [(CMD_MEMORY | CMD_MASTER | CMD_INTX_DISABLE, 0)]


def test_config_access_past_the_end_is_rejected(dev):
    from devmodel.errors import OutOfRange

    with pytest.raises(OutOfRange):
        dev.region_read(CFG, 254, 4)
    with pytest.raises(OutOfRange):
        dev.region_write(CFG, 256, b"\0")
    assert struct.unpack_from("<H", dev.region_read(CFG, 0, 2))[0] == 0x8086
