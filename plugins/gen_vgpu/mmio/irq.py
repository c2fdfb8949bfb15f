"""The interrupt registers' rows (contract §4.4): the master register and the banks.

Every bank has ISR/IMR/IIR/IER at +0/+4/+8/+0xC. Their behaviour is the interrupts'
(``interrupts.py``), which supplies the handlers named here.
"""

from __future__ import annotations

from .regs import GEN8_MASTER_IRQ
from .row import RO, Row

__all__ = [
    "BANK_IER",
    "BANK_IIR",
    "BANK_IMR",
    "BANK_ISR",
    "DISPLAY_BANKS",
    "GT_BANKS",
    "GT_BANK_BASE",
    "MASTER_IRQ_ENABLE",
    "QUIET_BANKS",
    "ROWS",
    "gt_bank",
]

MASTER_IRQ_ENABLE = 1 << 31

BANK_ISR, BANK_IMR, BANK_IIR, BANK_IER = 0x0, 0x4, 0x8, 0xC
GT_BANK_BASE = 0x44300
GT_BANKS = 4
_BANK_STRIDE = 0x10

# The display engine's and the south (PCH) banks: they exist for i915's reset/postinstall
# paths and never fire on a headless vGPU; with the display (contract §6.13) they fire and
# report through the master register. Their IIR reads process the display's due events first
# (``irq_status_iir``) and a change of IMR or IER may start or stop its frame timer
# (``irq_mask``): the interrupts supply both handlers, the display listens through them.
# Such an IIR read is published (its storage is the value while no pipe runs, when there is
# nothing to process first); the banks' other registers read storage (write handlers only).
# The master register's, the IIRs' and the GT and PCU banks' IMR/IER writes are ``compiled``:
# their behaviour (the register's store, then the interrupt line's re-evaluation, which
# publishes the master's status bits) runs in C too, which leaves to Python a write that
# raises or lowers the line; the display banks' IMR/IER writes tell the display, in Python.
DISPLAY_BANKS: dict[str, int] = {
    "DE_PIPE_A": 0x44400,
    "DE_PIPE_B": 0x44410,
    "DE_PIPE_C": 0x44420,
    "DE_PORT": 0x44440,
    "DE_MISC": 0x44460,
    "SDE": 0xC4000,
}
# Banks that exist for i915's reset/postinstall paths and never fire.
QUIET_BANKS: dict[str, int] = {**DISPLAY_BANKS, "PCU": 0x444E0}


def gt_bank(n: int) -> int:
    return GT_BANK_BASE + _BANK_STRIDE * n


def _bank(name: str, base: int, count: int = 1, display: bool = False) -> tuple[Row, ...]:
    stride = _BANK_STRIDE
    mask = "irq_mask" if display else "irq_reevaluate"
    iir = "irq_status_iir" if display else "irq_reevaluate"
    return (
        Row(f"{name}_ISR", base + BANK_ISR, count=count, stride=stride, rw_mask=RO),
        # Power-on: everything masked, nothing enabled; i915 programs both.
        Row(
            f"{name}_IMR",
            base + BANK_IMR,
            count=count,
            stride=stride,
            reset=0xFFFFFFFF,
            handler=mask,
            compiled=not display,
        ),
        Row(
            f"{name}_IIR",
            base + BANK_IIR,
            count=count,
            stride=stride,
            w1c=0xFFFFFFFF,
            handler=iir,
            published=display,
            compiled=True,
        ),
        Row(f"{name}_IER", base + BANK_IER, count=count, stride=stride, handler=mask, compiled=not display),
    )


ROWS: tuple[Row, ...] = (
    Row(
        "GEN8_MASTER_IRQ",
        GEN8_MASTER_IRQ,
        rw_mask=MASTER_IRQ_ENABLE,
        handler="master_irq",
        published=True,
        compiled=True,
        note="status bits: (IIR & IER) per half-bank, whatever bit 31 says",
    ),
    *_bank("GT{i}", GT_BANK_BASE, GT_BANKS),
    *(row for name, base in QUIET_BANKS.items() for row in _bank(name, base, display=name in DISPLAY_BANKS)),
)
