"""GEN8 interrupts (contract §4.4): IIR/IMR/IER per bank, write-1-to-clear IIR, the master
register's status bits with the enable clear, raising and re-raising, and delivery as MSI or
INTx through a real PCI device and its eventfds."""

from __future__ import annotations

import os

import pytest

from devmodel.device.irq import SetIrqs
from devmodel.device.pci_config import CMD_INTX_DISABLE, MSI_FLAGS_ENABLE
from devmodel.device.registers import RegisterFile
from devmodel.vfio_user.constants import IrqIndex, IrqSetFlags
from gen_vgpu import GenVgpu
from gen_vgpu.engines import ENGINES, EngineId, engine_by_id
from gen_vgpu.interrupts import (
    BANK_IER,
    BANK_IIR,
    BANK_IMR,
    BANK_ISR,
    GT_BANKS,
    QUIET_BANKS,
    GtEvent,
    Interrupts,
    gt_bank,
)
from gen_vgpu.mmio import irq as irq_rows
from gen_vgpu.mmio import regs
from gen_vgpu.mmio.table import RegisterTable, populate
from gen_vgpu.platform import Platform

from .gt_rig import ENABLE, MASTER, Rig

RCS = engine_by_id(EngineId.RCS)
BCS = engine_by_id(EngineId.BCS)
VCS0 = engine_by_id(EngineId.VCS0)
VECS0 = engine_by_id(EngineId.VECS0)
CS = GtEvent.CONTEXT_SWITCH


@pytest.fixture
def rig() -> Rig:
    return Rig()


ALL_BANKS = [gt_bank(n) for n in range(GT_BANKS)] + list(QUIET_BANKS.values())


@pytest.mark.parametrize("bank", ALL_BANKS, ids=hex)
def test_bank_power_on_and_write_semantics(rig: Rig, bank: int):
    assert rig.r(bank + BANK_IIR) == 0  # i915's gen3_assert_iir_is_zero
    assert rig.r(bank + BANK_IMR) == 0xFFFFFFFF and rig.r(bank + BANK_IER) == 0
    rig.w(bank + BANK_IIR, 0xFFFFFFFF)  # i915 clears IIR twice at reset: stays 0
    assert rig.r(bank + BANK_IIR) == 0
    rig.w(bank + BANK_ISR, 0x1234)
    assert rig.r(bank + BANK_ISR) == 0
    rig.w(bank + BANK_IMR, 0xFEFE)
    rig.w(bank + BANK_IER, 0x0101)
    assert rig.r(bank + BANK_IMR) == 0xFEFE and rig.r(bank + BANK_IER) == 0x0101


def test_event_sets_iir_only_when_unmasked(rig: Rig):
    bank = gt_bank(0)
    rig.irq.fire(RCS, CS)
    assert rig.r(bank + BANK_IIR) == 0  # IMR all set at power-on
    rig.w(bank + BANK_IMR, ~(GtEvent.USER << BCS.irq_shift) & 0xFFFFFFFF)
    rig.irq.fire(BCS, GtEvent.USER | CS)
    assert rig.r(bank + BANK_IIR) == GtEvent.USER << 16  # the masked bit is lost, not held
    rig.w(bank + BANK_IMR, 0)
    assert rig.r(bank + BANK_IIR) == GtEvent.USER << 16


def test_iir_is_write_one_to_clear(rig: Rig):
    bank = gt_bank(0)
    rig.w(bank + BANK_IMR, 0)
    rig.irq.fire(RCS, GtEvent.USER | GtEvent.NOTIFY | CS)
    assert rig.r(bank + BANK_IIR) == 0x111
    rig.w(bank + BANK_IIR, 0x010)
    assert rig.r(bank + BANK_IIR) == 0x101
    rig.w(bank + BANK_IIR, 0)
    assert rig.r(bank + BANK_IIR) == 0x101
    rig.w(bank + BANK_IIR, 0x101)
    assert rig.r(bank + BANK_IIR) == 0


@pytest.mark.parametrize("e", ENGINES, ids=lambda e: e.name)
def test_master_status_reads_iir_and_ier_with_the_enable_clear(rig: Rig, e):
    bank = gt_bank(e.irq_bank)
    rig.w(bank + BANK_IMR, 0)
    rig.irq.fire(e, GtEvent.USER)
    assert rig.r(MASTER) == 0  # IIR set but IER clear
    rig.w(bank + BANK_IER, GtEvent.USER << e.irq_shift)
    assert rig.r(MASTER) == 1 << e.master_bit  # enable clear, status still readable
    assert rig.raised == 0
    rig.w(bank + BANK_IIR, GtEvent.USER << e.irq_shift)
    assert rig.r(MASTER) == 0


