"""BAR0 of the GEN vGPU (contract v2 §2): the PVINFO page, the virtual register file, access
widths (1/2/4/8-byte registers, 4/8-byte GGTT), the MCHBAR mirror and fences, GFX_FLSH_CNTL,
reset, and the WRITE_MULTI GGTT path against single writes."""

from __future__ import annotations

import logging
import struct

import pytest

from devmodel.device.device import ResetKind
from devmodel.device.dma import PROT_READ, PROT_WRITE
from devmodel.device.registers import Register, RegisterFile
from devmodel.errors import OutOfRange
from devmodel.testing import GuestMemory
from gen_vgpu import GenVgpu, Platform
from gen_vgpu.bar0 import Bar0
from gen_vgpu.gtt.ggtt import GGTT_ENTRY_COUNT
from gen_vgpu.mmio import regs

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


def test_pvinfo_version_readable_as_i915_reads_it(dev):
    """i915's intel_vgpu_detect reads version_major with readw."""
    assert dev.region_read(0, PVINFO + 8, 2) == (1).to_bytes(2, "little")
    assert dev.region_read(0, PVINFO + 0xA, 2) == (0).to_bytes(2, "little")
    major, minor = struct.unpack("<HH", dev.region_read(0, PVINFO + 8, 4))
    assert (major, minor) == (1, 0)
    assert [dev.region_read(0, PVINFO + 8 + i, 1) for i in range(4)] == [b"\x01", b"\x00", b"\x00", b"\x00"]


def test_pvinfo_id_and_caps(dev):
    assert r32(dev, PVINFO + 0x0C) == 1  # vgt_id
    # Full PPGTT and HWSP emulation (i915 refuses the vGPU without either); no huge GTT.
    assert r32(dev, PVINFO + 0x10) == 0x0C


def avail_rs(dev: GenVgpu) -> tuple[int, ...]:
    return struct.unpack("<5I", b"".join(dev.region_read(0, PVINFO + 0x40 + 4 * i, 4) for i in range(5)))


def test_pvinfo_avail_rs(dev):
    # The aperture slice is all of BAR2 at graphics address 0; the hidden slice follows it.
    assert avail_rs(dev) == (0, 256 * MiB, 256 * MiB, 256 * MiB, 4)
    gmem = dev.graphics_memory
    assert gmem.contains(0, 512 * MiB) and not gmem.contains(512 * MiB - 4096, 8192)


@pytest.mark.parametrize(
    "aperture,hidden",
    [(128 * MiB, 256 * MiB), (512 * MiB, 64 * MiB), (256 * MiB, 0), (1 << 30, 3 << 30), (256 * MiB, 4096)],
)
def test_pvinfo_avail_rs_follows_the_configuration(aperture, hidden):
    dev = GenVgpu(Platform.BDW, aperture_size=aperture, hidden_size=hidden)
    assert avail_rs(dev) == (0, aperture, aperture, hidden, 4)
    assert dev.region(2).size == aperture


def test_plugin_create_takes_the_sizes():
    from gen_vgpu import plugin

    dev = plugin.create(platform="skl", aperture_size=64 * MiB, hidden_size=32 * MiB)
    assert isinstance(dev, GenVgpu)
    assert avail_rs(dev) == (0, 64 * MiB, 64 * MiB, 32 * MiB, 4)
    assert dev.info.platform is Platform.SKL


@pytest.mark.parametrize(
    "aperture,hidden,why",
    [
        (256 * MiB, (4 << 30) - 256 * MiB + 4096, "exceed"),
        (4 << 30, 4096, "exceed"),
        (96 * MiB, 0, "power of two"),
        (256 * MiB, 100, "multiple of 4 KiB"),
        (256 * MiB, -4096, "multiple of 4 KiB"),
    ],
)
def test_bad_graphics_memory_sizes_are_refused(aperture, hidden, why):
    with pytest.raises(ValueError, match=why):
        GenVgpu(Platform.BDW, aperture_size=aperture, hidden_size=hidden)


GUEST_FIELDS = [0x804, 0x818, 0x830, 0x834, *range(0x838, 0x858, 4), 0x858, 0x85C]


