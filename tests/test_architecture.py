"""The architecture map and the import rules, checked on the source tree.

* every module of the documented packages has its line in ARCHITECTURE.md;
* no import circle between modules (module-level imports, ``TYPE_CHECKING`` blocks left out);
* no module imports a ``_``-prefixed name from another module.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "extract", "heads", "reports", "cli", "benchmarks", "vocal_probe")

# Exceptions to the rules below: none today. A new entry needs a comment saying why.
MODULES_NOT_DOCUMENTED: set[str] = set()
PRIVATE_IMPORTS_ALLOWED: set[tuple[str, str]] = set()  # (importing module, "module._name")
CIRCLES_ALLOWED: set[frozenset[str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _documented() -> set[str]:
    """Paths like ``heads/training/loop.py`` from the module map (the first code block)."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = text.split("```")[1]
    found, stack = set(), []
    for line in block.splitlines():
        m = re.match(r"^( *)((?:[\w.-]+(?:\.py|/))(?:, [\w.-]+(?:\.py|/))*)(?:\s|$)", line)
        if not m or len(m.group(1)) % 2:
            continue
        depth = len(m.group(1)) // 2
        if depth > len(stack):
            continue  # a description line that happens to start with a name
        del stack[depth:]
        names = m.group(2).split(", ")
        for name in names:
            found.add("/".join(stack + [name]).rstrip("/"))
        if len(names) == 1 and names[0].endswith("/"):
            stack.append(names[0].rstrip("/"))
    return found


@pytest.mark.parametrize("module", sorted(m for m, p in MODULES.items() if p.name != "__init__.py"))
def test_every_module_is_in_architecture_md(module: str) -> None:
    if module in MODULES_NOT_DOCUMENTED:
        pytest.skip("allowlisted until extract/ is merged")
    path = module.replace(".", "/") + ".py"
    assert path in _documented(), f"{path} has no line in ARCHITECTURE.md; add one"


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, imported names) of every module-level import, TYPE_CHECKING left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, list[str]]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                continue
            if isinstance(node, ast.Import):
                out.extend((a.name, []) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    up = parts[:len(parts) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                out.append((base, [a.name for a in node.names]))

    visit(tree.body)
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names in _imports(module, path):
            for name in names or [""]:
                sub = f"{target}.{name}" if name else target
                dep = sub if sub in MODULES else target
                while dep not in MODULES and "." in dep:
                    dep = dep.rpartition(".")[0]
                if dep in MODULES and dep != module:
                    graph[module].add(dep)
    return graph


def test_no_import_circle() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[set[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            # a package and the modules its __init__ re-exports are one unit, not a circle
            real = {m for m in comp if MODULES[m].name != "__init__.py"}
            if len(real) > 1 and frozenset(comp) not in CIRCLES_ALLOWED:
                circles.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not circles, f"import circles: {[sorted(c) for c in circles]}"


def test_no_private_name_imported_across_modules() -> None:
    bad = []
    for module, path in MODULES.items():
        for target, names in _imports(module, path):
            for name in names:
                if name.startswith("_") and not name.startswith("__") and target != module:
                    if (module, f"{target}.{name}") not in PRIVATE_IMPORTS_ALLOWED:
                        bad.append(f"{module} imports {target}.{name}")
            if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
                bad.append(f"{module} imports the private module {target}")
    assert not bad, "imports of private names across modules:\n" + "\n".join(bad)


LONG_MODULE_LINES = 500


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_long_module_says_which_one_concept_it_holds(module: str) -> None:
    """Over ~500 lines a module either splits or its docstring says "One concept" and names it."""
    path = MODULES[module]
    text = path.read_text(encoding="utf-8")
    if text.count("\n") <= LONG_MODULE_LINES:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert "One concept" in doc, (
        f"{path.relative_to(ROOT)} has {text.count(chr(10))} lines: split it by concept, or say in "
        f"its docstring which one concept it holds ('One concept, at length: ...')")
