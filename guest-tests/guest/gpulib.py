"""Driving the vGPU's engines from inside the guest, the way i915 does it, without i915
(Python standard library only; runs as root in the guest, next to gvtlib).

- `Gpu`: BAR0, the vGPU's graphics memory (PVINFO's ranges) and a pool of locked guest pages
  handed out as GGTT objects (`GmObject`: one GGTT page per guest page, CPU access through the
  pool's mapping);
- `Ppgtt`: an i915-style 4-level PPGTT in guest memory: scratch page, scratch PT, PD and PDP,
  every entry not mapped yet pointing at the scratch table of the level below;
- `Engine`: execlist mode on one engine (HWS_PGA, GFX_MODE, the CSB pointer) and the CSB read
  from its hardware status page, as i915's `process_csb`;
- `Context`: a logical ring context (PPHWSP + register state with the ring registers and
  PDP0, then the ring), commands emitted at its tail and submitted through ELSP;
- command encoders and the test picture drawn with XY_COLOR_BLT and XY_SRC_COPY_BLT (also
  drawn through i915 by test_i915_demo.py), printed for the host with devmodel.picture=1.

The register offsets, bits and encodings repeat contract §4-§5 (the guest cannot import the
device's code; it is the other side of the contract).
"""
import base64
import struct
import time
import zlib

import gvtlib as g

PAGE = g.PAGE

# --- contract §4: engines, their registers, interrupts ----------------------------------

# name: (MMIO base, GT interrupt bank, shift of the engine's 16 bits, GEN8_MASTER_IRQ status bit)
ENGINES = {
    "RCS": (0x2000, 0, 0, 0),
    "BCS": (0x22000, 0, 16, 1),
    "VCS0": (0x12000, 1, 0, 2),
    "VECS0": (0x1A000, 3, 0, 6),
}
RING_TAIL, RING_HEAD, RING_START, RING_CTL = 0x30, 0x34, 0x38, 0x3C
HWS_PGA = 0x80
ELSP = 0x230
EXECLIST_STATUS_LO, EXECLIST_STATUS_HI = 0x234, 0x238
CONTEXT_CONTROL = 0x244
PDP_LDW = (0x270, 0x278, 0x280, 0x288)  # PDP0..3 lower dword; upper at +4
GFX_MODE = 0x29C
CSB_PTR = 0x3A0
GFX_RUN_LIST_ENABLE = 1 << 15
EXECLIST0_VALID = 1 << 4
CTX_CTRL_INHIBIT_SYN_CTX_SWITCH = 1 << 3
RING_VALID = 1

CSB_ENTRIES = 6
HWSP_CSB_DWORD = 0x10
HWSP_CSB_WRITE_INDEX_DWORD = 0x1F
CSB_IDLE_ACTIVE, CSB_PREEMPTED, CSB_ELEMENT_SWITCH = 1 << 0, 1 << 1, 1 << 2
CSB_ACTIVE_IDLE, CSB_COMPLETE, CSB_LITE_RESTORE = 1 << 3, 1 << 4, 1 << 15

GEN8_MASTER_IRQ = 0x44200
MASTER_IRQ_ENABLE = 1 << 31
GT_BANK_BASE = 0x44300
BANK_ISR, BANK_IMR, BANK_IIR, BANK_IER = 0x0, 0x4, 0x8, 0xC
GT_USER_INTERRUPT, GT_NOTIFY, GT_CONTEXT_SWITCH = 1 << 0, 1 << 4, 1 << 8

GDRST = 0x941C
GDRST_BIT = {"RCS": 1 << 1, "VCS0": 1 << 2, "BCS": 1 << 3, "VECS0": 1 << 4}

# PVINFO (contract §2.1)
PVINFO_MAPPABLE_BASE, PVINFO_MAPPABLE_SIZE = 0x78040, 0x78044
PVINFO_HIDDEN_BASE, PVINFO_HIDDEN_SIZE = 0x78048, 0x7804C

# Context descriptor (contract §4.2)
DESC_VALID = 1 << 0
DESC_ADDRESSING_4LEVEL = 3 << 3
DESC_PRIVILEGE = 1 << 8
# Register-state page (page 1 of the image): i915's CTX_* dword of each register's address;
# its value follows at +1.
CTX_LRI_HEADER_0 = 0x01
CTX_CONTEXT_CONTROL, CTX_RING_HEAD, CTX_RING_TAIL = 0x02, 0x04, 0x06
CTX_RING_START, CTX_RING_CTL = 0x08, 0x0A
CTX_LRI_HEADER_1 = 0x21
CTX_PDP3_UDW = 0x24  # PDP3 upper, PDP3 lower, PDP2 upper ... PDP0 lower: 8 pairs from here

