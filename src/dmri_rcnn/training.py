"""Training of dMRI-RCNN models with per-epoch checkpoints, resume after interruption, and history.

:func:`train_model` builds a 1D or 3D model, feeds it the original's training pipeline
(:class:`dmri_rcnn.core.processing.TrainingProcessor`), and after every epoch commits a checkpoint:
the epoch's weights (``.weights.h5``), the optimizer's state, the best-validation weights so far and the
history, followed by a small ``state.json`` written last. A run that is killed at any moment therefore
resumes, on the next call with the same settings, from the last epoch whose ``state.json`` was written.
Every file is written to a temporary name and renamed, so a kill never leaves a torn checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from dmri_rcnn.core.model_spec import ModelSpec, write_model_spec
from dmri_rcnn.errors import InputError
from dmri_rcnn.utils import atomic_path, write_json

PathLike = str | os.PathLike

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "seconds", "run")


def configure_threads(threads: int) -> None:
    """Limit TensorFlow to ``threads`` CPU threads (call before any TensorFlow work)."""
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


LOSSES = ("mae", "mae_in_mask")

#: Learning-rate schedules: the paper's constant rate, or cosine decay over the whole training.
LR_SCHEDULES = ("constant", "cosine")

#: With ``"cosine"``, the rate decays from ``learning_rate`` to this fraction of it at the last step.
COSINE_FINAL_FRACTION = 0.02


def masked_mean_absolute_error(y_true, y_pred):
    """MAE over the brain voxels only.

    Parameters
    ----------
    y_true : (B, q_out + 1, m, n, o): the target signal, then the patch's brain mask (1/0) as the last
        slot (``TrainingProcessor(..., target_mask=True)``).
    y_pred : (B, q_out, m, n, o) predicted signal.

    Returns
    -------
    Scalar: mean of ``|y_true - y_pred|`` over every (example, direction, voxel) inside the mask
    (0 for a batch without brain voxels).
    """
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
):
    """A freshly initialised, compiled 1D or 3D dMRI-RCNN (Adam).

    ``loss`` is ``"mae"`` (the paper: every voxel of the patch) or ``"mae_in_mask"``
    (:func:`masked_mean_absolute_error`, for targets carrying the mask slot). ``lr_schedule`` is
    ``"constant"`` (the paper) or ``"cosine"``: the rate falls from ``learning_rate`` along a half cosine
    to :data:`COSINE_FINAL_FRACTION` of it at ``total_steps`` (the schedule follows the optimizer's step
    counter, so a resumed training continues where it stopped). ``width`` and ``min_filters`` size the
    layers (see :func:`dmri_rcnn.core.model.get_3d_autoencoder`).
    """
    import keras

    from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder

    builders = {1: get_1d_autoencoder, 3: get_3d_autoencoder}
    if model_dim not in builders:
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
    model = builders[model_dim](weights=None, width=width, min_filters=min_filters)
    loss_function = masked_mean_absolute_error if loss == "mae_in_mask" else "mae"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=rate), loss=loss_function)
    return model


# --------------------------------------------------------------------------------------------------
# Checkpoint state
# --------------------------------------------------------------------------------------------------


def settings_fingerprint(settings: dict) -> str:
    """A short hash of the settings a checkpoint depends on (a checkpoint is only resumed if it matches)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_checkpoint_state(checkpoint_dir: PathLike, fingerprint: str) -> dict | None:
    """The committed state in ``checkpoint_dir`` if it exists and was made with the same settings."""
    path = Path(checkpoint_dir) / "state.json"
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint in %s was made with other settings; starting afresh", checkpoint_dir)
        return None
    if not (Path(checkpoint_dir) / state["last_weights"]).is_file():
        return None
    return state


def _save_optimizer(optimizer, path: Path) -> None:
    values = {f"v{index:04d}": np.asarray(variable) for index, variable in enumerate(optimizer.variables)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **values)


def _restore_optimizer(model, path: Path) -> None:
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    with np.load(path) as saved:
        values = [saved[key] for key in sorted(saved.files)]
    if len(values) != len(optimizer.variables):
        raise InputError(f"{path}: {len(values)} optimizer variables; the model's optimizer has {len(optimizer.variables)}")
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)


