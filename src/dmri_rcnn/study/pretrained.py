"""Study step: where each model's weights come from (trained here, published, or another run's).

``models.weights`` in the config is ``scratch`` (train every model from random weights), ``published``
(the authors' checkpoints, fetched with :func:`dmri_rcnn.core.weights.get_weights`) or a path pattern with
``{model}`` (weights this package trained, e.g. another run's ``results/models/{model}/best.weights.h5``).
With ``training.epochs: 0`` those weights are evaluated as they are; with more epochs they are the start of
a fine-tuning. The checks here run when the workflow reads its config, before any job; they need neither
TensorFlow nor the weights themselves (a path pattern's descriptions are read, they are small JSON files).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from dmri_rcnn.core.model_spec import COMBINED_SHELLS, published_model_spec, read_model_spec, sidecar_path
from dmri_rcnn.errors import ConfigError, InputError
from dmri_rcnn.types import PathLike

SCRATCH = "scratch"
PUBLISHED = "published"


def weights_source(config: dict) -> str:
    """``scratch``, ``published`` or the path pattern of ``models.weights`` (default scratch)."""
    return str(config["models"].get("weights") or SCRATCH)


def evaluation_only(config: dict) -> bool:
    """True when nothing is trained: ``training.epochs`` is 0 (the weights come from elsewhere)."""
    return int(config["training"]["epochs"]) == 0


def published_key(spec: dict, norm: bool = False):
    """The :data:`dmri_rcnn.core.weights.PUBLISHED_WEIGHTS` key of a catalogue model, or None.

    ``spec`` is a catalogue entry ``{"dim", "shells", "q_in"}``; a multi-shell model matches the published
    combined model (3D, b=1000/2000/3000, q_in 10), ``all_norm`` when ``norm``.
    """
    from dmri_rcnn.core.weights import PUBLISHED_WEIGHTS

    shells = [int(s) for s in spec["shells"]]
    if len(shells) == 1:
        key = (int(spec["dim"]), shells[0], int(spec["q_in"]))
    elif sorted(shells) == list(COMBINED_SHELLS):
        key = (int(spec["dim"]), "all_norm" if norm else "all", int(spec["q_in"]))
    else:
        return None
    return key if key in PUBLISHED_WEIGHTS else None


def published_model_names() -> list[str]:
    """The published checkpoints in the study's model names: ``1D_b1000_q6`` ... ``3D_all_q10``."""
    from dmri_rcnn.core.weights import PUBLISHED_WEIGHTS

    names = []
    for dim, shell, q_in in PUBLISHED_WEIGHTS:
        name = f"{dim}D_all_q{q_in}" if shell in ("all", "all_norm") else f"{dim}D_b{shell}_q{q_in}"
        if name not in names:
            names.append(name)
    return names


def check_model_weights(config: dict, models: dict) -> None:
    """Stop on a ``models.weights`` / ``training.epochs`` combination that cannot work.

    Parameters
    ----------
    config : the workflow config (validated against the schema).
    models : the model catalogue, name -> ``{"dim", "shells", "q_in"}``.

    Raises
    ------
    ConfigError
        Naming the config key, the model and what exists.
    """
    source = weights_source(config)
    width = float(config["models"].get("width", 1.0))
    min_filters = int(config["models"].get("min_filters", 1))
    norm = bool(config["models"].get("combined", {}).get("norm", False))
    if evaluation_only(config) and source == SCRATCH:
        raise ConfigError(
            "training.epochs",
            "0 means evaluation only, which needs weights to evaluate; set models.weights to "
            "published or to a path pattern with {model}"
        )
    if norm and source != PUBLISHED:
        raise ConfigError(
            "models.combined.norm",
            "99th-percentile scaling exists only for the published combined model "
            f"(all_norm); models.weights is {source}"
        )
    if source == SCRATCH:
        return
    if source == PUBLISHED:
        if width != 1.0:
            raise ConfigError("models.width", f"the published weights are full width (1.0); models.width is {width:g}")
        available = ", ".join(published_model_names())
        for name, spec in models.items():
            if published_key(spec, norm) is None:
                raise ConfigError("models.weights", f"model {name} has no published weights; published: {available}")
        return
    if "{model}" not in source:
        raise ConfigError(
            "models.weights",
            f"{source!r} is neither scratch, published nor a path pattern containing {{model}}"
        )
    own = Path("results/models/{model}/best.weights.h5").resolve()
    if not evaluation_only(config) and Path(source).resolve() == own:
        raise ConfigError(
            "models.weights",
            f"{source} are the weights this run's training writes; to fine-tune them, point at "
            "a copy or another run's results"
        )
    for name, spec in models.items():
        path = Path(source.format(model=name))
        if not path.is_file():
            raise ConfigError("models.weights", f"weights of model {name} not found: expected {path}")
        found = read_model_spec(path)
        if found is None:
            raise ConfigError(
                "models.weights",
                f"{path} (model {name}) has no description {sidecar_path(path)}; "
                "only weights trained by this package can be used"
            )
        wanted = {"model_dim": int(spec["dim"]), "q_in": int(spec["q_in"]),
                  "shells": tuple(int(s) for s in spec["shells"]), "width": width, "min_filters": min_filters}
        for field, value in wanted.items():
            if getattr(found, field) != value:
                raise ConfigError(
                    "models.weights",
                    f"{path} (model {name}) has {field} {getattr(found, field)} in "
                    f"{sidecar_path(path)}; the study's model has {value}"
                )


