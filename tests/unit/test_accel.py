"""The compiled accelerator is installed, is the ABI this tree wants, and declares the wire
layouts as devmodel.vfio_user.layouts does; the register file's plain map says what C may
touch. Its behaviour is checked against the Python path in tests/integration/test_accel_equivalence.py."""

from __future__ import annotations

import pytest

from devmodel import accel
from devmodel.device.registers import CLASS_BASE, READ_STORAGE, UNTIL_MARGIN_NS, ReadGate, Register, RegisterFile
from devmodel.vfio_user.layouts import HEADER, REGION_ACCESS, WRITE_MULTI_ENTRY, Layout


@pytest.fixture
def loaded() -> accel.Accel:
    found = accel.load(True)
    if found is None:
        pytest.skip("the compiled accelerator is not installed (test_the_accelerator_is_installed says so)")
    return found


def test_the_accelerator_is_installed_with_this_abi() -> None:
    """The one test that fails without the module (elsewhere its tests are skipped)."""
    if not accel.enabled_by_env():
        pytest.skip("DEVMODEL_ACCEL=0")
    found = accel.load(True)
    assert found is not None, "the compiled accelerator is not installed: run ci/setup-python (or pip install .)"
    assert found.lib.dm_abi_version() == accel.ABI_VERSION


def test_off_means_off() -> None:
    assert accel.load(False) is None


@pytest.mark.parametrize(
    ("c_name", "layout"),
    [("struct dm_header", HEADER), ("struct dm_region_access", REGION_ACCESS)],
)
def test_wire_structs_match_the_layouts(loaded: accel.Accel, c_name: str, layout: Layout[tuple[int, ...]]) -> None:
    ffi = loaded.ffi
    assert ffi.sizeof(c_name) == layout.size
    for field, offset in layout.offsets.items():
        assert ffi.offsetof(c_name, field) == offset, field


def test_write_multi_entry_matches_the_layout(loaded: accel.Accel) -> None:
    ffi = loaded.ffi
    assert ffi.sizeof("struct dm_write_multi_entry") == WRITE_MULTI_ENTRY.size
    for field, offset in WRITE_MULTI_ENTRY.offsets.items():
        assert ffi.offsetof("struct dm_write_multi_entry", field) == offset, field


def test_plain_map_follows_declarations_and_the_unlisted_hook() -> None:
    """The per-dword map C reads: what it may serve, and how."""
    rf = RegisterFile(
        0x40,
        [
            Register(0x0, "plain"),
            Register(0x4, "masked", masked=True),
            Register(0x8, "w1c", w1c=1),
            Register(0xC, "read-only bits", rw_mask=0xFF),
            Register(0x10, "read hook", read=lambda off: 0),
            Register(0x14, "write hook", write=lambda off, old, new: None),
        ],
    )
    # masked, W1C and partly writable: write classes 0, 1, 2 (codes from CLASS_BASE); a read
    # hook: Python's; a write hook alone: reads from storage, writes Python's (READ_STORAGE)
    assert list(rf.plain[:8]) == [1, 4, 5, 6, 0, 3, 1, 1]
    assert list(rf.classes[:12]) == [0xFFFFFFFF, 0, 1, 0, 0xFFFFFFFF, 1, 0, 0, 0xFF, 0, 0, 0]
    buffer_before = rf.plain
    rf.on_unlisted = lambda off, is_write: None
    assert list(rf.plain[:8]) == [1, 4, 5, 6, 0, 3, 0, 0]  # unlisted dwords now have a listener
    rf.on_unlisted = None
    assert list(rf.plain[:8]) == [1, 4, 5, 6, 0, 3, 1, 1]
    assert rf.plain is buffer_before  # rewritten in place: the accelerator holds a pointer
    rf.listen_unlisted(lambda off, is_write: None, told_later=True)
    assert list(rf.plain[:8]) == [1, 4, 5, 6, 0, 3, 2, 2]  # C may serve them and tell the hook after
    rf.on_unlisted = None
    rf.add(Register(0x18, "late hook", read=lambda off: 0))
    assert rf.plain[6] == 0


