"""The architecture description is TensorFlow-free, and the package's modules import each other without a cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dmri_rcnn.core.architecture import ARCHITECTURES, model_dim_of_encoder

SRC = Path(__file__).resolve().parents[1] / "src"


def frameworks_loaded_by(*modules: str) -> list[str]:
    """TensorFlow and Keras modules a fresh interpreter holds after importing ``modules``."""
    code = (
        f"import json, sys; import {', '.join(modules)}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_importing_the_architecture_imports_no_tensorflow_nor_keras():
    assert frameworks_loaded_by("dmri_rcnn.core.architecture") == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_imports() -> dict[str, set[str]]:
    """module -> dmri_rcnn modules it imports anywhere in its source (lazy imports included)."""
    paths = {_module_name(p): p for p in (SRC / "dmri_rcnn").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name in paths and name != module:
                    targets.add(name)
        graph[module] = targets
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_model_and_weights():
    graph = _package_imports()
    assert "dmri_rcnn.core.model" not in graph["dmri_rcnn.core.weights"]
    assert _find_cycle(graph) is None, _find_cycle(graph)


@pytest.mark.parametrize("dim", [1, 3])
def test_model_dim_is_recognised_from_the_shared_description(dim):
    arch = ARCHITECTURES[dim]
    layers = [f"{b}_conv" for b in arch.encoder_blocks() if b != "conv_lstm"] + ["conv_lstm", "qspace"]
    assert model_dim_of_encoder(layers) == dim
    with pytest.raises(ValueError, match="match neither"):
        model_dim_of_encoder(layers[1:])


def test_checkpoint_keys_number_blocks_in_creation_order():
    keys = ARCHITECTURES[3].checkpoint_keys()
    assert keys[0] == ("encoder", "init", "layer_with_weights-0/layer_with_weights-0")
    assert ("encoder", "conv_lstm", "layer_with_weights-0/layer_with_weights-9") in keys
    assert keys[-1] == ("decoder", "dc4", "layer_with_weights-1/layer_with_weights-9")


@pytest.mark.parametrize("dim", [1, 3])
@pytest.mark.parametrize("width", [0.05, 0.25])
def test_stored_array_count_is_that_of_the_built_model(dim, width):
    from dmri_rcnn.core.model import get_autoencoder

    assert ARCHITECTURES[dim].stored_array_count() == len(get_autoencoder(dim, width=width).weights)


@pytest.mark.parametrize("dim, width, min_filters", [(1, 0.05, 2), (3, 0.125, 16)])
def test_layer_filters_are_those_of_the_built_model(dim, width, min_filters):
    from dmri_rcnn.core.model import get_autoencoder

    model = get_autoencoder(dim, width=width, min_filters=min_filters)
    built = []
    for part in ("encoder", "decoder"):
        for layer in model.get_layer(part).layers:
            if layer.name.endswith("_conv"):
                built.append((layer.name.removesuffix("_conv"), layer.filters))
            elif layer.name == "conv_lstm":
                built.append(("conv_lstm", layer.filters))
    expected = ARCHITECTURES[dim].layer_filters(width, min_filters)
    assert len(built) == len(expected) and dict(built) == dict(expected)
    # at full width no block has fewer than 16 filters: min_filters 1 and 16 build the same layers
    assert ARCHITECTURES[dim].layer_filters(1.0, 1) == ARCHITECTURES[dim].layer_filters(1.0, 16)
