"""Study step: where each model's weights come from (trained here, published, or another run's).

``models.weights`` in the config is ``scratch`` (train every model from random weights), ``published``
(the authors' checkpoints, fetched with :func:`dmri_rcnn.core.weights.get_weights`) or a path pattern with
``{model}`` (weights this package trained, e.g. another run's ``results/models/{model}/best.weights.h5``).
With ``training.epochs: 0`` those weights are evaluated as they are; with more epochs they are the start of
a fine-tuning. The checks here run when the workflow reads its config, before any job; they need neither
TensorFlow nor the weights themselves (a path pattern's descriptions are read, they are small JSON files).
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

from dmri_rcnn.core.model_spec import COMBINED_SHELLS, ModelSpec, check_weights, published_model_spec
from dmri_rcnn.core.weights import PUBLISHED_WEIGHTS, get_weights, load_original_checkpoint
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


def published_key(spec: ModelSpec):
    """The :data:`dmri_rcnn.core.weights.PUBLISHED_WEIGHTS` key of a model, or None.

    A multi-shell model matches the published combined model (3D, b=1000/2000/3000, q_in 10): ``all``,
    or ``all_norm`` for one with percentile scaling. Every published model reads unit b-vectors and predicts
    its context's shell: a cross-shell or b-scaled model has none.
    """
    if spec.target_shells or spec.q_encoding != "direction":
        return None
    if len(spec.shells) == 1:
        key = (spec.model_dim, spec.shells[0], spec.q_in)
        if spec.scaling != "shell":
            return None
    elif sorted(spec.shells) == list(COMBINED_SHELLS):
        key = (spec.model_dim, "all_norm" if spec.scaling == "percentile" else "all", spec.q_in)
    else:
        return None
    return key if key in PUBLISHED_WEIGHTS else None


def published_model_names() -> list[str]:
    """The published checkpoints in the study's model names: ``1D_b1000_q6`` ... ``3D_all_q10``."""
    return list(dict.fromkeys(published_model_spec(*key).name for key in PUBLISHED_WEIGHTS))


def check_model_weights(config: dict, models: list[ModelSpec]) -> None:
    """Stop on a ``models.weights`` / ``training.epochs`` combination that cannot work.

    Published weights and described weights files are checked against each model
    (:meth:`ModelSpec.differences`, :func:`dmri_rcnn.core.model_spec.check_weights`): the network they
    build, not the settings (``width: 1.0`` fits the published weights whatever ``min_filters`` says).

    Parameters
    ----------
    config : the workflow config (validated against the schema).
    models : the model catalogue (:func:`dmri_rcnn.study.design.model_catalogue`).

    Raises
    ------
    ConfigError
        Naming the config key, the model and what exists.
    """
    source = weights_source(config)
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
        available = ", ".join(published_model_names())
        for spec in models:
            key = published_key(spec)
            if key is None:
                raise ConfigError("models.weights", f"model {spec.name} has no published weights; published: {available}")
            problems = published_model_spec(*key).differences(spec)
            if problems:
                width = float(config["models"].get("width", 1.0))
                raise ConfigError(
                    "models.width",
                    f"the published weights are full width (1.0); models.width is {width:g}, so model "
                    f"{spec.name} needs {'; '.join(problems)}"
                )
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
    for spec in models:
        path = Path(source.format(model=spec.name))
        if not path.is_file():
            raise ConfigError("models.weights", f"weights of model {spec.name} not found: expected {path}")
        try:
            check_weights(path, spec, f"the study's model {spec.name}")
        except InputError as err:
            raise ConfigError("models.weights", str(err)) from None


def import_published_weights(model_dim: int, shell, q_in: int, out_path: PathLike, progress: bool = False) -> Path:
    """Fetch a published checkpoint (:func:`dmri_rcnn.core.weights.get_weights`, downloading into
    ``$DMRI_RCNN_DIR`` if needed) and save it as this package's ``.weights.h5`` with its description.

    The values are copied exactly (float32 to float32), so predictions equal those of
    ``run_dmri_rcnn.py`` with the same checkpoint.
    """
    # lazy: TensorFlow loads only when the step runs
    from dmri_rcnn.core.model import build_model_from_spec, save_trained_model

    spec = published_model_spec(model_dim, shell, q_in)
    prefix = get_weights(model_dim, shell, q_in, progress=progress)
    model = build_model_from_spec(spec)
    load_original_checkpoint(model, prefix)
    return save_trained_model(model, spec, out_path)


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


def published_checkpoint(spec: ModelSpec):
    """The :data:`dmri_rcnn.core.weights.PUBLISHED_WEIGHTS` key behind a model (rule import_published_weights).

    A combined model is the published one, trained on :data:`COMBINED_SHELLS` (``super_resolve`` may name
    it whatever ``models.combined.shells`` says).
    """
    if len(spec.shells) > 1:
        spec = dataclasses.replace(spec, shells=COMBINED_SHELLS)
    key = published_key(spec)
    if key is None:
        raise InputError(f"{spec.name}: no published weights; published: {', '.join(published_model_names())}")
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
