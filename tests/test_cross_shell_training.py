"""Training examples of a cross-shell model: context from the b = 1000 shell, targets from each target shell.

As in ``test_training_processor.py``, every volume of the small subject holds one constant value,
``100 * (v + 1)`` for volume ``v``, so the volume behind each example slice is read back from its values
and its shell checked.
"""

from __future__ import annotations

import numpy as np
import pytest

from dmri_rcnn.core.processing import TrainingProcessor, save_tfrecord_data
from dmri_rcnn.core.processing.shells import shell_indices
from dmri_rcnn.errors import InputError

SPATIAL = (10, 10, 10)
Q_IN = Q_OUT = 4


def _subject():
    """b0, b=1000 x 16, b=2000 x 12 and b=3000 x 12, shells interleaved as in HCP."""
    rng = np.random.default_rng(1)
    bvals = np.concatenate([[5.0], np.tile([1000.0, 2000.0, 3000.0], 12), np.full(4, 1000.0)])
    bvals[1] = 995.0
    bvecs = rng.normal(size=(3, bvals.size))
    bvecs /= np.linalg.norm(bvecs, axis=0)
    bvecs[:, 0] = 0.0
    dmri = np.broadcast_to(100.0 * (np.arange(bvals.size) + 1), SPATIAL + (bvals.size,)).astype(np.float32)
    return dmri, bvecs, bvals, np.ones(SPATIAL, np.int8)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    path = tmp_path_factory.mktemp("cross_shell") / "subject.tfrecord"
    arrays = _subject()
    save_tfrecord_data(*arrays, path)
    return path, arrays


def _examples(path, validation, **options):
    processor = TrainingProcessor([1000], q_in=Q_IN, q_out=Q_OUT, seed=3, **options)
    batches = list(processor.load_data([str(path)], validation=validation, batch_size=64))
    assert len(batches) == 1
    (context, bvec_in, bvec_out), target = batches[0]
    return processor, context.numpy(), bvec_in.numpy(), bvec_out.numpy(), target.numpy()


def _volumes(signal, scale):
    """(X, q) volume index of each example slice."""
    return np.rint(signal.reshape(*signal.shape[:2], -1).max(axis=2) * scale / 100.0).astype(int) - 1


@pytest.mark.parametrize("validation", [True, False])
def test_context_of_the_context_shell_and_targets_of_each_target_shell(subject, validation):
    path, (_, bvecs, bvals, _) = subject
    processor, context, bvec_in, bvec_out, target = _examples(
        path, validation, target_shells=[1000, 2000, 3000], q_encoding="b_scaled"
    )
    assert processor.shell_pairs == [(1000.0, 1000.0), (1000.0, 2000.0), (1000.0, 3000.0)]
    # one patch; b=1000 -> b=1000: 16 // 8 = 2 sets, -> b=2000 and -> b=3000: min(16, 12) // 8 = 1 set each
    assert context.shape == (4, Q_IN, *SPATIAL) and target.shape == (4, Q_OUT, *SPATIAL)
    scale = processor.scales[1000.0]  # both sides of every example are divided by the context shell's scale
    context_ids, target_ids = _volumes(context, scale), _volumes(target, scale)
    q_vectors = bvecs * bvals / 1000.0
    shells = []
    for example in range(len(context)):
        assert set(context_ids[example]) <= set(shell_indices(bvals, 1000))
        (shell,) = {int(round(b, -3)) for b in bvals[target_ids[example]]}
        assert set(target_ids[example]) <= set(shell_indices(bvals, shell))
        assert not set(context_ids[example]) & set(target_ids[example])
        # the b-vectors are those of the decoded volumes, b-scaled: the network is told each target's shell
        np.testing.assert_allclose(bvec_in[example], q_vectors[:, context_ids[example]].T, rtol=1e-5)
        np.testing.assert_allclose(bvec_out[example], q_vectors[:, target_ids[example]].T, rtol=1e-5)
        shells.append(shell)
    assert sorted(shells) == [1000, 1000, 2000, 3000]
    if validation:  # file order, shell pairs in turn
        assert shells == [1000, 1000, 2000, 3000]
    # the two same-shell sets are disjoint, as without target shells
    same = [np.concatenate([context_ids[e], target_ids[e]]) for e in range(len(shells)) if shells[e] == 1000]
    assert not set(same[0]) & set(same[1])


