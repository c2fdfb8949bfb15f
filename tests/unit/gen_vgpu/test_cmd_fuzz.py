"""Property tests: streams of valid commands scan clean and decode to what was encoded; any
dwords at all are either accepted or refused with CommandRejected, never anything else, and
what is accepted breaks none of the scanner's rules (checked by an oracle written from the
rules, not with the scanner's code); the scan in steps and in one call decide alike."""

from __future__ import annotations

from array import array
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

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
    scan_next,
    scan_ring,
)
from gen_vgpu.cmd.engines import ENGINE_MMIO_BASE
from gen_vgpu.cmd.records import (
    ArbCheck,
    ArbOnOff,
    Atomic,
    BatchEnd,
    BatchStart,
    ColorBlt,
    Command,
    CondBatchEnd,
    CopyMemMem,
    FlushDw,
    GfxState,
    LoadRegisterImm,
    LoadRegisterMem,
    LoadRegisterReg,
    Noop,
    PipeControl,
    PostSync,
    SemaphoreWait,
    SrcCopyBlt,
    StoreDataImm,
    StoreRegisterMem,
    UserInterrupt,
)
from gen_vgpu.mmio.table import may_read, may_write

from . import cmd_streams as c

MEMORY = GraphicsMemory.sized(256 << 20, 256 << 20)
GGTT_END = 512 << 20
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
addr48 = st.integers(0, (1 << 48) - 1)

Item = tuple[list[int], "Command | None"]
SKIPPED = (Noop, ArbCheck, ArbOnOff)  # encoding, and the record the scan lists (None: skipped)


def _sdi() -> st.SearchStrategy[Item]:
    def build(qword: bool, ggtt: bool, a: int, v: int) -> Item:
        size = 8 if qword else 4
        a = (a % (GGTT_END - size) if ggtt else a) & ~(size - 1)
        v = v if qword else v & 0xFFFFFFFF
        return c.sdi(a, v, ggtt=ggtt, qword=qword), StoreDataImm(a, ggtt, size, v)

    return st.builds(build, st.booleans(), st.booleans(), addr48, u64)


def _lri(engine: Engine) -> st.SearchStrategy[Item]:
    offsets = st.sampled_from([0x3A8, 0x358, 0x50, 0xC0, 0x9C, 0x600])
    pairs = st.lists(st.tuples(offsets.map(lambda o: ENGINE_MMIO_BASE[engine] + o), u32), min_size=1, max_size=126)
    return pairs.map(lambda p: (c.lri(*p), LoadRegisterImm(tuple(p))))


def _srm(engine: Engine) -> st.SearchStrategy[Item]:
    def build(o: int, a: int, ggtt: bool) -> Item:
        a = (a % (GGTT_END - 4) if ggtt else a) & ~3
        reg = ENGINE_MMIO_BASE[engine] + o * 4
        return c.srm(reg, a, ggtt=ggtt), StoreRegisterMem(reg, a, ggtt)

    return st.builds(build, st.integers(0, 1023), addr48, st.booleans())


def _flush_dw() -> st.SearchStrategy[Item]:
    def build(op: int, ggtt: bool, index: bool, notify: bool, tlb: bool, qword: bool, a: int, v: int) -> Item:
        size = {0: 0, 1: 8 if qword else 4, 3: 8}[op]
        if index:
            a = (a % (4096 - 8)) & ~7
        elif ggtt:
            a = (a % (GGTT_END - 8)) & ~7
        else:
            a &= ~7
        flags = op << 14 | (c.MI_FLUSH_DW_STORE_INDEX if index else 0) | (c.MI_FLUSH_DW_NOTIFY if notify else 0)
        flags |= c.MI_INVALIDATE_TLB if tlb else 0
        v = v if qword else v & 0xFFFFFFFF
        rec = FlushDw(PostSync(op), a, ggtt, index, size, v, notify, tlb)
        return c.flush_dw(a | (c.MI_FLUSH_DW_USE_GTT if ggtt else 0), v, flags, qword=qword), rec

    b = st.booleans()
    return st.builds(build, st.sampled_from([0, 1, 3]), b, b, b, b, b, addr48, u64)


