"""The scanner's rules: register allow-list, GGTT confinement, privilege, nesting, batch ends,
page-at-a-time batch reads and the one-command-at-a-time API. Every scan runs on the Python
path and with the compiled walk (the ``accel`` fixture)."""

from __future__ import annotations

from array import array

import pytest

from devmodel import accel as accel_module
from devmodel.errors import OutOfRange
from gen_vgpu.cmd import (
    BufferSource,
    CommandRejected,
    Engine,
    Frame,
    GraphicsMemory,
    batch_scan,
    ring_scan,
    scan_batch,
    scan_next,
    scan_ring,
)
from gen_vgpu.cmd.engines import ENGINE_MMIO_BASE
from gen_vgpu.cmd.records import BatchEnd, BatchStart, LoadRegisterImm, StoreDataImm, UserInterrupt
from gen_vgpu.cmd.scan import ACCEL_EVERY, CLOCK_EVERY, MAX_BATCH_DWORDS, Segment
from gen_vgpu.cmd.scan_accel import ScanAccel, has_scan_accel
from gen_vgpu.mmio import workarounds
from gen_vgpu.mmio.row import Cmd
from gen_vgpu.mmio.table import TABLE, may_read, may_write

from . import cmd_streams as c

RCS, BCS, VCS, VECS = Engine.RCS, Engine.BCS, Engine.VCS0, Engine.VECS0
MiB = 1 << 20
# Aperture 256 MiB at 0 and a hidden range of 64 MiB after a hole: [0, 256M) + [512M, 576M).
MEMORY = GraphicsMemory(range(256 * MiB), range(512 * MiB, 576 * MiB))
HOLE = 300 * MiB


_MODULE = accel_module.load(True)
COMPILED = ScanAccel(_MODULE) if _MODULE is not None and has_scan_accel(_MODULE) else None
_PATHS = [
    pytest.param(False, id="python"),
    pytest.param(True, id="compiled", marks=pytest.mark.skipif(COMPILED is None, reason="no compiled accelerator")),
]


@pytest.fixture(params=_PATHS)
def accel(request: pytest.FixtureRequest) -> ScanAccel | None:
    """The scan's compiled walk, or None for the Python path alone."""
    return COMPILED if request.param else None


class Scanner:
    """The scans of this file on one path."""

    def __init__(self, accel: ScanAccel | None) -> None:
        self.accel = accel

    def ring(self, dwords: list[int], engine: Engine = RCS) -> Segment:
        return scan_ring(array("I", dwords), engine, MEMORY, self.accel)

    def ring_rejected(self, dwords: list[int], engine: Engine = RCS) -> CommandRejected:
        with pytest.raises(CommandRejected) as e:
            self.ring(dwords, engine)
        return e.value

    def batch(self, dwords: list[int], frame: Frame, address: int | None = None) -> Segment:
        return scan_batch(BufferSource(array("I", dwords)), frame, address, self.accel)


@pytest.fixture
def sc(accel: ScanAccel | None) -> Scanner:
    return Scanner(accel)


GGTT_BATCH = Frame(RCS, 1, True, MEMORY)
PPGTT_BATCH = Frame(RCS, 1, False, MEMORY)


def test_graphics_memory_ranges() -> None:
    assert MEMORY.contains(0, 4) and MEMORY.contains(256 * MiB - 8, 8)
    assert not MEMORY.contains(256 * MiB - 4, 8)  # straddles the end of the aperture
    assert not MEMORY.contains(HOLE, 4) and MEMORY.contains(512 * MiB, 64 * MiB)
    assert MEMORY.span_from(576 * MiB - 12) == 12 and MEMORY.span_from(576 * MiB) == 0
    assert GraphicsMemory(range(4096), range(4096, 8192)).span_from(0) == 8192  # adjacent slices merge
    with pytest.raises(OutOfRange):
        GraphicsMemory(range(4096), range(0xFFFFF000, 0x100001000))
    with pytest.raises(OutOfRange):
        GraphicsMemory(range(8192), range(4096, 12288))  # the slices overlap
    assert GraphicsMemory.sized(4096, 0) == GraphicsMemory(range(4096), range(4096, 4096))


def test_ring_segment_lists_work_and_batches(sc: Scanner) -> None:
    seg = sc.ring([c.MI_ARB_ON_OFF, *c.bb_start(0x10000), *c.bb_start(0x20000, ppgtt=False), c.MI_USER_INTERRUPT, 0])
    assert seg.commands == [
        (4, BatchStart(0x10000, True, False)),
        (16, BatchStart(0x20000, False, False)),
        (28, UserInterrupt()),
    ]
    assert [(b.offset, b.frame.level, b.frame.privileged) for b in seg.batches] == [(4, 1, False), (16, 1, True)]
    assert seg.length == 9


