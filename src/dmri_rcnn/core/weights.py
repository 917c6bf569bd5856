"""Pre-trained weights: where they live, how they are fetched, and how they load into Keras 3.

The original package published one TensorFlow object-based checkpoint per model (``weights.index`` plus
``weights.data-0000i-of-0000N``) on Zenodo. Keras 3 cannot read that format with ``load_weights``, so
:func:`load_original_checkpoint` reads the checkpoint with ``tf.train.load_checkpoint`` and assigns every
variable by its key, ``layer_with_weights-{0 encoder, 1 decoder}/layer_with_weights-{i}/...``, where ``i``
counts the weight-bearing layers in the order the original created them. Optimizer entries are ignored.

This package's own trained weights are Keras 3 ``.weights.h5`` files (:func:`save_model_weights`).
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dmri_rcnn.core.architecture import ARCHITECTURES, model_dim_of_encoder
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

#: Where published records are fetched from; ``$DMRI_RCNN_WEIGHTS_URL`` replaces it (e.g. a mirror).
DEFAULT_BASE_URL = "https://zenodo.org/record"
CHECKPOINT_NAME = "weights"


@dataclass(frozen=True)
class PublishedWeights:
    """One published checkpoint: its Zenodo record and how many ``weights.data-*`` shards it has."""

    record: int
    num_shards: int

    def file_names(self) -> list[str]:
        """The checkpoint's files: ``weights.index`` then its ``num_shards`` data shards."""
        shards = [f"{CHECKPOINT_NAME}.data-{i:05d}-of-{self.num_shards:05d}" for i in range(self.num_shards)]
        return [f"{CHECKPOINT_NAME}.index", *shards]


#: (model_dim, shell or "all"/"all_norm", q_in) -> published checkpoint.
PUBLISHED_WEIGHTS: dict[tuple[int, int | str, int], PublishedWeights] = {
    (1, 1000, 6): PublishedWeights(6397440, 1),
    (1, 1000, 10): PublishedWeights(6397460, 2),
    (1, 1000, 30): PublishedWeights(6397466, 2),
    (1, 2000, 10): PublishedWeights(6397470, 1),
    (1, 3000, 10): PublishedWeights(6397476, 1),
    (3, 1000, 6): PublishedWeights(6397318, 2),
    (3, 1000, 10): PublishedWeights(6397392, 2),
    (3, 1000, 30): PublishedWeights(6397405, 2),
    (3, 2000, 10): PublishedWeights(6397413, 2),
    (3, 3000, 10): PublishedWeights(6397422, 2),
    (3, "all", 10): PublishedWeights(6397221, 2),
    (3, "all_norm", 10): PublishedWeights(6415106, 2),
}

#: Context sizes (q_in) with published weights.
PUBLISHED_Q_IN: tuple[int, ...] = tuple(sorted({q_in for _, _, q_in in PUBLISHED_WEIGHTS}))


def weights_root() -> Path:
    """``$DMRI_RCNN_DIR`` if set, else ``~/.dmri_rcnn`` (read at call time)."""
    return Path(os.environ.get("DMRI_RCNN_DIR") or Path.home() / ".dmri_rcnn")


def weights_key(model_dim: int, shell: int | str, q_in: int, combined: bool = False, norm: bool = False):
    """Normalise the arguments of :func:`get_weights` to a key of :data:`PUBLISHED_WEIGHTS`.

    Raises
    ------
    InputError
        If no published weights exist for the combination.
    """
    if shell in ("all", "all_norm"):
        shell_key: int | str = shell
    elif combined:
        shell_key = "all_norm" if norm else "all"
    elif norm:
        raise InputError(
            "norm=True (-n/--norm) needs combined=True (-c/--combined): the 99th-percentile scaling was only "
            "published for the combined 3D model with q_in=10"
        )
    else:
        try:
            shell_key = int(shell)
        except (TypeError, ValueError):
            raise InputError(f"unknown shell {shell!r}; expected 1000, 2000, 3000, 'all' or 'all_norm'") from None
    key = (int(model_dim), shell_key, int(q_in))
    if key not in PUBLISHED_WEIGHTS:
        available = ", ".join(
            f"{d}D {s if isinstance(s, str) else f'b{s}'} q_in={q}" for d, s, q in PUBLISHED_WEIGHTS
        )
        what = "combined" if isinstance(shell_key, str) else f"b={shell_key}"
        raise InputError(
            f"no published weights for the {model_dim}D model, {what}"
            f"{' (norm)' if shell_key == 'all_norm' else ''}, q_in={q_in}; available: {available}"
        )
    return key


