"""Rebuild a trained dMRI-RCNN from its weights and the description stored beside them."""

from __future__ import annotations

import logging
import os

from dmri_rcnn.core.model.autoencoder import get_autoencoder
from dmri_rcnn.core.model_spec import ModelSpec, read_model_spec, sidecar_path, write_model_spec
from dmri_rcnn.core.precision import choose_precision, configure_devices
from dmri_rcnn.core.processing.qspace import q_channels
from dmri_rcnn.core.weights import load_model_weights, save_model_weights
from dmri_rcnn.errors import InputError

log = logging.getLogger(__name__)


def build_model_from_spec(spec: ModelSpec, precision: str | None = None):
    """A compiled, untrained model with the architecture of ``spec`` (``precision`` overrides the spec's)."""
    return get_autoencoder(
        spec.model_dim,
        None,
        spec.width,
        min_filters=spec.min_filters,
        lstm_size=spec.lstm_size,
        in_vox_shape=spec.patch_shape,
        precision=precision or spec.precision,
        q_channels=q_channels(spec.q_encoding),
        output_activation=spec.output_activation,
    )


def load_trained_model(weights: str | os.PathLike, spec: ModelSpec | None = None, precision: str | None = None):
    """The model ``weights`` were trained as, with those weights loaded.

    Parameters
    ----------
    weights : a ``.weights.h5`` file written by :func:`dmri_rcnn.training.train_model` (or
        :func:`save_trained_model`), or an original-format checkpoint prefix; the description is read from
        the sidecar beside it (:func:`dmri_rcnn.core.model_spec.sidecar_path`) unless ``spec`` is given.
    spec : the description, if it is known otherwise (e.g. :func:`dmri_rcnn.core.model_spec.published_model_spec`).
    precision : ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"auto"``; default: the spec's. The log says which
        precision the model computes in, why, and on which devices. GPU memory is allocated as needed
        (:func:`dmri_rcnn.core.precision.configure_devices`) unless TensorFlow already uses the GPU.

    Returns
    -------
    keras.Model, as :func:`dmri_rcnn.core.model.get_3d_autoencoder` returns, at the spec's width.

    Raises
    ------
    InputError
        No description, an invalid one, or weights that do not fit it (one line naming the architecture
        expected, the one found in the file, and the description).
    """
    described_by = "the given description"
    if spec is None:
        spec = read_model_spec(weights)
        described_by = str(sidecar_path(weights))
        if spec is None:
            raise InputError(
                f"{weights}: no model description {sidecar_path(weights)} beside it, so its architecture is "
                "unknown; weights trained by this package carry one (or build the model yourself and use "
                "load_model_weights)"
            )
    configure_devices()  # before the model touches a GPU: jobs sharing one must not each reserve it whole
    choice = choose_precision(precision or spec.precision)
    why = choice.reason if precision else f"as trained, from {described_by}"
    log.info("%s: %s, computing in %s (%s); devices: %s", weights, spec.describe(), choice.precision, why,
             choice.devices)
    model = build_model_from_spec(spec, choice.precision)
    try:
        load_model_weights(model, weights, model_dim=spec.model_dim)
    except InputError as err:
        raise InputError(f"{err}; the {spec.describe()} described by {described_by} was built") from None
    return model


def save_trained_model(model, spec: ModelSpec, weights: str | os.PathLike):
    """Save ``model``'s weights to ``weights`` (``.weights.h5``) with ``spec`` in the sidecar beside it.

    The sidecar is written first and the weights last, each atomically, so a weights file never appears
    without its description.
    """
    write_model_spec(spec, weights)
    return save_model_weights(model, weights)
