"""Each decoder with its valid encodings, and each way a command is refused (decode_one)."""

from __future__ import annotations

from array import array

import pytest

from gen_vgpu.cmd import CommandRejected, Engine, decode_one
from gen_vgpu.cmd.records import (
    ArbCheck,
    ArbOnOff,
    BatchEnd,
    BatchStart,
    ColorBlt,
    FlushDw,
    GfxState,
    LoadRegisterImm,
    Noop,
    PipeControl,
    PostSync,
    SrcCopyBlt,
    StoreDataImm,
    StoreRegisterMem,
    UserInterrupt,
)

from . import cmd_streams as c

RCS, BCS, VCS, VECS = Engine.RCS, Engine.BCS, Engine.VCS0, Engine.VECS0


def dec(dwords: list[int], engine: Engine = RCS) -> tuple[object, int]:
    return decode_one(array("I", dwords), 0, engine)


def rejected(dwords: list[int], engine: Engine = RCS) -> CommandRejected:
    with pytest.raises(CommandRejected) as e:
        dec(dwords, engine)
    return e.value


@pytest.mark.parametrize("engine", list(Engine))
def test_single_dword_mi(engine: Engine) -> None:
    assert dec([c.MI_NOOP], engine) == (Noop(), 1)
    assert dec([c.MI_ARB_CHECK], engine) == (ArbCheck(), 1)
    assert dec([c.MI_ARB_ON_OFF], engine) == (ArbOnOff(False), 1)
    assert dec([c.MI_ARB_ENABLE], engine) == (ArbOnOff(True), 1)
    assert dec([c.MI_USER_INTERRUPT], engine) == (UserInterrupt(), 1)
    assert dec([c.MI_BATCH_BUFFER_END], engine) == (BatchEnd(), 1)


def test_noop_identification_write_and_reserved_bits_refused() -> None:
    assert dec([0x0000_1234]) == (Noop(), 1)  # an identification number alone is harmless
    assert "reserved header bits 0x400000" in rejected([1 << 22]).reason
    assert "reserved" in rejected([c.MI_ARB_ON_OFF | 2]).reason
    assert "reserved" in rejected([c.MI_USER_INTERRUPT | 1]).reason


def test_batch_start() -> None:
    assert dec(c.bb_start(0x1_2345_6000)) == (BatchStart(0x1_2345_6000, True, False), 3)
    assert dec(c.bb_start(0x4000, ppgtt=False, second_level=True)) == (BatchStart(0x4000, False, True), 3)
    assert "not dword aligned" in rejected(c.bb_start(0x4002)).reason
    assert "bits 63:48" in rejected([0x18800101, 0, 0x10000]).reason
    assert "length 4" in rejected([0x18800102, 0, 0, 0]).reason
    assert "reserved" in rejected([0x18800001 | 1 << 15, 0, 0]).reason  # predication


def test_store_data_imm_forms() -> None:
    assert dec(c.sdi(0x2000, 7, ggtt=True)) == (StoreDataImm(0x2000, True, 4, 7), 4)
    assert dec(c.sdi(0x1_0000_2008, 0x1122334455667788, qword=True)) == (
        StoreDataImm(0x1_0000_2008, False, 8, 0x1122334455667788),
        5,
    )
    assert "disagree" in rejected([0x10000003, 0, 0, 1, 2]).reason  # 5 dwords without bit 21
    assert "disagree" in rejected([0x10000002 | 1 << 21, 0, 0, 1]).reason
    assert "aligned" in rejected(c.sdi(0x2004, 1, qword=True)).reason
    assert "aligned" in rejected(c.sdi(0x2001, 1)).reason
    assert "length 6" in rejected([0x10000004, 0, 0, 0, 0, 0]).reason


