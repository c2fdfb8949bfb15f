"""The compiled accelerator against the Python path, on randomized traffic.

Hypothesis builds a stream of region messages (reads, writes and WRITE_MULTI batches, posted
or answered; plain registers, registers with hooks, masks or write-1-to-clear bits, unlisted
and unbacked offsets, GGTT entries whole and by halves, odd widths, bad lengths, other
regions, out of range) with DMA maps and unmaps in between, and sends the same bytes to two
servers: one with the accelerator, one on Python alone. Both must answer byte for byte alike
and end in the same state: registers, the GGTT's three arrays, its counts by owner code,
counters, unbacked bounds, pending halves, ignored accesses and the dispatcher's stats.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devmodel.device.registers import UNTIL_MARGIN_NS
from devmodel.testing import GuestMemory, VfioUserClient
from devmodel.vfio_user.connection import ServerOptions
from devmodel.vfio_user.constants import Command, HeaderFlags, MsgType
from devmodel.vfio_user.framing import encode_message
from devmodel.vfio_user.layouts import DMA_MAP, DMA_UNMAP, REGION_ACCESS, WRITE_MULTI, WRITE_MULTI_ENTRY
from gen_vgpu import GenVgpu
from gen_vgpu.display import DisplayOptions
from gen_vgpu.engines import ENGINES
from gen_vgpu.interrupts import BANK_IER, BANK_IIR, BANK_IMR, GT_BANKS, MASTER_IRQ_ENABLE, gt_bank
from gen_vgpu.mmio import engine_regs as er
from gen_vgpu.mmio import regs
from gen_vgpu.mmio.display_regs import TRANSCONF, TRANSCONF_ENABLE
from gen_vgpu.mmio.gt import GDRST, GDRST_FULL
from gen_vgpu.mmio.irq import DISPLAY_BANKS
from gen_vgpu.mmio.unlisted import UnlistedLog
from tests.unit.gen_vgpu.engine_rig import RAM, Context, Rig, Tree

from .conftest import ServerThread, accel_available

pytestmark = pytest.mark.skipif(not accel_available(), reason="the compiled accelerator is not installed")

GGTT = regs.GGTT_OFFSET
MEM = 1 << 20  # guest memory: gfns 0x000-0x0ff through an fd
NOFD_IOVA = 0x400000  # gfns 0x400-0x40f: a window without an fd
CMD = int(MsgType.COMMAND)
POSTED = CMD | int(HeaderFlags.NO_REPLY)
BARRIER_ID = 0xFFFF


def _special_registers() -> list[int]:
    """One register of each behaviour C must leave to Python, one of each write class C
    serves itself, and the declared plain ones."""
    rf = GenVgpu(display=DisplayOptions("none")).registers
    picks: dict[str, int] = {}
    for off, reg in sorted(rf.regs.items()):
        kind = (
            "masked"
            if reg.masked
            else "w1c"
            if reg.w1c
            else "read"
            if reg.read
            else "write"
            if reg.write
            else "mask"
            if reg.rw_mask != 0xFFFFFFFF
            else "plain"
        )
        picks.setdefault(kind, off)
        if reg.read is None and reg.write is None:
            # one of each write class C serves itself (read-only, masked, W1C, partly writable)
            picks.setdefault(f"class {reg.rw_mask:#x} {reg.w1c:#x} {reg.masked}", off)
    return sorted(picks.values())


# The interrupt registers whose writes C runs too (the master's enable, a GT bank's IIR, IMR
# and IER): whole, narrow, 8 bytes (two registers) and in batches.
IRQ_EFFECT_REGISTERS = [regs.GEN8_MASTER_IRQ, *(gt_bank(0) + r for r in (BANK_IMR, BANK_IIR, BANK_IER))]
REGISTERS = [0x4000, 0x4004, 0x4008, 0x1FFFFC, *_special_registers(), *IRQ_EFFECT_REGISTERS]
# and anywhere else in the register space, in case a behaviour sits where no list above looks
register_dwords = st.one_of(st.sampled_from(REGISTERS), st.integers(0, regs.MMIO_SIZE // 4 - 1).map(lambda d: 4 * d))
GGTT_INDEXES = [0, 1, 2, 100, (1 << 20) - 1]
GFNS = [0x0, 0x1, 0x10, 0xFF, 0x100, 0x400, 0x40F, 0x12345]

register_accesses = st.tuples(
    register_dwords.flatmap(lambda r: st.sampled_from([r, r + 1, r + 2, r + 3])),
    st.sampled_from([4, 4, 8, 1, 2, 0, 3, 16]),
)
ggtt_accesses = st.sampled_from(GGTT_INDEXES).flatmap(
    lambda i: st.sampled_from([(GGTT + 8 * i, 8), (GGTT + 8 * i, 8), (GGTT + 8 * i, 4), (GGTT + 8 * i + 4, 4)])
)
# the unbacked gap, the BAR's last dword, past its end, and an offset whose end overflows
ODD_OFFSETS = [regs.MMIO_SIZE, regs.MMIO_SIZE + 8, GGTT - 8, regs.BAR0_SIZE - 4, regs.BAR0_SIZE, 2**64 - 4]
odd_accesses = st.tuples(st.sampled_from(ODD_OFFSETS), st.sampled_from([4, 8, 2]))
# (offset, count)
accesses = st.one_of(register_accesses, ggtt_accesses, ggtt_accesses, odd_accesses)
regions = st.sampled_from([0, 0, 0, 0, 0, 0, 0, 0, 2, 7, 9])


@st.composite
def entry_values(draw: st.DrawFn, count: int) -> bytes:
    """GGTT-like values: present or not, a GFN inside a window or not; or anything."""
    if count == 8 and draw(st.integers(0, 3)):
        value = (draw(st.sampled_from(GFNS)) << 12) | draw(st.sampled_from([0x0, 0x1, 0x3, 0x803]))
        return value.to_bytes(8, "little")
    return draw(st.binary(min_size=count, max_size=count))


@st.composite
def region_messages(draw: st.DrawFn, msg_id: int) -> bytes:
    kind = draw(st.sampled_from(["read", "write", "write", "multi", "bad"]))
    flags = draw(st.sampled_from([CMD, POSTED]))
    if kind == "multi":
        n = draw(st.integers(1, 4))
        body = WRITE_MULTI.pack(n)
        for _ in range(n):
            offset, count = draw(accesses)
            count = draw(st.sampled_from([count, count, count, 9]))  # 9: more than the data slot
            data = draw(entry_values(min(count, 8))).ljust(8, b"\0")
            body += WRITE_MULTI_ENTRY.pack(offset, draw(regions), count, int.from_bytes(data, "little"))
        return encode_message(msg_id, Command.REGION_WRITE_MULTI, flags, body)
    (offset, count), region = draw(accesses), draw(regions)
    access = REGION_ACCESS.pack(offset, region, count)
    if kind == "read":
        return encode_message(msg_id, Command.REGION_READ, flags, access)
    if kind == "write":
        return encode_message(msg_id, Command.REGION_WRITE, flags, access + draw(entry_values(count)))
    # a length that does not match, or a count above max_data_xfer_size
    if draw(st.booleans()):
        return encode_message(msg_id, Command.REGION_WRITE, flags, access + b"\0" * (count + 1))
    return encode_message(msg_id, Command.REGION_READ, flags, REGION_ACCESS.pack(offset, region, (1 << 20) + 1))


@st.composite
def dma_messages(draw: st.DrawFn, msg_id: int) -> bytes:
    """Windows change between accesses: the fd-less window goes and comes back, in pieces."""
    if draw(st.booleans()):
        size = draw(st.sampled_from([0x1000, 0x8000, 0x10000]))
        return encode_message(msg_id, Command.DMA_UNMAP, CMD, DMA_UNMAP.pack(DMA_UNMAP.size, 0, NOFD_IOVA, size))
    start = draw(st.sampled_from([0, 0x1000, 0x8000]))
    return encode_message(msg_id, Command.DMA_MAP, CMD, DMA_MAP.pack(DMA_MAP.size, 3, 0, NOFD_IOVA + start, 0x1000))


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(1, 60))
    out = []
    for i in range(n):
        if draw(st.integers(0, 9)) == 0:
            out.append(draw(dma_messages(i)))
        else:
            out.append(draw(region_messages(i)))
    return b"".join(out)


@pytest.fixture(scope="module")
def memory() -> Iterator[GuestMemory]:
    with GuestMemory(MEM) as mem:
        yield mem


def _unlisted_log(dev: GenVgpu) -> UnlistedLog:
    """The device's log of unlisted registers."""
    return dev.unlisted


