"""The compiled walk (accel/dm_scan.c, cmd/scan_accel.py) against the Python scanner: the same
buffers, scanned both ways, give the same Segment (positions and records, batches, length,
commands walked) or the same CommandRejected (reason, command, offset, header, level), in
every frame (ring, first- and second-level batches, privileged or not) on every engine.

The buffers come from the command table itself: every row's header with its flags and
lengths, fields drawn from the values the decoders and checks draw lines at (alignments,
sign extensions, the ends of graphics memory and the PPHWSP, allow-listed registers and
others), then mutated (a bit flipped, a dword replaced, the end cut off) so that most
rejections and both sides of every check are reached. Valid streams are walked by C whole,
so the walk is not Python's in disguise."""

from __future__ import annotations

from array import array
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devmodel import accel as accel_module
from gen_vgpu.cmd import (
    BufferSource,
    CommandRejected,
    Engine,
    Frame,
    GraphicsMemory,
    Scan,
    Segment,
    batch_scan,
    ring_scan,
    scan_batch,
    scan_ring,
)
from gen_vgpu.cmd.engines import ENGINE_MMIO_BASE
from gen_vgpu.cmd.opcodes import MI_BATCH_BUFFER_START, SPECS
from gen_vgpu.cmd.records import BatchStart
from gen_vgpu.cmd.scan import ACCEL_EVERY, CHUNK_DWORDS
from gen_vgpu.cmd.scan_accel import ScanAccel, has_scan_accel
from gen_vgpu.cmd.spec import LengthRule
from gen_vgpu.mmio.table import command_access

from . import cmd_streams as c
from .test_cmd_fuzz import MEMORY as FUZZ_MEMORY
from .test_cmd_fuzz import garbage, items
from .test_cmd_i915 import GEN9_NULL_STATE, null_state_batch, request

_MODULE = accel_module.load(True)
pytestmark = pytest.mark.skipif(not has_scan_accel(_MODULE), reason="the compiled accelerator is not installed")
ACCEL = ScanAccel(_MODULE) if has_scan_accel(_MODULE) and _MODULE is not None else None

MiB = 1 << 20
# Two spans with a hole, as test_cmd_scan's: [0, 256M) + [512M, 576M).
MEMORY = GraphicsMemory(range(256 * MiB), range(512 * MiB, 576 * MiB))
u32 = st.integers(0, 0xFFFFFFFF)


