"""The compiled accelerator is installed, is the ABI this tree wants, and declares the wire
layouts as devmodel.vfio_user.layouts does; the register file's plain map says what C may
touch. Its behaviour is checked against the Python path in tests/integration/test_accel_equivalence.py."""

from __future__ import annotations

import pytest

from devmodel import accel
from devmodel.device.registers import Register, RegisterFile
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
    # masked, W1C and partly writable: write classes 0, 1, 2 (codes from CLASS_BASE); hooks: Python's
    assert list(rf.plain[:8]) == [1, 3, 4, 5, 0, 0, 1, 1]
    assert list(rf.classes[:12]) == [0xFFFFFFFF, 0, 1, 0, 0xFFFFFFFF, 1, 0, 0, 0xFF, 0, 0, 0]
    buffer_before = rf.plain
    rf.on_unlisted = lambda off, is_write: None
    assert list(rf.plain[:8]) == [1, 3, 4, 5, 0, 0, 0, 0]  # unlisted dwords now have a listener
    rf.on_unlisted = None
    assert list(rf.plain[:8]) == [1, 3, 4, 5, 0, 0, 1, 1]
    assert rf.plain is buffer_before  # rewritten in place: the accelerator holds a pointer
    rf.listen_unlisted(lambda off, is_write: None, told_later=True)
    assert list(rf.plain[:8]) == [1, 3, 4, 5, 0, 0, 2, 2]  # C may serve them and tell the hook after
    rf.on_unlisted = None
    rf.add(Register(0x18, "late hook", write=lambda off, old, new: None))
    assert rf.plain[6] == 0
