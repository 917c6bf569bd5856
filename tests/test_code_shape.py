"""The package's functions stay small: no public function or method takes more than 10 parameters or runs
over 80 lines. Settings that travel together become one object (as ``TrainingConfig`` did), and long bodies
are split into named helpers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dmri_rcnn"
MAX_PARAMETERS = 10
MAX_LINES = 80

#: Functions still over a limit, each with the reason it is not yet split. This list only shrinks.
ALLOWED: dict[str, str] = {}


def _parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    """Named parameters; ``self``/``cls`` of a method and ``*args``/``**kwargs`` are not counted."""
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    if in_class and names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names)


def _public_functions():
    """(``path::qualified name``, parameters, lines) of every public function and method of the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()

        def visit(node, prefix, public, in_class):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if public and not child.name.startswith("_"):
                        lines = child.end_lineno - child.lineno + 1
                        yield f"{relative}::{prefix}{child.name}", _parameter_count(child, in_class), lines
                elif isinstance(child, ast.ClassDef):
                    yield from visit(child, f"{prefix}{child.name}.", public and not child.name.startswith("_"), True)

        yield from visit(ast.parse(path.read_text(), filename=str(path)), "", True, False)


def _offenders() -> dict[str, str]:
    return {
        name: f"{parameters} parameters, {lines} lines"
        for name, parameters, lines in _public_functions()
        if parameters > MAX_PARAMETERS or lines > MAX_LINES
    }


def test_public_functions_are_small():
    new = {name: shape for name, shape in _offenders().items() if name not in ALLOWED}
    assert not new, (
        f"public functions over {MAX_PARAMETERS} parameters or {MAX_LINES} lines: {new}; group settings that "
        "travel together into one object, or split the body into helpers"
    )


def test_allow_list_only_shrinks():
    fixed = sorted(set(ALLOWED) - set(_offenders()))
    assert not fixed, f"now within the limits, remove from ALLOWED: {fixed}"


# ----- imports inside functions ------------------------------------------------------------------------

#: Modules whose imports inside functions do not all say yet why they are there. This list only shrinks.
UNEXPLAINED_IMPORTS_PENDING: set[str] = set()


def _imports_without_reason() -> dict[str, list[int]]:
    """``{module: [line, ...]}`` of every import inside a function body with no comment on its line or the
    line above; a run of imports (blank lines between them allowed) shares the comment of its first one."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        nested = {
            node
            for function in ast.walk(ast.parse(text, filename=str(path)))
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(function)
            if isinstance(node, (ast.Import, ast.ImportFrom))
        }
        explained_until = 0  # the last line of the latest import that has a reason
        missing = []
        for node in sorted(nested, key=lambda node: node.lineno):
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            in_run = explained_until and not any(line.strip() for line in lines[explained_until : node.lineno - 1])
            if "#" in lines[node.lineno - 1] or above.startswith("#") or in_run:
                explained_until = node.end_lineno
            else:
                missing.append(node.lineno)
        if missing:
            found[path.relative_to(PACKAGE).as_posix()] = missing
    return found


def test_every_import_inside_a_function_says_why():
    """An import belongs at the top of its module; one inside a function keeps something heavy (TensorFlow,
    DIPY, matplotlib) out of a command's start-up or breaks an import cycle, and its comment says which."""
    missing = {module: lines for module, lines in _imports_without_reason().items()
               if module not in UNEXPLAINED_IMPORTS_PENDING}
    assert not missing, (
        f"imports inside functions without a comment saying why (module: lines): {missing}; move them to the "
        "top of the module, or add a comment on the line above (e.g. '# lazy: keeps TensorFlow out of --help')"
    )


def test_the_pending_imports_list_only_shrinks():
    fixed = sorted(UNEXPLAINED_IMPORTS_PENDING - set(_imports_without_reason()))
    assert not fixed, f"every import inside a function now says why; remove from UNEXPLAINED_IMPORTS_PENDING: {fixed}"
