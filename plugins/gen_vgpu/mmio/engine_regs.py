"""Per-engine register offsets (from the engine's MMIO base) and their fields, named as in
i915 (gt/intel_engine_regs.h, intel_lrc_reg.h) and GVT-g, and their rows of the register
table (contract §4.1). The execlists (engine/execlist.py) and the GT block (mmio/gt.py)
supply the handlers.

Command access: a command stream may read its whole engine page (SRM of RING_TIMESTAMP,
CTX_TIMESTAMP, pipeline statistics ...) and write all of it except the registers that drive
submission, the ring, interrupts and errors: it must not re-point its own ring, page tables,
status page or execlist port. Those rows say ``Cmd.READ``; the rest of the page is the
``ENGINE_PAGE`` range.
"""

from __future__ import annotations

import enum

from ..engines import ENGINE_MMIO_PAGE, EngineId
from .row import RO, Cmd, Kind, Row

# Ring registers: plain storage in execlist mode (the context image carries the live values).
RING_ACTHD_UDW = 0x5C
RING_DMA_FADD_UDW = 0x60
RING_IPEIR = 0x64
RING_IPEHR = 0x68
RING_INSTDONE = 0x6C
RING_INSTPS = 0x70
RING_ACTHD = 0x74
RING_DMA_FADD = 0x78
RING_BBSTATE = 0x110
RING_SBBADDR = 0x114
RING_SBBSTATE = 0x118
RING_SBBADDR_UDW = 0x11C
RING_BBADDR = 0x140
RING_BBADDR_UDW = 0x168
RING_PDP = 0x270  # PDP i: low dword at + 8i, high at + 8i + 4
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
RING_TIMESTAMP = 0x358
RING_TIMESTAMP_UDW = 0x35C
CSB_BASE = 0x370  # CSB_ENTRIES x (status dword, context-ID dword)
CSB_PTR = 0x3A0
RING_CTX_TIMESTAMP = 0x3A8

# RING_CTL: the ring's size in pages, minus one, in bits 20:12 (i915's RING_CTL_SIZE)
RING_NR_PAGES = 0x001FF000


def ring_size(ring_ctl: int) -> int:
    return (ring_ctl & RING_NR_PAGES) + 0x1000


# RING_BBSTATE: the batch is in the PPGTT (the address-space indicator)
BBSTATE_PPGTT = 1 << 5
# EIR / EMR: a privilege violation, the command replaced by a no-op (i915's CP_PRIV; it masks it)
EIR_CP_PRIV = 1 << 2
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


_MAY_NOT_LOAD = Cmd.READ  # see the module's docstring

# The blitter's tile walk for Y-tiled surfaces (engine/tiling.py): a masked register that
# IGT and i915 load from the command stream before a Y-tiled blit.
BCS_SWCTRL = 0x22200
SWCTRL_SRC_Y = 1 << 0
SWCTRL_DST_Y = 1 << 1


