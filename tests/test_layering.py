"""The import rules of docs/architecture: each layer imports only what it may.

Imports are read with ``ast`` (nothing is imported), relative imports are resolved against the
module's package, ``from P import name`` counts as importing ``P.name`` when that is a module
of the tree and ``P`` otherwise, and ``importlib.import_module("x")`` / ``__import__("x")``
with a literal name count too. Imports inside functions and ``if TYPE_CHECKING`` blocks count.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STDLIB = frozenset(sys.stdlib_module_names)
# Standard-library modules that do I/O, threads, processes or clocks: not for the protocol.
IO_MODULES = frozenset(
    {
        "socket",
        "_socket",
        "os",
        "posix",
        "mmap",
        "select",
        "selectors",
        "threading",
        "_thread",
        "time",
        "asyncio",
        "subprocess",
        "multiprocessing",
        "concurrent",
        "signal",
        "fcntl",
    }
)


@dataclass(frozen=True)
class Module:
    name: str  # dotted
    path: Path
    is_package: bool

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


@dataclass(frozen=True)
class Import:
    module: Module
    target: str  # absolute dotted name
    lineno: int


def iter_modules(src_root: Path, sub: str) -> Iterator[Module]:
    """Every .py file under ``src_root/sub`` with its dotted name relative to ``src_root``."""
    base = src_root / sub
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(src_root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield Module(".".join(parts), path, is_package)


def _is_local_module(src_roots: tuple[Path, ...], dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return any((r / rel).with_suffix(".py").is_file() or (r / rel / "__init__.py").is_file() for r in src_roots)


def _resolve_relative(mod: Module, level: int, name: str | None) -> str:
    parts = mod.package.split(".") if mod.package else []
    if level - 1 > len(parts) or (level - 1 == len(parts) and not name):
        raise ImportError(f"{mod.path}: relative import beyond the top-level package")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(mod: Module, src_roots: tuple[Path, ...]) -> list[Import]:
    tree = ast.parse(mod.path.read_text(encoding="utf-8"), str(mod.path))
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(Import(mod, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = _resolve_relative(mod, node.level, node.module) if node.level else node.module or ""
            for alias in node.names:
                sub = f"{parent}.{alias.name}" if parent else alias.name
                if alias.name != "*" and _is_local_module(src_roots, sub):
                    out.append(Import(mod, sub, node.lineno))
                else:
                    out.append(Import(mod, parent, node.lineno))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            dynamic = (isinstance(func, ast.Name) and func.id == "__import__") or (
                isinstance(func, ast.Attribute)
                and func.attr == "import_module"
                and isinstance(func.value, ast.Name)
                and func.value.id == "importlib"
            )
            arg = node.args[0]
            if dynamic and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if not arg.value.startswith("."):
                    out.append(Import(mod, arg.value, node.lineno))
    return out


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _top(name: str) -> str:
    return name.partition(".")[0]


# --- the rules: each returns why an import is not allowed, or None -------------------------

Rule = Callable[[str], "str | None"]


def vfio_user_rule(target: str) -> str | None:
    if _under(target, "devmodel.vfio_user") or target == "devmodel.errors":
        return None
    if _top(target) in STDLIB:
        if _top(target) in IO_MODULES:
            return "the sans-IO protocol package must not do I/O, threads or clocks"
        return None
    return "the protocol package imports only the standard library, devmodel.errors and itself"


def device_rule(target: str) -> str | None:
    if _under(target, "devmodel.transport"):
        return "the device framework must not know the transport"
    if _under(target, "devmodel.vfio_user") and target != "devmodel.vfio_user.constants":
        return "the device framework may use only devmodel.vfio_user.constants of the protocol"
    return None


def gen_vgpu_rule(target: str) -> str | None:
    if _under(target, "devmodel.vfio_user") or _under(target, "devmodel.transport"):
        return "the GPU must not know how it is served"
    return None


def guest_rule_for(guest_dir: Path) -> Rule:
    siblings = {p.stem for p in guest_dir.glob("*.py")}

    def guest_rule(target: str) -> str | None:
        if _top(target) == "devmodel":
            return "guest scripts run inside the guest, where devmodel does not exist"
        if _top(target) in STDLIB or target in siblings:
            return None
        return "guest scripts may import only the standard library and each other"

    return guest_rule


@dataclass(frozen=True)
class Layer:
    name: str
    src_root: str  # relative to the repository root
    sub: str  # relative to src_root
    rule: Callable[[Path], Rule]


LAYERS = [
    Layer("devmodel.vfio_user", ".", "devmodel/vfio_user", lambda root: vfio_user_rule),
    Layer("devmodel.device", ".", "devmodel/device", lambda root: device_rule),
    Layer("gen_vgpu", "plugins", "gen_vgpu", lambda root: gen_vgpu_rule),
    Layer("guest-tests/guest", "guest-tests/guest", ".", lambda root: guest_rule_for(root / "guest-tests/guest")),
]

SRC_ROOTS = (".", "plugins", "guest-tests/guest")


def violations(root: Path, layer: Layer) -> tuple[int, list[str]]:
    """(modules checked, one line per forbidden import)."""
    src_roots = tuple(root / r for r in SRC_ROOTS)
    rule = layer.rule(root)
    n = 0
    bad = []
    for mod in iter_modules(root / layer.src_root, layer.sub):
        n += 1
        for imp in imports_of(mod, src_roots):
            why = rule(imp.target)
            if why:
                bad.append(f"{mod.path.relative_to(root)}:{imp.lineno}: imports {imp.target}: {why}")
    return n, bad


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: layer.name)
def test_layer_imports(layer: Layer) -> None:
    n, bad = violations(ROOT, layer)
    assert n > 0, f"no modules found for {layer.name}"
    assert not bad, "\n".join(bad)


def test_relative_imports_are_resolved() -> None:
    src_roots = tuple(ROOT / r for r in SRC_ROOTS)
    mods = {m.name: m for m in iter_modules(ROOT, "devmodel/vfio_user")}
    framing = {i.target for i in imports_of(mods["devmodel.vfio_user.framing"], src_roots)}
    assert {"devmodel.errors", "devmodel.vfio_user.constants", "devmodel.vfio_user.layouts"} <= framing
    init = {i.target for i in imports_of(mods["devmodel.vfio_user"], src_roots)}
    assert "devmodel.vfio_user.framing" in init


# --- the checker catches what it should (synthetic trees) ----------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for pkg in ("devmodel", "devmodel/vfio_user", "devmodel/device", "devmodel/transport", "plugins/gen_vgpu"):
        init = tmp_path / pkg / "__init__.py"
        if not init.exists():
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text("")
    for mod in ("devmodel/errors.py", "devmodel/vfio_user/constants.py", "devmodel/vfio_user/framing.py"):
        if not (tmp_path / mod).exists():
            (tmp_path / mod).write_text("")
    (tmp_path / "guest-tests/guest").mkdir(parents=True, exist_ok=True)
    return tmp_path


def _bad(root: Path, layer_name: str) -> list[str]:
    layer = next(layer for layer in LAYERS if layer.name == layer_name)
    return violations(root, layer)[1]


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import os.path",
        "from os import path",
        "import time",
        "from threading import Lock",
        "import selectors",
        "import mmap",
        "import asyncio",
        "import subprocess",
        "import select",
        "def f():\n    import time\n",
        "import importlib\nimportlib.import_module('socket')",
        "__import__('os')",
        "import cffi",
        "from .. import device",
        "from ..device import dma",
        "from ..transport.unix import listen_unix",
        "import devmodel.testing",
    ],
)
def test_vfio_user_rule_catches(tmp_path: Path, source: str) -> None:
    root = _tree(tmp_path, {"devmodel/vfio_user/bad.py": source + "\n", "devmodel/device/dma.py": ""})
    bad = _bad(root, "devmodel.vfio_user")
    assert len(bad) == 1 and "bad.py" in bad[0], bad


@pytest.mark.parametrize(
    "source",
    [
        "import struct, enum, json",
        "from ..errors import MalformedRequest",
        "from .. import errors",
        "from . import constants",
        "from .framing import Framer",
        "import devmodel.vfio_user.constants",
        "from __future__ import annotations",
    ],
)
def test_vfio_user_rule_allows(tmp_path: Path, source: str) -> None:
    root = _tree(tmp_path, {"devmodel/vfio_user/ok.py": source + "\n"})
    assert _bad(root, "devmodel.vfio_user") == []


@pytest.mark.parametrize(
    "source,allowed",
    [
        ("from ..vfio_user.constants import IrqIndex", True),
        ("from ..vfio_user import constants", True),
        ("import devmodel.vfio_user.constants", True),
        ("import os, mmap", True),
        ("from ..vfio_user import Framer", False),
        ("from ..vfio_user import constants, framing", False),
        ("from ..vfio_user.framing import Framer", False),
        ("import devmodel.vfio_user", False),
        ("from devmodel.transport import unix", False),
        ("from ..transport.server import Server", False),
        ("def f():\n    from ..vfio_user import messages\n", False),
    ],
)
def test_device_rule(tmp_path: Path, source: str, allowed: bool) -> None:
    root = _tree(
        tmp_path,
        {
            "devmodel/device/x.py": source + "\n",
            "devmodel/vfio_user/messages.py": "",
            "devmodel/transport/unix.py": "",
            "devmodel/transport/server.py": "",
        },
    )
    assert (_bad(root, "devmodel.device") == []) is allowed


@pytest.mark.parametrize(
    "source,allowed",
    [
        ("from devmodel.device.dma import DmaMap", True),
        ("from .mmio import regs", True),
        ("from devmodel.vfio_user.constants import IrqIndex", False),
        ("from devmodel import vfio_user", False),
        ("import devmodel.transport.unix", False),
    ],
)
def test_gen_vgpu_rule(tmp_path: Path, source: str, allowed: bool) -> None:
    root = _tree(tmp_path, {"plugins/gen_vgpu/sub/x.py": source + "\n", "plugins/gen_vgpu/sub/__init__.py": ""})
    assert (_bad(root, "gen_vgpu") == []) is allowed


@pytest.mark.parametrize(
    "source,allowed",
    [
        ("import ctypes, fcntl, mmap, os, struct, sys", True),
        ("import gvtlib as g", True),
        ("from gvtlib import mmio", True),
        ("import devmodel", False),
        ("from devmodel.vfio_user import constants", False),
        ("import pytest", False),
        ("import gen_vgpu", False),
    ],
)
def test_guest_rule(tmp_path: Path, source: str, allowed: bool) -> None:
    root = _tree(tmp_path, {"guest-tests/guest/gvtlib.py": "", "guest-tests/guest/test_x.py": source + "\n"})
    assert (_bad(root, "guest-tests/guest") == []) is allowed


def test_relative_import_beyond_top_is_an_error(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"devmodel/vfio_user/x.py": "from .... import y\n"})
    with pytest.raises(ImportError):
        _bad(root, "devmodel.vfio_user")


# --- no cycles between the GPU's folders ---------------------------------------------------

GPU = "gen_vgpu"


def _folder_node(name: str) -> str | None:
    """The node of the GPU's folder graph a module belongs to: its first-level subpackage
    (``gen_vgpu.cmd``), or the module itself for a module beside them (``gen_vgpu.engines``);
    None outside the GPU and for the package's own ``__init__``."""
    parts = name.split(".")
    if parts[0] != GPU or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def folder_graph(root: Path) -> dict[str, dict[str, str]]:
    """node -> {node it imports: one import that says so}, between different nodes."""
    src_roots = tuple(root / r for r in SRC_ROOTS)
    graph: dict[str, dict[str, str]] = {}
    for mod in iter_modules(root / "plugins", GPU):
        src = _folder_node(mod.name)
        if src is None:
            continue
        edges = graph.setdefault(src, {})
        for imp in imports_of(mod, src_roots):
            dst = _folder_node(imp.target)
            if dst is not None and dst != src:
                edges.setdefault(dst, f"{mod.path.relative_to(root)}:{imp.lineno} imports {imp.target}")
    return graph


