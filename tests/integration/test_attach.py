"""What the issue's "done when" asks of an outside client, through the in-repo one."""

from __future__ import annotations

import struct

import pytest

from devmodel.testing import VfioUserClient
from devmodel.vfio_user.constants import DeviceInfoFlags, RegionInfoFlags

from .conftest import ServerThread


def _bar_size(client: VfioUserClient, bar: int) -> tuple[int, int]:
    """Size a 64-bit BAR the way firmware does; returns (size, type bits)."""
    off = 0x10 + 4 * bar
    client.region_write(7, off, b"\xff\xff\xff\xff")
    client.region_write(7, off + 4, b"\xff\xff\xff\xff")
    lo, hi = struct.unpack("<II", client.region_read(7, off, 8))
    client.region_write(7, off, b"\0\0\0\0")
    client.region_write(7, off + 4, b"\0\0\0\0")
    mask = (hi << 32) | (lo & ~0xF)
    return (~mask & ((1 << 64) - 1)) + 1, lo & 0xF


def test_attach_identity_and_bars(client: VfioUserClient) -> None:
    info = client.device_info()
    assert info.flags == DeviceInfoFlags.PCI | DeviceInfoFlags.RESET
    assert info.num_regions == 9 and info.num_irqs == 5
    cfg = client.region_read(7, 0, 256)
    vendor, device = struct.unpack_from("<HH", cfg, 0)
    assert (vendor, device) == (0x8086, 0x1616)
    assert int.from_bytes(cfg[9:12], "little") == 0x038000
    assert cfg[0x3D] == 1  # INTA
    r0, _, _ = client.region_info(0)
    r2, _, _ = client.region_info(2)
    r7, _, _ = client.region_info(7)
    assert r0.size == 16 << 20 and r0.flags == RegionInfoFlags.READ | RegionInfoFlags.WRITE
    assert r2.size == 256 << 20
    assert r7.size == 256
    assert client.region_info(1)[0].size == 0 and client.region_info(4)[0].size == 0
    assert _bar_size(client, 0) == (16 << 20, 0x4)
    assert _bar_size(client, 2) == (256 << 20, 0xC)


def test_msi_capability_in_chain(client: VfioUserClient) -> None:
    cfg = client.region_read(7, 0, 256)
    assert cfg[6] & 0x10  # capability list
    seen: list[tuple[int, int]] = []
    ptr = cfg[0x34]
    while ptr and len(seen) < 48:
        seen.append((ptr, cfg[ptr]))
        ptr = cfg[ptr + 1]
    assert (0x90, 0x05) in seen


def test_register_round_trip_4_and_8_bytes(client: VfioUserClient) -> None:
    client.write32(0, 0x4000, 0xDEADBEEF)
    assert client.read32(0, 0x4000) == 0xDEADBEEF
    client.write64(0, 0x4010, 0x0123456789ABCDEF)
    assert client.read64(0, 0x4010) == 0x0123456789ABCDEF
    assert client.read32(0, 0x4010) == 0x89ABCDEF
    assert client.read32(0, 0x4014) == 0x01234567
    client.write32(0, 0x4020, 0x55, posted=True)
    assert client.read32(0, 0x4020) == 0x55


def test_pvinfo_magic(client: VfioUserClient) -> None:
    assert client.read64(0, 0x78000) == 0x4776544776544776
    assert client.read32(0, 0x78000) == 0x76544776
    assert client.read32(0, 0x78004) == 0x47765447


def test_skl_variant(make_server, memory) -> None:
    from gen_vgpu import Platform

    st: ServerThread = make_server(Platform.SKL)
    with VfioUserClient.connect(st.path, memory) as c:
        c.negotiate()
        cfg = c.region_read(7, 0, 256)
        assert struct.unpack_from("<HH", cfg, 0) == (0x8086, 0x1912)
        assert cfg[8] == 0x06
        assert cfg[0x34] == 0xAC and cfg[0xAC] == 0x05


@pytest.mark.parametrize("write_multiple", [True, False])
def test_version_reply_fits_qemu(make_server, memory, write_multiple: bool) -> None:
    st: ServerThread = make_server(write_multiple=write_multiple)
    with VfioUserClient.connect(st.path, memory) as c:
        caps = c.negotiate()
        assert caps.get("write_multiple", False) is write_multiple
        assert caps["max_msg_fds"] == 8