# PPGTT entries
PTE_PRESENT, PTE_RW = 1 << 0, 1 << 1
PT_ENTRIES = 512

# --- contract §5: command encodings -----------------------------------------------------

MI_NOOP = 0
MI_USER_INTERRUPT = 0x01000000
MI_BATCH_BUFFER_END = 0x05000000
MI_STORE_DATA_IMM = 0x10000002  # dword form: header, address low, address high, value
SDI_QWORD = 1 << 21  # the qword form: one dword longer, the value's high dword last
MI_LOAD_REGISTER_IMM = 0x11000000  # | (2n - 1)
MI_LRI_FORCE_POSTED = 1 << 12
MI_BATCH_BUFFER_START = 0x18800001
BB_PPGTT = 1 << 8  # the batch's address is a PPGTT address (a non-privileged batch)
XY_COLOR_BLT = 0x54000005 | 3 << 20  # 32 bpp, all channels
XY_SRC_COPY_BLT = 0x54C00008 | 3 << 20
BR13_32BPP = 3 << 24
ROP_PATCOPY, ROP_SRCCOPY = 0xF0, 0xCC
BPP = 4


def masked(bits, on=True):
    """A masked register write setting (or clearing) bits."""
    return bits << 16 | (bits if on else 0)


def store_dword(gva, value):
    return [MI_STORE_DATA_IMM, gva & 0xFFFFFFFF, gva >> 32, value & 0xFFFFFFFF]


def store_qword(gva, value):
    return [(MI_STORE_DATA_IMM + 1) | SDI_QWORD, gva & 0xFFFFFFFF, gva >> 32, value & 0xFFFFFFFF,
            value >> 32 & 0xFFFFFFFF]


def batch_start(gva):
    """Start the batch at PPGTT address gva (first level; it must end in MI_BATCH_BUFFER_END)."""
    return [MI_BATCH_BUFFER_START | BB_PPGTT, gva & 0xFFFFFFFF, gva >> 32]


def load_register(reg, value):
    return [MI_LOAD_REGISTER_IMM | 1, reg, value]


def color_blt(dst, pitch, x1, y1, x2, y2, color):
    """Fill [x1, x2) x [y1, y2) of a linear 32 bpp surface at PPGTT address dst."""
    return [XY_COLOR_BLT, BR13_32BPP | ROP_PATCOPY << 16 | pitch, y1 << 16 | x1, y2 << 16 | x2,
            dst & 0xFFFFFFFF, dst >> 32, color]


def src_copy_blt(dst, dst_pitch, x1, y1, x2, y2, src, src_pitch, src_x, src_y):
    return [XY_SRC_COPY_BLT, BR13_32BPP | ROP_SRCCOPY << 16 | dst_pitch, y1 << 16 | x1,
            y2 << 16 | x2, dst & 0xFFFFFFFF, dst >> 32, src_y << 16 | src_x, src_pitch,
            src & 0xFFFFFFFF, src >> 32]


# --- guest memory as graphics memory --------------------------------------------------------

class GmObject:
    """Consecutive pages of the pool, mapped at consecutive GGTT addresses from gma."""

    def __init__(self, pool, first, npages, gma=None):
        self.pool, self.first, self.npages, self.gma = pool, first, npages, gma
        self.off = first * PAGE
        self.size = npages * PAGE

    def phys(self, page=0):
        return self.pool.pages[self.first + page]

    def d(self, off):
        return struct.unpack_from("<I", self.pool.mm, self.off + off)[0]

    def set_d(self, off, *vals):
        struct.pack_into("<%dI" % len(vals), self.pool.mm, self.off + off, *vals)

    def q(self, off):
        return struct.unpack_from("<Q", self.pool.mm, self.off + off)[0]

    def set_q(self, off, *vals):
        struct.pack_into("<%dQ" % len(vals), self.pool.mm, self.off + off, *vals)

    def read(self, off=0, size=None):
        return bytes(self.pool.mm[self.off + off:self.off + off + (self.size - off if size is None else size)])

    def fill(self, byte=0):
        self.pool.mm[self.off:self.off + self.size] = bytes([byte]) * self.size


