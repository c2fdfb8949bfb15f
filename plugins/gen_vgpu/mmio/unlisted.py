"""The registers a guest touches that the contract does not list, each logged once.

An unlisted register still behaves as plain storage (contract §2); this log is how a bring-up
against a real driver finds what is missing. It hears of register-file misses (offsets with no
declaration) and skips the ranges the contract lists as plain without declaring each register.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable

from devmodel.device.registers import RegisterFile

__all__ = ["UnlistedLog"]

log = logging.getLogger(__name__)
UNLISTED_LOG_BURST = 4096  # lines per log interval (devmodel.logbound); each register once anyway


class UnlistedLog:
    def __init__(self, plain_ranges: Iterable[tuple[int, int, str]] = ()) -> None:
        ranges = sorted((start, end) for start, end, _ in plain_ranges)
        self._starts = [start for start, _ in ranges]
        self._ends = [end for _, end in ranges]
        # offset -> [reads, writes], in the order first seen
        self.seen: dict[int, list[int]] = {}

    def attach(self, rf: RegisterFile) -> None:
        # The log only records: it may hear of an access after the access (the accelerator
        # serves unlisted registers and replays their accesses to it in order).
        rf.listen_unlisted(self.note, told_later=True)

    def _listed_plain(self, offset: int) -> bool:
        i = bisect.bisect_right(self._starts, offset) - 1
        return i >= 0 and offset < self._ends[i]

    def note(self, offset: int, is_write: bool) -> None:
        counts = self.seen.get(offset)
        if counts is None:
            if self._listed_plain(offset):
                return
            counts = self.seen[offset] = [0, 0]
            # Once per register, so bounded by the register space; the bring-up needs them all.
            log.info(
                "unlisted register %#07x first %s",
                offset,
                "written" if is_write else "read",
                extra={"log_burst": UNLISTED_LOG_BURST},
            )
        counts[is_write] += 1

    def summary(self) -> list[str]:
        return [f"{off:#07x} reads={r} writes={w}" for off, (r, w) in self.seen.items()]
