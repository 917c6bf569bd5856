"""Training of one dMRI-RCNN model: the compiled model, the loss, and the training run.

:func:`train_model` builds a 1D or 3D model from a :class:`~dmri_rcnn.training.config.TrainingConfig`,
feeds it the original's training pipeline (:mod:`dmri_rcnn.training.dataset`), and after every epoch
commits a checkpoint (:mod:`dmri_rcnn.training.checkpoint`), so a run killed at any moment resumes, on
the next call with the same configuration and records, from the last committed epoch. Given several
devices it trains on all of them at once (:mod:`dmri_rcnn.training.devices`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Sequence

from dmri_rcnn.core.model_spec import check_weights, write_model_spec
from dmri_rcnn.core.precision import choose_precision, configure_devices
from dmri_rcnn.core.processing import qspace
from dmri_rcnn.core.weights import load_model_weights
from dmri_rcnn.errors import InputError
from dmri_rcnn.training.checkpoint import (
    epoch_checkpoint_callback,
    new_state,
    read_checkpoint_state,
    restore_optimizer,
    settings_fingerprint,
    write_history,
)
from dmri_rcnn.training.config import LOSSES, LR_SCHEDULES, TrainingConfig, record_identity
from dmri_rcnn.training.dataset import build_datasets
from dmri_rcnn.training.devices import Devices, training_strategy
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

log = logging.getLogger(__name__)

def configure_threads(threads: int) -> None:
    """Limit TensorFlow to ``threads`` CPU threads (call before any TensorFlow work)."""
    # lazy: TensorFlow loads only when a model is built or trained
    import tensorflow as tf

    threads = max(1, int(threads))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:  # already initialised: keep TensorFlow's choice
        log.warning("TensorFlow already initialised; thread limit %d not applied", threads)


def list_tfrecords(folders: Sequence[PathLike] | PathLike) -> list[Path]:
    """All ``*.tfrecord`` files in the given folders (sorted, so the order is reproducible)."""
    if isinstance(folders, (str, os.PathLike)):
        folders = [folders]
    records = []
    for folder in folders:
        found = sorted(Path(folder).glob("*.tfrecord"))
        if not found:
            raise InputError(f"{folder}: no .tfrecord files; expected the output of make_tfrecords")
        records.extend(found)
    return records


#: With ``"cosine"``, the rate decays from ``learning_rate`` to this fraction of it at the last step.
COSINE_FINAL_FRACTION = 0.02


def masked_mean_absolute_error(y_true, y_pred):
    """MAE over the brain voxels only.

    Parameters
    ----------
    y_true : (B, q_out + 1, m, n, o): the target signal, then the patch's brain mask (1/0) as the last
        slot (``TrainingProcessor(..., target_mask=True)``). A global batch split among devices carries
        each mask voxel's weight in the whole batch's mean instead
        (:func:`dmri_rcnn.training.dataset.global_mask_weights`): each device's loss is then its share
        of the global batch's loss, as the devices' gradients are summed.
    y_pred : (B, q_out, m, n, o) predicted signal.

    Returns
    -------
    Scalar: mean of ``|y_true - y_pred|`` over every (example, direction, voxel) inside the mask
    (0 for a batch without brain voxels).
    """
    # lazy: TensorFlow loads only when a model is built or trained
    import keras.ops as ops

    target, mask = y_true[:, :-1], y_true[:, -1:]
    weights = ops.broadcast_to(mask, ops.shape(target))
    total = ops.sum(ops.abs(target - y_pred) * weights)
    return total / ops.maximum(ops.sum(weights), 1.0)


def build_model(
    model_dim: int,
    width: float = 1.0,
    learning_rate: float = 1e-3,
    loss: str = "mae",
    lr_schedule: str = "constant",
    total_steps: int | None = None,
    min_filters: int = 1,
    precision: str = "fp32",
    jit_compile: bool | str = "auto",
    **network,
):
    """A freshly initialised, compiled 1D or 3D dMRI-RCNN (Adam).

    ``loss`` is ``"mae"`` (the paper: every voxel of the patch) or ``"mae_in_mask"``
    (:func:`masked_mean_absolute_error`, for targets carrying the mask slot). ``lr_schedule`` is
    ``"constant"`` (the paper) or ``"cosine"``: the rate falls from ``learning_rate`` along a half cosine
    to :data:`COSINE_FINAL_FRACTION` of it at ``total_steps`` (the schedule follows the optimizer's step
    counter, so a resumed training continues where it stopped). ``width`` and ``min_filters`` size the
    layers (see :func:`dmri_rcnn.core.model.get_3d_autoencoder`). ``precision`` is ``"fp32"`` (the
    paper), ``"bf16"``: the layers compute in bfloat16 (Keras ``mixed_bfloat16``) while the weights, the
    optimizer and the loss stay float32, or ``"fp16"``: float16 layers and a dynamic loss-scaling optimizer
    (resolve ``"auto"`` first with :func:`dmri_rcnn.core.precision.choose_precision`). ``jit_compile``: True compiles the training step with XLA;
    ``"auto"`` leaves the choice to Keras (XLA on a GPU, not on a CPU, where it made these models'
    steps 3-8x slower: ``bench/bench_training_config.py``). ``network``: the rest of the network's
    description, passed on to :func:`dmri_rcnn.core.model.get_autoencoder`: ``q_channels`` (numbers per
    b-vector input, :func:`dmri_rcnn.core.processing.qspace.q_channels` of the spec's q-space encoding) and
    ``output_activation`` (:attr:`dmri_rcnn.core.model_spec.ModelSpec.output_activation`).
    """
    # lazy: TensorFlow loads only when a model is built or trained
    import keras

    from dmri_rcnn.core.model import ARCHITECTURES, get_autoencoder
    from dmri_rcnn.core.model.autoencoder import loss_scaled

    if model_dim not in ARCHITECTURES:
        raise InputError(f"model_dim is {model_dim}; expected 1 or 3")
    if loss not in LOSSES:
        raise InputError(f"loss is {loss!r}; expected one of {', '.join(LOSSES)}")
    if lr_schedule not in LR_SCHEDULES:
        raise InputError(f"lr_schedule is {lr_schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")
    rate = learning_rate
    if lr_schedule == "cosine":
        if not total_steps or total_steps < 1:
            raise InputError(
                f"the cosine learning-rate schedule needs the total number of training steps; found {total_steps!r}"
                " (set steps_per_epoch)"
            )
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, int(total_steps), alpha=COSINE_FINAL_FRACTION)
    model = get_autoencoder(model_dim, weights=None, width=width, min_filters=min_filters, precision=precision,
                            **network)
    loss_function = masked_mean_absolute_error if loss == "mae_in_mask" else "mae"
    optimizer = loss_scaled(keras.optimizers.Adam(learning_rate=rate), precision)
    model.compile(optimizer=optimizer, loss=loss_function, jit_compile=jit_compile)
    return model


def synchronise_batch_statistics(model) -> None:
    """Let the model's batch normalisations take their statistics over the global batch, not each device's
    share of it (so several devices train the model one device would at the global batch)."""
    # lazy: TensorFlow loads only when a model is built or trained
    import keras

    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def build_from_spec(model, strategy, dataset) -> None:
    """Build a model made under ``strategy`` (its loss and metrics) from the shapes of ``dataset``.

    Keras would otherwise read one batch to learn them, so that the training would start on the data's
    second pass, whose batches differ from a first pass's (the pipeline draws anew on every pass).
    """
    inputs, targets = dataset.element_spec
    with strategy.scope():
        model._symbolic_build(data_batch=(inputs, targets, None))
    model._maybe_symbolic_build = lambda *args, **kwargs: None


@dataclasses.dataclass(frozen=True)
class TrainingOutputs:
    """Where one training writes.

    Attributes
    ----------
    weights : output ``.weights.h5`` with the best-validation weights; its description (architecture,
        q_in, shells, scaling) goes to the sidecar ``*.weights.json`` beside it
        (:func:`dmri_rcnn.core.model.load_trained_model` rebuilds the model from both).
    history : output TSV, one row per epoch (:data:`HISTORY_COLUMNS`; ``run`` counts resumptions).
    loss_plot : output PNG of the loss curves, or None for none.
    checkpoint_dir : folder for the per-epoch checkpoint (:mod:`dmri_rcnn.training.checkpoint`), removed
        after success; None: ``checkpoint`` beside ``weights``.
    """

    weights: PathLike
    history: PathLike
    loss_plot: PathLike | None = None
    checkpoint_dir: PathLike | None = None

    @property
    def checkpoint(self) -> Path:
        """The checkpoint folder."""
        if self.checkpoint_dir is not None:
            return Path(self.checkpoint_dir)
        return Path(self.weights).parent / "checkpoint"


def train_model(
    config: TrainingConfig,
    train_records: Sequence[PathLike],
    validation_records: Sequence[PathLike],
    outputs: TrainingOutputs,
    title: str = "",
    callbacks: Sequence | None = None,
    initial_weights: PathLike | None = None,
    devices: Devices = None,
) -> dict:
    """Train one model; resume from the checkpoint folder if an interrupted run with the same settings left one.

    Parameters
    ----------
    config : every setting of the training (:class:`TrainingConfig`).
    train_records, validation_records : TFRecord files (``save_tfrecord_data`` schema).
    outputs : the weights (with their sidecar), the history, the loss plot and the checkpoint folder
        (:class:`TrainingOutputs`). The checkpoint is resumed only if ``config`` (but ``epochs``) and the
        records' content match.
    title : the model's name, in the log and on the loss plot.
    callbacks : extra Keras callbacks, run after the checkpoint callback each epoch.
    initial_weights : fine-tune instead of training from scratch: a ``.weights.h5`` with its description
        (the published weights imported by the workflow, or another run's ``best.weights.h5``); it must
        build the network of ``config.spec`` and fit its data
        (:func:`dmri_rcnn.core.model_spec.check_weights`). The history then starts with
        epoch 0, the starting weights' validation loss (``loss`` empty); the best weights are chosen among
        the trained epochs 1..``epochs``. Its content is part of the resume fingerprint.
    devices : the devices to train on (:mod:`dmri_rcnn.training.devices`): None = every visible GPU, a
        count, or GPU indices / device names. On ``R > 1`` devices every step takes ``R × batch_size``
        examples (``batch_size`` per device) and the replica count joins the resume fingerprint; on one
        device (or none) the training is the one-device run it always was.

    Returns
    -------
    The final state: ``epoch``, ``best_epoch``, ``best_val_loss``, ``history`` (list of rows), ``settings``
    (the fingerprinted settings), ``resumed_from``.
    """
    # lazy: TensorFlow loads only when a model is built or trained
    import keras

    checkpoint_dir = outputs.checkpoint
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    choice, strategy, replicas = _precision_and_devices(config, devices, title or "training")
    settings = _run_settings(config, train_records, validation_records, choice.precision, replicas,
                             initial_weights, title)
    fingerprint = settings_fingerprint(settings)
    state = read_checkpoint_state(checkpoint_dir, fingerprint)
    resumed_from = state["epoch"] if state else 0

    keras.utils.set_random_seed(config.seed + resumed_from)
    model = _build_or_restore(config, choice.precision, strategy, replicas, state, checkpoint_dir)
    if state:
        state["run"] += 1
        log.info("resuming %s from completed epoch %d (run %d)", title, resumed_from, state["run"])
    else:
        state = new_state(fingerprint, settings)
        if initial_weights is not None:
            load_model_weights(model, initial_weights, model_dim=config.model_dim)
        log.info("training %s %s: %s", title, "from scratch" if initial_weights is None else
                 f"from {initial_weights}", settings)

    train_data, validation_data = build_datasets(config, train_records, validation_records, resumed_from, replicas)
    if strategy is not None:
        build_from_spec(model, strategy, train_data)
    if initial_weights is not None and not state["history"]:
        _record_starting_loss(model, validation_data, state)
    if resumed_from < config.epochs:
        _fit(model, config, train_data, validation_data, resumed_from,
             [epoch_checkpoint_callback(checkpoint_dir, state), *(callbacks or [])])
    if state["best_weights"] is None:
        raise RuntimeError(f"training of {title} finished without a checkpoint in {checkpoint_dir}")
    _write_outputs(dataclasses.replace(config.spec, precision=choice.precision), state, outputs, title)
    result = {**state, "resumed_from": resumed_from}
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result


def _precision_and_devices(config: TrainingConfig, devices: Devices, title: str):
    """The precision ``config`` resolves to here, and the distribution strategy (None on one device) with
    its replica count."""
    configure_devices()
    choice = choose_precision(config.precision)
    log.info("%s: %s", title, choice.describe())
    strategy, replicas = training_strategy(devices)
    if strategy is not None:
        log.info("%s: %d replicas on %s; global batch %d", title, replicas,
                 ", ".join(strategy.extended.worker_devices), config.batch_size * replicas)
    return choice, strategy, replicas


def _run_settings(config, train_records, validation_records, precision, replicas, initial_weights, title) -> dict:
    """The settings a checkpoint must match to be resumed: the config, the records' content, and what the
    run adds to them (the precision ``auto`` resolved to, several replicas, the starting weights)."""
    settings = config.fingerprint(train_records, validation_records)
    # What auto resolved to is part of the run: a checkpoint made in another precision is not resumed.
    settings["precision"] = precision
    if replicas > 1:
        # the global batch is batch_size x replicas: another number of devices trains another model
        settings["replicas"] = replicas
    if initial_weights is not None:
        check_weights(initial_weights, config.spec, f"the model to train ({title or config.spec.name})",
                      label="initial weights")
        settings["initial_weights"] = record_identity(initial_weights)
    return settings


def _build_or_restore(config, precision, strategy, replicas, state, checkpoint_dir):
    """The compiled model, with the checkpoint's weights and optimizer state when ``state`` resumes one."""
    # the model's and the optimizer's variables are created under the strategy (mirrored on its devices)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_model(
            config.model_dim,
            config.width,
            config.learning_rate,
            config.loss,
            config.lr_schedule,
            config.total_steps,
            config.min_filters,
            precision,
            q_channels=qspace.q_channels(config.spec.q_encoding),
            output_activation=config.spec.output_activation,
        )
        if replicas > 1:
            synchronise_batch_statistics(model)
        if state:
            model.optimizer.build(model.trainable_variables)  # so the weights file's optimizer slots load too
            model.load_weights(checkpoint_dir / state["last_weights"])
            restore_optimizer(model, checkpoint_dir / state["last_optimizer"])
    return model


def _record_starting_loss(model, validation_data, state: dict) -> None:
    """Where fine-tuning starts: the starting weights' validation loss, as epoch 0 of the history."""
    start_loss = float(model.evaluate(validation_data, verbose=0, return_dict=True)["loss"])
    state["history"] = [{"epoch": 0, "loss": float("nan"), "val_loss": start_loss, "seconds": 0.0, "run": 1}]
    log.info("epoch 0 (the starting weights): val_loss %.5f", start_loss)


def _fit(model, config, train_data, validation_data, initial_epoch: int, callbacks: list) -> None:
    """Train from ``initial_epoch`` to ``config.epochs``."""
    # Keras warns when it first learns the length of a finite validation set by exhausting it;
    # that is expected here (the training data repeat whenever steps_per_epoch is set).
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    model.fit(
        train_data,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=config.steps_per_epoch,
        validation_data=validation_data,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles, seeded
        verbose=0,
    )


def _write_outputs(spec, state: dict, outputs: TrainingOutputs, title: str) -> None:
    """The best weights with their description, the history and the loss plot."""
    # The description first, the weights last: a weights file never appears without its sidecar.
    write_model_spec(spec, outputs.weights)
    with atomic_path(outputs.weights) as tmp:
        shutil.copyfile(outputs.checkpoint / state["best_weights"], tmp)
    write_history(state["history"], outputs.history)
    if outputs.loss_plot is not None:
        from dmri_rcnn.plot import plot_training_history  # lazy: matplotlib loads only for the plot

        plot_training_history({title or Path(outputs.weights).parent.name: outputs.history}, path=outputs.loss_plot)
    log.info("best epoch %s (val_loss %s); weights in %s", state["best_epoch"], state["best_val_loss"],
             outputs.weights)
