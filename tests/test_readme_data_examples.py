"""The original README's "Data Pre-Processing" and "Training a Model" examples, run verbatim.

Only the ``/path/to/`` prefixes are replaced by a temporary folder holding small synthetic NIfTI
files that the test writes. In the training example the model factory (``get_weights`` /
``get_3d_autoencoder``) is a tiny stand-in with the real model's inputs and output, so that ten
epochs take seconds on 2 cores; the data half (``TrainingProcessor``, ``load_data``, ``model.fit``
on its datasets) is the real code.
"""

from __future__ import annotations

import sys
import types

import keras
import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.core import io
from dmri_rcnn.core.processing import load_tfrecord_data
from dmri_rcnn.errors import InputError

# Verbatim from the original README (dmri-rcnn 0.4.2), section "Data Pre-Processing".
PREPROCESSING_EXAMPLE = """\
import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.core.processing import save_tfrecord_data

# First load a subject into memory
dmri = io.load_nifti('/path/to/dmri/data.nii.gz')
mask = io.load_nifti('/path/to/brain/mask.nii.gz', dtype=np.int8)
bvecs = io.load_bvec('/path/to/dmri/bvecs') # bvecs & bvals should be in FSL format
bvals = io.load_bval('/path/to/dmri/bvals')

# Optionally crop image data
dmri, mask = io.autocrop_dmri(dmri, mask)

# .tfrecord format uses a maximum filesize of 2 GiB, therefore for high
# resolution dMRI data, the image may need to be split into smaller parts
# to do this use the function below.
dmri_list = io.split_image_to_octants(dmri)
mask_list = io.split_image_to_octants(mask)

# Now save data in .tfrecord format
save_tfrecord_data(dmri, bvecs, bvals, mask, '/path/to/saved/data.tfrecord')

# Alternatively save the list of image parts if dmri is too large
for i in range(len(dmri_list)):
  save_tfrecord_data(dmri_list[i], bvecs, bvals, mask_list[i], '/path/to/saved/data' + str(i) + '.tfrecord')
"""

# Verbatim from the original README, section "Training a Model".
TRAINING_EXAMPLE = """\
from dmri_rcnn.core.weights import get_weights
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder
from dmri_rcnn.core.processing import TrainingProcessor

# If we want to fine-tune the model we can load the previously obtained weights.
# In this example we'll load the weights for the 3D RCNN trained on the b = 1000
# shell and 6 q-space samples per input.
weights = get_weights(model_dim=3, shell=1000, q_in=6, combined=False)

# Now we can instantiate the pre-compiled 3D model
model = get_3d_autoencoder(weights) # Omit the weights argument to load without pre-trained weights

# Instantiate the training processor
processor = TrainingProcessor(shells=[1000], q_in=6)

# Load dataset mapping
train_data = processor.load_data(['/path/to/train_data0.tfrecord', '/path/to/train_data1.tfrecord'])
validation_data = processor.load_data(['/path/to/val_data0.tfrecord'], validation=True)

# Begin training
model.fit(train_data, epochs=10, validation_data=validation_data)
"""


def _run(example: str, root, namespace: dict | None = None) -> dict:
    namespace = {} if namespace is None else namespace
    exec(compile(example.replace("/path/to/", f"{root}/"), "<README example>", "exec"), namespace)
    return namespace


