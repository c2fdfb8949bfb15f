"""Guest-side helpers for the vGPU tests (Python standard library only; runs as root in the guest).

- find the device in /sys/bus/pci/devices, read and write its config space;
- map BAR0/BAR2 through the sysfs resource files with single 4- and 8-byte accesses;
- guest-physical addresses of locked buffers (/proc/self/pagemap);
- GGTT entries through BAR0 (whole 8-byte writes, or two 4-byte halves in either order);
- kernel modules (busybox insmod, in dependency order), INTx through uio_pci_generic;
- CMOS NVRAM bytes, which survive a machine reset (for tests that span a reboot);
- a line channel to the host test on the second serial port (HostChannel);
- a TAP printer.
"""
import ctypes
import fcntl
import json
import mmap
import os
import select
import subprocess
import sys
import time
import traceback

PCI_DEVICES = "/sys/bus/pci/devices"
MODULE_DIR = "/lib/modules"
# (vendor, device) pairs of the vGPU: BDW GT2 and SKL GT2.
VGPU_IDS = ((0x8086, 0x1616), (0x8086, 0x1912))
PVINFO_MAGIC = 0x4776544776544776
PVINFO_BASE = 0x78000
PVINFO_G2V_NOTIFY = PVINFO_BASE + 0x818
PVINFO_PDP = PVINFO_BASE + 0x838  # pdp[i]: low half at + 8 * i, high half at + 8 * i + 4
PVINFO_PDP_COUNT = 4
# g2v_notify values (i915's enum vgt_g2v_type): PPGTT create/destroy, legacy 3-level and 4-level.
G2V_PPGTT_L3_CREATE, G2V_PPGTT_L3_DESTROY, G2V_PPGTT_L4_CREATE, G2V_PPGTT_L4_DESTROY = 2, 3, 4, 5
GFX_FLSH_CNTL = 0x101008
GGTT_BASE = 0x800000  # BAR0 offset of GGTT entry 0; entry i maps graphics address i << 12
GGTT_ENTRIES = 1 << 20
GGTT_PRESENT = 1

# Config space offsets and bits.
PCI_VENDOR_ID, PCI_DEVICE_ID, PCI_COMMAND, PCI_STATUS = 0x00, 0x02, 0x04, 0x06
PCI_REVISION, PCI_CLASS_PROG, PCI_HEADER_TYPE = 0x08, 0x09, 0x0E
PCI_CAP_PTR, PCI_INTERRUPT_PIN = 0x34, 0x3D
CMD_MEMORY, CMD_MASTER, CMD_INTX_DISABLE = 1 << 1, 1 << 2, 1 << 10
STATUS_INTERRUPT, STATUS_CAP_LIST = 1 << 3, 1 << 4
CAP_ID_MSI = 0x05
# Flags of the sysfs "resource" file (include/linux/ioport.h).
IORESOURCE_MEM, IORESOURCE_PREFETCH, IORESOURCE_MEM_64 = 0x200, 0x2000, 0x100000

MAP_LOCKED = 0x2000  # x86; the mmap module does not export it
PAGE = 4096


class TestError(Exception):
    pass


# --- TAP -----------------------------------------------------------------------------------

