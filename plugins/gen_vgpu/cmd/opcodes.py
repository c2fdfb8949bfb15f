"""The command table: one row (``CommandSpec``, spec.py) per command the vGPU's engines
accept (contract §5, GEN8 forms): encoding, length rule, engines, decoder, the scanner's
check and the executor's handler. docs/commands.md's table is generated from these rows
(cmd/doc.py; a test fails when the doc is stale).
"""

from __future__ import annotations

from . import decode as d
from . import frame as f
from . import records as rec
from .engines import Engine
from .spec import CommandSpec, LengthRule, bit

__all__ = ["ALL_ENGINES", "SPECS"]

ALL_ENGINES = frozenset(Engine)

_MI = 0xFF800000  # client + MI opcode
_BLT = 0xFFC00000  # client + blitter opcode
_RCS = frozenset({Engine.RCS})
_BCS = frozenset({Engine.BCS})
_NOT_RCS = frozenset({Engine.BCS, Engine.VCS0, Engine.VECS0})


def _mi(opcode: int) -> int:
    return opcode << 23


# The register commands' command-streamer-relative MMIO bits (i915's MI_LRI_LRM_CS_MMIO, bit 19,
# and MI_LRR_SOURCE_CS_MMIO, bit 18) are GEN11+: i915 6.1 sets them only from GEN11, and on
# GEN8/GEN9 they are reserved bits the command streamer does not act on. IGT's gem_wsim sets
# them on every generation with absolute offsets below GEN11 (its mmio_base() is the engine's
# base there), GVT-g's parser reads only these commands' length field, and i915's own parser
# masks the length alone: the bits are accepted here and the offsets stay absolute.
_CS_MMIO = bit(19)
_CS_MMIO_SRC = bit(18)


# fmt: off
MI_NOOP = CommandSpec(
    "MI_NOOP", _mi(0x00), _MI, LengthRule.ONE, ALL_ENGINES, d.noop, rec.Noop,
    flags=0x3FFFFF,  # bit 22 (write the NOPID register) is refused
    doc_flags="21:0 (identification number; bit 22, the NOPID write, is refused)", doc_does="skipped")
MI_USER_INTERRUPT = CommandSpec(
    "MI_USER_INTERRUPT", _mi(0x02), _MI, LengthRule.ONE, ALL_ENGINES, d.user_interrupt, rec.UserInterrupt,
    handler="user_interrupt", doc_does="user interrupt at completion")
MI_ARB_CHECK = CommandSpec(
    "MI_ARB_CHECK", _mi(0x05), _MI, LengthRule.ONE, ALL_ENGINES, d.arb_check, rec.ArbCheck,
    doc_does="skipped")
MI_ARB_ON_OFF = CommandSpec(
    "MI_ARB_ON_OFF", _mi(0x08), _MI, LengthRule.ONE, ALL_ENGINES, d.arb_on_off, rec.ArbOnOff,
    flags=bit(0), doc_flags="0 enable", doc_does="skipped")
MI_BATCH_BUFFER_END = CommandSpec(
    "MI_BATCH_BUFFER_END", _mi(0x0A), _MI, LengthRule.ONE, ALL_ENGINES, d.batch_end, rec.BatchEnd,
    check=f.check_batch_end, handler="batch_end", doc_does="ends the batch; refused in the ring")
MI_STORE_DATA_IMM = CommandSpec(
    "MI_STORE_DATA_IMM", _mi(0x20), _MI, LengthRule.FIELD, ALL_ENGINES, d.store_data_imm, rec.StoreDataImm,
    check=f.check_sdi, handler="store_data",
    len_mask=0x3FF, lengths=frozenset({4, 5}), flags=bit(22) | bit(21),
    doc_flags="22 GGTT, 21 qword", doc_does="writes the dword (4) or qword (5); address aligned to it")
MI_LOAD_REGISTER_IMM = CommandSpec(
    "MI_LOAD_REGISTER_IMM", _mi(0x22), _MI, LengthRule.LRI, ALL_ENGINES, d.load_register_imm, rec.LoadRegisterImm,
    check=f.check_lri, handler="load_register",
    len_mask=0xFF, flags=_CS_MMIO | bit(12),  # 12: force posted; 11:8 byte disables refused
    doc_dw0="0x11000000 \\| (2n - 1)",
    doc_flags="19 CS-relative MMIO (GEN11+; ignored, offsets absolute), 12 force-posted (11:8 byte disables refused)",
    doc_does="writes each register, all on the write allow-list")
MI_STORE_REGISTER_MEM = CommandSpec(
    "MI_STORE_REGISTER_MEM", _mi(0x24), _MI, LengthRule.FIELD, ALL_ENGINES, d.store_register_mem,
    rec.StoreRegisterMem, check=f.check_srm, handler="store_register",
    len_mask=0xFF, lengths=frozenset({4}), flags=bit(22) | _CS_MMIO,
    doc_flags="22 GGTT, 19 CS-relative MMIO (GEN11+; ignored)", doc_does="stores a register on the read allow-list")