def _pipe_control() -> st.SearchStrategy[Item]:
    def build(op: int, ggtt: bool, index: bool, notify: bool, a: int, v: int, other: int) -> Item:
        if index:
            a = (a % (4096 - 8)) & ~7
        elif ggtt:
            a = (a % (GGTT_END - 8)) & ~7
        else:
            a &= ~7
        flags = other & 0x001F3EFF & ~(3 << 14 | 1 << 8) | op << 14
        flags |= (
            (c.PC_GLOBAL_GTT if ggtt else 0) | (c.PC_STORE_DATA_INDEX if index else 0) | (c.PC_NOTIFY if notify else 0)
        )
        rec = PipeControl(flags, PostSync(op), a, ggtt, index, v, notify, bool(flags & c.PC_TLB_INVALIDATE))
        return c.pipe_control(flags, a, v), rec

    b = st.booleans()
    return st.builds(build, st.integers(0, 3), b, b, b, addr48, u64, u32)


def _blits() -> st.SearchStrategy[Item]:
    coord = st.integers(0, 0x7FFF)
    pitch = st.integers(0, 0x1FFF).map(lambda p: p * 4)

    def color(dst: int, p: int, x: int, y: int, w: int, h: int, col: int) -> Item:
        x2, y2 = min(x + w, 0x7FFF), min(y + h, 0x7FFF)
        return c.color_blt(dst, p, x, y, x2, y2, col), ColorBlt(dst, p, x, y, x2, y2, col, 0xF0)

    def copy(dst: int, p: int, x: int, y: int, w: int, h: int, src: int, sp: int, sx: int, sy: int) -> Item:
        x2, y2 = min(x + w, 0x7FFF), min(y + h, 0x7FFF)
        return (
            c.src_copy_blt(dst, p, x, y, x2, y2, src, sp, sx, sy),
            SrcCopyBlt(dst, p, x, y, x2, y2, src, sp, sx, sy, 0xCC),
        )

    return st.builds(color, addr48, pitch, coord, coord, coord, coord, u32) | st.builds(
        copy, addr48, pitch, coord, coord, coord, coord, addr48, pitch, coord, coord
    )


def _gfx_state() -> st.SearchStrategy[Item]:
    def build(sub: int, opcode: int, subop: int, n: int, fill: int) -> Item:
        if (sub, opcode, subop) == (3, 2, 0):  # that header is PIPE_CONTROL
            subop = 1
        header = 0x60000000 | sub << 27 | opcode << 24 | subop << 16 | n
        if sub == 1:  # single-dword forms
            return [header], GfxState(header, 1, (header,))
        dwords = [header] + [fill] * (n + 1)
        return dwords, GfxState(header, n + 2, tuple(dwords))

    ints = st.integers
    return st.builds(build, ints(0, 3), ints(0, 7), ints(0, 0xFF), ints(0, 0xFF), u32)


def _common(engine: Engine) -> st.SearchStrategy[Item]:
    return st.one_of(
        st.just(([c.MI_NOOP], None)),
        st.just(([c.MI_ARB_CHECK], None)),
        st.booleans().map(lambda e: ([c.MI_ARB_ON_OFF | e], None)),
        st.just(([c.MI_USER_INTERRUPT], UserInterrupt())),
        _sdi(),
        _lri(engine),
        _srm(engine),
        st.builds(
            lambda a, p: (c.bb_start(a, ppgtt=p), BatchStart(a, p, False)),
            st.integers(0, (GGTT_END >> 2) - 1).map(lambda a: a * 4),
            st.booleans(),
        ),
    )


