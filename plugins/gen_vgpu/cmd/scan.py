"""The command scanner: walks a ring segment or a batch and accepts it or rejects it with
the reason, before (ring, GGTT batches) or while (PPGTT batches) an engine runs it.

A ``Frame`` says where commands are running: which engine, the nesting level (0 ring, 1 first-
level batch, 2 second-level batch), whether the buffer is privileged (the ring and GGTT
batches are; PPGTT batches are not) and this vGPU's graphics memory. Per command the scanner
checks, besides what the decoders check (exact length, fields, engine):

- LRI targets and SRM sources against the register table's command access (mmio/table.py);
- every GGTT-addressed write (SDI, SRM, MI_FLUSH_DW, PIPE_CONTROL post-sync) lies, with its
  access length, inside the graphics memory, and only privileged buffers use the GGTT or the
  store-index forms;
- MI_BATCH_BUFFER_START: a second-level batch never from the ring and never from a second-level
  batch (no deeper than two levels), a GGTT batch only from a privileged buffer and inside the
  graphics memory; MI_BATCH_BUFFER_END never in the ring.

Three entry points share one loop: ``scan_ring`` (a copied ring segment, scanned whole),
``scan_batch`` (a batch read from a DwordSource up to its MI_BATCH_BUFFER_END or chained
MI_BATCH_BUFFER_START), ``scan_next`` (one command at a time, for PPGTT batches as they run).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import NamedTuple, Protocol

from ..mmio.table import may_read, may_write
from . import opcodes as op
from .decode import DISPATCH, Dwords, Entry, command_name, header
from .engines import Engine
from .opcodes import CommandSpec
from .ranges import GraphicsMemory
from .records import (
    BatchStart,
    Command,
    FlushDw,
    LoadRegisterImm,
    PipeControl,
    PostSync,
    StoreDataImm,
    StoreRegisterMem,
)
from .reject import CommandRejected, FieldError

__all__ = [
    "MAX_BATCH_DWORDS",
    "MAX_LEVEL",
    "BatchRef",
    "BufferSource",
    "DwordSource",
    "Frame",
    "Segment",
    "Step",
    "scan_batch",
    "scan_next",
    "scan_ring",
]

MAX_LEVEL = 2  # ring -> first-level batch -> second-level batch
MAX_BATCH_DWORDS = 1 << 20  # 4 MiB: a batch with no end within this is refused
CHUNK_DWORDS = 1024  # scan_batch reads a page at a time


class Frame(NamedTuple):
    engine: Engine
    level: int
    privileged: bool
    memory: GraphicsMemory

    @classmethod
    def ring(cls, engine: Engine, memory: GraphicsMemory) -> Frame:
        return cls(engine, 0, True, memory)

    def enter(self, bb: BatchStart) -> Frame:
        """The frame the batch ``bb`` starts runs in, or FieldError if it may not start."""
        if bb.second_level:
            if self.level == 0:
                raise FieldError("a second-level batch cannot start from the ring")
            if self.level >= MAX_LEVEL:
                raise FieldError(f"batches nested deeper than {MAX_LEVEL} levels")
            level = self.level + 1
        else:
            level = max(self.level, 1)  # from the ring: level 1; from a batch: a chain, same level
        if not bb.ppgtt:
            if not self.privileged:
                raise FieldError("a GGTT batch cannot start from a non-privileged (PPGTT) batch")
            if not self.memory.contains(bb.address, 4):
                raise FieldError(f"GGTT batch at {bb.address:#x} outside this vGPU's graphics memory {self.memory}")
        return Frame(self.engine, level, not bb.ppgtt, self.memory)


class BatchRef(NamedTuple):
    offset: int  # byte offset of the MI_BATCH_BUFFER_START in the scanned buffer
    start: BatchStart
    frame: Frame  # where the batch it starts runs


class Segment(NamedTuple):
    """A scanned buffer: what the engine executes, in order, and the batches it starts."""

    commands: list[tuple[int, Command]]  # (byte offset, record); skipped commands left out
    batches: list[BatchRef]
    length: int  # dwords scanned (for a batch: to the end of its terminating command)


class Step(NamedTuple):
    command: Command
    length: int  # dwords
    child: Frame | None  # for MI_BATCH_BUFFER_START: the frame of the batch it starts


class DwordSource(Protocol):
    def read(self, pos: int, count: int) -> Dwords:
        """Up to ``count`` dwords from dword ``pos`` of the buffer; fewer only where readable
        memory ends."""
        ...


class BufferSource:
    """A DwordSource over dwords already in host memory."""

    __slots__ = ("dwords",)

    def __init__(self, dwords: Dwords) -> None:
        self.dwords = dwords

    def read(self, pos: int, count: int) -> Dwords:
        return self.dwords[pos : pos + count]


# --- per-command checks that need the frame --------------------------------------------------


def _ggtt_write(frame: Frame, address: int, size: int) -> None:
    if not frame.privileged:
        raise FieldError("GGTT access from a non-privileged (PPGTT) batch")
    if not frame.memory.contains(address, size):
        raise FieldError(
            f"GGTT range [{address:#x}, {address + size:#x}) outside this vGPU's graphics memory {frame.memory}"
        )


def _post_sync(frame: Frame, store_index: bool, ggtt: bool, address: int, size: int) -> None:
    if store_index:
        if not frame.privileged:
            raise FieldError("store-index form from a non-privileged (PPGTT) batch")
    elif ggtt:
        _ggtt_write(frame, address, size)


def _check_sdi(rec: Command, frame: Frame) -> Frame | None:
    assert isinstance(rec, StoreDataImm)
    if rec.ggtt:
        _ggtt_write(frame, rec.address, rec.size)
    return None


def _check_lri(rec: Command, frame: Frame) -> Frame | None:
    assert isinstance(rec, LoadRegisterImm)
    for register, _ in rec.writes:
        if not may_write(frame.engine, register):
            raise FieldError(f"register {register:#x} is not on {frame.engine.name}'s write allow-list")
    return None


def _check_srm(rec: Command, frame: Frame) -> Frame | None:
    assert isinstance(rec, StoreRegisterMem)
    if not may_read(frame.engine, rec.register):
        raise FieldError(f"register {rec.register:#x} is not on {frame.engine.name}'s read allow-list")
    if rec.ggtt:
        _ggtt_write(frame, rec.address, 4)
    return None


def _check_flush_dw(rec: Command, frame: Frame) -> Frame | None:
    assert isinstance(rec, FlushDw)
    if rec.post_sync is not PostSync.NONE:
        _post_sync(frame, rec.store_index, rec.ggtt, rec.address, rec.size)
    return None


def _check_pipe_control(rec: Command, frame: Frame) -> Frame | None:
    assert isinstance(rec, PipeControl)
    if rec.post_sync is not PostSync.NONE:
        _post_sync(frame, rec.store_index, rec.ggtt, rec.address, 8)
    return None


def _check_batch_start(rec: Command, frame: Frame) -> Frame | None:
    assert isinstance(rec, BatchStart)
    return frame.enter(rec)


def _check_batch_end(rec: Command, frame: Frame) -> Frame | None:
    if frame.level == 0:
        raise FieldError("MI_BATCH_BUFFER_END outside a batch")
    return None


Check = Callable[[Command, Frame], Frame | None]
CHECKS: dict[CommandSpec, Check] = {
    op.MI_STORE_DATA_IMM: _check_sdi,
    op.MI_LOAD_REGISTER_IMM: _check_lri,
    op.MI_STORE_REGISTER_MEM: _check_srm,
    op.MI_FLUSH_DW: _check_flush_dw,
    op.PIPE_CONTROL: _check_pipe_control,
    op.MI_BATCH_BUFFER_START: _check_batch_start,
    op.MI_BATCH_BUFFER_END: _check_batch_end,
}


def _rejected(err: FieldError, frame: Frame, offset: int, dw0: int) -> CommandRejected:
    return CommandRejected(
        str(err),
        command=command_name(frame.engine, dw0),
        offset=offset,
        engine=frame.engine,
        level=frame.level,
        header=dw0,
    )


# --- the loop ---------------------------------------------------------------------------------


def _scan(buf: Dwords, end: int, frame: Frame, base: int, out: Segment, final: bool) -> tuple[int, bool]:
    """Scan ``buf[0:end]``, whose dword 0 is dword ``base`` of the buffer, appending to ``out``.

    Returns (position reached, whether a batch ended there). Unless ``final``, stops before a
    command that does not fit in ``buf`` so the caller can read more.
    """
    table = DISPATCH[frame.engine]
    engine = frame.engine
    commands = out.commands
    pos = 0
    dw0 = 0
    bb_start = op.MI_BATCH_BUFFER_START
    bb_end = op.MI_BATCH_BUFFER_END
    try:
        while pos < end:
            dw0 = buf[pos]
            if dw0 == 0:  # MI_NOOP: padding, and 256 of them in the null render state
                pos += 1
                continue
            entry, n = header(table, engine, dw0)
            if pos + n > end:
                if not final:
                    return pos, False
                raise FieldError(f"{n}-dword command runs past the end of the buffer ({end - pos} dwords left)")
            rec = entry.decode(buf, pos, n, dw0)
            spec = entry.spec
            check = CHECKS.get(spec)
            child = check(rec, frame) if check is not None else None
            if not entry.skip:
                commands.append(((base + pos) * 4, rec))
            pos += n
            if spec is bb_start:
                assert isinstance(rec, BatchStart) and child is not None
                out.batches.append(BatchRef((base + pos - n) * 4, rec, child))
                if frame.level and not rec.second_level:
                    return pos, True  # chained: this batch does not continue
            elif spec is bb_end:
                return pos, True
    except FieldError as e:
        raise _rejected(e, frame, (base + pos) * 4, dw0) from None
    return pos, False


def scan_ring(dwords: Dwords, engine: Engine, memory: GraphicsMemory) -> Segment:
    """Scan a ring segment (the commands between head and tail, copied out and unwrapped)."""
    out = Segment([], [], 0)
    pos, _ = _scan(dwords, len(dwords), Frame.ring(engine, memory), 0, out, True)
    return out._replace(length=pos)


def _entry_for(frame: Frame, dw0: int) -> tuple[Entry, int]:
    return header(DISPATCH[frame.engine], frame.engine, dw0)


def scan_batch(src: DwordSource, frame: Frame, address: int | None = None) -> Segment:
    """Scan a batch from dword 0 of ``src`` to its end, reading a page at a time.

    ``frame`` is the batch's own frame (from ``Frame.enter``). For a GGTT batch give its
    ``address``: the scan then never reads past the end of the graphics memory range it
    starts in.
    """
    limit = MAX_BATCH_DWORDS
    if address is not None and frame.privileged:
        limit = min(limit, frame.memory.span_from(address) // 4)
    out = Segment([], [], 0)
    buf = array("I")
    base = 0  # buffer position of buf[0]
    while True:
        have = base + len(buf)
        want = min(CHUNK_DWORDS, limit - have)
        more = src.read(have, want) if want > 0 else ()
        final = len(more) < want or want <= 0
        buf.extend(more)
        pos, ended = _scan(buf, len(buf), frame, base, out, final)
        if ended:
            return out._replace(length=base + pos)
        if final:
            offset = (base + pos) * 4
            raise _rejected(
                FieldError(
                    f"no MI_BATCH_BUFFER_END within {base + len(buf)} dwords "
                    f"(limit {limit}: the end of readable or graphics memory, or {MAX_BATCH_DWORDS} dwords)"
                ),
                frame,
                offset,
                buf[pos] if pos < len(buf) else 0,
            )
        del buf[:pos]
        base += pos


def scan_next(src: DwordSource, pos: int, frame: Frame) -> Step:
    """Decode and check the one command at dword ``pos`` of ``src``, for an engine that scans
    a PPGTT batch as it runs it."""
    head = src.read(pos, 1)
    dw0 = head[0] if len(head) else 0
    try:
        if not len(head):
            raise FieldError("the batch runs past readable memory")
        entry, n = _entry_for(frame, dw0)
        buf = src.read(pos, n) if n > 1 else head
        if len(buf) < n:
            raise FieldError(f"{n}-dword command runs past readable memory")
        rec = entry.decode(buf, 0, n, dw0)
        check = CHECKS.get(entry.spec)
        return Step(rec, n, check(rec, frame) if check is not None else None)
    except FieldError as e:
        raise _rejected(e, frame, pos * 4, dw0) from None
