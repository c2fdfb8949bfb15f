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

import functools
from array import array
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devmodel import accel as accel_module
from gen_vgpu import GenVgpu
from gen_vgpu.cmd import (
    BufferSource,
    CommandRejected,
    DwordSource,
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
from .test_cmd_fuzz import _blits, _flush_dw, _gfx_state, _pipe_control, garbage, items
from .test_cmd_i915 import GEN9_NULL_STATE, null_state_batch, request

_MODULE = accel_module.load(True)
pytestmark = pytest.mark.skipif(not has_scan_accel(_MODULE), reason="the compiled accelerator is not installed")
ACCEL = ScanAccel(_MODULE) if has_scan_accel(_MODULE) and _MODULE is not None else None

MiB = 1 << 20
# Two spans with a hole, as test_cmd_scan's: [0, 256M) + [512M, 576M).
MEMORY = GraphicsMemory(range(256 * MiB), range(512 * MiB, 576 * MiB))
# Ends that are not 8-byte aligned, where an aligned qword can start inside and end outside.
ODD_MEMORY = GraphicsMemory(range(0x1000, 256 * MiB - 4), range(512 * MiB + 4, 576 * MiB - 4))
memories = st.sampled_from([MEMORY, ODD_MEMORY])
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


_ADDR = st.sampled_from(_ADDRESSES)
_OPS = st.integers(1, 15)


def _kinds(engine: Engine) -> dict[str, st.SearchStrategy[list[int]]]:
    """Per command, its encodings, mostly valid in MEMORY from the privileged ring, with
    fields at the lines the decoders and checks draw (test_cmd_fuzz's items make others)."""
    b, regs = st.booleans(), st.sampled_from(_registers(engine))
    alus = st.lists(st.sampled_from(_FLAG_DWORDS[-10:]), min_size=1, max_size=6)
    return {
        "MI_MATH": alus.map(lambda i: c.math(*i)),
        "MI_LOAD_REGISTER_REG": st.builds(c.lrr, regs, regs),
        "MI_LOAD_REGISTER_IMM": st.lists(st.tuples(regs, u32), min_size=1, max_size=4).map(lambda p: c.lri(*p)),
        "MI_STORE_REGISTER_MEM": st.builds(lambda r, a, g: c.srm(r, a, ggtt=g), regs, _ADDR, b),
        "MI_LOAD_REGISTER_MEM": st.builds(lambda r, a, g: c.lrm(r, a, ggtt=g), regs, _ADDR, b),
        "MI_COPY_MEM_MEM": st.builds(
            lambda d, s, gd, gs: c.copy_mem_mem(d, s, dst_ggtt=gd, src_ggtt=gs), _ADDR, _ADDR, b, b
        ),
        "MI_ATOMIC": st.builds(
            lambda a, op, q, g, inline: c.atomic(a, op, *([1, 2] if inline else []), qword=q, ggtt=g),
            _ADDR, _OPS, b, b, b,
        ),
        "MI_STORE_DATA_INDEX": st.builds(lambda o, v, q: c.store_data_index(o, v, qword=q), _ADDR, u32, b),
        "MI_CONDITIONAL_BATCH_BUFFER_END": st.builds(lambda a, v, g: c.cond_bb_end(a, v, ggtt=g), _ADDR, u32, b),
        "MI_SEMAPHORE_WAIT": st.builds(
            lambda a, v, op, g: c.semaphore_wait(a, v, op, ggtt=g), _ADDR, u32, st.integers(0, 7), b
        ),
        "MI_STORE_DATA_IMM": st.builds(lambda a, v, q, g: c.sdi(a, v, qword=q, ggtt=g), _ADDR, u32, b, b),
        "MI_BATCH_BUFFER_START": st.builds(
            lambda a, p, second: c.bb_start(a, ppgtt=p, second_level=second), _ADDR, b, b
        ),
    }  # fmt: skip


def more_commands(engine: Engine) -> st.SearchStrategy[list[int]]:
    return st.one_of(*_kinds(engine).values())


# Bits where the decoders and checks draw lines: alignment, post-sync, GGTT, store index, sign.
_BITS = st.one_of(st.integers(0, 31), st.integers(0, 3), st.sampled_from([7, 8, 11, 14, 15, 16, 18, 21, 22, 23, 24]))


@st.composite
def mutated(draw: st.DrawFn, command: list[int], engine: Engine) -> list[int]:
    """``command``, or a copy with one dword changed: a bit flipped, moved by a little, or
    replaced by a value at a line."""
    how = draw(st.integers(0, 5))
    if how > 2:
        return command
    out = list(command)
    i = draw(st.integers(0, len(out) - 1))
    if how == 0:
        out[i] ^= 1 << draw(_BITS)
    elif how == 1:
        out[i] = (out[i] + draw(st.sampled_from([-8, -4, -1, 1, 4, 8, 0x1000]))) & 0xFFFFFFFF
    else:
        out[i] = draw(field_values(engine))
    return out


@st.composite
def buffers(draw: st.DrawFn) -> tuple[Engine, list[int]]:
    engine = draw(st.sampled_from(list(Engine)))
    valid = st.one_of(items(engine).map(lambda item: item[0]), more_commands(engine))
    parts: list[list[int]] = draw(
        st.lists(
            st.one_of(
                from_table(engine),
                valid.flatmap(lambda cmd: mutated(cmd, engine)),
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


def frames(engine: Engine, memory: GraphicsMemory = MEMORY) -> list[Frame]:
    return [Frame(engine, level, priv, memory) for level in (1, 2) for priv in (True, False)]


BATCH_AT = 0x1000  # a GGTT batch's address, inside both memories


def alike(src: DwordSource, frame: Frame) -> Outcome:
    """A batch scanned on the Python path and with the compiled walk, whole and in the
    smallest steps: one outcome."""
    python = outcome(lambda: scan_batch(src, frame, BATCH_AT))
    assert outcome(lambda: scan_batch(src, frame, BATCH_AT, ACCEL)) == python
    return python


def same_on_both_paths(engine: Engine, dwords: list[int], memory: GraphicsMemory) -> None:
    buf = array("I", dwords)
    python = outcome(lambda: scan_ring(buf, engine, memory))
    assert outcome(lambda: scan_ring(buf, engine, memory, ACCEL)) == python
    assert outcome(lambda: stepped(ring_scan(BufferSource(buf), len(buf), engine, memory, ACCEL))) == python
    for frame in frames(engine, memory):
        python = alike(BufferSource(buf), frame)
        assert outcome(functools.partial(_stepped_batch, buf, frame)) == python


def _stepped_batch(buf: array[int], frame: Frame) -> Segment:
    return stepped(batch_scan(BufferSource(buf), frame, BATCH_AT, ACCEL))


@settings(max_examples=800, deadline=None)
@given(buffers(), memories)
def test_table_built_and_mutated_buffers_scan_alike_on_both_paths(
    case: tuple[Engine, list[int]], memory: GraphicsMemory
) -> None:
    same_on_both_paths(*case, memory)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Engine)), garbage, memories)
def test_any_dwords_scan_alike_on_both_paths(engine: Engine, dwords: list[int], memory: GraphicsMemory) -> None:
    same_on_both_paths(engine, dwords, memory)


def _variants(command: list[int]) -> list[list[int]]:
    """``command`` and every copy of it with one of its first dwords (the header and the
    fields: a 3D state's payload is not read) changed by one bit or by a little."""
    out = [command]
    for i, dw in enumerate(command[:12]):
        changed = {dw ^ 1 << bit for bit in range(32)}
        changed |= {(dw + d) & 0xFFFFFFFF for d in (-0x10000, -8, -4, -1, 1, 4, 8, 0x10000)}
        out += [[*command[:i], v, *command[i + 1 :]] for v in sorted(changed - {dw})]
    return out


# Per command, on which engines, and its encodings (test_cmd_fuzz's for the engine-specific).
_FUZZ_ITEMS = {
    "MI_FLUSH_DW": _flush_dw(),
    "PIPE_CONTROL": _pipe_control(),
    "XY blits": _blits(),
    "3D state": _gfx_state(),
}
_BY_KIND = [
    *((kind, list(Engine)) for kind in _kinds(Engine.RCS)),
    ("MI_FLUSH_DW", [Engine.BCS, Engine.VCS0, Engine.VECS0]),
    ("PIPE_CONTROL", [Engine.RCS]),
    ("XY blits", [Engine.BCS]),
    ("3D state", [Engine.RCS]),
]


@pytest.mark.parametrize(("kind", "engines"), _BY_KIND, ids=[k for k, _ in _BY_KIND])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_command_one_bit_or_step_from_a_valid_one_scans_alike(
    kind: str, engines: list[Engine], data: st.DataObject
) -> None:
    """A command (valid, or with a field at a line) and its every neighbour (one bit flipped,
    or one dword moved by a little), in the ring (privileged, level 0) and in a PPGTT batch."""
    engine = data.draw(st.sampled_from(engines))
    memory = data.draw(memories)
    item = _FUZZ_ITEMS.get(kind)
    command = data.draw(item.map(lambda i: i[0]) if item is not None else _kinds(engine)[kind])
    ppgtt = Frame(engine, 1, False, memory)
    for variant in _variants(command):
        buf = array("I", variant)
        ring = functools.partial(scan_ring, buf, engine, memory)
        assert outcome(functools.partial(ring, accel=ACCEL)) == outcome(ring), variant
        alike(BufferSource(array("I", [*variant, c.MI_BATCH_BUFFER_END])), ppgtt)


@pytest.mark.parametrize("engine", list(Engine))
def test_every_header_of_every_row_scans_alike(engine: Engine) -> None:
    """Every row's header with every value of its length field (and each flag and reserved
    bit set alone), the body valid where a zero is not (LRI's registers)."""
    register = min(command_access(engine)[0])
    for spec in SPECS:
        field_mask = spec.len_mask if spec.rule is not LengthRule.GFX else 0xFF
        extra = [0, *(1 << b for b in range(32) if not (spec.header | field_mask) >> b & 1 and 1 << b & ~spec.mask)]
        for field in range(min(field_mask, 0x1FF) + 1):
            for bits in extra if field < 8 else [0]:
                dw0 = spec.header | field | bits
                body = [register, 0] * 130 if spec.rule is LengthRule.LRI else [0] * 260
                buf = array("I", [dw0, *body[: (dw0 & 0xFF) + 1]])
                buf.append(c.MI_BATCH_BUFFER_END)
                for level in (0, 1):
                    alike(BufferSource(buf), Frame(engine, level, True, MEMORY))


def _ggtt_commands(a: int) -> list[list[int]]:
    """Every form of GGTT access at address ``a``."""
    return [
        c.sdi(a, 1, ggtt=True),
        c.sdi(a, 1, ggtt=True, qword=True),
        c.srm(0x2358, a, ggtt=True),
        c.lrm(0x2600, a, ggtt=True),
        c.pipe_control(c.PC_QW_WRITE | c.PC_GLOBAL_GTT, a),
        c.pipe_control(3 << 14 | c.PC_GLOBAL_GTT, a),
        c.flush_dw(a | c.MI_FLUSH_DW_USE_GTT, 1),
        c.flush_dw(a | c.MI_FLUSH_DW_USE_GTT, 1, qword=True),
        c.flush_dw(a | c.MI_FLUSH_DW_USE_GTT, 1, 3 << 14),
        c.copy_mem_mem(a, 0x1000, dst_ggtt=True),
        c.copy_mem_mem(0x1000, a, src_ggtt=True),
        c.atomic(a, 5, ggtt=True),
        c.atomic(a, 5, ggtt=True, qword=True),
        c.cond_bb_end(a, 0, ggtt=True),
        c.semaphore_wait(a, 0, ggtt=True),
        c.bb_start(a, ppgtt=False),
    ]


@pytest.mark.parametrize("memory", [MEMORY, ODD_MEMORY], ids=["aligned", "odd"])
def test_ggtt_accesses_at_every_edge_of_graphics_memory_scan_alike(memory: GraphicsMemory) -> None:
    edges = [e for span in memory.spans() for e in span]
    for address in sorted({e + d for e in edges for d in range(-16, 17, 4) if e + d >= 0}):
        for command in _ggtt_commands(address):
            buf = array("I", [*command, c.MI_BATCH_BUFFER_END])
            for frame in (Frame(Engine.RCS, 1, True, memory), Frame(Engine.BCS, 2, True, memory)):
                alike(BufferSource(buf), frame)


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
            alike(src, frame)


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
    walk = ACCEL.walker(Frame.ring(engine, FUZZ_MEMORY), ACCEL_EVERY, len(dwords))  # the memory they were made for
    walk.dwords[: len(dwords)] = array("I", dwords)
    positions = array("I")
    pos, walked = walk.walk(0, len(dwords), ACCEL_EVERY, positions)
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
    walk = ACCEL.walker(rcs, ACCEL_EVERY, len(sdi))
    walk.dwords[: len(sdi)] = sdi
    assert walk.walk(0, len(sdi), ACCEL_EVERY, array("I")) == (ACCEL_EVERY * 4, ACCEL_EVERY)


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


def test_the_device_hands_the_walk_to_its_engines() -> None:
    """With the accelerator bound (as the server binds it), every ring and GGTT batch scan of
    the device's engines gets the walk."""
    dev = GenVgpu()
    assert dev.runner.scan_accel is None
    assert _MODULE is not None
    dev.region_accel(_MODULE)
    assert isinstance(dev.runner.scan_accel, ScanAccel)
