"""One training configuration: the model to train and every optimisation setting, in one frozen object.

:class:`TrainingConfig` holds a :class:`~dmri_rcnn.core.model_spec.ModelSpec` (the model) and the
``training`` and ``sampling`` settings; it is built from the workflow config
(:meth:`TrainingConfig.from_config`) or directly in Python, and is what
:func:`dmri_rcnn.training.train_model` takes. It imports neither TensorFlow nor Keras, so
``workflow/rules/common.smk`` can build it while Snakemake reads the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dmri_rcnn.core.architecture import LSTM_UNITS, PATCH_SHAPE
from dmri_rcnn.core.model_spec import ModelSpec
from dmri_rcnn.core.precision import PRECISION_REQUESTS, check_precision
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike

#: Loss functions: the paper's MAE over every patch voxel, or MAE inside the brain mask only.
LOSSES = ("mae", "mae_in_mask")
#: Learning-rate schedules: the paper's constant rate, or cosine decay over the whole training.
LR_SCHEDULES = ("constant", "cosine")
#: Arithmetic precisions of training: the paper's float32, bfloat16 or float16 layers with float32 weights
#: and loss, or ``auto`` (the fastest one the hardware runs natively: :mod:`dmri_rcnn.core.precision`).
TRAINING_PRECISIONS = PRECISION_REQUESTS
#: Keys of the ``training`` section that are not fields (the training seed is a base for each model's seed).
NOT_FIELDS = ("seed",)
#: Keys of the ``training`` section that set how a training job runs, read by its rule: its CPU threads and
#: the devices it trains on (:mod:`dmri_rcnn.training.devices`).
RUN_SETTINGS = ("threads", "devices")
#: Fields of the model a :class:`TrainingConfig` also takes one by one (they make its ``spec``).
SPEC_KEYWORDS = ("model_dim", "shells", "q_in", "width", "min_filters")


@dataclass(frozen=True, init=False)
class TrainingConfig:
    """One model's training: the model (a :class:`~dmri_rcnn.core.model_spec.ModelSpec`) and the
    optimisation and data settings (optimiser, batches, seed).

    ``TrainingConfig(spec=ModelSpec(model_dim=3, q_in=6, shells=(1000,)), epochs=100)``, or with the
    model's fields given directly: ``TrainingConfig(model_dim=3, shells=[1000], q_in=6, epochs=100)``.
    ``model_dim``, ``shells``, ``q_in``, ``width`` and ``min_filters`` read (and, given beside a spec,
    change) the spec's.

    Every field except ``epochs`` is part of the resume fingerprint (:meth:`fingerprint`): a checkpoint
    made with other values is not resumed. ``epochs`` may grow between runs to train longer.

    Attributes
    ----------
    spec : the model to train (dimension, q_in, shells, width, min_filters, scaling, ...). Its
        ``precision`` is not read: the sidecar records the one the training ran in (``precision`` below).
    epochs : total number of epochs (including those done before an interruption).
    steps_per_epoch : cap on batches per epoch (the training data then repeat); None = one pass.
    validation_steps : cap on validation batches (the same batches every epoch); None = all.
    batch_size : examples per batch (the paper's code: 4).
    q_out : target directions per example (the paper: 10).
    learning_rate : Adam's (initial) learning rate.
    shuffle_buffer : examples in the training data's shuffle buffer.
    loss : ``"mae"`` (the paper: every voxel of the patch) or ``"mae_in_mask"`` (brain voxels only).
    lr_schedule : ``"constant"`` (the paper) or ``"cosine"`` (decay over ``epochs * steps_per_epoch``
        steps; needs ``steps_per_epoch``).
    antipodal : draw context/target directions by the angle between axes (``v`` same as ``-v``) instead
        of the original's signed arc distance.
    precision : ``"fp32"`` (the paper), ``"bf16"`` (layers compute in bfloat16; weights, optimizer state
        and loss stay float32, and so do the saved weights), ``"fp16"`` (float16 layers, dynamic loss
        scaling) or ``"auto"`` (opt-in: the fastest precision native to the devices found, chosen when the
        training starts and recorded in the model's description; see :mod:`dmri_rcnn.core.precision`).
    seed : seeds Keras/NumPy/TF and the data pipeline.

    Notes
    -----
    Adding an option. An option of the model (what the network is, or the data it reads) is a field of
    :class:`~dmri_rcnn.core.model_spec.ModelSpec` (set by :func:`dmri_rcnn.study.design.model_spec` from
    the config). An option of the training:

    1. a field here, with the paper's value as its default (and a check in ``__post_init__`` if needed);
    2. read it in :meth:`from_config` if it is not in the ``training`` section (those keys map by name);
    3. the key with its default in ``workflow/schemas/config.schema.yaml`` and ``config/config.yaml``
       (``tests/test_workflow_config.py`` checks that the two agree), described in ``config/README.md``;
    4. use it where it acts (:func:`dmri_rcnn.training.build_model`, :mod:`dmri_rcnn.training.dataset`).

    It is then in the fingerprint and in the rule's params (a change retrains the model) by itself.
    A setting that does not change the trained weights (e.g. threads) belongs in the rule, not here.

    The devices a training runs on are not a field either (``training.devices``, ``train_model``'s
    ``devices``: :mod:`dmri_rcnn.training.devices`), though they change the weights: ``batch_size`` is
    per device, so ``R`` devices train with global batches of ``R × batch_size``. They belong to the
    run, like the precision ``auto`` resolves to: the replica count joins the checkpoint's fingerprint
    (a training resumes only on as many devices) but not the rule's params (giving a finished model's
    rule more GPUs does not retrain it); one device, or none, trains exactly as before.
    """

    spec: ModelSpec
    epochs: int = 10
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    batch_size: int = 4
    q_out: int = 10
    learning_rate: float = 1e-3
    shuffle_buffer: int = 10000
    loss: str = "mae"
    lr_schedule: str = "constant"
    antipodal: bool = False
    precision: str = "fp32"
    seed: int = 0

    def __init__(self, spec: ModelSpec | None = None, **settings):
        model = {key: settings.pop(key) for key in SPEC_KEYWORDS if key in settings}
        # model fields given beside a spec change it (so dataclasses.replace(config, q_in=10) works)
        spec = ModelSpec(**model) if spec is None else dataclasses.replace(spec, **model)
        fields = {field.name: field for field in dataclasses.fields(self)}
        unknown = sorted(set(settings) - set(fields))
        if unknown:
            raise TypeError(f"TrainingConfig got unexpected setting(s) {', '.join(unknown)}")
        object.__setattr__(self, "spec", spec)
        for name, field in fields.items():
            if name != "spec":
                object.__setattr__(self, name, settings.get(name, field.default))
        self.__post_init__()

    def __post_init__(self):
        # normalise types so that equal settings have equal fingerprints however they were given
        object.__setattr__(self, "learning_rate", float(self.learning_rate))
        object.__setattr__(self, "antipodal", bool(self.antipodal))
        if not isinstance(self.spec, ModelSpec):
            raise InputError(f"spec is a {type(self.spec).__name__}; expected a ModelSpec")
        if (self.spec.lstm_size, self.spec.patch_shape) != (LSTM_UNITS, PATCH_SHAPE):
            raise InputError(
                f"spec has lstm_size {self.spec.lstm_size} and patch_shape {self.spec.patch_shape}; training "
                f"builds the paper's ({LSTM_UNITS}, {PATCH_SHAPE})"
            )
        if self.epochs < 1:
            raise InputError(f"epochs is {self.epochs}; expected at least 1")
        if self.loss not in LOSSES:
            raise InputError(f"loss is {self.loss!r}; expected one of {', '.join(LOSSES)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule is {self.lr_schedule!r}; expected one of {', '.join(LR_SCHEDULES)}")
        check_precision(self.precision, TRAINING_PRECISIONS)

    model_dim = property(lambda self: self.spec.model_dim, doc="The spec's dimension (1 or 3).")
    shells = property(lambda self: self.spec.shells, doc="The spec's b-values (s/mm²).")
    q_in = property(lambda self: self.spec.q_in, doc="The spec's context directions per example.")
    width = property(lambda self: self.spec.width, doc="The spec's layer-width multiplier.")
    min_filters = property(lambda self: self.spec.min_filters, doc="The spec's floor of the filter counts.")

    @classmethod
    def from_config(cls, cfg: dict, spec: ModelSpec, seed: int) -> TrainingConfig:
        """The training of one model of the workflow's catalogue.

        Parameters
        ----------
        cfg : the workflow config (its ``training`` and ``sampling`` sections are read).
        spec : the model (:func:`dmri_rcnn.study.design.model_spec`).
        seed : the model's seed (:func:`dmri_rcnn.study.design.training_seed`).
        """
        names = {field.name for field in dataclasses.fields(cls)}
        training = {key: value for key, value in cfg["training"].items() if key in names and key not in NOT_FIELDS}
        return cls(spec=spec, antipodal=cfg.get("sampling", {}).get("antipodal", False), seed=seed, **training)

    def to_dict(self) -> dict:
        """Plain values (dicts, lists, numbers, strings): for JSON, Snakemake params and :meth:`from_dict`."""
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        values["spec"] = self.spec.to_dict()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainingConfig:
        """The settings written by :meth:`to_dict` (a checkpoint's record), with the spec rebuilt and checked."""
        values = dict(values)
        if isinstance(values.get("spec"), dict):
            values["spec"] = ModelSpec.from_dict(values["spec"], source="training settings")
        return cls(**values)

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps of the whole training (None without ``steps_per_epoch``)."""
        return self.epochs * self.steps_per_epoch if self.steps_per_epoch else None

    def fingerprint(self, train_records: Sequence[PathLike], validation_records: Sequence[PathLike]) -> dict:
        """Everything a checkpoint depends on: the settings (but ``epochs``) and the records' content.

        Records are identified by subject folder and file name (stable across working directories) and by
        their size and SHA-256, so regenerated data never resumes a checkpoint trained on the old data.
        """
        settings = self.to_dict()
        del settings["epochs"]
        # the precision the training ran in is recorded by the caller; the layout version is not a setting
        for key in ("precision", "format"):
            settings["spec"].pop(key)
        settings["train_records"] = [record_identity(p) for p in train_records]
        settings["validation_records"] = [record_identity(p) for p in validation_records]
        return settings


def record_identity(path: PathLike, chunk_bytes: int = 8 << 20) -> str:
    """``subject/file.tfrecord:<size>:<sha256 prefix>`` of one TFRecord file."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return f"{path.parent.name}/{path.name}:{path.stat().st_size}:{digest.hexdigest()[:16]}"