def test_master_status_bits_are_not_guest_writable(rig: Rig):
    rig.w(MASTER, 0xFFFFFFFF)
    assert rig.r(MASTER) == ENABLE
    rig.w(MASTER, 0)
    assert rig.r(MASTER) == 0


def test_both_halves_of_bank_0(rig: Rig):
    bank = gt_bank(0)
    rig.w(bank + BANK_IMR, 0)
    rig.w(bank + BANK_IER, 0xFFFFFFFF)
    rig.irq.fire(BCS, CS)
    assert rig.r(MASTER) == 1 << BCS.master_bit
    rig.irq.fire(RCS, CS)
    assert rig.r(MASTER) == 1 << RCS.master_bit | 1 << BCS.master_bit


def unmask_all(rig: Rig) -> None:
    for e in ENGINES:
        rig.unmask_engine_irqs(e)


def test_raise_needs_the_enable_and_an_enabled_iir_bit(rig: Rig):
    unmask_all(rig)
    rig.irq.fire(RCS, CS)
    assert rig.raised == 0  # enable clear
    rig.w(MASTER, ENABLE)
    assert rig.raised == 1  # pending when the enable is set: raised now
    rig.irq.fire(VECS0, GtEvent.USER)
    assert rig.raised == 1  # the line is up and not yet served: one MSI for both events
    rig.w(MASTER, 0)  # the handler begins
    rig.clear_iir(RCS)
    rig.clear_iir(VECS0)
    rig.w(MASTER, ENABLE)
    rig.irq.fire(VECS0, GtEvent.USER)
    assert rig.raised == 2  # served: the next event raises again


def test_i915_handler_sequence_re_raises_what_is_still_pending(rig: Rig):
    """gen8_irq_handler: master := 0, read master, clear IIRs, master := enable."""
    unmask_all(rig)
    rig.w(MASTER, ENABLE)
    rig.irq.fire(RCS, CS)
    assert rig.raised == 1
    rig.w(MASTER, 0)
    assert rig.lowered == 1  # the level drops with the enable
    assert rig.r(MASTER) == 1 << RCS.master_bit
    rig.irq.fire(VCS0, GtEvent.USER)  # arrives inside the handler: no raise yet
    assert rig.raised == 1
    rig.clear_iir(RCS)
    rig.w(MASTER, ENABLE)
    assert rig.raised == 2  # VCS0's event is still pending: raised again
    rig.clear_iir(VCS0)
    assert rig.lowered == 2  # nothing pending any more
    rig.w(MASTER, 0)
    rig.w(MASTER, ENABLE)
    assert rig.raised == 2 and rig.lowered == 2


def test_clearing_ier_lowers_and_setting_it_raises(rig: Rig):
    unmask_all(rig)
    rig.w(MASTER, ENABLE)
    rig.irq.fire(BCS, GtEvent.USER)
    bank = gt_bank(0)
    rig.w(bank + BANK_IER, 0)
    assert rig.lowered == 1
    rig.w(bank + BANK_IER, 0xFFFFFFFF)
    assert rig.raised == 2


@pytest.mark.parametrize("name,base", QUIET_BANKS.items())
def test_quiet_banks_never_reach_the_master(rig: Rig, name: str, base: int):
    rig.w(MASTER, ENABLE)
    rig.w(base + BANK_IMR, 0)
    rig.w(base + BANK_IER, 0xFFFFFFFF)
    rig.w(base + BANK_IIR, 0xFFFFFFFF)
    assert rig.r(base + BANK_IIR) == 0 and rig.r(MASTER) == ENABLE and rig.raised == 0


def test_register_file_reset_puts_the_banks_back(rig: Rig):
    unmask_all(rig)
    rig.w(MASTER, ENABLE)
    rig.irq.fire(RCS, CS)
    rig.rf.reset()
    rig.irq.reset()
    assert rig.r(MASTER) == 0 and rig.r(gt_bank(0) + BANK_IIR) == 0
    assert rig.r(gt_bank(0) + BANK_IMR) == 0xFFFFFFFF


