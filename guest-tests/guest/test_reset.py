"""Machine reset resets the device: write registers, reboot the guest (QEMU resets the machine
and sends DEVICE_RESET), then the registers read 0.
"""
# devmodel-guest: reboot
import sys

import gvtlib as g

MARK_OFF, MARK = 112, 0xD5  # /dev/nvram byte (CMOS 0x7e): set in phase 1, survives the reset
PLAN = 7


def phase1(dev, bar0):
    tap = g.Tap(PLAN)
    bar0.write32(0x4000, 0xA5A5A5A5)
    bar0.write64(0x4008, 0x1122334455667788)
    dev.set_command(g.CMD_INTX_DISABLE, True)
    tap.ok(bar0.read32(0x4000) == 0xA5A5A5A5 and bar0.read64(0x4008) == 0x1122334455667788,
           "registers written before the reboot")
    tap.eq(bar0.read64(g.PVINFO_BASE), g.PVINFO_MAGIC, "PVINFO readable before the reboot")
    g.nvram_write(MARK_OFF, MARK)
    tap.eq(g.nvram_read(MARK_OFF), MARK, "phase mark stored in CMOS; rebooting")
    if tap.failed:
        return tap.finish()
    return g.REBOOT_EXIT


def phase2(dev, bar0):
    tap = g.Tap(PLAN, first=4)
    g.nvram_write(MARK_OFF, 0)
    tap.diag("after the reboot")
    tap.eq(bar0.read32(0x4000), 0, "4-byte register reads 0 after the reset")
    tap.eq(bar0.read64(0x4008), 0, "8-byte register reads 0 after the reset")
    tap.eq(bar0.read64(g.PVINFO_BASE), g.PVINFO_MAGIC, "PVINFO magic back after the reset")
    tap.eq(dev.command() & g.CMD_INTX_DISABLE, 0, "command bit 10 clear after the reset")
    return tap.finish()


def main():
    try:
        dev = g.find_device()
        dev.enable_memory()
        bar0 = dev.bar(0)
    except (g.TestError, OSError) as e:
        print("1..%d" % PLAN)
        g.Tap().bail("cannot map BAR0: %s" % e)
    second = g.nvram_read(MARK_OFF) == MARK
    return phase2(dev, bar0) if second else phase1(dev, bar0)


if __name__ == "__main__":
    sys.exit(main())
