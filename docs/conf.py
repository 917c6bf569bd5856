"""Sphinx configuration: Markdown pages (MyST), NumPy-style docstrings (numpydoc), offline.

Build with ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``): every warning
is an error, so a broken link, an unknown reference or a public function without a docstring fails it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import sys
from pathlib import Path

from sphinx.util.nodes import make_refnode

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))

# The API pages import the package, TensorFlow and Keras included (the `docs` extra installs the CPU
# build): mocked, the Keras layers would lose their methods' signatures. Quiet TensorFlow's start-up.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

project = "dmri-rcnn-study"
author = "dmri-rcnn-study developers"
copyright = "dmri-rcnn-study developers"
release = importlib.import_module("dmri_rcnn").__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinxarg.ext",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# Offline: no intersphinx, no remote images.
html_theme = "furo"
html_title = "dMRI-RCNN study"
html_static_path: list[str] = []

# ------------------------------------------------------------------------------------------ MyST
myst_enable_extensions = ["colon_fence", "deflist"]
# `[text](page.md#section)` and `[text](#section)` resolve to headings down to level 4 and are
# checked: a missing page or anchor is a warning (an error under -W).
myst_heading_anchors = 4

# ------------------------------------------------------------------------------------------ autodoc
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autosummary_generate = True


def _remove_pages_of_removed_modules() -> None:
    """The API pages are generated into docs/api/generated/ (not tracked); a page left from a module
    since removed or renamed would be a document in no toctree."""
    for page in (DOCS / "api" / "generated").glob("*.rst"):
        source = ROOT / "src" / Path(*page.stem.split("."))
        if not (source.with_suffix(".py").is_file() or (source / "__init__.py").is_file()):
            page.unlink(missing_ok=True)


_remove_pages_of_removed_modules()
autosummary_ignore_module_all = True  # every submodule gets a page; automodule still follows __all__

# ------------------------------------------------------------------------------------------ numpydoc
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False
# A public function, class or method in the API reference without a docstring fails the build (GL08).
numpydoc_validation_checks = {"GL08"}
numpydoc_validation_exclude = {
    r"\._[^.]*$",  # private names
    r"\.__[a-z0-9_]+__$",  # dunder methods
}


def _reexported_by_parent() -> dict[str, list[str]]:
    """Names a package re-exports from its submodules (its ``__all__``), by the submodule defining them.

    A re-exported name is documented once, where it is imported from (``dmri_rcnn.core.io.load_nifti``),
    and left out of its submodule's page (``dmri_rcnn.core.io.nifti``), which would describe it again.
    """
    excluded: dict[str, list[str]] = {}
    for package_name in REEXPORTING_PACKAGES:  # read, not imported: importing would load TensorFlow
        folder = ROOT / "src" / Path(*package_name.split("."))
        for name in _all_of(folder / "__init__.py"):
            # functions and classes; constants stay on their module's page, which has their #: comment
            definition = re.compile(rf"^(?:def |class ){name}\b", re.MULTILINE)
            for source in sorted(folder.glob("*.py")):
                if source.stem != "__init__" and definition.search(source.read_text(encoding="utf-8")):
                    excluded.setdefault(f"{package_name}.{source.stem}", []).append(name)
    return excluded


def _all_of(path: Path) -> list[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


REEXPORTING_PACKAGES = [
    "dmri_rcnn.core.io",
    "dmri_rcnn.core.model",
    "dmri_rcnn.core.processing",
    "dmri_rcnn.training",
    "dmri_rcnn.evaluation",
]
autosummary_context = {"reexported": _reexported_by_parent()}


# ------------------------------------------------------------------------------------------ pending fixes
# Docstrings that do not parse yet, in modules being reworked. Each is shown verbatim (a literal block)
# and left out of the GL08 check until fixed; empty this list as they are. Fully qualified names, as
# defined (module.qualname).
DOCSTRINGS_TO_FIX: list[str] = [
]


def _defined_name(obj) -> str | None:
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else None


def _show_pending_verbatim(app, what, name, obj, options, lines):
    if _defined_name(obj) in DOCSTRINGS_TO_FIX:  # after numpydoc, which would reformat the block
        text = inspect.getdoc(obj) or ""
        lines[:] = ["::", ""] + [f"    {line}" for line in text.splitlines()] + [""] if text.strip() else []


def _skip_validation_of_pending() -> set[str]:
    """numpydoc checks by documented name, and a re-exported object is named where it is imported from
    (``dmri_rcnn.evaluation.dti_errors``): match the qualified name's tail."""
    tails = set()
    for defined in DOCSTRINGS_TO_FIX:
        parts = defined.split(".")
        cut = max(  # the longest prefix that is a module: module.Class.method -> Class.method
            (n for n in range(1, len(parts)) if (ROOT / "src" / Path(*parts[:n])).with_suffix(".py").is_file()),
            default=len(parts) - 1,
        )
        tails.add(r"\." + re.escape(".".join(parts[cut:])) + "$")
    return tails


