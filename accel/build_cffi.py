"""Writes the C source of the ``_devmodel_accel`` extension (cffi's API mode).

meson.build runs this at build time with the Python it builds for; the output is compiled
with accel/*.c into the extension module. The cdef is the headers themselves, less
the preprocessor lines cffi does not read (the include guard and #include), so the structs
have one declaration for C and for Python.

Usage: build_cffi.py OUTPUT.c
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent
MODULE = "_devmodel_accel"


HEADERS = ("dm_accel.h", "dm_ppgtt.h", "dm_blit.h", "dm_scan.h")


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


def source_digest() -> str:
    """The digest devmodel/accel.py compares the module with (its source_digest, the one
    definition, loaded from the checkout without importing the devmodel package)."""
    spec = importlib.util.spec_from_file_location("_devmodel_accel_stamp", HERE.parent / "devmodel" / "accel.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    digest: str = module.source_digest(HERE)
    return digest


def builder() -> cffi.FFI:
    ffi = cffi.FFI()
    # The stamp: what sources this module was built from (devmodel refuses a stale one).
    # dm_serve_hand: Python's, for dm_serve.hand (devmodel/transport/drain.py defines it).
    ffi.cdef(cdef_text() + '\nconst char *dm_source_digest(void);\nextern "Python" int dm_serve_hand(void *);')
    ffi.set_source(
        MODULE,
        "".join(f'#include "{h}"\n' for h in HEADERS)
        + f'static const char dm_source_digest_text[] = "{source_digest()}";\n'
        + "const char *dm_source_digest(void) { return dm_source_digest_text; }\n",
    )
    return ffi


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    builder().emit_c_code(argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
