"""The PPGTT scratch tree, allocated once per vGPU.

A scratch data page, a scratch PT whose 512 entries point at it, a scratch PD pointing at the
PT, a scratch PDP pointing at the PD, and a scratch PML4 pointing at the PDP (the shadow root
of a 4-level context whose guest root is not present). Every shadow entry the guest has not
made present points at the scratch table of the level below, so a walker (or a prefetch) never
meets a non-present or dangling entry at any level.

Directory entries are present and writable, like i915's. The scratch leaf entries are present
but **not writable**: a store through an unmapped address is dropped and the scratch data page
stays zero, so no context can leave data there for another to read.
"""

from __future__ import annotations

from devmodel.device.dma import DmaMap

from .lanes import TABLE_BYTES, repeat
from .ops import PteOps
from .types import GttType

__all__ = ["ScratchTree"]

T = GttType


class ScratchTree:
    def __init__(self, dma: DmaMap, ops: PteOps) -> None:
        self.dma = dma
        self.page_hfn, _ = dma.alloc_device_page()
        self.leaf_entry = ops.build(self.page_hfn, ops.present_bit)
        # The shadow entry an unused entry of a table of each type gets.
        self.entry_below: dict[GttType, int] = {T.PPGTT_PTE_PT: self.leaf_entry}
        self.table_hfn: dict[GttType, int] = {}
        below = self.leaf_entry
        for pt_type in (T.PPGTT_PTE_PT, T.PPGTT_PDE_PT, T.PPGTT_PDP_PT, T.PPGTT_PML4_PT):
            hfn, page = dma.alloc_device_page()
            page[:] = repeat(below).to_bytes(TABLE_BYTES, "little")
            self.table_hfn[pt_type] = hfn
            below = ops.build(hfn)
            if pt_type is not T.PPGTT_PML4_PT:
                self.entry_below[_parent(pt_type)] = below
        self.hfns = frozenset((self.page_hfn, *self.table_hfn.values()))
        # Whole scratch-filled tables, to reset a shadow table in one slice assignment.
        self.filled: dict[GttType, bytes] = {
            t: repeat(e).to_bytes(TABLE_BYTES, "little") for t, e in self.entry_below.items()
        }

    def is_scratch(self, hfn: int) -> bool:
        return hfn in self.hfns

    def free(self) -> None:
        for hfn in self.hfns:
            self.dma.free_device_page(hfn)


def _parent(pt_type: GttType) -> GttType:
    return {T.PPGTT_PTE_PT: T.PPGTT_PDE_PT, T.PPGTT_PDE_PT: T.PPGTT_PDP_PT, T.PPGTT_PDP_PT: T.PPGTT_PML4_PT}[pt_type]
