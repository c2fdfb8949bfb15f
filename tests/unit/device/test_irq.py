"""Interrupt lines over real eventfds: INTx level/automask semantics, PCI 2.3 masking through
the command register, MSI, disable-all, SET_IRQS validation, mask/unmask notification."""

from __future__ import annotations

import errno
import os

import pytest

from devmodel.device.irq import IrqLines, SetIrqs
from devmodel.device.pci_config import CMD_INTX_DISABLE
from devmodel.errors import MalformedRequest
from devmodel.vfio_user.constants import IrqIndex, IrqInfoFlags, IrqSetFlags
from gen_vgpu import GenVgpu

NONE, BOOL, EVENTFD = IrqSetFlags.DATA_NONE, IrqSetFlags.DATA_BOOL, IrqSetFlags.DATA_EVENTFD
MASK, UNMASK, TRIGGER = IrqSetFlags.ACTION_MASK, IrqSetFlags.ACTION_UNMASK, IrqSetFlags.ACTION_TRIGGER
INTX, MSI, MSIX, ERR, REQ = IrqIndex.INTX, IrqIndex.MSI, IrqIndex.MSIX, IrqIndex.ERR, IrqIndex.REQ


class Eventfds:
    """Eventfds the test keeps; the device is handed duplicates it owns and closes."""

    def __init__(self) -> None:
        self.mine: list[int] = []

    def new(self) -> tuple[int, int]:
        fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.mine.append(fd)
        return fd, os.dup(fd)

    def close(self) -> None:
        for fd in self.mine:
            os.close(fd)


@pytest.fixture
def efds():
    e = Eventfds()
    yield e
    e.close()


def pending(fd: int) -> int:
    """The eventfd's counter (consumed), 0 if not signalled."""
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


