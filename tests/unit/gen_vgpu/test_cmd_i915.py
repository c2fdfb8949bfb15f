"""i915 6.1's own command streams on GEN8/GEN9 in vGPU mode, taken as facts from the kernel
source (gt/gen8_engine_cs.[ch], intel_workarounds.c, intel_renderstate.c and the generated
gen8/gen9_renderstate.c) and written here as data: they must scan clean."""

from __future__ import annotations

from array import array

import pytest

from gen_vgpu.cmd import BufferSource, Engine, Frame, GraphicsMemory, scan_batch, scan_ring
from gen_vgpu.cmd.records import (
    BatchEnd,
    BatchStart,
    FlushDw,
    GfxState,
    LoadRegisterImm,
    PipeControl,
    PostSync,
    UserInterrupt,
)
from gen_vgpu.render.pipeline import Pipeline

from . import cmd_streams as c
from .render_rig import FlatSpace

MEMORY = GraphicsMemory.sized(256 << 20, 64 << 20)
HWSP = 0x0080_1000  # a timeline's breadcrumb slot in the GGTT
SEQNO = 0x42
LRC_PPHWSP_SCRATCH_ADDR = 0x34 * 4  # the flush's store-index target in the PPHWSP

# PIPE_CONTROL flag sets of gen8_emit_flush_rcs and gen8_emit_fini_breadcrumb_rcs.
PC_FLUSH = 1 << 20 | 1 << 12 | 1 << 0 | 1 << 5 | 1 << 7  # CS stall, RT, depth, DC flush, flush enable
PC_INVALIDATE = 1 << 20 | 1 << 18 | 1 << 11 | 1 << 10 | 1 << 4 | 1 << 3 | 1 << 2 | c.PC_QW_WRITE | c.PC_STORE_DATA_INDEX


def init_breadcrumb() -> list[int]:
    return [0x10000002 | c.MI_USE_GGTT, HWSP, 0, SEQNO - 1, c.MI_NOOP, c.MI_ARB_CHECK]


def flush_rcs(mode: int, gen: int) -> list[int]:  # mode: 1 invalidate, 2 flush, 3 barrier
    flags = (PC_INVALIDATE if mode & 1 else 0) | (PC_FLUSH if mode & 2 else 1 << 20)
    null = c.pipe_control(0) if gen == 9 and mode & 1 else []  # the GEN9 null PIPE_CONTROL
    return null + c.pipe_control(flags, LRC_PPHWSP_SCRATCH_ADDR)


def flush_xcs(engine: Engine, invalidate: bool) -> list[int]:
    flags = c.MI_FLUSH_DW_STORE_INDEX | c.MI_FLUSH_DW_OP_STOREDW
    if invalidate:
        flags |= c.MI_INVALIDATE_TLB | (c.MI_INVALIDATE_BSD if engine is Engine.VCS0 else 0)
    return c.flush_dw(LRC_PPHWSP_SCRATCH_ADDR, 0, flags)


def bb_start_noarb(addr: int, secure: bool) -> list[int]:  # vGPU: no preemption, the noarb form
    return [c.MI_ARB_ON_OFF, *c.bb_start(addr, ppgtt=not secure)]


def fini_tail() -> list[int]:
    return [c.MI_USER_INTERRUPT, c.MI_ARB_ENABLE, c.MI_ARB_CHECK, c.MI_NOOP]  # no semaphores in vGPU mode


def fini_rcs() -> list[int]:
    return (
        c.pipe_control(1 << 12 | 1 << 0 | 1 << 5)
        + c.pipe_control(1 << 7 | 1 << 20 | c.PC_GLOBAL_GTT | c.PC_QW_WRITE, HWSP, SEQNO)
        + fini_tail()
    )


def fini_xcs() -> list[int]:
    return c.flush_dw(HWSP | c.MI_FLUSH_DW_USE_GTT, SEQNO) + fini_tail()


def request(engine: Engine, gen: int, batch: int, secure: bool) -> list[int]:
    if engine is Engine.RCS:
        return init_breadcrumb() + flush_rcs(1, gen) + bb_start_noarb(batch, secure) + flush_rcs(2, gen) + fini_rcs()
    return (
        init_breadcrumb()
        + flush_xcs(engine, True)
        + bb_start_noarb(batch, secure)
        + flush_xcs(engine, False)
        + fini_xcs()
    )


@pytest.mark.parametrize("gen", [8, 9])
@pytest.mark.parametrize("engine", list(Engine))
def test_request_with_breadcrumbs_and_flushes(engine: Engine, gen: int) -> None:
    seg = scan_ring(array("I", request(engine, gen, 0x0010_0000, secure=False) * 3), engine, MEMORY)
    kinds = [type(r).__name__ for _, r in seg.commands]
    assert kinds.count("UserInterrupt") == 3 and kinds.count("BatchStart") == 3
    assert all(b.frame.level == 1 and not b.frame.privileged for b in seg.batches)
    writes = [r for _, r in seg.commands if isinstance(r, (FlushDw, PipeControl)) and r.post_sync is PostSync.WRITE_IMM]
    assert [(w.address, w.ggtt, w.store_index, w.value) for w in writes][-1] == (HWSP, True, False, SEQNO)