def _start(accel: bool, memory: GuestMemory, sock_dir: str, name: str) -> tuple[ServerThread, VfioUserClient]:
    # Headless: a random write can light a pipe, and then PIPEDSL and PIPE_FRMCOUNT follow
    # the clock, which two servers never read at the same instant. The display's registers
    # with behaviour all go to Python on both paths anyway.
    dev = GenVgpu(display=DisplayOptions("none"))
    _unlisted_log(dev)  # the accelerator replays unlisted accesses to it: they must match
    st_ = ServerThread(dev, os.path.join(sock_dir, name), ServerOptions(write_multiple=True), accel=accel)
    client = VfioUserClient.connect(st_.path, memory)
    client.negotiate()
    client.map_memory(memory)
    client.dma_map(NOFD_IOVA, 0x10000)  # no fd: frames, no memory
    return st_, client


def _exchange(client: VfioUserClient, stream: bytes) -> bytes:
    """Send the stream in one piece, then a barrier read: every reply before the barrier's."""
    barrier = encode_message(BARRIER_ID, Command.REGION_READ, CMD, REGION_ACCESS.pack(0x4000, 0, 4))
    client.sock.sendall(stream + barrier)
    received = bytearray()
    pos = 0  # the next reply's start
    while True:
        chunk = client.sock.recv(1 << 16)
        assert chunk, "the server closed the connection"
        received += chunk
        while pos + 16 <= len(received):
            if received[pos : pos + 4] == barrier[:4]:  # the barrier's id and command
                return bytes(received[:pos])
            pos += int.from_bytes(received[pos + 4 : pos + 8], "little")