def write_history(history: list[dict], path: PathLike) -> None:
    """Write the per-epoch history as a TSV with columns :data:`HISTORY_COLUMNS`."""
    lines = ["\t".join(HISTORY_COLUMNS)]
    for row in history:
        lines.append("\t".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in HISTORY_COLUMNS))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def plot_loss_curve(history: list[dict], path: PathLike, title: str = "") -> None:
    """Training and validation loss per epoch, best validation epoch marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, axis = plt.subplots(figsize=(5, 3.5), dpi=120)
    axis.plot(epochs, [row["loss"] for row in history], "o-", label="training")
    val = [row["val_loss"] for row in history]
    axis.plot(epochs, val, "s-", label="validation")
    if history and np.isfinite(val).any():
        best = int(np.nanargmin(val))
        axis.plot(epochs[best], val[best], "k*", markersize=12, label=f"best (epoch {epochs[best]})")
    axis.set_xlabel("epoch")
    axis.set_ylabel("MAE (scaled signal)")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def _epoch_callback(checkpoint_dir: Path, state: dict):
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        """Commit weights, optimizer state, best weights and history after every epoch."""

        def __init__(self):
            super().__init__()
            self.state = state
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            number = epoch + 1  # Keras counts from 0; the history counts completed epochs from 1
            val_loss = float(logs.get("val_loss", np.nan))
            row = {
                "epoch": number,
                "loss": float(logs.get("loss", np.nan)),
                "val_loss": val_loss,
                "seconds": round(time.perf_counter() - self.started, 3),
                "run": self.state["run"],
            }
            previous = dict(self.state)
            last = f"epoch-{number:04d}.weights.h5"
            with atomic_path(checkpoint_dir / last) as tmp:
                self.model.save_weights(tmp)
            _save_optimizer(self.model.optimizer, checkpoint_dir / f"epoch-{number:04d}.optimizer.npz")
            best_loss = self.state["best_val_loss"]
            improved = np.isfinite(val_loss) and (best_loss is None or val_loss < best_loss)
            if improved or self.state["best_weights"] is None:
                best = f"best-{number:04d}.weights.h5"
                with atomic_path(checkpoint_dir / best) as tmp:
                    self.model.save_weights(tmp)
                self.state["best_weights"] = best
                self.state["best_epoch"] = number
                self.state["best_val_loss"] = val_loss if np.isfinite(val_loss) else None
            self.state["history"] = self.state["history"] + [row]
            self.state["epoch"] = number
            self.state["last_weights"] = last
            self.state["last_optimizer"] = f"epoch-{number:04d}.optimizer.npz"
            write_json(self.state, checkpoint_dir / "state.json")  # the commit point
            for key in ("last_weights", "last_optimizer", "best_weights"):
                stale = previous.get(key)
                if stale and stale != self.state[key]:
                    (checkpoint_dir / stale).unlink(missing_ok=True)
            log.info(
                "epoch %d: loss %.5f, val_loss %.5f, %.1f s%s",
                number,
                row["loss"],
                val_loss,
                row["seconds"],
                " (best so far)" if improved else "",
            )

    return EpochCheckpoint()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def file_digest(path: PathLike) -> str:
    """SHA-256 (first 16 hex digits) of a file's bytes: ties a checkpoint to the weights it started from."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def check_initial_weights(path: PathLike, wanted: ModelSpec) -> ModelSpec:
    """The description of ``path``; InputError naming the first field where it differs from ``wanted``."""
    from dmri_rcnn.core.model_spec import read_model_spec, sidecar_path

    if not Path(path).is_file():
        raise InputError(f"initial weights {path}: file not found")
    found = read_model_spec(path)
    if found is None:
        raise InputError(f"initial weights {path}: no description {sidecar_path(path)} beside it")
    for field in ("model_dim", "width", "min_filters", "q_in", "shells", "lstm_size", "patch_shape"):
        if getattr(found, field) != getattr(wanted, field):
            raise InputError(
                f"initial weights {path} do not fit: {field} is {getattr(found, field)} in {sidecar_path(path)}, "
                f"the model to train has {getattr(wanted, field)}"
            )
    return found