def ctx_wa_lri(gen: int) -> list[int]:
    """intel_engine_emit_ctx_wa: one LRI of the context workaround list, sorted by offset."""
    regs = {
        8: [0x209C, 0x20C0, 0x7000, 0x7004, 0x7008, 0x7300, 0xE184, 0xE4F0, 0xE4F4],
        9: [0x2580, 0x7004, 0x7008, 0x7014, 0x7300, 0xE180, 0xE184, 0xE188, 0xE194, 0xE4F0],
    }[gen]
    return c.lri(*[(r, 0x00010001 << (i % 16)) for i, r in enumerate(regs)]) + [c.MI_NOOP]


@pytest.mark.parametrize("gen", [8, 9])
def test_record_defaults_request(gen: int) -> None:
    """The first RCS request at probe: ctx-wa LRI between two barriers, then the null render
    state batch and its aux batch, both GGTT ("secure")."""
    so = 0x0001_0000
    ring = (
        flush_rcs(3, gen)
        + ctx_wa_lri(gen)
        + flush_rcs(3, gen)
        + bb_start_noarb(so, secure=True)
        + bb_start_noarb(so + 0x1000 - 64, secure=True)
        + flush_rcs(2, gen)
        + fini_rcs()
    )
    seg = scan_ring(array("I", ring), Engine.RCS, MEMORY)
    (lri,) = [r for _, r in seg.commands if isinstance(r, LoadRegisterImm)]
    assert len(lri.writes) == (9 if gen == 8 else 10)
    assert [b.frame.privileged for b in seg.batches] == [True, True]