def _digest(data: Any) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()[:16]


def _state(server: ServerThread) -> dict[str, Any]:
    def take() -> dict[str, Any]:
        dev = server.vgpu
        g = dev.ggtt
        client = server.server.client
        assert client is not None
        return {
            "registers": _digest(dev.registers.storage),
            "guest": _digest(g.guest),
            "shadow": _digest(g.shadow),
            "owner": _digest(g.owner),
            "counts": dict(g._count),
            "counters": dict(vars(g.counters)),
            "unbacked_bounds": (g._unbacked_lo, g._unbacked_hi),
            "pending": g.pending_halves(),
            "ignored": dev.bar0.ignored_accesses,
            "g2v": dict(dev.g2v_notifications),
            "stats": dict(client.dispatcher.stats),
            "unlisted": list(_unlisted_log(dev).seen.items()),
            # the line: what C must leave to Python (a raise or a lower) and what it keeps
            "interrupts": dict(vars(dev.interrupts.counters)),
            "asserted": dev.interrupts._asserted,
            "intx": dev.irqs.intx_asserted,
        }

    result: dict[str, Any] = server.call(take)
    return result


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_the_accelerator_answers_and_keeps_state_as_python_does(stream: bytes, memory: GuestMemory) -> None:
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d:
        fast, fast_client = _start(True, memory, d, "accel.sock")
        slow, slow_client = _start(False, memory, d, "python.sock")
        try:
            assert fast.server.client is not None and slow.server.client is not None
            fast_replies = _exchange(fast_client, stream)
            slow_replies = _exchange(slow_client, stream)
            assert fast_replies == slow_replies
            assert _state(fast) == _state(slow)
            assert fast.server.client.drain is not None and slow.server.client.drain is None
        finally:
            for s, c in ((fast, fast_client), (slow, slow_client)):
                c.close()
                s.stop()


# --- registers with a Python handler: the accesses C checks and hands to Python -----------


def _handled_registers() -> list[int]:
    """Every register of the table with a read or write handler, but those whose read value is
    the clock's (two servers never read it at the same instant)."""
    rf = GenVgpu(display=DisplayOptions("none")).registers
    return [off for off, reg in sorted(rf.regs.items()) if (reg.read or reg.write) and "TIMESTAMP" not in reg.name]


