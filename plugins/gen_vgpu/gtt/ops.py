"""Entry and address operations per GEN (GVT-g's ``pte_ops`` / ``gma_ops``).

Entries are plain ints. BDW and SKL share the GEN8 encodings; a new encoding is a new ops
instance, and the shadowing code only ever calls through these.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import GttType

__all__ = ["GEN8_GMA_OPS", "GEN8_PTE_OPS", "GmaOps", "PteOps"]

_PRESENT = 1 << 0
_RW = 1 << 1
_PS = 1 << 7
_IPS = 1 << 11
# GEN8 frame field: address bits 45:12 (GVT's 46-bit "HAW").
_ADDR_MASK_4K = ((1 << 46) - 1) & ~0xFFF
_ADDR_MASK_64K = ((1 << 46) - 1) & ~0xFFFF
_ADDR_MASK_2M = ((1 << 46) - 1) & ~((1 << 21) - 1)
_ADDR_MASK_1G = ((1 << 46) - 1) & ~((1 << 30) - 1)


@dataclass(frozen=True)
class PteOps:
    """Operations on one 64-bit entry."""

    present_bit: int = _PRESENT
    rw_bit: int = _RW
    ps_bit: int = _PS
    ips_bit: int = _IPS
    addr_mask: int = _ADDR_MASK_4K

    def test_present(self, e: int) -> bool:
        return bool(e & self.present_bit)

    def set_present(self, e: int) -> int:
        return e | self.present_bit

    def clear_present(self, e: int) -> int:
        return e & ~self.present_bit

    def test_root_present(self, e: int) -> bool:
        # i915 writes legacy PDP root pointers without the present bit (GVT: nonzero = present).
        return e != 0

    def test_pse(self, e: int) -> bool:
        return bool(e & self.ps_bit)

    def test_ips(self, e: int) -> bool:
        return bool(e & self.ips_bit)

    def get_pfn(self, e: int, etype: GttType = GttType.PPGTT_PTE_4K_ENTRY) -> int:
        if etype is GttType.PPGTT_PTE_1G_ENTRY:
            return (e & _ADDR_MASK_1G) >> 12
        if etype is GttType.PPGTT_PTE_2M_ENTRY:
            return (e & _ADDR_MASK_2M) >> 12
        if etype is GttType.PPGTT_PTE_64K_ENTRY:
            return (e & _ADDR_MASK_64K) >> 12
        return (e & self.addr_mask) >> 12

    def set_pfn(self, e: int, pfn: int) -> int:
        # A frame that does not fit would be masked into an alias of another frame.
        if pfn < 0 or (pfn << 12) & ~self.addr_mask:
            raise ValueError(f"frame {pfn:#x} does not fit the entry's frame bits")
        return (e & ~self.addr_mask) | (pfn << 12)

    def build(self, pfn: int, flags: int = _PRESENT | _RW) -> int:
        return ((pfn << 12) & self.addr_mask) | flags


@dataclass(frozen=True)
class GmaOps:
    """Graphics-address (gma) to table indexes."""

    def gma_to_ggtt_pte_index(self, gma: int) -> int:
        return gma >> 12

    def gma_to_pte_index(self, gma: int) -> int:
        return (gma >> 12) & 0x1FF

    def gma_to_pde_index(self, gma: int) -> int:
        return (gma >> 21) & 0x1FF

    def gma_to_l3_pdp_index(self, gma: int) -> int:
        return (gma >> 30) & 0x3

    def gma_to_l4_pdp_index(self, gma: int) -> int:
        return (gma >> 30) & 0x1FF

    def gma_to_pml4_index(self, gma: int) -> int:
        return (gma >> 39) & 0x1FF


GEN8_PTE_OPS = PteOps()
GEN8_GMA_OPS = GmaOps()