def find_cycle(graph: dict[str, dict[str, str]]) -> list[str]:
    """One cycle of the graph as the imports that close it, or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                loop = path[path.index(nxt) :] + [nxt]
                return [graph[a][b] for a, b in itertools.pairwise(loop)]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_gpu_folders_have_no_cycles() -> None:
    graph = folder_graph(ROOT)
    assert {"gen_vgpu.cmd", "gen_vgpu.engine", "gen_vgpu.mmio", "gen_vgpu.engines"} <= set(graph)
    cycle = find_cycle(graph)
    assert not cycle, "a cycle between gen_vgpu's folders:\n" + "\n".join(cycle)


def test_engine_table_is_below_the_folders() -> None:
    graph = folder_graph(ROOT)
    for user in ("gen_vgpu.cmd", "gen_vgpu.mmio", "gen_vgpu.interrupts"):
        assert "gen_vgpu.engine" not in graph[user], graph[user]["gen_vgpu.engine"]
        assert "gen_vgpu.engines" in graph[user]


def test_cycle_checker_finds_a_cycle(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "plugins/gen_vgpu/a/__init__.py": "",
            "plugins/gen_vgpu/a/x.py": "from ..b import y\n",
            "plugins/gen_vgpu/b/__init__.py": "",
            "plugins/gen_vgpu/b/y.py": "from .. import top\n",
            "plugins/gen_vgpu/top.py": "def f():\n    from .a import x\n",
            "plugins/gen_vgpu/c.py": "from .top import f\n",
        },
    )
    cycle = find_cycle(folder_graph(root))
    assert len(cycle) == 3 and any("a/x.py" in line for line in cycle), cycle
    (root / "plugins/gen_vgpu/top.py").write_text("")
    assert find_cycle(folder_graph(root)) == []
