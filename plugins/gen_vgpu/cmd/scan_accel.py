"""The scanner's compiled walk (accel/dm_scan.c): the commands of a buffer that C knows
exactly, walked in C until the first one it does not take, which the Python scanner then
scans itself (scan.py). C never rejects: an error, a batch start or end, a command that does
not fit the bytes read so far all stay Python's, so the outcome of a scan is the Python
path's by construction, and the walk in C decides only how fast the accepted commands go by.

C's tables are built here from the command table (dispatch.py's DISPATCH): per engine, each
dispatch slot's candidates with their header match, reserved bits and length rule, and for
each row the C validator that mirrors its decoder and check, named by the pair of Python
functions it mirrors (a row whose decoder or check is not in :data:`KINDS` stays on Python).
The register allow-lists go to C as bitmaps, the frame's graphics memory as its spans. The
property tests scan the same buffers on both paths (tests/unit/gen_vgpu/test_cmd_scan_accel.py).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from devmodel.accel import Accel

from ..mmio.regs import MMIO_SIZE
from ..mmio.table import command_access
from . import decode as d
from . import frame as f
from .dispatch import DISPATCH, KEY_SHIFT, Entry
from .engines import Engine
from .frame import Frame
from .records import PPHWSP_SIZE
from .spec import LengthRule

__all__ = ["KINDS", "ScanAccel", "ScanWalk", "has_scan_accel"]

_FUNCTIONS = ("dm_scan_walk",)
_SLOTS = 1 << (32 - KEY_SHIFT)

# (decoder, check) -> the name of the C validator that mirrors them (DM_SCAN_K_* of dm_scan.h).
# MI_BATCH_BUFFER_START and _END are not here: they end or branch a scan, which Python does.
KINDS: dict[tuple[Callable[..., Any], Callable[..., Any] | None], str] = {
    (d.noop, None): "PLAIN",
    (d.arb_check, None): "PLAIN",
    (d.arb_on_off, None): "PLAIN",
    (d.user_interrupt, None): "PLAIN",
    (d.report_head, None): "PLAIN",
    (d.gfx_state, None): "PLAIN",
    (d.store_data_imm, f.check_sdi): "SDI",
    (d.load_register_imm, f.check_lri): "LRI",
    (d.store_register_mem, f.check_srm): "SRM",
    (d.flush_dw, f.check_flush_dw): "FLUSH_DW",
    (d.pipe_control, f.check_pipe_control): "PIPE_CONTROL",
    (d.math, None): "MATH",
    (d.load_register_reg, f.check_lrr): "LRR",
    (d.load_register_mem, f.check_lrm): "LRM",
    (d.copy_mem_mem, f.check_copy_mem_mem): "COPY_MEM_MEM",
    (d.atomic, f.check_atomic): "ATOMIC",
    (d.store_data_index, None): "SDI_INDEX",
    (d.cond_batch_end, f.check_cond_batch_end): "COND_BB_END",
    (d.semaphore_wait, f.check_semaphore_wait): "SEMAPHORE_WAIT",
    (d.color_blt, None): "COLOR_BLT",
    (d.src_copy_blt, None): "SRC_COPY_BLT",
}

_RULES = {
    LengthRule.ONE: "ONE",
    LengthRule.FIELD: "FIELD",
    LengthRule.ANY: "ANY",
    LengthRule.LRI: "LRI",
    LengthRule.GFX: "GFX",
}
_MAX_LENGTH = 63  # dm_scan_entry.lengths is a 64-bit set


def has_scan_accel(accel: Accel | None) -> bool:
    """Whether the module has the scanner's walk (one built from older sources has not)."""
    return accel is not None and all(hasattr(accel.lib, name) for name in _FUNCTIONS)


def _bitmaps(*lists: frozenset[int]) -> tuple[int, list[bytearray]]:
    """Bitmaps by register offset / 4 of equal size (as few bits as the highest register needs)
    and that size in bits. A register dword that is not dword aligned is refused by the decoder
    before the lists are asked, so only aligned offsets need a bit."""
    aligned = [[r >> 2 for r in registers if not r & 3 and r < MMIO_SIZE] for registers in lists]
    size = (max((max(a) for a in aligned if a), default=0) >> 3) + 1
    maps = []
    for indexes in aligned:
        bits = bytearray(size)
        for i in indexes:
            bits[i >> 3] |= 1 << (i & 7)
        maps.append(bits)
    return size * 8, maps


