"""How device plugins are described and found (the ``devmodel.plugins`` entry point)."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .device import Device

__all__ = ["PluginInfo", "load_plugin", "available_plugins", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "devmodel.plugins"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    create: Callable[..., Device]
    description: str = ""


def available_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(name: str) -> PluginInfo:
    """The plugin registered under ``name``; in a source tree with nothing installed, the
    module of that name (``plugins/`` on the path)."""
    ep = available_plugins().get(name)
    try:
        obj: Any = ep.load() if ep is not None else importlib.import_module(name).plugin
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"no device plugin named {name!r}") from exc
    if not isinstance(obj, PluginInfo):
        raise LookupError(f"{name!r} is not a devmodel plugin")
    return obj
