"""Per-epoch checkpoints of a training run: what is written, when it is resumed, and the history.

After every epoch :func:`epoch_checkpoint_callback` commits the epoch's weights (``.weights.h5``), the
optimizer's state (``.npz``), the best-validation weights so far and the history, each written to a
temporary name and renamed, and then a small ``state.json`` last: the commit point. A run killed at any
moment resumes from the last epoch whose ``state.json`` was written (:func:`read_checkpoint_state`), if
the checkpoint's fingerprint (settings and input records, :meth:`TrainingConfig.fingerprint`) matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path, write_json

log = logging.getLogger(__name__)

#: Columns of the history TSV: ``run`` counts the resumptions (1 = the first run).
HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "seconds", "run")


def new_state(fingerprint: str, settings: dict) -> dict:
    """The state of a training that has completed no epoch yet."""
    return {
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


def save_optimizer(optimizer, path: Path) -> None:
    """Write every optimizer variable (moments, step count) to ``path`` as ``.npz``, atomically."""
    values = {f"v{index:04d}": np.asarray(variable) for index, variable in enumerate(optimizer.variables)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **values)


def restore_optimizer(model, path: Path) -> None:
    """Load the optimizer variables written by :func:`save_optimizer` into ``model.optimizer``.

    Raises ``InputError`` when the saved and the model's optimizer have different numbers of variables.
    """
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


def epoch_checkpoint_callback(checkpoint_dir: Path, state: dict):
    """A Keras callback that commits weights, optimizer state, best weights and history after every epoch.

    ``state`` is the resumable run's record (:func:`new_state` or :func:`read_checkpoint_state`), updated in place and written to
    ``checkpoint_dir`` so that a killed run resumes from its last completed epoch.
    """
    # lazy: TensorFlow loads only when a model is built or trained
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
            save_optimizer(self.model.optimizer, checkpoint_dir / f"epoch-{number:04d}.optimizer.npz")
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