class _Table:
    """One engine's struct dm_scan_table and the arrays behind it."""

    def __init__(self, accel: Accel, engine: Engine) -> None:
        ffi, lib = accel.ffi, accel.lib
        chains: list[Entry] = []
        index: dict[int, int] = {}  # id(Entry) -> its place in chains
        slots = DISPATCH[engine]
        for head in slots:
            entry = head
            while entry is not None and id(entry) not in index:
                index[id(entry)] = len(chains)
                chains.append(entry)
                entry = entry.fallback
        self.entries = ffi.new("struct dm_scan_entry[]", max(1, len(chains)))
        for slot, entry in zip(self.entries, chains, strict=False):
            spec = entry.spec
            slot.header = entry.header
            slot.mask = entry.mask
            slot.reserved = entry.reserved
            slot.len_mask = spec.len_mask
            slot.lengths = sum(1 << n for n in spec.lengths if n <= _MAX_LENGTH)
            slot.next = -1 if entry.fallback is None else index[id(entry.fallback)]
            slot.rule = getattr(lib, "DM_SCAN_" + _RULES[spec.rule])
            kind = KINDS.get((entry.decode, entry.check))
            if not entry.allowed or kind is None or any(n > _MAX_LENGTH for n in spec.lengths):
                slot.kind = lib.DM_SCAN_K_STOP
            else:
                slot.kind = getattr(lib, "DM_SCAN_K_" + kind)
            slot.skip = int(entry.skip)
        self.slots = ffi.new("int32_t[]", [-1 if e is None else index[id(e)] for e in slots])
        assert len(slots) == _SLOTS
        nregs, (writable, readable) = _bitmaps(*command_access(engine))
        self.writable = ffi.from_buffer("uint8_t[]", writable)
        self.readable = ffi.from_buffer("uint8_t[]", readable)
        t = self.struct = ffi.new("struct dm_scan_table *")
        t.entries = self.entries
        t.slots = self.slots
        t.writable = self.writable
        t.readable = self.readable
        t.nregs = nregs
        t.mmio_size = MMIO_SIZE


class ScanAccel:
    """The compiled walk for any scan: the engines' tables, built on first use."""

    def __init__(self, accel: Accel) -> None:
        self.accel = accel
        self._tables: dict[Engine, _Table] = {}
        # A scan's buffers are not cleared: C and Python read only what the scan wrote there
        # first, and malloc leaves the pages of a fresh 4 MiB untouched until then.
        self._alloc = accel.ffi.new_allocator(should_clear_after_alloc=False)

    def walker(self, frame: Frame, limit: int, size: int) -> ScanWalk:
        """The walk in ``frame``, at most ``limit`` commands per call, over a buffer of
        ``size`` dwords (:attr:`ScanWalk.dwords`)."""
        table = self._tables.get(frame.engine)
        if table is None:
            table = self._tables[frame.engine] = _Table(self.accel, frame.engine)
        return ScanWalk(self.accel, self._alloc, table, frame, limit, size)


class ScanWalk:
    """The walk for one scan: its frame as a struct dm_scan_frame, and the scan's buffer."""

    __slots__ = ("_buf", "_ffi", "_fn", "_npos", "_out", "_table", "_walked", "dwords", "frame", "limit")

    def __init__(self, accel: Accel, alloc: Any, table: _Table, frame: Frame, limit: int, size: int) -> None:
        ffi = self._ffi = accel.ffi
        self._fn = accel.lib.dm_scan_walk
        self._table = table  # kept alive with the struct that points into it
        spans = frame.memory.spans()
        c = self.frame = ffi.new("struct dm_scan_frame *")
        if len(spans) > len(c.span_start):
            raise ValueError(f"{len(spans)} graphics memory spans; the compiled scanner takes {len(c.span_start)}")
        c.table = table.struct
        for i, (start, end) in enumerate(spans):
            c.span_start[i] = start
            c.span_end[i] = end
        c.nspans = len(spans)
        c.level = frame.level
        c.privileged = int(frame.privileged)
        c.pphwsp_size = PPHWSP_SIZE
        self.limit = limit
        self._out = alloc("uint32_t[]", limit)
        self._walked = ffi.new("uint32_t *")
        self._npos = ffi.new("uint32_t *")
        self._buf = alloc("uint32_t[]", max(1, size))
        # The scan keeps its copy of the buffer here; the memoryview keeps the memory alive.
        self.dwords = memoryview(ffi.buffer(self._buf)).cast("I")

    def walk(self, pos: int, end: int, limit: int, positions: array[int]) -> tuple[int, int]:
        """Walk ``dwords[pos:end]`` for at most ``limit`` (at most :attr:`limit`) commands;
        the positions of the listed ones are appended to ``positions``. Returns the position
        reached (the first command not taken, or ``end``) and the number of commands taken."""
        if limit > self.limit or end > len(self.dwords):
            raise ValueError(f"walk to {end} of {len(self.dwords)} dwords, {limit} commands of {self.limit}")
        out = self._out
        pos = self._fn(self.frame, self._buf, pos, end, limit, out, self._walked, self._npos)
        n = self._npos[0]
        if n:
            positions.frombytes(self._ffi.buffer(out, 4 * n))
        return pos, self._walked[0]
