"""The four engines of contract §4 as the command scanner names them: the engine table's own
enum (engine/engines.py is the one declaration), and their MMIO bases from that table."""

from __future__ import annotations

from ..engines import ENGINE_MMIO_PAGE, ENGINES
from ..engines import EngineId as Engine

__all__ = ["ENGINE_MMIO_BASE", "ENGINE_MMIO_PAGE", "Engine"]

ENGINE_MMIO_BASE: dict[Engine, int] = {e.id: e.base for e in ENGINES}
