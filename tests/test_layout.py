"""The package layout: imports point one way (data -> core -> ops / launch / interop -> models -> state /
evaluation -> bank -> training / inference -> the API), nothing in the library imports the experiment configs,
no import cycle exists inside the library, and `acar_jax/` holds no flat module besides its face and `api.py`.
Every module's syntax tree is walked, imports inside functions included; planted violations prove each check
can fail."""

from __future__ import annotations

import ast
import pathlib
import shutil

import pytest

from tests.helpers import paths

REPO = paths.REPO
LIBRARY = ("acar_jax", "data_pipelines")
FLAT_MODULES = {"__init__.py", "api.py"}

# A module may import from its own stage or from a stage of a lower rank; two stages of one rank never import
# each other (training and inference, state and evaluation, ... stay independent).
STAGES = {
    "data_pipelines": 0,
    "acar_jax.core": 1,
    "acar_jax.ops": 2, "acar_jax.launch": 2, "acar_jax.interop": 2,
    "acar_jax.models": 3,
    "acar_jax.state": 4, "acar_jax.evaluation": 4,
    "acar_jax.bank": 5,
    "acar_jax.training": 6, "acar_jax.inference": 6,
    "acar_jax.api": 7,
    "acar_jax": 7,   # the package face (its __init__); never a prefix of another module's stage
}


def stage_of(module: str) -> str | None:
    """The STAGES key owning a dotted module name (longest prefix), or None for third-party modules."""
    matches = [s for s in STAGES if module == s or (s != "acar_jax" and module.startswith(s + "."))]
    return max(matches, key=len) if matches else None


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, this_module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the tree, function bodies included; a `from m import x`
    gives `m.x` (x may be a module or a name in m)."""
    found = []
    package = this_module if is_package else this_module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def library_modules(root: pathlib.Path, packages=LIBRARY) -> dict[str, pathlib.Path]:
    """Dotted name -> file of every module of the library under `root`."""
    return {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}


def violations(root: pathlib.Path, packages=LIBRARY) -> list[str]:
    """Every import inside `packages` under `root` that reaches configs/ or goes up or beside its stage."""
    out = []
    for this, path in library_modules(root, packages).items():
        this_stage = stage_of(this)
        assert this_stage is not None, f"{path}: module {this} has no stage in STAGES; add it"
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in imported_modules(tree, this, path.name == "__init__.py"):
            where = f"{path.relative_to(root)}:{line}"
            if target == "configs" or target.startswith("configs."):
                out.append(f"{where}: imports {target} (the library takes parameters, never configs/)")
                continue
            target_stage = stage_of(target)
            if target_stage is None or target_stage == this_stage:
                continue
            if STAGES[target_stage] >= STAGES[this_stage]:
                out.append(f"{where}: {this} ({this_stage}) imports {target} ({target_stage}), a stage above "
                           "or beside it")
    return out


def import_graph(root: pathlib.Path, packages=LIBRARY) -> dict[str, set[str]]:
    """Module -> the library modules it imports (a `from m import x` names module m.x when it exists, else m)."""
    modules = library_modules(root, packages)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for this, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for _, target in imported_modules(tree, this, path.name == "__init__.py"):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != this:
                graph[this].add(target)
    return graph


def import_cycles(root: pathlib.Path, packages=LIBRARY) -> list[list[str]]:
    """Every import cycle inside the library, each as the modules along it (strongly connected components of
    more than one module, found with Tarjan's algorithm)."""
    graph = import_graph(root, packages)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def flat_modules(root: pathlib.Path) -> set[str]:
    return {p.name for p in (root / "acar_jax").glob("*.py")} - FLAT_MODULES


def test_library_imports_point_down_and_never_at_configs():
    assert violations(REPO) == []


def test_library_has_no_import_cycle():
    assert import_cycles(REPO) == []


def test_acar_jax_holds_only_its_face_and_the_api_flat():
    assert flat_modules(REPO) == set()


def _copy_library(tmp_path: pathlib.Path) -> pathlib.Path:
    for package in LIBRARY:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize("planted, source", [
    ("acar_jax/models/planted.py", "def f():\n    from acar_jax.training import losses\n"),
    ("data_pipelines/planted.py", "def f():\n    from configs import default\n"),
    ("acar_jax/evaluation/planted.py", "from acar_jax.state.checkpoints import read_checkpoint\n"),
    ("data_pipelines/planted.py", "from acar_jax.core import batch\n"),
    ("acar_jax/training/planted.py", "from ..inference import demo\n"),
])
def test_a_planted_violation_is_found(tmp_path, planted, source):
    """Copies the library, plants one bad import (inside a function, relative, or at the top) and checks that
    exactly that file is reported."""
    root = _copy_library(tmp_path)
    (root / planted).write_text(source)
    found = violations(root)
    assert len(found) == 1 and found[0].startswith(planted), found


@pytest.mark.parametrize("first, second", [
    ("acar_jax/models/planted_a.py", "acar_jax/models/planted_b.py"),       # two new modules of one stage
    ("acar_jax/models/planted_a.py", "acar_jax/models/heads.py"),           # back into an existing module
])
def test_a_planted_cycle_is_found(tmp_path, first, second):
    """Plants a lazy (function-level) import each way between two modules of one stage: allowed by the stage
    rule, refused as a cycle."""
    root = _copy_library(tmp_path)
    name = lambda rel: rel[:-3].replace("/", ".")  # noqa: E731
    for here, there in ((first, second), (second, first)):
        path = root / here
        old = path.read_text() if path.exists() else ""
        path.write_text(old + f"\n\ndef planted():\n    import {name(there)}  # noqa\n")
    assert violations(root) == []
    cycles = import_cycles(root)
    assert len(cycles) == 1 and set(cycles[0]) == {name(first), name(second)}, cycles


def test_a_planted_flat_module_is_found(tmp_path):
    root = _copy_library(tmp_path)
    (root / "acar_jax" / "helpers.py").write_text("")
    assert flat_modules(root) == {"helpers.py"}


def readme_layout(text: str) -> dict[str, str]:
    """Package path (e.g. "acar_jax/models/") -> the README Layout text of its entry (continuation lines
    included)."""
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.split("\n"):
        if line.startswith("acar_jax/") and "/" in line.split()[0][len("acar_jax/"):]:
            current = line.split()[0]
            entries[current] = line
        elif line.startswith(" ") and current:
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


def layout_gaps(root: pathlib.Path, readme: str) -> list[str]:
    """Every stage package of acar_jax/ missing from the README Layout, and every module of it not named there."""
    entries = readme_layout(readme)
    out = []
    for package in sorted(p for p in (root / "acar_jax").iterdir() if (p / "__init__.py").is_file()):
        key = f"acar_jax/{package.name}/"
        if key not in entries:
            out.append(f"README Layout has no line for {key}")
            continue
        for module in sorted(package.rglob("*.py")):
            if module.name != "__init__.py" and module.name not in entries[key]:
                out.append(f"README Layout line {key} does not name {module.relative_to(root)}")
    return out


def test_readme_layout_names_every_stage_and_module():
    assert layout_gaps(REPO, (REPO / "README.md").read_text()) == []


def test_a_module_missing_from_the_readme_layout_is_found(tmp_path):
    root = _copy_library(tmp_path)
    (root / "acar_jax" / "models" / "planted_head.py").write_text("")
    gaps = layout_gaps(root, (REPO / "README.md").read_text())
    assert gaps == ["README Layout line acar_jax/models/ does not name acar_jax/models/planted_head.py"]
