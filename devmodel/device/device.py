"""The device base: regions, config space, interrupt lines, the DMA map, its work queue,
reset and quiesce.

The transport calls these methods; a device plugin subclasses :class:`Device` and fills in
its regions. Nothing here knows about sockets: device work goes to ``self.tasks`` (run by the
transport's loop) and DMA through messages to ``self.message_dma`` (set by the transport).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..accel import Accel, RegionAccel
from ..errors import OutOfRange
from ..vfio_user.constants import IrqIndex
from .dma import DmaMap
from .frames import DEFAULT_MAX_DEVICE_PAGES
from .irq import IrqLines, SetIrqs
from .message_dma import MessageDma
from .pci_config import PciConfigSpace
from .region import Region, RegionFlags
from .tasks import TaskQueue

__all__ = ["CONFIG_REGION", "NUM_REGIONS", "ConfigRegionHandler", "Device", "ResetKind"]

log = logging.getLogger(__name__)

NUM_REGIONS = 9  # BAR0-5, ROM, config, VGA
CONFIG_REGION = 7


class ResetKind(enum.Enum):
    DEVICE = "device"  # the DEVICE_RESET command
    LOST_CONN = "lost-connection"


class ConfigRegionHandler:
    def __init__(self, config: PciConfigSpace, on_msi_enabled: Callable[[], None] | None = None) -> None:
        self.config = config
        self.on_msi_enabled = on_msi_enabled

    def read(self, offset: int, count: int) -> bytes:
        return self.config.read(offset, count)

    def write(self, offset: int, data: bytes) -> None:
        was = self.config.msi_enabled
        self.config.write(offset, data)
        if self.on_msi_enabled is not None and self.config.msi_enabled and not was:
            self.on_msi_enabled()


class Device:
    """A PCI device served over vfio-user."""

    name = "device"
    reset_supported = True

    def __init__(
        self,
        config: PciConfigSpace,
        msi_count: int = 1,
        msix_count: int = 0,
        max_device_pages: int = DEFAULT_MAX_DEVICE_PAGES,
    ) -> None:
        self.config = config
        self.dma = DmaMap(max_device_pages=max_device_pages)
        self.irqs = IrqLines(msi_count=msi_count, msix_count=msix_count)
        self.irqs.intx_blocked = lambda: self.config.intx_disabled
        self.config.on_command = self._on_command
        self.regions: list[Region] = [Region(i, 0) for i in range(NUM_REGIONS)]
        self.regions[CONFIG_REGION] = Region(
            CONFIG_REGION, config.size, ConfigRegionHandler(config, self._on_msi_enabled)
        )
        # Work the transport's loop runs between messages (engine steps, timers).
        self.tasks = TaskQueue()
        # DMA_READ/DMA_WRITE through the attached client, for windows without an fd.
        self.message_dma: MessageDma | None = None
        self._msi_pending = False  # raised with MSI enabled before QEMU wired the vector

    # --- regions ---------------------------------------------------------------------------

    def set_region(self, region: Region) -> None:
        self.regions[region.index] = region

    def region(self, index: int) -> Region:
        if not 0 <= index < len(self.regions):
            raise OutOfRange("no such region", region=index)
        return self.regions[index]

    def region_read(self, index: int, offset: int, count: int) -> bytes:
        region = self.region(index)
        region.check(offset, count)
        if not count:
            return b""
        if region.handler is None or not region.flags & RegionFlags.READ:
            raise OutOfRange("region is not readable", region=index)
        data = region.handler.read(offset, count)
        assert len(data) == count, (index, offset, count, len(data))
        return data

    def region_write(self, index: int, offset: int, data: bytes) -> None:
        region = self.check_write(index, offset, len(data))
        if data:
            region.handler.write(offset, data)  # type: ignore[union-attr]  # checked

    def region_write_multi(self, writes: list[tuple[int, int, bytes]]) -> None:
        """A REGION_WRITE_MULTI batch, already checked whole; plugins may take a fast path."""
        for offset, index, data in writes:
            self.region_write(index, offset, data)

    def client_attached(self) -> None:
        """A client connected and nothing of it runs yet: the moment for one-off work a step or
        a request must not meet (loading the parts a guest may use), not needed before."""

    def region_accel(self, accel: Accel) -> RegionAccel | None:
        """The region the compiled accelerator may serve, bound to it, or None (the Python
        path serves every region). A plugin binds only what C does exactly as its Python
        handler does."""
        return None

    def check_write(self, index: int, offset: int, count: int) -> Region:
        """Validation alone, so a batch can be checked whole before any of it acts. A write of
        no bytes succeeds wherever it is in bounds."""
        region = self.region(index)
        region.check(offset, count)
        if count and (region.handler is None or not region.flags & RegionFlags.WRITE):
            raise OutOfRange("region is not writable", region=index)
        return region

    # --- interrupts ------------------------------------------------------------------------

    def irq_info(self, index: int) -> tuple[int, int]:
        return self.irqs.info(index)

    def set_irqs(self, req: SetIrqs) -> None:
        self.irqs.set_irqs(req)
        if self._msi_pending and self.config.msi_enabled and self.irqs.vector_wired(IrqIndex.MSI):
            self._msi_pending = False
            self.irqs.trigger(IrqIndex.MSI)

    def raise_interrupt(self) -> None:
        """Deliver the device's interrupt: MSI when the guest enabled it, INTx otherwise.

        A function with MSI enabled must not use INTx (PCI), so while QEMU has not wired the
        vector yet (it writes the enable to config space before its SET_IRQS) the message is
        held pending and sent when the vector is wired, as long as MSI is still enabled then.
        """
        if self.config.msi_enabled:
            if not self.irqs.trigger(IrqIndex.MSI):
                self._msi_pending = True
        else:
            self.set_intx(True)

    def set_intx(self, asserted: bool) -> None:
        self.config.set_interrupt_status(asserted)
        self.irqs.set_intx(asserted)

    def _on_msi_enabled(self) -> None:
        # A function with MSI enabled must not use INTx: a level asserted before the guest
        # switched goes down (the interrupt is not lost: the device's own status still says it
        # is pending, and the next event is a message).
        if self.irqs.intx_asserted:
            self.set_intx(False)

    def _on_command(self, old: int, new: int) -> None:
        # Clearing command bit 10 lets a still-asserted INTx through.
        self.irqs.update_intx()
        self.on_command_change(old, new)

    def on_command_change(self, old: int, new: int) -> None:
        """Hook for plugins (bus master, memory decode)."""

    # --- lifecycle -------------------------------------------------------------------------

    def quiesce(self) -> None:
        """Stop every use of guest memory before the DMA map changes, the device resets or the
        client goes: cancel (never finish) every message transfer in flight and every task
        and timer that declared it uses guest memory. Cancelling is bounded and the same on
        every machine; finishing could wait on the client, which waits for our reply
        (docs/architecture.md, "Quiesce")."""
        transfers = self.message_dma.cancel_all() if self.message_dma is not None else 0
        work = self.tasks.quiesce()
        if transfers or work:
            log.debug("quiesce: cancelled %d message transfers, %d tasks and timers", transfers, work)

    def reset(self, kind: ResetKind) -> None:
        """Power-on state; every task, timer and message transfer is cancelled."""
        if self.message_dma is not None:
            self.message_dma.cancel_all()
        self.tasks.cancel_all()
        self.config.reset()
        self.set_intx(False)
        self._msi_pending = False

    def on_disconnect(self) -> None:
        """The lost-connection sequence (libvfio-user's order): quiesce, unmap every window,
        reset, close every eventfd. Device state otherwise stays for the next client."""
        self.quiesce()
        self.dma.remove_all()
        self.reset(ResetKind.LOST_CONN)
        self.irqs.close_all()

    # --- inspection ------------------------------------------------------------------------

    def inspect(self, what: str, args: list[str]) -> dict[str, Any]:
        """Read-only answers for the inspection socket; plugins add their own topics."""
        if what == "stats":
            tasks = {"live": len(self.tasks), **vars(self.tasks.stats)}
            held = {"dma_windows": len(self.dma), "device_pages": self.dma.device_pages, **self.held()}
            return {"device": self.name, "lines": list(self.describe()), "tasks": tasks, "held": held}
        raise LookupError(f"unknown topic {what!r}")

    def held(self) -> dict[str, int]:
        """Counts of what the device holds beyond windows and pages (plugins add theirs): a
        client's going must bring them back to what an idle device holds."""
        return {}

    def describe(self) -> Iterable[str]:
        yield f"{self.name}: {len(self.dma)} DMA windows"
        t = self.tasks.stats
        yield (
            f"tasks: {len(self.tasks)} live, {t.spawned} spawned, {t.steps} steps, {t.cancelled} cancelled, "
            f"{t.failed} failed, longest step {t.longest_step * 1e3:.2f} ms, {t.late_steps} late"
        )
