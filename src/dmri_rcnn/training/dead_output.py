"""Stop a training whose network has gone silent: an output layer that gives zero everywhere.

The network's last layer is a ReLU (the original's architecture, kept so that the published weights mean
what they meant). If a large early step pushes every one of its inputs below zero, it outputs 0 for every
voxel, no gradient reaches the layers before it, and the training can never recover: the loss stays at
the loss of predicting nothing, epoch after epoch. Seen with the high learning rates of the CPU configs,
most often for cross-shell models, whose b = 2000 and 3000 targets are small numbers on the context
shell's scale. :func:`dead_output_callback` checks one validation batch after every epoch and ends such a
training after :data:`DEAD_OUTPUT_EPOCHS` silent epochs in a row instead of letting it run its course.
"""

from __future__ import annotations

import shutil

import numpy as np

from dmri_rcnn.errors import TrainingCollapsed

#: Consecutive epochs of an all-zero output after which a training is stopped.
DEAD_OUTPUT_EPOCHS = 3


def dead_output_callback(validation_data, title: str, checkpoint_dir=None, patience: int = DEAD_OUTPUT_EPOCHS):
    """A Keras callback raising :class:`dmri_rcnn.errors.TrainingCollapsed` once the model's prediction of
    the first validation batch has been exactly zero after ``patience`` epochs in a row (a model that
    answers again in between starts the count anew). ``checkpoint_dir`` is removed first, so that a rerun
    does not resume the dead network."""
    # lazy: TensorFlow loads only when a model is built or trained
    import keras

    class DeadOutput(keras.callbacks.Callback):
        """Count the epochs after which the output is zero for every voxel of one validation batch."""

        def __init__(self):
            super().__init__()
            self.inputs = None
            self.silent_epochs = []

        def on_epoch_end(self, epoch, logs=None):
            if self.inputs is None:
                self.inputs = next(iter(validation_data))[0]
            silent = not np.any(np.asarray(self.model.predict_on_batch(self.inputs)))
            self.silent_epochs = self.silent_epochs + [epoch + 1] if silent else []
            if len(self.silent_epochs) >= patience:
                first, last = self.silent_epochs[0], self.silent_epochs[-1]
                if checkpoint_dir is not None:
                    shutil.rmtree(checkpoint_dir, ignore_errors=True)
                raise TrainingCollapsed(
                    f"{title or 'the model'}: its output has been zero for every voxel after epochs {first}-{last} "
                    "(the final ReLU layer died, and no gradient can revive it); train it with another "
                    "training.seed or a lower training.learning_rate"
                )

    return DeadOutput()
