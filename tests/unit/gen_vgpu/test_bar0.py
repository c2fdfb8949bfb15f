"""BAR0 of the GEN vGPU: the PVINFO page, the virtual register file, access-size rules,
GFX_FLSH_CNTL, reset, and the WRITE_MULTI GGTT path against single writes."""

from __future__ import annotations

import struct

import pytest

from devmodel.device.device import ResetKind
from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.errors import OutOfRange
from devmodel.testing import GuestMemory
from gen_vgpu import GenVgpu, Platform
from gen_vgpu.gtt.ggtt import GGTT_ENTRY_COUNT

MiB = 1 << 20
PVINFO = 0x78000
GGTT = 8 * MiB
GFX_FLSH_CNTL = 0x101008
RW = PROT_READ | PROT_WRITE


@pytest.fixture
def dev() -> GenVgpu:
    return GenVgpu(Platform.BDW)


@pytest.fixture
def mem():
    m = GuestMemory(2 * MiB)
    yield m
    m.close()


def r32(dev, off):
    return int.from_bytes(dev.region_read(0, off, 4), "little")


def r64(dev, off):
    return int.from_bytes(dev.region_read(0, off, 8), "little")


def w32(dev, off, v):
    dev.region_write(0, off, (v & 0xFFFFFFFF).to_bytes(4, "little"))


def w64(dev, off, v):
    dev.region_write(0, off, v.to_bytes(8, "little"))


def test_region_sizes(dev):
    assert dev.region(0).size == 16 * MiB
    assert dev.region(2).size == 256 * MiB
    assert dev.region(4).size == 0


# --- PVINFO --------------------------------------------------------------------------------


@pytest.mark.parametrize("platform", [Platform.BDW, Platform.SKL])
def test_pvinfo_magic(platform):
    dev = GenVgpu(platform)
    assert r64(dev, PVINFO) == 0x4776544776544776
    assert dev.region_read(0, PVINFO, 8) == b"vGTvGTvG"
    lo, hi = r32(dev, PVINFO), r32(dev, PVINFO + 4)
    assert (lo, hi) == (0x76544776, 0x47765447)


def test_pvinfo_version_id_caps(dev):
    major, minor = struct.unpack("<HH", dev.region_read(0, PVINFO + 8, 4))
    assert (major, minor) == (1, 0)
    assert r32(dev, PVINFO + 0x0C) == 0  # vgt_id
    caps = r32(dev, PVINFO + 0x10)
    assert caps & (1 << 2)  # full 48-bit PPGTT
    assert not caps & (1 << 5)  # no PV submission


def test_pvinfo_avail_rs(dev):
    mbase, msize, hbase, hsize, fences = struct.unpack("<5I", b"".join(
        dev.region_read(0, PVINFO + 0x40 + 4 * i, 4) for i in range(5)
    ))
    assert (mbase, msize) == (0, 256 * MiB)  # the aperture slice: all of BAR2, at graphics address 0
    assert hbase == 256 * MiB and hbase + hsize == 4 << 30  # the rest of the 4 GiB GGTT
    assert fences > 0


def test_pvinfo_avail_rs_follows_aperture_size():
    dev = GenVgpu(Platform.BDW, aperture_size=128 * MiB)
    assert r32(dev, PVINFO + 0x44) == 128 * MiB
    assert r32(dev, PVINFO + 0x48) == 128 * MiB


def test_pvinfo_host_half_is_read_only(dev):
    before = [r32(dev, off) for off in range(PVINFO, PVINFO + 0x800, 4)]
    for off in range(PVINFO, PVINFO + 0x800, 4):
        w32(dev, off, 0xFFFFFFFF)
    w64(dev, PVINFO, 0)
    assert [r32(dev, off) for off in range(PVINFO, PVINFO + 0x800, 4)] == before


def test_pvinfo_guest_half_is_storage(dev):
    w32(dev, PVINFO + 0x800, 0x11)
    w32(dev, PVINFO + 0x804, 0x22)  # display_ready
    w32(dev, PVINFO + 0xFFC, 0x33)
    assert (r32(dev, PVINFO + 0x800), r32(dev, PVINFO + 0x804), r32(dev, PVINFO + 0xFFC)) == (0x11, 0x22, 0x33)


# --- the register file ---------------------------------------------------------------------


@pytest.mark.parametrize("off", [0x0, 0x2030, 0x44200, 0x22034, 0x1FFFFC])
def test_unlisted_register_reads_back(dev, off):
    assert r32(dev, off) == 0
    w32(dev, off, 0xCAFEF00D)
    assert r32(dev, off) == 0xCAFEF00D