def test_pvinfo_host_fields_and_unnamed_dwords_ignore_writes(dev):
    """Everything in the page but the guest's fields keeps its value (0 where unnamed)."""
    others = [off for off in range(0, 0x1000, 4) if off not in GUEST_FIELDS]
    before = {off: r32(dev, PVINFO + off) for off in others}
    assert all(v == 0 for off, v in before.items() if off >= 0x54)
    for off in others:
        w32(dev, PVINFO + off, 0xFFFFFFFF)
        dev.region_write(0, PVINFO + off + 2, b"\xff\xff")
    w64(dev, PVINFO, 0)
    assert {off: r32(dev, PVINFO + off) for off in others} == before


def test_pvinfo_guest_fields_are_recorded(dev):
    for k, off in enumerate(GUEST_FIELDS):
        w32(dev, PVINFO + off, 0x1000 + k)
    assert [r32(dev, PVINFO + off) for off in GUEST_FIELDS] == [0x1000 + k for k in range(len(GUEST_FIELDS))]
    w64(dev, PVINFO + 0x838 + 8 * 3, 0x0000001234567000)  # pdp[3], as one 8-byte write
    assert dev.pvinfo_pdps()[3] == 0x1234567000
    dev.reset(ResetKind.DEVICE)
    assert [r32(dev, PVINFO + off) for off in GUEST_FIELDS] == [0] * len(GUEST_FIELDS)


def test_g2v_notify_is_recorded_counted_and_hands_ppgtt_roots_to_the_hook(dev, caplog):
    w64(dev, PVINFO + 0x838, 0x0000000ABCDE000)  # pdp[0]: an L4 root
    with caplog.at_level(logging.INFO, logger="gen_vgpu.device"):
        w32(dev, PVINFO + 0x818, 4)  # PPGTT L4 create
        w32(dev, PVINFO + 0x818, 5)  # destroy
        w32(dev, PVINFO + 0x818, 6)  # execlist context create: accepted
        w32(dev, PVINFO + 0x818, 0x99)
        w32(dev, PVINFO + 0x818, 0x98)
    assert r32(dev, PVINFO + 0x818) == 0x98  # the last value written reads back
    assert dev.g2v_notifications == {"PPGTT_L4_CREATE": 1, "PPGTT_L4_DESTROY": 1,
                                     "EXECLIST_CONTEXT_CREATE": 1, "ignored": 2}
    text = caplog.text
    assert "PPGTT_L4_CREATE for roots 0xabcde000" in text and "PPGTT_L4_DESTROY" in text
    assert text.count("ignoring unknown value") == 1  # logged once
    dev.region_write(0, PVINFO + 0x818, b"\x02")  # a 1-byte write acts as a 4-byte write
    assert dev.g2v_notifications["PPGTT_L3_CREATE"] == 1


# --- the register file and access widths ---------------------------------------------------


@pytest.mark.parametrize("off", [0x0, 0x2030, 0x7000, 0x22034, 0x1FFFFC])
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


def test_narrow_register_reads_return_those_bytes(dev):
    w32(dev, 0x2030, 0x11223344)
    assert [dev.region_read(0, 0x2030 + i, 1)[0] for i in range(4)] == [0x44, 0x33, 0x22, 0x11]
    assert dev.region_read(0, 0x2030, 2) == b"\x44\x33" and dev.region_read(0, 0x2032, 2) == b"\x22\x11"


def test_narrow_register_writes_merge(dev):
    w32(dev, 0x2030, 0x11223344)
    dev.region_write(0, 0x2031, b"\xaa")
    assert r32(dev, 0x2030) == 0x1122AA44
    dev.region_write(0, 0x2032, b"\xbb\xcc")
    assert r32(dev, 0x2030) == 0xCCBBAA44
    assert r32(dev, 0x2034) == 0  # nothing spills into the next register
    assert dev.bar0.ignored_accesses == 0