def _registers(engine: Engine) -> list[int]:
    writable, readable = command_access(engine)
    base = ENGINE_MMIO_BASE[engine]
    listed = sorted(writable | readable)
    return [*listed[:: max(1, len(listed) // 24)], base + 0x230, base + 0x358, base + 0x1000, 0x2280, 0x9120, 0x44200]


_EDGES = [256 * MiB - 4, 256 * MiB - 8, 256 * MiB, 300 * MiB, 512 * MiB, 576 * MiB - 8, 576 * MiB - 4, 576 * MiB]
_ADDRESSES = [*_EDGES, *(e + d for e in _EDGES for d in (1, 2, 4)), 0, 0x1000, 0xD0, 4088, 4092, 4096, 0xFFFFFFFC]
_UPPER = [0, 1, 0xFFFF, 0x8000, 0xFFFF8000, 0xFFFF7FFF, 0x10000, 0xFFFFFFFF]
_FLAG_DWORDS = [  # PIPE_CONTROL DW1, BR13, corners, pitches, ALU instructions
    1 << 14, 1 << 14 | 1 << 24, 1 << 14 | 1 << 21, 3 << 14 | 1 << 24, 2 << 14 | 1 << 24, 1 << 23 | 1 << 14, 1 << 24,
    0x03F00000 | 1024, 0x03CC0000 | 1024, 0x03F00000 | 32, 0x03CC0000 | 1026, 0x07F00000 | 64, 0x02F00000 | 64,
    0x00100010, 0x00200020, 0x80000000, 0x8000, 0x1000, 0x10000, 0x10001,
    c.alu(0x080, 0x20, 3), c.alu(0x081, 0x21), c.alu(0x100), c.alu(0x180, 2, 0x31), c.alu(0x180, 16, 0x31),
    c.alu(0x080, 0x22, 3), c.alu(0x100, 1), c.alu(0x7FF), c.alu(0x580, 15, 0x33), c.alu(0x480, 0x20, 0x34),
]  # fmt: skip


def field_values(engine: Engine) -> st.SearchStrategy[int]:
    return st.one_of(
        u32,
        st.sampled_from(_ADDRESSES),
        st.sampled_from(_UPPER),
        st.sampled_from(_registers(engine)),
        st.sampled_from(_FLAG_DWORDS),
    )


@st.composite
def from_table(draw: st.DrawFn, engine: Engine) -> list[int]:
    """One command built from a row of the table: its header with some of its flags (rarely
    a reserved bit), a length its rule allows (rarely one it does not), fields as above."""
    spec = draw(st.sampled_from(SPECS))
    dw0 = spec.header | (draw(u32) & spec.flags)
    if spec.rule is LengthRule.GFX:
        dw0 = (draw(u32) & 0x1FFFFF00) | 0x60000000 | draw(st.integers(0, 12))
        n = 1 if (dw0 >> 27) & 3 == 1 else (dw0 & 0xFF) + 2
        if dw0 & 0xFFFF0000 == 0x7A000000:
            n = draw(st.integers(2, 8))
            dw0 = 0x7A000000 | (n - 2)
    elif spec.rule is LengthRule.ONE:
        n = 1
    else:
        if spec.rule is LengthRule.LRI:
            n = 1 + 2 * draw(st.integers(1, 8))
        elif spec.rule is LengthRule.ANY:
            n = draw(st.integers(2, 10))
        else:
            n = draw(st.sampled_from(sorted(spec.lengths)))
        if draw(st.integers(0, 15)) == 0:
            n = draw(st.integers(2, 14))  # perhaps not a length of the rule
        dw0 |= (n - 2) & spec.len_mask
    if draw(st.integers(0, 15)) == 0:
        dw0 ^= 1 << draw(st.integers(0, 31))
    body = draw(st.lists(field_values(engine), min_size=n - 1, max_size=n - 1))
    if spec is MI_BATCH_BUFFER_START and body:
        body[0] &= ~3
    return [dw0, *body]


@st.composite
def buffers(draw: st.DrawFn) -> tuple[Engine, list[int]]:
    engine = draw(st.sampled_from(list(Engine)))
    parts: list[list[int]] = draw(
        st.lists(
            st.one_of(
                from_table(engine),
                items(engine).map(lambda item: item[0]),
                st.lists(st.sampled_from([c.MI_NOOP, c.MI_ARB_CHECK]), min_size=1, max_size=40),
            ),
            max_size=30,
        )
    )
    dwords = [d for part in parts for d in part]
    mutation = draw(st.integers(0, 5))
    if dwords and mutation == 1:  # a bit flipped anywhere
        i = draw(st.integers(0, len(dwords) - 1))
        dwords[i] ^= 1 << draw(st.integers(0, 31))
    elif dwords and mutation == 2:  # a dword replaced
        dwords[draw(st.integers(0, len(dwords) - 1))] = draw(field_values(engine))
    elif dwords and mutation == 3:  # the end cut off
        dwords = dwords[: draw(st.integers(0, len(dwords) - 1))]
    if draw(st.booleans()):
        dwords.append(c.MI_BATCH_BUFFER_END)
    return engine, dwords


Outcome = tuple[Segment | None, tuple[str, str, int, int, int] | None]


def outcome(fn: Callable[[], Segment]) -> Outcome:
    try:
        return fn(), None
    except CommandRejected as e:
        return None, (e.reason, e.command, e.offset, e.header, e.level)


def stepped(scan: Scan) -> Segment:
    """The scan one slice per step (a clock always past the deadline)."""
    while True:
        seg = scan.step(0.0, lambda: 1.0)
        if seg is not None:
            return seg


def frames(engine: Engine) -> list[Frame]:
    return [Frame(engine, level, priv, MEMORY) for level in (1, 2) for priv in (True, False)]


def same_on_both_paths(engine: Engine, dwords: list[int]) -> None:
    buf = array("I", dwords)
    python = outcome(lambda: scan_ring(buf, engine, MEMORY))
    assert outcome(lambda: scan_ring(buf, engine, MEMORY, ACCEL)) == python
    assert outcome(lambda: stepped(ring_scan(BufferSource(buf), len(buf), engine, MEMORY, ACCEL))) == python
    for frame in frames(engine):
        python = outcome(lambda f=frame: scan_batch(BufferSource(buf), f, 0))  # type: ignore[misc]
        assert outcome(lambda f=frame: scan_batch(BufferSource(buf), f, 0, ACCEL)) == python  # type: ignore[misc]
        compiled = outcome(lambda f=frame: stepped(batch_scan(BufferSource(buf), f, 0, ACCEL)))  # type: ignore[misc]
        assert compiled == python


@settings(max_examples=1500, deadline=None)
@given(buffers())
def test_table_built_and_mutated_buffers_scan_alike_on_both_paths(case: tuple[Engine, list[int]]) -> None:
    same_on_both_paths(*case)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Engine)), garbage)