# --- delivery through the PCI device: MSI when enabled, INTx otherwise ---------------------


class Delivery:
    """A GEN vGPU's PCI side with eventfds wired as QEMU would, and an interrupt block that
    raises through it."""

    def __init__(self) -> None:
        self.dev = GenVgpu()
        self.rf = RegisterFile(regs.MMIO_SIZE)
        self.irq = Interrupts(self.dev.raise_interrupt, lambda: self.dev.set_intx(False))
        populate(self.rf, RegisterTable(Platform.BDW, irq_rows.ROWS), [self.irq.hooks()])
        self.irq.attach(self.rf)
        self.fds: list[int] = []
        self.intx = self._arm(IrqIndex.INTX)
        self.msi = self._arm(IrqIndex.MSI)
        bank = gt_bank(RCS.irq_bank)
        self.rf.write32(bank + BANK_IMR, 0)
        self.rf.write32(bank + BANK_IER, 0xFFFF)

    def _arm(self, index: int) -> int:
        mine = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.fds.append(mine)
        req = SetIrqs(IrqSetFlags.DATA_EVENTFD, IrqSetFlags.ACTION_TRIGGER, index, 0, 1, b"", (os.dup(mine),))
        self.dev.set_irqs(req)
        return mine

    def enable_msi(self) -> None:
        cap = self.dev.info.msi_offset
        self.dev.config.write(cap + 2, bytes([MSI_FLAGS_ENABLE, 0]))

    def unmask_intx(self) -> None:
        self.dev.set_irqs(SetIrqs(IrqSetFlags.DATA_NONE, IrqSetFlags.ACTION_UNMASK, IrqIndex.INTX, 0, 1))

    def status_bit(self) -> bool:
        return bool(self.dev.config.status & 0x8)

    def close(self) -> None:
        self.dev.irqs.close_all()
        for fd in self.fds:
            os.close(fd)


def signals(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


@pytest.fixture
def delivery():
    d = Delivery()
    yield d
    d.close()


def test_msi_one_per_assertion_and_on_re_enable(delivery: Delivery):
    d = delivery
    d.enable_msi()
    d.rf.write32(MASTER, ENABLE)
    d.irq.fire(RCS, CS)
    d.irq.fire(RCS, GtEvent.USER)  # the line is still up, unserved: no second MSI
    assert signals(d.msi) == 1 and signals(d.intx) == 0
    d.rf.write32(MASTER, 0)
    d.rf.write32(MASTER, ENABLE)  # still pending
    assert signals(d.msi) == 1
    d.rf.write32(gt_bank(0) + BANK_IIR, 0xFFFF)
    d.rf.write32(MASTER, 0)
    d.rf.write32(MASTER, ENABLE)
    assert signals(d.msi) == 0 and signals(d.intx) == 0 and not d.status_bit()


def test_intx_is_a_level_that_follows_pending(delivery: Delivery):
    d = delivery
    d.rf.write32(MASTER, ENABLE)
    d.irq.fire(RCS, CS)
    assert signals(d.intx) == 1 and d.status_bit()
    d.irq.fire(RCS, GtEvent.USER)  # line already up and automasked: no second signal
    assert signals(d.intx) == 0
    d.rf.write32(MASTER, 0)  # the handler's first write drops the level
    assert not d.status_bit()
    d.rf.write32(gt_bank(0) + BANK_IIR, CS)  # USER still pending
    d.unmask_intx()  # QEMU's EOI: the level is down, nothing is signalled
    assert signals(d.intx) == 0
    d.rf.write32(MASTER, ENABLE)  # re-enabled with USER pending: up again
    assert signals(d.intx) == 1 and d.status_bit()
    d.rf.write32(gt_bank(0) + BANK_IIR, 0xFFFF)
    assert not d.status_bit()
    d.unmask_intx()
    assert signals(d.intx) == 0


def test_intx_respects_the_command_register_mask(delivery: Delivery):
    d = delivery
    cmd = int.from_bytes(d.dev.config.read(4, 2), "little")
    d.dev.config.write(4, (cmd | CMD_INTX_DISABLE).to_bytes(2, "little"))
    d.rf.write32(MASTER, ENABLE)
    d.irq.fire(RCS, CS)
    assert signals(d.intx) == 0 and d.status_bit()  # status reports, the line is masked
    d.dev.config.write(4, cmd.to_bytes(2, "little"))
    assert signals(d.intx) == 1
