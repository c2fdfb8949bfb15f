"""GEN8 interrupts as a vGPU presents them (contract §4.4, GVT-g's interrupt.c).

The registers are rows of the register table (mmio/irq.py); this is their behaviour. An event
sets its IIR bit only while the IMR bit is clear; IIR is write-1-to-clear. GEN8_MASTER_IRQ's
status bits report (IIR & IER) of each engine's half-bank whether or not the enable (bit 31,
the only bit the guest writes) is set, because i915's handler clears bit 31 first and reads
the status afterwards.

The device's line is "pending" while bit 31 and a status bit are set. An event raises the
interrupt when the line was not up yet, and so does a master write that sets bit 31 while
something is pending (the handler's re-enable); an event while the line is up and the guest has
not begun to serve it (i915's handler clears bit 31 first, which lowers the line) raises
nothing more, as hardware sends one MSI per assertion: the handler reads every IIR bit set by
then. GVT-g injects an MSI per event; the device did too, three per batch (idle-to-active, user
interrupt, active-to-idle; the last two in the same step), each an eventfd write. For INTx the
same calls assert a level; ``lower`` de-asserts it once nothing is pending or bit 31 is
cleared.
Which of MSI and INTx is used is the PCI device's business (Device.raise_interrupt).

The master register's storage holds its whole read value, bit 31 and the status bits: every
change of an IIR or IER reaches :meth:`_evaluate` (or :meth:`fire_bank` without delivery),
which publishes the status there, so that the compiled path serves i915's master read from
storage (its row is ``published``). The display's IIR reads and the master read process the
display's due vblanks first (``before_status``): while a pipe runs, ``read_gate`` is open only
until the next vblank is due (:meth:`status_catch_up`), and the reads after it run here.

The writes of the master register, the IIRs and the GT and PCU banks' IMR/IER run in the
compiled path too (their rows are ``compiled``; accel/dm_accel.c, ``irq_effect``): the store,
then :meth:`_evaluate` without its deliveries. C reads the status map and whether the line is
asserted from :attr:`shared`, which this class keeps current, and leaves to Python every
write after which :meth:`_evaluate` would raise or lower the line (the counters, the trace
event and the delivery stay here).
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from devmodel.device.registers import ReadGate, RegisterBlock

from .engines import ENGINES, EngineInfo
from .mmio.irq import (
    BANK_IER,
    BANK_IIR,
    BANK_IMR,
    BANK_ISR,
    GT_BANK_BASE,
    GT_BANKS,
    MASTER_IRQ_ENABLE,
    QUIET_BANKS,
    gt_bank,
)
from .mmio.regs import GEN8_MASTER_IRQ
from .mmio.row import Hooks
from .trace_events import IRQ_EVENT, IRQ_RAISE

__all__ = [
    "GtEvent",
    "Interrupts",
    "InterruptCounters",
    "MASTER_IRQ_ENABLE",
    "GT_BANK_BASE",
    "GT_BANKS",
    "BANK_ISR",
    "BANK_IMR",
    "BANK_IIR",
    "BANK_IER",
    "gt_bank",
    "QUIET_BANKS",
]

_ENGINE_BITS = 0xFFFF  # an engine's 16 bits within its bank
_MASTER = GEN8_MASTER_IRQ >> 2

# The write behaviours the compiled path runs as well (Hooks.effect; Bar0Accel hands C the
# numbers): the line re-evaluated (_reevaluate), and the master's write (an edge when it sets
# the enable).
EFFECT_REEVALUATE = 1
EFFECT_MASTER = 2
# struct dm_irq's shared words: [0] the line is asserted, [1] the banks in the status map,
# then per bank its IIR dword, IER dword, bits and master status bit.
SHARED_ASSERTED, SHARED_BANKS, SHARED_MAP = 0, 1, 2
MAX_STATUS_BANKS = 16


class GtEvent(enum.IntFlag):
    """Per-engine event bits within the engine's 16 bits of its GT bank."""

    USER = 1 << 0  # MI_USER_INTERRUPT
    NOTIFY = 1 << 4  # PIPE_CONTROL notify (RCS) / MI_FLUSH_DW notify (the others)
    CONTEXT_SWITCH = 1 << 8  # a CSB entry was written


