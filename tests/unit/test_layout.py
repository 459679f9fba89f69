"""The package's shape: no import cycles, no implementation named above its seam, and
docs/architecture.md's module map kept true."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "src" / "voicereel"
ARCHITECTURE = PACKAGE_ROOT.parents[1] / "docs" / "architecture.md"

# Names of implementations behind the three seams, and the only modules that may say them:
# the implementations themselves, the registries that pick one by setting, and settings.py
# (where the setting's values are spelled); demo.py makes the demo's reference voices with the
# bundled piper voice, whichever engine then renders.
IMPLEMENTATION_NAMES = re.compile(r"celery|piper|espeak|fish[_-]speech|S3Storage|LocalStorage",
                                  re.IGNORECASE)
ALLOWED = ("voicereel.settings", "voicereel.engines", "voicereel.storage",
           "voicereel.jobs.runners", "voicereel.demo")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE_ROOT.rglob("*.py")
            if "migrations" not in p.parts}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every package module `name` imports, at the top or inside functions."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk saw the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def implementation_mentions(path: Path) -> list[str]:
    """Identifiers, imports and string constants (docstrings and comments aside) that name an
    implementation."""
    tree = ast.parse(path.read_text())
    docstrings = _docstring_nodes(tree)
    words: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.alias):
            words.append(node.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            words.append(node.module)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            words.append(node.value)
    return [w for w in words if IMPLEMENTATION_NAMES.search(w)]


def test_the_leak_check_sees_code_but_not_prose(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Runs on celery."""\n# piper\nfrom voicereel.storage.s3 import S3Storage\n'
                      'x = "fish-speech"\n')
    assert implementation_mentions(sample) == ["S3Storage", "fish-speech"]


def test_no_implementation_is_named_above_its_seam() -> None:
    leaks = {name: found for name, path in package_modules().items()
             if not name.startswith(ALLOWED) and (found := implementation_mentions(path))}
    assert leaks == {}


def test_the_architecture_page_maps_every_module() -> None:
    text = ARCHITECTURE.read_text()
    mapped = set(re.findall(r"`(voicereel(?:\.\w+)*)`", text))
    modules = set(package_modules())
    assert modules - mapped == set(), "modules missing from docs/architecture.md"
    assert mapped - modules == set(), "docs/architecture.md names modules that do not exist"
