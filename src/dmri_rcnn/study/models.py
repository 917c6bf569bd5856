"""The study's models: every model name stands for one :class:`~dmri_rcnn.core.model_spec.ModelSpec`.

The name gives the dimension, the shell(s) and q_in (:meth:`ModelSpec.from_name`); the config gives the
rest. Workflow scripts receive a model's name and rebuild its spec here; the catalogue of models to train
and evaluate is :func:`dmri_rcnn.study.design.model_catalogue`. This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses

from dmri_rcnn.core.model_spec import COMBINED_SHELLS, ModelSpec


def model_spec(cfg: dict, name: str) -> ModelSpec:
    """The model a name stands for in this study (:meth:`ModelSpec.from_name` with the config's choices).

    Dimension, shell and q_in come from the name; width and min_filters from ``models``; a combined
    (``all``) model is trained on ``models.combined.shells``, with 99th-percentile scaling when
    ``models.combined.norm`` is set (the published ``all_norm``). A cross-shell model (one with target
    shells) ends in ``cross_shell.output_activation``.

    Raises
    ------
    InputError
        If ``name`` is not a model name (:data:`dmri_rcnn.core.model_spec.MODEL_NAME_PATTERN`).
    """
    models = cfg["models"]
    spec = ModelSpec.from_name(name, width=models.get("width", 1.0), min_filters=models.get("min_filters", 1))
    if spec.target_shells:
        activation = cfg.get("cross_shell", {}).get("output_activation", "softplus")
        spec = dataclasses.replace(spec, output_activation=activation)
    if len(spec.shells) == 1:
        return spec
    combined = models.get("combined", {})
    return dataclasses.replace(spec, shells=combined.get("shells", COMBINED_SHELLS),
                               scaling="percentile" if combined.get("norm") else "shell")
