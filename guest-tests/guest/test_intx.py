"""INTx with PCI 2.3 masking: command bit 10 masks, status bit 3 reports; uio_pci_generic
(which relies on that masking) binds and sees no spurious interrupt."""
import sys

import gvtlib as g


def main():
    tap = g.Tap(7)
    try:
        dev = g.find_device()
    except g.TestError as e:
        tap.bail(str(e))
    tap.eq(dev.config_read(g.PCI_STATUS, 2) & g.STATUS_INTERRUPT, 0, "status bit 3 clear: no interrupt pending")
    dev.set_command(g.CMD_INTX_DISABLE, True)
    tap.ok(dev.command() & g.CMD_INTX_DISABLE, "command bit 10 (INTx disable) reads back set",
           "command 0x%x" % dev.command())
    tap.eq(dev.config_read(g.PCI_STATUS, 2) & g.STATUS_INTERRUPT, 0, "status bit 3 still clear while masked")
    dev.set_command(g.CMD_INTX_DISABLE, False)
    tap.eq(dev.command() & g.CMD_INTX_DISABLE, 0, "command bit 10 reads back clear")

    uio = None

    def bind():
        nonlocal uio
        uio = g.Uio(dev)
        return None if dev.driver() == "uio_pci_generic" else "driver is %s" % dev.driver()
    tap.check("uio_pci_generic binds (it checks INTx masking at probe)", bind)
    if uio is None:
        tap.skip("INTx unmasked through uio", "uio did not bind")
        tap.skip("no spurious interrupt", "uio did not bind")
        return tap.finish()
    uio.enable()
    tap.eq(dev.command() & g.CMD_INTX_DISABLE, 0, "INTx unmasked (command bit 10 clear) with uio bound")
    tap.eq(uio.wait(0.5), None, "no interrupt arrives while the device is idle (0.5 s)")
    uio.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main())
