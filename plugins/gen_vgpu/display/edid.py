"""The virtual monitor's EDID (contract §6.8): EDID 1.4, one 128-byte block, a preferred
detailed timing for the chosen mode, or a user's EDID file checked block by block."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EDID_BLOCK", "EdidError", "Timing", "MODES", "make_edid", "validate_edid", "preferred_timing"]

EDID_BLOCK = 128
_HEADER = bytes((0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00))


class EdidError(ValueError):
    """A user's EDID that a sink could not present (length, header or checksum)."""


@dataclass(frozen=True)
class Timing:
    """One video mode as a detailed timing descriptor carries it."""

    pixel_khz: int
    hactive: int
    hfront: int
    hsync: int
    hback: int
    vactive: int
    vfront: int
    vsync: int
    vback: int
    hsync_positive: bool
    vsync_positive: bool

    @property
    def htotal(self) -> int:
        return self.hactive + self.hfront + self.hsync + self.hback

    @property
    def vtotal(self) -> int:
        return self.vactive + self.vfront + self.vsync + self.vback


# VESA DMT 1024x768@60 and CEA-861 1920x1080@60.
MODES: dict[str, Timing] = {
    "1024x768": Timing(65000, 1024, 24, 136, 160, 768, 3, 6, 29, False, False),
    "1920x1080": Timing(148500, 1920, 88, 44, 148, 1080, 4, 5, 36, True, True),
}

# A 24-inch panel's size, in mm (the DTD) and cm (the basic parameters).
_SIZE_MM = (518, 324)


def _checksum(block: bytes | bytearray) -> int:
    return (-sum(block[:127])) & 0xFF


def _dtd(t: Timing) -> bytes:
    hblank = t.hfront + t.hsync + t.hback
    vblank = t.vfront + t.vsync + t.vback
    flags = 0x18 | (0x02 if t.hsync_positive else 0) | (0x04 if t.vsync_positive else 0)  # digital separate
    w, h = _SIZE_MM
    return bytes(
        (
            (t.pixel_khz // 10) & 0xFF,
            (t.pixel_khz // 10) >> 8,
            t.hactive & 0xFF,
            hblank & 0xFF,
            (t.hactive >> 8) << 4 | hblank >> 8,
            t.vactive & 0xFF,
            vblank & 0xFF,
            (t.vactive >> 8) << 4 | vblank >> 8,
            t.hfront & 0xFF,
            t.hsync & 0xFF,
            (t.vfront & 0xF) << 4 | (t.vsync & 0xF),
            (t.hfront >> 8) << 6 | (t.hsync >> 8) << 4 | (t.vfront >> 4) << 2 | (t.vsync >> 4),
            w & 0xFF,
            h & 0xFF,
            (w >> 8) << 4 | h >> 8,
            0,
            0,
            flags,
        )
    )


def _text_descriptor(tag: int, text: str) -> bytes:
    body = text.encode("ascii")[:13]
    if len(body) < 13:
        body += b"\n" + b" " * (12 - len(body))
    return bytes((0, 0, 0, tag, 0)) + body


def _chromaticity() -> bytes:
    """sRGB primaries and D65 white as 10-bit fractions (bytes 25-34)."""
    points = [(0.640, 0.330), (0.300, 0.600), (0.150, 0.060), (0.3127, 0.3290)]
    v = [round(c * 1024) for p in points for c in p]
    rx, ry, gx, gy, bx, by, wx, wy = v
    lo_rg = (rx & 3) << 6 | (ry & 3) << 4 | (gx & 3) << 2 | (gy & 3)
    lo_bw = (bx & 3) << 6 | (by & 3) << 4 | (wx & 3) << 2 | (wy & 3)
    return bytes((lo_rg, lo_bw, *(x >> 2 for x in v)))


def make_edid(mode: str = "1024x768") -> bytes:
    """The monitor's EDID with ``mode`` (a key of MODES) as its preferred timing."""
    try:
        timing = MODES[mode]
    except KeyError:
        raise EdidError(f"unknown mode {mode!r} (one of {', '.join(MODES)})") from None
    e = bytearray(EDID_BLOCK)
    e[0:8] = _HEADER
    e[8:10] = ((4 << 10) | (22 << 5) | 13).to_bytes(2, "big")  # PNP ID "DVM"
    e[10:12] = (0x0001).to_bytes(2, "little")  # product
    e[12:16] = (1).to_bytes(4, "little")  # serial
    e[16], e[17] = 1, 36  # week 1 of 2026
    e[18], e[19] = 1, 4  # EDID 1.4
    e[20] = 0xA5  # digital, 8 bits per colour, DisplayPort
    e[21], e[22] = _SIZE_MM[0] // 10, _SIZE_MM[1] // 10
    e[23] = 120  # gamma 2.2
    e[24] = 0x06  # sRGB default colour space; the preferred timing is the native one
    e[25:35] = _chromaticity()
    e[35:38] = bytes((0x21, 0x08, 0x00))  # established: 640x480, 800x600, 1024x768 @60
    # Standard timings: 1920x1080, 1280x720 (16:9), 1280x1024 (5:4), 1600x1200 (4:3) @60.
    e[38:54] = bytes((0xD1, 0xC0, 0x81, 0xC0, 0x81, 0x80, 0xA9, 0x40, 1, 1, 1, 1, 1, 1, 1, 1))
    e[54:72] = _dtd(timing)
    # Range limits: 50-75 Hz, 30-83 kHz, 170 MHz, no secondary timing formula.
    e[72:90] = bytes((0, 0, 0, 0xFD, 0, 50, 75, 30, 83, 17, 0, 0x0A, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20))
    e[90:108] = _text_descriptor(0xFC, "devmodel DP")
    e[108:126] = _text_descriptor(0xFF, "0001")
    e[126] = 0  # no extension blocks
    e[127] = _checksum(e)
    return bytes(e)


def validate_edid(blob: bytes) -> bytes:
    """A user's EDID: whole 128-byte blocks, the fixed header, as many blocks as byte 126 says,
    and every block's checksum. Returns the blob; raises EdidError saying what is wrong."""
    if not blob or len(blob) % EDID_BLOCK:
        raise EdidError(f"an EDID is whole 128-byte blocks; this one has {len(blob)} bytes")
    if blob[:8] != _HEADER:
        raise EdidError("the EDID does not start with the header 00 FF FF FF FF FF FF 00")
    blocks = len(blob) // EDID_BLOCK
    if blob[126] + 1 != blocks:
        raise EdidError(f"byte 126 announces {blob[126]} extension block(s), the file has {blocks - 1}")
    for n in range(blocks):
        block = blob[n * EDID_BLOCK : (n + 1) * EDID_BLOCK]
        if sum(block) & 0xFF:
            raise EdidError(f"EDID block {n} has a bad checksum (byte 127 should be {_checksum(block):#04x})")
    return bytes(blob)


def preferred_timing(blob: bytes) -> tuple[int, int] | None:
    """The first detailed timing's active size, or None when block 0 has none."""
    dtd = blob[54:72]
    if len(dtd) < 18 or not (dtd[0] | dtd[1]):
        return None
    return dtd[2] | (dtd[4] >> 4) << 8, dtd[5] | (dtd[7] >> 4) << 8
