"""The q-space encoding and the target shells of a model: ModelSpec fields, names, sidecars, the weights
check, and the one function (encode_q) that turns b-vectors into the network's inputs in inference and
training."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from dmri_rcnn.core.model_spec import (
    MODEL_NAME_PATTERN,
    ModelSpec,
    check_weights,
    published_model_spec,
    read_model_spec,
    sidecar_path,
    write_model_spec,
)
from dmri_rcnn.core.processing.qspace import encode_q
from dmri_rcnn.errors import InputError

CROSS_SHELL = "3D_b1000_q6_to2000_3000_bscaled"

#: A sidecar as the package wrote it before the q-space fields existed.
OLD_SIDECAR = {
    "model_dim": 1, "q_in": 6, "shells": [1000], "width": 1.0, "min_filters": 1, "lstm_size": 48,
    "patch_shape": [10, 10, 10], "scaling": "shell", "precision": "fp32", "format": 1,
}


# ------------------------------------------------------------------------------------------ the spec


def test_defaults_leave_existing_models_names_and_sidecars_as_they_were(tmp_path):
    weights = tmp_path / "old.weights.h5"
    sidecar_path(weights).write_text(json.dumps(OLD_SIDECAR))
    spec = read_model_spec(weights)
    assert (spec.q_encoding, spec.target_shells) == ("direction", ())
    assert spec.to_dict() == OLD_SIDECAR and spec.name == "1D_b1000_q6"
    for dim, shell, q_in in ((3, 1000, 6), (1, "all", 10), (3, "all_norm", 30)):
        published = published_model_spec(dim, shell, q_in)
        assert set(published.to_dict()) == set(OLD_SIDECAR)
        assert published.name == ModelSpec.from_name(published.name, scaling=published.scaling).name
        assert published.differences(ModelSpec.from_name(published.name, scaling=published.scaling)) == []


def test_the_sidecar_round_trips_the_encoding_and_target_shells(tmp_path):
    spec = ModelSpec(model_dim=3, q_in=6, shells=(1000,), width=0.25, q_encoding="b_scaled", target_shells=[3000, 2000])
    weights = tmp_path / "cross.weights.h5"
    write_model_spec(spec, weights)
    stored = json.loads(sidecar_path(weights).read_text())
    assert stored["q_encoding"] == "b_scaled" and stored["target_shells"] == [2000, 3000]
    assert read_model_spec(weights) == spec
    assert spec.name == CROSS_SHELL


@pytest.mark.parametrize(
    "name",
    [
        "3D_b1000_q6",
        "1D_all_q10",
        "3D_b1000_q6_bscaled",
        "3D_b1000_q6_to2000",
        CROSS_SHELL,
        "3D_b1000_q10_to1000_2000_3000_bscaled",
        "3D_all_q10_to1000_2000_3000_bscaled",
        "1D_b1000_q6_to2000_3000_bvalue",
    ],
)
def test_names_round_trip_through_the_one_grammar(name):
    assert re.fullmatch(MODEL_NAME_PATTERN, name)
    spec = ModelSpec.from_name(name, width=0.5)
    assert spec.name == name and spec.width == 0.5
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_a_cross_shell_name_stands_for_its_fields():
    spec = ModelSpec.from_name(CROSS_SHELL)
    assert (spec.shells, spec.target_shells, spec.q_encoding) == ((1000,), (2000, 3000), "b_scaled")
    assert ModelSpec.from_name(CROSS_SHELL, q_encoding="b_scaled", target_shells=(3000, 2000)) == spec


@pytest.mark.parametrize(
    "name, fields, match",
    [
        ("3D_b1000_q6_bscaled_to2000", {}, "is not a model name like"),
        ("3D_b1000_q6_to3000_2000_bscaled", {}, "list the target shells once each, ascending: _to2000_3000"),
        ("3D_b1000_q6_to2000_3000", {}, "target_shells b=2000/3000 need q_encoding 'b_scaled'"),
        ("3D_b1000_q6_to1000", {}, r"target_shells is the context's shell \(1000\)"),
        (CROSS_SHELL, {"q_encoding": "direction"}, "q_encoding 'direction' disagrees with the model name"),
        (CROSS_SHELL, {"target_shells": (2000,)}, "target_shells .2000,. disagrees with the model name"),
    ],
)
def test_bad_names_and_fields_are_one_line_errors(name, fields, match):
    with pytest.raises(InputError, match=match) as info:
        ModelSpec.from_name(name, **fields)
    assert "\n" not in str(info.value)


def test_an_unknown_encoding_is_refused():
    with pytest.raises(InputError, match="q_encoding is 'q_space'; expected one of direction, b_scaled"):
        ModelSpec(model_dim=1, q_in=6, shells=(1000,), q_encoding="q_space")


def test_differences_name_the_encoding_and_the_target_shells():
    same_shell = ModelSpec.from_name("3D_b1000_q6")
    cross = ModelSpec.from_name(CROSS_SHELL)
    assert cross.differences(same_shell) == [
        "direction q-encoding (found b_scaled)", "same-shell targets (found targets b=2000/3000)"
    ]
    assert same_shell.differences(cross) == [
        "b_scaled q-encoding (found direction)", "targets b=2000/3000 (found same-shell targets)"
    ]
    # weights trained to predict 2000 and 3000 serve a model predicting 2000 only, not the other way round
    assert cross.differences(ModelSpec.from_name("3D_b1000_q6_to2000_bscaled")) == []
    assert ModelSpec.from_name("3D_b1000_q6_to2000_bscaled").differences(cross) == [
        "targets b=2000/3000 (found targets b=2000)"
    ]


@pytest.mark.parametrize(
    "published, variant",
    [
        ("3D_b1000_q6", "3D_b1000_q6_bscaled"),
        ("3D_b1000_q6", "3D_b1000_q6_to2000"),
        ("3D_all_q10", "3D_all_q10_to1000_2000_3000_bscaled"),
    ],
)
def test_no_published_weights_stand_for_a_cross_shell_or_b_scaled_model(published, variant):
    from dmri_rcnn.study.pretrained import published_key

    assert published_key(ModelSpec.from_name(published)) is not None
    assert published_key(ModelSpec.from_name(variant)) is None


def test_check_weights_names_the_encoding_in_its_one_line(tmp_path):
    weights = tmp_path / "best.weights.h5"
    write_model_spec(ModelSpec.from_name("3D_b1000_q6"), weights)
    with pytest.raises(InputError) as info:
        check_weights(weights, ModelSpec.from_name(CROSS_SHELL), f"the study's model {CROSS_SHELL}")
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith(
        f"the study's model {CROSS_SHELL} needs b_scaled q-encoding (found direction); "
        "targets b=2000/3000 (found same-shell targets)"
    )


# ------------------------------------------------------------------------------------------ encode_q


def test_encode_q_scales_by_the_b_value_only_when_b_scaled():
    bvecs = np.array([[1.0, 0.0], [0.0, 0.6], [0.0, 0.8]], dtype=np.float32)
    bvals = np.array([1000.0, 2500.0])
    assert encode_q(bvecs, bvals, "direction") is bvecs
    scaled = encode_q(bvecs, bvals, "b_scaled")
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, bvecs * [1.0, 2.5])
    with pytest.raises(InputError, match="expected one of direction, b_scaled"):
        encode_q(bvecs, bvals, "b")
    with pytest.raises(InputError, match=r"b-values of shape \(3,\); expected \(3, q\) and \(q,\)"):
        encode_q(bvecs, [1000.0, 2000.0, 3000.0], "b_scaled")


def test_encode_q_appends_the_b_value_as_a_fourth_number_when_b_value():
    import tensorflow as tf

    from dmri_rcnn.core.processing.qspace import q_channels

    bvecs = np.array([[1.0, 0.0], [0.0, 0.6], [0.0, 0.8]], dtype=np.float32)
    bvals = np.array([1000.0, 2500.0])
    encoded = encode_q(bvecs, bvals, "b_value")
    assert encoded.shape == (4, 2) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded[:3], bvecs)
    np.testing.assert_allclose(encoded[3], [1.0, 2.5])
    # the tensor path (inside tf.data) gives the same numbers
    as_tensor = encode_q(tf.constant(bvecs), tf.constant(bvals, tf.float32), "b_value")
    np.testing.assert_allclose(as_tensor.numpy(), encoded)
    assert [q_channels(e) for e in ("direction", "b_scaled", "b_value")] == [3, 3, 4]
    with pytest.raises(InputError, match="q_encoding is 'b'"):
        q_channels("b")


def _recorded_model_inputs(monkeypatch, spec: ModelSpec, bval: float):
    """The b-vectors ``infer`` hands the network for one set of directions, all acquired at ``bval``."""
    from dmri_rcnn.core import inference

    seen = {}

    def record(model, scaled, corners, bvec_in, bvec_out, settings):
        seen["in"], seen["out"] = bvec_in.copy(), bvec_out.copy()
        return iter(())

    monkeypatch.setattr(inference, "_predict_patches", record)
    directions = np.eye(3, dtype=np.float32)
    mask = np.ones((10, 10, 10), bool)
    inference.infer(
        np.ones((10, 10, 10, 3), np.float32), directions, directions, mask, model=None, scale=1.0,
        q_encoding=spec.q_encoding, bvals=(np.full(3, bval), np.full(3, bval)),
    )
    return seen["in"], seen["out"]


def test_a_b_scaled_model_is_told_the_shell_and_a_direction_model_is_not(monkeypatch):
    b_scaled = ModelSpec.from_name("1D_b1000_q6_to1000_2000_bscaled")
    at_1000 = _recorded_model_inputs(monkeypatch, b_scaled, 1000.0)
    at_2000 = _recorded_model_inputs(monkeypatch, b_scaled, 2000.0)
    for low, high in zip(at_1000, at_2000):
        np.testing.assert_allclose(high, 2.0 * low)
        np.testing.assert_allclose(low, np.eye(3))

    direction = ModelSpec.from_name("1D_b1000_q6")
    for low, high in zip(_recorded_model_inputs(monkeypatch, direction, 1000.0),
                         _recorded_model_inputs(monkeypatch, direction, 2000.0)):
        np.testing.assert_array_equal(low, high)


def test_b_scaled_inference_needs_the_b_values():
    from dmri_rcnn.core.inference import infer

    directions = np.eye(3, dtype=np.float32)
    with pytest.raises(InputError, match=r"needs bvals=\(bval_in, bval_out\)"):
        infer(np.ones((10, 10, 10, 3)), directions, directions, np.ones((10, 10, 10)), None, scale=1.0,
              q_encoding="b_scaled")
    with pytest.raises(InputError, match="bval_out: expected 3 b-values"):
        infer(np.ones((10, 10, 10, 3)), directions, directions, np.ones((10, 10, 10)), None, scale=1.0,
              q_encoding="b_scaled", bvals=([1000.0] * 3, [2000.0] * 2))


def test_training_examples_carry_the_encoding(tmp_path):
    """The training pipeline gives the b_scaled network q-vectors of length b/1000, per volume."""
    from dmri_rcnn.core.processing import TrainingProcessor, save_tfrecord_data

    rng = np.random.default_rng(0)
    bvals = np.concatenate([[5.0], np.full(8, 1000.0), np.full(8, 2000.0)])
    bvals[1] = 990.0
    bvecs = rng.normal(size=(3, bvals.size))
    bvecs /= np.linalg.norm(bvecs, axis=0)
    bvecs[:, 0] = 0.0
    dmri = rng.uniform(100.0, 200.0, (10, 10, 10, bvals.size)).astype(np.float32)
    path = tmp_path / "subject.tfrecord"
    save_tfrecord_data(dmri, bvecs, bvals, np.ones((10, 10, 10), np.int8), path)

    lengths, inputs = {}, {}
    for encoding in ("direction", "b_scaled", "b_value"):
        processor = TrainingProcessor([1000, 2000], q_in=4, q_out=4, q_encoding=encoding)
        (_, bvec_in, bvec_out), _ = next(iter(processor.load_data([str(path)], validation=True, batch_size=2)))
        inputs[encoding] = np.concatenate([bvec_in, bvec_out], axis=1)
        lengths[encoding] = np.linalg.norm(inputs[encoding][..., :3], axis=-1)
    np.testing.assert_allclose(lengths["direction"], 1.0, rtol=1e-6)
    # validation examples are in file order: the first patch's set is b = 990, 1000, ... of the first shell
    np.testing.assert_allclose(lengths["b_scaled"][0], bvals[1:9] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(lengths["b_scaled"][1], 2.0, rtol=1e-6)
    # b_value: the same unit directions, and b / 1000 as the fourth number of each volume
    assert inputs["b_value"].shape[-1] == 4
    np.testing.assert_array_equal(inputs["b_value"][..., :3], inputs["direction"])
    np.testing.assert_allclose(inputs["b_value"][0, :, 3], bvals[1:9] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(inputs["b_value"][1, :, 3], 2.0, rtol=1e-6)