def test_load_register_imm() -> None:
    rec, n = dec(c.lri((0x2094, 1), (0x20C0, 0x00800080)))
    assert (rec, n) == (LoadRegisterImm(((0x2094, 1), (0x20C0, 0x00800080))), 5)
    assert dec(c.lri(*[(0x2600 + 4 * i, i) for i in range(126)]))[1] == 253
    assert "2n - 1" in rejected([0x11000002, 0x2094, 1, 0]).reason  # even field
    assert "2n - 1" in rejected([0x110000FF] + [0] * 256).reason  # 128.5 pairs
    assert "not a dword-aligned MMIO offset" in rejected(c.lri((0x2095, 1))).reason
    assert "not a dword-aligned MMIO offset" in rejected(c.lri((0x200000, 1))).reason
    assert "reserved" in rejected([0x11000001 | 0xF00, 0x2094, 1]).reason  # byte write disables
    assert dec([0x11001001, 0x2094, 1])[1] == 3  # force-posted is accepted


def test_store_register_mem() -> None:
    assert dec(c.srm(0x2358, 0x3000, ggtt=True)) == (StoreRegisterMem(0x2358, 0x3000, True), 4)
    assert "aligned" in rejected(c.srm(0x2358, 0x3002)).reason
    assert "length 5" in rejected([0x12000003, 0x2358, 0, 0, 0]).reason
    assert "reserved" in rejected([0x12000002 | 1 << 21, 0x2358, 0, 0]).reason


def test_flush_dw_forms() -> None:
    flags = c.MI_FLUSH_DW_OP_STOREDW | c.MI_FLUSH_DW_STORE_INDEX | c.MI_INVALIDATE_TLB | c.MI_FLUSH_DW_NOTIFY
    rec, n = dec(c.flush_dw(0xD0, 0, flags), BCS)
    assert (rec, n) == (FlushDw(PostSync.WRITE_IMM, 0xD0, False, True, 4, 0, True, True), 4)
    rec, n = dec(c.flush_dw(0x5000 | c.MI_FLUSH_DW_USE_GTT, 9), VCS)
    assert rec == FlushDw(PostSync.WRITE_IMM, 0x5000, True, False, 4, 9, False, False)
    rec, n = dec(c.flush_dw(0x1_0000_5008, 1 << 40, qword=True), VECS)
    assert (rec, n) == (FlushDw(PostSync.WRITE_IMM, 0x1_0000_5008, False, False, 8, 1 << 40, False, False), 5)
    rec, _ = dec(c.flush_dw(0, 0, 0), BCS)
    assert rec == FlushDw(PostSync.NONE, 0, False, False, 0, 0, False, False)
    assert "reserved for MI_FLUSH_DW" in rejected(c.flush_dw(0x5000, 0, 2 << 14), BCS).reason
    assert "past the 4096-byte PPHWSP" in rejected(c.flush_dw(0x1000, 0, flags), BCS).reason
    assert "bits 1:0" in rejected(c.flush_dw(0x5001), BCS).reason
    assert "not allowed on RCS" in rejected(c.flush_dw(0x5000), RCS).reason


def test_pipe_control() -> None:
    flags = c.PC_CS_STALL | c.PC_QW_WRITE | c.PC_GLOBAL_GTT | c.PC_NOTIFY
    rec, n = dec(c.pipe_control(flags, 0x6000, 42))
    assert (rec, n) == (PipeControl(flags, PostSync.WRITE_IMM, 0x6000, True, False, 42, True, False), 6)
    rec, _ = dec(c.pipe_control(c.PC_TLB_INVALIDATE | c.PC_STORE_DATA_INDEX | c.PC_QW_WRITE, 0xD0))
    assert rec.store_index and rec.invalidate_tlb and rec.address == 0xD0 and not rec.ggtt  # type: ignore[attr-defined]
    rec, _ = dec(c.pipe_control(3 << 14, 0x7000))
    assert rec.post_sync is PostSync.TIMESTAMP  # type: ignore[attr-defined]
    assert dec(c.pipe_control(PC_GGTT_ONLY := c.PC_GLOBAL_GTT, 0x1234))[0].post_sync is PostSync.NONE  # type: ignore[attr-defined]
    assert PC_GGTT_ONLY
    assert "MMIO-write" in rejected(c.pipe_control(c.PC_MMIO_WRITE | c.PC_QW_WRITE, 0x2000)).reason
    assert "aligned" in rejected(c.pipe_control(c.PC_QW_WRITE, 0x6004)).reason
    assert (
        "past the 4096-byte PPHWSP" in rejected(c.pipe_control(c.PC_QW_WRITE | c.PC_STORE_DATA_INDEX, 0xFF8 + 8)).reason
    )
    assert "length 5" in rejected([0x7A000003, 0, 0, 0, 0]).reason
    for engine in (BCS, VCS, VECS):
        assert "not allowed" in rejected(c.pipe_control(0), engine).reason


