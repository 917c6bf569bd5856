"""The training and validation datasets of one training run, from TFRecord files.

Both use the original's pipeline (:class:`dmri_rcnn.core.processing.TrainingProcessor`: shell filter,
direction subsets, per-shell scaling, 10³ patches). The training data are read from
:data:`INTERLEAVED_FILES` files at a time, one example from each in turn, in a file order shuffled from
the seed every epoch (a subject's parts are thousands of examples, so files read one after the other
would leave a few subjects in each shuffle buffer); then shuffled and, with ``steps_per_epoch``,
repeated. The validation data are the same batches every epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

from dmri_rcnn.training.config import TrainingConfig
from dmri_rcnn.types import PathLike

#: Training files read at once (each holds one part of a subject, a few hundred MB in memory at HCP size).
INTERLEAVED_FILES = 8


def data_seed(config: TrainingConfig, resumed_from: int) -> int:
    """Seed of the training pipeline; reseeded at the resume point so resumed epochs do not replay the first batches."""
    return config.seed + 1000 * resumed_from


def build_datasets(
    config: TrainingConfig,
    train_records: Sequence[PathLike],
    validation_records: Sequence[PathLike],
    resumed_from: int = 0,
    replicas: int = 1,
):
    """``(train_data, validation_data)`` ``tf.data.Dataset`` s of ``((context, context_bvecs, target_bvecs), targets)``.

    Parameters
    ----------
    config : the training configuration (shells, q_in, q_out, batch size, seed, sampler, loss). The signal
        is scaled as ``config.spec.scaling`` says: by the shell's constant, or (``"percentile"``, fine-tuning
        the published ``all_norm``) by each subject's 99th percentile of the shell in the mask. The
        b-vectors are encoded as ``config.spec.q_encoding`` says, and a cross-shell model
        (``config.spec.target_shells``) is given targets of each target shell.
    train_records, validation_records : TFRecord files (``save_tfrecord_data`` schema).
    resumed_from : completed epochs before this run (0 = a fresh training).
    replicas : devices training at once: batches are global, ``config.batch_size × replicas`` examples,
        which the distribution strategy splits among its devices.

    Returns
    -------
    Training batches of ``config.batch_size × replicas`` examples (infinite when ``config.steps_per_epoch``
    is set) and validation batches as large (at most ``config.validation_steps``). With
    ``loss="mae_in_mask"`` the targets carry the brain mask as a last slot, (B, q_out + 1, 10, 10, 10)
    (on several devices, each voxel's weight: :func:`global_mask_weights`).
    """
    # lazy: TensorFlow loads only when a model is built or trained
    from dmri_rcnn.core.processing import TrainingProcessor

    target_mask = config.loss == "mae_in_mask"
    percentile = config.spec.scaling == "percentile"
    options = dict(
        q_out=config.q_out, antipodal=config.antipodal, target_mask=target_mask, norm=percentile,
        q_encoding=config.spec.q_encoding, target_shells=config.spec.target_shells,
    )
    shells = list(config.shells)
    processor = TrainingProcessor(shells, config.q_in, seed=data_seed(config, resumed_from), **options)
    validation_processor = TrainingProcessor(shells, config.q_in, seed=config.seed, **options)
    batch_size = config.batch_size * int(replicas)
    train_data = processor.load_data(
        list(map(str, train_records)), batch_size=batch_size, buffer_size=config.shuffle_buffer,
        interleave=INTERLEAVED_FILES,
    )
    validation_data = validation_processor.load_data(
        list(map(str, validation_records)), validation=True, batch_size=batch_size
    )
    if target_mask and replicas > 1:
        train_data = train_data.map(global_mask_weights)
        validation_data = validation_data.map(global_mask_weights)
    if config.steps_per_epoch:
        train_data = train_data.repeat()
    if config.validation_steps:
        validation_data = validation_data.take(config.validation_steps)
    return train_data, validation_data


def global_mask_weights(inputs, targets):
    """A global batch's targets with each mask voxel's weight in the batch's masked mean as the last slot.

    Parameters
    ----------
    targets : (B, q_out + 1, m, n, o): the target signal, then the brain mask (1/0).

    Returns
    -------
    ``(inputs, targets)`` with the mask slot ``mask / max(q_out × mask voxels of the batch, 1)``. Split
    among devices, each device's :func:`~dmri_rcnn.training.masked_mean_absolute_error` (whose weights
    sum to at most 1 there) is its part of the whole batch's masked MAE, and the parts add up to it.
    """
    # lazy: TensorFlow loads only when a model is built or trained
    import tensorflow as tf

    signal, mask = targets[:, :-1], targets[:, -1:]
    count = tf.reduce_sum(mask) * tf.cast(tf.shape(signal)[1], mask.dtype)
    return inputs, tf.concat([signal, mask / tf.maximum(count, 1.0)], axis=1)