class Gpu:
    """The vGPU from the guest's side: BAR0, PVINFO's graphics memory and a page pool."""

    GGTT_FIRST = 0x100  # first GGTT page handed out (graphics address 1 MiB)

    def __init__(self, dev, pool_pages=1024):
        dev.enable_memory()
        dev.set_bus_master(True)
        self.dev = dev
        self.bar0 = dev.bar(0)
        self.regs = self.bar0.view("I")
        if self.bar0.read64(g.PVINFO_BASE) != g.PVINFO_MAGIC:
            raise g.TestError("PVINFO magic missing")
        self.ranges = [(self.r(PVINFO_MAPPABLE_BASE), self.r(PVINFO_MAPPABLE_SIZE)),
                       (self.r(PVINFO_HIDDEN_BASE), self.r(PVINFO_HIDDEN_SIZE))]
        self.pool = g.LockedBuffer(pool_pages * PAGE)
        self.next_page = 0
        self.next_gtt = self.GGTT_FIRST

    def r(self, off):
        return self.regs[off >> 2]

    def w(self, off, value):
        self.regs[off >> 2] = value & 0xFFFFFFFF

    def flush(self):
        return g.bar_flush(self.bar0)

    def alloc(self, npages=1):
        """Zeroed pool pages, not in the GGTT (page tables, PPGTT-only buffers)."""
        if self.next_page + npages > len(self.pool.pages):
            raise g.TestError("guest page pool exhausted (%d pages)" % len(self.pool.pages))
        obj = GmObject(self.pool, self.next_page, npages)
        self.next_page += npages
        obj.fill(0)
        return obj

    def alloc_gm(self, npages=1):
        """Zeroed pool pages mapped at consecutive GGTT addresses in the mappable range."""
        obj = self.alloc(npages)
        obj.gma = self.next_gtt << 12
        base, size = self.ranges[0]
        if not (base <= obj.gma and obj.gma + obj.size <= base + size):
            raise g.TestError("GGTT object at 0x%x is outside the mappable range" % obj.gma)
        for i in range(npages):
            self.bar0.write64(g.ggtt_offset(self.next_gtt + i), obj.phys(i) | g.GGTT_PRESENT)
        self.next_gtt += npages
        self.flush()
        return obj

    # interrupts
    def unmask(self, engine, bits):
        bank = GT_BANK_BASE + 0x10 * engine.bank
        self.w(bank + BANK_IMR, self.r(bank + BANK_IMR) & ~(bits << engine.shift))
        self.w(bank + BANK_IER, self.r(bank + BANK_IER) | bits << engine.shift)

    def mask_all(self):
        """Every GT interrupt off: the master enable clear, each bank masked, disabled and
        its IIR cleared (as i915's irq reset does)."""
        self.w(GEN8_MASTER_IRQ, 0)
        for n in range(4):
            bank = GT_BANK_BASE + 0x10 * n
            self.w(bank + BANK_IER, 0)
            self.w(bank + BANK_IMR, 0xFFFFFFFF)
            self.w(bank + BANK_IIR, 0xFFFFFFFF)

    def iir(self, engine):
        return self.r(GT_BANK_BASE + 0x10 * engine.bank + BANK_IIR) >> engine.shift & 0xFFFF

    def clear_iir(self, engine, bits):
        self.w(GT_BANK_BASE + 0x10 * engine.bank + BANK_IIR, bits << engine.shift)


# --- the PPGTT ------------------------------------------------------------------------------