HANDLED = _handled_registers()
ELSP_RCS = ENGINES[0].reg(er.ELSP)


@st.composite
def handled_messages(draw: st.DrawFn, msg_id: int) -> bytes:
    """Reads and writes of the registers with handlers, posted or answered: mostly whole
    dwords (C hands them over), some narrow, unaligned or 8 bytes wide (Python decodes them)."""
    offset = draw(st.sampled_from(HANDLED))
    count = draw(st.sampled_from([4, 4, 4, 4, 8, 2]))
    offset += draw(st.sampled_from([0, 0, 0, 0, 0, 2]))
    flags = draw(st.sampled_from([CMD, POSTED]))
    access = REGION_ACCESS.pack(offset, 0, count)
    if draw(st.booleans()):
        return encode_message(msg_id, Command.REGION_READ, flags, access)
    special = st.sampled_from([0, 1, 0xFFFFFFFF, 0x80000000])
    value = draw(special) if draw(st.booleans()) else draw(st.integers(0, 2**32 - 1))
    return encode_message(msg_id, Command.REGION_WRITE, flags, access + value.to_bytes(8, "little")[:count])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.integers(1, 60).flatmap(lambda n: st.tuples(*[handled_messages(i) for i in range(n)])))
def test_register_accesses_c_hands_to_python_end_as_on_python(stream: tuple[bytes, ...], memory: GuestMemory) -> None:
    """Every register with a handler (ELSP, GDRST, TLB invalidation, the mailboxes, the
    interrupt registers, EXECLIST_STATUS, MI_MODE, ...): a whole dword's access C checked
    goes to the handler without the dispatcher's decoding, and both servers answer byte for
    byte alike and end in the same state."""
    data = b"".join(stream)
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d:
        fast, fast_client = _start(True, memory, d, "accel.sock")
        slow, slow_client = _start(False, memory, d, "python.sock")
        try:
            assert _exchange(fast_client, data) == _exchange(slow_client, data)
            assert _state(fast) == _state(slow)
        finally:
            for s, c in ((fast, fast_client), (slow, slow_client)):
                c.close()
                s.stop()


def test_a_handed_register_access_skips_the_decoder() -> None:
    """The hand-over is taken: an ELSP, GDRST and TLB-invalidation write and an ELSP read, each
    a whole dword, come to Python through dm_conn.hand; a narrow write does not."""
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d, GuestMemory(MEM) as m:
        fast, client = _start(True, m, d, "accel.sock")
        try:
            assert fast.server.client is not None
            drain = fast.server.client.drain
            assert drain is not None
            before = drain.handed
            stream = b"".join(
                [
                    _write(ELSP_RCS, 0),
                    _write(GDRST, 0, CMD),
                    _write(0x4260, 0),
                    _read(ELSP_RCS),
                    encode_message(9, Command.REGION_WRITE, POSTED, REGION_ACCESS.pack(GDRST, 0, 2) + b"\0\0"),
                ]
            )
            replies = _exchange(client, stream)
            assert len(replies) == 2 * 32 + 4  # the GDRST write's and the ELSP read's (0)
            assert drain.handed - before == 4
        finally:
            client.close()
            fast.stop()


# --- the aperture (BAR2): fbcon's path ---------------------------------------------------

APERTURE = 2
APERTURE_PAGES = 8  # graphics pages 0-7, mapped by the stream's GGTT writes
aperture_offsets = st.one_of(
    st.integers(0, APERTURE_PAGES * 4096 - 8),
    st.sampled_from([4096 - 4, 4096 - 2, 2 * 4096 - 1, (1 << 28) - 4, 1 << 28, 2**64 - 4]),  # across, past
)
aperture_gfns = st.sampled_from([0x10, 0x11, 0x20, 0xFF, 0x400, 0x40F, 0x12345])