def test_published_reads_are_storage_while_their_gate_is_open() -> None:
    """A published register's read hook serves Python's reads; C reads its storage, unless its
    owner closed the gate (a read then has work to do first), and its writes stay Python's."""
    gate = ReadGate()
    state = {"value": 7}
    rf = RegisterFile(
        0x10,
        [
            Register(0x0, "published, read-only", rw_mask=0, read=lambda off: state["value"], published=True),
            Register(
                0x4,
                "published, gated",
                read=lambda off: state["value"],
                write=lambda off, old, new: None,
                published=True,
                gate=gate,
            ),
        ],
    )
    assert list(rf.plain[:2]) == [CLASS_BASE, READ_STORAGE]
    assert rf.read32(0x4) == 7 and rf.get(0x4) == 0  # the hook: what the owner did not publish yet
    gate.set_open(False)
    assert list(rf.plain[:2]) == [CLASS_BASE, 0]
    gate.set_open(True)
    assert list(rf.plain[:2]) == [CLASS_BASE, READ_STORAGE]
    with pytest.raises(ValueError):  # nothing would publish again after a write
        Register(0x8, "writable, no write hook", read=lambda off: 0, published=True)
    with pytest.raises(ValueError):
        Register(0x8, "published without a read hook", write=lambda off, old, new: None, published=True)
    with pytest.raises(ValueError):
        Register(0x8, "gate, not published", read=lambda off: 0, gate=gate)


def test_a_gate_open_until_a_deadline_marks_its_dwords_timed() -> None:
    """ReadGate.open_until: the published registers keep their open codes, their dwords are
    marked timed and the file holds the deadline (CLOCK_MONOTONIC ns, a microsecond early);
    closing or opening it for good clears the marks."""
    gate = ReadGate()
    rf = RegisterFile(
        0x10,
        [
            Register(0x0, "published, read-only", rw_mask=0, read=lambda off: 0, published=True, gate=gate),
            Register(0x4, "not gated", rw_mask=0, read=lambda off: 0, published=True),
        ],
    )
    gate.open_until(12.5)
    assert list(rf.plain[:2]) == [CLASS_BASE, CLASS_BASE] and list(rf.timed[:2]) == [1, 0]
    assert rf.until[0] == 12_500_000_000 - UNTIL_MARGIN_NS and gate.open and gate.until == 12.5
    gate.open_until(13.0)
    assert rf.until[0] == 13_000_000_000 - UNTIL_MARGIN_NS
    gate.set_open(False)
    assert list(rf.plain[:2]) == [0, CLASS_BASE] and list(rf.timed[:2]) == [0, 0]
    gate.open_until(14.0)
    assert list(rf.plain[:2]) == [CLASS_BASE, CLASS_BASE] and list(rf.timed[:2]) == [1, 0]
    gate.set_open(True)
    assert list(rf.plain[:2]) == [CLASS_BASE, CLASS_BASE] and list(rf.timed[:2]) == [0, 0]
    with pytest.raises(ValueError):  # one deadline per file
        rf.add(Register(0x8, "another gate", rw_mask=0, read=lambda off: 0, published=True, gate=ReadGate()))


def test_a_compiled_write_hook_gets_a_write_class_with_its_effect() -> None:
    """A write hook with an effect: C reads storage and runs the effect after the store (its
    class's fourth word); without one, its writes are Python's (READ_STORAGE)."""
    rf = RegisterFile(
        0x10,
        [
            Register(0x0, "effect", w1c=0xFFFFFFFF, write=lambda off, old, new: None, effect=1),
            Register(0x4, "no effect", write=lambda off, old, new: None),
        ],
    )
    assert list(rf.plain[:2]) == [CLASS_BASE, READ_STORAGE]
    assert list(rf.classes[:4]) == [0xFFFFFFFF, 0xFFFFFFFF, 0, 1]
    with pytest.raises(ValueError):
        Register(0x8, "an effect without a hook", effect=1)