class Ppgtt:
    """A 4-level PPGTT as i915 builds it (gen8_ppgtt_create): every entry of every table is
    present and points at the scratch table of the level below until something is mapped."""

    SHIFTS = (39, 30, 21)  # PML4, PDP, PD index shifts; the PT index is bits 20:12

    def __init__(self, gpu):
        self.gpu = gpu
        self.scratch_page = gpu.alloc()
        # scratch[0] is the page, scratch[1] a PT of it, [2] a PD, [3] a PDP (i915's order).
        self.scratch = [self.scratch_page]
        for _ in range(3):
            table = gpu.alloc()
            table.set_q(0, *[self.scratch[-1].phys() | PTE_PRESENT | PTE_RW] * PT_ENTRIES)
            self.scratch.append(table)
        self.pml4 = self._table(level=4)
        self.tables = {self.pml4.phys(): self.pml4}

    def _table(self, level):
        """A new table of level (4 PML4 .. 1 PT) with every entry at scratch[level - 1]."""
        table = self.gpu.alloc()
        table.set_q(0, *[self.scratch[level - 1].phys() | PTE_PRESENT | PTE_RW] * PT_ENTRIES)
        return table

    def pte_slot(self, gva):
        """(PT, byte offset) of gva's PTE, allocating the tables on the way."""
        table = self.pml4
        for depth, shift in enumerate(self.SHIFTS):
            level = 4 - depth  # the table being walked
            off = 8 * (gva >> shift & 511)
            entry = table.q(off)
            below = entry & ~0xFFF & ((1 << 46) - 1)
            if below == self.scratch[level - 1].phys():
                child = self._table(level - 1)
                table.set_q(off, child.phys() | PTE_PRESENT | PTE_RW)
                self.tables[child.phys()] = child
                table = child
            else:
                table = self.tables[below]
        return table, 8 * (gva >> 12 & 511)

    def map(self, gva, phys, writable=True):
        pt, off = self.pte_slot(gva)
        pt.set_q(off, phys | PTE_PRESENT | (PTE_RW if writable else 0))

    def unmap(self, gva):
        """gva's PTE back at the scratch page, as i915 clears a range."""
        self.map(gva, self.scratch_page.phys())

    def map_object(self, gva, obj, order=None):
        """Map obj's pages at gva, in order or in the page order given (a permutation)."""
        for i, page in enumerate(order if order is not None else range(obj.npages)):
            self.map(gva + i * PAGE, obj.phys(page))


# --- engines and contexts -------------------------------------------------------------------

class Engine:
    """One engine in execlist mode, its CSB read from the status page as i915 does."""

    def __init__(self, gpu, name):
        self.gpu, self.name = gpu, name
        self.base, self.bank, self.shift, self.master_bit = ENGINES[name]
        self.hws = gpu.alloc_gm()
        self.events = []  # every (status, context ID) read so far
        self._start()

    def _start(self):
        # i915's reset_csb_pointers: both pointers at the last entry, the same in the HWSP.
        self.csb_head = CSB_ENTRIES - 1
        self.hws.set_d(HWSP_CSB_WRITE_INDEX_DWORD * 4, CSB_ENTRIES - 1)
        self.gpu.w(self.reg(HWS_PGA), self.hws.gma)
        self.gpu.w(self.reg(GFX_MODE), masked(GFX_RUN_LIST_ENABLE))
        self.gpu.w(self.reg(CSB_PTR), 0xFFFF0000 | (CSB_ENTRIES - 1) << 8 | (CSB_ENTRIES - 1))
        self.gpu.flush()

    def current_context(self):
        """EXECLIST_STATUS_HI: the ID of the context the engine holds (a hung one included)."""
        return self.gpu.r(self.reg(EXECLIST_STATUS_HI))

    def reset(self, timeout=2.0):
        """What i915 does to a hung engine: GDRST of this engine (it clears itself), then the
        execlist set up again."""
        self.gpu.w(GDRST, GDRST_BIT[self.name])
        deadline = time.monotonic() + timeout
        while self.gpu.r(GDRST) & GDRST_BIT[self.name]:
            if time.monotonic() > deadline:
                raise g.TestError("%s: GDRST did not clear in %.1f s" % (self.name, timeout))
        self._start()

    def reg(self, off):
        return self.base + off

    def poll_csb(self):
        """The CSB entries written since the last call (from the status page)."""
        new = []
        write = self.hws.d(HWSP_CSB_WRITE_INDEX_DWORD * 4)
        if write >= CSB_ENTRIES:
            raise g.TestError("%s: CSB write index %d in the status page" % (self.name, write))
        while self.csb_head != write:
            self.csb_head = (self.csb_head + 1) % CSB_ENTRIES
            off = (HWSP_CSB_DWORD + 2 * self.csb_head) * 4
            new.append((self.hws.d(off), self.hws.d(off + 4)))
        self.events += new
        return new

    def wait_idle_event(self, timeout=5.0):
        """CSB entries up to and including the next ACTIVE_IDLE, or TestError at the deadline."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            got += self.poll_csb()
            if any(s & CSB_ACTIVE_IDLE for s, _ in got):
                return got
            if time.monotonic() > deadline:
                raise g.TestError("%s: no active-to-idle event within %.1f s; CSB so far %s"
                                  % (self.name, timeout, fmt_events(got)))

    def idle(self):
        return not self.gpu.r(self.reg(EXECLIST_STATUS_LO)) & EXECLIST0_VALID

    def wait_execlist_idle(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() > deadline:
                raise g.TestError("%s: EXECLIST_STATUS 0x%x still busy after %.1f s"
                                  % (self.name, self.gpu.r(self.reg(EXECLIST_STATUS_LO)), timeout))
            time.sleep(0.001)

    def submit(self, ctx0, ctx1=None):
        """An execlist of one or two contexts: ELSP's four writes, element 1 first."""
        el1 = ctx1.descriptor() if ctx1 is not None else (0, 0)
        el0 = ctx0.descriptor()
        elsp = self.reg(ELSP)
        for value in (el1[1], el1[0], el0[1], el0[0]):
            self.gpu.w(elsp, value)


