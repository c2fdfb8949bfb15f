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

The module is stamped at build time with a digest of its sources (:func:`source_digest` of
accel/, compiled in by accel/build_cffi.py). Run from a source checkout, devmodel compares it
with the checkout's accel/: a module built from other sources (an edited ``dm_accel.c`` not
yet rebuilt by ci/setup-python) is never used. Asked for explicitly (``--accel``,
``Server(accel=True)``, ``DEVMODEL_ACCEL=1``) it raises :class:`StaleAccelerator`; by default
it is refused with an error in the log and the Python path serves.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "ABI_VERSION",
    "ENV",
    "MODULE",
    "SOURCE_DIR",
    "Accel",
    "RegionAccel",
    "StaleAccelerator",
    "enabled_by_env",
    "load",
    "source_digest",
]

log = logging.getLogger(__name__)

MODULE = "_devmodel_accel"
ENV = "DEVMODEL_ACCEL"
# accel/dm_accel.h's DM_ABI_VERSION this Python side is written for.
ABI_VERSION = 8
# The accelerator's sources in a source checkout (absent in an installed copy of devmodel).
SOURCE_DIR = Path(__file__).resolve().parents[1] / "accel"
_SOURCE_SUFFIXES = (".c", ".h", ".py")


class StaleAccelerator(RuntimeError):
    """The installed module was built from other sources than the checkout's accel/."""


def source_digest(directory: Path) -> str:
    """SHA-256 of the accelerator's sources in ``directory``: every .c, .h and .py file, by
    name and content, in name order. The build stamps the module with it."""
    h = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.suffix in _SOURCE_SUFFIXES and p.is_file()):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Accel:
    """The loaded module: cffi's ``ffi`` (types, buffers) and ``lib`` (the C functions)."""

    ffi: Any
    lib: Any


class RegionAccel(Protocol):
    """A region the accelerator serves, as a device plugin binds it (``struct dm_gen_bar0``)."""

    index: int  # the region's index
    ptr: Any  # its struct, for dm_conn.bar
    aperture: tuple[int, Any] | None  # another region C writes (index, its struct dm_aperture), or None
    # What the region's handler does with a read or write of one whole register dword there
    # (an access C checked and left to Python: dm_conn.hand).
    read_dword: Callable[[int], int]
    write_dword: Callable[[int, int], None]

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
    (default: use it when it loads). Raises StaleAccelerator when it is asked for (``want``
    True, or DEVMODEL_ACCEL=1) and was built from other sources than this checkout's."""
    if not (enabled_by_env() if want is None else want):
        return None
    accel = _load_module()
    if accel is None:
        return None
    stale = staleness(accel)
    if stale is None:
        return accel
    if want or os.environ.get(ENV) == "1":
        raise StaleAccelerator(stale)
    log.error("%s; serving on the Python path", stale)
    return None


def staleness(accel: Accel, sources: Path | None = None) -> str | None:
    """Why the module does not match the sources in ``sources`` (default SOURCE_DIR), or None
    when it does (or when there are none to compare with: devmodel installed, not a checkout)."""
    sources = SOURCE_DIR if sources is None else sources
    if not sources.is_dir():
        return None
    built = accel.ffi.string(accel.lib.dm_source_digest()).decode()
    tree = source_digest(sources)
    if built == tree:
        return None
    return (
        f"compiled accelerator {MODULE} was built from other sources (digest {built[:12]}) than "
        f"{sources} ({tree[:12]}): rerun ci/setup-python to rebuild it"
    )


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
