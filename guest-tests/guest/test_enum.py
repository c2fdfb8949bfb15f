"""PCI identity as the guest kernel enumerated it: IDs, class, BARs, MSI capability, INTx pin."""
import sys

import gvtlib as g

MIB = 1 << 20
# device ID: (revision, MSI capability offset)
PLATFORM = {0x1616: (0x09, 0x90), 0x1912: (0x06, 0xAC)}


def main():
    tap = g.Tap(14)
    try:
        dev = g.find_device()
    except g.TestError as e:
        tap.bail(str(e))
    tap.diag("device %s %04x:%04x" % (dev.name, dev.vendor, dev.device))
    tap.ok(dev.vendor == 0x8086 and dev.device in PLATFORM, "vendor/device is 8086:1616 or 8086:1912",
           "%04x:%04x" % (dev.vendor, dev.device))
    rev, msi_off = PLATFORM.get(dev.device, (None, None))
    tap.eq(dev.config_read(0, 4), dev.device << 16 | dev.vendor, "config space dword 0 matches the IDs")
    tap.eq(dev.pci_class, 0x038000, "class code 0x038000 (display, other)")
    tap.eq(dev.config_read(g.PCI_REVISION, 1), rev, "revision ID of the platform")
    tap.eq(dev.config_read(g.PCI_HEADER_TYPE, 1) & 0x7F, 0, "header type 0")

    res = dev.resources()
    size0, flags0 = res[0][1], res[0][2]
    size2, flags2 = res[2][1], res[2][2]
    tap.eq(size0, 16 * MIB, "BAR0 is 16 MiB")
    tap.ok(flags0 & g.IORESOURCE_MEM and flags0 & g.IORESOURCE_MEM_64 and not flags0 & g.IORESOURCE_PREFETCH,
           "BAR0 is 64-bit memory, not prefetchable", "flags 0x%x" % flags0)
    tap.eq(size2, 256 * MIB, "BAR2 (aperture) is 256 MiB")
    tap.ok(flags2 & g.IORESOURCE_MEM and flags2 & g.IORESOURCE_MEM_64 and flags2 & g.IORESOURCE_PREFETCH,
           "BAR2 is 64-bit prefetchable memory", "flags 0x%x" % flags2)
    tap.eq(res[4][1], 0, "BAR4 is absent")

    caps = dev.capabilities()
    tap.diag("capabilities: %s" % ", ".join("0x%02x@0x%02x" % c for c in caps))
    tap.ok((g.CAP_ID_MSI, msi_off) in caps, "MSI capability at 0x%x in the capability list" % (msi_off or 0),
           "list: %r" % caps)
    ctrl = dev.config_read(msi_off + 2, 2) if msi_off else 0xFFFF
    tap.ok((ctrl >> 1) & 7 == 0 and not ctrl & 0x80, "MSI: one message, 32-bit address",
           "message control 0x%x" % ctrl)
    tap.eq(dev.config_read(g.PCI_INTERRUPT_PIN, 1), 1, "interrupt pin A")
    gmch = dev.config_read(0x50, 2)
    tap.ok((gmch >> 6) & 3 == 3 and gmch >> 8 == 0, "GMCH control: GGMS 8 MiB, no stolen memory",
           "GMCH 0x%04x" % gmch)
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
