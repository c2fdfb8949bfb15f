"""The command scanner: walks a ring segment or a batch and accepts it or rejects it with
the reason, before (ring, GGTT batches) or while (PPGTT batches) an engine runs it.

Per command it applies the row's decoder (exact length, fields, engine) and the row's check
against the ``Frame`` (frame.py: register lists, graphics memory, privilege, nesting).

A ``Scan`` walks a buffer from a DwordSource a page at a time, in steps: each call of
:meth:`Scan.step` stops at a deadline, and everything it keeps between steps is plain data
(positions, the records so far, the unscanned rest of the page), so an engine scans a 4 MiB
batch or a 2 MiB ring across as many loop steps as it needs. ``scan_ring`` and
``scan_batch`` run a scan to its end in one call; ``scan_next`` decodes and checks one
command, for PPGTT batches scanned as they run. Every command walked is counted
(``Segment.scanned``), skipped ones and MI_NOOPs included, for the engine's command limit.

Given the compiled walk (scan_accel.py, ``accel``), a scan lets C walk the commands it knows
exactly and takes over at the first one it does not (an error, a batch start or end, one
that does not fit what was read): Python scans that one command as it does without C, so
both paths accept, refuse and report alike.
"""

from __future__ import annotations

import functools
import time
from array import array
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, overload

from ..graphics_memory import GraphicsMemory
from . import opcodes as op
from .dispatch import DISPATCH, Entry, command_name, header
from .engines import Engine
from .frame import MAX_LEVEL, Frame
from .records import BatchStart, Command
from .reject import CommandRejected, FieldError
from .scan_accel import ScanAccel, ScanWalk
from .spec import Dwords

__all__ = [
    "MAX_BATCH_DWORDS",
    "MAX_LEVEL",
    "BatchRef",
    "BufferSource",
    "Commands",
    "DwordSource",
    "Frame",
    "Scan",
    "Segment",
    "Step",
    "batch_scan",
    "ring_scan",
    "scan_batch",
    "scan_next",
    "scan_ring",
]

MAX_BATCH_DWORDS = 1 << 20  # 4 MiB: a batch with no end within this is refused
CHUNK_DWORDS = 16384  # a scan reads 64 KiB at a time
# Commands between two looks at the clock: the dearest command (an LRI of 126 registers)
# costs well under 0.1 ms, so a step overshoots its deadline by little.
CLOCK_EVERY = 32
# Commands the compiled walk takes between two looks at the clock: a few tens of
# microseconds of C (bench/bench_cmd_scan.py).
ACCEL_EVERY = 8192


class BatchRef(NamedTuple):
    offset: int  # byte offset of the MI_BATCH_BUFFER_START in the scanned buffer
    start: BatchStart
    frame: Frame  # where the batch it starts runs


class Segment(NamedTuple):
    """A scanned buffer: what the engine executes, in order, and the batches it starts."""

    commands: Sequence[tuple[int, Command]]  # (byte offset, record); skipped commands left out
    batches: list[BatchRef]
    length: int  # dwords scanned (for a batch: to the end of its terminating command)
    scanned: int = 0  # commands walked, skipped ones and MI_NOOPs included


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


def _rejected(err: FieldError, frame: Frame, offset: int, dw0: int) -> CommandRejected:
    return CommandRejected(
        str(err),
        command=command_name(frame.engine, dw0),
        offset=offset,
        engine=frame.engine,
        level=frame.level,
        header=dw0,
    )


