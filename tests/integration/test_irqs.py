"""DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS with real eventfds in SCM_RIGHTS."""

from __future__ import annotations

import errno
import os
import select
from collections.abc import Iterator

import pytest

from devmodel.errors import ErrorReply
from devmodel.testing import VfioUserClient
from devmodel.vfio_user.constants import IrqIndex, IrqInfoFlags, IrqSetFlags

from .conftest import ServerThread

F = IrqSetFlags


def _fired(fd: int, timeout: float = 1.0) -> int:
    """The eventfd's count, or 0 if it was not signalled within ``timeout``."""
    if not select.select([fd], [], [], timeout)[0]:
        return 0
    return os.eventfd_read(fd)


@pytest.fixture
def efds() -> Iterator[list[int]]:
    fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(4)]
    yield fds
    for fd in fds:
        os.close(fd)


def test_irq_info(client: VfioUserClient) -> None:
    intx = client.irq_info(IrqIndex.INTX)
    assert intx.count == 1
    assert intx.flags == IrqInfoFlags.EVENTFD | IrqInfoFlags.MASKABLE | IrqInfoFlags.AUTOMASKED
    msi = client.irq_info(IrqIndex.MSI)
    assert msi.count == 1 and msi.flags & IrqInfoFlags.EVENTFD
    assert client.irq_info(IrqIndex.MSIX).count == 0
    assert client.irq_info(IrqIndex.ERR).count == 1
    with pytest.raises(ErrorReply) as e:
        client.irq_info(5)
    assert e.value.errno == errno.EINVAL


def test_intx_level_automask_unmask(server: ServerThread, client: VfioUserClient, efds: list[int]) -> None:
    client.set_irq_eventfds(IrqIndex.INTX, [efds[0]])
    dev = server.device
    dev.set_intx(True)
    assert _fired(efds[0]) == 1
    dev.set_intx(True)  # still asserted, but automasked: no second signal
    assert _fired(efds[0], 0.1) == 0
    cfg_status = int.from_bytes(client.region_read(7, 6, 2), "little")
    assert cfg_status & 0x8  # status bit 3 reports the asserted line
    client.set_irqs(IrqIndex.INTX, F.DATA_NONE | F.ACTION_UNMASK)
    assert _fired(efds[0]) == 1  # unmasked while still asserted: signalled again
    dev.set_intx(False)
    client.set_irqs(IrqIndex.INTX, F.DATA_NONE | F.ACTION_UNMASK)
    assert _fired(efds[0], 0.1) == 0
    assert not int.from_bytes(client.region_read(7, 6, 2), "little") & 0x8


def test_intx_disable_bit_masks_delivery(server: ServerThread, client: VfioUserClient, efds: list[int]) -> None:
    client.set_irq_eventfds(IrqIndex.INTX, [efds[0]])
    client.region_write(7, 4, (0x0400).to_bytes(2, "little"))  # command bit 10: INTx disable
    server.device.set_intx(True)
    assert _fired(efds[0], 0.1) == 0
    assert int.from_bytes(client.region_read(7, 6, 2), "little") & 0x8  # pending, masked
    client.region_write(7, 4, (0x0000).to_bytes(2, "little"))
    assert _fired(efds[0]) == 1


def test_msi_when_enabled(server: ServerThread, client: VfioUserClient, efds: list[int]) -> None:
    client.set_irq_eventfds(IrqIndex.INTX, [efds[0]])
    client.set_irq_eventfds(IrqIndex.MSI, [efds[1]])
    client.region_write(7, 0x90 + 2, (0x1).to_bytes(2, "little"))  # MSI enable
    server.device.raise_interrupt()
    assert _fired(efds[1]) == 1
    assert _fired(efds[0], 0.1) == 0


def test_loopback_trigger_and_bool(client: VfioUserClient, efds: list[int]) -> None:
    client.set_irq_eventfds(IrqIndex.MSI, [efds[1]])
    client.set_irqs(IrqIndex.MSI, F.DATA_NONE | F.ACTION_TRIGGER)
    assert _fired(efds[1]) == 1
    client.set_irqs(IrqIndex.MSI, F.DATA_BOOL | F.ACTION_TRIGGER, data=b"\0")
    assert _fired(efds[1], 0.1) == 0
    client.set_irqs(IrqIndex.MSI, F.DATA_BOOL | F.ACTION_TRIGGER, data=b"\1")
    assert _fired(efds[1]) == 1


