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
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dmri_rcnn.core.architecture import ARCHITECTURES, OUTPUT_ACTIVATIONS
from dmri_rcnn.core.precision import precision_problem
from dmri_rcnn.core.processing.qspace import Q_ENCODINGS
from dmri_rcnn.core.processing.scaling import SCALINGS
from dmri_rcnn.core.processing.shells import SHELL_TOLERANCE
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import write_json

#: Version of the sidecar layout; a reader refuses files of a newer layout.
SPEC_FORMAT = 1
#: A model's name (:attr:`ModelSpec.name`): ``3D_b1000_q6`` (one shell) or ``3D_all_q10`` (several shells),
#: then ``_to2000_3000`` for a model predicting other shells than its context's (:attr:`ModelSpec.target_shells`)
#: and ``_bscaled`` or ``_bvalue`` for one reading b-scaled q-vectors or directions with their b-values
#: (:attr:`ModelSpec.q_encoding`).
MODEL_NAME_PATTERN = r"[13]D_(?:b\d+|all)_q\d+(?:_to\d+(?:_\d+)*)?(?:_bscaled|_bvalue)?"
#: The name suffix of each q-space encoding but the original's.
ENCODING_SUFFIXES = {"b_scaled": "_bscaled", "b_value": "_bvalue"}
#: The shells of the published combined models, and of an ``all`` name unless told otherwise.
COMBINED_SHELLS = (1000, 2000, 3000)


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
    q_encoding : what the network reads for each context and target volume
        (:func:`dmri_rcnn.core.processing.qspace.encode_q`): ``"direction"`` (the unit b-vector, the shell
        told by the signal's intensity: the original and every published model), ``"b_scaled"``
        (b-vector × b / 1000, so the input carries the b-value) or ``"b_value"`` (the unit b-vector and
        b / 1000 as a fourth input number).
    target_shells : b-values (s/mm²) a cross-shell model predicts from its context, sorted, e.g.
        ``(2000, 3000)`` for a model given b = 1000 context; the context's shell may be one of them. Empty
        (the default): each example's targets are of its context's shell, as in the original. More than
        one target shell needs ``q_encoding`` ``"b_scaled"`` or ``"b_value"`` (the network must be told which
        shell to give).
    output_activation : the last layer's activation, ``"relu"`` (the original's) or ``"softplus"`` (never
        flat: a training cannot stall at a zero output; :data:`dmri_rcnn.core.architecture.OUTPUT_ACTIVATIONS`).

    ``q_encoding``, ``target_shells`` and ``output_activation`` are written to the sidecar only when they
    differ from their defaults, so the description (and the training fingerprint) of every other model is
    as before.
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
    q_encoding: str = "direction"
    target_shells: tuple[int, ...] = ()
    output_activation: str = "relu"

    def __post_init__(self):
        # Normalise types so that a spec read from JSON equals the one that was written.
        object.__setattr__(self, "shells", tuple(int(s) for s in self.shells))
        object.__setattr__(self, "target_shells", tuple(sorted({int(s) for s in self.target_shells})))
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
        problems.append(precision_problem(self.precision))
        problems.extend(self._qspace_problems())
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            problems.append(
                f"output_activation is {self.output_activation!r}; expected one of {', '.join(OUTPUT_ACTIVATIONS)}"
            )
        problems = [problem for problem in problems if problem]
        if problems:
            raise InputError("; ".join(problems))

    def _qspace_problems(self) -> list[str]:
        problems = []
        if self.q_encoding not in Q_ENCODINGS:
            problems.append(f"q_encoding is {self.q_encoding!r}; expected one of {', '.join(Q_ENCODINGS)}")
        if any(shell <= 0 for shell in self.target_shells):
            problems.append(f"target_shells is {self.target_shells}; expected positive b-values")
        if len(self.shells) == 1 and self.target_shells == self.shells:
            problems.append(
                f"target_shells is the context's shell ({self.shells[0]}); leave it empty for a model that "
                "predicts its context's shell"
            )
        if len(self.target_shells) > 1 and self.q_encoding == "direction":
            problems.append(
                f"target_shells b={_shells(self.target_shells)} need q_encoding 'b_scaled' or 'b_value' (the "
                "network must be told which shell to predict); found 'direction'"
            )
        return problems

    def to_dict(self) -> dict:
        """The sidecar's JSON form: every field, tuples as lists; ``q_encoding``, ``target_shells`` and
        ``output_activation`` only when they differ from their defaults (so other descriptions read as before)."""
        data = asdict(self)
        data["shells"] = list(self.shells)
        data["patch_shape"] = list(self.patch_shape)
        data["target_shells"] = list(self.target_shells)
        # defaults stay out: the description of a same-shell, direction-encoded model is as it always was
        for key in ("q_encoding", "target_shells", "output_activation"):
            if getattr(self, key) == self.__dataclass_fields__[key].default:
                del data[key]
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

    @property
    def name(self) -> str:
        """``3D_b1000_q6`` for a model of one shell, ``3D_all_q10`` for one of several shells (the study's names);
        a cross-shell model adds its target shells, ``3D_b1000_q6_to2000_3000``, and a b-scaled encoding
        ``_bscaled``: ``3D_b1000_q6_to2000_3000_bscaled`` (``_bvalue`` for the ``"b_value"`` encoding;
        :data:`MODEL_NAME_PATTERN`)."""
        shells = f"b{self.shells[0]}" if len(self.shells) == 1 else "all"
        encoding = ENCODING_SUFFIXES.get(self.q_encoding, "")
        return f"{self.model_dim}D_{shells}_q{self.q_in}{_targets_suffix(self.target_shells)}{encoding}"

    @classmethod
    def from_name(cls, name: str, **fields) -> "ModelSpec":
        """The spec a name stands for: dimension, shell(s) and q_in from ``name``, the other fields from
        ``fields`` (width, min_filters, scaling, ...). An ``all`` name has ``fields["shells"]`` if given,
        else :data:`COMBINED_SHELLS`.

        The target shells and the q-space encoding are the name's (``_to2000_3000``, ``_bscaled``); given in
        ``fields`` too, they must agree with it.

        Raises
        ------
        InputError
            ``'3D_b1000' is not a model name like 3D_b1000_q6, 3D_all_q10 or 3D_b1000_q6_to2000_3000_bscaled``.
        """
        if not re.fullmatch(MODEL_NAME_PATTERN, str(name)):
            raise InputError(
                f"{name!r} is not a model name like 3D_b1000_q6, 3D_all_q10 or 3D_b1000_q6_to2000_3000_bscaled"
            )
        encoding = next((key for key, suffix in ENCODING_SUFFIXES.items() if str(name).endswith(suffix)), "direction")
        stem = str(name).removesuffix(ENCODING_SUFFIXES.get(encoding, ""))
        base, _, targets = stem.partition("_to")
        target_shells = tuple(int(s) for s in targets.split("_")) if targets else ()
        if list(target_shells) != sorted(set(target_shells)):
            raise InputError(f"{name!r}: list the target shells once each, ascending: {_targets_suffix(target_shells)}")
        named = {"q_encoding": encoding, "target_shells": target_shells}
        for key, value in named.items():
            given = fields.pop(key, value)
            if (tuple(sorted({int(s) for s in given})) if key == "target_shells" else given) != value:
                raise InputError(f"{key} {given!r} disagrees with the model name {name!r}")
        dim, shell, q_in = base.split("_")
        shells = tuple(fields.pop("shells", COMBINED_SHELLS))
        if shell != "all":
            shells = (int(shell.removeprefix("b")),)
        return cls(model_dim=int(dim.removesuffix("D")), q_in=int(q_in.removeprefix("q")), shells=shells, **named,
                   **fields)

    def layer_filters(self) -> tuple[tuple[str, int], ...]:
        """``(block, filters)`` of every weight-bearing block of the network this spec builds."""
        return ARCHITECTURES[self.model_dim].layer_filters(self.width, self.min_filters, self.lstm_size)

    def differences(self, wanted: "ModelSpec") -> list[str]:
        """How weights described by this spec fail to be ``wanted``'s model: [] when they fit.

        Compared: the network (dimension, filters of every block, patch shape, output activation) and the
        data it was trained for (q_in, scaling, q-space encoding, that every wanted shell is one it was
        trained on and every wanted target shell one it was trained to predict); not the settings that
        build it (width 1.0 with min_filters 1 or 16 builds the same layers) nor the precision (the weights
        are float32 either way). Each difference reads ``q_in 10 (found 6)``.
        """
        found = []
        if self.model_dim != wanted.model_dim:
            found.append(f"a {wanted.model_dim}D model (found {self.model_dim}D)")
        else:
            layers = [(w, f) for w, f in zip(wanted.layer_filters(), self.layer_filters()) if w != f]
            if layers:
                (block, filters), (_, other) = layers[0]
                found.append(
                    f"width {wanted.width:g}, min_filters {wanted.min_filters}: {block} with {filters} filters "
                    f"(found {other}; {len(layers)} of {len(self.layer_filters())} blocks differ)"
                )
        if self.patch_shape != wanted.patch_shape:
            found.append(f"{_shape(wanted.patch_shape)} patches (found {_shape(self.patch_shape)})")
        if self.q_in != wanted.q_in:
            found.append(f"q_in {wanted.q_in} (found {self.q_in})")
        if not set(wanted.shells) <= set(self.shells):
            found.append(f"b={_shells(wanted.shells)} (found b={_shells(self.shells)})")
        if self.scaling != wanted.scaling:
            found.append(f"{wanted.scaling} scaling (found {self.scaling})")
        if self.q_encoding != wanted.q_encoding:
            found.append(f"{wanted.q_encoding} q-encoding (found {self.q_encoding})")
        if self.output_activation != wanted.output_activation:
            found.append(f"{wanted.output_activation} output (found {self.output_activation})")
        # a cross-shell model serves any subset of its target shells; a same-shell model only same-shell use
        predicts_wanted = set(wanted.target_shells) <= set(self.target_shells) and bool(wanted.target_shells)
        if wanted.target_shells != self.target_shells and not predicts_wanted:
            found.append(f"{_targets(wanted)} (found {_targets(self)})")
        return found

    def describe(self) -> str:
        """One line for messages: ``3D model, width 0.25, min_filters 8, q_in 6, b=1000``."""
        cross_shell = f", predicting b={_shells(self.target_shells)}" if self.target_shells else ""
        encoding = f", {self.q_encoding} q-encoding" if self.q_encoding != "direction" else ""
        output = f", {self.output_activation} output" if self.output_activation != "relu" else ""
        return (
            f"{self.model_dim}D model, width {self.width:g}, min_filters {self.min_filters}, q_in {self.q_in}, "
            f"b={_shells(self.shells)}{cross_shell}, {self.scaling} scaling{encoding}{output}, trained in "
            f"{self.precision}"
        )


