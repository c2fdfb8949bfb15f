"""One validating decoder per command, and the per-engine dispatch tables over them.

A decoder gets the dword buffer, the command's position, its length (already checked against
the header's length rule) and DW0, and returns the command's record or raises FieldError with
what is wrong. Dispatch is one list index on DW0 >> 22 (client and the opcode bits every client
shares), then a header match, so a scan makes no per-dword objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..mmio.regs import MMIO_SIZE
from . import opcodes as op
from .engines import Engine
from .opcodes import CommandSpec, bit
from .records import (
    PPHWSP_SIZE,
    ArbCheck,
    ArbOnOff,
    BatchEnd,
    BatchStart,
    ColorBlt,
    Command,
    FlushDw,
    GfxState,
    LoadRegisterImm,
    Noop,
    PipeControl,
    PostSync,
    SrcCopyBlt,
    StoreDataImm,
    StoreRegisterMem,
    UserInterrupt,
)
from .reject import CommandRejected, FieldError

__all__ = ["DISPATCH", "KEY_SHIFT", "Decoder", "Dwords", "Entry", "command_name", "decode_one", "header", "lookup"]

Dwords = Sequence[int]  # array('I'), memoryview.cast('I') or list
Decoder = Callable[[Dwords, int, int, int], Command]

KEY_SHIFT = 22
ADDR_HI_RESERVED = 0xFFFF0000  # upper address dwords hold bits 47:32
PIPE_CONTROL_MMIO_WRITE = bit(23)
# Header and flag bits as constants: the decoders run per command.
_B8 = bit(8)
_B11 = bit(11)
_B15 = bit(15)
_B18 = bit(18)
_B21 = bit(21)
_B22 = bit(22)
_B24 = bit(24)
BLT_DEPTH_32 = 3
ROP_PATCOPY = 0xF0  # XY_COLOR_BLT: fill with the colour
ROP_SRCCOPY = 0xCC  # XY_SRC_COPY_BLT: copy the source
_POST_SYNC = tuple(PostSync)  # indexed by the 2-bit field: cheaper than calling the enum


def _address(lo: int, hi: int, what: str) -> int:
    if hi & ADDR_HI_RESERVED:
        raise FieldError(f"{what} bits 63:48 set (upper dword {hi:#x})")
    return (hi << 32) | lo


def _register(dw: int) -> int:
    # Register dwords hold an MMIO offset in bits 22:2; refuse anything that is not one.
    if dw & 3 or dw >= MMIO_SIZE:
        raise FieldError(f"register dword {dw:#x} is not a dword-aligned MMIO offset below {MMIO_SIZE:#x}")
    return dw


def _noop(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return Noop()


def _arb_check(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return ArbCheck()


def _arb_on_off(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return ArbOnOff(bool(dw0 & 1))


def _user_interrupt(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return UserInterrupt()


def _batch_end(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return BatchEnd()


def _batch_start(b: Dwords, p: int, n: int, dw0: int) -> Command:
    lo = b[p + 1]
    if lo & 3:
        raise FieldError(f"batch address {lo:#x} not dword aligned")
    return BatchStart(_address(lo, b[p + 2], "batch address"), bool(dw0 & _B8), bool(dw0 & _B22))


def _store_data_imm(b: Dwords, p: int, n: int, dw0: int) -> Command:
    qword = bool(dw0 & _B21)
    if qword != (n == 5):
        raise FieldError("store-qword bit 21 and the length disagree (dword form: 4 dwords, qword form: 5)")
    lo = b[p + 1]
    if lo & (7 if qword else 3):
        raise FieldError(f"address {lo:#x} not aligned to the {'qword' if qword else 'dword'} written")
    value = b[p + 3] | (b[p + 4] << 32 if qword else 0)
    return StoreDataImm(_address(lo, b[p + 2], "address"), bool(dw0 & _B22), 8 if qword else 4, value)


def _load_register_imm(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return LoadRegisterImm(tuple((_register(b[i]), b[i + 1]) for i in range(p + 1, p + n, 2)))


def _store_register_mem(b: Dwords, p: int, n: int, dw0: int) -> Command:
    lo = b[p + 2]
    if lo & 3:
        raise FieldError(f"address {lo:#x} not dword aligned")
    return StoreRegisterMem(_register(b[p + 1]), _address(lo, b[p + 3], "address"), bool(dw0 & _B22))


def _flush_dw(b: Dwords, p: int, n: int, dw0: int) -> Command:
    post_sync = _POST_SYNC[(dw0 >> 14) & 3]
    if post_sync is PostSync.DEPTH_COUNT:
        raise FieldError("post-sync operation 2 is reserved for MI_FLUSH_DW")
    lo = b[p + 1]
    if lo & 3:
        raise FieldError(f"address dword {lo:#x} has reserved bits 1:0 set")
    store_index = bool(dw0 & _B21)
    address = _address(lo & ~7, b[p + 2], "address")  # bits 47:3; bit 2 selects the GGTT
    size = 0
    if post_sync is PostSync.WRITE_IMM:
        size = 8 if n == 5 else 4
    elif post_sync is PostSync.TIMESTAMP:
        size = 8
    if size and store_index and address + size > PPHWSP_SIZE:
        raise FieldError(f"store-index offset {address:#x} + {size} runs past the {PPHWSP_SIZE}-byte PPHWSP")
    value = b[p + 3] | (b[p + 4] << 32 if n == 5 else 0)
    return FlushDw(post_sync, address, bool(lo & 4), store_index, size, value, bool(dw0 & _B8), bool(dw0 & _B18))


def _pipe_control(b: Dwords, p: int, n: int, dw0: int) -> Command:
    flags = b[p + 1]
    if flags & PIPE_CONTROL_MMIO_WRITE:
        raise FieldError("the MMIO-write post-sync form (DW1 bit 23) is not supported")
    post_sync = _POST_SYNC[(flags >> 14) & 3]
    lo = b[p + 2]
    store_index = bool(flags & _B21)
    address = _address(lo, b[p + 3], "address")
    if post_sync is not PostSync.NONE:
        if lo & 7:
            raise FieldError(f"post-sync address {lo:#x} not aligned to the qword written")
        if store_index and address + 8 > PPHWSP_SIZE:
            raise FieldError(f"store-index offset {address:#x} + 8 runs past the {PPHWSP_SIZE}-byte PPHWSP")
    return PipeControl(
        flags,
        post_sync,
        address,
        bool(flags & _B24),
        store_index,
        b[p + 4] | (b[p + 5] << 32),
        bool(flags & _B8),
        bool(flags & _B18),
    )


def _gfx_state(b: Dwords, p: int, n: int, dw0: int) -> Command:
    return GfxState(dw0, n)


def _blt_header(dw0: int, src: bool) -> tuple[bool, bool]:
    """(destination tiled, source tiled): DW0 bits 11 and 15."""
    if dw0 & (3 << 20) != 3 << 20:
        raise FieldError("only 32 bpp writes of all four channels (DW0 bits 21:20 = 3) are supported")
    return bool(dw0 & _B11), src and bool(dw0 & _B15)


def _br13(dw: int, rop: int, tiled: bool) -> int:
    """Check BR13 (depth, ROP, clipping) and return the destination pitch in bytes."""
    if dw >> 26:
        raise FieldError(f"BR13 {dw:#x}: clipping and bits 31:26 are not supported")
    if (dw >> 24) & 3 != BLT_DEPTH_32:
        raise FieldError(f"BR13 {dw:#x}: colour depth {(dw >> 24) & 3} is not 32 bpp (3)")
    if (dw >> 16) & 0xFF != rop:
        raise FieldError(f"BR13 {dw:#x}: ROP {(dw >> 16) & 0xFF:#x} is not {rop:#x}")
    return _pitch(dw, "destination", tiled)


def _pitch(dw: int, what: str, tiled: bool) -> int:
    """The pitch in bytes: the field is in bytes for a linear surface, in dwords for a tiled
    one, whose rows of tiles it must hold whole (a multiple of 128 bytes, Y's tile width)."""
    pitch = dw & 0xFFFF
    if pitch & 0x8000:
        raise FieldError(f"{what} pitch {pitch:#x} is negative")
    if not tiled:
        if pitch & 3:
            raise FieldError(f"{what} pitch {pitch:#x} is not a multiple of 4")
        return pitch
    if (pitch * 4) % 128:
        raise FieldError(f"tiled {what} pitch {pitch:#x} dwords is not a multiple of 128 bytes")
    return pitch * 4


def _tiled_address(address: int, tiled: bool, what: str) -> int:
    if tiled and address & 0xFFF:
        raise FieldError(f"tiled {what} {address:#x} is not 4 KiB aligned")
    return address


def _corner(dw: int, what: str) -> tuple[int, int]:
    x, y = dw & 0xFFFF, dw >> 16
    if x & 0x8000 or y & 0x8000:
        raise FieldError(f"{what} ({x:#x}, {y:#x}) is negative")
    return x, y


def _rect(b: Dwords, p: int) -> tuple[int, int, int, int]:
    x1, y1 = _corner(b[p], "top-left corner")
    x2, y2 = _corner(b[p + 1], "bottom-right corner")
    if x2 < x1 or y2 < y1:
        raise FieldError(f"rectangle ({x1}, {y1})-({x2}, {y2}) has its corners swapped")
    return x1, y1, x2, y2


def _color_blt(b: Dwords, p: int, n: int, dw0: int) -> Command:
    tiled, _ = _blt_header(dw0, src=False)
    pitch = _br13(b[p + 1], ROP_PATCOPY, tiled)
    x1, y1, x2, y2 = _rect(b, p + 2)
    dst = _tiled_address(_address(b[p + 4], b[p + 5], "destination address"), tiled, "destination address")
    return ColorBlt(dst, pitch, x1, y1, x2, y2, b[p + 6], ROP_PATCOPY, tiled)


def _src_copy_blt(b: Dwords, p: int, n: int, dw0: int) -> Command:
    dst_tiled, src_tiled = _blt_header(dw0, src=True)
    dst_pitch = _br13(b[p + 1], ROP_SRCCOPY, dst_tiled)
    x1, y1, x2, y2 = _rect(b, p + 2)
    dst = _tiled_address(_address(b[p + 4], b[p + 5], "destination address"), dst_tiled, "destination address")
    src_x, src_y = _corner(b[p + 6], "source corner")
    if b[p + 7] >> 16:
        raise FieldError(f"source pitch dword {b[p + 7]:#x} has bits 31:16 set")
    src_pitch = _pitch(b[p + 7], "source", src_tiled)
    src = _tiled_address(_address(b[p + 8], b[p + 9], "source address"), src_tiled, "source address")
    return SrcCopyBlt(dst, dst_pitch, x1, y1, x2, y2, src, src_pitch, src_x, src_y, ROP_SRCCOPY, dst_tiled, src_tiled)


DECODERS: dict[CommandSpec, Decoder] = {
    op.MI_NOOP: _noop,
    op.MI_USER_INTERRUPT: _user_interrupt,
    op.MI_ARB_CHECK: _arb_check,
    op.MI_ARB_ON_OFF: _arb_on_off,
    op.MI_BATCH_BUFFER_END: _batch_end,
    op.MI_STORE_DATA_IMM: _store_data_imm,
    op.MI_LOAD_REGISTER_IMM: _load_register_imm,
    op.MI_STORE_REGISTER_MEM: _store_register_mem,
    op.MI_FLUSH_DW: _flush_dw,
    op.MI_BATCH_BUFFER_START: _batch_start,
    op.PIPE_CONTROL: _pipe_control,
    op.GFX_STATE: _gfx_state,
    op.XY_COLOR_BLT: _color_blt,
    op.XY_SRC_COPY_BLT: _src_copy_blt,
}
assert set(DECODERS) == set(op.SPECS)


class Entry:
    """A dispatch slot: a spec, its decoder, whether this engine may run it, and the next
    candidate for the same slot when the header does not match this one."""

    __slots__ = ("allowed", "decode", "fallback", "header", "length", "mask", "reserved", "skip", "spec")

    def __init__(self, spec: CommandSpec, allowed: bool, fallback: Entry | None) -> None:
        self.spec = spec
        self.header = spec.header
        self.mask = spec.mask
        self.decode = DECODERS[spec]
        self.allowed = allowed
        self.skip = spec.skip
        self.fallback = fallback
        self.reserved = spec.reserved_bits(0xFFFFFFFF)  # the header bits that must be clear
        self.length = spec.length


def _build(engine: Engine) -> list[Entry | None]:
    table: list[Entry | None] = [None] * (1 << (32 - KEY_SHIFT))
    # Least specific first, so that more specific specs end up in front of each slot's chain.
    for spec in reversed(op.SPECS):
        key_mask = spec.mask >> KEY_SHIFT
        key_bits = spec.header >> KEY_SHIFT
        for key in range(len(table)):
            if key & key_mask == key_bits:
                table[key] = Entry(spec, engine in spec.engines, table[key])
    return table


DISPATCH: dict[Engine, list[Entry | None]] = {e: _build(e) for e in Engine}


def lookup(table: list[Entry | None], dw0: int) -> Entry | None:
    entry = table[dw0 >> KEY_SHIFT]
    while entry is not None and dw0 & entry.mask != entry.header:
        entry = entry.fallback
    return entry


def header(table: list[Entry | None], engine: Engine, dw0: int) -> tuple[Entry, int]:
    """The dispatch entry for a header and the command's length, or FieldError."""
    entry = lookup(table, dw0)
    if entry is None:
        raise FieldError(f"unknown command header {dw0:#010x}")
    if not entry.allowed:
        raise FieldError(f"not allowed on {engine.name}")
    if dw0 & entry.reserved:
        raise FieldError(f"reserved header bits {dw0 & entry.reserved:#x} set in {dw0:#010x}")
    return entry, entry.length(dw0)


def command_name(engine: Engine, dw0: int) -> str:
    entry = lookup(DISPATCH[engine], dw0)
    return "unknown command" if entry is None else entry.spec.name


def decode_one(buf: Dwords, pos: int, engine: Engine, end: int | None = None) -> tuple[Command, int]:
    """Decode the command at ``buf[pos]`` as ``engine`` would: its record and its length.

    Validates the header and the fields only; the register allow-list, GGTT ranges and batch
    nesting need a scan's context (scan.py). Raises CommandRejected (level 0, offset from buf[0]).
    """
    end = len(buf) if end is None else end
    dw0 = buf[pos]
    try:
        entry, n = header(DISPATCH[engine], engine, dw0)
        if pos + n > end:
            raise FieldError(f"{n}-dword command runs past the end of the buffer ({end - pos} dwords left)")
        return entry.decode(buf, pos, n, dw0), n
    except FieldError as e:
        raise CommandRejected(
            str(e), command=command_name(engine, dw0), offset=pos * 4, engine=engine, level=0, header=dw0
        ) from None