class Tap:
    """Prints TAP on stdout. Use ok()/eq()/check() for results; finish() gives the exit code.

    A script that spans a reboot prints the plan in its first phase and continues the
    numbering in the next one with Tap(plan, first=N) (no plan line then)."""

    def __init__(self, plan=None, first=1):
        self.plan = plan
        self.n = first - 1
        self.failed = 0
        if plan is not None and first == 1:
            print("1..%d" % plan, flush=True)

    def ok(self, cond, desc, reason=""):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, desc), flush=True)
        else:
            self.failed += 1
            print("not ok %d - %s%s" % (self.n, desc, " # " + reason if reason else ""), flush=True)
        return bool(cond)

    def eq(self, got, want, desc):
        fmt = (lambda v: "0x%x" % v) if isinstance(want, int) and not isinstance(want, bool) else repr
        return self.ok(got == want, desc, "" if got == want else "got %s, want %s" % (fmt(got), fmt(want)))

    def check(self, desc, fn):
        """Run fn(); an exception is a failure. fn may return a reason string to fail."""
        try:
            reason = fn()
        except Exception as e:  # noqa: BLE001 - any failure becomes a TAP line
            self.diag(traceback.format_exc())
            return self.ok(False, desc, "%s: %s" % (type(e).__name__, e))
        return self.ok(not reason, desc, reason or "")

    def skip(self, desc, reason):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, desc, reason), flush=True)

    def diag(self, msg):
        for line in str(msg).rstrip("\n").splitlines():
            print("# " + line, flush=True)

    def bail(self, reason):
        print("Bail out! %s" % reason, flush=True)
        sys.exit(2)

    def finish(self):
        if self.plan is None:
            print("1..%d" % self.n, flush=True)
        elif self.n != self.plan:
            self.diag("planned %d tests but ran %d" % (self.plan, self.n))
            return 1
        return 1 if self.failed else 0


# --- the kernel command line ---------------------------------------------------------------

def cmdline_int(key, default):
    """The integer a script's option KEY=N on the kernel command line gives (the harness's
    run_guest(append=...)), or default."""
    try:
        with open("/proc/cmdline") as f:
            for word in f.read().split():
                if word.startswith(key + "="):
                    return int(word.split("=", 1)[1], 0)
    except OSError:
        pass
    return default


# --- PCI device ----------------------------------------------------------------------------

def _read_hex(path):
    with open(path) as f:
        return int(f.read().strip(), 16)


def find_devices(ids=VGPU_IDS):
    """sysfs paths of the PCI functions whose (vendor, device) is in ids."""
    found = []
    for name in sorted(os.listdir(PCI_DEVICES)):
        path = os.path.join(PCI_DEVICES, name)
        if (_read_hex(path + "/vendor"), _read_hex(path + "/device")) in ids:
            found.append(path)
    return found


class Bar:
    """A BAR mapped through its sysfs resource file. Every access is one load or store of the
    given width (a memoryview cast), never split into smaller ones."""

    def __init__(self, path, size):
        self.fd = os.open(path, os.O_RDWR | os.O_SYNC)
        self.size = size
        self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._views = {}

    def _view(self, fmt):
        v = self._views.get(fmt)
        if v is None:
            v = self._views[fmt] = memoryview(self.mm).cast(fmt)
        return v

    def view(self, fmt):
        """The BAR as a memoryview of fmt items ("I" 4-byte, "Q" 8-byte): v[off // width] is
        one access, without the bounds checks of read32/write32 (for tight loops)."""
        return self._view(fmt)

    def _index(self, off, width):
        if off % width or not 0 <= off < self.size:
            raise ValueError("bad %d-byte offset 0x%x" % (width, off))
        return off // width

    def read8(self, off):
        return self._view("B")[self._index(off, 1)]

    def write8(self, off, val):
        self._view("B")[self._index(off, 1)] = val

    def read16(self, off):
        return self._view("H")[self._index(off, 2)]

    def write16(self, off, val):
        self._view("H")[self._index(off, 2)] = val

    def read32(self, off):
        return self._view("I")[self._index(off, 4)]

    def write32(self, off, val):
        self._view("I")[self._index(off, 4)] = val

    def read64(self, off):
        return self._view("Q")[self._index(off, 8)]

    def write64(self, off, val):
        self._view("Q")[self._index(off, 8)] = val

    def close(self):
        for v in self._views.values():
            v.release()
        self._views.clear()
        self.mm.close()
        os.close(self.fd)


