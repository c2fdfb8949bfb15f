"""The lost-connection sequence: quiesce, unmap every window, reset, close every eventfd,
accept the next client."""

from __future__ import annotations

import os
import time

import pytest

from devmodel.device.irq import SetIrqs
from devmodel.errors import ErrorReply, TransportError
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.vfio_user.constants import Command, IrqIndex, IrqSetFlags
from devmodel.vfio_user.layouts import VERSION

from .conftest import ServerThread


def _wait(cond, timeout: float = 60.0) -> None:  # a hang guard: a loaded machine is slow
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_disconnect_tears_down_and_next_client_attaches(server: ServerThread, memory: GuestMemory) -> None:
    before = len(os.listdir("/proc/self/fd"))
    c = VfioUserClient.connect(server.path, memory)
    c.negotiate()
    c.map_memory(memory)
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    c.set_irq_eventfds(IrqIndex.INTX, [efd])
    c.write32(0, 0x4000, 0x77)
    c.write64(0, 8 << 20, 0x1000 | 1)
    c.close()
    os.close(efd)
    dev = server.vgpu
    _wait(lambda: server.server.client is None)
    assert len(dev.dma) == 0
    assert dev.irqs.lines[IrqIndex.INTX].triggers == [None]
    assert dev.ggtt.read(0, 8, False) == 0
    assert len(os.listdir("/proc/self/fd")) == before  # windows unmapped, eventfds closed
    with VfioUserClient.connect(server.path, memory) as again:
        again.negotiate()
        assert again.read32(0, 0x4000) == 0
        assert again.read64(0, 0x78000) == 0x4776544776544776


def test_second_client_waits_for_the_first(server: ServerThread, memory: GuestMemory) -> None:
    first = VfioUserClient.connect(server.path, memory)
    first.negotiate()
    second = VfioUserClient.connect(server.path, memory, timeout=0.3)
    version_id = second.send(Command.VERSION, VERSION.pack(0, 0) + b"{}\0")
    with pytest.raises(TransportError):
        second.wait_reply(version_id)  # not served while the first is attached
    first.write32(0, 0x4000, 5)
    assert first.read32(0, 0x4000) == 5
    first.close()
    second.sock.settimeout(60)  # a hang guard
    assert VERSION.unpack_from(second.wait_reply(version_id).payload) == (0, 0)
    assert second.read32(0, 0x4000) == 0  # the first client's state went with it
    second.close()


@pytest.mark.parametrize("goes_away", ["at once", "after a refused command"])
def test_connection_that_never_negotiated_leaves_state_alone(
    server: ServerThread, memory: GuestMemory, goes_away: str
) -> None:
    """The probe is served (no other client holds the server) and leaves without VERSION:
    no lost-connection sequence, so the register, the window and the eventfd set up before
    it are all still there for the next client."""
    dev = server.device
    efd = os.eventfd(0, os.EFD_NONBLOCK)

    def set_up() -> None:
        dev.region_write(0, 0x4000, (9).to_bytes(4, "little"))
        dev.dma.add(0, memory.size, 3, memory.dup_fd())
        dev.set_irqs(
            SetIrqs(IrqSetFlags.DATA_EVENTFD, IrqSetFlags.ACTION_TRIGGER, IrqIndex.INTX, 0, 1, b"", (os.dup(efd),))
        )

    server.call(set_up)
    served = server.server.clients_served
    probe = VfioUserClient.connect(server.path, memory)
    if goes_away == "after a refused command":
        with pytest.raises(ErrorReply):
            probe.reset()  # answered (EINVAL: not before VERSION), so it was served
    probe.close()
    _wait(lambda: server.server.clients_served == served + 1 and server.server.client is None)
    assert server.call(lambda: len(dev.dma)) == 1
    assert server.call(lambda: dev.irqs.lines[IrqIndex.INTX].triggers) != [None]
    with VfioUserClient.connect(server.path, memory) as c:
        c.negotiate()
        assert c.read32(0, 0x4000) == 9
    os.close(efd)