def train_model(
    model_dim: int,
    shells: Sequence[int],
    q_in: int,
    train_records: Sequence[PathLike],
    validation_records: Sequence[PathLike],
    weights_path: PathLike,
    history_path: PathLike,
    loss_plot_path: PathLike | None,
    checkpoint_dir: PathLike,
    width: float = 1.0,
    min_filters: int = 1,
    epochs: int = 10,
    steps_per_epoch: int | None = None,
    validation_steps: int | None = None,
    batch_size: int = 4,
    q_out: int = 10,
    learning_rate: float = 1e-3,
    shuffle_buffer: int = 10000,
    seed: int = 0,
    antipodal: bool = False,
    loss: str = "mae",
    lr_schedule: str = "constant",
    title: str = "",
    callbacks: Sequence | None = None,
    initial_weights: PathLike | None = None,
) -> dict:
    """Train one model; resume from ``checkpoint_dir`` if an interrupted run with the same settings left one.

    Parameters
    ----------
    model_dim : 1 (pointwise) or 3 (the 3D RCNN).
    shells : b-values (s/mm²) the model is trained on: one shell, or several for a combined model.
    q_in : context directions per example.
    train_records, validation_records : TFRecord files (``save_tfrecord_data`` schema).
    weights_path : output ``.weights.h5`` with the best-validation weights; its description (architecture,
        q_in, shells, scaling) goes to the sidecar ``*.weights.json`` beside it
        (:func:`dmri_rcnn.core.model.load_trained_model` rebuilds the model from both).
    history_path : output TSV, one row per epoch (:data:`HISTORY_COLUMNS`; ``run`` counts resumptions).
    loss_plot_path : output PNG of the loss curves (or None).
    checkpoint_dir : folder for the per-epoch checkpoint; removed after success.
    width : layer-width multiplier (1.0 = the paper's model).
    min_filters : no layer narrower than this (1 = every layer follows ``width``).
    epochs : total number of epochs (including those done before an interruption).
    steps_per_epoch : cap on batches per epoch (the training data repeat); None = one pass.
    validation_steps : cap on validation batches (the same batches every epoch); None = all.
    batch_size, q_out, learning_rate, shuffle_buffer : as in the original's training code.
    seed : seeds Keras/NumPy/TF and the data pipeline (same batches on a rerun; CPU kernels may still
        differ in the last digits).
    antipodal : draw each example's context/target directions by the angle between axes (``v`` same as
        ``-v``) instead of the original's signed arc distance (False = the original's sampler).
    loss : ``"mae"`` (the paper: every voxel of the training patches, brain or not) or ``"mae_in_mask"``
        (only voxels inside the brain mask; the training and validation losses are then masked MAEs).
    lr_schedule : ``"constant"`` (the paper) or ``"cosine"`` (decay over ``epochs * steps_per_epoch``
        steps; needs ``steps_per_epoch``), see :func:`build_model`.
    title : label for the loss plot.
    callbacks : extra Keras callbacks, run after the checkpoint callback each epoch.
    initial_weights : fine-tune instead of training from scratch: a ``.weights.h5`` with its description
        (the published weights imported by the workflow, or another run's ``best.weights.h5``); it must
        describe this model (dimension, width, min_filters, q_in, shells). The history then starts with
        epoch 0, the starting weights' validation loss (``loss`` empty); the best weights are chosen among
        the trained epochs 1..``epochs``.

    Returns
    -------
    The final state: ``epoch``, ``best_epoch``, ``best_val_loss``, ``history`` (list of rows), ``resumed_from``.
    """
    import keras

    from dmri_rcnn.core.processing import TrainingProcessor

    if epochs < 1:
        raise InputError(f"epochs is {epochs}; expected at least 1")
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "model_dim": model_dim,
        "shells": [int(s) for s in shells],
        "q_in": int(q_in),
        "width": float(width),
        "min_filters": int(min_filters),
        "steps_per_epoch": steps_per_epoch,
        "validation_steps": validation_steps,
        "batch_size": batch_size,
        "q_out": q_out,
        "learning_rate": learning_rate,
        "seed": seed,
        "antipodal": bool(antipodal),
        "loss": loss,
        "lr_schedule": lr_schedule,
        # subject folder + file name: stable across working directories, distinct across subjects
        "train_records": [f"{Path(p).parent.name}/{Path(p).name}" for p in train_records],
        "validation_records": [f"{Path(p).parent.name}/{Path(p).name}" for p in validation_records],
    }
    start_spec = None
    if initial_weights is not None:
        start_spec = check_initial_weights(
            initial_weights, ModelSpec(model_dim=model_dim, q_in=int(q_in), shells=tuple(shells), width=width,
                                       min_filters=min_filters))
        settings["initial_weights"] = file_digest(initial_weights)
    fingerprint = settings_fingerprint(settings)
    state = read_checkpoint_state(checkpoint_dir, fingerprint)
    resumed_from = state["epoch"] if state else 0

    keras.utils.set_random_seed(seed + resumed_from)
    total_steps = epochs * steps_per_epoch if steps_per_epoch else None
    model = build_model(model_dim, width, learning_rate, loss, lr_schedule, total_steps, min_filters)
    if state:
        model.optimizer.build(model.trainable_variables)  # so the weights file's optimizer slots load too
        model.load_weights(checkpoint_dir / state["last_weights"])
        _restore_optimizer(model, checkpoint_dir / state["last_optimizer"])
        state["run"] += 1
        log.info("resuming %s from completed epoch %d (run %d)", title, resumed_from, state["run"])
    else:
        state = {
            "fingerprint": fingerprint,
            "settings": settings,
            "epoch": 0,
            "run": 1,
            "best_epoch": None,
            "best_val_loss": None,
            "best_weights": None,
            "last_weights": None,
            "last_optimizer": None,
            "history": [],
        }
        if initial_weights is not None:
            from dmri_rcnn.core.weights import load_model_weights

            load_model_weights(model, initial_weights, model_dim=model_dim)
        log.info("training %s %s: %s", title, "from scratch" if initial_weights is None else
                 f"from {initial_weights}", settings)

    # Reseeding the pipeline with the resume point keeps resumed epochs from replaying the first batches.
    data_seed = seed + 1000 * resumed_from
    target_mask = loss == "mae_in_mask"
    # A model trained with 99th-percentile scaling (the published all_norm) is fine-tuned with it too.
    norm = start_spec is not None and start_spec.scaling == "percentile"
    processor = TrainingProcessor(
        shells, q_in, q_out=q_out, seed=data_seed, antipodal=antipodal, target_mask=target_mask, norm=norm
    )
    validation_processor = TrainingProcessor(
        shells, q_in, q_out=q_out, seed=seed, antipodal=antipodal, target_mask=target_mask, norm=norm
    )
    train_data = processor.load_data(list(map(str, train_records)), batch_size=batch_size, buffer_size=shuffle_buffer)
    validation_data = validation_processor.load_data(
        list(map(str, validation_records)), validation=True, batch_size=batch_size
    )
    if steps_per_epoch:
        train_data = train_data.repeat()
    if validation_steps:
        validation_data = validation_data.take(validation_steps)

    if initial_weights is not None and not state["history"]:
        # Where fine-tuning starts: the checkpoint's own validation loss, as epoch 0.
        start_loss = float(model.evaluate(validation_data, verbose=0, return_dict=True)["loss"])
        state["history"] = [{"epoch": 0, "loss": float("nan"), "val_loss": start_loss, "seconds": 0.0, "run": 1}]
        log.info("epoch 0 (the starting weights): val_loss %.5f", start_loss)
    if resumed_from < epochs:
        # Keras warns when it first learns the length of a finite validation set by exhausting it;
        # that is expected here (the training data repeat whenever steps_per_epoch is set).
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            train_data,
            epochs=epochs,
            initial_epoch=resumed_from,
            steps_per_epoch=steps_per_epoch,
            validation_data=validation_data,
            callbacks=[_epoch_callback(checkpoint_dir, state), *(callbacks or [])],
            shuffle=False,  # the pipeline shuffles, seeded
            verbose=0,
        )
    if state["best_weights"] is None:
        raise RuntimeError(f"training of {title} finished without a checkpoint in {checkpoint_dir}")

    # The description first, the weights last: a weights file never appears without its sidecar.
    scaling = start_spec.scaling if start_spec is not None else "shell"
    write_model_spec(
        ModelSpec(model_dim=model_dim, q_in=int(q_in), shells=tuple(shells), width=width, min_filters=min_filters,
                  scaling=scaling),
        weights_path,
    )
    with atomic_path(weights_path) as tmp:
        shutil.copyfile(checkpoint_dir / state["best_weights"], tmp)
    write_history(state["history"], history_path)
    if loss_plot_path is not None:
        plot_loss_curve(state["history"], loss_plot_path, title=title)
    log.info("best epoch %s (val_loss %s); weights in %s", state["best_epoch"], state["best_val_loss"], weights_path)
    result = {**state, "resumed_from": resumed_from}
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result