class Device:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.vendor = _read_hex(path + "/vendor")
        self.device = _read_hex(path + "/device")
        self.pci_class = _read_hex(path + "/class")

    # config space
    def config_read(self, off, size=4):
        with open(self.path + "/config", "rb") as f:
            data = os.pread(f.fileno(), size, off)
        if len(data) != size:
            raise TestError("short config read at 0x%x" % off)
        return int.from_bytes(data, "little")

    def config_write(self, off, val, size=4):
        with open(self.path + "/config", "r+b", buffering=0) as f:
            if os.pwrite(f.fileno(), val.to_bytes(size, "little"), off) != size:
                raise TestError("short config write at 0x%x" % off)

    def command(self):
        return self.config_read(PCI_COMMAND, 2)

    def set_command(self, bits, on=True):
        cmd = self.command()
        cmd = cmd | bits if on else cmd & ~bits
        self.config_write(PCI_COMMAND, cmd, 2)
        return cmd

    def enable_memory(self):
        """Memory decoding on; the kernel leaves it off while no driver has the device."""
        return self.set_command(CMD_MEMORY)

    def set_bus_master(self, on=True):
        return self.set_command(CMD_MASTER, on)

    def capabilities(self):
        """[(cap_id, offset)] from the config space capability list."""
        caps: list[tuple[int, int]] = []
        seen: set[int] = set()
        if not self.config_read(PCI_STATUS, 2) & STATUS_CAP_LIST:
            return caps
        ptr = self.config_read(PCI_CAP_PTR, 1) & ~3
        while ptr and ptr not in seen and len(caps) < 48:
            seen.add(ptr)
            caps.append((self.config_read(ptr, 1), ptr))
            ptr = self.config_read(ptr + 1, 1) & ~3
        return caps

    def resources(self):
        """[(start, size, flags)] per line of the sysfs resource file (index = BAR number)."""
        out = []
        with open(self.path + "/resource") as f:
            for line in f:
                start, end, flags = (int(x, 16) for x in line.split())
                out.append((start, end - start + 1 if end else 0, flags))
        return out

    def bar(self, index):
        size = self.resources()[index][1]
        if not size:
            raise TestError("BAR%d is not present" % index)
        return Bar("%s/resource%d" % (self.path, index), size)

    def driver(self):
        link = self.path + "/driver"
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def find_device(ids=VGPU_IDS):
    found = find_devices(ids)
    if not found:
        raise TestError("no vGPU (%s) in %s" % (", ".join("%04x:%04x" % i for i in ids), PCI_DEVICES))
    return Device(found[0])


# --- guest-physical memory -----------------------------------------------------------------

