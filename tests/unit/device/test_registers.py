"""The declarative register file: plain storage, writable masks, GEN masked registers,
write-1-to-clear bits, hooks and reset."""

from __future__ import annotations

import pytest

from devmodel.device.registers import Register, RegisterBlock, RegisterFile


def test_unlisted_offsets_are_plain_storage():
    rf = RegisterFile(0x1000)
    assert rf.read32(0x100) == 0
    rf.write32(0x100, 0xDEADBEEF)
    rf.write32(0xFFC, 0x12345678)
    assert rf.read32(0x100) == 0xDEADBEEF
    assert rf.read32(0xFFC) == 0x12345678
    assert rf.read32(0x104) == 0 and rf.read32(0xFC) == 0
    rf.write32(0x100, 0)
    assert rf.read32(0x100) == 0


def test_reset_value_and_rw_mask():
    rf = RegisterFile(0x100, [Register(0x10, "R", reset=0xA5A5_0000, rw_mask=0x0000_FFFF)])
    assert rf.read32(0x10) == 0xA5A50000
    rf.write32(0x10, 0xFFFF_1234)
    assert rf.read32(0x10) == 0xA5A5_1234  # upper half read-only
    rf.write32(0x10, 0)
    assert rf.read32(0x10) == 0xA5A5_0000


def test_read_only_register():
    rf = RegisterFile(0x100, [Register(0x20, "RO", reset=7, rw_mask=0)])
    rf.write32(0x20, 0xFFFFFFFF)
    assert rf.read32(0x20) == 7


def test_masked_register_upper_half_selects_bits():
    rf = RegisterFile(0x100, [Register(0x9C, "MODE", masked=True)])
    rf.write32(0x9C, 0x0000_FFFF)  # no select bits: nothing changes
    assert rf.read32(0x9C) == 0
    rf.write32(0x9C, 0x8000_8000)  # set bit 15
    assert rf.read32(0x9C) == 0x8000
    rf.write32(0x9C, 0x0001_0001)  # set bit 0, bit 15 untouched
    assert rf.read32(0x9C) == 0x8001
    rf.write32(0x9C, 0x8000_0000)  # clear bit 15
    assert rf.read32(0x9C) == 0x0001
    rf.write32(0x9C, 0xFFFF_00F0)  # all selected: low half becomes the value
    assert rf.read32(0x9C) == 0x00F0  # the select bits are never stored


def test_masked_register_with_rw_mask():
    rf = RegisterFile(0x100, [Register(0x40, "M", reset=0x0100, masked=True, rw_mask=0x00FF)])
    rf.write32(0x40, 0xFFFF_0000)  # bit 8 is read-only even when selected
    assert rf.read32(0x40) == 0x0100
    rf.write32(0x40, 0xFFFF_00FF)
    assert rf.read32(0x40) == 0x01FF


def test_w1c_bits():
    rf = RegisterFile(0x100, [Register(0x08, "IIR", w1c=0xFFFF_FFFF)])
    rf.set(0x08, 0x0000_0111)  # device side: events latch
    rf.write32(0x08, 0)  # writing 0 clears nothing
    assert rf.read32(0x08) == 0x111
    rf.write32(0x08, 0x0000_0100)
    assert rf.read32(0x08) == 0x011
    rf.write32(0x08, 0xFFFF_FFFF)
    assert rf.read32(0x08) == 0


def test_w1c_bits_beside_plain_bits():
    rf = RegisterFile(0x100, [Register(0x0C, "MIX", w1c=0x0000_00FF, rw_mask=0xFFFF_FF00)])
    rf.set(0x0C, 0x0000_0003)
    rf.write32(0x0C, 0x1234_5601)  # clear bit 0, write the plain half
    assert rf.read32(0x0C) == 0x1234_5602
    rf.write32(0x0C, 0x0000_00FF)  # W1C bits cannot be set by a write
    assert rf.read32(0x0C) == 0


def test_write_hook_sees_old_and_new():
    calls = []
    rf = RegisterFile(
        0x100,
        [Register(0x30, "H", reset=0x10, rw_mask=0xFF, write=lambda off, old, new: calls.append((off, old, new)))],
    )
    rf.write32(0x30, 0xFFFF_FF22)
    rf.write32(0x30, 0x22)
    assert calls == [(0x30, 0x10, 0x22), (0x30, 0x22, 0x22)]
    assert rf.read32(0x30) == 0x22


def test_write_hook_runs_after_the_store():
    rf = RegisterFile(0x100)
    seen = []
    rf.add(Register(0x34, "H", write=lambda off, old, new: seen.append(rf.get(off))))
    rf.write32(0x34, 5)
    assert seen == [5]


def test_read_hook_supplies_the_value():
    counter = iter(range(100))
    rf = RegisterFile(0x100, [Register(0x50, "CNT", read=lambda off: next(counter) | (1 << 40))])
    assert [rf.read32(0x50) for _ in range(3)] == [0, 1, 2]  # truncated to 32 bits
    rf.write32(0x50, 99)
    assert rf.get(0x50) == 99  # storage still takes writes


def test_set_and_get_bypass_masks_and_hooks():
    calls = []
    rf = RegisterFile(0x100, [Register(0x60, "RO", rw_mask=0, write=lambda *a: calls.append(a))])
    rf.set(0x60, 0x1_2345_6789)
    assert rf.get(0x60) == 0x2345_6789
    assert calls == []


def test_reset_zeroes_storage_and_restores_reset_values():
    rf = RegisterFile(0x100, [Register(0x10, "A", reset=0xAA), Register(0x14, "B", reset=0, w1c=1)])
    rf.write32(0x10, 1)
    rf.set(0x14, 1)
    rf.write32(0x80, 0xFFFF)
    rf.reset()
    assert (rf.read32(0x10), rf.read32(0x14), rf.read32(0x80)) == (0xAA, 0, 0)
    assert [i * 4 for i, v in enumerate(rf.dwords) if v] == [0x10]  # nothing else survives


@pytest.mark.parametrize(
    "reg",
    [Register(0x2, "unaligned"), Register(0x100, "past the end"), Register(-4, "negative")],
    ids=lambda r: r.name,
)
def test_bad_declarations(reg):
    with pytest.raises(ValueError):
        RegisterFile(0x100, [reg])


def test_duplicate_declaration():
    with pytest.raises(ValueError):
        RegisterFile(0x100, [Register(0x10, "A"), Register(0x10, "B")])


def test_size_must_be_dword_multiple():
    with pytest.raises(ValueError):
        RegisterFile(0x102)


def test_on_unlisted_hears_only_undeclared_offsets():
    heard = []
    rf = RegisterFile(0x100, [Register(0x10, "R"), Register(0x14, "H", read=lambda off: 5)])
    rf.on_unlisted = lambda off, is_write: heard.append((off, is_write))
    rf.write32(0x10, 1)
    rf.read32(0x14)
    rf.write32(0x20, 3)
    assert rf.read32(0x20) == 3  # still plain storage
    assert heard == [(0x20, True), (0x20, False)]


def test_a_register_block_installs_its_registers_and_reaches_the_file_after() -> None:
    class Block(RegisterBlock):
        def registers(self) -> list[Register]:
            return [Register(0x10, "A", reset=7), Register(0x14, "B", rw_mask=0)]

    block = Block()
    with pytest.raises(RuntimeError, match="install"):
        _ = block.rf
    rf = RegisterFile(0x100)
    block.install(rf)
    assert block.rf is rf and rf.read32(0x10) == 7
    rf.write32(0x14, 5)
    assert rf.read32(0x14) == 0