@st.composite
def aperture_messages(draw: st.DrawFn, msg_id: int) -> bytes:
    kind = draw(st.sampled_from(["map", "fence", "write", "multi", "multi", "read"]))
    flags = draw(st.sampled_from([CMD, POSTED, POSTED]))
    if kind == "map":  # a GGTT entry of the aperture's pages: present or not, in a window or not
        index = draw(st.integers(0, APERTURE_PAGES - 1))
        value = draw(aperture_gfns) << 12 | draw(st.sampled_from([1, 1, 0]))
        access = REGION_ACCESS.pack(GGTT + 8 * index, 0, 8)
        return encode_message(msg_id, Command.REGION_WRITE, flags, access + value.to_bytes(8, "little"))
    if kind == "fence":  # valid or not: a valid fence sends the aperture's writes to Python
        lo = draw(st.sampled_from([0, 0, 0x1000 | 1, 0x1000 | 3]))
        access = REGION_ACCESS.pack(regs.FENCE_REG_BASE + 8 * draw(st.integers(0, 3)), 0, 4)
        return encode_message(msg_id, Command.REGION_WRITE, flags, access + lo.to_bytes(4, "little"))
    if kind == "read":
        access = REGION_ACCESS.pack(draw(aperture_offsets), APERTURE, draw(st.sampled_from([4, 8])))
        return encode_message(msg_id, Command.REGION_READ, CMD, access)
    if kind == "write":
        count = draw(st.sampled_from([1, 2, 4, 8, 64]))
        access = REGION_ACCESS.pack(draw(aperture_offsets), APERTURE, count)
        data = draw(st.binary(min_size=count, max_size=count))
        return encode_message(msg_id, Command.REGION_WRITE, flags, access + data)
    n = draw(st.integers(1, 30))
    at = draw(aperture_offsets)
    body = WRITE_MULTI.pack(n)
    for _ in range(n):
        count = draw(st.sampled_from([4, 4, 8, 1, 2]))
        region = draw(st.sampled_from([APERTURE] * 12 + [0]))  # now and then a register among them
        offset = at if region == APERTURE else 0x4000
        at = (at + count) % 2**64 if draw(st.integers(0, 5)) else draw(aperture_offsets)
        data = draw(st.binary(min_size=count, max_size=count)).ljust(8, b"\0")
        body += WRITE_MULTI_ENTRY.pack(offset, region, count, int.from_bytes(data, "little"))
    return encode_message(msg_id, Command.REGION_WRITE_MULTI, flags, body)


@settings(max_examples=40, deadline=None)
@given(stream=st.integers(1, 50).flatmap(lambda n: st.tuples(*[aperture_messages(i) for i in range(n)])))
def test_aperture_writes_in_c_leave_what_python_leaves(stream: tuple[bytes, ...]) -> None:
    """Aperture writes, single and batched, among GGTT entry writes (mappings into windows
    with and without an fd, scratch, absent) and fence writes: both servers answer alike and
    leave the same guest memory and device state."""
    data = b"".join(stream)
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d, GuestMemory(MEM) as m1, GuestMemory(MEM) as m2:
        fast, fast_client = _start(True, m1, d, "accel.sock")
        slow, slow_client = _start(False, m2, d, "python.sock")
        try:
            assert _exchange(fast_client, data) == _exchange(slow_client, data)
            assert _state(fast) == _state(slow)
            assert _digest(m1.read(0, MEM)) == _digest(m2.read(0, MEM))
        finally:
            for s, c in ((fast, fast_client), (slow, slow_client)):
                c.close()
                s.stop()


# --- published reads: the interrupts and the execlists ----------------------------------------


def _published() -> tuple[list[int], list[int]]:
    """From the register table: every register C now reads from storage although a Python
    handler owns it (a published read, or a handler for writes only), and the interrupt
    registers and GDRST the guest writes among those reads."""
    rf = GenVgpu(display=DisplayOptions("none")).registers
    reads = [off for off, reg in sorted(rf.regs.items()) if reg.published or (reg.write and not reg.read)]
    writes = [
        off
        for off, reg in sorted(rf.regs.items())
        if reg.name.endswith(("_IIR", "_IMR", "_IER")) or reg.name in ("GEN8_MASTER_IRQ", "GDRST")
    ]
    return reads, writes


