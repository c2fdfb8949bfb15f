"""Every layout packs and unpacks its own values, little-endian, at the declared offsets."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devmodel.vfio_user.layouts import ALL_LAYOUTS, Layout


def _widths(layout: Layout[Any]) -> list[int]:
    names = list(layout.offsets)
    ends = [layout.offsets[n] for n in names[1:]] + [layout.size]
    return [end - layout.offsets[n] for n, end in zip(names, ends, strict=True)]


def _values(layout: Layout[Any]) -> st.SearchStrategy[tuple[int, ...]]:
    # min and max of each field are drawn often enough by hypothesis' integer strategy
    return st.tuples(*(st.integers(0, (1 << (8 * w)) - 1) for w in _widths(layout)))


@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=lambda layout: layout.c_name)
def test_roundtrip(layout: Layout[Any]) -> None:
    @settings(max_examples=60, deadline=None)
    @given(values=_values(layout), prefix=st.integers(0, 9))
    def check(values: tuple[int, ...], prefix: int) -> None:
        raw = layout.pack(*values)
        assert len(raw) == layout.size
        rec = layout.unpack_from(raw)
        assert rec == values
        assert isinstance(rec, layout.record)
        assert tuple(getattr(rec, name) for name in layout.offsets) == values
        # each field sits little-endian at its offset
        for (name, off), width, value in zip(layout.offsets.items(), _widths(layout), values, strict=True):
            assert int.from_bytes(raw[off : off + width], "little") == value, name
        # pack_into / unpack_from at an offset inside a bigger buffer
        buf = bytearray(b"\xa5" * (prefix + layout.size + 3))
        layout.pack_into(buf, prefix, *values)
        assert buf[:prefix] == b"\xa5" * prefix and buf[-3:] == b"\xa5" * 3
        assert bytes(buf[prefix : prefix + layout.size]) == raw
        assert layout.unpack_from(buf, prefix) == values
        assert layout.unpack_from(memoryview(buf), prefix) == values

    check()


@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=lambda layout: layout.c_name)
def test_field_width_enforced(layout: Layout[Any]) -> None:
    widths = _widths(layout)
    for i, w in enumerate(widths):
        values = [0] * len(widths)
        values[i] = 1 << (8 * w)
        with pytest.raises(struct.error):
            layout.pack(*values)
        values[i] = -1
        with pytest.raises(struct.error):
            layout.pack(*values)


@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=lambda layout: layout.c_name)
def test_short_buffer_raises(layout: Layout[Any]) -> None:
    raw = layout.pack(*([0] * len(layout.offsets)))
    for cut in (0, 1, layout.size - 1):
        with pytest.raises(struct.error):
            layout.unpack_from(raw[:cut])
    # long enough overall, but not from the offset asked
    with pytest.raises(struct.error):
        layout.unpack_from(raw, 1)
    with pytest.raises(struct.error):
        layout.unpack_from(bytearray(raw), layout.size)
    assert layout.unpack_from(raw + b"\0") == tuple([0] * len(layout.offsets))


def test_wrong_arity_raises() -> None:
    for layout in ALL_LAYOUTS:
        n = len(layout.offsets)
        with pytest.raises(struct.error):
            layout.pack(*([0] * (n + 1)))
        with pytest.raises(struct.error):
            layout.pack(*([0] * (n - 1)))
