"""The training input mixes subjects: files are interleaved in an order shuffled from the seed each epoch.

Every voxel and volume of synthetic subject ``s`` holds ``100 * (s + 1)``, so each example's subject can
be read back from its context (after undoing the shell's scale).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dmri_rcnn.core.processing import save_tfrecord_data
from dmri_rcnn.core.processing.scaling import shell_scale
from dmri_rcnn.training import TrainingConfig
from dmri_rcnn.training.dataset import build_datasets

SUBJECTS = 8
SHAPE = (20, 20, 30)  # 12 patches of 10³; 64 directions at b = 1000 make 4 sets of 6 + 10: 48 examples


@pytest.fixture(scope="module")
def subject_records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subjects")
    rng = np.random.default_rng(0)
    bvals = np.concatenate([[0.0, 0.0], np.full(64, 1000.0)])
    paths = []
    for subject in range(SUBJECTS):
        bvecs = rng.normal(size=(3, 64))
        bvecs = np.concatenate([np.zeros((3, 2)), bvecs / np.linalg.norm(bvecs, axis=0)], axis=1)
        dmri = np.full(SHAPE + (bvals.size,), 100.0 * (subject + 1), np.float32)
        path = folder / f"s{subject}.tfrecord"
        save_tfrecord_data(dmri, bvecs, bvals, np.ones(SHAPE, np.int8), path)
        paths.append(path)
    return paths


EXAMPLES = SUBJECTS * 48


def _subjects_in_order(records, seed: int, examples: int) -> list[int]:
    """The subject of each of the first ``examples`` training examples (batches of 8 divide an epoch)."""
    batches = -(-examples // 8)
    config = TrainingConfig(model_dim=1, shells=[1000], q_in=6, q_out=10, batch_size=8, shuffle_buffer=16,
                            steps_per_epoch=batches, validation_steps=1, seed=seed)
    train, _ = build_datasets(config, records, records[:1])
    contexts = np.concatenate([inputs[0].numpy() for inputs, _ in train.take(batches)])[:examples]
    return (np.rint(contexts.max(axis=(1, 2, 3, 4)) * shell_scale(1000) / 100).astype(int) - 1).tolist()


def test_first_batches_mix_subjects_and_the_seed_fixes_the_order(subject_records):
    order = _subjects_in_order(subject_records, seed=5, examples=100)
    # read one file after the other, a 16-example buffer would hold at most 3 subjects of 48 examples
    assert len(set(order)) >= 6, order
    assert _subjects_in_order(subject_records, seed=5, examples=100) == order
    assert _subjects_in_order(subject_records, seed=6, examples=100) != order


def test_every_epoch_reads_every_example_once_in_a_new_file_order(subject_records):
    order = _subjects_in_order(subject_records, seed=5, examples=2 * EXAMPLES)
    first, second = order[:EXAMPLES], order[EXAMPLES:]
    for epoch in (first, second):
        assert np.bincount(epoch, minlength=SUBJECTS).tolist() == [48] * SUBJECTS
    assert first != second


def test_a_percentile_scaled_model_is_trained_on_signal_scaled_by_each_subjects_percentile(subject_records):
    """The model's own scaling (``spec.scaling``) decides how the training signal is scaled."""
    config = TrainingConfig(model_dim=1, shells=[1000], q_in=6, q_out=10, batch_size=8, steps_per_epoch=4,
                            validation_steps=1, seed=5)
    config = dataclasses.replace(config, spec=dataclasses.replace(config.spec, scaling="percentile"))
    train, _ = build_datasets(config, subject_records, subject_records[:1])
    contexts = np.concatenate([inputs[0].numpy() for inputs, _ in train.take(4)])
    # each subject's constant signal divided by its own 99th percentile
    np.testing.assert_allclose(contexts.max(axis=(1, 2, 3, 4)), 1.0, rtol=1e-5)
