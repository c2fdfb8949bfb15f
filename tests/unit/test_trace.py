"""Named trace events: turned on by glob, written as lines, bounded like the log, and the
BAR0 events naming registers from the register table."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from devmodel import trace
from devmodel.accel import load
from gen_vgpu import GenVgpu
from gen_vgpu.engines import ENGINES

from .gen_vgpu.gt_rig import Rig, desc


@pytest.fixture
def trace_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "trace.log"
    yield path
    trace.enable([])
    for handler in list(trace.logger.handlers):
        trace.logger.removeHandler(handler)
        handler.close()


def lines(path: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in path.read_text().splitlines()]


def test_globs_pick_events() -> None:
    try:
        names = trace.enable(["execlist_*", "csb"])
        assert "csb" in names and "execlist_submit" in names and "mmio_write" not in names
        assert trace.EVENTS["execlist_complete"].on and not trace.EVENTS["mmio_read"].on
        assert trace.enabled("execlist_*") and not trace.enabled("mmio_*")
        with pytest.raises(ValueError, match="no trace event matches 'mmoi_\\*'"):
            trace.enable(["mmoi_*"])
    finally:
        trace.enable([])
    assert not any(ev.on for ev in trace.EVENTS.values())


def test_an_event_is_declared_once() -> None:
    first = trace.event("test_once", "%d", "a test event")
    assert trace.event("test_once", "%d", "a test event") is first
    with pytest.raises(ValueError, match="declared twice"):
        trace.event("test_once", "%s", "another")
    del trace.EVENTS["test_once"]


def test_mmio_events_name_the_register(trace_file: Path) -> None:
    trace.configure(["mmio_*", "ggtt_*"], str(trace_file))
    dev = GenVgpu()
    dev.region_write(0, 0x22030, (0x1A8).to_bytes(4, "little"))
    dev.region_read(0, 0x78000, 4)
    dev.region_read(0, 0x9400, 2)
    dev.region_write(0, 8 << 20, (0x1003).to_bytes(8, "little"))
    dev.region_write_multi([(8 << 20 | 8, 0, (0x2003).to_bytes(8, "little"))])
    assert lines(trace_file) == [
        "mmio_write RING_TAIL(bcs) 0x22030 = 0x1a8",
        "mmio_read PVINFO magic_lo 0x78000 = 0x76544776",
        "mmio_read unlisted 0x9400 = 0x0",
        "ggtt_write index 0x0 = 0x1003",
        "ggtt_write index 0x1 = 0x2003",
    ]
    accel = load(True)
    if accel is not None:  # the compiled path would serve plain registers unseen
        assert dev.region_accel(accel) is None


def test_untraced_device_leaves_bar0_alone() -> None:
    dev = GenVgpu()
    assert not dev.bar0_traced and dev.regions[0].handler is dev.bar0


def test_execlist_events(trace_file: Path) -> None:
    trace.configure(["execlist_*", "csb", "irq_*"], str(trace_file))
    rig = Rig()
    e = ENGINES[0]
    rig.enable_execlists(e, 0x1000)
    rig.unmask_engine_irqs(e)
    rig.w(0x44200, 1 << 31)
    rig.make_context(0x10000, head=0x18, tail=0x58)
    rig.elsp(e, desc(0x10000, 0xA1))
    [w] = rig.executor.started
    rig.engines.complete(w)
    got = lines(trace_file)
    assert got[0] == "execlist_submit rcs ctx 0xa1 lrca 0x10000 head 0x18 tail 0x58"
    assert "csb rcs slot 0 status 0x1 ctx 0x0" in got
    assert "execlist_complete rcs ctx 0xa1 tail 0x58" in got
    assert "csb rcs slot 1 status 0x18 ctx 0xa1" in got
    assert any(line.startswith("irq_event rcs bits 0x100") for line in got)
    assert any(line.startswith("irq_raise master 0x80000001") for line in got)


def test_trace_is_bounded_per_event(trace_file: Path) -> None:
    trace.configure(["mmio_write", "mmio_read"], str(trace_file), burst=3)
    dev = GenVgpu()
    for i in range(10):
        dev.region_write(0, 0x4000, i.to_bytes(4, "little"))
        dev.region_read(0, 0x4000, 4)
    got = lines(trace_file)
    writes = [line for line in got if line.startswith("mmio_write")]
    reads = [line for line in got if line.startswith("mmio_read")]
    assert len(writes) == 3 and len(reads) == 3  # per event, not per trace
    assert "further ones dropped" in writes[-1]


def test_trace_does_not_reach_the_log(trace_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    trace.configure(["mmio_write"], str(trace_file))
    caplog.set_level(logging.INFO)
    GenVgpu().region_write(0, 0x4000, b"\1\0\0\0")
    assert not [r for r in caplog.records if r.name == "devmodel.trace"]
    assert lines(trace_file) == ["mmio_write unlisted 0x4000 = 0x1"]
