"""The compiled accelerator, when there is one: the ``_devmodel_accel`` extension module.

It is C through cffi's API mode (accel/ in the source tree), built by meson.build and
installed with the package as a top-level module, so a source checkout whose tests import
``devmodel`` from the tree finds it in the environment the project was installed into
(ci/setup-python installs it on every run). It does, for the messages it takes, exactly what
the Python path does (docs/performance.md); the Python path stays, and serves everything it
does not take.

``DEVMODEL_ACCEL=0`` (or ``Server(accel=False)``, ``devmodel serve --no-accel``) selects the
Python path alone. A module that is absent, built for another ABI version or on a big-endian
host is not used: the server logs a notice once and runs on the Python path.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ABI_VERSION", "ENV", "MODULE", "Accel", "RegionAccel", "enabled_by_env", "load"]

log = logging.getLogger(__name__)

MODULE = "_devmodel_accel"
ENV = "DEVMODEL_ACCEL"
# accel/dm_accel.h's DM_ABI_VERSION this Python side is written for.
ABI_VERSION = 3


@dataclass(frozen=True)
class Accel:
    """The loaded module: cffi's ``ffi`` (types, buffers) and ``lib`` (the C functions)."""

    ffi: Any
    lib: Any


class RegionAccel(Protocol):
    """A region the accelerator serves, as a device plugin binds it (``struct dm_gen_bar0``)."""

    index: int  # the region's index
    ptr: Any  # its struct, for dm_conn.bar

    def prepare(self) -> None:
        """Before the loop's wait in C: load ahead what C will likely ask for."""

    def resolve(self, status: int) -> None:
        """Do what a DM_NEED_* status asks, so that the drain can go on."""

    def settle(self) -> None:
        """Fold what C changed into the Python side's bookkeeping (cheap when nothing);
        called whenever C comes back, before Python handles anything."""


def enabled_by_env() -> bool:
    return os.environ.get(ENV, "1") != "0"


def load(want: bool | None = None) -> Accel | None:
    """The accelerator, or None for the Python path. ``want`` None: as DEVMODEL_ACCEL says
    (default: use it when it loads)."""
    if not (enabled_by_env() if want is None else want):
        return None
    return _load_module()


@functools.cache
def _load_module() -> Accel | None:
    if sys.byteorder != "little":
        log.warning("compiled accelerator not used: it reads the wire and the registers as little-endian")
        return None
    try:
        module = importlib.import_module(MODULE)
    except ImportError as exc:
        log.warning("compiled accelerator not available (%s); serving on the Python path", exc)
        return None
    found = module.lib.dm_abi_version()
    if found != ABI_VERSION:
        log.warning(
            "compiled accelerator %s has ABI version %d, this devmodel wants %d (reinstall the package); "
            "serving on the Python path",
            module.__file__,
            found,
            ABI_VERSION,
        )
        return None
    log.debug("compiled accelerator: %s", module.__file__)
    return Accel(module.ffi, module.lib)
