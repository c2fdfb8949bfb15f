"""The per-GEN entry and address operations and the GTT type table, which the GGTT uses now
and the PPGTT shadow will walk with."""

from __future__ import annotations

import pytest

from gen_vgpu.gtt.ops import GEN8_GMA_OPS, GEN8_PTE_OPS
from gen_vgpu.gtt.types import GTT_TYPE_TABLE, GttType, entry_type, is_pt, next_pt_type, pse_type
from gen_vgpu.platform import PLATFORMS, Platform

T = GttType
ops = GEN8_PTE_OPS
gma = GEN8_GMA_OPS


def test_address_split_4_level() -> None:
    addr = (0x1A5 << 39) | (0x0F3 << 30) | (0x101 << 21) | (0x1FF << 12) | 0xABC
    assert gma.gma_to_pml4_index(addr) == 0x1A5
    assert gma.gma_to_l4_pdp_index(addr) == 0x0F3
    assert gma.gma_to_pde_index(addr) == 0x101
    assert gma.gma_to_pte_index(addr) == 0x1FF
    assert gma.gma_to_ggtt_pte_index(0xFFFFF000) == 0xFFFFF


def test_address_split_legacy_3_level() -> None:
    # 32-bit: bits 31:30 pick one of the four root PDPs.
    assert gma.gma_to_l3_pdp_index(0xC0000000) == 3
    assert gma.gma_to_l3_pdp_index(0x7FFFFFFF) == 1
    assert gma.gma_to_l3_pdp_index(0x1_0000_0000) == 0  # bits above 31 are not part of it


def test_entry_bits() -> None:
    e = ops.build(0x12345)
    assert e == 0x12345000 | 0x3
    assert ops.test_present(e) and not ops.test_present(ops.clear_present(e))
    assert ops.set_present(0) == 1
    assert ops.get_pfn(e) == 0x12345
    flags = (1 << 63) | (1 << 52) | 0x19B  # software bits, PAT/PCD/PWT, RW, present
    moved = ops.set_pfn(flags | (0x111 << 12), 0x3FFFFFFFF)
    assert ops.get_pfn(moved) == 0x3FFFFFFFF
    assert moved & ~(((1 << 46) - 1) & ~0xFFF) == flags  # every flag bit kept
    assert ops.get_pfn(1 << 46 | 0x5000) == 0x5  # bits above 45 are not frame bits


@pytest.mark.parametrize("pfn", [1 << 34, (1 << 34) + 5, 1 << 40, -1])
def test_set_pfn_refuses_a_frame_that_does_not_fit(pfn: int) -> None:
    # Masked, 2^34 + 5 would alias frame 5.
    with pytest.raises(ValueError):
        ops.set_pfn(0x3, pfn)


def test_large_page_frames_and_bits() -> None:
    pde = (0x40000000 | 0x123000) | ops.ps_bit | 1
    assert ops.test_pse(pde) and not ops.test_ips(pde)
    assert ops.get_pfn(pde, T.PPGTT_PTE_2M_ENTRY) == 0x40000000 >> 12  # bits 20:12 are not frame
    assert ops.get_pfn(0x7_C000_0000 | 0x3FFFF000 | 1, T.PPGTT_PTE_1G_ENTRY) == 0x7_C000_0000 >> 12
    assert ops.get_pfn(0x12345000 | 1, T.PPGTT_PTE_64K_ENTRY) == 0x12340
    assert ops.test_ips(1 << 11)


def test_root_pointers_count_as_present_when_nonzero() -> None:
    # i915 writes legacy PDP roots without the present bit.
    assert ops.test_root_present(0x5000) and not ops.test_root_present(0)


@pytest.mark.parametrize(
    "root,chain",
    [
        (T.PPGTT_ROOT_L4_ENTRY, [T.PPGTT_PML4_PT, T.PPGTT_PDP_PT, T.PPGTT_PDE_PT, T.PPGTT_PTE_PT]),
        (T.PPGTT_ROOT_L3_ENTRY, [T.PPGTT_PDE_PT, T.PPGTT_PTE_PT]),
    ],
)
def test_type_table_walks_down_to_the_page_table(root: GttType, chain: list[GttType]) -> None:
    walked = []
    t = next_pt_type(root)
    while t is not T.INVALID:
        walked.append(t)
        assert is_pt(t)
        t = next_pt_type(t)
    assert walked == chain


def test_type_table_entries_and_huge_pages() -> None:
    assert entry_type(T.PPGTT_PML4_PT) is T.PPGTT_PML4_ENTRY
    assert entry_type(T.PPGTT_PTE_PT) is T.PPGTT_PTE_4K_ENTRY
    assert pse_type(T.PPGTT_PDE_PT) is T.PPGTT_PTE_2M_ENTRY
    assert pse_type(T.PPGTT_PDP_PT) is T.PPGTT_PTE_1G_ENTRY
    assert pse_type(T.PPGTT_PML4_PT) is T.INVALID  # no huge pages at the top level
    for t, info in GTT_TYPE_TABLE.items():
        if is_pt(t):
            assert info.pt_type is t and GTT_TYPE_TABLE[info.entry_type].pt_type is t


def test_platforms_share_gen8_encodings_and_differ_in_data() -> None:
    bdw, skl = PLATFORMS[Platform.BDW], PLATFORMS[Platform.SKL]
    assert bdw.pte_ops is skl.pte_ops is GEN8_PTE_OPS
    assert (bdw.device_id, bdw.revision, bdw.msi_offset, bdw.has_ips) == (0x1616, 0x09, 0x90, False)
    assert (skl.device_id, skl.revision, skl.msi_offset, skl.has_ips) == (0x1912, 0x06, 0xAC, True)