def import_published_weights(model_dim: int, shell, q_in: int, out_path: PathLike, progress: bool = False) -> Path:
    """Fetch a published checkpoint (:func:`dmri_rcnn.core.weights.get_weights`, downloading into
    ``$DMRI_RCNN_DIR`` if needed) and save it as this package's ``.weights.h5`` with its description.

    The values are copied exactly (float32 to float32), so predictions equal those of
    ``run_dmri_rcnn.py`` with the same checkpoint.
    """
    from dmri_rcnn.core.model import build_model_from_spec, save_trained_model
    from dmri_rcnn.core.weights import get_weights, load_original_checkpoint

    spec = published_model_spec(model_dim, shell, q_in)
    prefix = get_weights(model_dim, shell, q_in, progress=progress)
    model = build_model_from_spec(spec)
    load_original_checkpoint(model, prefix)
    return save_trained_model(model, spec, out_path)


def parse_model_name(name: str) -> dict:
    """A study model name (``3D_b1000_q6``, ``3D_all_q10``) as a catalogue entry ``{"dim", "shells", "q_in"}``."""
    import re

    match = re.fullmatch(r"([13])D_(?:b(\d+)|all)_q(\d+)", str(name))
    if not match:
        raise InputError(f"{name!r} is not a model name like 3D_b1000_q6 or 3D_all_q10")
    dim, shell, q_in = match.groups()
    shells = [int(shell)] if shell else list(COMBINED_SHELLS)
    return {"dim": int(dim), "shells": shells, "q_in": int(q_in)}


# ----- the workflow's input functions -------------------------------------------------------------------


def pretrained_weights(config: dict, model: str) -> str:
    """The weights a model starts from (or is evaluated with) when ``models.weights`` is not scratch."""
    source = weights_source(config)
    if source == PUBLISHED:
        return f"resources/published_weights/{model}.weights.h5"
    return source.format(model=model)


def study_model_weights(config: dict, model: str) -> str:
    """The weights the study evaluates: trained (or fine-tuned) here, or the given ones with epochs 0."""
    if evaluation_only(config):
        return pretrained_weights(config, model)
    return f"results/models/{model}/best.weights.h5"


def published_checkpoint(config: dict, model: str):
    """The :data:`dmri_rcnn.core.weights.PUBLISHED_WEIGHTS` key behind a model name (rule import_published_weights)."""
    norm = bool(config["models"].get("combined", {}).get("norm", False))
    key = published_key(parse_model_name(model), norm)
    if key is None:
        raise InputError(f"{model}: no published weights; published: {', '.join(published_model_names())}")
    return key


#: The ``super_resolve`` section's functions, moved to :mod:`dmri_rcnn.study.super_resolve_config`.
_SUPER_RESOLVE_NAMES = frozenset(
    {"check_super_resolve", "super_resolve_settings", "super_resolve_shell", "super_resolve_weights", "super_resolved_outputs"}
)


def __getattr__(name: str):
    """Keep ``pretrained.super_resolve_weights`` etc. working for callers that still import them from here."""
    if name in _SUPER_RESOLVE_NAMES:
        # on first use, not at import: super_resolve_config imports this module
        return getattr(importlib.import_module("dmri_rcnn.study.super_resolve_config"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
