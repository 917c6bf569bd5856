"""The package's shape: ``core`` (the public API) imports nothing from the study, evaluation, training,
command-line or simulation layers built on top of it; shared names are defined once; modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

from test_architecture import frameworks_loaded_by

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dmri_rcnn"
UPPER_LAYERS = ("study", "evaluation", "training", "cli", "simulation")


def _module_name(path: Path) -> str:
    parts = ["dmri_rcnn", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the file, lazy ones included, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from dmri_rcnn import simulation`` imports a module too
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _is_upper_layer(name: str) -> bool:
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == "dmri_rcnn" and parts[1] in UPPER_LAYERS


def test_the_layer_check_sees_lazy_relative_and_from_package_imports(tmp_path, monkeypatch):
    package = tmp_path / "dmri_rcnn"
    (package / "core").mkdir(parents=True)
    module = package / "core" / "example.py"
    module.write_text(
        "def f():\n    from dmri_rcnn.simulation import hcp_like_scheme\n"
        "from dmri_rcnn import study\nfrom ..training import config\nimport dmri_rcnn.cli._command\n"
        "from dmri_rcnn.core import io\n"
    )
    monkeypatch.setattr(f"{__name__}.PACKAGE", package)
    upward = sorted({name for _, name in _imported_modules(module) if _is_upper_layer(name)})
    assert upward == [
        "dmri_rcnn.cli._command",
        "dmri_rcnn.simulation",
        "dmri_rcnn.simulation.hcp_like_scheme",
        "dmri_rcnn.study",
        "dmri_rcnn.training",
        "dmri_rcnn.training.config",
    ]


def test_core_imports_nothing_from_the_layers_above_it():
    modules = sorted((PACKAGE / "core").rglob("*.py"))
    assert modules, f"no modules found under {PACKAGE / 'core'}"
    upward = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}"
        for path in modules
        for line, name in _imported_modules(path)
        if _is_upper_layer(name)
    ]
    assert not upward, "core must not import from " + ", ".join(UPPER_LAYERS) + ":\n" + "\n".join(upward)


# ----- one definition of each shared name ------------------------------------------------------------


def _definitions(name: str) -> list[str]:
    """``path:line`` of every module-level or nested assignment to ``name`` in the package's source."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets = [node.target]
            else:
                continue
            if any(isinstance(target, ast.Name) and target.id == name for target in targets):
                found.append(f"{path.relative_to(PACKAGE.parent).as_posix()}:{node.lineno}")
    return found


def test_the_b0_threshold_is_defined_once():
    modules = [place.rpartition(":")[0] for place in _definitions("B0_THRESHOLD")]
    assert modules == ["dmri_rcnn/core/io/gradients.py"], f"define B0_THRESHOLD only in core/io/gradients.py: {modules}"


def test_pathlike_is_defined_once_in_the_types_module():
    modules = [place.rpartition(":")[0] for place in _definitions("PathLike")]
    assert modules == ["dmri_rcnn/types.py"], f"define PathLike only in dmri_rcnn/types.py: {modules}"


def test_the_data_rules_modules_load_no_tensorflow():
    """The data rules' env (envs/data.yaml) has no TensorFlow: their modules must not import it."""
    modules = ("dmri_rcnn.simulation", "dmri_rcnn.study.data", "dmri_rcnn.sources", "dmri_rcnn.study.logs")
    assert frameworks_loaded_by(*modules) == []


def test_no_module_is_over_500_lines():
    """A module with one job stays readable; a bigger one is split by job (as core.io was)."""
    long = {
        path.relative_to(PACKAGE.parent).as_posix(): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not long, f"modules over 500 lines: {long}"
