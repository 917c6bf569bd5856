"""Original-format checkpoints made by the tests, placed like the published ones.

Random weights with non-trivial normalisation statistics (BatchNorm moving mean/variance, LayerNorm
gamma/beta away from 0/1), so that a model that skipped or mixed up a variable would predict differently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmri_rcnn.core.model import get_autoencoder
from dmri_rcnn.core.weights import PUBLISHED_WEIGHTS, save_original_checkpoint, weights_dir, weights_key


def randomise(model, seed: int) -> None:
    """Give every variable of ``model`` a random value of a plausible size.

    The rules are those of the original-side script in test_original_equivalence.py, so a seed gives
    both implementations equal values.
    """
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape = tuple(var.shape)
        name = var.name
        if name in ("kernel", "recurrent_kernel"):
            limit = np.sqrt(6.0 / np.prod(shape[:-1]))
            value = rng.uniform(-limit, limit, shape)
            if shape[-1] == 1:  # output unit: positive weights keep the final ReLU mostly active
                value = np.abs(value)
        elif name == "bias":
            value = np.full(shape, 0.1) if shape == (1,) else rng.normal(0.0, 0.1, shape)
        elif name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "beta":
            value = rng.normal(0.0, 0.2, shape)
        elif name == "moving_mean":
            value = rng.normal(0.0, 0.3, shape)
        elif name == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise AssertionError(f"unexpected variable {var.path}")
        var.assign(value.astype(np.float32))


def random_published_model(model_dim: int, seed: int):
    model = get_autoencoder(model_dim)
    randomise(model, seed)
    return model


def place_published_checkpoint(model, model_dim: int, shell, q_in: int, combined: bool = False) -> Path:
    """Write ``model`` where :func:`get_weights` looks for it under ``$DMRI_RCNN_DIR``; return the prefix."""
    prefix = weights_dir(model_dim, shell, q_in, combined) / "weights"
    save_original_checkpoint(model, prefix)
    return prefix


def serve_tree(model, server_root: Path, model_dim: int, shell, q_in: int) -> Path:
    """Lay ``model`` out as the Zenodo record of (model_dim, shell, q_in) is: ``<record>/files/weights.*``.

    Only records of one shard can be imitated (TensorFlow writes one shard here).
    """
    published = PUBLISHED_WEIGHTS[weights_key(model_dim, shell, q_in)]
    assert published.num_shards == 1, "the test server can only imitate one-shard records"
    files = server_root / str(published.record) / "files"
    save_original_checkpoint(model, files / "weights")
    assert sorted(p.name for p in files.iterdir()) == sorted(published.file_names())
    return files
