"""GEN8/GEN9 command decoding and scanning (contract §5): pure functions over dwords.

- ``opcodes``: one declaration of each command's encoding, length rule and engines;
- ``decode``: one validating decoder per command, returning ``records``;
- ``scan``: the scanner for ring segments, batches, and one command at a time (the registers
  LRI may write and SRM may read are the register table's, mmio/table.py);
- ``ranges``: the vGPU's graphics memory as (base, size) ranges;
- ``reject``: ``CommandRejected``, the one error a scan raises.

docs/commands.md has the tables.
"""

from __future__ import annotations

from .decode import decode_one
from .engines import Engine
from .ranges import GraphicsMemory
from .reject import CommandRejected
from .scan import BatchRef, BufferSource, DwordSource, Frame, Segment, Step, scan_batch, scan_next, scan_ring

__all__ = [
    "BatchRef",
    "BufferSource",
    "CommandRejected",
    "DwordSource",
    "Engine",
    "Frame",
    "GraphicsMemory",
    "Segment",
    "Step",
    "decode_one",
    "scan_batch",
    "scan_next",
    "scan_ring",
]