class Commands(Sequence[tuple[int, Command]]):
    """The commands of a scanned buffer an engine acts on, as (byte offset, record), decoded
    again from the scan's own copy of the buffer when asked for. A scan keeps dword positions
    and that copy (at most 4 MiB) rather than a record object per command: a batch of a
    million commands would otherwise be a million objects for the collector to walk, and a
    collection then stalls a step for tens of milliseconds."""

    __slots__ = ("_dwords", "_engine", "_positions")

    def __init__(self, dwords: array[int] | memoryview, positions: array[int], engine: Engine) -> None:
        self._dwords = dwords
        self._positions = positions
        self._engine = engine

    def __len__(self) -> int:
        return len(self._positions)

    @overload
    def __getitem__(self, i: int) -> tuple[int, Command]: ...

    @overload
    def __getitem__(self, i: slice) -> list[tuple[int, Command]]: ...

    def __getitem__(self, i: int | slice) -> tuple[int, Command] | list[tuple[int, Command]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        pos = self._positions[i]
        dwords = self._dwords
        dw0 = dwords[pos]
        entry, n = header(DISPATCH[self._engine], self._engine, dw0)
        record: Command = entry.decode(dwords, pos, n, dw0)
        return pos * 4, record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Commands({list(self)!r})"


class Scan:
    """A scan of one buffer in progress.

    ``ring``: a ring segment of exactly ``limit`` dwords, which ends where the segment ends;
    otherwise a batch, which ends at its MI_BATCH_BUFFER_END or chained MI_BATCH_BUFFER_START
    and is refused if it has none within ``limit`` dwords or before readable memory ends.
    Between steps it holds plain data: the dwords read so far, the position reached, the
    positions of the commands to act on and the batch starts.
    """

    __slots__ = (
        "_buf",
        "_eof",
        "_fast",
        "_have",
        "_pos",
        "_positions",
        "_runs",
        "_table",
        "batches",
        "frame",
        "limit",
        "ring",
        "scanned",
        "src",
    )

    def __init__(self, src: DwordSource, frame: Frame, limit: int, ring: bool, accel: ScanAccel | None = None) -> None:
        self.src = src
        self.frame = frame
        self.limit = limit
        self.ring = ring
        self.batches: list[BatchRef] = []
        self.scanned = 0
        self._table = DISPATCH[frame.engine]
        self._buf: array[int] | memoryview = array("I")  # every dword read, from the buffer's start
        self._have = 0  # dwords in _buf
        self._positions = array("I")  # dword positions of the commands an engine acts on
        self._pos = 0  # the next dword to scan
        self._eof = False  # nothing more to read
        self._runs: set[int] = {0}  # headers of skipped one-dword commands this engine accepts
        self._fast: ScanWalk | None = None
        if accel is not None:
            # The walk's buffer, allocated once for the whole limit: an array grown to 4 MiB
            # is copied by realloc as it grows, up to 2 MiB at once, a millisecond in a step.
            self._fast = accel.walker(frame, ACCEL_EVERY, limit)
            self._buf = self._fast.dwords

    def _segment(self, length: int) -> Segment:
        return Segment(Commands(self._buf, self._positions, self.frame.engine), self.batches, length, self.scanned)

    def step(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> Segment | None:
        """Scan until the buffer's end (its Segment) or the deadline (None: call again).
        Raises CommandRejected."""
        buf = self._buf
        while True:
            have = self._have
            if not self._eof and have - self._pos < CHUNK_DWORDS:
                want = min(CHUNK_DWORDS, self.limit - have)
                more = self.src.read(have, want) if want > 0 else ()
                self._eof = len(more) < want or have + len(more) >= self.limit
                if isinstance(buf, array):
                    buf.extend(more)
                else:
                    buf[have : have + len(more)] = more if isinstance(more, array) else array("I", more)
                have = self._have = have + len(more)
            pos, ended, stopped = self._scan(buf, self._pos, have, self._eof)
            self._pos = pos
            if ended:
                return self._segment(pos)
            if not stopped and self._eof:  # everything read is scanned (final: nothing left over)
                if self.ring:
                    return self._segment(pos)
                raise _rejected(
                    FieldError(
                        f"no MI_BATCH_BUFFER_END within {pos} dwords "
                        f"(limit {self.limit}: the end of readable or graphics memory, or {MAX_BATCH_DWORDS} dwords)"
                    ),
                    self.frame,
                    pos * 4,
                    0,
                )
            if clock() >= deadline:
                return None

    def _scan(self, buf: array[int] | memoryview, pos: int, end: int, final: bool) -> tuple[int, bool, bool]:
        """Scan ``buf[pos:end]`` for at most CLOCK_EVERY commands (a run of one skipped
        command counting once), and with the compiled walk at most ACCEL_EVERY more in C.
        Returns (position reached, whether the buffer ended there, whether the budget stopped
        it). Unless ``final``, stops before a command that does not fit."""
        frame = self.frame
        table = self._table
        engine = frame.engine
        positions = self._positions
        dw0 = 0
        budget = CLOCK_EVERY
        runs = self._runs
        bb_start = op.MI_BATCH_BUFFER_START
        bb_end = op.MI_BATCH_BUFFER_END
        fast = self._fast
        fast_budget = ACCEL_EVERY
        try:
            while pos < end:
                if fast is not None:
                    # C walks what it takes; Python scans the command it stops at.
                    pos, walked = fast.walk(pos, end, fast_budget, positions)
                    self.scanned += walked
                    fast_budget -= walked
                    if pos >= end:
                        break
                    if fast_budget == 0:
                        return pos, False, True
                if budget == 0:
                    return pos, False, True
                budget -= 1
                self.scanned += 1
                dw0 = buf[pos]
                if pos + 1 < end and buf[pos + 1] == dw0 and dw0 in runs:
                    # A run of one skipped one-dword command (MI_NOOP padding, MI_ARB_CHECK):
                    # checked once, then measured in C by comparing bytes.
                    k = _run_length(buf, pos, end, dw0)
                    self.scanned += k - 1
                    pos += k
                    continue
                if dw0 == 0:  # MI_NOOP: padding, and 256 of them in the null render state
                    pos += 1
                    continue
                entry, n = header(table, engine, dw0)
                if n == 1 and entry.skip and entry.check is None and len(runs) < _MAX_RUN_HEADERS:
                    runs.add(dw0)  # valid wherever it appears: runs of it may be skipped whole
                if pos + n > end:
                    self.scanned -= 1
                    if not final:
                        return pos, False, False
                    raise FieldError(f"{n}-dword command runs past the end of the buffer ({end - pos} dwords left)")
                rec = entry.decode(buf, pos, n, dw0)
                check = entry.check
                child = check(rec, frame) if check is not None else None
                if not entry.skip:
                    positions.append(pos)
                pos += n
                spec = entry.spec
                if spec is bb_start:
                    assert isinstance(rec, BatchStart) and child is not None
                    self.batches.append(BatchRef((pos - n) * 4, rec, child))
                    if frame.level and not rec.second_level:
                        return pos, True, False  # chained: this batch does not continue
                elif spec is bb_end:
                    return pos, True, False
        except FieldError as e:
            raise _rejected(e, frame, pos * 4, dw0) from None
        return pos, False, False


_MAX_RUN_HEADERS = 16  # MI_NOOP's 22 identification bits could make any number
_PATTERN_DWORDS = CHUNK_DWORDS


@functools.lru_cache(maxsize=8)
def _pattern(dw0: int) -> bytes:
    return array("I", [dw0]).tobytes() * _PATTERN_DWORDS


def _run_length(buf: array[int] | memoryview, pos: int, end: int, dw0: int) -> int:
    """How many dwords of ``buf`` from ``pos`` (up to ``end``, at most a chunk) equal ``dw0``."""
    n = min(end - pos, _PATTERN_DWORDS)
    with memoryview(buf) as view:
        raw = view[pos : pos + n].tobytes()
    pattern = _pattern(dw0)
    if raw == pattern[: 4 * n]:
        return n
    lo, hi = 1, n - 1  # buf[pos] equals dw0; not all n do
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if raw.startswith(pattern[: 4 * mid]):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _finish(scan: Scan) -> Segment:
    while True:
        seg = scan.step(float("inf"))
        if seg is not None:
            return seg


def ring_scan(
    src: DwordSource, length: int, engine: Engine, memory: GraphicsMemory, accel: ScanAccel | None = None
) -> Scan:
    """A scan of a ring segment of ``length`` dwords (the commands between head and tail,
    unwrapped by ``src``); with ``accel``, the compiled walk takes what it knows."""
    return Scan(src, Frame.ring(engine, memory), length, ring=True, accel=accel)


def batch_scan(src: DwordSource, frame: Frame, address: int | None = None, accel: ScanAccel | None = None) -> Scan:
    """A scan of a batch from dword 0 of ``src`` to its end.

    ``frame`` is the batch's own frame (from ``Frame.enter``). For a GGTT batch give its
    ``address``: the scan then never reads past the end of the graphics memory range it
    starts in.
    """
    limit = MAX_BATCH_DWORDS
    if address is not None and frame.privileged:
        limit = min(limit, frame.memory.span_from(address) // 4)
    return Scan(src, frame, limit, ring=False, accel=accel)


def scan_ring(dwords: Dwords, engine: Engine, memory: GraphicsMemory, accel: ScanAccel | None = None) -> Segment:
    """Scan a ring segment (the commands between head and tail, copied out and unwrapped)."""
    return _finish(ring_scan(BufferSource(dwords), len(dwords), engine, memory, accel))


def scan_batch(src: DwordSource, frame: Frame, address: int | None = None, accel: ScanAccel | None = None) -> Segment:
    """Scan a whole batch at once (see ``batch_scan``)."""
    return _finish(batch_scan(src, frame, address, accel))


def _entry_for(frame: Frame, dw0: int) -> tuple[Entry, int]:
    return header(DISPATCH[frame.engine], frame.engine, dw0)


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
        check = entry.check
        return Step(rec, n, check(rec, frame) if check is not None else None)
    except FieldError as e:
        raise _rejected(e, frame, pos * 4, dw0) from None