def test_gfx_state_lengths() -> None:
    assert dec([0x69040000]) == (GfxState(0x69040000, 1, (0x69040000,)), 1)  # PIPELINE_SELECT
    assert dec([0x680B0001]) == (GfxState(0x680B0001, 1, (0x680B0001,)), 1)  # 3DSTATE_VF_STATISTICS
    rec, n = dec([0x6101000E] + [0] * 15)  # STATE_BASE_ADDRESS, GEN8
    assert (rec, n) == (GfxState(0x6101000E, 16, (0x6101000E,) + (0,) * 15), 16)
    assert dec([0x7B000005] + [0] * 6)[1] == 7  # 3DPRIMITIVE
    assert dec([0x70000007] + [0] * 8)[1] == 9  # a media command: same rule
    assert "past the end" in rejected([0x78080083] + [0] * 10).reason
    for engine in (BCS, VCS, VECS):
        assert "not allowed" in rejected([0x69040000], engine).reason


def test_blits() -> None:
    assert dec(c.color_blt(0x1_0000_0000, 256, 1, 2, 30, 40, 0xFF00FF00), BCS) == (
        ColorBlt(0x1_0000_0000, 256, 1, 2, 30, 40, 0xFF00FF00, 0xF0),
        7,
    )
    assert dec(c.src_copy_blt(0x20000, 512, 0, 0, 64, 8, 0x40000, 1024, 3, 4), BCS) == (
        SrcCopyBlt(0x20000, 512, 0, 0, 64, 8, 0x40000, 1024, 3, 4, 0xCC),
        10,
    )
    assert dec(c.color_blt(0, 64, 5, 5, 5, 9, 0), BCS)[0].x2 == 5  # type: ignore[attr-defined]  # empty is fine
    bad = c.color_blt(0, 64, 0, 0, 4, 4, 0)
    assert "32 bpp writes" in rejected([bad[0] & ~(1 << 21)] + bad[1:], BCS).reason
    # DW0 bit 11: a tiled destination, whose pitch field counts dwords (512 bytes here); the
    # tile walk (X or Y) is BCS_SWCTRL's when the blit runs.
    tiled = c.color_blt(0x4000, 128, 0, 0, 4, 4, 7)
    assert dec([tiled[0] | 1 << 11] + tiled[1:], BCS)[0] == ColorBlt(0x4000, 512, 0, 0, 4, 4, 7, 0xF0, True)
    assert "multiple of 128 bytes" in rejected([tiled[0] | 1 << 11, tiled[1] - 100] + tiled[2:], BCS).reason
    unaligned = c.color_blt(0x4040, 128, 0, 0, 4, 4, 7)
    assert "4 KiB aligned" in rejected([unaligned[0] | 1 << 11] + unaligned[1:], BCS).reason
    assert "depth 1" in rejected([bad[0], (bad[1] & ~(3 << 24)) | 1 << 24] + bad[2:], BCS).reason
    assert "ROP 0xcc is not 0xf0" in rejected([bad[0], (bad[1] & ~(0xFF << 16)) | 0xCC << 16] + bad[2:], BCS).reason
    assert "clipping" in rejected([bad[0], bad[1] | 1 << 30] + bad[2:], BCS).reason
    assert "pitch" in rejected(c.color_blt(0, 66, 0, 0, 4, 4, 0), BCS).reason
    assert "pitch" in rejected(c.color_blt(0, 0x8000, 0, 0, 4, 4, 0), BCS).reason
    assert "swapped" in rejected(c.color_blt(0, 64, 4, 0, 3, 4, 0), BCS).reason
    assert "negative" in rejected(c.color_blt(0, 64, 0x8000, 0, 0x8001, 4, 0), BCS).reason
    assert "length 8" in rejected([c.XY_COLOR_BLT + 1] + bad[1:] + [0], BCS).reason
    copy = c.src_copy_blt(0, 64, 0, 0, 4, 4, 0, 64, 0, 0)
    both = c.src_copy_blt(0x8000, 32, 0, 0, 4, 4, 0x10000, 64, 0, 0)
    assert dec([both[0] | 1 << 11 | 1 << 15] + both[1:], BCS)[0] == SrcCopyBlt(
        0x8000, 128, 0, 0, 4, 4, 0x10000, 256, 0, 0, 0xCC, True, True
    )
    assert dec([both[0] | 1 << 15] + both[1:], BCS)[0] == SrcCopyBlt(
        0x8000, 32, 0, 0, 4, 4, 0x10000, 256, 0, 0, 0xCC, False, True
    )
    assert "tiled source pitch" in rejected([copy[0] | 1 << 15] + copy[1:7] + [33] + copy[8:], BCS).reason
    assert "tiled source address" in rejected([copy[0] | 1 << 15] + copy[1:8] + [0x40] + copy[9:], BCS).reason
    assert "bits 31:16" in rejected(copy[:7] + [copy[7] | 1 << 16] + copy[8:], BCS).reason
    for engine in (RCS, VCS, VECS):
        assert "not allowed" in rejected(bad, engine).reason
        assert "not allowed" in rejected(copy, engine).reason


