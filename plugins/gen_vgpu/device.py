"""The GEN vGPU as a PCI device: config space, BAR0, the aperture, interrupts."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from devmodel.accel import Accel, RegionAccel
from devmodel.device.device import Device, ResetKind
from devmodel.device.frames import DEFAULT_MAX_DEVICE_PAGES
from devmodel.device.pci_config import Bar, BarKind, PciConfigSpace
from devmodel.device.region import Region
from devmodel.device.registers import RegisterFile

from .aperture import Aperture
from .bar0 import Bar0, TracedBar0, traced
from .bar0_accel import Bar0Accel
from .cmd.scan_accel import ScanAccel, has_scan_accel
from .display import DisplayOptions, DisplayParts, build_display
from .display.control import inspect_display, page_reader
from .display.decode_fast import FastDecode
from .engine.blit_accel import BlitAccel, has_blit_accel
from .engine.execlist import Engines
from .engine.run import Runner, Watchdog
from .graphics_memory import DEFAULT_APERTURE_SIZE, DEFAULT_HIDDEN_SIZE, GraphicsMemory
from .gtt.ggtt import GGTT_ENTRY_COUNT, Ggtt
from .gtt.mm import DEFAULT_MAX_SHADOW_MMS, Ppgtt, RootKind, parse_roots
from .gtt.shadow import DEFAULT_MAX_SHADOW_PAGES
from .gtt.space import GgttSpace
from .gtt.walker import ShadowWalker
from .interrupts import Interrupts
from .mmio import regs
from .mmio.gt import GtRegisters
from .mmio.pvinfo import pvinfo_values
from .mmio.regs import G2vNotify
from .mmio.row import Hooks
from .mmio.table import populate, table_for
from .mmio.unlisted import UnlistedLog
from .platform import PLATFORMS, Platform, PlatformInfo
from .timestamp import CsClock
from .trace_events import PPGTT_CREATE, PPGTT_DESTROY

__all__ = ["CLASS_CODE", "DEFAULT_APERTURE_SIZE", "DEFAULT_HIDDEN_SIZE", "GenVgpu"]

log = logging.getLogger(__name__)

VENDOR_INTEL = 0x8086
CLASS_CODE = 0x038000  # display controller, other: a non-primary vGPU, outside the VGA arbiter
APERTURE_REGION = 2  # BAR2, the aperture: graphics memory through the GGTT (region 0 is BAR0)
GMCH_CTRL = 0x50
_PPGTT_NOTIFICATIONS = frozenset(
    {G2vNotify.PPGTT_L3_CREATE, G2vNotify.PPGTT_L3_DESTROY, G2vNotify.PPGTT_L4_CREATE, G2vNotify.PPGTT_L4_DESTROY}
)
GMCH_GGMS_8M = 3 << 6  # GGTT stolen size 8 MiB; GMS (stolen memory) 0

_G2V_VALUES = frozenset(int(v) for v in G2vNotify)


class GenVgpu(Device):
    name = "gen_vgpu"

    def __init__(
        self,
        platform: Platform = Platform.BDW,
        aperture_size: int = DEFAULT_APERTURE_SIZE,
        hidden_size: int = DEFAULT_HIDDEN_SIZE,
        watchdog: Watchdog | None = None,
        max_shadow_pages: int = DEFAULT_MAX_SHADOW_PAGES,
        max_device_pages: int = DEFAULT_MAX_DEVICE_PAGES,
        max_shadow_mms: int = DEFAULT_MAX_SHADOW_MMS,
        display: DisplayOptions | None = None,
    ) -> None:
        info: PlatformInfo = PLATFORMS[platform]
        display_parts = build_display(info, display or DisplayOptions())
        self.info = info
        self.graphics_memory = GraphicsMemory.sized(aperture_size, hidden_size)  # checks both sizes
        config = PciConfigSpace(
            VENDOR_INTEL,
            info.device_id,
            info.revision,
            CLASS_CODE,
            subsystem_vendor_id=VENDOR_INTEL,
            subsystem_id=info.device_id,
            interrupt_pin=1,
        )
        config.add_bar(Bar(0, regs.BAR0_SIZE, BarKind.MEM64, prefetchable=False))
        config.add_bar(Bar(2, aperture_size, BarKind.MEM64, prefetchable=True))
        config.data[GMCH_CTRL : GMCH_CTRL + 2] = GMCH_GGMS_8M.to_bytes(2, "little")
        if display_parts.rom is not None:
            config.add_rom(len(display_parts.rom.data))
        config.add_msi_capability(info.msi_offset)
        config.freeze_power_on_state()
        super().__init__(config, msi_count=1, max_device_pages=max_device_pages)

        self.scratch_hfn, _ = self.dma.alloc_device_page()
        self.g2v_notifications: dict[str, int] = {}  # G2vNotify name or "ignored" -> writes
        self.register_table = table_for(platform, display_parts.present)
        self.registers = RegisterFile(regs.MMIO_SIZE)  # filled from the table by _build_engines
        self.ggtt = Ggtt(self.dma, info.pte_ops, self.scratch_hfn)
        self.bar0 = Bar0(self.registers, self.ggtt)
        self.aperture = Aperture(self.ggtt, self.dma, aperture_size, self.registers)
        # Tracing BAR0 is chosen once, here: the untraced path never tests an event.
        self.bar0_traced = traced()
        self.set_region(Region(0, regs.BAR0_SIZE, TracedBar0(self.bar0) if self.bar0_traced else self.bar0))
        self.set_region(Region(APERTURE_REGION, aperture_size, self.aperture))
        self._build_engines(watchdog, max_shadow_pages, max_shadow_mms, display_parts)
        self.ppgtt_walker = ShadowWalker(self.ppgtt)  # for inspection; the engines have their own
        self._bar0_accel: Bar0Accel | None = None
        self.screen_decode: FastDecode | None = None  # the compiled screen decode, with the accelerator

    # --- the engines (contract §4, §5) -----------------------------------------------------

    def _build_engines(
        self, watchdog: Watchdog | None, max_shadow_pages: int, max_shadow_mms: int, display: DisplayParts
    ) -> None:
        """Execlists, GT registers, interrupts, the display (contract §6: its registers'
        handlers, the DE and south interrupt banks' events, the pcode answers, the ROM with the
        VBT) and the unlisted-register log, and the runner that executes workloads through the
        shadow GGTT and the shadow PPGTTs."""
        gm = self.graphics_memory
        self.ggtt_space = GgttSpace(self.ggtt, self.dma)
        self.ppgtt = Ppgtt(  # a DMA listener
            self.dma, self.info.pte_ops, self.info.has_ips, max_shadow_pages, max_shadow_mms
        )
        timestamp = CsClock.for_platform(self.info.platform, self.tasks.clock)
        self.runner = Runner(
            self.tasks,
            self.ggtt_space,
            self.ppgtt,
            self.registers,
            gm,
            timestamp,
            watchdog,
            gen=self.info.gen,
        )
        self.interrupts = Interrupts(self.raise_interrupt, lambda: self.set_intx(False))
        self.engines = Engines(
            self.interrupts, self.runner, self.ggtt_space.read, self.ggtt_space.write, gm, timestamp
        )
        self.runner.attach(self.engines)
        engines = self.engines
        self.gt = GtRegisters(
            self.info.platform, engines.reset_engines, lambda e: engines[e].idle, self.runner.invalidate_tlb
        )
        self.display = display.make(
            self.tasks, self.interrupts, self.gt, page_reader(self.ggtt, self.dma), lambda: self.screen_decode
        )
        rom = display.rom_region()
        if rom is not None:
            self.set_region(rom)
        notify = {"g2v_notify": Hooks(write=lambda _off, _old, new: self.on_g2v_notify(new))}
        hooks = [self.interrupts.hooks(), self.gt.hooks(), notify]
        if self.display is not None:
            hooks.append(self.display.hooks())
        populate(
            self.registers,
            self.register_table,
            hooks,
            (engines.engine_hooks(), self.gt.engine_hooks()),
            pvinfo_values(gm),
        )
        for part in (self.interrupts, engines, self.gt):
            part.attach(self.registers)
        if self.display is not None:
            self.display.attach(self.registers)
        self.unlisted = UnlistedLog(self.register_table.plain_ranges())
        self.unlisted.attach(self.registers)

    def _reset_engines(self) -> None:
        """After the register file's reset: running workloads cancelled (no report), every
        shadow PPGTT gone, interrupt state at power-on."""
        self.engines.power_on()
        self.ppgtt.reset()
        self.interrupts.reset()

    def client_attached(self) -> None:
        # The render engine and numpy (11 MiB resident, about 40 ms to import) load when a
        # guest attaches, before any workload or request of it runs, rather than at start (an
        # idle device holds less) or inside the first 3D state's step (which must stay bounded).
        from .render import pipeline  # noqa: F401

    def region_accel(self, accel: Accel) -> RegionAccel | None:
        if self.bar0_traced:
            return None  # every BAR0 access through Python, where the trace sees it
        if self.ppgtt.store.accel is None:
            # The same module does the shadow PPGTT's per-table work (gtt/shadow_accel.py),
            # the blits (engine/blit_accel.py) and the command scanner's walk (cmd/scan_accel.py).
            self.ppgtt.store.use_accel(accel)
            if has_scan_accel(accel):
                self.runner.scan_accel = ScanAccel(accel)
            if has_blit_accel(accel):
                self.runner.blit_accel = BlitAccel(accel, self.dma, self.info.pte_ops)
                self.screen_decode = FastDecode(self.runner.blit_accel, self.ggtt)
        if self._bar0_accel is None:
            self._bar0_accel = Bar0Accel(accel, self.bar0, 0, regs.BAR0_SIZE)
            self._bar0_accel.serve_interrupts(self.interrupts)
            if self.runner.blit_accel is not None:
                self._bar0_accel.serve_aperture(APERTURE_REGION, self.aperture, self.runner.blit_accel)
        return self._bar0_accel

    def region_write_multi(self, writes: list[tuple[int, int, bytes]]) -> None:
        ggtt_base = regs.GGTT_OFFSET
        ggtt = self.ggtt
        aperture = self.aperture
        # Contiguous aperture writes (fbcon's rows of pixels) become one write: the aperture
        # is memory, so one store of the run leaves what the stores one by one would.
        run_at, run = 0, bytearray()
        for offset, index, data in writes:
            if index == APERTURE_REGION:
                if run and offset == run_at + len(run):
                    run += data
                    continue
                if run:
                    aperture.write(run_at, run)
                run_at, run = offset, bytearray(data)
                continue
            if run:
                aperture.write(run_at, run)
                run = bytearray()
            if index == 0 and offset >= ggtt_base and len(data) == 8 and not offset & 7 and not self.bar0_traced:
                ggtt.write((offset - ggtt_base) >> 3, int.from_bytes(data, "little"), 8, False)
            else:
                self.region_write(index, offset, data)
        if run:
            aperture.write(run_at, run)

    # --- guest-to-host notifications (PVINFO g2v_notify) -----------------------------------

    def on_g2v_notify(self, value: int) -> None:
        """A guest write to g2v_notify; the value is already recorded in the register."""
        name = G2vNotify(value).name if value in _G2V_VALUES else "ignored"
        # Counted by kind, never by value: a guest writing every value cannot grow this.
        seen = self.g2v_notifications.get(name, 0)
        self.g2v_notifications[name] = seen + 1
        if name == "ignored":
            if not seen:
                log.warning("g2v_notify: ignoring unknown value %#x; further ones not logged", value)
            return
        kind = G2vNotify(value)
        if kind in _PPGTT_NOTIFICATIONS:
            self.ppgtt_notify(kind, self.pvinfo_pdps())
        else:
            # Execlist context create/destroy: nothing for the device to do (i915 never sends them).
            log.log(logging.DEBUG if seen else logging.INFO, "g2v_notify: %s accepted", name)

    def pvinfo_pdps(self) -> tuple[int, ...]:
        """The roots the guest wrote to PVINFO pdp[0..3] (4-level: the PML4 in pdp[0])."""
        rf = self.registers
        base = regs.PVINFO_PDP
        return tuple(rf.get(base + 8 * i) | rf.get(base + 8 * i + 4) << 32 for i in range(regs.PVINFO_PDP_COUNT))

    def ppgtt_notify(self, kind: G2vNotify, roots: tuple[int, ...]) -> None:
        """A PPGTT create (the shadow is built ahead of the first submission, as a task) or
        destroy (the guest's claim on it goes) notification, with PVINFO's pdp[0..3]."""
        first = self.g2v_notifications[kind.name] == 1
        four_level = kind in (G2vNotify.PPGTT_L4_CREATE, G2vNotify.PPGTT_L4_DESTROY)
        root_kind = RootKind.L4 if four_level else RootKind.L3
        chosen = roots[:1] if four_level else roots
        log.log(
            logging.INFO if first else logging.DEBUG,
            "g2v_notify: %s for roots %s",
            kind.name,
            ", ".join(hex(r) for r in chosen),
        )
        create = kind in (G2vNotify.PPGTT_L3_CREATE, G2vNotify.PPGTT_L4_CREATE)
        event = PPGTT_CREATE if create else PPGTT_DESTROY
        if event.on:
            event(root_kind.name, ", ".join(hex(r) for r in chosen))
        if create:
            self.runner.spawn_resync(self.ppgtt.notify_create(root_kind, chosen), "ppgtt-create")
        else:
            self.ppgtt.notify_destroy(root_kind, chosen)

    def reset(self, kind: ResetKind) -> None:
        super().reset(kind)
        self.registers.reset()
        self._reset_engines()
        if self.display is not None:
            self.display.reset()
        self.ggtt.reset()
        self.g2v_notifications.clear()
        log.info("reset (%s)", kind.value)

    def held(self) -> dict[str, int]:
        return {
            "shadow_mms": len(self.ppgtt.mms),
            "shadow_tables": len(self.ppgtt.store),
            "workloads_running": len(self.runner.running()),
        }

    def inspect(self, what: str, args: list[str]) -> dict[str, Any]:
        if what in ("display", "screen"):
            return inspect_display(self.display, page_reader(self.ggtt, self.dma), what, args, self.screen_decode)
        if what == "ppgtt":
            return self._inspect_ppgtt(args)
        if what == "stats":
            return {**super().inspect(what, args), "counters": self.counters()}
        if what != "ggtt":
            return super().inspect(what, args)
        if len(args) != 1:
            raise ValueError("ggtt takes one graphics address")
        gma = int(args[0], 0)
        if not 0 <= gma < GGTT_ENTRY_COUNT << 12:
            raise ValueError(f"graphics address {gma:#x} outside the 4 GiB GGTT")
        found = self.ggtt.lookup(gma >> 12)
        window = found.window
        return {
            "gma": hex(gma),
            "index": found.index,
            "guest_entry": hex(found.guest_entry),
            "guest_present": bool(found.guest_entry & 1),
            "guest_gfn": hex(self.info.pte_ops.get_pfn(found.guest_entry)),
            "shadow_entry": hex(found.shadow_entry),
            "host_frame": "scratch" if found.hfn is None else hex(found.hfn),
            "dma_window": None
            if window is None
            else {
                "iova": hex(window.iova),
                "size": hex(window.size),
                "prot": window.prot,
                "has_fd": window.view is not None,
            },
            "state": found.state,
            "counters": vars(self.ggtt.counters),
        }

    def counters(self) -> dict[str, dict[str, int]]:
        """The counters by part, as numbers (``inspect stats``, the view's table)."""
        out: dict[str, dict[str, int]] = {}
        if self.display is not None:
            pipes = {f"pipe {'ABC'[p.index]} PIPE_FRMCOUNT": p.frame_count for p in self.display.pipes if p.on}
            out["display"] = {**pipes, **vars(self.display.counters)}
        out["interrupts"] = dict(vars(self.interrupts.counters))
        out["workloads"] = dict(vars(self.runner.counters))
        out["ggtt"] = dict(vars(self.ggtt.counters))
        return out

    def _inspect_ppgtt(self, args: list[str]) -> dict[str, Any]:
        if len(args) != 2:
            raise ValueError("ppgtt takes ROOTS (one PML4 address, or four PDP addresses comma-separated) and a GMA")
        kind, roots = parse_roots(args[0])
        mm = self.ppgtt.find(kind, roots)
        if mm is None:
            raise ValueError(f"no shadow PPGTT for {kind.name} roots {args[0]}")
        return self.ppgtt_walker.explain(mm, int(args[1], 0))

    def describe(self) -> Iterable[str]:
        c = self.ggtt.counters
        yield (
            f"gen_vgpu {self.info.platform.value}: GGTT writes={c.writes} partial={c.partial_writes} "
            f"scratch={c.scratch_mappings} unmap-fallbacks={c.unmap_fallbacks} revivals={c.revivals} "
            f"unbacked={self.ggtt.entries_by_state().get('unbacked', 0)}; "
            f"BAR0 ignored accesses={self.bar0.ignored_accesses}; DMA windows={len(self.dma)}"
        )
        yield f"shadow PPGTT: {len(self.ppgtt.mms)} mms, {len(self.ppgtt.store)} tables, {self.ppgtt.counters}"
        yield "execlists: " + "; ".join(f"{ex.engine.name} {_counts(ex.counters)}" for ex in self.engines)
        for ex in self.engines:
            if ex.last_hang is not None:  # a refused draw's reason carries the kernel's disassembly
                yield f"{ex.engine.name} last hang: {ex.last_hang[1]}"
        yield f"workloads: {_counts(self.runner.counters)}"
        yield f"interrupts: {_counts(self.interrupts.counters)}"
        yield from list(super().describe())[1:]  # the task queue's counters
        if self.display is not None:
            yield self.display.describe()


def _counts(counters: object) -> str:
    """A counters dataclass as name=value pairs (the exit log and `inspect stats` lines)."""
    return " ".join(f"{name}={value}" for name, value in vars(counters).items())