def fmt_events(events):
    return "[%s]" % ", ".join("(0x%x, %d)" % e for e in events)


class Context:
    """A logical ring context with its own ring, running in a 4-level PPGTT."""

    next_id = 1

    def __init__(self, engine, ppgtt, ring_pages=1):
        gpu = engine.gpu
        self.engine, self.ppgtt = engine, ppgtt
        self.ctx_id = Context.next_id
        Context.next_id += 1
        self.image = gpu.alloc_gm(2)  # PPHWSP, register state
        self.ring = gpu.alloc_gm(ring_pages)
        self.tail = 0
        base = engine.base
        state = [(CTX_CONTEXT_CONTROL, base + CONTEXT_CONTROL, masked(CTX_CTRL_INHIBIT_SYN_CTX_SWITCH)),
                 (CTX_RING_HEAD, base + RING_HEAD, 0),
                 (CTX_RING_TAIL, base + RING_TAIL, 0),
                 (CTX_RING_START, base + RING_START, self.ring.gma),
                 (CTX_RING_CTL, base + RING_CTL, (self.ring.size - PAGE) | RING_VALID)]
        pdps = [ppgtt.pml4.phys(), 0, 0, 0]  # 4-level: the PML4 in PDP0
        for i in range(4):
            pdp = 3 - i
            state.append((CTX_PDP3_UDW + 4 * i, base + PDP_LDW[pdp] + 4, pdps[pdp] >> 32))
            state.append((CTX_PDP3_UDW + 4 * i + 2, base + PDP_LDW[pdp], pdps[pdp] & 0xFFFFFFFF))
        self.image.set_d(PAGE + CTX_LRI_HEADER_0 * 4, MI_LOAD_REGISTER_IMM | (2 * 11 - 1) | MI_LRI_FORCE_POSTED)
        self.image.set_d(PAGE + CTX_LRI_HEADER_1 * 4, MI_LOAD_REGISTER_IMM | (2 * 9 - 1) | MI_LRI_FORCE_POSTED)
        for dword, reg, value in state:
            self.image.set_d(PAGE + dword * 4, reg, value)

    def descriptor(self):
        """(low, high) dwords of the ELSP element."""
        return self.image.gma | DESC_VALID | DESC_ADDRESSING_4LEVEL | DESC_PRIVILEGE, self.ctx_id

    def state(self, dword):
        return self.image.d(PAGE + (dword + 1) * 4)

    def ring_head(self):
        return self.state(CTX_RING_HEAD)

    def emit(self, dwords):
        """Commands at the ring's tail (wrapping), padded to a qword; the image's tail follows."""
        if len(dwords) % 2:
            dwords = list(dwords) + [MI_NOOP]
        for dw in dwords:
            self.ring.set_d(self.tail, dw)
            self.tail = (self.tail + 4) % self.ring.size
        self.image.set_d(PAGE + (CTX_RING_TAIL + 1) * 4, self.tail)

    def run(self, dwords, timeout=5.0):
        """Emit, submit alone and wait for the engine to go idle: the CSB entries seen."""
        self.emit(dwords)
        self.engine.submit(self)
        return self.engine.wait_idle_event(timeout)


def completed(events, ctx):
    """Did events include ctx's completion (element switch or active-to-idle)?"""
    return any(s & CSB_COMPLETE and c == ctx.ctx_id for s, c in events)