def test_register_allow_list(sc: Scanner) -> None:
    base = ENGINE_MMIO_BASE[BCS]
    sc.ring(c.lri((base + 0x3A8, 0), (base + 0x50, 1)), BCS)  # CTX_TIMESTAMP, a plain engine register
    err = sc.ring_rejected(c.lri((base + 0x50, 1), (base + 0x230, 5)), BCS)  # ELSP
    assert err.command == "MI_LOAD_REGISTER_IMM" and "0x22230" in err.reason and "write allow-list" in err.reason
    assert "0x2280" in sc.ring_rejected(c.lri((0x2280, 0)), RCS).reason  # RCS PDP3 upper
    assert "0x7004" in sc.ring_rejected(c.lri((0x7004, 0)), BCS).reason  # a render workaround on BCS
    assert "0x2094" in sc.ring_rejected(c.lri((0x2094, 0)), VCS).reason  # another engine's page
    assert "0x9120" in sc.ring_rejected(c.lri((0x9120, 0)), RCS).reason  # GEN8_FUSE2, a GT register
    sc.ring(c.srm(base + 0x230, 0x1000), BCS)  # reads of the whole page are fine
    assert "read allow-list" in sc.ring_rejected(c.srm(0x44200, 0x1000), BCS).reason
    denied = [row for row in TABLE if row.engine and row.cmd is Cmd.READ]
    assert {0x30, 0x230, 0x270, 0x29C, 0x3A0} <= {off for row in denied for off in row.offsets()}
    for engine in Engine:
        b = ENGINE_MMIO_BASE[engine]
        for row in denied:
            for off in row.offsets():
                assert not may_write(engine, b + off) and may_read(engine, b + off)
        assert may_write(engine, b + 0x358) and not may_write(engine, b + 0x1000)
    for row in workarounds.ROWS:
        assert may_write(RCS, row.offset) and not may_write(VECS, row.offset)


def test_ggtt_writes_are_confined(sc: Scanner) -> None:
    sc.ring(c.sdi(256 * MiB - 4, 1, ggtt=True))
    err = sc.ring_rejected(c.sdi(256 * MiB, 1, ggtt=True))
    assert err.command == "MI_STORE_DATA_IMM" and "outside this vGPU's graphics memory" in err.reason
    assert "[0x10000000, 0x10000004)" in err.reason
    sc.ring(c.sdi(HOLE, 1))  # PPGTT: the shadow PPGTT confines it, not the scanner
    assert "outside" in sc.ring_rejected(c.srm(0x2358, HOLE, ggtt=True)).reason
    assert "outside" in sc.ring_rejected(c.flush_dw(HOLE | c.MI_FLUSH_DW_USE_GTT, 0), BCS).reason
    sc.ring(c.flush_dw(HOLE | c.MI_FLUSH_DW_USE_GTT, 0, flags=0), BCS)  # no post-sync: no write
    assert "outside" in sc.ring_rejected(c.pipe_control(c.PC_QW_WRITE | c.PC_GLOBAL_GTT, 576 * MiB)).reason
    sc.ring(c.pipe_control(c.PC_GLOBAL_GTT, HOLE))  # the GGTT bit without a post-sync op writes nothing
    sc.ring(c.pipe_control(c.PC_QW_WRITE | c.PC_GLOBAL_GTT, 576 * MiB - 8))


def test_qword_write_straddling_the_end_of_a_range(sc: Scanner) -> None:
    end = 256 * MiB
    sc.ring(c.sdi(end - 8, 1, ggtt=True, qword=True))
    err = sc.ring_rejected([c.MI_NOOP, *c.pipe_control(c.PC_QW_WRITE | c.PC_GLOBAL_GTT, end)])
    assert err.offset == 4 and err.command == "PIPE_CONTROL"


