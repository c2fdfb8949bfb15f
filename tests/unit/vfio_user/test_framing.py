"""Framer: whole messages out of arbitrary chunks, fds attached to the right message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devmodel.errors import FramingError
from devmodel.vfio_user.constants import HEADER_SIZE, MAX_MSG_SIZE, Command, HeaderFlags
from devmodel.vfio_user.framing import Framer, Message, encode_message
from devmodel.vfio_user.layouts import HEADER


@dataclass
class Sent:
    msg_id: int
    command: int
    flags: int
    error: int
    payload: bytes
    fds: list[int]

    def wire(self) -> bytes:
        return encode_message(self.msg_id, self.command, self.flags, self.payload, self.error)

    def as_message(self) -> Message:
        return Message(self.msg_id, self.command, self.flags, self.error, self.payload, self.fds)


_fd_counter = iter(range(100, 10**9))


@st.composite
def sent_messages(draw: st.DrawFn) -> Sent:
    msg_type = draw(st.sampled_from([0, 1]))
    extra = draw(st.sampled_from([0, HeaderFlags.NO_REPLY, HeaderFlags.ERROR, 0xFFFFFFC0]))
    nfds = draw(st.sampled_from([0, 0, 0, 1, 2, 8]))
    return Sent(
        msg_id=draw(st.integers(0, 0xFFFF)),
        command=draw(st.integers(0, 0xFFFF)),
        flags=msg_type | extra,
        error=draw(st.integers(0, 0xFFFFFFFF)),
        payload=draw(st.binary(max_size=300)),
        fds=[next(_fd_counter) for _ in range(nfds)],
    )


def take_plain(framer: Framer) -> list[Message]:
    """What a compiled fast path does: whole messages from the fd-free span, then skip_to."""
    start, end = framer.plain_span()
    out = []
    while end - start >= HEADER_SIZE:
        msg_id, command, size, flags, error = HEADER.struct.unpack_from(framer.buffer, start)
        if start + size > end:
            break
        out.append(Message(msg_id, command, flags, error, bytes(framer.buffer[start + HEADER_SIZE : start + size]), []))
        start += size
    framer.skip_to(start)
    return out


def feed_like_the_kernel(
    msgs: list[Sent],
    draw: Callable[[st.SearchStrategy[Any]], Any],
    drain_each: bool,
    framer: Framer | None = None,
    fast: bool = False,
) -> tuple[list[Message], Framer]:
    """Cut the stream the way a UNIX stream socket may: anywhere, except that the chunk that
    holds the first byte of an fd-carrying message brings its fds and ends inside that
    message (after its first skb)."""
    stream = b"".join(m.wire() for m in msgs)
    starts = []
    pos = 0
    for m in msgs:
        starts.append(pos)
        pos += len(m.wire())
    drawn = set(draw(st.lists(st.integers(1, max(1, len(stream) - 1)), max_size=30)))
    for m, start in zip(msgs, starts, strict=True):
        if m.fds:
            drawn.add(draw(st.integers(start + 1, start + len(m.wire()))))
    cuts = sorted(c for c in drawn if 0 < c < len(stream)) + [len(stream)]
    fds_at = {start: m.fds for m, start in zip(msgs, starts, strict=True) if m.fds}

    framer = framer or Framer()
    out: list[Message] = []
    prev = 0
    for cut in cuts:
        chunk_fds = [fd for start, fds in fds_at.items() if prev <= start < cut for fd in fds]
        if fast:  # as the server reads: into the buffer's free end
            space = framer.read_space(cut - prev)
            space[: cut - prev] = stream[prev:cut]
            framer.commit(cut - prev, chunk_fds)
        else:
            framer.receive(stream[prev:cut], chunk_fds)
        prev = cut
        if drain_each:
            while True:
                if fast:
                    out.extend(take_plain(framer))
                msg = framer.next_message()
                if msg is None:
                    break
                out.append(msg)
    while (msg := framer.next_message()) is not None:
        out.append(msg)
    return out, framer


@settings(max_examples=300, deadline=None)
@given(msgs=st.lists(sent_messages(), max_size=25), drain_each=st.booleans(), data=st.data())
def test_random_splits_give_back_the_same_messages(msgs: list[Sent], drain_each: bool, data: st.DataObject) -> None:
    out, framer = feed_like_the_kernel(msgs, data.draw, drain_each)
    assert out == [m.as_message() for m in msgs]
    assert framer.buffered == 0
    assert framer.take_fds() == []
    for got, sent in zip(out, msgs, strict=True):
        assert got.is_reply == (sent.flags & 0xF == 1)
        assert got.no_reply == bool(sent.flags & HeaderFlags.NO_REPLY)


@settings(max_examples=300, deadline=None)
@given(msgs=st.lists(sent_messages(), max_size=25), capacity=st.sampled_from([16, 64, 1024]), data=st.data())
def test_a_fast_path_takes_only_messages_without_fds(msgs: list[Sent], capacity: int, data: st.DataObject) -> None:
    """Reads into a small buffer (compacted and grown as they go), a fast path taking what
    plain_span offers before each message the framer hands out: every message comes out
    once, in order, and those the fast path took are exactly ones sent without fds."""
    out, framer = feed_like_the_kernel(msgs, data.draw, True, Framer(capacity=capacity), fast=True)
    assert [m._replace(fds=[]) for m in out] == [m.as_message()._replace(fds=[]) for m in msgs]
    assert [m.fds for m in out] == [m.fds for m in msgs]
    assert framer.buffered == 0 and framer.take_fds() == []


def test_adopt_refuses_pending_fds_and_spans_outside_the_buffer() -> None:
    framer = Framer(capacity=64)
    framer.receive(encode_message(1, 2, 0, b"x"), [7])
    with pytest.raises(ValueError, match="fds pending"):
        framer.adopt(0, 0, 0)
    framer = Framer(capacity=64)
    with pytest.raises(ValueError, match="outside"):
        framer.adopt(0, 65, 0)
    with pytest.raises(ValueError, match="outside"):
        framer.skip_to(1)


@settings(max_examples=100, deadline=None)
@given(msgs=st.lists(sent_messages(), min_size=1, max_size=10), data=st.data())
def test_byte_at_a_time_and_one_chunk(msgs: list[Sent], data: st.DataObject) -> None:
    plain = [Sent(m.msg_id, m.command, m.flags, m.error, m.payload, []) for m in msgs]
    stream = b"".join(m.wire() for m in plain)
    framer = Framer()
    out = []
    for i in range(len(stream)):
        framer.receive(stream[i : i + 1])
        msg = framer.next_message()
        if msg is not None:
            out.append(msg)
            assert framer.next_message() is None
    assert out == [m.as_message() for m in plain]
    framer = Framer()
    framer.receive(stream)
    at_once = [framer.next_message() for _ in plain]
    assert at_once == [m.as_message() for m in plain]
    assert framer.next_message() is None


# --- fd attachment, by hand ----------------------------------------------------------------


def _msg(msg_id: int, payload: bytes = b"", command: int = Command.REGION_WRITE) -> bytes:
    return encode_message(msg_id, command, 0, payload)


def test_header_only_reads_with_fds() -> None:
    """The recommended transport: recvmsg(16) brings the header and its fds, recv the rest."""
    a, b, c = _msg(1, b"A" * 40), _msg(2, b"B" * 32, Command.DMA_MAP), _msg(3, b"C" * 20, Command.DEVICE_SET_IRQS)
    framer = Framer()
    framer.receive(a[:16])
    assert framer.next_message() is None
    framer.receive(a[16:])
    assert framer.next_message() == Message(1, Command.REGION_WRITE, 0, 0, b"A" * 40, [])
    framer.receive(b[:16], [7])
    assert framer.next_message() is None
    framer.receive(b[16:])
    assert framer.next_message() == Message(2, Command.DMA_MAP, 0, 0, b"B" * 32, [7])
    framer.receive(c[:16], [8, 9, 10])
    framer.receive(c[16:30])
    assert framer.next_message() is None
    framer.receive(c[30:])
    assert framer.next_message().fds == [8, 9, 10]  # type: ignore[union-attr]
    assert framer.next_message() is None
    assert framer.take_fds() == []


def test_big_chunk_ending_at_end_of_fd_message() -> None:
    a, b, c = _msg(1, b"a" * 8), _msg(2, b"b" * 32), _msg(3, b"c" * 8)
    framer = Framer()
    framer.receive(a + b, [11])  # the fds came with the chunk that ends with b
    framer.receive(c)
    got = [framer.next_message() for _ in range(3)]
    assert [m.msg_id for m in got] == [1, 2, 3]  # type: ignore[union-attr]
    assert [m.fds for m in got] == [[], [11], []]  # type: ignore[union-attr]


def test_big_chunk_ending_inside_fd_message() -> None:
    a, b, c = _msg(1, b"a" * 8), _msg(2, b"b" * 32), _msg(3, b"c" * 8)
    stream = a + b + c
    for cut in (len(a) + 1, len(a) + 16, len(a) + 17, len(a) + len(b) - 1):
        framer = Framer()
        framer.receive(stream[:cut], [21, 22])
        first = framer.next_message()
        assert first is not None and first.msg_id == 1 and first.fds == []
        assert framer.next_message() is None
        framer.receive(stream[cut:])
        second, third = framer.next_message(), framer.next_message()
        assert second is not None and second.msg_id == 2 and second.fds == [21, 22], cut
        assert third is not None and third.msg_id == 3 and third.fds == []


def test_fds_of_consecutive_chunks_go_to_their_own_messages() -> None:
    a, b = _msg(1, b"a" * 8), _msg(2, b"b" * 8)
    framer = Framer()
    framer.receive(a[:16], [1])
    framer.receive(a[16:] + b[:5], [2])  # the second fds came with a chunk ending inside b
    framer.receive(b[5:])
    first, second = framer.next_message(), framer.next_message()
    assert first is not None and first.fds == [1]
    assert second is not None and second.fds == [2]


def test_fds_survive_buffer_compaction() -> None:
    """Far more than 64 KiB through one framer, fds on some messages, odd chunk sizes."""
    msgs = [(i, bytes([i & 0xFF]) * (1000 + i), [1000 + i] if i % 7 == 3 else []) for i in range(200)]
    framer = Framer()
    out: list[Message] = []
    for i, payload, fds in msgs:
        wire = _msg(i, payload)
        # header alone for fd messages, otherwise two odd pieces
        split = 16 if fds else 5 + i % 11
        framer.receive(wire[:split], fds)
        framer.receive(wire[split:])
        while (m := framer.next_message()) is not None:
            out.append(m)
    assert [(m.msg_id, m.payload, m.fds) for m in out] == msgs
    # and messages held back across several receives while the buffer compacts
    framer = Framer()
    stream = b"".join(_msg(i, payload) for i, payload, _ in msgs)
    framer.receive(stream[:70000])
    got = [framer.next_message() for _ in range(3)]
    assert [m.msg_id for m in got] == [0, 1, 2]  # type: ignore[union-attr]
    framer.receive(stream[70000:70100], [55])
    rest = []
    pos = 70100
    while (m := framer.next_message()) is not None or pos < len(stream):
        if m is None:
            framer.receive(stream[pos : pos + 4096])
            pos += 4096
        else:
            rest.append(m)
    assert [m.msg_id for m in rest] == list(range(3, 200))
    owner = [m for m in rest if m.fds]
    starts = []
    off = 0
    for i, payload, _ in msgs:
        starts.append((off, off + HEADER_SIZE + len(payload), i))
        off += HEADER_SIZE + len(payload)
    expected_owner = next(i for s, e, i in starts if s <= 70099 < e)
    assert [(m.msg_id, m.fds) for m in owner] == [(expected_owner, [55])]


def test_take_fds_returns_undelivered_fds() -> None:
    framer = Framer()
    a = _msg(1, b"x" * 10)
    framer.receive(a, [3])
    framer.receive(_msg(2, b"y" * 30)[:20], [4, 5])
    # the first message is complete but not taken yet: its fds are undelivered too
    assert framer.take_fds() == [3, 4, 5]
    assert framer.take_fds() == []
    first = framer.next_message()
    assert first is not None and first.fds == []


def test_take_fds_after_partial_delivery() -> None:
    framer = Framer()
    framer.receive(_msg(1, b"x"), [3])
    framer.receive(_msg(2, b"y" * 30)[:20], [4])
    m = framer.next_message()
    assert m is not None and m.fds == [3]
    assert framer.next_message() is None
    assert framer.take_fds() == [4]


# --- framing errors ------------------------------------------------------------------------


def _header(size: int, flags: int = 0, msg_id: int = 9) -> bytes:
    return HEADER.pack(msg_id, Command.REGION_READ, size, flags, 0)


@pytest.mark.parametrize("size", [0, 1, 15])
def test_size_below_header_is_fatal(size: int) -> None:
    framer = Framer()
    framer.receive(_header(size))
    with pytest.raises(FramingError) as exc:
        framer.next_message()
    assert exc.value.fatal is True


def test_size_above_max_is_fatal_before_the_body_arrives() -> None:
    framer = Framer(max_size=100)
    framer.receive(_header(101))
    with pytest.raises(FramingError) as exc:
        framer.next_message()
    assert exc.value.fatal is True
    ok = Framer(max_size=100)
    ok.receive(_header(100) + b"\0" * 84)
    m = ok.next_message()
    assert m is not None and len(m.payload) == 84


def test_default_max_is_max_msg_size() -> None:
    framer = Framer()
    framer.receive(_header(MAX_MSG_SIZE + 1))
    with pytest.raises(FramingError):
        framer.next_message()
    framer = Framer()
    framer.receive(_header(MAX_MSG_SIZE))
    assert framer.next_message() is None  # legal, just incomplete


@pytest.mark.parametrize("msg_type", range(2, 16))
def test_unknown_message_type_is_fatal(msg_type: int) -> None:
    framer = Framer()
    framer.receive(_header(16, flags=msg_type))
    with pytest.raises(FramingError) as exc:
        framer.next_message()
    assert exc.value.fatal is True


@pytest.mark.parametrize("flags", [0x0, 0x1, 0x10, 0x21, 0x31, 0xFFFFFFF0, 0xFFFFFFF1])
def test_known_types_with_other_bits_are_accepted(flags: int) -> None:
    framer = Framer()
    framer.receive(_header(16, flags=flags))
    m = framer.next_message()
    assert m is not None and m.flags == flags and m.payload == b""


def test_error_after_good_messages_keeps_them() -> None:
    framer = Framer()
    framer.receive(_msg(1, b"ok") + _header(3))
    m = framer.next_message()
    assert m is not None and m.payload == b"ok"
    with pytest.raises(FramingError):
        framer.next_message()


def test_encode_message_header() -> None:
    raw = encode_message(0x1234, Command.DMA_READ, 0x10, b"abc", error=5)
    assert raw == bytes.fromhex("3412 0b00 13000000 10000000 05000000".replace(" ", "")) + b"abc"
