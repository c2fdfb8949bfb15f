"""QEMU's own vfio-user client against the device model, QEMU under the qtest accelerator:
the test plays the CPU (config mechanism #1 on ports 0xcf8/0xcfc, MMIO reads and writes).
No guest OS, no firmware: the test programs the BARs itself."""
import pytest

import harness

pytestmark = pytest.mark.qemu

DEV = (3, 0)                  # the harness puts the device at 00:03.0
BAR0, BAR2 = 0xE0000000, 0xC0000000   # free space in q35's PCI hole (ECAM is at 0xb0000000)
PVINFO = 0x78000
PVINFO_MAGIC = 0x4776544776544776
GGTT = 0x800000


@pytest.fixture
def qtest(device_model, outdir):
    q = harness.Qtest(outdir, socket=device_model.socket).start()
    yield q
    q.kill()


def program_bars(q):
    """BAR0 and BAR2 (64-bit) at fixed addresses, then memory decoding and bus master on."""
    q.cfg_write(DEV, 0x10, BAR0)
    q.cfg_write(DEV, 0x14, 0)
    q.cfg_write(DEV, 0x18, BAR2)
    q.cfg_write(DEV, 0x1C, 0)
    q.cfg_write(DEV, 0x04, 0x0006, 2)


def test_config_space_identity(qtest):
    q = qtest
    assert q.cfg_read(DEV, 0x00) == 0x16168086
    assert q.cfg_read(DEV, 0x08) >> 8 == 0x038000
    assert q.cfg_read(DEV, 0x08, 1) == 0x09
    assert q.cfg_read(DEV, 0x0E, 1) & 0x7F == 0
    assert q.cfg_read(DEV, 0x3D, 1) == 1, "interrupt pin A"
    assert q.cfg_read(DEV, 0x06, 2) & 0x10, "status: capability list"
    caps: list[tuple[int, int]] = []
    ptr = q.cfg_read(DEV, 0x34, 1)
    while ptr and len(caps) < 16:
        caps.append((q.cfg_read(DEV, ptr, 1), ptr))
        ptr = q.cfg_read(DEV, ptr + 1, 1)
    assert (0x05, 0x90) in caps, "MSI capability at 0x90: %r" % caps


def test_bar_sizing(qtest):
    q = qtest
    for reg in range(0x10, 0x28, 4):
        q.cfg_write(DEV, reg, 0xFFFFFFFF)
    sizes = [q.cfg_read(DEV, reg) for reg in range(0x10, 0x28, 4)]
    assert sizes[0] == 0xFF000004, "BAR0: 16 MiB, 64-bit, not prefetchable"
    assert sizes[1] == 0xFFFFFFFF
    assert sizes[2] == 0xF000000C, "BAR2: 256 MiB, 64-bit, prefetchable"
    assert sizes[3] == 0xFFFFFFFF
    assert sizes[4:] == [0, 0], "no BAR4"


def test_mmio_through_qemu(qtest):
    q = qtest
    program_bars(q)
    q.writel(BAR0 + 0x4000, 0xDEADBEEF)
    assert q.readl(BAR0 + 0x4000) == 0xDEADBEEF
    q.writeq(BAR0 + 0x4008, 0x0123456789ABCDEF)
    assert q.readq(BAR0 + 0x4008) == 0x0123456789ABCDEF
    assert (q.readl(BAR0 + 0x4008), q.readl(BAR0 + 0x400C)) == (0x89ABCDEF, 0x01234567)
    assert q.readq(BAR0 + PVINFO) == PVINFO_MAGIC
    assert (q.readl(BAR0 + PVINFO), q.readl(BAR0 + PVINFO + 4)) == (0x76544776, 0x47765447)
    # Contract v2: a 1- or 2-byte register access reaches the bytes of the 32-bit register.
    q.writeb(BAR0 + 0x4000, 0x55)
    assert q.readl(BAR0 + 0x4000) == 0xDEADBE55, "a 1-byte write merges into the register"
    q.writew(BAR0 + 0x4002, 0x1234)
    assert q.readl(BAR0 + 0x4000) == 0x1234BE55
    assert q.readw(BAR0 + PVINFO + 8) == 1, "PVINFO version_major, read as i915 does"
    q.writeb(BAR0 + GGTT + 8 * 6, 0x55)
    assert q.readq(BAR0 + GGTT + 8 * 6) == 0, "a 1-byte GGTT write is ignored"
    # A GGTT entry reads back the guest's own value (not a present page: no DMA involved).
    q.writeq(BAR0 + GGTT + 8 * 5, 0x12345000)
    assert q.readq(BAR0 + GGTT + 8 * 5) == 0x12345000


def test_memory_decoding_off_hides_bar(qtest):
    q = qtest
    program_bars(q)
    q.writel(BAR0 + 0x4000, 0x600DF00D)
    q.cfg_write(DEV, 0x04, 0, 2)
    # QEMU unmaps the BAR; an unassigned read gives 0 under qtest, and never the register.
    assert q.readl(BAR0 + 0x4000) != 0x600DF00D, "BAR0 still decoded with memory decoding off"
    q.cfg_write(DEV, 0x04, 0x0002, 2)
    assert q.readl(BAR0 + 0x4000) == 0x600DF00D