PUBLISHED_READS, IRQ_WRITES = _published()
GDRST_VALUES = [0, GDRST_FULL, *(1 << e.gdrst_bit for e in ENGINES)]
irq_values = st.one_of(st.sampled_from([0, 0xFFFFFFFF, MASTER_IRQ_ENABLE, *GDRST_VALUES]), st.integers(0, 0xFFFFFFFF))


@st.composite
def irq_batches(draw: st.DrawFn, msg_id: int) -> bytes:
    """Reads of the published registers among writes that change what they read."""
    out = []
    for i in range(draw(st.integers(1, 12))):
        if draw(st.booleans()):
            access = REGION_ACCESS.pack(draw(st.sampled_from(PUBLISHED_READS)), 0, draw(st.sampled_from([4, 4, 8])))
            out.append(encode_message(msg_id + i, Command.REGION_READ, CMD, access))
        else:
            access = REGION_ACCESS.pack(draw(st.sampled_from(IRQ_WRITES)), 0, 4)
            value = draw(irq_values).to_bytes(4, "little")
            out.append(
                encode_message(msg_id + i, Command.REGION_WRITE, draw(st.sampled_from([CMD, POSTED])), access + value)
            )
    return b"".join(out)


MI_USER_INTERRUPT = 0x02 << 23
LRI_RING_TAIL = [0x22 << 23 | 1, er.RING_TAIL, 0]  # refused by the scanner: the context hangs
# (engine index, context 0 or 1, commands): a batch that completes with a user interrupt, or
# one that hangs (the context stays current: later submissions queue or lite-restore on it)
submissions = st.tuples(
    st.integers(0, len(ENGINES) - 1),
    st.integers(0, 1),
    st.sampled_from([[MI_USER_INTERRUPT, 0], [0, 0], LRI_RING_TAIL]),
)
# i915's engine and full resets (GDRST), as a step of their own: a reset of a busy or hung
# engine is what republishes its EXECLIST_STATUS as idle
gdrst_writes = st.sampled_from(GDRST_VALUES[1:]).map(
    lambda v: encode_message(0, Command.REGION_WRITE, CMD, REGION_ACCESS.pack(GDRST, 0, 4) + v.to_bytes(4, "little"))
)
# a step: a batch of register accesses, a reset, or a submission through ELSP run to idle
steps = st.lists(
    st.one_of(
        st.tuples(st.just("mmio"), irq_batches(0)),
        st.tuples(st.just("mmio"), gdrst_writes),
        st.tuples(st.just("submit"), submissions),
    ),
    min_size=1,
    max_size=25,
)


def _rig_server(
    accel: bool, mem: GuestMemory, sock_dir: str, name: str
) -> tuple[ServerThread, VfioUserClient, Rig, list[list[Context]]]:
    """A server whose guest set up graphics memory, status pages and execlists (engine_rig),
    with two contexts per engine."""
    dev = GenVgpu(display=DisplayOptions("none"))
    st_ = ServerThread(dev, os.path.join(sock_dir, name), ServerOptions(write_multiple=True), accel=accel)
    client = VfioUserClient.connect(st_.path, mem)
    client.negotiate()
    client.map_memory(mem)
    rig: Rig = st_.call(lambda: Rig(dev=dev, mem=mem))
    contexts: list[list[Context]] = st_.call(
        lambda: [[rig.context(e, Tree(rig.guest, 4)) for _ in range(2)] for e in ENGINES]
    )
    return st_, client, rig, contexts


def _untimed(dev: GenVgpu) -> str:
    """The registers' digest without those that count time (a context's saved CTX_TIMESTAMP:
    the two servers run their workloads at different instants)."""
    storage = bytearray(dev.registers.storage)
    for off, reg in dev.registers.regs.items():
        if "TIMESTAMP" in reg.name:
            storage[off : off + 4] = bytes(4)
    return _digest(storage)


def _elsp(ctx: Context, rig: Rig, msg_id: int) -> bytes:
    """The four ELSP writes i915 makes, element 1 (none) first."""
    lo, hi = rig.descriptor(ctx)
    out = b""
    for i, value in enumerate((0, 0, hi, lo)):
        access = REGION_ACCESS.pack(ctx.engine.reg(er.ELSP), 0, 4)
        out += encode_message(msg_id + i, Command.REGION_WRITE, POSTED, access + value.to_bytes(4, "little"))
    return out


