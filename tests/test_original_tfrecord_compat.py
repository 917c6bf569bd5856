"""Compatibility with the original dmri-rcnn==0.4.2, run in its own environment (legacy Keras).

One run of the original (a few seconds of TensorFlow start-up) does all of its side at once:
writes a TFRecord from the test's arrays, reads the TFRecord written here, runs its validation
pipelines (constant and percentile scaling) on our file, and runs its direction sampler with
deterministic starts. Each test then compares one of those results with this package's.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_original

from dmri_rcnn.core.processing import TrainingProcessor, load_tfrecord_data, save_tfrecord_data
from dmri_rcnn.core.processing.directions import farthest_point_order

pytestmark = pytest.mark.original

ORIGINAL_SIDE = r"""
import sys
import numpy as np
import tensorflow as tf
from dmri_rcnn.core.processing.training import (
    TrainingProcessor, TrainingProcessorNorm, load_tfrecord_data, save_tfrecord_data)
from dmri_rcnn.core.processing.training.shell_reorder import ShellReorder

work = sys.argv[1]
src = np.load(work + "/arrays.npz")
# the original needs float32 input; it crashed on float64
save_tfrecord_data(src["dmri"].astype(np.float32), src["bvecs"].astype(np.float32),
                   src["bvals"].astype(np.float32), src["mask"], work + "/original.tfrecord")
record = next(iter(load_tfrecord_data([work + "/ours.tfrecord"])))
out = {"read_" + key: value.numpy() for key, value in record.items()}
for name, processor in [("val", TrainingProcessor([1000, 2000], 6)),
                        ("valnorm", TrainingProcessorNorm([1000, 2000], 6))]:
    batches = list(processor.load_data([work + "/ours.tfrecord"], validation=True))
    for n, key in enumerate(["context", "bvec_in", "bvec_out"]):
        out[name + "_" + key] = np.concatenate([b[0][n].numpy() for b in batches])
    out[name + "_target"] = np.concatenate([b[1].numpy() for b in batches])
# the sampler: feed volume numbers as the signal so the reordered signal is the order itself
shell = np.abs(src["bvals"] - 1000) <= 30
n_shell = int(shell.sum())
element = {"mask": tf.ones((1, 1, 1), tf.int8), "data_use": {1000: {
    "dmri": tf.reshape(tf.range(n_shell, dtype=tf.float32), (1, 1, 1, n_shell)),
    "bvec": tf.constant(src["bvecs"][:, shell].astype(np.float32)),
    "bval": tf.constant(src["bvals"][shell].astype(np.float32))}}}
reorder = ShellReorder(6, 10, random_seed=False)
reordered = next(iter(reorder(tf.data.Dataset.from_tensors(element))))
out["order"] = np.rint(reordered["data_use"][1000]["dmri"].numpy().ravel()).astype(np.int64)
np.savez(work + "/original_out.npz", **out)
"""


@pytest.fixture(scope="module")
def exchange(original_python, tmp_path_factory):
    work = tmp_path_factory.mktemp("original_compat")
    rng = np.random.default_rng(2022)
    directions = rng.normal(size=(3, 61))
    directions /= np.linalg.norm(directions, axis=0)
    bvecs = np.concatenate([np.zeros((3, 2)), directions], axis=1)
    bvals = np.concatenate([[0, 5], np.full(40, 1000.0), [1031.0], np.full(20, 2000.0)])
    bvals[2:5] = [990.0, 1010.0, 1030.0]
    dmri = rng.random((13, 12, 21, 63)) * 3000.0 + 50.0  # float64
    mask = np.zeros((13, 12, 21), np.int8)
    mask[2:10, 3:9, 4:15] = 1
    mask[12, 0, 20] = 1  # a lone voxel in a corner patch
    np.savez(work / "arrays.npz", dmri=dmri, bvecs=bvecs, bvals=bvals, mask=mask)
    save_tfrecord_data(dmri, bvecs, bvals, mask, work / "ours.tfrecord")
    run_original(original_python, ORIGINAL_SIDE, str(work))
    return work, dict(np.load(work / "arrays.npz")), dict(np.load(work / "original_out.npz"))


def test_file_written_by_original_reads_identically(exchange):
    work, src, _ = exchange
    loaded = load_tfrecord_data(work / "original.tfrecord")
    assert loaded.dmri.tobytes() == src["dmri"].astype(np.float32).tobytes()
    np.testing.assert_array_equal(loaded.bvecs, src["bvecs"].astype(np.float32))
    np.testing.assert_array_equal(loaded.bvals, src["bvals"].astype(np.float32))
    np.testing.assert_array_equal(loaded.mask, src["mask"])
    ours = load_tfrecord_data(work / "ours.tfrecord")
    for mine, theirs in zip(ours, loaded):
        assert mine.dtype == theirs.dtype and mine.tobytes() == theirs.tobytes()


def test_file_written_here_reads_identically_in_original(exchange):
    _, src, original = exchange
    assert original["read_dmri"].dtype == np.float32
    assert original["read_dmri"].tobytes() == src["dmri"].astype(np.float32).tobytes()
    np.testing.assert_array_equal(original["read_bvec"], src["bvecs"].astype(np.float32))
    np.testing.assert_array_equal(original["read_bval"], src["bvals"].astype(np.float32))
    assert original["read_mask"].dtype == np.int8
    np.testing.assert_array_equal(original["read_mask"], src["mask"])


@pytest.mark.parametrize("name, norm", [("val", False), ("valnorm", True)])
def test_validation_pipeline_matches_original(exchange, name, norm):
    work, _, original = exchange
    batches = list(TrainingProcessor([1000, 2000], 6, norm=norm).load_data([work / "ours.tfrecord"], validation=True))
    ours = [np.concatenate([b[0][n].numpy() for b in batches]) for n in range(3)]
    ours.append(np.concatenate([b[1].numpy() for b in batches]))
    assert ours[0].shape[0] > 0
    for key, mine in zip(["context", "bvec_in", "bvec_out", "target"], ours):
        theirs = original[f"{name}_{key}"]
        assert mine.shape == theirs.shape, key
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=0, err_msg=key)


def test_direction_sampler_matches_original(exchange):
    _, src, original = exchange
    shell = np.abs(src["bvals"] - 1000) <= 30
    np.testing.assert_array_equal(farthest_point_order(src["bvecs"][:, shell], 6, 10, rng=None), original["order"])