MI_FLUSH_DW = CommandSpec(
    "MI_FLUSH_DW", _mi(0x26), _MI, LengthRule.FIELD, _NOT_RCS, d.flush_dw, rec.FlushDw,
    check=f.check_flush_dw, handler="flush_dw",
    len_mask=0x3F, lengths=frozenset({4, 5}), flags=bit(21) | bit(18) | (3 << 14) | bit(8) | bit(7),
    doc_flags="21 store-index, 18 TLB invalidate, 15:14 post-sync (0 none, 1 write immediate, 3 timestamp; "
              "2 refused), 8 notify, 7 invalidate BSD",
    doc_does="post-sync write (DW1 bit 2 = GGTT, address bits 47:3), notify interrupt")
MI_BATCH_BUFFER_START = CommandSpec(
    "MI_BATCH_BUFFER_START", _mi(0x31), _MI, LengthRule.FIELD, ALL_ENGINES, d.batch_start, rec.BatchStart,
    check=f.check_batch_start, handler="batch_start",
    len_mask=0xFF, lengths=frozenset({3}), flags=bit(22) | bit(8),
    doc_flags="8 PPGTT, 22 second level", doc_does="starts (or chains to) a batch")
PIPE_CONTROL = CommandSpec(
    "PIPE_CONTROL", 0x7A000000, 0xFFFF0000, LengthRule.FIELD, _RCS, d.pipe_control, rec.PipeControl,
    check=f.check_pipe_control, handler="pipe_control",
    len_mask=0xFF, lengths=frozenset({6}),
    doc_flags="none (DW1 carries the flags: 24 GGTT, 21 store-data-index, 18 TLB invalidate, 15:14 post-sync 0-3, "
              "8 notify; 23 MMIO write refused)",
    doc_does="post-sync qword write at a qword-aligned address (i915's GEN8 form), notify interrupt")
GFX_STATE = CommandSpec(
    "3D/media state", 0x60000000, 0xE0000000, LengthRule.GFX, _RCS, d.gfx_state, rec.GfxState,
    handler="gfx_state",
    doc_dw0="0x6xxxxxxx, 0x7xxxxxxx (client 3, other than PIPE_CONTROL)",
    doc_does="the state record or the draw/dispatch, run by the render pipeline (docs/render.md)")
XY_COLOR_BLT = CommandSpec(
    "XY_COLOR_BLT", (2 << 29) | (0x50 << 22), _BLT, LengthRule.FIELD, _BCS, d.color_blt, rec.ColorBlt,
    handler="start_blit", len_mask=0xFF, lengths=frozenset({7}), flags=(3 << 20) | bit(11),
    doc_dw0="0x54000005 \\| 3 << 20", doc_flags="21:20 must be 3 (32 bpp RGBA); 11 destination tiled",
    doc_does="fills a rectangle (PPGTT), linear or X/Y-tiled (BCS_SWCTRL picks Y)")
XY_SRC_COPY_BLT = CommandSpec(
    "XY_SRC_COPY_BLT", (2 << 29) | (0x53 << 22), _BLT, LengthRule.FIELD, _BCS, d.src_copy_blt, rec.SrcCopyBlt,
    handler="start_blit", len_mask=0xFF, lengths=frozenset({10}), flags=(3 << 20) | bit(15) | bit(11),
    doc_dw0="0x54C00008 \\| 3 << 20", doc_flags="21:20 must be 3; 11 destination, 15 source tiled",
    doc_does="copies a rectangle (PPGTT), linear or X/Y-tiled (BCS_SWCTRL picks Y)")
MI_REPORT_HEAD = CommandSpec(
    "MI_REPORT_HEAD", _mi(0x07), _MI, LengthRule.ONE, ALL_ENGINES, d.report_head, rec.ReportHead,
    doc_does="skipped: a legacy ring's head report, nothing under execlists")
MI_CONDITIONAL_BATCH_BUFFER_END = CommandSpec(
    "MI_CONDITIONAL_BATCH_BUFFER_END", _mi(0x36), _MI, LengthRule.FIELD, ALL_ENGINES, d.cond_batch_end,
    rec.CondBatchEnd, check=f.check_cond_batch_end, handler="cond_batch_end",
    len_mask=0xFF, lengths=frozenset({4}), flags=bit(22) | bit(21),
    doc_flags="22 GGTT, 21 compare semaphore (required)",
    doc_does="ends the batch when the dword at the address is at most DW1 (unsigned), as IGT's spinner uses it")
MI_SEMAPHORE_WAIT = CommandSpec(
    "MI_SEMAPHORE_WAIT", _mi(0x1C), _MI, LengthRule.FIELD, ALL_ENGINES, d.semaphore_wait, rec.SemaphoreWait,
    check=f.check_semaphore_wait, handler="semaphore_wait",
    len_mask=0xFF, lengths=frozenset({4}), flags=bit(22) | bit(15) | (7 << 12),
    doc_flags="22 GGTT, 15 polling (required: signal mode refused), 14:12 compare (0 >, 1 >=, 2 <, 3 <=, 4 ==, 5 !=)",
    doc_does="waits, re-reading the dword at intervals, until it compares true against DW1")
