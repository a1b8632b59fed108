"""The package layout: imports point one way (data -> models -> training / evaluation -> the loop and the API),
and nothing in the library imports the experiment configs. Every module's syntax tree is walked, imports inside
functions included; a planted violation proves the check can fail."""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = ("acar_jax", "data_pipelines")

# A module may import from its own stage or a lower one. training and evaluation share a rank but may not
# import each other: only the loop (experiment) and the public entry points above them join the two.
STAGES = {
    "data_pipelines": 0,
    "acar_jax": 4,   # the package itself (its __init__); never a prefix of another module's stage
    "acar_jax.batch": 1, "acar_jax.parallel": 1, "acar_jax.config_files": 1, "acar_jax.ops": 1,
    "acar_jax.host_memory": 1,
    "acar_jax.models": 2,
    "acar_jax.training": 3, "acar_jax.evaluation": 3,
    "acar_jax.experiment": 4, "acar_jax.api": 4, "acar_jax.torch_import": 4, "acar_jax.ava_eval": 4,
    "acar_jax.serving": 4, "acar_jax.saved_model": 4, "acar_jax.demo": 4, "acar_jax.person_detector": 4,
    "acar_jax.acfb_chain": 4,
}
SIBLINGS_APART = {("acar_jax.training", "acar_jax.evaluation"), ("acar_jax.evaluation", "acar_jax.training")}


def stage_of(module: str) -> str | None:
    """The STAGES key owning a dotted module name (longest prefix), or None for third-party modules."""
    matches = [s for s in STAGES if module == s or (s != "acar_jax" and module.startswith(s + "."))]
    return max(matches, key=len) if matches else None


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, this_module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the tree, function bodies included."""
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


def violations(root: pathlib.Path, packages=LIBRARY) -> list[str]:
    """Every import inside `packages` under `root` that reaches configs/ or goes up a stage."""
    out = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            this = module_name(path, root)
            this_stage = stage_of(this)
            assert this_stage is not None, f"{path}: module {this} has no stage in STAGES; add it"
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, target in imported_modules(tree, this, path.name == "__init__.py"):
                where = f"{path.relative_to(root)}:{line}"
                if target == "configs" or target.startswith("configs."):
                    out.append(f"{where}: imports {target} (the library takes parameters, never configs/)")
                    continue
                target_stage = stage_of(target)
                if target_stage is None:
                    continue
                if STAGES[target_stage] > STAGES[this_stage] or (this_stage, target_stage) in SIBLINGS_APART:
                    out.append(f"{where}: {this} ({this_stage}) imports {target} ({target_stage}), a stage above "
                               "or beside it")
    return out


def test_library_imports_point_down_and_never_at_configs():
    assert violations(REPO) == []


@pytest.mark.parametrize("planted, source", [
    ("acar_jax/models/planted.py", "def f():\n    from acar_jax.training import losses\n"),
    ("data_pipelines/planted.py", "def f():\n    from configs import default\n"),
    ("acar_jax/evaluation/planted.py", "from acar_jax.training.losses import roi_losses\n"),
    ("data_pipelines/planted.py", "from acar_jax import batch\n"),
    ("acar_jax/training/planted.py", "from ..evaluation import report\n"),
])
def test_a_planted_violation_is_found(tmp_path, planted, source):
    """Copies the library, plants one bad import (inside a function, relative, or at the top) and checks that
    exactly that file is reported."""
    import shutil

    for package in LIBRARY:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / planted).write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(planted), found