def test_narrow_write_to_w1c_and_masked_registers_changes_only_the_bytes_written():
    """Bytes a narrow write leaves alone contribute no write-1-to-clear bits and no mask bits:
    the untouched bytes change nothing."""
    rf = RegisterFile(regs.MMIO_SIZE)
    rf.add(Register(0x44308, "IIR", w1c=0xFFFFFFFF))
    rf.add(Register(0x229C, "RING_MODE", masked=True))
    dev = GenVgpu()
    bar0 = Bar0(rf, dev.ggtt)
    rf.set(0x44308, 0x01010101)
    bar0.write(0x44308, b"\x01")
    assert rf.get(0x44308) == 0x01010100
    bar0.write(0x4430A, b"\x01\x00")
    assert rf.get(0x44308) == 0x01000100
    rf.set(0x229C, 0x8001)
    bar0.write(0x229C, b"\x00")  # value byte without its mask: no change
    assert rf.get(0x229C) == 0x8001
    bar0.write(0x229E, b"\x01\x80")  # the mask half alone selects bits of the current value
    assert rf.get(0x229C) == 0x8001
    bar0.write(0x229C, b"\x00\x00\x01\x00")  # a whole write with its mask changes them
    assert rf.get(0x229C) == 0x8000


@pytest.mark.parametrize(
    "off,n",
    [(0x2031, 2), (0x2030, 3), (0x2032, 4), (0x2034, 8), (0x2030, 16), (GGTT + 2, 4), (GGTT + 4, 8),
     (GGTT, 2), (GGTT, 1), (GGTT + 7, 1), (GGTT + 8, 16)],
)
def test_unaligned_or_odd_sized_accesses_read_zero_and_are_ignored(dev, off, n):
    w64(dev, 0x2030, 0x1122334455667788)
    w64(dev, 0x2038, 0x99AABBCCDDEEFF00)
    w64(dev, GGTT, 0x0000000012345003)
    w64(dev, GGTT + 8, 0x0000000012346003)
    ignored = dev.bar0.ignored_accesses
    assert dev.region_read(0, off, n) == bytes(n)
    dev.region_write(0, off, b"\xff" * n)
    assert dev.bar0.ignored_accesses == ignored + 2
    assert r64(dev, 0x2030) == 0x1122334455667788
    assert r64(dev, 0x2038) == 0x99AABBCCDDEEFF00
    assert r64(dev, GGTT) == 0x0000000012345003
    assert r64(dev, GGTT + 8) == 0x0000000012346003


def test_ignored_accesses_are_logged_once_per_kind(dev, caplog):
    with caplog.at_level(logging.WARNING, logger="gen_vgpu.bar0"):
        for _ in range(3):
            dev.region_read(0, 0x2031, 2)
            dev.region_read(0, GGTT, 2)
            dev.region_read(0, 4 * MiB, 4)
    assert caplog.text.count("unaligned or odd-sized") == 1 and caplog.text.count("unbacked") == 1
    assert dev.bar0.ignored_accesses == 9


def test_mchbar_mirror_is_plain_but_rp_state_cap(dev):
    cap = r32(dev, 0x145998)
    assert cap & 0xFF > cap >> 16 & 0xFF > 0  # RP0 > RPn: i915's RPS runs
    w32(dev, 0x145998, 0)
    assert r32(dev, 0x145998) == cap  # read-only
    for off in (0x140000, 0x145994, 0x17FFFC):
        w32(dev, off, 0x5A5A0000 | off & 0xFFFF)
        assert r32(dev, off) == 0x5A5A0000 | off & 0xFFFF


def test_fence_registers_are_plain_64_bit(dev):
    for i in range(4):
        w64(dev, 0x100000 + 8 * i, 0x0000_1000_0000_0001 * (i + 1))
    assert [r64(dev, 0x100000 + 8 * i) for i in range(4)] == [0x0000_1000_0000_0001 * (i + 1) for i in range(4)]


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
    w32(dev, PVINFO + 0x804, 1)
    for i in (0, 5, GGTT_ENTRY_COUNT - 1):
        w64(dev, GGTT + 8 * i, (0x2 << 12) | 0x3)
    w32(dev, GGTT + 8 * 7, (0x4 << 12) | 1)  # a pending half
    assert dev.ggtt.shadow_hfn(5) is not None
    mem.write(0x2000, b"data")
    assert dev.region_read(2, 0, 4) == b"data"
    dev.reset(ResetKind.DEVICE)
    assert r32(dev, 0x2030) == 0 and r32(dev, PVINFO + 0x804) == 0
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
