"""The g2v PPGTT notifications through the socket, as a guest sends them: the guest writes its
tree into its RAM, the roots into PVINFO pdp[] and the notification into g2v_notify; the device
shadows the tree as a loop task, and the inspection answer walks it."""

from __future__ import annotations

import time
from typing import Any

from devmodel.testing import GuestMemory, VfioUserClient
from gen_vgpu import GenVgpu
from gen_vgpu.gtt.mm import RootKind
from gen_vgpu.mmio.regs import PVINFO_G2V_NOTIFY, PVINFO_PDP, G2vNotify

from .conftest import ServerThread

RWP = 0x3  # present | writable
PAGE = 4096


def put(mem: GuestMemory, gfn: int, index: int, entry: int) -> None:
    mem.write(gfn * PAGE + 8 * index, entry.to_bytes(8, "little"))


def set_roots(client: VfioUserClient, roots: list[int]) -> None:
    for i, root in enumerate(roots):
        client.write64(0, PVINFO_PDP + 8 * i, root)


def notify(client: VfioUserClient, kind: G2vNotify) -> None:
    client.write32(0, PVINFO_G2V_NOTIFY, int(kind))
    client.read32(0, PVINFO_G2V_NOTIFY)  # a round trip: the write was handled


def shadow_of(server: ServerThread, roots: str, gma: int) -> dict[str, Any]:
    """The inspection answer, once the resync task has finished."""
    dev = server.vgpu
    deadline = time.monotonic() + 60  # a hang guard: a loaded machine is slow
    while server.call(dev.tasks.has_ready):
        assert time.monotonic() < deadline, "the resync did not finish"
        time.sleep(0.01)
    answer: dict[str, Any] = server.call(lambda: dev.inspect("ppgtt", [roots, hex(gma)]))
    return answer


def test_four_level_create_shadows_the_tree_and_destroy_drops_it(
    server: ServerThread, client: VfioUserClient, memory: GuestMemory
) -> None:
    # PML4 at gfn 0x100 -> PDP 0x101 -> PD 0x102 -> PT 0x103 -> page 0x200 for gma 0x4000_0000_1000
    gma = (1 << 39) | (2 << 30) | (3 << 21) | (4 << 12)
    put(memory, 0x100, 1, 0x101 << 12 | RWP)
    put(memory, 0x101, 2, 0x102 << 12 | RWP)
    put(memory, 0x102, 3, 0x103 << 12 | RWP)
    put(memory, 0x103, 4, 0x200 << 12 | RWP)
    set_roots(client, [0x100 << 12, 0, 0, 0])
    notify(client, G2vNotify.PPGTT_L4_CREATE)
    dev = server.vgpu
    assert isinstance(dev, GenVgpu)
    answer = shadow_of(server, hex(0x100 << 12), gma)
    assert answer["host_frame"] == hex(server.call(lambda: dev.dma.gfn_to_hfn(0x200)))
    assert answer["writable"] is True
    # Unused address: scratch, through the scratch tables of every level below.
    assert shadow_of(server, hex(0x100 << 12), gma + (1 << 21))["host_frame"] == "scratch"
    assert server.call(lambda: dev.ppgtt.find(RootKind.L4, (0x100 << 12,))) is not None
    notify(client, G2vNotify.PPGTT_L4_DESTROY)  # the guest's only claim: nothing uses it now
    assert server.call(lambda: dev.ppgtt.find(RootKind.L4, (0x100 << 12,))) is None


def test_legacy_three_level_create(server: ServerThread, client: VfioUserClient, memory: GuestMemory) -> None:
    # Four PDP roots (the PDs), PD 0x110 entry 5 -> PT 0x111 entry 6 -> page 0x300, in the second GiB.
    pds = [0x10F, 0x110, 0x112, 0x113]
    put(memory, 0x110, 5, 0x111 << 12 | RWP)
    put(memory, 0x111, 6, 0x300 << 12 | RWP)
    set_roots(client, [pd << 12 for pd in pds])
    notify(client, G2vNotify.PPGTT_L3_CREATE)
    roots = ",".join(hex(pd << 12) for pd in pds)
    gma = (1 << 30) | (5 << 21) | (6 << 12)
    dev = server.vgpu
    assert shadow_of(server, roots, gma)["host_frame"] == hex(server.call(lambda: dev.dma.gfn_to_hfn(0x300)))
    assert shadow_of(server, roots, 0)["host_frame"] == "scratch"
