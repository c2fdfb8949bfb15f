"""What the shadow PPGTT must hold, computed from the guest's tables alone (tests only).

The reference walk reads the guest tables straight from the test's guest memory, following the
contract (§3 PPGTT) and the choices of docs/ppgtt.md, and asks the DMA map only which host
frame a guest frame has. The checks compare every live shadow table with its guest table and
count the parent references of each.
"""

from __future__ import annotations

from array import array
from collections import Counter

from devmodel.device.dma import PROT_READ, PROT_WRITE, DmaMap
from devmodel.testing import GuestMemory
from gen_vgpu.gtt.mm import Ppgtt, RootKind, ShadowMm
from gen_vgpu.gtt.ops import GEN8_PTE_OPS as OPS
from gen_vgpu.gtt.shadow import ShadowTable
from gen_vgpu.gtt.types import GttType
from gen_vgpu.gtt.walker import ShadowWalker

T = GttType
PRESENT, RW, PS, IPS = 1, 2, 1 << 7, 1 << 11
LEVEL_SHIFTS = {RootKind.L3: (21, 12), RootKind.L4: (39, 30, 21, 12)}


def readable_gfn(dma: DmaMap, gfn: int) -> bool:
    w = dma.find(gfn << 12, 4096)
    return w is not None and w.view is not None and bool(w.prot & PROT_READ)


Leaf = tuple[int | None, bool, int]  # host frame (None: scratch), writable, the entry's low 12 bits


def leaf(dma: DmaMap, gfn: int, flags: int) -> Leaf:
    """What the shadow must give for a guest leaf page whose 4 KiB entry has ``flags``."""
    if not readable_gfn(dma, gfn):
        return None, False, PRESENT
    w = dma.find(gfn << 12, 4096)
    assert w is not None
    writable = bool(flags & RW and w.prot & PROT_WRITE)
    return w.hfn_base + gfn - w.first_gfn, writable, flags & 0xFFF & ~RW | (RW if writable else 0)


def reference_walk(
    mem: GuestMemory, dma: DmaMap, kind: RootKind, roots: tuple[int, ...], gma: int, ips_on: bool
) -> Leaf:
    root = roots[(gma >> 30) & 3] if kind is RootKind.L3 else roots[0]
    if root == 0:
        return None, False, PRESENT
    gfn = OPS.get_pfn(root)
    ips = False
    for shift in LEVEL_SHIFTS[kind]:
        if not readable_gfn(dma, gfn):
            return None, False, PRESENT
        i = (gma >> shift) & 511
        if shift == 12 and ips:
            i &= ~15
        e = int.from_bytes(mem.read((gfn << 12) + 8 * i, 8), "little")
        if not e & PRESENT:
            return None, False, PRESENT
        if shift == 12:
            page = OPS.get_pfn(e, T.PPGTT_PTE_64K_ENTRY) + ((gma >> 12) & 15) if ips else OPS.get_pfn(e)
            return leaf(dma, page, e)
        if shift == 21 and e & PS:
            # A 2 MiB page's PAT bit (12) is bit 7 in the 4 KiB entries that stand for it.
            flags = e & 0xFFF & ~(PS | IPS) | (PS if e & (1 << 12) else 0)
            return leaf(dma, OPS.get_pfn(e, T.PPGTT_PTE_2M_ENTRY) + ((gma >> 12) & 511), flags)
        if shift == 30 and e & PS:
            return None, False, PRESENT  # 1 GiB pages map to scratch
        ips = shift == 21 and ips_on and bool(e & IPS)
        gfn = OPS.get_pfn(e)
    raise AssertionError("unreachable")


def check_structure(ppgtt: Ppgtt, mem: GuestMemory, synced: bool) -> None:
    """Every live shadow table against its guest table; refcounts against parent references;
    every frame a shadow entry holds is scratch, a live shadow table or a mapped window frame.
    ``synced``: every shadowed mm was just resynced, so snapshots equal guest memory."""
    store, scratch = ppgtt.store, ppgtt.scratch
    live = {t.hfn: t for t in store.tables.values()}
    refs: Counter[int] = Counter()
    for mm in ppgtt.mms.values():
        for t in mm.root_tables:
            if t is not None:
                refs[id(t)] += 1
    assert store.by_hfn == live
    for t in store.tables.values():
        assert t.alive
        if t.is_leaf:
            assert not t.child_refs, "a leaf names children"
            continue
        # A directory's children are the live tables its shadow entries hold; every other
        # entry is the scratch of the level below (check_table).
        named: Counter[int] = Counter()
        for s in array("Q", t.page.tobytes()):
            child = live.get(OPS.get_pfn(s))
            if child is not None:
                named[id(child)] += 1
        refs.update(named)
        assert named == Counter({id(c): n for c, n in t.child_refs.items()}), "child_refs != the entries"
        assert all(c.alive for c in t.child_refs), "a live table points at a freed one"
    for t in store.tables.values():
        assert t.refs == refs[id(t)], f"refcount {t.refs} != {refs[id(t)]} parent references"
        assert t.refs > 0, "a table nobody references is still alive"
        check_table(ppgtt, mem, t, live, synced)
    assert set(scratch.hfns).isdisjoint(live)


def check_table(ppgtt: Ppgtt, mem: GuestMemory, t: ShadowTable, live: dict[int, ShadowTable], synced: bool) -> None:
    scratch, dma = ppgtt.scratch, ppgtt.dma
    shadow = array("Q", t.page.tobytes())
    below = scratch.entry_below[t.pt_type]
    guest = None
    if t.snapshot is not None and t.synth is None:
        guest = array("Q", bytes(t.snapshot))  # bytes, or the compiled path's slot (a memoryview)
        # Right after a resync the snapshot is the guest's table.
        if synced and readable_gfn(dma, t.gfn):
            assert bytes(t.snapshot) == mem.read(t.gfn << 12, 4096)
    for i, s in enumerate(shadow):
        assert s & PRESENT, "a shadow entry is not present"
        hfn = OPS.get_pfn(s)
        if guest is not None and not guest[i] & PRESENT and not (t.ips and i % 16):
            assert s == below, f"non-present guest entry {i} is not the scratch of the level below"
        if t.is_leaf:
            if hfn == scratch.page_hfn:
                assert s == below
                continue
            w = dma.hfn_window(hfn)
            assert w is not None and w.view is not None, "a leaf holds a frame of no mapped window"
            assert not s & RW or w.prot & PROT_WRITE, "a writable entry over a read-only window"
        else:
            # Huge pages are split (1 GiB: scratch): no shadow PDE keeps PS or IPS, no PDPE PS.
            dropped = PS | IPS if t.pt_type is T.PPGTT_PDE_PT else PS
            assert s == below or not s & dropped, "a shadow directory entry kept PS or IPS"
            if hfn not in live:
                assert s == below, "a shadow directory entry names no live table"


def shadow_matches_guest(
    ppgtt: Ppgtt, walker: ShadowWalker, mem: GuestMemory, mm: ShadowMm, ips_on: bool, addresses: list[int]
) -> None:
    for gma in addresses:
        run = walker.translate(mm, gma)
        got = (run.hfn, run.writable, walker.leaf_entry(mm, gma) & 0xFFF)
        want = reference_walk(mem, ppgtt.dma, mm.kind, mm.roots, gma, ips_on)
        assert got == want, f"gma {gma:#x}: shadow {got} != guest {want}"
