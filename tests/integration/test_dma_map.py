"""DMA_MAP / DMA_UNMAP over a real socket with real fds, the limits VERSION advertises, seals,
window permissions through the aperture, and the GGTT's coupling to them."""

from __future__ import annotations

import errno
import os

import pytest

from devmodel.device.dma import MAX_WINDOW_SIZE
from devmodel.errors import DmaFault, ErrorReply
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.vfio_user.connection import ServerOptions
from devmodel.vfio_user.constants import MAX_DMA_MAPS, SERVER_MAX_MSG_FDS, Command, DmaUnmapFlags
from devmodel.vfio_user.layouts import DMA_MAP
from gen_vgpu import GenVgpu

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
        # server closed every fd it got and its mappings keep none.
        assert _open_fds() == before + 2
        raw_client.dma_unmap(0, 0, DmaUnmapFlags.ALL)
        assert _open_fds() == before + 2


def test_overlap_eexist_and_duplicate_noop(server: ServerThread, client: VfioUserClient, memory: GuestMemory) -> None:
    dma = server.device.dma

    def state() -> tuple:
        return (
            dma.windows,
            [(w.hfn_base, w.view, w.mapping) for w in dma.windows],
            dma.free_window_frames,
            dma.generation,
        )

    before = state()
    with pytest.raises(ErrorReply) as e:
        client.dma_map(0x1000, 0x1000, 3)  # inside the RAM window, no fd
    assert e.value.errno == errno.EEXIST
    assert state() == before
    fds = _open_fds()
    fd = memory.dup_fd()
    try:
        client.dma_map(0, memory.size, 3, fd)  # exact duplicate of the same file: accepted
    finally:
        os.close(fd)
    assert state() == before  # same windows, frames, views and mappings
    assert _open_fds() == fds  # the server closed the duplicate's fd
    memory.write(0x40, b"still mapped")
    assert dma.read(0x40, 12) == b"still mapped"


def test_read_only_window(server: ServerThread, client: VfioUserClient) -> None:
    with GuestMemory(0x10000, base=0x10000000) as rom:
        rom.write(0x10000000, b"firmware")
        client.map_memory(rom, flags=1)
        assert server.device.dma.read(0x10000000, 8) == b"firmware"
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


# --- permissions through the aperture ------------------------------------------------------


def test_aperture_honours_window_protection(server: ServerThread, client: VfioUserClient) -> None:
    with GuestMemory(0x2000, base=0x30000000) as ro, GuestMemory(0x2000, base=0x30100000) as wo:
        ro.write(0x30000000, b"read-only page")
        wo.write(0x30100000, b"write-only page")
        client.map_memory(ro, flags=1)
        client.map_memory(wo, flags=2)
        client.write64(0, GGTT + 0 * 8, 0x30000000 | 3)
        client.write64(0, GGTT + 1 * 8, 0x30100000 | 3)
        assert client.region_read(2, 0, 14) == b"read-only page"
        client.region_write(2, 0, b"overwritten")
        assert ro.read(0x30000000, 14) == b"read-only page"  # the write was dropped
        assert client.region_read(2, 1 << 12, 15) == bytes(15)  # never read a write-only window
        client.region_write(2, 1 << 12, b"WRITE")
        assert wo.read(0x30100000, 15) == b"WRITE-only page"


# --- limits VERSION advertises are the ones enforced ---------------------------------------


def _server_with(sock_dir: str, name: str, options: ServerOptions) -> ServerThread:
    return ServerThread(GenVgpu(), os.path.join(sock_dir, name), options)


def test_max_dma_maps_reaches_the_dma_map(sock_dir: str) -> None:
    st = _server_with(sock_dir, "maps.sock", ServerOptions(max_dma_maps=4))
    try:
        with VfioUserClient.connect(st.path) as c:
            assert c.negotiate()["max_dma_maps"] == 4
            assert st.device.dma.max_windows == 4
            for i in range(4):
                c.dma_map(0x40000000 + i * 0x1000, 0x1000, 3)
            with pytest.raises(ErrorReply) as e:
                c.dma_map(0x50000000, 0x1000, 3)
            assert e.value.errno == errno.ENOSPC
            c.dma_unmap(0x40000000, 0x1000)
            c.dma_map(0x50000000, 0x1000, 3)
    finally:
        st.stop()


def test_default_limits_are_the_declared_ones(server: ServerThread, raw_client: VfioUserClient) -> None:
    caps = raw_client.negotiate()
    assert caps["max_dma_maps"] == MAX_DMA_MAPS == server.device.dma.max_windows
    assert caps["max_msg_fds"] == SERVER_MAX_MSG_FDS


@pytest.mark.parametrize("count", [SERVER_MAX_MSG_FDS + 1, 64, 253])
def test_more_fds_than_max_msg_fds_is_einval_and_closes_them(
    server: ServerThread, client: VfioUserClient, memory: GuestMemory, count: int
) -> None:
    fds = [memory.dup_fd() for _ in range(count)]
    before = _open_fds()  # the test's own fds included; the server's copies come and go
    try:
        payload = DMA_MAP.pack(DMA_MAP.size, 3, 0, 0x60000000, 0x1000)
        with pytest.raises(ErrorReply) as e:
            client.request(Command.DMA_MAP, payload, fds)
        assert e.value.errno == errno.EINVAL
    finally:
        for fd in fds:
            os.close(fd)
    assert _open_fds() == before - count
    assert server.device.dma.find(0x60000000) is None
    # The connection goes on.
    client.write32(0, 0x4000, 5)
    assert client.read32(0, 0x4000) == 5


# --- host frames over the socket -----------------------------------------------------------


def test_map_unmap_pairs_of_huge_fd_less_windows_never_run_out(server: ServerThread, client: VfioUserClient) -> None:
    """Without frame reuse the fifth pair of 8 TiB windows exhausted 2^33 frames for good."""
    dma = server.device.dma
    free = dma.free_window_frames
    for i in range(32):
        iova = (1 + i % 3) << 44
        client.dma_map(iova, MAX_WINDOW_SIZE, 3)
        client.dma_unmap(iova, MAX_WINDOW_SIZE)
    assert dma.free_window_frames == free
    with GuestMemory(0x1000, base=0x70000000) as mem:
        client.map_memory(mem)  # a later client map still gets frames


# --- seals ---------------------------------------------------------------------------------


def test_unsealed_memory_is_accepted_by_default(server: ServerThread, client: VfioUserClient) -> None:
    with GuestMemory(0x2000, base=0x30000000, sealed=False) as mem:
        client.map_memory(mem)
        mem.write(0x30000000, b"unsealed")
        assert server.device.dma.read(0x30000000, 8) == b"unsealed"


def test_unsealed_memory_is_refused_on_request(server: ServerThread, client: VfioUserClient) -> None:
    server.device.dma.refuse_unsealed = True
    with GuestMemory(0x2000, base=0x30000000, sealed=False) as mem:
        with pytest.raises(ErrorReply) as e:
            client.map_memory(mem)
        assert e.value.errno == errno.EPERM
        assert server.device.dma.find(0x30000000) is None
    with GuestMemory(0x2000, base=0x30000000) as sealed:
        client.map_memory(sealed)  # a memfd sealed as QEMU seals it