def _postinstall() -> bytes:
    """What i915's irq postinstall leaves: every GT bank unmasked and enabled, the master on."""
    out = b""
    for bank in range(GT_BANKS):
        for reg, value in ((BANK_IMR, 0), (BANK_IER, 0xFFFFFFFF)):
            access = REGION_ACCESS.pack(gt_bank(bank) + reg, 0, 4)
            out += encode_message(0, Command.REGION_WRITE, CMD, access + value.to_bytes(4, "little"))
    access = REGION_ACCESS.pack(regs.GEN8_MASTER_IRQ, 0, 4)
    return out + encode_message(0, Command.REGION_WRITE, CMD, access + MASTER_IRQ_ENABLE.to_bytes(4, "little"))


def _read_all(msg_id: int) -> bytes:
    return b"".join(
        encode_message(msg_id + i, Command.REGION_READ, CMD, REGION_ACCESS.pack(off, 0, 4))
        for i, off in enumerate(PUBLISHED_READS)
    )


@settings(max_examples=25, deadline=None)
@given(plan=steps, postinstall=st.integers(0, 3).map(bool))  # 3 in 4 start as i915 does
def test_published_reads_follow_interrupts_and_execlists(plan: list[tuple[str, Any]], postinstall: bool) -> None:
    """The master interrupt register, the IIRs and EXECLIST_STATUS read from storage in C, and
    through their handlers in Python, while submissions complete (CSB entries, context-switch
    and user interrupts) or hang (a second submission queues behind the hung context, a
    resubmission lite-restores it), the guest clears IIRs, masks and enables banks, toggles
    the master enable and resets engines: both servers answer every read alike, and the
    interrupt line is raised and lowered as often on both (C runs the interrupt registers'
    writes, Python those that move the line)."""
    _run_plan(plan, postinstall)


def _write(offset: int, value: int, flags: int = POSTED) -> bytes:
    access = REGION_ACCESS.pack(offset, 0, 4)
    return encode_message(0, Command.REGION_WRITE, flags, access + value.to_bytes(4, "little"))


def _read(offset: int) -> bytes:
    return encode_message(0, Command.REGION_READ, CMD, REGION_ACCESS.pack(offset, 0, 4))


def test_i915s_interrupt_handler_moves_the_line_as_python_does() -> None:
    """gen8_irq_handler's sequence around user interrupts: the master disabled (the line
    lowered), the status and the IIR read, the IIR written back, the master enabled again;
    and an event that comes while the master is disabled, so that the enable re-raises it."""
    master, iir = regs.GEN8_MASTER_IRQ, gt_bank(0) + BANK_IIR
    user = ("submit", (0, 0, [MI_USER_INTERRUPT, 0]))
    handler_start = _write(master, 0) + _read(master) + _read(iir)
    plan: list[tuple[str, Any]] = [
        user,
        ("mmio", handler_start + _write(iir, 0xFFFFFFFF) + _write(master, MASTER_IRQ_ENABLE)),
        user,
        ("mmio", handler_start),
        user,  # while the master is disabled: no raise
        # pending: raised again, and once more by a second enable (GVT-g's check_pending_irq)
        ("mmio", _write(master, MASTER_IRQ_ENABLE) + _write(master, MASTER_IRQ_ENABLE)),
        ("mmio", handler_start + _write(iir, 0xFFFF, CMD) + _write(master, MASTER_IRQ_ENABLE, CMD)),
        ("mmio", _write(gt_bank(0) + BANK_IMR, 0xFFFFFFFF) + _write(gt_bank(0) + BANK_IMR, 0)),
    ]
    counters = _run_plan(plan, True)
    assert counters["raised"] == 4 and counters["lowered"] == 3, counters


