"""Writes the C source of the ``_devmodel_accel`` extension (cffi's API mode).

meson.build runs this at build time with the Python it builds for; the output is compiled
with accel/dm_accel.c into the extension module. The cdef is accel/dm_accel.h itself, less
the preprocessor lines cffi does not read (the include guard and #include), so the structs
have one declaration for C and for Python.

Usage: build_cffi.py OUTPUT.c
"""

from __future__ import annotations

import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
MODULE = "_devmodel_accel"


def cdef_text() -> str:
    keep = []
    for line in (HERE / "dm_accel.h").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith(("#ifndef", "#endif", "#include")) or stripped == "#define DM_ACCEL_H":
            continue
        keep.append(line)
    return "\n".join(keep)


def builder() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(cdef_text())
    ffi.set_source(MODULE, '#include "dm_accel.h"')
    return ffi


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    builder().emit_c_code(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
