"""The guest environment itself, no device needed: Python, kernel modules, pagemap, NVRAM."""
import sys

import gvtlib


def main():
    tap = gvtlib.Tap(4)
    tap.eq(sys.version_info[:2], (3, 11), "guest Python is 3.11")
    tap.check("kernel modules load (uio, uio_pci_generic)",
              lambda: gvtlib.load_modules("uio", "uio_pci_generic"))

    def pagemap():
        buf = gvtlib.LockedBuffer(3 * gvtlib.PAGE)
        if len(set(buf.pages)) != 3 or any(p % gvtlib.PAGE for p in buf.pages):
            return "bad frames %r" % buf.pages
        return None
    tap.check("pagemap gives guest-physical frames of a locked buffer", pagemap)

    def nvram():
        old = gvtlib.nvram_read(100)
        gvtlib.nvram_write(100, old ^ 0x5A)
        got = gvtlib.nvram_read(100)
        gvtlib.nvram_write(100, old)
        return None if got == old ^ 0x5A else "read 0x%x after writing 0x%x" % (got, old ^ 0x5A)
    tap.check("CMOS NVRAM byte round-trip", nvram)
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