def weights_dir(model_dim: int, shell: int | str, q_in: int, combined: bool = False, norm: bool = False) -> Path:
    """Folder of one checkpoint: ``<root>/{m}D_RCNN/b{shell}_{q_in}in`` or ``.../{all|all_norm}_{q_in}in``."""
    dim, shell_key, q = weights_key(model_dim, shell, q_in, combined, norm)
    leaf = f"{shell_key}_{q}in" if isinstance(shell_key, str) else f"b{shell_key}_{q}in"
    return weights_root() / f"{dim}D_RCNN" / leaf


def _complete_local_checkpoint(prefix: Path) -> bool:
    """True if ``prefix.index`` and every shard of one ``prefix.data-*-of-N`` set are present."""
    if not prefix.with_name(prefix.name + ".index").is_file():
        return False
    pattern = re.compile(re.escape(prefix.name) + r"\.data-(\d{5})-of-(\d{5})$")
    sets: dict[int, set[int]] = {}
    for path in prefix.parent.glob(prefix.name + ".data-*"):
        match = pattern.match(path.name)
        if match:
            sets.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    return any(found == set(range(total)) for total, found in sets.items())


def download_file(url: str, destination: PathLike, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``destination`` atomically, with a tqdm byte counter.

    Raises
    ------
    OSError
        On HTTP or network errors, or if fewer bytes arrive than the server announced.
    """
    destination = Path(destination)
    with atomic_path(destination) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as handle:
            expected = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    handle.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and received != expected:
            raise OSError(f"{url}: received {received} of {expected} bytes")
    return destination


def get_weights(
    model_dim: int,
    shell: int | str,
    q_in: int,
    combined: bool = False,
    norm: bool = False,
    *,
    download: bool = True,
    progress: bool = True,
) -> str:
    """Checkpoint prefix of the published weights, downloading them first if they are not on disk.

    Parameters
    ----------
    model_dim : 1 or 3
    shell : 1000, 2000 or 3000 (s/mm²); or "all" / "all_norm" as in the original package.
    q_in : number of context directions (6, 10 or 30 for b=1000; 10 otherwise).
    combined : use the model trained on all three shells (3D, q_in=10 only).
    norm : with ``combined``, the variant trained with 99th-percentile intensity scaling.
    download : fetch missing files from ``$DMRI_RCNN_WEIGHTS_URL`` (default Zenodo) if True.
    progress : show a tqdm bar per downloaded file.

    Returns
    -------
    str
        ``<dir>/weights``, to pass as ``weights=`` to :func:`dmri_rcnn.core.model.get_3d_autoencoder`.

    Raises
    ------
    InputError
        Unknown combination, or files missing and not downloadable (the message names the expected path).
    """
    key = weights_key(model_dim, shell, q_in, combined, norm)
    folder = weights_dir(model_dim, shell, q_in, combined, norm)
    prefix = folder / CHECKPOINT_NAME
    if _complete_local_checkpoint(prefix):
        return str(prefix)

    published = PUBLISHED_WEIGHTS[key]
    base_url = os.environ.get("DMRI_RCNN_WEIGHTS_URL", DEFAULT_BASE_URL).rstrip("/")
    how_to = (
        f"download weights.index and weights.data-* from https://zenodo.org/record/{published.record} into "
        f"{folder}, or run dmri_rcnn_download_all_weights.py"
    )
    if not download:
        raise InputError(f"weights not found: expected {prefix}.index and its data shards; {how_to}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in published.file_names():
        if (folder / name).is_file():
            continue
        url = f"{base_url}/{published.record}/files/{name}"
        try:
            download_file(url, folder / name, progress=progress)
        except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise InputError(f"weights not found at {folder / name} and downloading {url} failed ({reason}); {how_to}") from None
    if not _complete_local_checkpoint(prefix):
        raise InputError(f"weights incomplete: expected {prefix}.index and its data shards; {how_to}")
    return str(prefix)


# ---------------------------------------------------------------------------------------------------------
# Original TensorFlow checkpoints <-> Keras 3 models

_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_CONV_VARIABLES = ("kernel", "bias")
_BATCH_NORM_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")
_LAYER_NORM_VARIABLES = ("gamma", "beta")


def _model_dim_of(model) -> int:
    return model_dim_of_encoder(layer.name for layer in model.get_layer("encoder").layers)


def checkpoint_variable_map(model) -> list[tuple[str, object]]:
    """Pairs (original checkpoint key, Keras variable) covering every weight of ``model``.

    ``model`` is a model from :func:`dmri_rcnn.core.model.get_3d_autoencoder` or ``get_1d_autoencoder``.
    """
    arch = ARCHITECTURES[_model_dim_of(model)]
    pairs: list[tuple[str, object]] = []
    for sub_name, block, base in arch.checkpoint_keys():
        sub = model.get_layer(sub_name)
        names = {layer.name for layer in sub.layers}
        if block == "conv_lstm":
            cell = sub.get_layer("conv_lstm").cell
            for var in ("kernel", "recurrent_kernel", "bias"):
                pairs.append((f"{base}/cell/{var}", getattr(cell, var)))
            continue
        conv = sub.get_layer(f"{block}_conv")
        for var in _CONV_VARIABLES:
            pairs.append((f"{base}/conv_layer/layer/{var}", getattr(conv, var)))
        if f"{block}_norm" in names:
            norm = sub.get_layer(f"{block}_norm")
            variables = _BATCH_NORM_VARIABLES if hasattr(norm, "moving_mean") else _LAYER_NORM_VARIABLES
            for var in variables:
                pairs.append((f"{base}/norm_layer/{var}", getattr(norm, var)))
    return pairs


def _checkpoint_index(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def _resolve_prefix(path: PathLike) -> Path:
    """Accept ``.../weights``, ``.../weights.index`` or the folder holding ``weights.index``."""
    path = Path(path).expanduser()
    if path.is_dir() and _checkpoint_index(path / CHECKPOINT_NAME).is_file():
        return path / CHECKPOINT_NAME
    if path.name.endswith(".index"):
        return path.with_name(path.name[: -len(".index")])
    return path


def load_original_checkpoint(model, prefix: PathLike) -> int:
    """Load a checkpoint of the original package (or :func:`save_original_checkpoint`) into ``model``.

    Every model variable must be present with the same shape, and every model variable of the checkpoint
    must be used; optimizer entries and slots are ignored. Nothing is assigned unless all checks pass.

    Returns
    -------
    int
        Number of variables assigned.

    Raises
    ------
    InputError
        Missing checkpoint (names the expected ``.index`` path), or the first missing/mismatched variable.
    """
    # lazy: TensorFlow loads only when a model or checkpoint is touched
    import tensorflow as tf

    prefix = _resolve_prefix(prefix)
    if not _checkpoint_index(prefix).is_file():
        raise InputError(f"checkpoint not found: expected {_checkpoint_index(prefix)} and {prefix}.data-*")
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as err:
        raise InputError(f"cannot read checkpoint {prefix}: {str(err).splitlines()[0]}") from None
    shapes = reader.get_variable_to_shape_map()
    stored = {
        key[: -len(_VALUE_SUFFIX)]
        for key in shapes
        if key.startswith("layer_with_weights-") and key.endswith(_VALUE_SUFFIX) and ".OPTIMIZER_SLOT" not in key
    }
    model_dim = _model_dim_of(model)
    values = []
    for key, variable in checkpoint_variable_map(model):
        full_key = key + _VALUE_SUFFIX
        if full_key not in shapes:
            raise InputError(
                f"{prefix}: checkpoint has no variable {key} (needed for {variable.path}, shape "
                f"{tuple(variable.shape)}); is it a {model_dim}D dMRI-RCNN checkpoint?"
            )
        if tuple(shapes[full_key]) != tuple(variable.shape):
            raise InputError(
                f"{prefix}: checkpoint of another architecture: expected the {model_dim}D model's "
                f"{len(checkpoint_variable_map(model))} variables, found {len(stored)}; variable {key} has shape "
                f"{tuple(shapes[full_key])} but {variable.path} needs {tuple(variable.shape)}"
            )
        try:
            values.append((variable, reader.get_tensor(full_key)))
        except (IndexError, tf.errors.OpError, ValueError) as err:  # a truncated or damaged data shard
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(
                f"{prefix}: cannot read variable {key} from {prefix}.data-* (truncated or corrupt checkpoint: {reason})"
            ) from None
        stored.discard(key)
    if stored:
        raise InputError(
            f"{prefix}: checkpoint variable {sorted(stored)[0]} has no counterpart in the {model_dim}D model "
            f"({len(stored)} unused)"
        )
    for variable, value in values:
        variable.assign(value)
    return len(values)


def save_original_checkpoint(model, prefix: PathLike) -> str:
    """Write ``model``'s weights as a TF checkpoint with the original package's variable keys.

    The original package (legacy Keras) can load the result with ``model.load_weights(prefix)``. Files are
    written beside ``prefix`` under temporary names and renamed at the end.

    Returns
    -------
    str
        The prefix (``prefix.index`` and ``prefix.data-00000-of-00001`` exist afterwards).
    """
    # lazy: TensorFlow loads only when a model or checkpoint is touched
    import tensorflow as tf

    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    root_children: dict[str, tf.Module] = {}
    for key, variable in checkpoint_variable_map(model):
        *path, leaf = key.split("/")
        node = root_children.setdefault(path[0], tf.Module())
        for part in path[1:]:
            if not hasattr(node, part):
                setattr(node, part, tf.Module())
            node = getattr(node, part)
        setattr(node, leaf, tf.Variable(np.asarray(variable.numpy()), name=leaf))
    # The original compiles its model with Adam whose hyper-parameters are variables; storing them lets the
    # original's own load_weights(...).assert_consumed() accept the file.
    optimizer = tf.Module()
    for name, value, dtype in (
        ("_iterations", 0, tf.int64),
        ("_learning_rate", 1e-3, tf.float32),
        ("beta_1", 0.9, tf.float32),
        ("beta_2", 0.999, tf.float32),
        ("decay", 0.0, tf.float32),
        ("epsilon", 1e-7, tf.float32),
    ):
        setattr(optimizer, name, tf.Variable(value, dtype=dtype, name=name))
    root_children["optimizer"] = optimizer
    checkpoint = tf.train.Checkpoint(**root_children)
    tmp_prefix = prefix.with_name(f".{prefix.name}.tmp{os.getpid()}")
    try:
        written = Path(checkpoint.write(str(tmp_prefix)))
        for produced in sorted(written.parent.glob(written.name + ".*"), key=lambda p: p.name.endswith(".index")):
            os.replace(produced, prefix.with_name(prefix.name + produced.name[len(written.name):]))
    finally:
        for leftover in tmp_prefix.parent.glob(tmp_prefix.name + "*"):
            leftover.unlink(missing_ok=True)
    return str(prefix)


def save_model_weights(model, path: PathLike) -> Path:
    """Save ``model``'s weights to a Keras 3 ``.weights.h5`` file, atomically."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise InputError(f"{path}: weights files of this package must end in .weights.h5")
    with atomic_path(path) as tmp:
        model.save_weights(tmp)
    return path


def _weights_h5_shapes(path: Path) -> list[tuple[int, ...]]:
    """Shapes of the layer variables stored in a Keras 3 ``.weights.h5`` file, in file order."""
    # lazy: h5py only when a weights file is read
    import h5py

    shapes: list[tuple[int, ...]] = []
    try:
        with h5py.File(path, "r") as handle:
            handle["layers"].visititems(
                lambda _, item: shapes.append(tuple(item.shape)) if isinstance(item, h5py.Dataset) else None
            )
    except (OSError, KeyError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot read this .weights.h5 file (truncated or corrupt: {reason})") from None
    return shapes


def _describe(shapes) -> str:
    return f"{len(shapes)} arrays, {sum(int(np.prod(s)) for s in shapes):,} parameters"


def _architecture_of(shapes, model_dim: int) -> str:
    """Name the architecture a list of stored array shapes belongs to (the array count is width-independent)."""
    for dim in (model_dim, 4 - model_dim):
        if ARCHITECTURES[dim].stored_array_count() == len(shapes):
            return f"a {dim}D model" + (" of another width" if dim == model_dim else "")
    return "an unknown model"


def load_model_weights(model, weights: PathLike, model_dim: int | None = None):
    """Load ``weights`` into ``model``: a ``.weights.h5`` file, or an original TF checkpoint prefix.

    Raises
    ------
    InputError
        If the file is missing, unreadable, or holds another architecture (one line naming the
        architecture expected and the one found).
    """
    path = Path(weights).expanduser()
    if path.name.endswith(".weights.h5"):
        if not path.is_file():
            raise InputError(f"weights file not found: {path}")
        dim = model_dim or _model_dim_of(model)
        found = _weights_h5_shapes(path)
        expected = [tuple(int(n) for n in w.shape) for w in model.weights]
        if sorted(found) != sorted(expected):
            raise InputError(
                f"{path}: weights of another architecture: expected the {dim}D model of this width "
                f"({_describe(expected)}), found {_architecture_of(found, dim)} ({_describe(found)})"
            )
        try:
            with warnings.catch_warnings():  # Keras warns once per layer before raising; the message below says it
                warnings.simplefilter("ignore", UserWarning)
                model.load_weights(path)
        except (ValueError, OSError) as err:
            raise InputError(f"{path} does not fit the {dim}D model: {str(err).splitlines()[0]}") from None
        return model
    load_original_checkpoint(model, path)
    return model