# --- the test picture -----------------------------------------------------------------------

PICTURE_W, PICTURE_H = 256, 128
PICTURE_PITCH = PICTURE_W * BPP
# Colour bars (0x00RRGGBB) over the top 80 rows, then a band of grey steps, then black.
BARS = (0xFFFFFF, 0xFFFF00, 0x00FFFF, 0x00FF00, 0xFF00FF, 0xFF0000, 0x0000FF, 0x202020)
BAR_ROWS = 80
STEPS = 16
STEP_ROWS = (80, 104)
# XY_SRC_COPY_BLT: the left half of the top 24 rows of bars lands in the bottom right corner.
COPY_SRC = (0, 0)
COPY_DST = (128, 104, 256, 128)  # x1, y1, x2, y2


def picture_rects():
    """The XY_COLOR_BLT rectangles (x1, y1, x2, y2, colour) of the test pattern, in order."""
    rects = [(0, 0, PICTURE_W, PICTURE_H, 0x000000)]
    bar_w = PICTURE_W // len(BARS)
    rects += [(i * bar_w, 0, (i + 1) * bar_w, BAR_ROWS, c) for i, c in enumerate(BARS)]
    step_w = PICTURE_W // STEPS
    rects += [(i * step_w, STEP_ROWS[0], (i + 1) * step_w, STEP_ROWS[1], 0x111111 * i)
              for i in range(STEPS)]
    return rects


def picture_color_commands(gva):
    """The XY_COLOR_BLTs of the pattern, for a surface at PPGTT address gva."""
    cmds = []
    for x1, y1, x2, y2, color in picture_rects():
        cmds += color_blt(gva, PICTURE_PITCH, x1, y1, x2, y2, color)
    return cmds


def picture_copy_commands(gva):
    """The XY_SRC_COPY_BLT that copies part of the pattern within the surface."""
    x1, y1, x2, y2 = COPY_DST
    return src_copy_blt(gva, PICTURE_PITCH, x1, y1, x2, y2, gva, PICTURE_PITCH, *COPY_SRC)


def picture_expected(copied=True):
    """The bytes the pattern (and the copy, if copied) must leave in the surface, computed on
    the CPU."""
    img = bytearray(PICTURE_PITCH * PICTURE_H)
    for x1, y1, x2, y2, color in picture_rects():
        row = struct.pack("<I", color) * (x2 - x1)
        for y in range(y1, y2):
            img[y * PICTURE_PITCH + x1 * BPP:y * PICTURE_PITCH + x2 * BPP] = row
    if copied:
        x1, y1, x2, y2 = COPY_DST
        sx, sy = COPY_SRC
        for dy in range(y2 - y1):  # source and destination do not overlap
            src = (sy + dy) * PICTURE_PITCH + sx * BPP
            dst = (y1 + dy) * PICTURE_PITCH + x1 * BPP
            img[dst:dst + (x2 - x1) * BPP] = img[src:src + (x2 - x1) * BPP]
    return bytes(img)


def want_picture():
    """Did the host ask for the picture (devmodel.picture=1 on the kernel command line)?"""
    with open("/proc/cmdline") as f:
        return "devmodel.picture=1" in f.read().split()


def print_picture(data):
    """Print the picture's pixels for the host (guest-tests/harness/picture.py reads them):
    zlib-compressed base64 in TAP comments, so 128 KiB take under 1 KiB of console."""
    text = base64.b64encode(zlib.compress(data, 9)).decode()
    print("# devmodel-picture begin %dx%d bgrx" % (PICTURE_W, PICTURE_H), flush=True)
    for i in range(0, len(text), 76):
        print("# " + text[i:i + 76])
    print("# devmodel-picture end", flush=True)


def first_bad_pixel(got, want, pitch=PICTURE_PITCH):
    """None when equal, else 'pixel (x, y): got 0x.., want 0x..'."""
    if got == want:
        return None
    i = next(k for k in range(0, len(want), BPP) if got[k:k + BPP] != want[k:k + BPP])
    bad = sum(1 for k in range(0, len(want), BPP) if got[k:k + BPP] != want[k:k + BPP])
    return "%d pixels differ; first at (%d, %d): got 0x%08x, want 0x%08x" % (
        bad, i % pitch // BPP, i // pitch, struct.unpack_from("<I", got, i)[0], struct.unpack_from("<I", want, i)[0])