def _shells(shells) -> str:
    return "/".join(str(s) for s in shells)


def _targets_suffix(target_shells) -> str:
    """``_to2000_3000`` for target shells (2000, 3000); empty for none."""
    return "_to" + "_".join(str(s) for s in sorted(set(target_shells))) if target_shells else ""


def _targets(spec: ModelSpec) -> str:
    return f"targets b={_shells(spec.target_shells)}" if spec.target_shells else "same-shell targets"


def _shape(shape) -> str:
    return "x".join(str(s) for s in shape)


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


def check_weights(weights: PathLike, wanted: ModelSpec, needed_by: str, label: str = "",
                  required: bool = True) -> ModelSpec | None:
    """The description of ``weights``, checked to build ``wanted``'s network (:meth:`ModelSpec.differences`).

    The one check of whether a weights file fits a model, for the study's config, a fine-tuning's start,
    the workflow's inference and the command.

    Parameters
    ----------
    weights : a ``.weights.h5`` file (its description is the sidecar beside it, :func:`sidecar_path`).
    wanted : the model it must be.
    needed_by : who needs it, for the message: ``the study's model 3D_b1000_q6``, ``the command``.
    label : what the file is, before its path: ``--weights``, ``initial weights``.
    required : without a description, None instead of an error (the caller then decides how to build).

    Raises
    ------
    InputError
        One line naming the file, its description and what ``needed_by`` needs that it lacks, e.g.
        ``x.weights.h5: described in x.weights.json as a 1D model, width 1, ...; the study's model
        1D_b1000_q10 needs q_in 10 (found 6)``.
    """
    where = f"{label} {weights}".strip()
    found = read_model_spec(weights)
    if found is None:
        if not required:
            return None
        if not Path(weights).is_file():
            raise InputError(f"{where}: file not found; {needed_by} needs it")
        raise InputError(
            f"{where}: no description {sidecar_path(weights)} beside it, so the model it belongs to is unknown; "
            f"{needed_by} needs weights trained by this package (or imported by the workflow)"
        )
    problems = found.differences(wanted)
    if problems:
        raise InputError(
            f"{where}: described in {sidecar_path(weights)} as a {found.describe()}; {needed_by} needs "
            + "; ".join(problems)
        )
    return found