def test_disable_all_and_deassign_close_fds(server: ServerThread, client: VfioUserClient, efds: list[int]) -> None:
    before = len(os.listdir("/proc/self/fd"))
    client.set_irq_eventfds(IrqIndex.MSI, [efds[1]])
    client.set_irq_eventfds(IrqIndex.ERR, [efds[2]])
    assert len(os.listdir("/proc/self/fd")) == before + 2
    client.set_irqs(IrqIndex.MSI, F.DATA_NONE | F.ACTION_TRIGGER, 0, 0)  # disable all
    client.set_irqs(IrqIndex.ERR, F.DATA_EVENTFD | F.ACTION_TRIGGER, 0, 1)  # no fd: de-assign
    assert len(os.listdir("/proc/self/fd")) == before
    server.device.raise_interrupt()
    assert _fired(efds[1], 0.1) == 0


def test_fd_count_mismatch_rejected_and_closed(client: VfioUserClient, efds: list[int]) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ErrorReply) as e:
        client.set_irqs(IrqIndex.MSI, F.DATA_EVENTFD | F.ACTION_TRIGGER, 0, 1, fds=efds[:2])
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ErrorReply):
        client.set_irqs(IrqIndex.INTX, F.DATA_EVENTFD | F.ACTION_TRIGGER, 0, 2, fds=efds[:2])
    assert len(os.listdir("/proc/self/fd")) == before


def test_mask_notification_eventfds(server: ServerThread, client: VfioUserClient, efds: list[int]) -> None:
    client.set_irq_eventfds(IrqIndex.INTX, [efds[0]])
    client.set_irqs(IrqIndex.INTX, F.DATA_EVENTFD | F.ACTION_UNMASK, 0, 1, fds=[efds[3]])
    server.device.set_intx(True)
    assert _fired(efds[0]) == 1
    client.set_irqs(IrqIndex.INTX, F.DATA_NONE | F.ACTION_UNMASK)
    assert _fired(efds[3]) == 1  # the unmask was announced on the unmask eventfd


def test_chunked_msi_set_as_qemu_sends_it(make_server, memory) -> None:
    """QEMU splits a large vector set into chunks of the server's max_msg_fds, moving start."""
    from devmodel.device.device import Device
    from devmodel.device.pci_config import PciConfigSpace

    config = PciConfigSpace(0x1234, 0x1, 0, 0xFF0000)
    config.freeze_power_on_state()
    st = make_server(device=Device(config, msi_count=20))
    fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(20)]
    try:
        with VfioUserClient.connect(st.path, memory) as c:
            c.negotiate()
            assert c.irq_info(IrqIndex.MSI).count == 20
            for start in range(0, 20, 8):
                c.set_irq_eventfds(IrqIndex.MSI, fds[start : start + 8], start=start)
            c.set_irqs(IrqIndex.MSI, F.DATA_NONE | F.ACTION_TRIGGER, 0, 0)
            for start in range(0, 20, 8):  # a run of "-1" fds: no fds, de-assign
                c.set_irqs(IrqIndex.MSI, F.DATA_EVENTFD | F.ACTION_TRIGGER, start, min(8, 20 - start))
            for start in range(0, 20, 8):
                c.set_irq_eventfds(IrqIndex.MSI, fds[start : start + 8], start=start)
            for vec in (0, 7, 8, 19):
                assert st.device.irqs.trigger(IrqIndex.MSI, vec)
                assert _fired(fds[vec]) == 1
            assert all(_fired(fds[v], 0.0) == 0 for v in range(20) if v not in (0, 7, 8, 19))
            with pytest.raises(ErrorReply):  # past the end of the index
                c.set_irq_eventfds(IrqIndex.MSI, fds[:2], start=19)
    finally:
        for fd in fds:
            os.close(fd)


def test_set_irqs_refuses_what_is_not_an_eventfd_and_never_blocks_on_one(
    server: ServerThread, client: VfioUserClient, efds: list[int]
) -> None:
    """A blocking pipe would stop the single-threaded server once full: refused (EINVAL) and
    closed. A blocking eventfd whose counter the client set to its maximum cannot take our
    1 without blocking: the interrupt is pending already, and the server goes on."""
    r, w = os.pipe()
    try:
        with pytest.raises(ErrorReply) as e:
            client.set_irq_eventfds(IrqIndex.MSI, [w])
        assert e.value.errno == errno.EINVAL
        assert server.call(lambda: server.device.irqs.lines[IrqIndex.MSI].triggers[0]) is None
    finally:
        os.close(r)
        os.close(w)
    full = os.eventfd(0, os.EFD_CLOEXEC)  # blocking, as a careless or hostile client leaves it
    try:
        os.eventfd_write(full, (1 << 64) - 2)  # the counter's maximum
        client.set_irq_eventfds(IrqIndex.MSI, [full])
        for _ in range(3):
            assert server.call(lambda: server.device.irqs.trigger(IrqIndex.MSI)) is True
        assert client.read32(0, 0x78000) == 0x76544776  # the server still answers
        assert os.eventfd_read(full) == (1 << 64) - 2
    finally:
        os.close(full)
