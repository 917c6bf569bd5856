"""The devices one training runs on: one (no distribution), or several through ``tf.distribute.MirroredStrategy``.

``training.devices`` (:func:`train_model`'s ``devices``) says which:

- ``None``: every GPU the job sees (``CUDA_VISIBLE_DEVICES``, or what the cluster gave the job); with one
  GPU or none the training runs as it always did, without a distribution strategy;
- a count ``N``: the first ``N`` of them;
- a list: those GPUs by index among the visible ones, or TensorFlow device names (``"/cpu:1"``, for a
  check on logical CPU devices).

With several devices each takes ``batch_size`` examples of every step: the global batch is
``batch_size × replicas``, the learning rate and the steps per epoch are unchanged, so the trained weights
differ from a one-device run's (they equal those of one device at ``batch_size × replicas``, up to float
rounding: the batch normalisations take their statistics over the global batch, and the masked loss
weighs each voxel in the global batch's mean). The number of replicas is therefore part of a checkpoint's
fingerprint: an interrupted training resumes only on as many devices.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence

from dmri_rcnn.errors import InputError

#: Devices a training runs on: all visible GPUs (None), the first N, or GPU indices / TF device names.
Devices = None | int | Sequence[int | str]


def check_devices(devices) -> Devices:
    """``devices`` if it is None, a count >= 1 or a non-empty list of GPU indices / device names; else InputError."""
    if devices is None:
        return None
    if isinstance(devices, bool) or not isinstance(devices, (int, list, tuple)):
        raise InputError(f"training.devices is {devices!r}; expected null, a number of GPUs or a list of GPU indices")
    if isinstance(devices, int):
        if devices < 1:
            raise InputError(f"training.devices is {devices}; expected at least 1 GPU (null = all visible GPUs)")
        return devices
    if not devices:
        raise InputError("training.devices is an empty list; expected GPU indices (null = all visible GPUs)")
    for item in devices:
        if isinstance(item, bool) or not isinstance(item, (int, str)) or (isinstance(item, int) and item < 0):
            raise InputError(f"training.devices lists {item!r}; expected GPU indices (0, 1, ...) or device names")
    if len(set(devices)) != len(devices):
        raise InputError(f"training.devices lists a device twice: {list(devices)}")
    return tuple(devices)


def replica_devices(devices: Devices, gpus: Sequence[str]) -> list[str]:
    """The TensorFlow device names the training's replicas run on (empty: TensorFlow's default device).

    Parameters
    ----------
    devices : the setting (see the module's docstring).
    gpus : names of the logical GPUs the job sees, in order (``/device:GPU:0``, ...).
    """
    devices = check_devices(devices)
    gpus = list(gpus)
    seen = f"the job sees {len(gpus)} GPU{'s' if len(gpus) != 1 else ''}"
    if devices is None:
        return gpus
    if isinstance(devices, int):
        if devices > len(gpus):
            raise InputError(f"training.devices is {devices}; {seen} (null = all visible GPUs)")
        return gpus[:devices]
    names = []
    for item in devices:
        if isinstance(item, str):
            names.append(item)
        elif item >= len(gpus):
            raise InputError(f"training.devices lists GPU {item}; {seen} (indices from 0)")
        else:
            names.append(gpus[item])
    return names


def training_strategy(devices: Devices = None):
    """``(strategy, replicas)`` for the devices: ``(None, 1)`` where the training runs as on one device
    (no GPU, one GPU, or the first GPU alone), else a ``tf.distribute`` strategy and its replica count
    (``MirroredStrategy`` over several devices, ``OneDeviceStrategy`` for one other than the default)."""
    # lazy: TensorFlow loads only when a model is built or trained
    import tensorflow as tf

    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    names = replica_devices(devices, gpus)
    if not names or (len(names) == 1 and gpus and names[0] == gpus[0]):
        return None, 1
    if len(names) == 1:
        return tf.distribute.OneDeviceStrategy(names[0]), 1
    return tf.distribute.MirroredStrategy(names), len(names)
