"""A picture a guest script printed on the console, and a PNG writer (standard library only).

The guest prints the picture's pixels (32 bpp, B G R X in memory, as the blitter writes
0x00RRGGBB little-endian) zlib-compressed and base64-encoded, 76 characters a line, as TAP
comments between '# devmodel-picture begin WxH bgrx' and '# devmodel-picture end'
(guest-tests/guest/test_engines.py prints it when devmodel.picture=1 is on its kernel
command line)."""
import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import HarnessError

PICTURE = re.compile(r"^# devmodel-picture begin (\d+)x(\d+) bgrx\r?\n(.*?)^# devmodel-picture end\r?$",
                     re.MULTILINE | re.DOTALL)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BPP = 4


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    bgrx: bytes  # width * height pixels of 4 bytes, rows top to bottom

    def rgb(self) -> bytes:
        """The pixels as R G B triples."""
        out = bytearray(self.width * self.height * 3)
        out[0::3] = self.bgrx[2::4]
        out[1::3] = self.bgrx[1::4]
        out[2::3] = self.bgrx[0::4]
        return bytes(out)


def picture_from_console(console: str) -> Picture | None:
    """The last picture printed on the console, None when there is none; HarnessError when
    one is there but damaged."""
    found = list(PICTURE.finditer(console))
    if not found:
        return None
    m = found[-1]
    width, height = int(m.group(1)), int(m.group(2))
    text = "".join(line.strip()[2:] for line in m.group(3).splitlines() if line.strip().startswith("# "))
    try:
        data = zlib.decompress(base64.b64decode(text, validate=True))
    except (binascii.Error, zlib.error) as e:
        raise HarnessError(f"the guest's picture does not decode: {e}") from e
    if len(data) != width * height * _BPP:
        raise HarnessError(f"the guest's {width}x{height} picture has {len(data)} bytes, "
                           f"want {width * height * _BPP}")
    return Picture(width, height, data)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, rgb: bytes) -> bytes:
    """An 8-bit RGB PNG: one IDAT, filter type 0 (none) on every row."""
    if len(rgb) != width * height * 3:
        raise ValueError(f"{len(rgb)} bytes of RGB for {width}x{height}")
    stride = width * 3
    raw = b"".join(b"\x00" + rgb[y * stride:(y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # depth 8, colour type 2 (RGB)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def write_png(path: Path, picture: Picture) -> Path:
    path = Path(path)
    path.write_bytes(png_bytes(picture.width, picture.height, picture.rgb()))
    return path