numpydoc_validation_exclude |= _skip_validation_of_pending()


def _tolerate_lambda_properties() -> None:
    """numpydoc's validator fails (StopIteration) on ``property(lambda self: ...)``; give it no line."""
    from numpydoc import validate

    original = validate.Validator.source_file_def_line

    def source_file_def_line(self):
        try:
            return original.fget(self)
        except (StopIteration, RuntimeError):
            return None

    validate.Validator.source_file_def_line = property(source_file_def_line)


# ------------------------------------------------------------------------------------------ references
# Every cross-reference must resolve (nitpicky), but for names of other projects: without intersphinx
# (the build is offline) they have no target here.
nitpicky = True
EXTERNAL_PACKAGES = (
    "collections", "concurrent", "dataclasses", "dipy", "h5py", "json", "jsonschema", "keras", "matplotlib",
    "nib", "nibabel", "np", "numpy", "os", "pandas", "pathlib", "pd", "scipy", "snakemake", "tensorflow",
    "tf", "tqdm", "typing", "yaml",
)
nitpick_ignore_regex = [(r"py:.*", rf"~?(?:{'|'.join(EXTERNAL_PACKAGES)})(?:\..+)?")]
nitpick_ignore = [
    ("py:mod", "dmri_rcnn.core"),  # no page of its own: each of its modules has one
]


def _resolve_by_unique_tail(app, env, node, contnode):
    """Resolve ``dmri_rcnn.evaluation.dti.fit_dti`` or a bare ``fit_dti`` to the one object documented
    under that name (``dmri_rcnn.evaluation.fit_dti``: re-exported names are documented where they are
    imported from). Ambiguous or unknown names stay unresolved, a warning."""
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    kinds = set(domain.objtypes_for_role(node["reftype"]) or ())
    target = node["reftarget"].lstrip("~.")
    parts = target.split(".")
    # A bare name is looked for near the module it is written in (as Python would see it).
    context = (target if len(parts) > 1 else f"{node.get('py:module') or ''}.{target}").split(".")
    for length in range(len(parts), 0, -1):
        tail = ".".join(parts[-length:])
        found = [
            (name, entry) for name, entry in domain.objects.items()
            if (name == tail or name.endswith("." + tail)) and (not kinds or entry.objtype in kinds)
        ]
        if found:  # the one sharing the longest module path with the reference, if one does
            shared = [_common_prefix(name.split("."), context) for name, _ in found]
            best = [pair for pair, count in zip(found, shared) if count == max(shared)]
            if len(best) != 1:
                return None
            name, entry = best[0]
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, name)
    return None


def _common_prefix(first: list[str], second: list[str]) -> int:
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def setup(app):
    _tolerate_lambda_properties()
    app.connect("autodoc-process-docstring", _show_pending_verbatim, priority=600)
    app.connect("missing-reference", _resolve_by_unique_tail)