MI_MATH = CommandSpec(
    "MI_MATH", _mi(0x1A), _MI, LengthRule.ANY, ALL_ENGINES, d.math, rec.Math,
    handler="math", len_mask=0x3F,
    doc_dw0="0x0D000000 \\| (n - 1)", doc_does="n ALU instructions over the engine's 16 64-bit GPRs (base + 0x600)")
MI_LOAD_REGISTER_REG = CommandSpec(
    "MI_LOAD_REGISTER_REG", _mi(0x2A), _MI, LengthRule.FIELD, ALL_ENGINES, d.load_register_reg,
    rec.LoadRegisterReg, check=f.check_lrr, handler="load_register_reg",
    len_mask=0xFF, lengths=frozenset({3}), flags=_CS_MMIO | _CS_MMIO_SRC,
    doc_flags="19 destination, 18 source CS-relative MMIO (GEN11+; ignored)",
    doc_does="copies a register on the read allow-list to one on the write allow-list")
MI_LOAD_REGISTER_MEM = CommandSpec(
    "MI_LOAD_REGISTER_MEM", _mi(0x29), _MI, LengthRule.FIELD, ALL_ENGINES, d.load_register_mem,
    rec.LoadRegisterMem, check=f.check_lrm, handler="load_register_mem",
    len_mask=0xFF, lengths=frozenset({4}), flags=bit(22) | bit(21) | _CS_MMIO,
    doc_flags="22 GGTT, 21 async mode, 19 CS-relative MMIO (GEN11+; ignored)",
    doc_does="loads a register on the write allow-list from memory")
MI_COPY_MEM_MEM = CommandSpec(
    "MI_COPY_MEM_MEM", _mi(0x2E), _MI, LengthRule.FIELD, ALL_ENGINES, d.copy_mem_mem, rec.CopyMemMem,
    check=f.check_copy_mem_mem, handler="copy_mem_mem",
    len_mask=0xFF, lengths=frozenset({5}), flags=bit(22) | bit(21),
    doc_flags="22 source GGTT, 21 destination GGTT", doc_does="copies a dword (DW1-2 destination, DW3-4 source)")
MI_ATOMIC = CommandSpec(
    "MI_ATOMIC", _mi(0x2F), _MI, LengthRule.FIELD, ALL_ENGINES, d.atomic, rec.Atomic,
    check=f.check_atomic, handler="atomic",
    len_mask=0xFF, lengths=frozenset({3, 11}),
    flags=bit(22) | bit(21) | (3 << 19) | bit(18) | bit(17) | bit(16) | (0xFF << 8),
    doc_flags="22 GGTT, 20:19 size (0 dword, 1 qword), 18 inline data, 17 CS stall, 15:8 operation "
              "(0x1-0xF, + 0x20 qword); 21 post-sync and 16 return data refused",
    doc_does="read-modify-write of a dword or qword; without inline data only INC, DEC, PREDEC")
MI_STORE_DATA_INDEX = CommandSpec(
    "MI_STORE_DATA_INDEX", _mi(0x21), _MI, LengthRule.FIELD, ALL_ENGINES, d.store_data_index, rec.StoreDataIndex,
    handler="store_data_index",
    len_mask=0xFF, lengths=frozenset({3, 4}), flags=bit(21),
    doc_flags="21 qword",
    doc_does="writes a dword or qword at an offset in the context's PPHWSP; in a PPGTT batch a no-op that sets "
             "EIR's privilege-violation bit, as hardware does (i915 masks it; IGT's gem_wsim emits it there)")
# fmt: on

# Most specific first: a header that matches none of these is unknown.
SPECS: tuple[CommandSpec, ...] = (
    MI_NOOP,
    MI_USER_INTERRUPT,
    MI_ARB_CHECK,
    MI_ARB_ON_OFF,
    MI_BATCH_BUFFER_END,
    MI_STORE_DATA_IMM,
    MI_LOAD_REGISTER_IMM,
    MI_STORE_REGISTER_MEM,
    MI_FLUSH_DW,
    MI_BATCH_BUFFER_START,
    MI_REPORT_HEAD,
    MI_CONDITIONAL_BATCH_BUFFER_END,
    MI_SEMAPHORE_WAIT,
    MI_MATH,
    MI_LOAD_REGISTER_REG,
    MI_LOAD_REGISTER_MEM,
    MI_COPY_MEM_MEM,
    MI_ATOMIC,
    MI_STORE_DATA_INDEX,
    PIPE_CONTROL,
    XY_COLOR_BLT,
    XY_SRC_COPY_BLT,
    GFX_STATE,
)
