"""BAR0 registers through the sysfs resource mapping: 4- and 8-byte accesses, PVINFO,
narrow accesses ignored, BAR2 through a non-present GGTT entry."""
import sys

import gvtlib as g

SCRATCH = 0x4000  # an unlisted register range: reads back the last value written


def main():
    tap = g.Tap(13)
    try:
        dev = g.find_device()
        dev.enable_memory()
        bar0 = dev.bar(0)
    except (g.TestError, OSError) as e:
        tap.bail("cannot map BAR0: %s" % e)
    tap.ok(dev.command() & g.CMD_MEMORY, "memory decoding enabled")

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

    pv = bar0.read64(g.PVINFO_BASE)
    tap.eq(pv, g.PVINFO_MAGIC, "PVINFO magic as one 8-byte read")
    tap.eq((bar0.read32(g.PVINFO_BASE), bar0.read32(g.PVINFO_BASE + 4)),
           (g.PVINFO_MAGIC & 0xFFFFFFFF, g.PVINFO_MAGIC >> 32), "PVINFO magic as two 4-byte reads")
    tap.eq(bar0.read32(g.PVINFO_BASE + 8), 0x00000001, "PVINFO version 1.0")

    bar0.write8(SCRATCH, 0x55)
    tap.eq(bar0.read32(SCRATCH), 0xDEADBEEF, "a 1-byte write is ignored")
    tap.eq(bar0.read8(SCRATCH), 0, "a 1-byte read reads 0")

    # Posted writes and ordering: many writes, then read them all back.
    values = {SCRATCH + 0x100 + 4 * i: (0x9E3779B9 * (i + 1)) & 0xFFFFFFFF for i in range(64)}
    for off, v in values.items():
        bar0.write32(off, v)
    bad = [(hex(off), hex(bar0.read32(off)), hex(v)) for off, v in values.items() if bar0.read32(off) != v]
    tap.ok(not bad, "64 posted writes then reads: every register holds its last value", "%r" % bad[:4])

    def aperture():
        bar2 = dev.bar(2)
        try:
            bar2.write32(0x1000, 0x11223344)
            got = bar2.read32(0x1000)
            return None if got == 0 else "read 0x%x through a non-present GGTT entry" % got
        finally:
            bar2.close()
    tap.check("BAR2 maps; through a non-present GGTT entry writes drop and reads give 0", aperture)
    bar0.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
