"""GEN8/GEN9 command decoding and scanning (contract §5): pure functions over dwords.

- ``opcodes``: the command table, one ``CommandSpec`` row (``spec``) per command: encoding,
  length rule, engines, decoder, the scanner's check and the executor's handler;
- ``decode``: one validating decoder per command, returning ``records``;
- ``frame``: where commands run, and the checks that need it (the registers LRI may write
  and SRM may read are the register table's, mmio/table.py);
- ``dispatch``: the per-engine header dispatch over the rows;
- ``scan``: the scanner for ring segments, batches (in bounded steps), and one command at a time;
- ``reject``: ``CommandRejected``, the one error a scan raises;
- ``doc``: docs/commands.md's table, generated from the rows.
"""

from __future__ import annotations

from ..graphics_memory import GraphicsMemory
from .dispatch import decode_one
from .engines import Engine
from .reject import CommandRejected
from .scan import (
    BatchRef,
    BufferSource,
    DwordSource,
    Frame,
    Scan,
    Segment,
    Step,
    batch_scan,
    ring_scan,
    scan_batch,
    scan_next,
    scan_ring,
)

__all__ = [
    "BatchRef",
    "BufferSource",
    "CommandRejected",
    "DwordSource",
    "Engine",
    "Frame",
    "GraphicsMemory",
    "Scan",
    "Segment",
    "Step",
    "batch_scan",
    "decode_one",
    "ring_scan",
    "scan_batch",
    "scan_next",
    "scan_ring",
]
