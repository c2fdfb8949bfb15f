"""Writes the C source of the ``_devmodel_accel`` extension (cffi's API mode).

meson.build runs this at build time with the Python it builds for; the output is compiled
with accel/*.c into the extension module. The cdef is the headers themselves, less
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


HEADERS = ("dm_accel.h", "dm_ppgtt.h", "dm_blit.h")


def cdef_text() -> str:
    keep = []
    for header in HEADERS:
        guard = "#define " + header.upper().replace(".", "_")
        for line in (HERE / header).read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped.startswith(("#ifndef", "#endif", "#include")) or stripped == guard:
                continue
            keep.append(line)
    return "\n".join(keep)


def builder() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef(cdef_text())
    ffi.set_source(MODULE, "".join(f'#include "{h}"\n' for h in HEADERS))
    return ffi


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    builder().emit_c_code(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
