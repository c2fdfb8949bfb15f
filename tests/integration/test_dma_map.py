"""DMA_MAP / DMA_UNMAP over a real socket with real fds, and the GGTT's coupling to them."""

from __future__ import annotations

import errno
import os

import pytest

from devmodel.errors import ErrorReply
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.vfio_user.constants import DmaUnmapFlags

from .conftest import ServerThread

GGTT = 8 << 20


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_map_with_fd_reaches_memory(server: ServerThread, client: VfioUserClient, memory: GuestMemory) -> None:
    memory.write(0x3000, b"guest bytes")
    assert server.device.dma.read(0x3000, 11) == b"guest bytes"
    server.device.dma.write(0x3100, b"device bytes")
    assert memory.read(0x3100, 12) == b"device bytes"


def test_fd_is_closed_after_mapping(server: ServerThread, raw_client: VfioUserClient) -> None:
    raw_client.negotiate()
    before = _open_fds()
    with GuestMemory(1 << 20, base=1 << 30) as mem:
        for i in range(16):
            fd = mem.dup_fd()
            raw_client.dma_map((1 << 30) + i * 0x10000, 0x10000, 3, fd, i * 0x10000)
            os.close(fd)
        # The client's memfd and its own mapping (Python's mmap keeps a dup) are 2; the
        # server closed every fd it got and holds one mapping of the file for all 16 windows.
        assert _open_fds() == before + 3
        raw_client.dma_unmap(0, 0, DmaUnmapFlags.ALL)
        assert _open_fds() == before + 2


def test_overlap_eexist_and_duplicate_noop(client: VfioUserClient, memory: GuestMemory) -> None:
    with pytest.raises(ErrorReply) as e:
        client.dma_map(0x1000, 0x1000, 3)  # inside the RAM window, no fd
    assert e.value.errno == errno.EEXIST
    fd = memory.dup_fd()
    try:
        client.dma_map(0, memory.size, 3, fd)  # exact duplicate of the same file: accepted
    finally:
        os.close(fd)


def test_read_only_window(server: ServerThread, client: VfioUserClient) -> None:
    with GuestMemory(0x10000, base=0x10000000) as rom:
        rom.write(0x10000000, b"firmware")
        client.map_memory(rom, flags=1)
        assert server.device.dma.read(0x10000000, 8) == b"firmware"
        from devmodel.errors import DmaFault

        with pytest.raises(DmaFault):
            server.device.dma.write(0x10000000, b"x")


def test_window_without_fd_accepted(server: ServerThread, client: VfioUserClient) -> None:
    client.dma_map(0xFFFC0000, 0x40000, 1)  # the BIOS window QEMU maps without an fd
    w = server.device.dma.find(0xFFFC0000)
    assert w is not None and w.view is None


def test_unmap_exact_range_and_all(server: ServerThread, client: VfioUserClient) -> None:
    dma = server.device.dma
    for i in range(8):
        client.dma_map(0x40000000 + i * 0x1000, 0x1000, 3)  # vIOMMU style: one page per map
    echo = client.dma_unmap(0x40000000, 0x1000)
    assert len(echo) == 24
    assert dma.find(0x40000000) is None and dma.find(0x40001000) is not None
    client.dma_unmap(0x40000000, 0x100000)  # a range that matches no single map
    assert all(dma.find(0x40000000 + i * 0x1000) is None for i in range(8))
    client.dma_unmap(0x50000000, 0x1000)  # covers nothing: success, nothing changes
    assert dma.find(0) is not None
    client.dma_unmap(0, 0, DmaUnmapFlags.ALL)
    assert len(dma) == 0


def test_unmap_straddling_range_rejected_whole(server: ServerThread, client: VfioUserClient) -> None:
    client.dma_map(0x40000000, 0x2000, 3)
    client.dma_map(0x40002000, 0x2000, 3)
    with pytest.raises(ErrorReply) as e:
        client.dma_unmap(0x40000000, 0x3000)
    assert e.value.errno == errno.EINVAL
    assert server.device.dma.find(0x40000000) is not None and server.device.dma.find(0x40002000) is not None


def test_unmap_repoints_ggtt_at_scratch_and_map_revives(
    server: ServerThread, client: VfioUserClient, memory: GuestMemory
) -> None:
    ggtt = server.vgpu.ggtt
    with GuestMemory(0x100000, base=0x20000000) as extra:
        client.map_memory(extra)
        extra.write(0x20005000, b"before unmap")
        client.write64(0, GGTT + 3 * 8, 0x20005000 | 1)
        assert client.region_read(2, 3 << 12, 12) == b"before unmap"
        client.dma_unmap(0x20000000, 0x100000)
        # By the time the reply came back the shadow points at scratch.
        assert ggtt.shadow_hfn(3) is None
        assert client.region_read(2, 3 << 12, 12) == bytes(12)
        assert client.read64(0, GGTT + 3 * 8) == 0x20005000 | 1  # the guest's entry is unchanged
        client.map_memory(extra)
        assert ggtt.shadow_hfn(3) is not None
        assert client.region_read(2, 3 << 12, 12) == b"before unmap"


def test_gfn_outside_guest_ram_reads_zero(client: VfioUserClient) -> None:
    client.write64(0, GGTT, (0x7FFF0000 << 12) | 1)
    assert client.read64(0, GGTT) == (0x7FFF0000 << 12) | 1
    client.region_write(2, 0, b"dropped")
    assert client.region_read(2, 0, 7) == bytes(7)


def test_split_ggtt_write_waits_for_both_halves(
    server: ServerThread, client: VfioUserClient, memory: GuestMemory
) -> None:
    memory.write(0x9000, b"split")
    entry = 0x9000 | 1
    client.write32(0, GGTT + 8, entry & 0xFFFFFFFF)
    assert server.vgpu.ggtt.shadow_hfn(1) is None  # half an entry maps nothing yet
    client.write32(0, GGTT + 12, entry >> 32)
    assert client.region_read(2, 1 << 12, 5) == b"split"