def test_eight_byte_register_access_is_two_dwords(dev):
    w64(dev, 0x2030, 0x1122334455667788)
    assert r32(dev, 0x2030) == 0x55667788 and r32(dev, 0x2034) == 0x11223344
    assert r64(dev, 0x2030) == 0x1122334455667788
    w32(dev, 0x2034, 0xAABBCCDD)
    assert r64(dev, 0x2030) == 0xAABBCCDD55667788


@pytest.mark.parametrize(
    "off,n",
    [(0x2030, 1), (0x2030, 2), (0x2030, 3), (0x2032, 4), (0x2034, 8), (0x2030, 16), (GGTT + 2, 4), (GGTT + 4, 8),
     (GGTT, 2), (GGTT, 1)],
)
def test_unaligned_or_odd_sized_accesses_read_zero_and_are_ignored(dev, off, n):
    w64(dev, 0x2030, 0x1122334455667788)
    w64(dev, 0x2038, 0x99AABBCCDDEEFF00)
    w64(dev, GGTT, 0x0000000012345003)
    ignored = dev.bar0.ignored_accesses
    assert dev.region_read(0, off, n) == bytes(n)
    dev.region_write(0, off, b"\xff" * n)
    assert dev.bar0.ignored_accesses == ignored + 2
    assert r64(dev, 0x2030) == 0x1122334455667788
    assert r64(dev, 0x2038) == 0x99AABBCCDDEEFF00
    assert r64(dev, GGTT) == 0x0000000012345003


@pytest.mark.parametrize("off", [2 * MiB, 4 * MiB, 8 * MiB - 8])
def test_between_registers_and_ggtt_reads_zero(dev, off):
    w64(dev, off, 0xFFFFFFFFFFFFFFFF)
    assert r64(dev, off) == 0 and r32(dev, off) == 0


def test_access_past_bar0_is_out_of_range(dev):
    with pytest.raises(OutOfRange):
        dev.region_read(0, 16 * MiB - 4, 8)
    with pytest.raises(OutOfRange):
        dev.region_write(0, 16 * MiB, bytes(4))


def test_gfx_flsh_cntl_accepted(dev, mem):
    dev.dma.add(0, 0x10000, RW, mem.dup_fd(), 0)
    w64(dev, GGTT + 8, (0x3 << 12) | 1)
    shadow = dev.ggtt.shadow[1]
    w32(dev, GFX_FLSH_CNTL, 1)
    assert r32(dev, GFX_FLSH_CNTL) == 0
    assert dev.ggtt.shadow[1] == shadow
    assert r64(dev, GGTT + 8) == (0x3 << 12) | 1
    assert dev.bar0.ignored_accesses == 0


# --- reset ---------------------------------------------------------------------------------


def test_reset_zeroes_registers_and_ggtt(dev, mem):
    dev.dma.add(0, 0x10000, RW, mem.dup_fd(), 0)
    pvinfo = [r32(dev, off) for off in range(PVINFO, PVINFO + 0x800, 4)]
    w32(dev, 0x2030, 0x1234)
    w32(dev, PVINFO + 0x800, 1)
    for i in (0, 5, GGTT_ENTRY_COUNT - 1):
        w64(dev, GGTT + 8 * i, (0x2 << 12) | 0x3)
    w32(dev, GGTT + 8 * 7, (0x4 << 12) | 1)  # a pending half
    assert dev.ggtt.shadow_hfn(5) is not None
    mem.write(0x2000, b"data")
    assert dev.region_read(2, 0, 4) == b"data"
    dev.reset(ResetKind.DEVICE)
    assert r32(dev, 0x2030) == 0 and r32(dev, PVINFO + 0x800) == 0
    assert [r32(dev, off) for off in range(PVINFO, PVINFO + 0x800, 4)] == pvinfo
    for i in (0, 5, 7, GGTT_ENTRY_COUNT - 1):
        assert r64(dev, GGTT + 8 * i) == 0
        assert dev.ggtt.shadow_hfn(i) is None
    assert dev.region_read(2, 0, 4) == bytes(4)
    assert dev.ggtt.guest.count(0) == GGTT_ENTRY_COUNT
    assert dev.ggtt.shadow.count(dev.ggtt.shadow[0]) == GGTT_ENTRY_COUNT
    # The half written before the reset is forgotten: one half after it is still pending.
    w32(dev, GGTT + 8 * 7 + 4, 0)
    assert r64(dev, GGTT + 8 * 7) == 0 and dev.ggtt.shadow_hfn(7) is None
    w32(dev, GGTT + 8 * 7, (0x4 << 12) | 1)
    assert dev.ggtt.shadow_hfn(7) == dev.dma.gfn_to_hfn(4)
    # The DMA map is the client's: it survives the reset.
    assert len(dev.dma) == 1


