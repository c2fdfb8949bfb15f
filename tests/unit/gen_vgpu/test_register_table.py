"""The register table: one declaration per register, the device built from it, the docs
rendered from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from devmodel.device.registers import CLASS_BASE, MAX_CLASSES, PLAIN, READ_STORAGE, RegisterFile
from gen_vgpu import GenVgpu
from gen_vgpu.display import DisplayOptions
from gen_vgpu.engines import ENGINES, EngineId
from gen_vgpu.interrupts import EFFECT_MASTER, EFFECT_REEVALUATE
from gen_vgpu.mmio import display_regs, gt, regs
from gen_vgpu.mmio.regdoc import markdown
from gen_vgpu.mmio.row import RO, Cmd, Hooks, Kind, Row
from gen_vgpu.mmio.table import TABLE, RegisterTable, may_read, may_write, populate, table_for
from gen_vgpu.platform import Platform

DOC = Path(__file__).resolve().parents[3] / "docs" / "registers.md"


def test_docs_are_generated_from_the_table() -> None:
    assert DOC.read_text() == markdown(), (
        "docs/registers.md is stale: PYTHONPATH=plugins python -m gen_vgpu.mmio.regdoc > docs/registers.md"
    )


@pytest.mark.parametrize("display", [False, True], ids=["headless", "dp"])
@pytest.mark.parametrize("platform", list(Platform), ids=lambda p: p.value)
def test_the_device_holds_exactly_the_tables_registers(platform: Platform, display: bool) -> None:
    dev = GenVgpu(platform, display=DisplayOptions("dp" if display else "none"))
    table = table_for(platform, display)
    assert set(dev.registers.regs) == set(table.registers)
    for offset, declared in table.registers.items():
        reg = dev.registers.regs[offset]
        row = declared.row
        assert (reg.name, reg.rw_mask, reg.masked, reg.w1c) == (declared.name, row.rw_mask, row.masked, row.w1c)
        assert (reg.read is not None or reg.write is not None) == (row.handler is not None), declared.name


def test_names_say_the_engine_and_the_index() -> None:
    rf = GenVgpu().registers
    assert rf.regs[0x22030].name == "RING_TAIL(bcs)"
    assert rf.regs[0x2370 + 3 * 8].name == "CSB3_STATUS(rcs)"
    assert rf.regs[0x44308 + 0x10].name == "GT1_IIR"
    assert rf.regs[regs.PVINFO_BASE + 0x100].name == "PVINFO reserved+0x100"


def test_platform_rows() -> None:
    bdw, skl = table_for(Platform.BDW, False), table_for(Platform.SKL, False)
    assert 0x42014 in bdw.registers and 0x42014 not in skl.registers  # FUSE_STRAP
    assert 0xC000 in skl.registers and 0xC000 not in bdw.registers  # GUC_STATUS
    assert [r for r in skl.plain_ranges() if r[2] == "MOCS"] and not [r for r in bdw.plain_ranges() if r[2] == "MOCS"]


@pytest.mark.parametrize("platform", list(Platform), ids=lambda p: p.value)
def test_display_rows(platform: Platform) -> None:
    """The display's rows exist only with it; the fuses and LCPLL differ: fused off headless,
    present (and LCPLL live on BDW) with the display."""
    headless, dp = table_for(platform, False), table_for(platform, True)
    assert display_regs.SFUSE_STRAP in dp.registers and display_regs.SFUSE_STRAP not in headless.registers
    assert display_regs.PIPEDSL in dp.registers and display_regs.PIPEDSL not in headless.registers
    fuse = gt.FUSE_STRAP if platform is Platform.BDW else gt.SKL_DFSM
    assert headless.reset_value(headless.registers[fuse].row, {}) != 0
    assert dp.reset_value(dp.registers[fuse].row, {}) == 0
    assert headless.registers[gt.LCPLL_CTL].row.handler is None
    if platform is Platform.BDW:
        assert dp.registers[gt.LCPLL_CTL].row.handler == "lcpll"
    else:
        assert gt.LCPLL_CTL not in dp.registers
    # The DE and south banks: the same rows either way, with the handlers the display needs.
    for table in (headless, dp):
        assert table.registers[display_regs.DE_PIPE_BANK + 8].row.handler == "irq_status_iir"
        assert table.registers[display_regs.SDE_BANK + 4].row.handler == "irq_mask"


def test_a_register_declared_twice_is_refused() -> None:
    rows = (Row("A", 0x100), Row("B", 0x100))
    with pytest.raises(ValueError, match="already declared as A"):
        RegisterTable(Platform.BDW, rows)
    with pytest.raises(ValueError, match="already declared"):
        RegisterTable(Platform.BDW, (Row("ring", 0x30, engine=True), Row("rcs tail", 0x2030)))


def test_rows_and_handlers_must_agree() -> None:
    table = RegisterTable(Platform.BDW, (Row("A", 0x100, handler="a"),))
    with pytest.raises(LookupError, match="no device part supplies the handler 'a'"):
        populate(RegisterFile(0x1000), table, [{}])
    with pytest.raises(LookupError, match="no row of the table names"):
        populate(RegisterFile(0x1000), table, [{"a": Hooks(), "b": Hooks()}])
    with pytest.raises(LookupError, match="two device parts"):
        populate(RegisterFile(0x1000), table, [{"a": Hooks()}, {"a": Hooks()}])
    seen: list[int] = []
    rf = RegisterFile(0x1000)
    populate(rf, table, [{"a": Hooks(write=lambda off, old, new: seen.append(new))}])
    rf.write32(0x100, 5)
    assert seen == [5]


def test_per_engine_handlers_and_named_resets() -> None:
    rows = (Row("R", 0x40, engine=True, rw_mask=RO, handler="r"), Row("V", 0x200, reset="v"))
    table = RegisterTable(Platform.BDW, rows)

    def reader(n: int) -> Hooks:
        return Hooks(read=lambda off: n)

    per_engine = {e.id: {"r": reader(int(e.id))} for e in ENGINES}
    rf = RegisterFile(0x30000)
    with pytest.raises(LookupError, match="reset values not supplied"):
        populate(rf, table, [], [per_engine])
    populate(rf, table, [], [per_engine], {"v": 7})
    assert [rf.read32(e.base + 0x40) for e in ENGINES] == [int(e.id) for e in ENGINES]
    assert rf.read32(0x200) == 7


def test_fill_rows_declare_what_nothing_else_does() -> None:
    rows = (Row("F", 0x100, size=0x10, kind=Kind.FILL, rw_mask=RO), Row("W", 0x108))
    table = RegisterTable(Platform.BDW, rows)
    assert [(o, d.name) for o, d in sorted(table.registers.items())] == [
        (0x100, "F+0x100"),
        (0x104, "F+0x104"),
        (0x108, "W"),
        (0x10C, "F+0x10c"),
    ]


def test_command_access_comes_from_the_rows() -> None:
    rcs, bcs = EngineId.RCS, EngineId.BCS
    tail = next(row for row in TABLE if row.name == "RING_TAIL")
    assert tail.cmd is Cmd.READ
    assert not may_write(bcs, 0x22030) and may_read(bcs, 0x22030)
    assert not may_read(rcs, 0x22030)  # another engine's page
    assert may_write(bcs, 0x22358) and may_read(bcs, 0x22358)  # RING_TIMESTAMP: the page's
    assert may_write(rcs, 0x209C)  # MI_MODE: a named engine register a stream may load
    assert may_write(rcs, 0xE4F0) and not may_write(bcs, 0xE4F0)  # a render workaround
    assert not may_read(rcs, regs.GEN8_MASTER_IRQ) and not may_write(rcs, regs.PVINFO_BASE)


def test_a_row_checks_itself() -> None:
    with pytest.raises(ValueError):
        Row("odd", 0x102)
    with pytest.raises(ValueError):
        Row("plain with a handler", 0x100, size=8, kind=Kind.PLAIN, handler="h")
    with pytest.raises(ValueError):
        Row("X{i}", 0x100)
    with pytest.raises(ValueError):
        Row("engine and engines", 0x30, engine=True, cmd=Cmd.RW, cmd_engines=frozenset({EngineId.RCS}))


def test_the_compiled_path_serves_every_row_without_a_handler() -> None:
    """What the accelerator may serve, and how, is the table's: a row without a handler is
    served from storage with its write class; a row with a read handler goes to Python unless
    it is published, a write handler's writes go to Python and its reads are storage's, unless
    its row is compiled: then its write class carries the handler's effect."""
    rf = GenVgpu().registers
    effects = set()
    for offset, reg in rf.regs.items():
        code = rf.plain[offset >> 2]
        if reg.read is not None and not reg.published:
            assert code == 0, reg.name
        elif reg.write is not None and not reg.effect:
            assert code == READ_STORAGE, reg.name
        elif reg.plain:
            assert code == PLAIN, reg.name
        else:
            k = 4 * (code - CLASS_BASE)
            assert code >= CLASS_BASE, reg.name
            assert tuple(rf.classes[k : k + 4]) == (reg.rw_mask, reg.w1c, int(reg.masked), reg.effect), reg.name
            effects.add(reg.effect)
    assert effects == {0, EFFECT_REEVALUATE, EFFECT_MASTER}
    assert rf.plain[regs.PVINFO_MAGIC >> 2] >= CLASS_BASE  # read-only: C's now
    assert rf.plain[0x22230 >> 2] == 0  # ELSP(bcs): its handler is Python's
    assert rf.plain[0x941C >> 2] == READ_STORAGE  # GDRST: reads storage, writes Python's
    # published, and its write (the interrupt line's re-evaluation) runs in C too
    assert rf.regs[regs.GEN8_MASTER_IRQ].effect == EFFECT_MASTER
    assert rf.plain[regs.GEN8_MASTER_IRQ >> 2] >= CLASS_BASE
    display_imr = rf.regs[0x44404]  # DE_PIPE_A_IMR: its change tells the display, in Python
    assert display_imr.name == "DE_PIPE_A_IMR" and rf.plain[0x44404 >> 2] == READ_STORAGE
    assert rf.plain[0x2234 >> 2] >= CLASS_BASE  # EXECLIST_STATUS(rcs): published, read-only
    assert rf.nclasses < MAX_CLASSES