def items(engine: Engine) -> st.SearchStrategy[Item]:
    extra = {
        Engine.RCS: st.one_of(_pipe_control(), _gfx_state()),
        Engine.BCS: st.one_of(_flush_dw(), _blits()),
        Engine.VCS0: _flush_dw(),
        Engine.VECS0: _flush_dw(),
    }[engine]
    return st.one_of(_common(engine), extra)


@st.composite
def streams(draw: st.DrawFn) -> tuple[Engine, list[Item]]:
    engine = draw(st.sampled_from(list(Engine)))
    return engine, draw(st.lists(items(engine), max_size=40))


@settings(max_examples=300, deadline=None)
@given(streams())
def test_valid_streams_scan_clean_and_round_trip(stream: tuple[Engine, list[Item]]) -> None:
    engine, cmds = stream
    dwords = array("I", [d for enc, _ in cmds for d in enc])
    seg = scan_ring(dwords, engine, MEMORY)
    assert [r for _, r in seg.commands] == [rec for _, rec in cmds if rec is not None]
    assert seg.length == len(dwords)
    # The same stream, one command at a time, as a privileged batch ending in MI_BATCH_BUFFER_END.
    src = BufferSource(array("I", [*dwords, c.MI_BATCH_BUFFER_END]))
    frame = Frame(engine, 1, True, MEMORY)
    pos, seen = 0, []
    while pos < len(dwords):
        step = scan_next(src, pos, frame)
        seen.append(step.command)
        pos += step.length
    assert pos == len(dwords)
    assert [r for r in seen if not isinstance(r, SKIPPED)] == [rec for _, rec in cmds if rec is not None]
    # In a batch, a (non-second-level) MI_BATCH_BUFFER_START is a chain: the batch ends there.
    ends = [i for i, (enc, rec) in enumerate(cmds) if isinstance(rec, BatchStart)]
    expected = sum(len(enc) for enc, _ in cmds[: ends[0] + 1]) if ends else len(dwords) + 1
    assert scan_batch(src, frame).length == expected


headers = st.sampled_from(
    [0x10000002, 0x10600003, 0x11000001, 0x11000003, 0x12400002, 0x13004002, 0x18800001, 0x18800101, 0x18C00001,
     0x7A000004, 0x6101000E, 0x69040000, 0x54300005, 0x54F00008, 0x05000000, 0x01000000, 0x04000001,
     0x1B200002, 0x1B600002, 0x0E008002, 0x0E40C002, 0x0D000001, 0x15000001, 0x14800002, 0x14C00002,
     0x17000003, 0x17600003, 0x17800501, 0x17840709, 0x10800001, 0x10A00002, 0x03800000]
)  # fmt: skip
garbage = st.lists(st.one_of(u32, headers, st.just(0), st.integers(0x2000, 0x3000)), max_size=200)