@pytest.mark.parametrize(
    "dw0",
    [
        0x02000000,  # MI opcode 0x04 (MI_FLUSH, pre-GEN8)
        0x0A000002,  # MI_DISPLAY_FLIP
        0x0D800000,  # MI_SEMAPHORE_SIGNAL
        0x0C000000,  # MI_SET_CONTEXT
        0x05800000,  # MI_SUSPEND_FLUSH
        0x20000000,  # client 1
        0x80000000,  # clients 4-7
        0x50C00003,  # blitter opcode 0x43 (SRC_COPY_BLT, not XY)
    ],
)
def test_unknown_commands(dw0: int) -> None:
    for engine in Engine:
        err = rejected([dw0, 0, 0, 0, 0, 0, 0, 0], engine)
        assert "unknown command" in err.reason or "not allowed" in err.reason
    assert rejected([dw0, 0, 0, 0, 0, 0], RCS).command in ("unknown command", "3D/media state")


def test_rejection_names_command_offset_engine() -> None:
    buf = array("I", [0, 0] + c.flush_dw(0x5000))
    with pytest.raises(CommandRejected) as e:
        decode_one(buf, 2, RCS)
    err = e.value
    assert (err.command, err.offset, err.engine, err.level, err.header) == ("MI_FLUSH_DW", 8, RCS, 0, 0x13004002)
    assert "MI_FLUSH_DW at offset 0x8 on RCS: not allowed on RCS" in str(err)
    assert err.errno  # a DeviceError like every devmodel error


def test_docs_table_lists_every_command_and_register() -> None:
    """docs/commands.md renders opcodes.SPECS: keep them in step (the registers are
    docs/registers.md's, generated from the register table)."""
    from pathlib import Path

    from gen_vgpu.cmd.opcodes import SPECS

    doc = (Path(__file__).resolve().parents[3] / "docs" / "commands.md").read_text()
    for spec in SPECS:
        assert f"| {spec.name} |" in doc or spec.name == "3D/media state", spec.name
