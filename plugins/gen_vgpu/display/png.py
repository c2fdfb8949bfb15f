"""A PNG writer (RGB, 8 bits per channel) on the standard library's zlib."""

from __future__ import annotations

import struct
import zlib

__all__ = ["xrgb_to_rgb", "encode_png", "decode_png_rgb"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def xrgb_to_rgb(frame: bytes | bytearray | memoryview) -> bytearray:
    """XRGB8888 pixels (bytes B, G, R, X in memory) as packed R, G, B bytes."""
    n = len(frame) // 4
    rgb = bytearray(3 * n)
    rgb[0::3] = frame[2::4]
    rgb[1::3] = frame[1::4]
    rgb[2::3] = frame[0::4]
    return rgb


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png(width: int, height: int, frame: bytes | bytearray | memoryview, level: int = 6) -> bytes:
    """An XRGB8888 frame of ``width`` x ``height`` as a PNG file."""
    rgb = xrgb_to_rgb(frame)
    row = 3 * width
    raw = b"".join(b"\x00" + rgb[y * row : (y + 1) * row] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, level)) + _chunk(b"IEND", b"")


def decode_png_rgb(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and packed RGB of a PNG this module wrote (8-bit RGB, filter 0 rows)."""
    if data[:8] != _SIGNATURE:
        raise ValueError("not a PNG")
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack_from(">IIBB", body)
            if (depth, colour) != (8, 2):
                raise ValueError("only 8-bit RGB PNGs")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    row = 3 * width
    out = bytearray()
    for y in range(height):
        line = raw[y * (row + 1) : (y + 1) * (row + 1)]
        if line[0] != 0:
            raise ValueError("only filter-0 rows")
        out += line[1:]
    return width, height, bytes(out)
