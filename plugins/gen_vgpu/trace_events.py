"""The GEN vGPU's trace events (devmodel.trace), declared once; the modules that emit them
import them from here."""

from __future__ import annotations

from devmodel.trace import event

__all__ = [
    "CSB",
    "EXECLIST_COMPLETE",
    "EXECLIST_HANG",
    "EXECLIST_LITE_RESTORE",
    "EXECLIST_PREEMPT_REQUEST",
    "EXECLIST_REFUSED",
    "EXECLIST_SUBMIT",
    "GGTT_WRITE",
    "IRQ_EVENT",
    "IRQ_RAISE",
    "MMIO_READ",
    "MMIO_WRITE",
    "PPGTT_CREATE",
    "PPGTT_DESTROY",
    "SCAN_REJECT",
]

MMIO_READ = event("mmio_read", "%s %#x = %#x", "a guest read of a BAR0 register: name from the register table")
MMIO_WRITE = event("mmio_write", "%s %#x = %#x", "a guest write of a BAR0 register: name from the register table")
GGTT_WRITE = event("ggtt_write", "index %#x%s = %#x", "a guest write of a GGTT entry (.lo/.hi: one dword of it)")
EXECLIST_SUBMIT = event(
    "execlist_submit",
    "%s ctx %#x lrca %#x head %#x tail %#x%s",
    "an ELSP submission that starts element 0 on an idle engine",
)
EXECLIST_LITE_RESTORE = event(
    "execlist_lite_restore", "%s ctx %#x tail %#x", "the running context resubmitted with a new tail"
)
EXECLIST_PREEMPT_REQUEST = event(
    "execlist_preempt_request",
    "%s ctx %#x while ctx %#x runs",
    "a submission of another context while one runs: served at the end of its segment",
)
EXECLIST_REFUSED = event("execlist_refused", "%s %s", "an ELSP submission refused (nothing changes)")
EXECLIST_COMPLETE = event("execlist_complete", "%s ctx %#x tail %#x", "a workload (ring segment) completed")
EXECLIST_HANG = event("execlist_hang", "%s ctx %#x: %s", "a workload hung: the context stays current until GDRST")
CSB = event("csb", "%s slot %d status %#x ctx %#x", "a context status buffer entry written")
IRQ_EVENT = event("irq_event", "%s bits %#x iir %#x", "engine events that reached a GT IIR")
IRQ_RAISE = event("irq_raise", "master %#x", "the device's interrupt raised (an MSI or INTx asserted)")
PPGTT_CREATE = event("ppgtt_create", "%s roots %s", "a PVINFO PPGTT create notification")
PPGTT_DESTROY = event("ppgtt_destroy", "%s roots %s", "a PVINFO PPGTT destroy notification")
SCAN_REJECT = event("scan_reject", "%s: %s", "the command scanner refused a workload's command")
