"""The command streamers' timestamp clock: one counter behind every engine's RING_TIMESTAMP
(and its upper dword), each context's CTX_TIMESTAMP and the post-sync timestamps of
PIPE_CONTROL and MI_FLUSH_DW, at the platform's frequency.

The frequency is what i915 6.1 computes for the platform (gt/intel_gt_clock_utils.c): GEN8
has a fixed 12.5 MHz (80 ns, the PRM's "bits 38:3 of the 10 ns TSC"); GEN9 derives it from
CTC_MODE, a 24 MHz crystal shifted right by 3 minus CTC_MODE's shift parameter (bits 2:1),
and a SKL GT reports 12 MHz, so CTC_MODE reads crystal source and shift 2. i915 reports the
frequency to user space (I915_PARAM_CS_TIMESTAMP_FREQUENCY) and converts context run times
with it; IGT's gem_latency converts BCS RING_TIMESTAMP deltas to microseconds with it.

It sits beside ``platform.py``: the register table (mmio/), the execlists and the runner
(engine/) all read it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .platform import Platform

__all__ = ["CTC_MODE", "CTC_MODE_SKL", "CS_TIMESTAMP_HZ", "CsClock", "gen9_hz"]

CTC_MODE = 0xA26C  # GEN9
_CTC_SHIFT_PARAMETER_SHIFT = 1  # bits 2:1; bit 0 clear: the crystal clock, not divide logic
_GEN9_CRYSTAL_HZ = 24_000_000
CTC_MODE_SKL = 2 << _CTC_SHIFT_PARAMETER_SHIFT


def gen9_hz(ctc_mode: int) -> int:
    """The timestamp frequency GEN9's CTC_MODE gives with the crystal clock as its source."""
    return _GEN9_CRYSTAL_HZ >> (3 - (ctc_mode >> _CTC_SHIFT_PARAMETER_SHIFT & 3))


CS_TIMESTAMP_HZ: dict[Platform, int] = {Platform.BDW: 12_500_000, Platform.SKL: gen9_hz(CTC_MODE_SKL)}


class CsClock:
    """Ticks since the device was made, at ``hz``, read from ``clock`` (seconds; the task
    queue's clock, so a test drives it)."""

    def __init__(self, hz: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.hz = hz
        self.clock = clock
        self._epoch = clock()

    @classmethod
    def for_platform(cls, platform: Platform, clock: Callable[[], float] = time.monotonic) -> CsClock:
        return cls(CS_TIMESTAMP_HZ[platform], clock)

    def ticks(self) -> int:
        return int((self.clock() - self._epoch) * self.hz)
