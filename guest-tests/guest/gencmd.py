"""GEN8/GEN9 command-streamer commands as dword lists, for batches user space hands to i915.

Encodings of Linux 6.1's gt/intel_gpu_commands.h (the forms i915 and Mesa use on gen8/9); a
length field holds the command's dwords minus two. Addresses are PPGTT addresses (user batches
run with the PPGTT bit), low dword then bits 47:32.
"""
import struct

MI_NOOP = 0x00000000
MI_BATCH_BUFFER_END = 0x05000000
MI_STORE_DWORD_IMM = 0x10000002        # 4 dwords: header, address low, address high, value
MI_BATCH_BUFFER_START = 0x18800001     # 3 dwords, GEN8 form
BB_START_PPGTT = 1 << 8
XY_COLOR_BLT = 0x54000005 | 3 << 20    # 7 dwords; bits 21:20 write alpha and RGB (32 bpp)
XY_SRC_COPY_BLT = 0x54C00008 | 3 << 20  # 10 dwords
BR13_32BPP = 3 << 24
ROP_PATCOPY = 0xF0 << 16               # destination := colour
ROP_SRCCOPY = 0xCC << 16               # destination := source


def _addr(address):
    return [address & 0xFFFFFFFF, address >> 32]


def store_dword(address, value):
    return [MI_STORE_DWORD_IMM, *_addr(address), value & 0xFFFFFFFF]


def batch_start(address):
    """Jump (chained, not second level) to a PPGTT batch address."""
    return [MI_BATCH_BUFFER_START | BB_START_PPGTT, *_addr(address)]


def color_blt(dst, pitch, x1, y1, x2, y2, color):
    """Fill [x1, x2) x [y1, y2) of a linear 32 bpp surface with color."""
    return [XY_COLOR_BLT, BR13_32BPP | ROP_PATCOPY | pitch, y1 << 16 | x1, y2 << 16 | x2,
            *_addr(dst), color]


def src_copy_blt(dst, dst_pitch, x1, y1, x2, y2, src, src_pitch, sx, sy):
    """Copy the rectangle at (sx, sy) of src to [x1, x2) x [y1, y2) of dst (linear, 32 bpp)."""
    return [XY_SRC_COPY_BLT, BR13_32BPP | ROP_SRCCOPY | dst_pitch, y1 << 16 | x1, y2 << 16 | x2,
            *_addr(dst), sy << 16 | sx, src_pitch, *_addr(src)]


def batch(*commands):
    """The bytes of a batch: the commands, MI_BATCH_BUFFER_END, padded to 8 bytes (i915 wants
    batch start and length 8-byte aligned)."""
    dwords = [dw for cmd in commands for dw in cmd] + [MI_BATCH_BUFFER_END]
    if len(dwords) % 2:
        dwords.append(MI_NOOP)
    return struct.pack("<%dI" % len(dwords), *dwords)