# --- WRITE_MULTI and bulk GGTT writes ------------------------------------------------------


def pair(mem: GuestMemory) -> tuple[GenVgpu, GenVgpu]:
    devs = GenVgpu(), GenVgpu()
    for d in devs:
        d.dma.add(0x0, 0x8000, RW, mem.dup_fd(), 0x0)
        d.dma.add(0x10000, 0x4000, PROT_READ, mem.dup_fd(), 0x10000)
    return devs


def same_state(a: GenVgpu, b: GenVgpu) -> None:
    assert a.ggtt.guest == b.ggtt.guest
    assert a.ggtt.shadow == b.ggtt.shadow
    assert a.ggtt.pending_halves() == b.ggtt.pending_halves()
    assert a.ggtt.owner == b.ggtt.owner
    assert bytes(a.registers.dwords) == bytes(b.registers.dwords)
    assert a.region_read(7, 0, 256) == b.region_read(7, 0, 256)


def entry(gfn: int, flags: int = 0x3) -> bytes:
    return ((gfn << 12) | flags).to_bytes(8, "little")


def test_write_multi_matches_single_writes(mem):
    a, b = pair(mem)
    writes = [
        (GGTT + 8 * 0, 0, entry(0x3)),
        (GGTT + 8 * 1, 0, entry(0x10, 0x7)),  # read-only window
        (GGTT + 8 * 2, 0, entry(0x99)),  # outside every window
        (GGTT + 8 * 3, 0, entry(0x4, 0x2)),  # not present
        (GGTT + 8 * 4, 0, entry(0x5)[:4]),  # a low half alone: pending
        (GGTT + 8 * 5, 0, entry(0x6)[:4]),
        (GGTT + 8 * 5 + 4, 0, entry(0x6)[4:]),  # completed by its high half
        (GGTT + 8 * 6 + 4, 0, b"\x00\x00"),  # odd size: ignored
        (GGTT + 8 * (GGTT_ENTRY_COUNT - 1), 0, entry(0x7)),
        (GGTT + 8 * 0, 0, entry(0x2)),  # rewritten later in the batch
        (0x2030, 0, (0x40).to_bytes(4, "little")),
        (PVINFO, 0, bytes(8)),  # read-only
        (GFX_FLSH_CNTL, 0, (1).to_bytes(4, "little")),
        (0x4, 7, (0x6).to_bytes(2, "little")),  # config: MEM | MASTER
        (0x0, 2, b"through the aperture"),  # graphics page 0 -> gfn 2
    ]
    for offset, index, data in writes:
        a.region_write(index, offset, data)
    before = mem.read(0, 0x8000)
    mem.write(0x2000, bytes(0x1000))  # undo the aperture write so b's lands on the same page
    b.region_write_multi(writes)
    assert mem.read(0, 0x8000) == before
    same_state(a, b)
    assert b.ggtt.shadow_hfn(0) == b.dma.gfn_to_hfn(2)
    assert b.ggtt.shadow_hfn(2) is None and b.ggtt.shadow_hfn(3) is None and b.ggtt.shadow_hfn(4) is None
    assert b.ggtt.shadow_hfn(5) == b.dma.gfn_to_hfn(6)
    assert b.region_read(0, GGTT + 8 * 4, 8) == entry(0x5)[:4] + bytes(4)


@pytest.mark.parametrize("size", [16, 24, 64])
def test_multi_entry_ggtt_write_is_ignored(mem, size):
    """The contract allows 4- and 8-byte accesses only; a longer write changes nothing."""
    a, b = pair(mem)
    w32(b, GGTT + 8 * 2, 0x5001)  # a pending half survives the ignored write
    w32(a, GGTT + 8 * 2, 0x5001)
    b.region_write(0, GGTT, b"".join(entry(0x1 + i) for i in range(size // 8)))
    same_state(a, b)
    assert b.bar0.ignored_accesses == 1
    assert b.region_read(0, GGTT, 8) == bytes(8)


def test_multi_entry_ggtt_write_past_the_end_is_rejected(dev):
    with pytest.raises(OutOfRange):
        dev.region_write(0, GGTT + 8 * (GGTT_ENTRY_COUNT - 1), bytes(16))
    assert dev.ggtt.guest[GGTT_ENTRY_COUNT - 1] == 0
