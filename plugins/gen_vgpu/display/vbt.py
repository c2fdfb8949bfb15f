"""The expansion ROM that carries the Video BIOS Tables (contract §6.2.3).

i915 scans the PCI ROM for "$VBT" when the OpRegion has none (intel_bios.c oprom_get_vbt) and
then reads the general-definitions block's child devices: one DisplayPort child on the
monitor's port makes exactly one connector. The image's code type is not x86, so firmware
never runs it.
"""

from __future__ import annotations

import struct

__all__ = ["ROM_SIZE", "make_rom", "make_vbt"]

ROM_SIZE = 8192
_VBT_OFFSET = 0x400  # 4-byte aligned, after the PCI data structure

VBT_VERSION = 155
BDB_VERSION = 186  # child devices are 33 bytes from 111 to 194
CHILD_SIZE = 33
BDB_GENERAL_DEFINITIONS = 2

DEVICE_TYPE_DP = 0x68C6  # DisplayPort, not HDMI, no DVI
DP_SUPPORT = 1 << 1
INTEGRATED_ENCODER = 1 << 5


def _child(dvo_port: int, aux_channel: int) -> bytes:
    c = bytearray(CHILD_SIZE)
    struct.pack_into("<HH", c, 0, 0x0040, DEVICE_TYPE_DP)
    c[16] = dvo_port
    c[24] = DP_SUPPORT
    c[25] = aux_channel
    c[27] = INTEGRATED_ENCODER
    return bytes(c)


def make_vbt(dvo_port: int, aux_channel: int) -> bytes:
    """A VBT whose only child is a DP output on ``dvo_port`` (DVO_PORT_DPx) using the AUX
    channel ``aux_channel`` (DP_AUX_x)."""
    defs = bytes((0, 0, 0, 0, CHILD_SIZE)) + _child(dvo_port, aux_channel)  # no CRT DDC pin
    block = struct.pack("<BH", BDB_GENERAL_DEFINITIONS, len(defs)) + defs
    bdb_header_size = 22
    bdb = struct.pack("<16sHHH", b"BIOS_DATA_BLOCK ", BDB_VERSION, bdb_header_size, bdb_header_size + len(block))
    bdb += block
    header_size = 48
    vbt_size = header_size + len(bdb)
    header = struct.pack("<20sHHHBBI16x", b"$VBT devmodel", VBT_VERSION, header_size, vbt_size, 0, 0, header_size)
    vbt = bytearray(header + bdb)
    vbt[26] = (-sum(vbt)) & 0xFF  # vbt_checksum: the whole table sums to 0
    return bytes(vbt)


def make_rom(vendor_id: int, device_id: int, vbt: bytes, size: int = ROM_SIZE) -> bytes:
    """A PCI expansion ROM image (one image, the last) holding ``vbt``."""
    if _VBT_OFFSET + len(vbt) > size:
        raise ValueError("the VBT does not fit the ROM")
    rom = bytearray(size)
    rom[0:2] = b"\x55\xaa"
    rom[2] = size // 512  # legacy size byte
    pcir = 0x1C
    struct.pack_into("<H", rom, 0x18, pcir)
    struct.pack_into(
        "<4sHHHHB3sHHBBH",
        rom,
        pcir,
        b"PCIR",
        vendor_id,
        device_id,
        0,  # no vital product data
        0x18,  # structure length
        0,  # structure revision
        (0x038000).to_bytes(3, "little"),
        size // 512,
        0,  # code revision
        3,  # code type: not x86 (0) nor EFI, so firmware does not execute it
        0x80,  # last image
        0,
    )
    rom[_VBT_OFFSET : _VBT_OFFSET + len(vbt)] = vbt
    return bytes(rom)