def violations(records: list[Command], frame: Frame) -> list[str]:
    """What the contract forbids in ``records`` run in ``frame``, checked here from the rules
    themselves, not with the scanner's code: an accepted stream must have none."""
    bad: list[str] = []

    def ggtt(address: int, size: int) -> None:
        if not frame.privileged:
            bad.append("GGTT access from a PPGTT batch")
        elif not MEMORY.contains(address, size):
            bad.append(f"GGTT access outside graphics memory at {address:#x}")

    for rec in records:
        if (
            isinstance(rec, StoreDataImm | StoreRegisterMem | LoadRegisterMem | CondBatchEnd | SemaphoreWait)
            and rec.ggtt
        ):
            ggtt(rec.address, rec.size if isinstance(rec, StoreDataImm) else 4)
        if isinstance(rec, Atomic) and rec.ggtt:
            ggtt(rec.address, rec.size)
        if isinstance(rec, CopyMemMem):
            if rec.src_ggtt:
                ggtt(rec.src, 4)
            if rec.dst_ggtt:
                ggtt(rec.dst, 4)
        if isinstance(rec, FlushDw | PipeControl) and rec.post_sync is not PostSync.NONE:
            if rec.store_index:
                if not frame.privileged:
                    bad.append("store index from a PPGTT batch")
            elif rec.ggtt:
                ggtt(rec.address, 8 if isinstance(rec, PipeControl) else rec.size)
        # MI_STORE_DATA_INDEX from a PPGTT batch is accepted: it runs as a no-op (hardware's
        # privilege check), which test_cmd_igt holds.
        if isinstance(rec, LoadRegisterImm):
            bad += [f"LRI {r:#x}" for r, _ in rec.writes if not may_write(frame.engine, r)]
        if isinstance(rec, StoreRegisterMem) and not may_read(frame.engine, rec.register):
            bad.append(f"SRM {rec.register:#x}")
        if isinstance(rec, LoadRegisterMem) and not may_write(frame.engine, rec.register):
            bad.append(f"LRM {rec.register:#x}")
        if isinstance(rec, LoadRegisterReg) and not (
            may_read(frame.engine, rec.src) and may_write(frame.engine, rec.dst)
        ):
            bad.append(f"LRR {rec.src:#x} -> {rec.dst:#x}")
        if isinstance(rec, BatchEnd | CondBatchEnd) and frame.level == 0:
            bad.append("batch end in the ring")
        if isinstance(rec, BatchStart):
            if rec.second_level and frame.level in (0, 2):
                bad.append("second-level batch from the ring or a second-level batch")
            if not rec.ppgtt:
                ggtt(rec.address, 4)
    return bad


def _stepped(scan: Scan) -> Segment:
    """The scan, one CLOCK_EVERY slice per step (a clock that is always past the deadline)."""
    while True:
        seg = scan.step(0.0, lambda: 1.0)
        if seg is not None:
            return seg


def _outcome(fn: Callable[[], Segment]) -> tuple[Segment | None, tuple[int, str] | None]:
    try:
        return fn(), None
    except CommandRejected as e:
        return None, (e.offset, e.reason)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(list(Engine)), garbage, st.integers(0, 2), st.booleans())
def test_garbage_is_accepted_only_when_it_breaks_no_rule(
    engine: Engine, dwords: list[int], level: int, priv: bool
) -> None:
    """Any dwords are accepted or refused with CommandRejected, never anything else; what is
    accepted breaks none of the rules (checked independently of the scanner); the scan in
    steps decides exactly as the scan in one call; and a refusal is at the first command a
    command-by-command walk refuses, with everything before it accepted."""
    buf = array("I", dwords)
    ring, ring_err = _outcome(lambda: scan_ring(buf, engine, MEMORY))
    stepped, stepped_err = _outcome(lambda: _stepped(ring_scan(BufferSource(buf), len(buf), engine, MEMORY)))
    assert (ring, ring_err) == (stepped, stepped_err)
    if ring is not None:
        assert violations([rec for _, rec in ring.commands], Frame.ring(engine, MEMORY)) == []
        assert ring.length == len(buf)
    frame = Frame(engine, max(level, 1), priv, MEMORY)
    batch, batch_err = _outcome(lambda: scan_batch(BufferSource(buf), frame, 0))
    assert (batch, batch_err) == _outcome(lambda: _stepped(batch_scan(BufferSource(buf), frame, 0)))
    if batch is not None:
        assert violations([rec for _, rec in batch.commands], frame) == []
    # One command at a time: every accepted command breaks no rule, and in the ring's frame
    # the walk refuses exactly where the ring scan refused (or nowhere, if it accepted).
    walk_frame = Frame(engine, level, priv, MEMORY)
    pos, walk_err = 0, None
    try:
        while pos < len(buf):
            step = scan_next(BufferSource(buf), pos, walk_frame)
            assert violations([step.command], walk_frame) == []
            pos += step.length
    except CommandRejected as e:
        walk_err = e.offset
        assert e.offset == pos * 4
    if level == 0 and priv:
        assert walk_err == (None if ring_err is None else ring_err[0])