@dataclass
class InterruptCounters:
    events: int = 0  # engine events that reached an IIR
    masked_events: int = 0  # events dropped by IMR
    raised: int = 0  # calls of the raise callable
    lowered: int = 0


class Interrupts(RegisterBlock):
    def __init__(self, raise_irq: Callable[[], None], lower_irq: Callable[[], None]) -> None:
        self._raise = raise_irq
        self._lower = lower_irq
        # What the compiled path reads (SHARED_*): fixed in size, C holds a pointer into it.
        self.shared = array("I", bytes(4 * (SHARED_MAP + 4 * MAX_STATUS_BANKS)))
        self._asserted = False
        self.counters = InterruptCounters()
        # The display's listeners (contract §6.13): told before the master register or a
        # display bank's IIR is read (its due vblanks are processed first), and after a
        # display bank's IMR or IER changed (its frame timer runs only while someone waits).
        self.before_status: Callable[[], None] | None = None
        self.on_mask_change: Callable[[int], None] | None = None
        # Open while before_status has nothing to do: the published reads are storage's.
        self.read_gate = ReadGate()
        # Per engine: IIR and IER dword indexes, the engine's bits, its master status bit.
        self._status_map = [
            (
                (gt_bank(e.irq_bank) + BANK_IIR) >> 2,
                (gt_bank(e.irq_bank) + BANK_IER) >> 2,
                _ENGINE_BITS << e.irq_shift,
                1 << e.master_bit,
            )
            for e in ENGINES
        ]
        for k, entry in enumerate(self._status_map):
            self._share_bank(k, entry)

    @property
    def _asserted(self) -> bool:
        return bool(self.shared[SHARED_ASSERTED])

    @_asserted.setter
    def _asserted(self, asserted: bool) -> None:
        self.shared[SHARED_ASSERTED] = asserted

    def _share_bank(self, k: int, entry: tuple[int, int, int, int]) -> None:
        if k >= MAX_STATUS_BANKS:
            raise ValueError(f"more than {MAX_STATUS_BANKS} banks report through the master register")
        at = SHARED_MAP + 4 * k
        self.shared[at : at + 4] = array("I", entry)
        self.shared[SHARED_BANKS] = k + 1

    # --- the table's handlers (mmio/irq.py) -------------------------------------------------

    def hooks(self) -> dict[str, Hooks]:
        return {
            "master_irq": Hooks(
                read=self._read_master, write=self._write_master, gate=self.read_gate, effect=EFFECT_MASTER
            ),
            "irq_reevaluate": Hooks(write=self._reevaluate, effect=EFFECT_REEVALUATE),
            "irq_status_iir": Hooks(
                read=self._read_iir, write=self._reevaluate, gate=self.read_gate, effect=EFFECT_REEVALUATE
            ),
            "irq_mask": Hooks(write=self._write_mask),
        }

    def reset(self) -> None:
        """After the register file's reset (the PCI device lowers INTx itself)."""
        self._asserted = False
        self._publish()

    def status_catch_up(self, active: bool, until: float | None = None) -> None:
        """Whether ``before_status`` may have work to do on a status read (the display's frame
        clock runs): the master and display IIR reads then run it, else they read storage.
        ``until``: it has none before that instant (time.monotonic's), when the reads read
        storage too (the display tells again after its next catch-up)."""
        if not active or until is not None:
            self._publish()  # what the last catch-up set, for the reads C serves from now
        if active and until is not None:
            self.read_gate.open_until(until)
        else:
            self.read_gate.set_open(not active)

    def _publish(self) -> int:
        """The master register's status bits into its storage, after any change of them;
        returns its value."""
        d = self.rf.dwords
        value = d[_MASTER] & MASTER_IRQ_ENABLE | self.status()
        d[_MASTER] = value
        return value

    # --- state -----------------------------------------------------------------------------

    def status(self) -> int:
        """The master register's status bits: engines whose (IIR & IER) is non-zero."""
        d = self.rf.dwords
        bits = 0
        for iir, ier, mask, bit in self._status_map:
            if d[iir] & d[ier] & mask:
                bits |= bit
        return bits

    @property
    def enabled(self) -> bool:
        return bool(self.rf.get(GEN8_MASTER_IRQ) & MASTER_IRQ_ENABLE)

    @property
    def pending(self) -> bool:
        return self.enabled and self.status() != 0

    # --- events ----------------------------------------------------------------------------

    def fire(self, engine: EngineInfo, events: int) -> None:
        """Engine events (GtEvent bits) happened: set IIR where IMR lets them through."""
        rf = self.rf
        bank = gt_bank(engine.irq_bank)
        bits = (events & _ENGINE_BITS) << engine.irq_shift
        allowed = bits & ~rf.get(bank + BANK_IMR)
        if allowed != bits:
            self.counters.masked_events += 1
        if not allowed:
            return
        self.counters.events += 1
        rf.set(bank + BANK_IIR, rf.get(bank + BANK_IIR) | allowed)
        if IRQ_EVENT.on:
            IRQ_EVENT(engine.name, allowed, rf.get(bank + BANK_IIR))
        self._evaluate(edge=False)

    def add_status_bank(self, base: int, master_bit: int) -> None:
        """A bank whose (IIR & IER) shows as ``master_bit`` of the master register."""
        entry = ((base + BANK_IIR) >> 2, (base + BANK_IER) >> 2, 0xFFFFFFFF, 1 << master_bit)
        self._share_bank(len(self._status_map), entry)
        self._status_map.append(entry)
        self._publish()

    def fire_bank(self, base: int, bits: int, deliver: bool = True) -> None:
        """Events of a bank other than the engines': set IIR where IMR lets them through.
        ``deliver=False`` leaves raising the line to a later :meth:`deliver` (an event found
        while a read is answered is raised after the reply)."""
        rf = self.rf
        allowed = bits & ~rf.get(base + BANK_IMR)
        if allowed != bits:
            self.counters.masked_events += 1
        if not allowed:
            return
        self.counters.events += 1
        rf.set(base + BANK_IIR, rf.get(base + BANK_IIR) | allowed)
        if deliver:
            self._evaluate(edge=True)
        else:
            self._publish()

    def deliver(self) -> None:
        """Raise the line for events set with ``deliver=False``, if still pending."""
        self._evaluate(edge=True)

    def _evaluate(self, edge: bool) -> None:
        master = self._publish()
        pending = bool(master & MASTER_IRQ_ENABLE) and bool(master & ~MASTER_IRQ_ENABLE)
        if pending and (edge or not self._asserted):
            self.counters.raised += 1
            if IRQ_RAISE.on:
                IRQ_RAISE(master)
            self._raise()
        elif not pending and self._asserted:
            self.counters.lowered += 1
            self._lower()
        self._asserted = pending

    # --- hooks -----------------------------------------------------------------------------

    def _read_master(self, offset: int) -> int:
        if self.before_status is not None:
            self.before_status()
        return self.rf.get(offset) | self.status()

    def _read_iir(self, offset: int) -> int:
        if self.before_status is not None:
            self.before_status()
        return self.rf.get(offset)

    def _write_mask(self, offset: int, old: int, new: int) -> None:
        self._evaluate(edge=False)
        if self.on_mask_change is not None and old != new:
            self.on_mask_change(offset & ~0xF)

    def _write_master(self, offset: int, old: int, new: int) -> None:
        # Setting the enable re-raises whatever is still pending (GVT's check_pending_irq).
        self._evaluate(edge=bool(new & MASTER_IRQ_ENABLE))

    def _reevaluate(self, offset: int, old: int, new: int) -> None:
        self._evaluate(edge=False)