def check_target_bvals(spec: ModelSpec | None, shell: int, target_bvals, label: str = "the targets") -> None:
    """Refuse targets of a shell the model was not trained to predict from context of ``shell``.

    A same-shell model (no :attr:`ModelSpec.target_shells`; ``spec=None`` for weights without a
    description) predicts its context's shell, a cross-shell model its target shells; every target b-value
    must lie within :data:`~dmri_rcnn.core.processing.shells.SHELL_TOLERANCE` of one of them.

    Parameters
    ----------
    spec : the model's description, or None.
    shell : b-value (s/mm²) of the context.
    target_bvals : (q_out,) b-values (s/mm²) of the volumes to predict.
    label : what holds the targets, to start the message: ``-bval_out targets.bval``.

    Raises
    ------
    InputError
        One line: ``-bval_out t.bval: the model 3D_b1000_q6 predicts b=1000 from b=1000 context, not b=2000;
        predicting other shells needs a cross-shell model such as 3D_b1000_q6_to2000_bscaled``.
    """
    predicted = spec.target_shells if spec is not None and spec.target_shells else (int(shell),)
    bvals = np.unique(np.round(np.asarray(target_bvals, dtype=np.float64).ravel()))
    off = [int(b) for b in bvals if min(abs(b - p) for p in predicted) > SHELL_TOLERANCE]
    if not off:
        return
    model = f"the model {spec.name}" if spec is not None else "a model without a description"
    message = f"{label}: {model} predicts b={_shells(predicted)} from b={int(shell)} context, not b={_shells(off)}"
    if spec is None or not spec.target_shells:
        example = f"{spec.model_dim if spec else 3}D_b{int(shell)}_q{spec.q_in if spec else 6}"
        message += f"; predicting other shells needs a cross-shell model such as {example}_to{'_'.join(map(str, off))}_bscaled"
    raise InputError(message)


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
