"""Training on several devices: the same history as one device at the same global batch, and resume.

The devices are two logical CPUs, made in a fresh Python process (TensorFlow fixes its devices once).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dmri_rcnn.errors import InputError
from dmri_rcnn.training.devices import check_devices, replica_devices

# One training interrupted after epoch 1 and resumed to epoch 2: on one device at batch 4, then on two
# devices at batch 2 each. Prints both histories.
SCRIPT = """
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from dmri_rcnn.training import TrainingConfig, TrainingOutputs, train_model

train, validation, out = map(Path, sys.argv[1:])


class Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def run(name, batch_size, devices, epochs, callbacks=None):
    config = TrainingConfig(model_dim=1, shells=[1000], q_in=6, width=0.05, epochs=epochs, steps_per_epoch=2,
                            validation_steps=1, batch_size=batch_size, loss="mae_in_mask", seed=7)
    folder = out / name
    outputs = TrainingOutputs(folder / "best.weights.h5", folder / "history.tsv", checkpoint_dir=folder / "checkpoint")
    return train_model(config, [train], [validation], outputs, title=name, callbacks=callbacks, devices=devices)


histories = {}
for name, batch_size, devices in (("one", 4, None), ("two", 2, ["/cpu:0", "/cpu:1"])):
    try:
        run(name, batch_size, devices, epochs=2, callbacks=[Interrupt()])
    except KeyboardInterrupt:
        pass
    state = json.loads((out / name / "checkpoint" / "state.json").read_text())
    result = run(name, batch_size, devices, epochs=2)
    histories[name] = {"resumed_from": result["resumed_from"], "replicas": state["settings"].get("replicas"),
                       "history": result["history"]}
print(json.dumps(histories))
"""


def test_two_devices_train_like_one_at_the_same_global_batch_and_resume(records, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(records[0]), str(records[1]), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    histories = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = histories["one"], histories["two"]
    assert one["resumed_from"] == two["resumed_from"] == 1
    # one device trains as it always did; two devices' checkpoints are resumed only on two devices
    assert one["replicas"] is None and two["replicas"] == 2
    assert [row["run"] for row in two["history"]] == [1, 2]
    for row_one, row_two in zip(one["history"], two["history"], strict=True):
        assert row_two["epoch"] == row_one["epoch"]
        assert row_two["loss"] == pytest.approx(row_one["loss"], rel=1e-4)
        assert row_two["val_loss"] == pytest.approx(row_one["val_loss"], rel=1e-4)


def test_devices_setting_names_visible_gpus():
    gpus = ["/device:GPU:0", "/device:GPU:1", "/device:GPU:2"]
    assert replica_devices(None, gpus) == gpus
    assert replica_devices(None, []) == []
    assert replica_devices(2, gpus) == gpus[:2]
    assert replica_devices([2, 0], gpus) == [gpus[2], gpus[0]]
    assert replica_devices(["/cpu:0", "/cpu:1"], []) == ["/cpu:0", "/cpu:1"]
    with pytest.raises(InputError, match="training.devices is 4; the job sees 3 GPUs"):
        replica_devices(4, gpus)
    with pytest.raises(InputError, match="lists GPU 3; the job sees 3 GPUs"):
        replica_devices([3], gpus)
    for bad in (0, [], [0, 0], "all", [-1], True):
        with pytest.raises(InputError, match="training.devices"):
            check_devices(bad)