def write_subject(folder, seed: int):
    """A (16, 14, 12) b=1000 subject with 2 b0 and 34 directions, zero border, central brain mask."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(3, 34))
    directions /= np.linalg.norm(directions, axis=0)
    bvecs = np.concatenate([np.zeros((3, 2)), directions], axis=1)
    bvals = np.concatenate([[0, 0], np.full(34, 1000.0)])
    dmri = np.zeros((16, 14, 12, 36), np.int16)
    dmri[2:14, 1:13, 2:11] = rng.integers(200, 3000, size=(12, 12, 9, 36))
    mask = np.zeros((16, 14, 12), np.uint8)
    mask[3:13, 2:12, 3:10] = 1
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    (folder / "dmri").mkdir(parents=True)
    (folder / "brain").mkdir()
    nib.save(nib.Nifti1Image(dmri, affine), folder / "dmri" / "data.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), folder / "brain" / "mask.nii.gz")
    np.savetxt(folder / "dmri" / "bvecs", bvecs, fmt="%.6f")
    np.savetxt(folder / "dmri" / "bvals", bvals[None], fmt="%d")
    return dmri, mask


def test_preprocessing_example_verbatim(tmp_path):
    dmri, mask = write_subject(tmp_path, seed=0)
    ns = _run(PREPROCESSING_EXAMPLE, tmp_path)
    assert ns["dmri"].shape == (12, 12, 9, 36) and ns["mask"].shape == (12, 12, 9)  # autocrop removed the border
    saved = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert saved == ["data.tfrecord"] + [f"data{i}.tfrecord" for i in range(8)]
    record = load_tfrecord_data(tmp_path / "saved" / "data.tfrecord")
    np.testing.assert_array_equal(record.dmri, dmri[2:14, 1:13, 2:11].astype(np.float32))
    np.testing.assert_array_equal(record.mask, mask[2:14, 1:13, 2:11])
    parts = [load_tfrecord_data(tmp_path / "saved" / f"data{i}.tfrecord") for i in range(8)]
    assert io.merge_octants([p.dmri for p in parts]).tobytes() == record.dmri.tobytes()
    assert io.merge_octants([p.mask for p in parts]).tobytes() == record.mask.tobytes()


class _StandInRCNN(keras.layers.Layer):
    """Predicts each target volume as the mean context volume times a learnt function of its b-vector."""

    def build(self, input_shapes):
        self.direction_weight = self.add_weight(shape=(3, 1), initializer="zeros", name="direction_weight")
        self.bias = self.add_weight(shape=(1,), initializer="ones", name="bias")

    def call(self, context, bvec_out):
        mean_context = keras.ops.mean(context, axis=1, keepdims=True)  # (B, 1, m, n, o)
        gain = keras.ops.matmul(bvec_out, self.direction_weight) + self.bias  # (B, q_out, 1)
        return mean_context * keras.ops.reshape(gain, (-1, keras.ops.shape(gain)[1], 1, 1, 1))


def _stand_in_modules():
    def get_weights(model_dim, shell, q_in, combined=False):
        assert (model_dim, shell, q_in, combined) == (3, 1000, 6, False)
        return None

    def get_3d_autoencoder(weights=None, q_in=6, q_out=10):
        context = keras.Input((q_in, 10, 10, 10), name="dmri_in")
        bvec_in = keras.Input((q_in, 3), name="bvec_in")
        bvec_out = keras.Input((q_out, 3), name="bvec_out")
        model = keras.Model([context, bvec_in, bvec_out], _StandInRCNN()(context, bvec_out))
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
        return model

    weights = types.ModuleType("dmri_rcnn.core.weights")
    weights.get_weights = get_weights
    model = types.ModuleType("dmri_rcnn.core.model")
    model.get_3d_autoencoder = get_3d_autoencoder
    model.get_1d_autoencoder = get_3d_autoencoder
    return weights, model


def test_training_example_verbatim(tmp_path, monkeypatch):
    for name, seed in [("train_data0", 1), ("train_data1", 2), ("val_data0", 3)]:
        subject_dir = tmp_path / name
        write_subject(subject_dir, seed)
        _run(
            PREPROCESSING_EXAMPLE.replace("/path/to/saved/", f"{tmp_path}/{name}_").replace(
                "/path/to/", f"{subject_dir}/"
            ),
            tmp_path,
        )
        (tmp_path / f"{name}_data.tfrecord").rename(tmp_path / f"{name}.tfrecord")
    weights_module, model_module = _stand_in_modules()
    monkeypatch.setitem(sys.modules, "dmri_rcnn.core.weights", weights_module)
    monkeypatch.setitem(sys.modules, "dmri_rcnn.core.model", model_module)
    ns = _run(TRAINING_EXAMPLE, tmp_path)
    history = ns["model"].history.history
    assert len(history["loss"]) == 10 and len(history["val_loss"]) == 10
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["val_loss"]))
    learnt = ns["model"].layers[-1].direction_weight.numpy()
    assert np.any(learnt != 0), "fit must have updated the weights from the pipeline's batches"
    (context, bvec_in, bvec_out), target = next(iter(ns["train_data"]))
    assert context.shape == (4, 6, 10, 10, 10) and target.shape == (4, 10, 10, 10, 10)
    assert bvec_in.shape == (4, 6, 3) and bvec_out.shape == (4, 10, 3)
    # cropped (12, 12, 9) pads to a 2x2x1 patch grid, all touching the mask; 34 directions give 2 sets
    assert sum(b[1].shape[0] for b in ns["validation_data"]) == 8
    assert 0 < float(np.max(target)) <= 3000 / 4000.0


def test_preprocessing_example_reports_bad_bvecs(tmp_path):
    write_subject(tmp_path, seed=0)
    np.savetxt(tmp_path / "dmri" / "bvecs", np.ones((4, 36)))
    with pytest.raises(InputError, match="bvecs: expected b-vectors as 3 rows"):
        _run(PREPROCESSING_EXAMPLE, tmp_path)
