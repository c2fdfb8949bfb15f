"""Copy programs and the shared libraries they need into the guest's root.

Usage: guest-libdeps.py SRC DEST PATH...
SRC is a tree of unpacked Debian packages (the programs and the libraries they depend on), DEST
the guest's root, which already holds libc and the other libraries of the pinned packages. Each
PATH (relative to SRC; a directory stands for every file under it) is copied into DEST, then
every library in the DT_NEEDED closure of the ELF files among them, found by soname in the
standard library directories (and each file's DT_RUNPATH/DT_RPATH, $ORIGIN expanded), DEST's
copy first. Symbolic links are copied as links, with what they point at. Prints the number of
files and libraries copied; fails naming the first soname found nowhere, so that a guest never
boots with a program the dynamic loader cannot start.

The package dependency closure is larger than the library closure (fonts, debconf, X data);
only what the loader will open goes into the image.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys

LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib", "lib")
DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_RPATH, DT_RUNPATH = 1, 5, 10, 15, 29
SHT_DYNAMIC = 6


class LibDepsError(Exception):
    pass


def dynamic(path: str) -> tuple[list[str], list[str]] | None:
    """(DT_NEEDED names, DT_RUNPATH/DT_RPATH entries) of an ELF64 little-endian file, or None
    when the file is not ELF or has no dynamic section (a script, a data file, a static binary)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        return None
    if data[4] != 2 or data[5] != 1:
        raise LibDepsError(f"{path} is not ELF64 little-endian")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    for i in range(shnum):
        _name, sh_type, _flags, _addr, offset, size, link = struct.unpack_from(
            "<IIQQQQI", data, shoff + i * shentsize)
        if sh_type != SHT_DYNAMIC:
            continue
        _n, _t, _f, _a, stroff, strsize, _l = struct.unpack_from("<IIQQQQI", data, shoff + link * shentsize)
        strtab = data[stroff:stroff + strsize]

        def string(at: int, strtab: bytes = strtab) -> str:
            return strtab[at:strtab.index(b"\0", at)].decode()

        needed: list[str] = []
        paths: list[str] = []
        for off in range(offset, offset + size, 16):
            tag, val = struct.unpack_from("<qQ", data, off)
            if tag == 0:
                break
            if tag == DT_NEEDED:
                needed.append(string(val))
            elif tag in (DT_RUNPATH, DT_RPATH):
                paths.extend(p for p in string(val).split(":") if p)
        return needed, paths
    return None


def copy(src_root: str, dest_root: str, rel: str) -> int:
    """Copy SRC/rel to DEST/rel (a link as a link, then its target); the number of files copied."""
    src, dest = os.path.join(src_root, rel), os.path.join(dest_root, rel)
    if os.path.lexists(dest):
        return 0
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.islink(src):
        target = os.readlink(src)
        os.symlink(target, dest)
        resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target)) if not target.startswith("/") \
            else target.lstrip("/")
        return 1 + copy(src_root, dest_root, resolved)
    shutil.copy2(src, dest)
    return 1


def find(soname: str, roots: tuple[str, ...], extra_dirs: list[str]) -> tuple[str, str] | None:
    """(root, path relative to it) of the first file called SONAME, DEST first."""
    for root in roots:
        for d in (*extra_dirs, *LIB_DIRS):
            rel = os.path.join(d, soname)
            if os.path.exists(os.path.join(root, rel)):
                return root, rel
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dest, wanted = argv[0], argv[1], argv[2:]
    todo: list[str] = []
    for rel in wanted:
        path = os.path.join(src, rel)
        if not os.path.lexists(path):
            raise LibDepsError(f"{rel} is in none of the unpacked packages")
        if os.path.isdir(path) and not os.path.islink(path):
            for d, _dirs, files in os.walk(path):
                todo += [os.path.relpath(os.path.join(d, f), src) for f in sorted(files)]
        else:
            todo.append(rel)
    copied = sum(copy(src, dest, rel) for rel in todo)
    libs, seen = 0, set(todo)
    while todo:
        rel = todo.pop()
        path = os.path.realpath(os.path.join(dest, rel))
        if not os.path.isfile(path):
            continue
        dyn = dynamic(path)
        if dyn is None:
            continue
        needed, runpaths = dyn
        origin = os.path.dirname(rel)
        extra = [os.path.normpath(p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)).lstrip("/")
                 for p in runpaths]
        for soname in needed:
            hit = find(soname, (dest, src), extra)
            if hit is None:
                raise LibDepsError(f"{rel} needs {soname}, which no unpacked package holds")
            root, lib = hit
            if lib in seen:
                continue
            seen.add(lib)
            if root == src:
                libs += copy(src, dest, lib) > 0
            todo.append(lib)
    print(f"{copied} files, {libs} libraries")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (LibDepsError, OSError) as e:
        print(f"guest-libdeps.py: {e}", file=sys.stderr)
        sys.exit(1)
