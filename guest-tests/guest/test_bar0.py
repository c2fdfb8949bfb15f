"""BAR0 through the sysfs resource mapping, as contract v2 §2 has it: register accesses of 1,
2, 4 and 8 bytes, the PVINFO page (read the way i915 reads it), the MCHBAR mirror, GGTT
accesses of 4 and 8 bytes only, BAR2 through a non-present GGTT entry."""
import sys

import gvtlib as g

SCRATCH = 0x4000  # an unlisted register range: reads back the last value written
MiB = 1 << 20
# PVINFO fields (i915's struct vgt_if).
PV_VERSION_MAJOR, PV_VERSION_MINOR, PV_VGT_ID, PV_CAPS = 0x08, 0x0A, 0x0C, 0x10
PV_AVAIL_RS, PV_DISPLAY_READY, PV_CURSOR_X = 0x40, 0x804, 0x830
GEN6_RP_STATE_CAP = 0x145998
HIDDEN_SIZE = 256 * MiB  # the device's default


def main():
    tap = g.Tap(21)
    try:
        dev = g.find_device()
        dev.enable_memory()
        bar0 = dev.bar(0)
    except (g.TestError, OSError) as e:
        tap.bail("cannot map BAR0: %s" % e)
    tap.ok(dev.command() & g.CMD_MEMORY, "memory decoding enabled")
    pv = g.PVINFO_BASE

    bar0.write32(SCRATCH, 0xDEADBEEF)
    tap.eq(bar0.read32(SCRATCH), 0xDEADBEEF, "4-byte write, 4-byte read back")
    bar0.write32(SCRATCH + 4, 0x12345678)
    tap.eq(bar0.read32(SCRATCH), 0xDEADBEEF, "a write to the next dword leaves it alone")

    bar0.write64(SCRATCH + 8, 0x0123456789ABCDEF)
    tap.eq(bar0.read64(SCRATCH + 8), 0x0123456789ABCDEF, "8-byte write, 8-byte read back")
    tap.eq((bar0.read32(SCRATCH + 8), bar0.read32(SCRATCH + 12)), (0x89ABCDEF, 0x01234567),
           "8-byte write, two 4-byte reads (little endian)")
    bar0.write32(SCRATCH + 12, 0xCAFEF00D)
    tap.eq(bar0.read64(SCRATCH + 8), 0xCAFEF00D89ABCDEF, "4-byte write to the high half, 8-byte read")

    tap.eq((bar0.read8(SCRATCH), bar0.read8(SCRATCH + 3), bar0.read16(SCRATCH + 2)), (0xEF, 0xDE, 0xDEAD),
           "1- and 2-byte reads return those bytes of the register")
    bar0.write8(SCRATCH + 1, 0x55)
    bar0.write16(SCRATCH + 2, 0xA5A5)
    tap.eq(bar0.read32(SCRATCH), 0xA5A555EF, "1- and 2-byte writes merge into the register")

    tap.eq(bar0.read64(pv), g.PVINFO_MAGIC, "PVINFO magic as one 8-byte read")
    tap.eq((bar0.read32(pv), bar0.read32(pv + 4)),
           (g.PVINFO_MAGIC & 0xFFFFFFFF, g.PVINFO_MAGIC >> 32), "PVINFO magic as two 4-byte reads")
    tap.eq((bar0.read16(pv + PV_VERSION_MAJOR), bar0.read16(pv + PV_VERSION_MINOR)), (1, 0),
           "PVINFO version 1.0 through 2-byte reads (i915's readw)")
    tap.eq(bar0.read32(pv + PV_VERSION_MAJOR), 0x00000001, "PVINFO version as one dword")
    tap.eq(bar0.read32(pv + PV_VGT_ID), 1, "PVINFO vgt_id")
    tap.eq(bar0.read32(pv + PV_CAPS), 0x0C, "PVINFO caps: full PPGTT and HWSP emulation, no huge GTT")
    aperture = dev.resources()[2][1]
    tap.eq(tuple(bar0.read32(pv + PV_AVAIL_RS + 4 * i) for i in range(5)),
           (0, aperture, aperture, HIDDEN_SIZE, 4),
           "PVINFO avail_rs: the whole aperture, the hidden slice after it, 4 fences")
    bar0.write32(pv + PV_DISPLAY_READY, 1)
    bar0.write32(pv + PV_CURSOR_X, 0x1234)
    tap.eq((bar0.read32(pv + PV_DISPLAY_READY), bar0.read32(pv + PV_CURSOR_X)), (1, 0x1234),
           "PVINFO guest fields (display_ready, cursor x) are recorded")
    bar0.write32(pv + PV_CAPS, 0xFFFFFFFF)
    bar0.write32(pv + 0x900, 0xFFFFFFFF)
    tap.eq((bar0.read32(pv + PV_CAPS), bar0.read32(pv + 0x900)), (0x0C, 0),
           "PVINFO host fields and unnamed dwords ignore writes")

    cap = bar0.read32(GEN6_RP_STATE_CAP)
    tap.ok((cap & 0xFF) > (cap >> 16 & 0xFF) > 0, "MCHBAR mirror: RP_STATE_CAP gives an RPS range (RP0 > RPn > 0)",
           "read 0x%x" % cap)

    def ggtt_narrow():
        entry = g.ggtt_offset(5)
        bar0.write64(entry, 0)
        bar0.write16(entry, 0xFFFF)
        bar0.write8(entry + 4, 0xFF)
        got = (bar0.read64(entry), bar0.read16(entry))
        return None if got == (0, 0) else "read 0x%x / 0x%x after 1- and 2-byte GGTT writes" % got
    tap.check("GGTT: 1- and 2-byte accesses are ignored and read 0", ggtt_narrow)

    # Posted writes and ordering: many writes, then read them all back.
    values = {SCRATCH + 0x100 + 4 * i: (0x9E3779B9 * (i + 1)) & 0xFFFFFFFF for i in range(64)}
    for off, v in values.items():
        bar0.write32(off, v)
    bad = [(hex(off), hex(bar0.read32(off)), hex(v)) for off, v in values.items() if bar0.read32(off) != v]
    tap.ok(not bad, "64 posted writes then reads: every register holds its last value", "%r" % bad[:4])

    def aperture_check():
        bar2 = dev.bar(2)
        try:
            bar2.write32(0x1000, 0x11223344)
            got = bar2.read32(0x1000)
            return None if got == 0 else "read 0x%x through a non-present GGTT entry" % got
        finally:
            bar2.close()
    tap.check("BAR2 maps; through a non-present GGTT entry writes drop and reads give 0", aperture_check)
    bar0.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
