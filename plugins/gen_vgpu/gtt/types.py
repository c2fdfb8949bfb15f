"""GTT entry and table types and how the levels chain, after GVT-g's ``gtt_type_table``.

For any type the table says which entries a table of it holds, which table type that is, the
table type one level down, and what an entry becomes when its PS bit is set. One generic walk
over this table serves the GGTT, 3-level and 4-level PPGTT.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["GTT_TYPE_TABLE", "GttType", "GttTypeInfo", "entry_type", "is_pt", "next_pt_type", "pse_type"]


class GttType(enum.IntEnum):
    INVALID = 0
    GGTT_PTE = 1
    PPGTT_PTE_4K_ENTRY = 2
    PPGTT_PTE_64K_ENTRY = 3
    PPGTT_PTE_2M_ENTRY = 4
    PPGTT_PTE_1G_ENTRY = 5
    PPGTT_PDE_ENTRY = 6
    PPGTT_PDP_ENTRY = 7
    PPGTT_PML4_ENTRY = 8
    PPGTT_ROOT_L3_ENTRY = 9
    PPGTT_ROOT_L4_ENTRY = 10
    PPGTT_PTE_PT = 11
    PPGTT_PDE_PT = 12
    PPGTT_PDP_PT = 13
    PPGTT_PML4_PT = 14


class GttTypeInfo(NamedTuple):
    entry_type: GttType
    pt_type: GttType  # the table type that holds such entries
    next_pt_type: GttType  # the table an entry points at
    pse_entry_type: GttType  # what the entry is when PS is set


T = GttType
GTT_TYPE_TABLE: dict[GttType, GttTypeInfo] = {
    T.PPGTT_ROOT_L4_ENTRY: GttTypeInfo(T.PPGTT_ROOT_L4_ENTRY, T.PPGTT_PML4_PT, T.PPGTT_PML4_PT, T.INVALID),
    T.PPGTT_PML4_ENTRY: GttTypeInfo(T.PPGTT_PML4_ENTRY, T.PPGTT_PML4_PT, T.PPGTT_PDP_PT, T.INVALID),
    T.PPGTT_PML4_PT: GttTypeInfo(T.PPGTT_PML4_ENTRY, T.PPGTT_PML4_PT, T.PPGTT_PDP_PT, T.INVALID),
    T.PPGTT_ROOT_L3_ENTRY: GttTypeInfo(T.PPGTT_ROOT_L3_ENTRY, T.PPGTT_PDP_PT, T.PPGTT_PDE_PT, T.INVALID),
    T.PPGTT_PDP_ENTRY: GttTypeInfo(T.PPGTT_PDP_ENTRY, T.PPGTT_PDP_PT, T.PPGTT_PDE_PT, T.PPGTT_PTE_1G_ENTRY),
    T.PPGTT_PDP_PT: GttTypeInfo(T.PPGTT_PDP_ENTRY, T.PPGTT_PDP_PT, T.PPGTT_PDE_PT, T.PPGTT_PTE_1G_ENTRY),
    T.PPGTT_PDE_ENTRY: GttTypeInfo(T.PPGTT_PDE_ENTRY, T.PPGTT_PDE_PT, T.PPGTT_PTE_PT, T.PPGTT_PTE_2M_ENTRY),
    T.PPGTT_PDE_PT: GttTypeInfo(T.PPGTT_PDE_ENTRY, T.PPGTT_PDE_PT, T.PPGTT_PTE_PT, T.PPGTT_PTE_2M_ENTRY),
    T.PPGTT_PTE_PT: GttTypeInfo(T.PPGTT_PTE_4K_ENTRY, T.PPGTT_PTE_PT, T.INVALID, T.INVALID),
    T.PPGTT_PTE_4K_ENTRY: GttTypeInfo(T.PPGTT_PTE_4K_ENTRY, T.PPGTT_PTE_PT, T.INVALID, T.INVALID),
    T.PPGTT_PTE_64K_ENTRY: GttTypeInfo(T.PPGTT_PTE_64K_ENTRY, T.PPGTT_PTE_PT, T.INVALID, T.INVALID),
    T.PPGTT_PTE_2M_ENTRY: GttTypeInfo(T.PPGTT_PTE_2M_ENTRY, T.PPGTT_PDE_PT, T.INVALID, T.INVALID),
    T.PPGTT_PTE_1G_ENTRY: GttTypeInfo(T.PPGTT_PTE_1G_ENTRY, T.PPGTT_PDP_PT, T.INVALID, T.INVALID),
    T.GGTT_PTE: GttTypeInfo(T.GGTT_PTE, T.INVALID, T.INVALID, T.INVALID),
}
del T


def next_pt_type(t: GttType) -> GttType:
    return GTT_TYPE_TABLE[t].next_pt_type


def entry_type(t: GttType) -> GttType:
    return GTT_TYPE_TABLE[t].entry_type


def pse_type(t: GttType) -> GttType:
    return GTT_TYPE_TABLE[t].pse_entry_type


def is_pt(t: GttType) -> bool:
    return GttType.PPGTT_PTE_PT <= t <= GttType.PPGTT_PML4_PT
