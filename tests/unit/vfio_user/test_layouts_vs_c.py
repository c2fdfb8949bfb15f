"""The Python wire layouts against the protocol's own C structs.

The C declarations below are copied from the vfio-user spec (``docs/interop/vfio-user.rst`` in
QEMU), ``<linux/vfio.h>`` for the structs the spec borrows, and libvfio-user's
``include/vfio-user.h`` for the names the spec only gives as tables. cffi lays them out in ABI
mode (no compiler), packed, and every size, field offset and field width must match
``devmodel.vfio_user.layouts``.
"""

from __future__ import annotations

from typing import Any

import cffi
import pytest

from devmodel.vfio_user import layouts
from devmodel.vfio_user.layouts import ALL_LAYOUTS, Layout

C_DECLARATIONS = """
struct vfio_user_header {
    uint16_t msg_id;
    uint16_t cmd;
    uint32_t msg_size;
    uint32_t flags;
    uint32_t error_no;
};

struct vfio_user_version {
    uint16_t major;
    uint16_t minor;
    uint8_t  data[];            /* NUL-terminated JSON */
};

struct vfio_user_dma_map {
    uint32_t argsz;
    uint32_t flags;
    uint64_t offset;
    uint64_t addr;
    uint64_t size;
};

struct vfio_user_bitmap {
    uint64_t pgsize;
    uint32_t size;
    uint8_t  data[];
};

struct vfio_user_dma_unmap {
    uint32_t argsz;
    uint32_t flags;
    uint64_t addr;
    uint64_t size;
    struct vfio_user_bitmap bitmap[];
};

struct vfio_user_device_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
};

struct vfio_region_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;
};

struct vfio_info_cap_header {
    uint16_t id;
    uint16_t version;
    uint32_t next;
};

struct vfio_region_sparse_mmap_area {
    uint64_t offset;
    uint64_t size;
};

struct vfio_region_info_cap_sparse_mmap {
    struct vfio_info_cap_header header;
    uint32_t nr_areas;
    uint32_t reserved;
    struct vfio_region_sparse_mmap_area areas[];
};

struct vfio_irq_info {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};

struct vfio_irq_set {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t start;
    uint32_t count;
};

struct vfio_user_region_access {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    uint8_t  data[];
};

struct vfio_user_dma_region_access {
    uint64_t addr;
    uint64_t count;
    uint8_t  data[];
};

struct vfio_user_wr_multi_entry {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    uint8_t  data[8];
};

struct vfio_user_wr_multi {
    uint64_t wr_cnt;
    struct vfio_user_wr_multi_entry wrs[];
};

struct vfio_user_region_io_fds_request {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};

struct vfio_user_device_feature {
    uint32_t argsz;
    uint32_t flags;
    uint8_t  data[];
};

struct vfio_user_mig_data {
    uint32_t argsz;
    uint32_t size;
    uint8_t  data[];
};
"""

# Structs declared only to build the others; every other declared struct must be a layout.
HELPER_STRUCTS = {"vfio_user_bitmap"}

# C field name -> Python record field name, where the two differ.
FIELD_ALIASES = {
    "vfio_user_header": {"cmd": "command", "msg_size": "size", "error_no": "error"},
}

# C structs that begin with an embedded struct the Python layout leaves out (it has a layout
# of its own): Python offsets count from the end of that member.
EMBEDDED_PREFIX = {
    "vfio_region_info_cap_sparse_mmap": "header",
}

ffi = cffi.FFI()
ffi.cdef(C_DECLARATIONS, packed=True)

DECLARED = {
    line.split()[1]
    for line in C_DECLARATIONS.splitlines()
    if line.startswith("struct ") and line.rstrip().endswith("{")
}


def _ids(layout: Layout[Any]) -> str:
    return layout.c_name


def _c_fields(c_name: str) -> tuple[int, list[tuple[str, int, int]], list[tuple[str, int]]]:
    """(base, fixed fields as (name, offset, width), flexible arrays as (name, offset))."""
    ctype = ffi.typeof(f"struct {c_name}")
    base = 0
    fixed: list[tuple[str, int, int]] = []
    flexible: list[tuple[str, int]] = []
    prefix = EMBEDDED_PREFIX.get(c_name)
    for name, field in ctype.fields:
        if name == prefix:
            base = field.offset + ffi.sizeof(field.type)
            continue
        if field.type.kind == "array" and field.type.length is None:
            flexible.append((name, field.offset))
            continue
        fixed.append((name, field.offset, ffi.sizeof(field.type)))
    return base, fixed, flexible


def _py_widths(layout: Layout[Any]) -> dict[str, int]:
    names = list(layout.offsets)
    ends = [layout.offsets[n] for n in names[1:]] + [layout.size]
    return {n: end - layout.offsets[n] for n, end in zip(names, ends, strict=True)}


def test_every_layout_is_declared_in_c() -> None:
    missing = [layout.c_name for layout in ALL_LAYOUTS if layout.c_name not in DECLARED]
    assert not missing, f"layouts without a C declaration: {missing}"


def test_every_c_declaration_is_a_layout() -> None:
    names = {layout.c_name for layout in ALL_LAYOUTS}
    assert DECLARED - HELPER_STRUCTS == names


def test_all_layouts_lists_every_module_layout() -> None:
    module_layouts = {name for name, obj in vars(layouts).items() if isinstance(obj, Layout)}
    listed = {name for name, obj in vars(layouts).items() if isinstance(obj, Layout) and obj in ALL_LAYOUTS}
    assert module_layouts == listed
    assert len({id(layout) for layout in ALL_LAYOUTS}) == len(ALL_LAYOUTS)


@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=_ids)
def test_size_matches_c(layout: Layout[Any]) -> None:
    assert layout.c_name in DECLARED, f"{layout.c_name} has no C declaration"
    base, _, _ = _c_fields(layout.c_name)
    assert ffi.sizeof(f"struct {layout.c_name}") - base == layout.size
    assert layout.struct.size == layout.size


@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=_ids)
def test_fields_match_c(layout: Layout[Any]) -> None:
    assert layout.c_name in DECLARED, f"{layout.c_name} has no C declaration"
    base, fixed, _ = _c_fields(layout.c_name)
    aliases = FIELD_ALIASES.get(layout.c_name, {})
    expected = {aliases.get(name, name): (off - base, width) for name, off, width in fixed}
    widths = _py_widths(layout)
    got = {name: (layout.offsets[name], widths[name]) for name in layout.offsets}
    assert list(got) == list(expected), "field names or order differ from C"
    assert got == expected
    # offsetof, once more, through the API the brief names
    for c_field, _, _ in fixed:
        py_field = aliases.get(c_field, c_field)
        assert ffi.offsetof(f"struct {layout.c_name}", c_field) - base == layout.offsets[py_field]


@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=_ids)
def test_trailing_data_starts_after_fixed_part(layout: Layout[Any]) -> None:
    base, _, flexible = _c_fields(layout.c_name)
    for name, off in flexible:
        assert off - base == layout.size, f"{layout.c_name}.{name}"


def test_fixture_sanity() -> None:
    """The comparison machinery itself: a known struct, a prefix and an alias."""
    base, fixed, flexible = _c_fields("vfio_region_info_cap_sparse_mmap")
    assert base == 8
    assert fixed == [("nr_areas", 8, 4), ("reserved", 12, 4)]
    assert flexible == [("areas", 16)]
    assert ffi.offsetof("struct vfio_user_header", "error_no") == 12
    assert ffi.sizeof("struct vfio_user_wr_multi_entry") == 24