def _run_plan(plan: list[tuple[str, Any]], postinstall: bool) -> dict[str, int]:
    """Both servers through the plan's steps; their replies and end states compared. Returns
    the interrupt counters."""
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d, GuestMemory(RAM) as m1, GuestMemory(RAM) as m2:
        pair = [_rig_server(True, m1, d, "accel.sock"), _rig_server(False, m2, d, "python.sock")]
        try:
            assert pair[0][0].server.client is not None and pair[0][0].server.client.drain is not None
            if postinstall:
                plan = [("mmio", _postinstall()), *plan]
            for n, (kind, arg) in enumerate(plan):
                if kind == "mmio":
                    stream = arg
                else:
                    engine, k, commands = arg
                    for s, _c, rig, contexts in pair:
                        s.call(functools.partial(rig.emit, contexts[engine][k], commands))
                    stream = _elsp(pair[0][3][engine][k], pair[0][2], 0)
                replies = []
                for s, c, rig, _contexts in pair:
                    replies.append(_exchange(c, stream))
                    s.call(rig.run)  # the submission's work, run to idle between the steps
                    replies.append(_exchange(c, _read_all(0)))
                assert replies[0] == replies[2], f"step {n}: {kind}"
                assert replies[1] == replies[3], f"after step {n}: {kind}"
            fast, slow = (_state(s) | {"registers": s.call(functools.partial(_untimed, s.vgpu))} for s, *_ in pair)
            assert fast == slow
            counters: dict[str, int] = fast["interrupts"]
            return counters
        finally:
            for s, c, _rig, _contexts in pair:
                c.close()
                s.stop()


# --- a lit pipe: the status reads before and after the next vblank -----------------------------


def test_status_reads_with_a_pipe_lit_are_cs_until_the_next_vblank(memory: GuestMemory) -> None:
    """With pipe A on, the display opens the interrupts' read gate until its next vblank: the
    master and display IIR reads are C's before it (the catch-up would find nothing to do), and
    a read at or after it runs the catch-up in Python, which sets the vblank's IIR bit and
    opens the gate until the following vblank. The deadlines are set here, so that nothing
    depends on when the reads happen."""
    with tempfile.TemporaryDirectory(prefix="devmodel-") as d:
        dev = GenVgpu(display=DisplayOptions("dp"))
        server = ServerThread(dev, os.path.join(d, "lit.sock"), ServerOptions(), accel=True)
        client = VfioUserClient.connect(server.path, memory)
        try:
            client.negotiate()
            client.map_memory(memory)
            ints = dev.interrupts
            catch_ups: list[float] = []

            def count() -> None:
                catch_ups.append(time.monotonic())
                catch_up()

            catch_up = server.call(lambda: ints.before_status)
            assert catch_up is not None
            server.call(lambda: setattr(ints, "before_status", count))
            pipe_iir = DISPLAY_BANKS["DE_PIPE_A"] + BANK_IIR
            # the vblank unmasked (its IIR bit set at each) but not enabled: no frame timer,
            # so only the reads below move the gate's deadline
            for offset, value in ((pipe_iir - 4, 0xFFFFFFFE), (TRANSCONF, TRANSCONF_ENABLE)):
                client.region_write(0, offset, value.to_bytes(4, "little"))
            rf = dev.registers
            pipe = dev.display.pipes[0]  # type: ignore[union-attr]
            until = server.call(lambda: pipe.t0 + pipe.period)
            assert rf.timed[regs.GEN8_MASTER_IRQ >> 2] and rf.timed[pipe_iir >> 2]
            assert rf.until[0] == math.floor(until * 1e9) - UNTIL_MARGIN_NS

            def status() -> tuple[int, int]:
                iir = int.from_bytes(client.region_read(0, pipe_iir, 4), "little")
                return iir, int.from_bytes(client.region_read(0, regs.GEN8_MASTER_IRQ, 4), "little")

            server.call(lambda: ints.read_gate.open_until(time.monotonic() + 3600))
            time.sleep(2 * pipe.period)  # vblanks are due, but C does not know
            assert status() == (0, 0) and not catch_ups  # C's: storage, no catch-up
            server.call(lambda: ints.read_gate.open_until(time.monotonic() - 1))
            iir, _master = status()
            assert catch_ups  # Python's: the hook caught the frame clock up
            assert iir & 1  # DE_PIPE_A's vblank
            assert server.call(lambda: ints.read_gate.until) > catch_ups[0]  # open until the next
        finally:
            client.close()
            server.stop()
