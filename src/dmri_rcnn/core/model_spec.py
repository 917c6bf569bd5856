"""What a set of weights belongs to: the model description stored beside a trained model's weights.

A ``.weights.h5`` file holds numbers only; the model they fit (1D or 3D, width, ...) and the data it was
trained on (context size, shells, signal scaling) are needed to use them. Every model this package trains
is saved with a *sidecar*: ``best.weights.h5`` gets ``best.weights.json`` beside it, a small JSON object
with the fields of :class:`ModelSpec`. :func:`dmri_rcnn.core.model.load_trained_model` reads it and
rebuilds the right model; ``run_dmri_rcnn.py --weights best.weights.h5`` does the same.

This module needs neither TensorFlow nor Keras, so the workflow can read descriptions cheaply.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dmri_rcnn.core.precision import PRECISIONS
from dmri_rcnn.errors import InputError
from dmri_rcnn.utils import write_json

PathLike = str | os.PathLike

#: Version of the sidecar layout; a reader refuses files of a newer layout.
SPEC_FORMAT = 1
#: ``scaling`` values: the original's constant per shell, or the 99th percentile in the brain mask.
SCALINGS = ("shell", "percentile")


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and data settings of one trained dMRI-RCNN.

    Attributes
    ----------
    model_dim : 1 (pointwise) or 3 (the 3D RCNN).
    q_in : context directions the model was trained with.
    shells : b-values (s/mm²) it was trained on; one for a per-shell model, several for a combined one.
    width : multiplier on every filter count (1.0 = the paper's model).
    min_filters : floor of the scaled filter counts.
    lstm_size : ConvLSTM units at width 1.0 (48 in the paper).
    patch_shape : patch size in voxels (10, 10, 10).
    scaling : ``"shell"`` (signal divided by the shell's constant, 4000/3000/2000 for b=1000/2000/3000) or
        ``"percentile"`` (by the subject's 99th percentile inside the brain mask).
    precision : arithmetic the model was trained in (``"fp32"``, ``"bf16"`` or ``"fp16"``, what ``auto``
        resolved to where it was asked for); the weights are float32 either way, so this is only the
        default for inference.
    """

    model_dim: int
    q_in: int
    shells: tuple[int, ...]
    width: float = 1.0
    min_filters: int = 1
    lstm_size: int = 48
    patch_shape: tuple[int, int, int] = (10, 10, 10)
    scaling: str = "shell"
    precision: str = "fp32"
    format: int = field(default=SPEC_FORMAT)

    def __post_init__(self):
        # Normalise types so that a spec read from JSON equals the one that was written.
        object.__setattr__(self, "shells", tuple(int(s) for s in self.shells))
        object.__setattr__(self, "patch_shape", tuple(int(s) for s in self.patch_shape))
        object.__setattr__(self, "width", float(self.width))
        problems = []
        if self.model_dim not in (1, 3):
            problems.append(f"model_dim is {self.model_dim!r}; expected 1 or 3")
        if not isinstance(self.q_in, int) or self.q_in < 1:
            problems.append(f"q_in is {self.q_in!r}; expected a positive integer")
        if not self.shells:
            problems.append("shells is empty; expected at least one b-value")
        if not self.width > 0:
            problems.append(f"width is {self.width}; expected > 0")
        if not isinstance(self.min_filters, int) or self.min_filters < 1:
            problems.append(f"min_filters is {self.min_filters!r}; expected an integer >= 1")
        if not isinstance(self.lstm_size, int) or self.lstm_size < 1:
            problems.append(f"lstm_size is {self.lstm_size!r}; expected an integer >= 1")
        if len(self.patch_shape) != 3:
            problems.append(f"patch_shape is {self.patch_shape}; expected 3 sizes")
        if self.scaling not in SCALINGS:
            problems.append(f"scaling is {self.scaling!r}; expected one of {', '.join(SCALINGS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision is {self.precision!r}; expected one of {', '.join(PRECISIONS)}")
        if problems:
            raise InputError("; ".join(problems))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["shells"] = list(self.shells)
        data["patch_shape"] = list(self.patch_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict, source: str = "model description") -> "ModelSpec":
        """Build a spec from a dict (a parsed sidecar); errors name ``source`` and the bad key."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: expected a JSON object, found {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        missing = [key for key in ("model_dim", "q_in", "shells") if key not in data]
        if missing:
            raise InputError(f"{source}: missing key(s) {', '.join(missing)}")
        if int(data.get("format", SPEC_FORMAT)) > SPEC_FORMAT:
            raise InputError(
                f"{source}: description format {data['format']} is newer than this package reads ({SPEC_FORMAT}); "
                "update dmri-rcnn-study"
            )
        try:
            return cls(**data)
        except InputError as err:
            raise InputError(f"{source}: {err}") from None
        except (TypeError, ValueError) as err:
            raise InputError(f"{source}: {err}") from None

    def describe(self) -> str:
        """One line for messages: ``3D model, width 0.25, min_filters 8, q_in 6, b=1000``."""
        shells = "/".join(str(s) for s in self.shells)
        return (
            f"{self.model_dim}D model, width {self.width:g}, min_filters {self.min_filters}, q_in {self.q_in}, "
            f"b={shells}, {self.scaling} scaling, trained in {self.precision}"
        )


def sidecar_path(weights: PathLike) -> Path:
    """Where the description of ``weights`` lives: ``x.weights.h5`` -> ``x.weights.json``, else ``<path>.json``."""
    weights = Path(weights)
    if weights.name.endswith(".weights.h5"):
        return weights.with_name(weights.name[: -len(".h5")] + ".json")
    if weights.name.endswith(".index"):
        weights = weights.with_name(weights.name[: -len(".index")])
    return weights.with_name(weights.name + ".json")


def write_model_spec(spec: ModelSpec, weights: PathLike) -> Path:
    """Write ``spec`` beside ``weights`` (see :func:`sidecar_path`), atomically; return the sidecar path."""
    path = sidecar_path(weights)
    write_json(spec.to_dict(), path)
    return path


def read_model_spec(weights: PathLike) -> ModelSpec | None:
    """The description stored beside ``weights``, or None if there is none.

    Raises
    ------
    InputError
        If the sidecar exists but is not valid JSON or not a valid description (names the file).
    """
    path = sidecar_path(weights)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read the model description ({err})") from None
    return ModelSpec.from_dict(data, source=str(path))


#: The shells of the published combined models.
COMBINED_SHELLS = (1000, 2000, 3000)


def published_model_spec(model_dim: int, shell: int | str, q_in: int, combined: bool = False,
                         norm: bool = False) -> ModelSpec:
    """The description of a published checkpoint (arguments as :func:`dmri_rcnn.core.weights.get_weights`).

    Published models are full width; the combined ones were trained on b=1000/2000/3000, ``all_norm`` with
    99th-percentile scaling.
    """
    if shell in ("all", "all_norm"):
        combined, norm = True, shell == "all_norm"
    shells = COMBINED_SHELLS if combined else (int(shell),)
    return ModelSpec(model_dim=int(model_dim), q_in=int(q_in), shells=shells,
                     scaling="percentile" if norm else "shell")