# The null render state batches as i915 6.1 ships them, by shape: each command's header and
# the dwords from it to the next command in the kernel's array. 3DSTATE_SO_DECL_LIST
# (0x79170101) spans 259 dwords there: its 9-bit length field; the contract's 8-bit rule reads
# 3 dwords and then 256 zero dwords, which are MI_NOOPs, and lands on the same next command.
GEN8_NULL_STATE = [
    (0x7A000004, 6), (0x69040000, 1), (0x78140000, 2), (0x7820000A, 12), (0x78130002, 4), (0x781F0002, 4),
    (0x78510009, 11), (0x78100007, 9), (0x781B0007, 9), (0x78110008, 10), (0x781E0003, 5), (0x781D0007, 9),
    (0x78120002, 4), (0x78500003, 5), (0x781C0002, 4), (0x780C0000, 2), (0x78520003, 5), (0x78300000, 2),
    (0x78310000, 2), (0x78320000, 2), (0x78330000, 2), (0x79190002, 4), (0x791A0002, 4), (0x791B0002, 4),
    (0x79120000, 2), (0x79130000, 2), (0x79140000, 2), (0x79150000, 2), (0x79160000, 2), (0x78150009, 11),
    (0x78190009, 11), (0x781A0009, 11), (0x78160009, 11), (0x78170009, 11), (0x78490001, 3), (0x784A0000, 2),
    (0x784B0000, 2), (0x79170101, 259), (0x79180006, 8), (0x79180006, 8), (0x79180006, 8), (0x79180006, 8),
    (0x6101000E, 16), (0x61020001, 3), (0x79000002, 4), (0x78050006, 8), (0x79040002, 4), (0x79040002, 4),
    (0x79040002, 4), (0x79040002, 4), (0x79080001, 3), (0x790A0001, 3), (0x78060003, 5), (0x78070003, 5),
    (0x78040001, 3), (0x79110000, 2), (0x780D0000, 2), (0x79060000, 2), (0x7907001F, 33), (0x7902000F, 17),
    (0x790C000F, 17), (0x780A0003, 5), (0x78080083, 133), (0x78090043, 69), (0x680B0001, 1), (0x78260000, 2),
    (0x78270000, 2), (0x78280000, 2), (0x78290000, 2), (0x782A0000, 2), (0x780E0000, 2), (0x78240000, 2),
    (0x784F0000, 2), (0x784D0000, 2), (0x782B0000, 2), (0x782C0000, 2), (0x782D0000, 2), (0x782E0000, 2),
    (0x782F0000, 2), (0x780F0000, 2), (0x78230000, 2), (0x78210000, 2), (0x7B000005, 7), (0x05000000, 1),
]  # fmt: skip
GEN9_NULL_STATE = [
    (0x7A000004, 6), (0x69040300, 1), (0x78140000, 2), (0x7820000A, 12), (0x78130002, 4), (0x781F0004, 6),
    (0x78510009, 11), (0x78100007, 9), (0x781B0007, 9), (0x78110008, 10), (0x781E0003, 5), (0x781D0009, 11),
    (0x78120002, 4), (0x78500003, 5), (0x781C0002, 4), (0x780C0000, 2), (0x78520003, 5), (0x78300000, 2),
    (0x78310000, 2), (0x78320000, 2), (0x78330000, 2), (0x79190002, 4), (0x791A0002, 4), (0x791B0002, 4),
    (0x79120000, 2), (0x79130000, 2), (0x79140000, 2), (0x79150000, 2), (0x79160000, 2), (0x78150009, 11),
    (0x78190009, 11), (0x781A0009, 11), (0x78160009, 11), (0x78170009, 11), (0x78490001, 3), (0x784A0000, 2),
    (0x784B0000, 2), (0x79170101, 259), (0x79180006, 8), (0x79180006, 8), (0x79180006, 8), (0x79180006, 8),
    (0x61010011, 19), (0x61020001, 3), (0x79000002, 4), (0x78050006, 8), (0x79040002, 4), (0x79040002, 4),
    (0x79040002, 4), (0x79040002, 4), (0x79080001, 3), (0x790A0001, 3), (0x78060003, 5), (0x78070003, 5),
    (0x78040001, 3), (0x79110000, 2), (0x780D0000, 2), (0x79060000, 2), (0x7907001F, 33), (0x7902000F, 17),
    (0x790C000F, 17), (0x780A0003, 5), (0x78080083, 133), (0x78090043, 69), (0x78550003, 5), (0x680B0001, 1),
    (0x780E0000, 2), (0x78240000, 2), (0x784F0000, 2), (0x784D0000, 2), (0x782B0000, 2), (0x782C0000, 2),
    (0x782D0000, 2), (0x782E0000, 2), (0x782F0000, 2), (0x780F0000, 2), (0x78230000, 2), (0x78210000, 2),
    (0x78260000, 2), (0x78270000, 2), (0x78280000, 2), (0x78290000, 2), (0x782A0000, 2), (0x7B000005, 7),
    (0x05000000, 1),
]  # fmt: skip
# Facts to check the shapes against: the batch's relocations point into STATE_BASE_ADDRESS
# (gen8 relocs 0x798.., gen9 0x7a8..: its DW1), and the commands end at this dword.
NULL_STATE = {8: (GEN8_NULL_STATE, 0x798 // 4 - 1, 873), 9: (GEN9_NULL_STATE, 0x7A8 // 4 - 1, 885)}
STATE_TAIL_DWORDS = 71  # zeros, then the state i915 places after the commands (not scanned)


def null_state_batch(shape: list[tuple[int, int]]) -> array[int]:
    out = array("I")
    for header, span in shape:
        out.append(header)
        payload = (header & 0xFF) + 1 if header >> 29 == 3 and (header >> 27) & 3 != 1 else 0
        # Payload dwords carry filler so a mis-sized skip would decode garbage; the PIPE_CONTROL
        # keeps i915's DW1 (the GGTT bit with no post-sync op) and zeros elsewhere.
        if header == 0x7A000004:
            out.extend([0x01000000, 0, 0, 0, 0])
        elif header >> 16 == 0x7820:  # 3DSTATE_PS enables no dispatch width: the draw runs no shader
            out.extend([0] * (span - 1))
        else:
            out.extend([0xDEAD0000 | i for i in range(min(payload, span - 1))])
            out.extend([0] * (span - 1 - min(payload, span - 1)))
    out.extend([0] * STATE_TAIL_DWORDS)
    return out


@pytest.mark.parametrize("gen", [8, 9])
def test_null_render_state_batch(gen: int) -> None:
    shape, sba, end = NULL_STATE[gen]
    dwords = null_state_batch(shape)
    assert dwords[sba] >> 16 == 0x6101 and dwords[end] == c.MI_BATCH_BUFFER_END
    assert 940 <= len(dwords) <= 960
    seg = scan_batch(BufferSource(dwords), Frame(Engine.RCS, 1, True, MEMORY), 0x10000)
    assert seg.length == end + 1
    kinds = [type(r) for _, r in seg.commands]
    assert [k for k in kinds if k is not GfxState] == [PipeControl, BatchEnd]
    # The 3D state goes to the render pipeline: it records it and starts nothing.
    pipeline = Pipeline(FlatSpace(), gen)
    for _, r in seg.commands:
        if isinstance(r, GfxState):
            assert pipeline.command(r.dwords) is None


def test_aux_batch_and_secure_dispatch() -> None:
    """render_state_setup's aux batch: MI_BATCH_BUFFER_END padded to a cacheline."""
    seg = scan_batch(BufferSource(array("I", [c.MI_BATCH_BUFFER_END, 0])), Frame(Engine.RCS, 1, True, MEMORY))
    assert seg.commands == [(0, BatchEnd())]


def test_user_batch_store_dword() -> None:
    """The smallest userspace test (i915-guest §5): a PPGTT SDI and BB_END, 8-byte aligned."""
    seg = scan_batch(
        BufferSource(array("I", [0x10000002, 0x00100000, 0, 0xDEADBEEF, 0x05000000, 0])),
        Frame(Engine.RCS, 1, False, MEMORY),
    )
    assert [type(r).__name__ for _, r in seg.commands] == ["StoreDataImm", "BatchEnd"]
    assert not any(isinstance(r, (UserInterrupt, BatchStart)) for _, r in seg.commands)