def test_without_target_shells_the_examples_are_as_before(subject):
    path, _ = subject
    before = _examples(path, False)
    same_shell = _examples(path, False, target_shells=[])
    for old, new in zip(before[1:], same_shell[1:]):
        np.testing.assert_array_equal(old, new)
    assert before[0].shell_pairs == [(1000.0, 1000.0)] and len(before[1]) == 2


def test_a_target_shell_with_too_few_directions_is_an_input_error(subject):
    path, _ = subject
    with pytest.raises(InputError, match=r"shell b=2000 has 12 directions .*; q_in \+ q_out = 16 are needed"):
        TrainingProcessor([1000], q_in=8, q_out=8, target_shells=[2000]).check_file(path)
    with pytest.raises(InputError, match="target_shells: expected positive b-values"):
        TrainingProcessor([1000], q_in=4, target_shells=[0])


def test_a_b_scaled_cross_shell_model_trains_and_its_sidecar_describes_it(records, tmp_path):
    """train_model gives a cross-shell model its encoding and target shells; the sidecar says both and
    reloads to the same spec, and the training input is the q-vectors of the shells the spec names."""
    import json

    from dmri_rcnn.core.model import load_trained_model
    from dmri_rcnn.core.model_spec import ModelSpec, read_model_spec, sidecar_path
    from dmri_rcnn.training import TrainingConfig, TrainingOutputs, train_model
    from dmri_rcnn.training.dataset import build_datasets

    spec = ModelSpec.from_name("1D_b1000_q6_to2000_3000_bscaled", width=0.05)
    config = TrainingConfig(spec=spec, epochs=1, steps_per_epoch=2, validation_steps=1, batch_size=4, seed=5)
    _, validation = build_datasets(config, [records[0]], [records[1]])
    (_, bvec_in, bvec_out), _ = next(iter(validation))
    np.testing.assert_allclose(np.linalg.norm(bvec_in, axis=-1), 1.0, atol=0.03)  # b = 1000 ± 30 context
    assert {round(float(n), 1) for n in np.linalg.norm(bvec_out, axis=-1).ravel()} <= {2.0, 3.0}

    weights = tmp_path / "best.weights.h5"
    train_model(config, [records[0]], [records[1]], TrainingOutputs(weights=weights, history=tmp_path / "h.tsv"))
    stored = json.loads(sidecar_path(weights).read_text())
    assert (stored["q_encoding"], stored["target_shells"]) == ("b_scaled", [2000, 3000])
    assert read_model_spec(weights) == spec
    assert load_trained_model(weights).count_params() > 0


def test_a_b_value_cross_shell_model_trains_on_four_numbers_per_volume(records, tmp_path):
    """The explicit b-value encoding: unit directions plus b/1000, through training, sidecar and reload."""
    from dmri_rcnn.core.model import load_trained_model
    from dmri_rcnn.core.model_spec import ModelSpec, read_model_spec
    from dmri_rcnn.training import TrainingConfig, TrainingOutputs, train_model
    from dmri_rcnn.training.dataset import build_datasets

    spec = ModelSpec.from_name("1D_b1000_q6_to2000_3000_bvalue", width=0.05)
    config = TrainingConfig(spec=spec, epochs=1, steps_per_epoch=2, validation_steps=1, batch_size=4, seed=5)
    _, validation = build_datasets(config, [records[0]], [records[1]])
    (_, bvec_in, bvec_out), _ = next(iter(validation))
    assert bvec_in.shape[-1] == bvec_out.shape[-1] == 4
    np.testing.assert_allclose(np.linalg.norm(bvec_in[..., :3], axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(bvec_in[..., 3], 1.0, atol=0.03)  # b = 1000 ± 30 context
    assert {round(float(b), 1) for b in np.ravel(bvec_out[..., 3])} <= {2.0, 3.0}

    weights = tmp_path / "best.weights.h5"
    train_model(config, [records[0]], [records[1]], TrainingOutputs(weights=weights, history=tmp_path / "h.tsv"))
    assert read_model_spec(weights) == spec
    assert load_trained_model(weights).get_layer("enc_bvecs").output.shape[-1] == 4
