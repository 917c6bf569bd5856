"""The last layer's activation as part of a model's description: relu (the original's) or softplus.

A ReLU output whose inputs are all below zero gives a zero prediction and a zero gradient, so a training
that lands there stays there; a softplus output is never flat. These tests build that state on purpose.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from dmri_rcnn.core.model_spec import ModelSpec, read_model_spec, sidecar_path, write_model_spec
from dmri_rcnn.errors import InputError
from dmri_rcnn.study.models import model_spec

CROSS_SHELL = "1D_b1000_q6_to2000_3000_bscaled"


def test_the_sidecar_says_softplus_and_leaves_relu_out(tmp_path):
    softplus = ModelSpec.from_name(CROSS_SHELL, width=0.25, output_activation="softplus")
    weights = tmp_path / "cross.weights.h5"
    write_model_spec(softplus, weights)
    assert json.loads(sidecar_path(weights).read_text())["output_activation"] == "softplus"
    assert read_model_spec(weights) == softplus
    assert "output_activation" not in ModelSpec.from_name(CROSS_SHELL).to_dict()
    assert "softplus output" in softplus.describe()


def test_an_unknown_activation_is_a_one_line_error():
    with pytest.raises(InputError, match=r"^output_activation is 'tanh'; expected one of relu, softplus$"):
        ModelSpec(model_dim=1, q_in=6, shells=(1000,), output_activation="tanh")


def test_weights_of_the_other_activation_do_not_fit():
    relu = ModelSpec.from_name(CROSS_SHELL)
    softplus = ModelSpec.from_name(CROSS_SHELL, output_activation="softplus")
    assert relu.differences(softplus) == ["softplus output (found relu)"]
    assert relu.differences(relu) == []


def test_the_study_gives_the_activation_to_cross_shell_models_only():
    cfg = {"models": {"width": 0.125, "min_filters": 16}, "cross_shell": {"output_activation": "softplus"}}
    assert model_spec(cfg, CROSS_SHELL).output_activation == "softplus"
    assert model_spec(cfg, "3D_b1000_q6").output_activation == "relu"
    assert model_spec({"models": {}}, CROSS_SHELL).output_activation == "softplus"  # the study's default


@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_only_a_softplus_output_recovers_from_inputs_below_zero(activation, tmp_path):
    """Every input of the last activation pushed far below zero (the state of a stalled training): the
    ReLU model predicts zero and three training steps change none of its trainable weights; the softplus model's
    weights move and its prediction rises. The trained model reloads with its activation."""
    from dmri_rcnn.core.model import build_model_from_spec, load_trained_model, save_trained_model

    spec = ModelSpec.from_name(CROSS_SHELL, width=0.05, output_activation=activation)
    model = build_model_from_spec(spec)
    dc4 = model.get_layer("decoder").get_layer("dc4_conv")
    kernel, bias = dc4.get_weights()
    dc4.set_weights([np.zeros_like(kernel), np.full_like(bias, -8.0)])

    rng = np.random.default_rng(0)
    images = rng.uniform(0.1, 0.5, (2, 6, 10, 10, 10)).astype("float32")
    bvecs_in = rng.normal(size=(2, 6, 3)).astype("float32")
    bvecs_out = 2 * rng.normal(size=(2, 4, 3)).astype("float32")
    targets = np.full((2, 4, 10, 10, 10), 0.2, "float32")
    inputs = [images, bvecs_in, bvecs_out]

    trainable = model.trainable_weights  # the batch-norm statistics move whatever the gradient
    before = [w.numpy().copy() for w in trainable]
    first = model.predict(inputs, verbose=0)
    for _ in range(3):
        model.train_on_batch(inputs, targets)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(before, (w.numpy() for w in trainable)))
    after = model.predict(inputs, verbose=0)

    if activation == "relu":
        assert not first.any() and not after.any()
        assert moved == 0.0
    else:
        assert moved > 0.0
        assert after.mean() > first.mean() > 0.0

    weights = tmp_path / "model.weights.h5"
    save_trained_model(model, spec, weights)
    decoder = load_trained_model(weights).get_layer("decoder")
    assert f"dc4_{activation}" in [layer.name for layer in decoder.layers]
