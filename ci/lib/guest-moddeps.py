"""Print the load order of kernel modules and everything they depend on.

Usage: guest-moddeps.py MODULE_TREE ROOT...
MODULE_TREE is an unpacked lib/modules/ABI/kernel directory; each ROOT a module name (i915).
Prints one path a line, relative to MODULE_TREE, dependencies before their users: the order
busybox insmod needs, since it has no dependency logic of its own.

Debian's kernel packages ship no modules.dep (depmod makes it at install time), so the
dependencies are read where depmod reads them: the `depends=` entry of each module's .modinfo
ELF section. A `softdep=` entry is an error: modprobe would load those modules too, and silently
leaving them out would give a guest that differs from a real install.
"""

from __future__ import annotations

import os
import struct
import sys


class ModDepsError(Exception):
    pass


def modinfo(path: str) -> dict[str, list[str]]:
    """The key=value entries of the .modinfo section of an ELF64 little-endian module."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ModDepsError(f"{path} is not an ELF64 little-endian object (compressed module?)")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".modinfo":
            out: dict[str, list[str]] = {}
            for entry in data[offset:offset + size].split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep:
                    out.setdefault(key, []).append(value)
            return out
    raise ModDepsError(f"{path} has no .modinfo section")


def norm(name: str) -> str:
    """Module names treat '-' and '_' alike (the kernel's own rule)."""
    return name.replace("-", "_")


def index(tree: str) -> dict[str, str]:
    """{normalised module name: path relative to tree} for every .ko under tree."""
    found: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(tree):
        for f in files:
            if f.endswith(".ko"):
                found[norm(f[:-3])] = os.path.relpath(os.path.join(dirpath, f), tree)
    return found


def load_order(tree: str, roots: list[str]) -> list[str]:
    modules = index(tree)
    order: list[str] = []
    state: dict[str, str] = {}  # "visiting" while its dependencies are walked, then "done"

    def visit(name: str, chain: list[str]) -> None:
        key = norm(name)
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise ModDepsError(f"dependency cycle: {' -> '.join([*chain, name])}")
        if key not in modules:
            needed_by = " -> ".join(chain) or "the image"
            raise ModDepsError(f"no module {name} in {tree} (needed by {needed_by})")
        state[key] = "visiting"
        info = modinfo(os.path.join(tree, modules[key]))
        if info.get("softdep"):
            raise ModDepsError(f"{name} declares softdep {info['softdep']}: list those modules explicitly")
        for dep in ",".join(info.get("depends", [])).split(","):
            if dep:
                visit(dep, chain + [name])
        state[key] = "done"
        order.append(modules[key])

    for root in roots:
        visit(root, [])
    return order


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        for path in load_order(argv[1], argv[2:]):
            print(path)
    except (ModDepsError, OSError) as e:
        print(f"guest-moddeps: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
