"""DEVICE_GET_REGION_INFO: argsz truncation and re-ask, the sparse-mmap capability with an fd."""

from __future__ import annotations

import mmap
import os

import pytest

from devmodel.device.device import Device
from devmodel.device.pci_config import Bar, BarKind, PciConfigSpace
from devmodel.device.region import Region
from devmodel.testing import VfioUserClient
from devmodel.vfio_user.constants import RegionInfoFlags
from devmodel.vfio_user.layouts import CAP_HEADER, SPARSE_MMAP, SPARSE_MMAP_AREA


class _Storage:
    def __init__(self, size: int) -> None:
        self.data = bytearray(size)

    def read(self, offset: int, count: int) -> bytes:
        return bytes(self.data[offset : offset + count])

    def write(self, offset: int, data: bytes) -> None:
        self.data[offset : offset + len(data)] = data


class SparseDevice(Device):
    """A framework-level device: BAR0 of 8 KiB whose first page the client may mmap."""

    def __init__(self) -> None:
        config = PciConfigSpace(0x1234, 0x5678, 1, 0xFF0000)
        config.add_bar(Bar(0, 0x2000, BarKind.MEM32))
        config.freeze_power_on_state()
        super().__init__(config)
        self.backing_fd = os.memfd_create("bar0", os.MFD_CLOEXEC)
        os.ftruncate(self.backing_fd, 0x2000)
        self.set_region(Region(0, 0x2000, _Storage(0x2000), mmap_fd=self.backing_fd, sparse_areas=[(0, 0x1000)]))


@pytest.fixture
def sparse(make_server, memory):
    st = make_server(device=SparseDevice())
    c = VfioUserClient.connect(st.path, memory)
    c.negotiate()
    yield st, c
    c.close()
    os.close(st.device.backing_fd)


def test_truncated_then_full(sparse) -> None:
    _, c = sparse
    info, caps, fds = c.region_info(0, argsz=32)
    assert info.argsz == 64 and caps == b"" and fds == []
    assert not info.flags & RegionInfoFlags.CAPS
    info, caps, fds = c.region_info(0, argsz=info.argsz)
    try:
        assert info.flags & RegionInfoFlags.CAPS and info.flags & RegionInfoFlags.MMAP
        assert info.cap_offset == 32 and len(caps) == 32
        hdr = CAP_HEADER.unpack_from(caps)
        assert (hdr.id, hdr.version, hdr.next) == (1, 1, 0)
        assert SPARSE_MMAP.unpack_from(caps, 8).nr_areas == 1
        area = SPARSE_MMAP_AREA.unpack_from(caps, 16)
        assert (area.offset, area.size) == (0, 0x1000)
        assert len(fds) == 1
        # The fd maps the device's memory: what the client writes there the device sees.
        mm = mmap.mmap(fds[0], 0x1000, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=info.offset)
        mm[0:4] = b"mmap"
        back = mmap.mmap(sparse[0].device.backing_fd, 0x1000)
        assert back[0:4] == b"mmap"
        mm.close()
        back.close()
    finally:
        for fd in fds:
            os.close(fd)


def test_trapped_part_still_trapped(sparse) -> None:
    _, c = sparse
    c.write32(0, 0x1000, 0xCAFE)
    assert c.read32(0, 0x1000) == 0xCAFE


def test_gen_vgpu_regions_have_no_caps(client: VfioUserClient) -> None:
    for index in range(9):
        info, caps, fds = client.region_info(index, argsz=256)
        assert info.argsz == 32 and caps == b"" and fds == []
        assert not info.flags & RegionInfoFlags.MMAP  # mmap would turn QEMU's posted writes off
