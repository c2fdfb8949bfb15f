"""The guest's picture read off a console and written as a PNG (host only, no QEMU)."""
import base64
import struct
import zlib

import pytest

import harness

W, H = 5, 3


def pixels():
    """W x H pixels of 0x00RRGGBB with R = x * 50, G = y * 100, B = 7, stored little-endian."""
    return b"".join(struct.pack("<I", (x * 50) << 16 | (y * 100) << 8 | 7) for y in range(H) for x in range(W))


def console_with(data, width=W, height=H):
    text = base64.b64encode(zlib.compress(data)).decode()
    lines = ["# " + text[i:i + 10] for i in range(0, len(text), 10)]
    return "\r\n".join(["ok 5 - blits", "# devmodel-picture begin %dx%d bgrx" % (width, height), *lines,
                        "# devmodel-picture end", "ok 6 - next", ""])


def read_png(data):
    """(width, height, rgb) of an 8-bit RGB PNG with unfiltered rows; checks every CRC."""
    assert data[:8] == harness.picture.PNG_SIGNATURE
    pos, chunks = 8, dict[bytes, bytes]()
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack_from(">I", data, pos + 8 + n)[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[y * (1 + 3 * width):(y + 1) * (1 + 3 * width)] for y in range(height)]
    assert all(row[0] == 0 for row in rows)
    return width, height, b"".join(row[1:] for row in rows)


def test_a_picture_on_the_console_comes_back_pixel_for_pixel_as_png(tmp_path):
    pic = harness.picture_from_console(console_with(pixels()))
    assert pic is not None
    assert (pic.width, pic.height, pic.bgrx) == (W, H, pixels())
    path = harness.write_png(tmp_path / "p.png", pic)
    width, height, rgb = read_png(path.read_bytes())
    assert (width, height) == (W, H)
    assert [tuple(rgb[i:i + 3]) for i in range(0, len(rgb), 3)] == [
        (x * 50, y * 100, 7) for y in range(H) for x in range(W)]


def test_no_picture_is_none_and_a_damaged_one_is_an_error():
    assert harness.picture_from_console("ok 1 - nothing\n") is None
    with pytest.raises(harness.HarnessError, match="has 56 bytes"):
        harness.picture_from_console(console_with(pixels()[:-4]))
    begin = "# devmodel-picture begin 5x3 bgrx\r\n# "
    broken = console_with(pixels()).replace(begin, begin + "!")
    with pytest.raises(harness.HarnessError, match="does not decode"):
        harness.picture_from_console(broken)