def test_any_dwords_scan_alike_on_both_paths(engine: Engine, dwords: list[int]) -> None:
    same_on_both_paths(engine, dwords)


class Short:
    """A source whose readable memory ends after ``size`` dwords."""

    def __init__(self, dwords: array[int], size: int) -> None:
        self.dwords = dwords
        self.size = size

    def read(self, pos: int, count: int) -> array[int]:
        return self.dwords[pos : min(pos + count, self.size)]


@settings(max_examples=200, deadline=None)
@given(buffers(), st.integers(1, 40), st.integers(0, 60))
def test_commands_across_reads_and_the_end_of_readable_memory(
    case: tuple[Engine, list[int]], before_chunk: int, cut: int
) -> None:
    """The buffer placed so that its commands straddle the scanner's 64 KiB reads, and read
    from a source whose memory ends inside it."""
    engine, dwords = case
    buf = array("I", [c.MI_NOOP] * (CHUNK_DWORDS - before_chunk) + dwords)
    for frame in frames(engine)[:2]:
        for src in (BufferSource(buf), Short(buf, len(buf) - min(cut, len(dwords)))):
            python = outcome(lambda s=src, f=frame: scan_batch(s, f, 0))  # type: ignore[misc]
            assert outcome(lambda s=src, f=frame: scan_batch(s, f, 0, ACCEL)) == python  # type: ignore[misc]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(Engine)).flatmap(lambda e: st.tuples(st.just(e), st.lists(items(e), max_size=40))))
def test_valid_commands_are_walked_by_c(stream: tuple[Engine, list[tuple[list[int], object]]]) -> None:
    """A stream of valid commands (test_cmd_fuzz's) is taken by C to its first batch start,
    which Python scans."""
    engine, cmds = stream
    dwords: list[int] = []
    for enc, rec in cmds:
        if isinstance(rec, BatchStart):
            break
        dwords += enc
    assert ACCEL is not None
    walk = ACCEL.walker(Frame.ring(engine, FUZZ_MEMORY), ACCEL_EVERY)  # the memory they were made for
    positions = array("I")
    pos, walked = walk.walk(array("I", dwords), 0, len(dwords), ACCEL_EVERY, positions)
    assert pos == len(dwords)
    seg = scan_ring(array("I", dwords), engine, FUZZ_MEMORY)
    assert walked == seg.scanned
    assert list(positions) == [offset // 4 for offset, _ in seg.commands]


def test_the_bench_streams_scan_alike_and_in_c() -> None:
    null = null_state_batch(GEN9_NULL_STATE)
    rcs = Frame(Engine.RCS, 1, True, MEMORY)
    assert scan_batch(BufferSource(null), rcs, 0, ACCEL) == scan_batch(BufferSource(null), rcs, 0)
    for engine in (Engine.RCS, Engine.BCS):
        ring = array("I", request(engine, 9, 0x100000, secure=False) * 16)
        assert scan_ring(ring, engine, MEMORY, ACCEL) == scan_ring(ring, engine, MEMORY)
    n = 100_000
    sdi = array("I", c.sdi(0x1000, 7, ggtt=True) * n + [c.MI_BATCH_BUFFER_END])
    seg = scan_batch(BufferSource(sdi), rcs, 0, ACCEL)
    assert seg == scan_batch(BufferSource(sdi), rcs, 0) and seg.scanned == n + 1
    assert ACCEL is not None
    walk = ACCEL.walker(rcs, ACCEL_EVERY)
    assert walk.walk(sdi, 0, len(sdi), ACCEL_EVERY, array("I")) == (ACCEL_EVERY * 4, ACCEL_EVERY)


def test_a_compiled_scan_looks_at_the_clock_every_accel_every_commands() -> None:
    dwords = array("I", [c.MI_ARB_CHECK, 0, *c.sdi(0x1000, 7, ggtt=True), 0, c.MI_ARB_ON_OFF] * 6000)
    dwords.append(c.MI_BATCH_BUFFER_END)
    scan = batch_scan(BufferSource(dwords), Frame(Engine.RCS, 1, True, MEMORY), 0, ACCEL)
    steps, seg = 0, None
    while seg is None:
        before = scan.scanned
        seg = scan.step(0.0, lambda: 1.0)
        assert scan.scanned - before <= ACCEL_EVERY + 32
        steps += 1
    assert seg.scanned == 6000 * 5 + 1 and steps >= seg.scanned // (ACCEL_EVERY + 32)