class NativeCode:
    """x86-64 functions (System V ABI) in an executable page, callable through ctypes: loops
    that run at the speed of the MMIO path, not of the interpreter (which under TCG would swamp
    what they measure). functions: (machine code, ctypes argument types) each; self.calls holds
    them in order. Keep the object alive while they are called."""

    SLOT = 256

    def __init__(self, *functions):
        self.mm = mmap.mmap(-1, PAGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                            mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        self._anchor = ctypes.c_char.from_buffer(self.mm)
        base = ctypes.addressof(self._anchor)
        self.calls = []
        for i, (code, argtypes) in enumerate(functions):
            assert len(code) <= self.SLOT and (i + 1) * self.SLOT <= PAGE
            self.mm[i * self.SLOT:i * self.SLOT + len(code)] = code
            self.calls.append(ctypes.CFUNCTYPE(None, *argtypes)(base + i * self.SLOT))

    def close(self):
        self.calls = []
        del self._anchor
        self.mm.close()


class LockedBuffer:
    """Anonymous memory locked in RAM, with the guest-physical address of each page."""

    def __init__(self, size):
        self.size = (size + PAGE - 1) // PAGE * PAGE
        self.mm = mmap.mmap(-1, self.size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_LOCKED,
                            mmap.PROT_READ | mmap.PROT_WRITE)
        for off in range(0, self.size, PAGE):
            self.mm[off] = 0  # fault every page in
        self.vaddr = ctypes.addressof(ctypes.c_char.from_buffer(self.mm))
        self.pages = virt_to_phys_pages(self.vaddr, self.size // PAGE)

    def phys(self, off=0):
        return self.pages[off // PAGE] + off % PAGE


def virt_to_phys_pages(vaddr, npages):
    out = []
    with open("/proc/self/pagemap", "rb") as f:
        data = os.pread(f.fileno(), 8 * npages, (vaddr // PAGE) * 8)
    for i in range(npages):
        entry = int.from_bytes(data[8 * i:8 * i + 8], "little")
        if not entry >> 63 & 1:
            raise TestError("page %d of 0x%x is not present" % (i, vaddr))
        pfn = entry & ((1 << 55) - 1)
        if not pfn:
            raise TestError("pagemap hides frame numbers (not root?)")
        out.append(pfn * PAGE)
    return out


# --- GGTT ----------------------------------------------------------------------------------

def ggtt_offset(index):
    if not 0 <= index < GGTT_ENTRIES:
        raise ValueError("GGTT index 0x%x out of range" % index)
    return GGTT_BASE + 8 * index


def ggtt_write(bar0, index, entry, mode="q"):
    """Write GGTT entry index through BAR0: mode "q" one 8-byte store, "lh" the low 4 bytes
    then the high 4, "hl" high then low. Posted: read BAR0 before relying on it."""
    off = ggtt_offset(index)
    lo, hi = entry & 0xFFFFFFFF, entry >> 32
    if mode == "q":
        bar0.write64(off, entry)
    elif mode == "lh":
        bar0.write32(off, lo)
        bar0.write32(off + 4, hi)
    elif mode == "hl":
        bar0.write32(off + 4, hi)
        bar0.write32(off, lo)
    else:
        raise ValueError("mode %r" % mode)


def ggtt_read(bar0, index):
    """(8-byte read, low 4-byte read, high 4-byte read) of GGTT entry index."""
    off = ggtt_offset(index)
    return bar0.read64(off), bar0.read32(off), bar0.read32(off + 4)


def g2v_ppgtt(bar0, notify, roots):
    """Announce a PPGTT as i915 does: the root pointers into PVINFO pdp[] (each as two 4-byte
    halves, low first; the unused ones 0), then the notification. Returns after a BAR0 read,
    so the device has handled the notification (what it starts then may still be running)."""
    roots = list(roots) + [0] * (PVINFO_PDP_COUNT - len(roots))
    for i, root in enumerate(roots):
        bar0.write32(PVINFO_PDP + 8 * i, root & 0xFFFFFFFF)
        bar0.write32(PVINFO_PDP + 8 * i + 4, root >> 32)
    bar0.write32(PVINFO_G2V_NOTIFY, notify)
    return bar_flush(bar0)


def bar_flush(bar0):
    """Order every posted write before it: one BAR0 read (QEMU sends queued writes first)."""
    return bar0.read32(PVINFO_BASE)


# --- kernel modules and interrupts ---------------------------------------------------------

def load_modules(*names):
    """insmod /lib/modules/NAME.ko for each name not loaded yet, in the order given."""
    for name in names:
        if os.path.isdir("/sys/module/" + name.replace("-", "_")):
            continue
        r = subprocess.run(["insmod", "%s/%s.ko" % (MODULE_DIR, name)], capture_output=True, text=True, check=False)
        if r.returncode:
            raise TestError("insmod %s failed: %s" % (name, r.stderr.strip()))


class Uio:
    """INTx through uio_pci_generic. Its handler claims an interrupt only when status bit 3 is
    set, and then masks it with command bit 10; enable() unmasks through config space (the
    driver has no irqcontrol: writes to /dev/uioN fail with ENOSYS). A read of /dev/uioN
    returns the event count."""

    def __init__(self, dev, timeout=5.0):
        self.dev = dev
        load_modules("uio", "uio_pci_generic")
        if dev.driver() != "uio_pci_generic":
            try:
                with open("/sys/bus/pci/drivers/uio_pci_generic/new_id", "w") as f:
                    f.write("%04x %04x" % (dev.vendor, dev.device))
            except FileExistsError:
                with open("/sys/bus/pci/drivers/uio_pci_generic/bind", "w") as f:
                    f.write(dev.name)
        deadline = time.monotonic() + timeout
        while True:
            try:
                names = os.listdir(dev.path + "/uio")
                break
            except FileNotFoundError:
                if time.monotonic() > deadline:
                    raise TestError("uio_pci_generic did not bind %s (driver: %s)" % (dev.name, dev.driver())) from None
                time.sleep(0.05)
        self.fd = os.open("/dev/" + names[0], os.O_RDWR)

    def enable(self):
        self.dev.set_command(CMD_INTX_DISABLE, False)

    def wait(self, timeout):
        """The interrupt count after the next interrupt, or None at the deadline."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return None
        return int.from_bytes(os.read(self.fd, 4), "little")

    def close(self):
        os.close(self.fd)


# --- state that survives a machine reset ---------------------------------------------------

NVRAM_DEV = "/dev/nvram"
NVRAM_SETCKS = 0x7041  # _IO('p', 0x41): recompute the PC CMOS checksum


def _nvram_open():
    load_modules("nvram")
    fd = os.open(NVRAM_DEV, os.O_RDWR)
    # The driver refuses reads and writes while the PC checksum (CMOS 0x2e/0x2f) is wrong,
    # and QEMU's CMOS does not carry a valid one.
    fcntl.ioctl(fd, NVRAM_SETCKS)
    return fd


def nvram_read(off):
    """Byte off of the CMOS NVRAM (/dev/nvram offset, i.e. CMOS byte 14 + off)."""
    fd = _nvram_open()
    try:
        return os.pread(fd, 1, off)[0]
    finally:
        os.close(fd)


def nvram_write(off, val):
    fd = _nvram_open()
    try:
        os.pwrite(fd, bytes([val]), off)
    finally:
        os.close(fd)


REBOOT_EXIT = 100  # a test script exiting with this asks /init for a reboot


# --- questions to the host test ------------------------------------------------------------

HOST_CHANNEL = "/dev/ttyS1"


class HostChannel:
    """The guest's end of the host test's line channel (harness/channel.py: the second serial
    port, which QEMU connects to the host test before the guest runs). ask() sends
    "ASK TAG JSON" and returns the text of the host's "ANSWER TAG TEXT", skipping any other
    line, or raises TestError at its deadline (no host test listening, or it hung)."""

    def __init__(self, path=HOST_CHANNEL):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        # Raw and without echo: the host's answers must not come back to it, nor lines be
        # cooked. busybox stty, because the image's Python has no termios module.
        r = subprocess.run(["stty", "raw", "-echo", "clocal"], stdin=self.fd, capture_output=True, text=True,
                           check=False)
        if r.returncode:
            raise TestError("stty on %s failed: %s" % (path, r.stderr.strip()))
        self.buf = b""

    def _write(self, data, deadline):
        while data:
            if not select.select([], [self.fd], [], max(0.0, deadline - time.monotonic()))[1]:
                raise TestError("the host channel took no data before the deadline")
            data = data[os.write(self.fd, data):]

    def ask(self, tag, payload, timeout=120.0):
        if " " in tag:
            raise ValueError("a tag is one word: %r" % tag)
        deadline = time.monotonic() + timeout
        self._write(("ASK %s %s\n" % (tag, json.dumps(payload, separators=(",", ":")))).encode(), deadline)
        want = ("ANSWER %s " % tag).encode()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.rstrip(b"\r")
                if line.startswith(want):
                    return line[len(want):].decode(errors="replace")
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TestError("no answer from the host to %s within %.0f s" % (tag, timeout))
            try:
                self.buf += os.read(self.fd, 4096)
            except BlockingIOError:
                pass

    def close(self):
        os.close(self.fd)