def test_privilege(sc: Scanner) -> None:
    for cmd in (
        c.sdi(0x1000, 1, ggtt=True),
        c.srm(0x2358, 0x1000, ggtt=True),
        c.pipe_control(c.PC_QW_WRITE | c.PC_STORE_DATA_INDEX, 0xD0),
        c.bb_start(0x1000, ppgtt=False, second_level=True),
    ):
        with pytest.raises(CommandRejected, match="non-privileged"):
            sc.batch([*cmd, c.MI_BATCH_BUFFER_END], PPGTT_BATCH)
        sc.batch([*cmd, c.MI_BATCH_BUFFER_END], GGTT_BATCH)
    with pytest.raises(CommandRejected, match="non-privileged"):
        sc.batch(
            [*c.flush_dw(0xD0, 0, c.MI_FLUSH_DW_OP_STOREDW | c.MI_FLUSH_DW_STORE_INDEX), 0x05000000],
            Frame(BCS, 1, False, MEMORY),
        )


def test_nesting(sc: Scanner) -> None:
    assert (
        "second-level batch cannot start from the ring"
        in sc.ring_rejected(c.bb_start(0x1000, second_level=True)).reason
    )
    seg = sc.batch([*c.bb_start(0x2000, second_level=True), c.MI_BATCH_BUFFER_END], GGTT_BATCH)
    (ref,) = seg.batches
    assert (ref.frame.level, ref.frame.privileged) == (2, False)
    level2 = Frame(RCS, 2, False, MEMORY)
    with pytest.raises(CommandRejected, match="deeper than 2 levels") as e:
        sc.batch([*c.bb_start(0x3000, second_level=True), c.MI_BATCH_BUFFER_END], level2)
    assert e.value.level == 2
    seg = sc.batch([c.MI_NOOP, *c.bb_start(0x3000)], level2)  # a chain stays at its level and ends the scan
    assert seg.batches[0].frame.level == 2 and seg.length == 4
    with pytest.raises(CommandRejected, match="outside this vGPU's graphics memory"):
        sc.ring(c.bb_start(HOLE, ppgtt=False))


def test_batch_ends(sc: Scanner) -> None:
    assert "outside a batch" in sc.ring_rejected([c.MI_BATCH_BUFFER_END]).reason
    seg = sc.batch([*c.sdi(0x100, 5), c.MI_BATCH_BUFFER_END, 0xFFFFFFFF], PPGTT_BATCH)  # garbage after the end
    assert seg.commands == [(0, StoreDataImm(0x100, False, 4, 5)), (16, BatchEnd())] and seg.length == 5
    with pytest.raises(CommandRejected, match="no MI_BATCH_BUFFER_END"):
        sc.batch([c.MI_NOOP] * 10, PPGTT_BATCH)
    with pytest.raises(CommandRejected, match="runs past the end"):
        sc.ring(c.sdi(0x100, 5)[:3])


def test_ggtt_batch_read_stops_at_the_end_of_graphics_memory(accel: ScanAccel | None) -> None:
    class Endless:
        def __init__(self) -> None:
            self.read_to = 0

        def read(self, pos: int, count: int) -> array[int]:
            self.read_to = max(self.read_to, pos + count)
            return array("I", [0] * count)

    src = Endless()
    with pytest.raises(CommandRejected, match="no MI_BATCH_BUFFER_END within 2048 dwords"):
        scan_batch(src, GGTT_BATCH, 256 * MiB - 8192, accel)
    assert src.read_to == 2048
    src = Endless()
    with pytest.raises(CommandRejected, match=f"within {MAX_BATCH_DWORDS} dwords"):
        scan_batch(src, PPGTT_BATCH, accel=accel)


@pytest.mark.parametrize("split", [1, 3, 1020, 1023, 1024, 1025])
def test_batch_commands_straddling_pages(sc: Scanner, split: int) -> None:
    """Commands that cross the scanner's page-sized reads decode as if read whole."""
    body = [c.MI_NOOP] * split + c.lri(*[(0x2600 + 4 * i, i) for i in range(20)]) + [c.MI_BATCH_BUFFER_END]
    seg = sc.batch(body, GGTT_BATCH, 0x10000)
    assert seg.commands[0] == (split * 4, LoadRegisterImm(tuple((0x2600 + 4 * i, i) for i in range(20))))
    assert seg.length == len(body)


