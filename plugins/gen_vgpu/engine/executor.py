"""What the execlist hands to whoever runs the commands, and what it expects back.

The execlist owns submission and completion (ports, queue, CSB, interrupts); an executor owns
running one workload: the ring commands of one context between ``head`` and ``tail``. The
execlist calls ``start`` right after the ELSP write (or the completion) that makes a workload
current and ``cancel`` when a reset drops it. The executor later reports back, at most once
per workload, through :meth:`Engines.complete` or :meth:`Engines.hang` (engine/execlist.py),
and may raise user / notify interrupts meanwhile with :meth:`Engines.notify`. Reports about a
workload that is no longer current (cancelled by a reset) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..engines import EngineInfo
from .context import ContextDescriptor, RingContext

__all__ = ["Workload", "Executor"]


@dataclass(frozen=True, eq=False)
class Workload:
    engine: EngineInfo
    descriptor: ContextDescriptor
    ring: RingContext  # the image's ring context as read at the submission
    head: int  # ring offsets to run, [head, tail), wrapping at the ring's size
    tail: int
    seq: int  # per engine, in submission order: for logs and tests

    @property
    def context_id(self) -> int:
        return self.descriptor.context_id

    def __repr__(self) -> str:
        return (
            f"Workload({self.engine.name}#{self.seq} ctx={self.context_id:#x} "
            f"lrca={self.descriptor.lrca:#x} head={self.head:#x} tail={self.tail:#x})"
        )


class Executor(Protocol):
    def start(self, workload: Workload) -> None:
        """Begin running ``workload``; must not block (schedule the work, report later)."""

    def cancel(self, workload: Workload) -> None:
        """Stop ``workload`` (an engine reset); no report is expected afterwards."""
