"""Per-engine register offsets (from the engine's MMIO base) and their fields, named as in
i915 (gt/intel_engine_regs.h, intel_lrc_reg.h) and GVT-g. Contract §4.1."""

from __future__ import annotations

import enum

# Ring registers: plain storage in execlist mode (the context image carries the live values).
RING_TAIL = 0x30
RING_HEAD = 0x34
RING_START = 0x38
RING_CTL = 0x3C
HWS_PGA = 0x80
HWSTAM = 0x98
MI_MODE = 0x9C
RING_IMR = 0xA8
EIR = 0xB0
EMR = 0xB4
ESR = 0xB8
RING_RESET_CTL = 0xD0
ELSP = 0x230
EXECLIST_STATUS_LO = 0x234
EXECLIST_STATUS_HI = 0x238
CONTEXT_CONTROL = 0x244
GFX_MODE = 0x29C
CSB_BASE = 0x370  # CSB_ENTRIES x (status dword, context-ID dword)
CSB_PTR = 0x3A0

# RING_CTL: the ring's size in pages, minus one, in bits 20:12 (i915's RING_CTL_SIZE)
RING_NR_PAGES = 0x001FF000


def ring_size(ring_ctl: int) -> int:
    return (ring_ctl & RING_NR_PAGES) + 0x1000


# MI_MODE (masked)
STOP_RING = 1 << 8
MODE_IDLE = 1 << 9
# RING_RESET_CTL (masked)
RESET_CTL_REQUEST_RESET = 1 << 0
RESET_CTL_READY_TO_RESET = 1 << 1
# GFX_MODE / RING_MODE (masked)
GFX_RUN_LIST_ENABLE = 1 << 15

# EXECLIST_STATUS low dword (gvt-gen8-reference §5.3)
EXECLIST_QUEUE_FULL = 1 << 2
EXECLIST1_VALID = 1 << 3
EXECLIST0_VALID = 1 << 4
EXECLIST1_ACTIVE = 1 << 17
EXECLIST0_ACTIVE = 1 << 18

# The context status buffer: 6 entries on GEN8/9.
CSB_ENTRIES = 6
CSB_ENTRY_SIZE = 8
CSB_PTR_WRITE_MASK = 0x7  # bits 2:0
CSB_PTR_READ_SHIFT = 8  # bits 10:8
CSB_PTR_READ_MASK = 0x7 << CSB_PTR_READ_SHIFT
CSB_PTR_NONE = 7  # write pointer after reset: nothing written yet
CSB_PTR_RESET = CSB_PTR_NONE  # read pointer 0, write pointer 7 (GVT-g's reset value)

# The hardware status page (a GGTT page at HWS_PGA): i915 reads the CSB only from here.
HWSP_CSB_DWORD = 0x10  # entries at dwords 0x10-0x1B
HWSP_CSB_WRITE_INDEX_DWORD = 0x1F


class CsbStatus(enum.IntFlag):
    """CSB entry status bits (i915's GEN8_CTX_STATUS_*)."""

    IDLE_ACTIVE = 1 << 0
    PREEMPTED = 1 << 1
    ELEMENT_SWITCH = 1 << 2
    ACTIVE_IDLE = 1 << 3
    COMPLETE = 1 << 4
    LITE_RESTORE = 1 << 15


def csb_next_slot(write_pointer: int) -> int:
    """The slot the next CSB entry goes to (contract §4.1)."""
    return 0 if write_pointer == CSB_PTR_NONE else (write_pointer + 1) % CSB_ENTRIES