ROWS: tuple[Row, ...] = (
    Row(
        "BCS_SWCTRL",
        BCS_SWCTRL,
        masked=True,
        rw_mask=SWCTRL_SRC_Y | SWCTRL_DST_Y,
        cmd=Cmd.RW,
        cmd_engines=frozenset({EngineId.BCS}),
        note="bit 0 source, bit 1 destination Y-tiled",
    ),
    Row(
        "ENGINE_PAGE",
        0,
        engine=True,
        size=ENGINE_MMIO_PAGE,
        kind=Kind.ACCESS,
        cmd=Cmd.RW,
        note="timestamps, GPRs, statistics",
    ),
    # The ring: plain storage in execlist mode (the context image carries the live values).
    Row("RING_TAIL", RING_TAIL, engine=True, cmd=_MAY_NOT_LOAD),
    Row("RING_HEAD", RING_HEAD, engine=True, cmd=_MAY_NOT_LOAD),
    Row("RING_START", RING_START, engine=True, cmd=_MAY_NOT_LOAD),
    Row("RING_CTL", RING_CTL, engine=True, cmd=_MAY_NOT_LOAD),
    Row("HWS_PGA", HWS_PGA, engine=True, cmd=_MAY_NOT_LOAD),
    Row("HWSTAM", HWSTAM, engine=True, cmd=_MAY_NOT_LOAD),
    Row(
        "MI_MODE",
        MI_MODE,
        engine=True,
        masked=True,
        rw_mask=0xFFFF & ~MODE_IDLE,
        handler="mi_mode",
        cmd=Cmd.RW,
        note="MODE_IDLE reads set while STOP_RING is and the engine is idle",
    ),
    Row("RING_IMR", RING_IMR, engine=True, cmd=_MAY_NOT_LOAD),
    Row("EIR", EIR, engine=True, w1c=0xFFFFFFFF, cmd=_MAY_NOT_LOAD),
    Row("EMR", EMR, engine=True, cmd=_MAY_NOT_LOAD),
    Row("ESR", ESR, engine=True, rw_mask=RO, cmd=_MAY_NOT_LOAD, note="non-zero would make i915 reset the engine"),
    Row(
        "RING_RESET_CTL",
        RING_RESET_CTL,
        engine=True,
        masked=True,
        rw_mask=RESET_CTL_REQUEST_RESET,
        handler="reset_ctl",
        cmd=_MAY_NOT_LOAD,
        note="READY_TO_RESET follows REQUEST_RESET at once",
    ),
    Row("RING_BBSTATE", RING_BBSTATE, engine=True, cmd=_MAY_NOT_LOAD, note="bit 5: the last batch started is PPGTT"),
    Row("RING_SBBADDR", RING_SBBADDR, engine=True, cmd=_MAY_NOT_LOAD, note="0: i915 only prints it"),
    Row("RING_SBBSTATE", RING_SBBSTATE, engine=True, cmd=_MAY_NOT_LOAD, note="0: i915 prints it"),
    Row("RING_SBBADDR_UDW", RING_SBBADDR_UDW, engine=True, cmd=_MAY_NOT_LOAD, note="0: i915 prints it"),
    Row("RING_BBADDR", RING_BBADDR, engine=True, cmd=_MAY_NOT_LOAD, note="the last batch the engine started"),
    Row("RING_BBADDR_UDW", RING_BBADDR_UDW, engine=True, cmd=_MAY_NOT_LOAD, note="its bits 47:32"),
    # Execlists (engine/execlist.py).
    Row("ELSP", ELSP, engine=True, handler="elsp", cmd=_MAY_NOT_LOAD, note="four writes submit; reads 0"),
    Row(
        "EXECLIST_STATUS_LO",
        EXECLIST_STATUS_LO,
        engine=True,
        rw_mask=RO,
        handler="execlist_status_lo",
        published=True,
        cmd=_MAY_NOT_LOAD,
    ),
    Row(
        "EXECLIST_STATUS_HI",
        EXECLIST_STATUS_HI,
        engine=True,
        rw_mask=RO,
        handler="execlist_status_hi",
        published=True,
        cmd=_MAY_NOT_LOAD,
    ),
    Row("CONTEXT_CONTROL", CONTEXT_CONTROL, engine=True, masked=True, cmd=_MAY_NOT_LOAD),
    Row("PDP{i}_LDW", RING_PDP, engine=True, count=4, stride=8, cmd=_MAY_NOT_LOAD, note="page-table roots"),
    Row("PDP{i}_UDW", RING_PDP + 4, engine=True, count=4, stride=8, cmd=_MAY_NOT_LOAD),
    Row("GFX_MODE", GFX_MODE, engine=True, masked=True, cmd=_MAY_NOT_LOAD, note="bit 15 enables execlists"),
    Row(
        "CSB{i}_STATUS", CSB_BASE, engine=True, count=CSB_ENTRIES, stride=CSB_ENTRY_SIZE, rw_mask=RO, cmd=_MAY_NOT_LOAD
    ),
    Row(
        "CSB{i}_CONTEXT_ID",
        CSB_BASE + 4,
        engine=True,
        count=CSB_ENTRIES,
        stride=CSB_ENTRY_SIZE,
        rw_mask=RO,
        cmd=_MAY_NOT_LOAD,
    ),
    Row(
        "CSB_PTR",
        CSB_PTR,
        engine=True,
        reset=CSB_PTR_RESET,
        masked=True,
        rw_mask=CSB_PTR_READ_MASK | CSB_PTR_WRITE_MASK,
        cmd=_MAY_NOT_LOAD,
        note="read pointer 0, write pointer 7 after reset",
    ),
    # The command streamer's timestamp clock (timestamp.py). A command stream stores them with
    # MI_STORE_REGISTER_MEM (i915's cmd parser and GVT-g allow it); a load of RING_TIMESTAMP
    # changes nothing, one of CTX_TIMESTAMP sets the running context's count.
    Row(
        "RING_TIMESTAMP",
        RING_TIMESTAMP,
        engine=True,
        rw_mask=RO,
        handler="ring_timestamp",
        cmd=Cmd.RW,
        note="the timestamp clock's low dword: 12.5 MHz (BDW), 12 MHz (SKL)",
    ),
    Row(
        "RING_TIMESTAMP_UDW",
        RING_TIMESTAMP_UDW,
        engine=True,
        rw_mask=RO,
        handler="ring_timestamp_udw",
        cmd=Cmd.RW,
        note="the timestamp clock's high dword",
    ),
    Row(
        "CTX_TIMESTAMP",
        RING_CTX_TIMESTAMP,
        engine=True,
        handler="ctx_timestamp",
        cmd=Cmd.RW,
        note="counts while a context is active; loaded from and saved to its image",
    ),
)
