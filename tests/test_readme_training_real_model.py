"""The original README's "Training a Model" example, verbatim, with the REAL 3D RCNN and real weights files.

``get_weights(model_dim=3, shell=1000, q_in=6, combined=False)`` finds a checkpoint that this test writes
into ``$DMRI_RCNN_DIR/3D_RCNN/b1000_6in`` in the original's format, ``get_3d_autoencoder(weights)`` loads
it, and ``model.fit`` trains on TFRecords written by the data layer. The subjects are one 10x10x10 patch
with 16 directions each (one q_in=6 + q_out=10 set), so ten epochs stay cheap on 2 CPU cores.
"""

from __future__ import annotations

import numpy as np
import pytest

from dmri_rcnn.core.model import get_3d_autoencoder
from dmri_rcnn.core.processing import save_tfrecord_data
from dmri_rcnn.core.weights import save_original_checkpoint
from test_readme_data_examples import TRAINING_EXAMPLE, _run

pytestmark = pytest.mark.slow


def _write_record(path, seed):
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(3, 16))
    directions /= np.linalg.norm(directions, axis=0)
    bvecs = np.concatenate([np.zeros((3, 1)), directions], axis=1)
    bvals = np.concatenate([[0.0], np.full(16, 995.0)])
    dmri = rng.uniform(300, 3000, (10, 10, 10, 17)).astype(np.float32)
    mask = np.zeros((10, 10, 10), np.int8)
    mask[2:8, 2:8, 2:8] = 1
    save_tfrecord_data(dmri, bvecs, bvals, mask, path)


def test_training_example_with_real_model(tmp_path, monkeypatch):
    home = tmp_path / "dmri_rcnn_home"
    monkeypatch.setenv("DMRI_RCNN_DIR", str(home))
    monkeypatch.setenv("DMRI_RCNN_WEIGHTS_URL", "http://127.0.0.1:9")  # must not be needed
    pretrained = get_3d_autoencoder()
    save_original_checkpoint(pretrained, home / "3D_RCNN" / "b1000_6in" / "weights")
    for name, seed in (("train_data0", 1), ("train_data1", 2), ("val_data0", 3)):
        _write_record(tmp_path / f"{name}.tfrecord", seed)

    ns = _run(TRAINING_EXAMPLE, tmp_path)

    model = ns["model"]
    assert ns["weights"] == str(home / "3D_RCNN" / "b1000_6in" / "weights")
    assert model.count_params() == 6_833_193
    history = model.history.history
    assert len(history["loss"]) == 10 and len(history["val_loss"]) == 10
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["val_loss"]))
    # Started from the checkpoint, then moved: the first kernel differs from the pretrained one but not wildly.
    start = pretrained.get_layer("encoder").get_layer("init_conv").kernel.numpy()
    trained = model.get_layer("encoder").get_layer("init_conv").kernel.numpy()
    assert not np.array_equal(start, trained)
    assert np.max(np.abs(start - trained)) < 0.1  # 10 Adam steps of lr 1e-3 from the loaded values