def test_scan_next_one_command_at_a_time() -> None:
    dwords = array("I", [c.MI_NOOP, *c.sdi(0x40, 3), *c.bb_start(0x8000, second_level=True), c.MI_BATCH_BUFFER_END])
    src = BufferSource(dwords)
    pos, seen = 0, []
    while True:
        step = scan_next(src, pos, PPGTT_BATCH)
        seen.append((type(step.command).__name__, step.length, step.child.level if step.child else None))
        pos += step.length
        if isinstance(step.command, BatchEnd):
            break
    assert seen == [("Noop", 1, None), ("StoreDataImm", 4, None), ("BatchStart", 3, 2), ("BatchEnd", 1, None)]
    with pytest.raises(CommandRejected, match="past readable memory") as e:
        scan_next(BufferSource(dwords[:6]), 5, PPGTT_BATCH)
    assert e.value.offset == 20 and e.value.command == "MI_BATCH_BUFFER_START"
    with pytest.raises(CommandRejected, match="past readable memory"):
        scan_next(src, len(dwords), PPGTT_BATCH)
    with pytest.raises(CommandRejected, match="GGTT access from a non-privileged"):
        scan_next(BufferSource(array("I", c.sdi(0x40, 3, ggtt=True))), 0, PPGTT_BATCH)


def test_rejection_offsets_are_bytes_from_the_buffer_start(sc: Scanner) -> None:
    err = sc.ring_rejected([0, 0, *c.sdi(0x10, 1), 0x0D800000, 0, 0, 0])
    assert (err.offset, err.command, err.header) == (24, "unknown command", 0x0D800000)
    with pytest.raises(CommandRejected) as e:
        sc.batch([0] * 1500 + [0xFFFFFFFF], GGTT_BATCH)
    assert e.value.offset == 6000 and e.value.level == 1


# --- scans in steps ---------------------------------------------------------------------------


class TickClock:
    """A clock that moves one tick per reading: a step with deadline now + 1 stops at its
    first look at the clock, whatever the machine's speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.mark.parametrize("ring_segment", [False, True])
def test_a_scan_runs_in_bounded_steps_and_gives_what_one_call_gives(
    accel: ScanAccel | None, ring_segment: bool
) -> None:
    # No two equal one-dword commands in a row: a run of them is walked at once (one clock look).
    body = [c.MI_ARB_CHECK, 0, *c.sdi(0x1000, 7, ggtt=True), 0, c.MI_ARB_ON_OFF] * 3000
    if ring_segment:
        dwords = array("I", body)
        whole = scan_ring(dwords, RCS, MEMORY)
        scan = ring_scan(BufferSource(dwords), len(dwords), RCS, MEMORY, accel)
    else:
        dwords = array("I", [*body, c.MI_BATCH_BUFFER_END])
        whole = scan_batch(BufferSource(dwords), GGTT_BATCH)
        scan = batch_scan(BufferSource(dwords), GGTT_BATCH, accel=accel)
    clock = TickClock()
    # One look at the clock per CLOCK_EVERY commands of Python, and ACCEL_EVERY more in C.
    slice_ = CLOCK_EVERY + (ACCEL_EVERY if accel is not None else 0)
    steps = 0
    seg = None
    while seg is None:
        before = scan.scanned
        seg = scan.step(clock() + 1, clock)
        assert scan.scanned - before <= slice_
        steps += 1
    assert seg == whole
    assert steps >= whole.scanned // slice_
    assert whole.scanned == 3000 * 5 + (0 if ring_segment else 1)  # every NOOP and ARB_CHECK walked


def test_runs_of_skipped_commands_are_counted_command_by_command(accel: ScanAccel | None) -> None:
    dwords = array("I", [c.MI_ARB_CHECK] * 3000 + [0] * 5000 + [c.MI_ARB_CHECK, c.MI_BATCH_BUFFER_END])
    seg = scan_batch(BufferSource(dwords), GGTT_BATCH, accel=accel)
    assert seg.scanned == len(dwords) and seg.length == len(dwords) and seg.commands == [(32004, BatchEnd())]
    bad = array("I", [c.MI_ARB_CHECK] * 3000 + [c.MI_ARB_CHECK | 1] * 3 + [c.MI_BATCH_BUFFER_END])
    with pytest.raises(CommandRejected, match="reserved header bits") as e:
        scan_batch(BufferSource(bad), GGTT_BATCH, accel=accel)
    assert e.value.offset == 3000 * 4  # the run stops at the first different dword


def test_a_batch_with_no_end_is_refused_after_its_limit_in_steps(accel: ScanAccel | None) -> None:
    dwords = array("I", [c.MI_ARB_CHECK] * 5000)
    scan = batch_scan(BufferSource(dwords), PPGTT_BATCH, accel=accel)
    clock = TickClock()
    with pytest.raises(CommandRejected, match="no MI_BATCH_BUFFER_END within 5000 dwords"):
        while scan.step(clock() + 1, clock) is None:
            pass
    assert scan.scanned == 5000