def is_open(fd: int | None) -> bool:
    assert fd is not None, "no fd there at all"
    try:
        os.fstat(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


def arm(lines, efds: Eventfds, index: int, start: int = 0, count: int = 1, action=TRIGGER) -> list[int]:
    """Hand ``count`` fresh eventfds to vectors start.. of ``index``; returns the test's ends."""
    pairs = [efds.new() for _ in range(count)]
    lines.set_irqs(SetIrqs(EVENTFD, action, index, start, count, b"", tuple(d for _, d in pairs)))
    return [mine for mine, _ in pairs]


# --- IrqLines alone ------------------------------------------------------------------------


def test_info_flags_and_counts():
    lines = IrqLines(msi_count=1)
    flags, count = lines.info(INTX)
    assert count == 1
    assert flags & IrqInfoFlags.EVENTFD and flags & IrqInfoFlags.MASKABLE and flags & IrqInfoFlags.AUTOMASKED
    flags, count = lines.info(MSI)
    assert count == 1 and flags & IrqInfoFlags.EVENTFD and not flags & IrqInfoFlags.MASKABLE
    assert lines.info(MSIX)[1] == 0
    assert lines.info(ERR)[1] == 1 and lines.info(REQ)[1] == 1
    with pytest.raises(MalformedRequest):
        lines.info(5)


def test_intx_assert_signals_once_and_automasks(efds):
    lines = IrqLines()
    (fd,) = arm(lines, efds, INTX)
    assert pending(fd) == 0
    lines.set_intx(True)
    assert pending(fd) == 1
    assert lines.lines[INTX].masked[0]
    # Still asserted, re-asserted, deasserted and asserted again: masked, so no signal.
    lines.set_intx(True)
    lines.set_intx(False)
    lines.set_intx(True)
    assert pending(fd) == 0
    lines.set_irqs(SetIrqs(NONE, UNMASK, INTX, 0, 1))
    assert pending(fd) == 1  # still asserted at UNMASK: signalled again (and automasked)
    assert lines.lines[INTX].masked[0]
    lines.set_intx(False)
    lines.set_irqs(SetIrqs(NONE, UNMASK, INTX, 0, 1))
    assert pending(fd) == 0  # deasserted at UNMASK: nothing
    assert not lines.lines[INTX].masked[0]
    lines.set_intx(True)
    assert pending(fd) == 1


def test_intx_explicit_mask_holds_the_level(efds):
    lines = IrqLines()
    (fd,) = arm(lines, efds, INTX)
    lines.set_irqs(SetIrqs(NONE, MASK, INTX, 0, 1))
    lines.set_intx(True)
    assert pending(fd) == 0
    lines.set_irqs(SetIrqs(BOOL, UNMASK, INTX, 0, 1, b"\x00"))  # bool 0: not selected
    assert pending(fd) == 0
    lines.set_irqs(SetIrqs(BOOL, UNMASK, INTX, 0, 1, b"\x01"))
    assert pending(fd) == 1


def test_intx_armed_while_asserted_fires(efds):
    lines = IrqLines()
    lines.set_intx(True)  # no eventfd yet: nothing to signal, not automasked
    assert not lines.lines[INTX].masked[0]
    (fd,) = arm(lines, efds, INTX)
    assert pending(fd) == 1


def test_intx_blocked_by_callback(efds):
    lines = IrqLines()
    blocked = [True]
    lines.intx_blocked = lambda: blocked[0]
    (fd,) = arm(lines, efds, INTX)
    lines.set_intx(True)
    assert pending(fd) == 0
    blocked[0] = False
    lines.update_intx()
    assert pending(fd) == 1


def test_msi_trigger(efds):
    lines = IrqLines(msi_count=1)
    assert not lines.vector_wired(MSI)
    assert lines.trigger(MSI) is False
    (fd,) = arm(lines, efds, MSI)
    assert lines.vector_wired(MSI)
    assert lines.trigger(MSI) is True
    assert lines.trigger(MSI) is True  # edge: no automask
    assert pending(fd) == 2
    assert lines.trigger(MSI, 1) is False  # no such vector
    # Client-side loopback trigger (DATA_NONE|TRIGGER).
    lines.set_irqs(SetIrqs(NONE, TRIGGER, MSI, 0, 1))
    assert pending(fd) == 1


def test_data_bool_selects_vectors(efds):
    lines = IrqLines(msi_count=4)
    fds = arm(lines, efds, MSI, 0, 4)
    lines.set_irqs(SetIrqs(BOOL, TRIGGER, MSI, 0, 4, bytes([1, 0, 1, 0])))
    assert [pending(fd) for fd in fds] == [1, 0, 1, 0]
    lines.set_irqs(SetIrqs(BOOL, TRIGGER, MSI, 1, 3, bytes([0, 1, 1])))
    assert [pending(fd) for fd in fds] == [0, 0, 1, 1]
    lines.set_irqs(SetIrqs(NONE, TRIGGER, MSI, 1, 2))
    assert [pending(fd) for fd in fds] == [0, 1, 1, 0]


def test_eventfd_replacement_closes_the_old_one(efds):
    lines = IrqLines(msi_count=2)
    arm(lines, efds, MSI, 0, 2)
    old = lines.lines[MSI].triggers[1]
    (new,) = arm(lines, efds, MSI, 1, 1)
    assert not is_open(old)
    assert lines.lines[MSI].triggers[1] != old
    lines.trigger(MSI, 1)
    assert pending(new) == 1
    # DATA_EVENTFD with no fds de-assigns.
    wired = lines.lines[MSI].triggers[0]
    lines.set_irqs(SetIrqs(EVENTFD, TRIGGER, MSI, 0, 1))
    assert not is_open(wired)
    assert not lines.vector_wired(MSI, 0)


def test_disable_all_closes_fds(efds):
    lines = IrqLines(msi_count=2)
    arm(lines, efds, INTX)
    arm(lines, efds, INTX, action=MASK)
    arm(lines, efds, INTX, action=UNMASK)
    arm(lines, efds, MSI, 0, 2)
    intx = lines.lines[INTX]
    dev_fds = [intx.triggers[0], intx.mask_fds[0], intx.unmask_fds[0]]
    msi_fds = list(lines.lines[MSI].triggers)
    lines.set_intx(True)
    assert intx.masked[0]
    lines.set_irqs(SetIrqs(NONE, TRIGGER, INTX, 0, 0))
    assert not any(is_open(fd) for fd in dev_fds)
    assert intx.triggers == [None] and intx.mask_fds == [None] and intx.unmask_fds == [None]
    assert not intx.masked[0]
    assert all(is_open(fd) for fd in msi_fds)  # other indexes untouched
    lines.set_irqs(SetIrqs(NONE, TRIGGER, MSI, 0, 0))
    assert not any(is_open(fd) for fd in msi_fds)
    assert not lines.vector_wired(MSI, 0) and not lines.vector_wired(MSI, 1)


def test_close_all(efds):
    lines = IrqLines()
    arm(lines, efds, INTX)
    arm(lines, efds, MSI)
    arm(lines, efds, ERR)
    fds = [lines.lines[i].triggers[0] for i in (INTX, MSI, ERR)]
    lines.close_all()
    assert not any(is_open(fd) for fd in fds)


@pytest.mark.parametrize(
    "req",
    [
        SetIrqs(NONE, TRIGGER, INTX, 1, 1),  # start past the end
        SetIrqs(NONE, TRIGGER, INTX, 0, 2),  # count past the end
        SetIrqs(NONE, TRIGGER, MSI, 1, 1),
        SetIrqs(NONE, TRIGGER, MSI, 0, 2),
        SetIrqs(NONE, TRIGGER, MSIX, 0, 1),  # no MSI-X vectors
        SetIrqs(NONE, TRIGGER, 5, 0, 1),  # no such index
        SetIrqs(NONE, MASK, MSI, 0, 1),  # MSI is not maskable
        SetIrqs(NONE, UNMASK, MSI, 0, 1),
        SetIrqs(NONE, MASK, ERR, 0, 1),  # ERR/REQ take TRIGGER only
        SetIrqs(NONE, UNMASK, REQ, 0, 1),
        SetIrqs(NONE, TRIGGER, ERR, 0, 2),
    ],
    ids=lambda r: f"idx{r.index}-act{int(r.action):#x}-{r.start}+{r.count}",
)
def test_validation_errors(req):
    lines = IrqLines(msi_count=1)
    with pytest.raises(MalformedRequest) as info:
        lines.set_irqs(req)
    assert info.value.errno == errno.EINVAL


def test_rejected_request_changes_nothing_and_leaves_fds_to_caller(efds):
    lines = IrqLines(msi_count=1)
    (old,) = arm(lines, efds, MSI)
    wired = lines.lines[MSI].triggers[0]
    _, theirs = efds.new()
    with pytest.raises(MalformedRequest):
        lines.set_irqs(SetIrqs(EVENTFD, MASK, MSI, 0, 1, b"", (theirs,)))
    with pytest.raises(MalformedRequest):
        lines.set_irqs(SetIrqs(EVENTFD, TRIGGER, MSI, 0, 2, b"", (theirs, theirs)))
    assert is_open(theirs)  # the caller closes it
    os.close(theirs)
    assert lines.lines[MSI].triggers[0] == wired and is_open(wired)
    lines.trigger(MSI)
    assert pending(old) == 1


def test_mask_unmask_notification_eventfds(efds):
    lines = IrqLines()
    arm(lines, efds, INTX)
    (on_mask,) = arm(lines, efds, INTX, action=MASK)
    (on_unmask,) = arm(lines, efds, INTX, action=UNMASK)
    lines.set_irqs(SetIrqs(NONE, MASK, INTX, 0, 1))
    assert (pending(on_mask), pending(on_unmask)) == (1, 0)
    lines.set_irqs(SetIrqs(NONE, MASK, INTX, 0, 1))  # no change: no notification
    assert (pending(on_mask), pending(on_unmask)) == (0, 0)
    lines.set_irqs(SetIrqs(NONE, UNMASK, INTX, 0, 1))
    assert (pending(on_mask), pending(on_unmask)) == (0, 1)
    lines.set_irqs(SetIrqs(NONE, UNMASK, INTX, 0, 1))
    assert (pending(on_mask), pending(on_unmask)) == (0, 0)


def test_err_trigger(efds):
    lines = IrqLines()
    (fd,) = arm(lines, efds, ERR)
    assert lines.trigger(ERR)
    assert pending(fd) == 1


# --- through the device --------------------------------------------------------------------


def cfg_write16(dev: GenVgpu, off: int, value: int) -> None:
    dev.region_write(7, off, value.to_bytes(2, "little"))


def test_command_intx_disable_blocks_and_clearing_delivers(efds):
    dev = GenVgpu()
    (fd,) = arm(dev, efds, INTX)
    cfg_write16(dev, 0x04, CMD_INTX_DISABLE)
    dev.set_intx(True)
    assert pending(fd) == 0
    assert dev.config.status & 0x8  # the level shows in status even while disabled
    cfg_write16(dev, 0x04, CMD_INTX_DISABLE | 0x2)  # still disabled
    assert pending(fd) == 0
    cfg_write16(dev, 0x04, 0x2)
    assert pending(fd) == 1
    assert dev.irqs.lines[INTX].masked[0]


def test_command_intx_disable_after_deassert_delivers_nothing(efds):
    dev = GenVgpu()
    (fd,) = arm(dev, efds, INTX)
    cfg_write16(dev, 0x04, CMD_INTX_DISABLE)
    dev.set_intx(True)
    dev.set_intx(False)
    cfg_write16(dev, 0x04, 0)
    assert pending(fd) == 0


def test_raise_interrupt_prefers_msi_when_enabled_and_wired(efds):
    dev = GenVgpu()
    (intx,) = arm(dev, efds, INTX)
    (msi,) = arm(dev, efds, MSI)
    cfg_write16(dev, dev.info.msi_offset + 2, 1)
    assert dev.config.msi_enabled
    dev.raise_interrupt()
    assert (pending(msi), pending(intx)) == (1, 0)
    assert not dev.config.status & 0x8


def test_raise_interrupt_uses_intx_without_msi_enable(efds):
    dev = GenVgpu()
    (intx,) = arm(dev, efds, INTX)
    (msi,) = arm(dev, efds, MSI)
    dev.raise_interrupt()
    assert (pending(msi), pending(intx)) == (0, 1)
    assert dev.config.status & 0x8


def test_msi_enabled_but_not_wired_never_uses_intx_and_holds_the_message(efds):
    """PCI: with MSI enabled the function must not use INTx. QEMU writes the enable before it
    wires the vector; an interrupt raised in between is held and sent once it is wired."""
    dev = GenVgpu()
    (intx,) = arm(dev, efds, INTX)
    cfg_write16(dev, dev.info.msi_offset + 2, 1)
    dev.raise_interrupt()
    dev.raise_interrupt()
    assert pending(intx) == 0
    assert not dev.config.status & 0x8
    assert not dev.irqs.intx_asserted
    (msi,) = arm(dev, efds, MSI)
    assert pending(msi) == 1  # one held message, however many were raised
    dev.raise_interrupt()
    assert (pending(msi), pending(intx)) == (1, 0)


def test_held_msi_is_dropped_when_msi_is_disabled_or_the_device_resets(efds):
    from devmodel.device.device import ResetKind

    dev = GenVgpu()
    cfg_write16(dev, dev.info.msi_offset + 2, 1)
    dev.raise_interrupt()
    cfg_write16(dev, dev.info.msi_offset + 2, 0)
    (msi,) = arm(dev, efds, MSI)
    assert pending(msi) == 0  # MSI is off by the time the vector is wired: nothing sent
    dev.set_irqs(SetIrqs(EVENTFD, TRIGGER, MSI, 0, 1))  # unwire
    cfg_write16(dev, dev.info.msi_offset + 2, 1)
    dev.raise_interrupt()
    dev.reset(ResetKind.DEVICE)
    cfg_write16(dev, dev.info.msi_offset + 2, 1)
    (msi,) = arm(dev, efds, MSI)
    assert pending(msi) == 0  # the reset forgot the held message


def test_device_reset_deasserts_intx(efds):
    from devmodel.device.device import ResetKind

    dev = GenVgpu()
    (fd,) = arm(dev, efds, INTX)
    dev.set_intx(True)
    assert pending(fd) == 1
    dev.reset(ResetKind.DEVICE)
    assert not dev.irqs.intx_asserted and not dev.config.status & 0x8
    dev.set_irqs(SetIrqs(NONE, UNMASK, INTX, 0, 1))
    assert pending(fd) == 0


def test_enabling_msi_lowers_an_asserted_intx(efds):
    """A level asserted before the guest switched to MSI goes down when MSI is enabled: with
    MSI on, the function must not be driving INTx."""
    dev = GenVgpu()
    arm(dev, efds, INTX)
    dev.raise_interrupt()
    assert dev.irqs.intx_asserted and dev.config.status & 0x8
    cfg_write16(dev, dev.info.msi_offset + 2, 1)
    assert not dev.irqs.intx_asserted and not dev.config.status & 0x8
    cfg_write16(dev, dev.info.msi_offset + 2, 1)  # enabled again: nothing changes
    assert not dev.irqs.intx_asserted
