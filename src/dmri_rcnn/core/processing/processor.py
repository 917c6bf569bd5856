"""The training input pipeline: TFRecord subjects → batches of (context, b-vectors) → target patches.

Per subject (one TFRecord file) and per requested shell, the pipeline

1. keeps the volumes with ``|b - shell| <= 30`` s/mm²;
2. groups them into ``S = q_shell // (q_in + q_out)`` disjoint (input, output) direction sets — by
   farthest-point selection with fresh random starts on every pass over the data for training, or in
   file order for validation — and drops the leftover volumes;
3. divides the signal by the shell's constant (``SHELL_SCALE``) or, with ``norm=True``, by the
   subject's 99th percentile of that shell's signal inside the mask;
4. cuts the volume into non-overlapping patches (central zero padding) and keeps those touching the
   mask;
5. emits one example per (patch, set), patch-major, shells concatenated in the order given.

A cross-shell model (``target_shells``) is given context from one shell and targets from another: for
every context shell and every target shell (the same one included), in that order, each set holds
``q_in`` context directions of the context shell and ``q_out`` target directions of the target shell,
``S = min(q_context, q_target) // (q_in + q_out)`` sets (for the same shell, the disjoint sets above),
and both are divided by the *context* shell's scale, the one inference divides and multiplies by.

For training, ``interleave=N`` reads N files at once, one example from each in turn, in a file order
shuffled on every pass, so that the shuffle buffer mixes subjects even when each file holds
thousands of examples. Examples are then shuffled (training only; buffer 10 000), batched and
prefetched. All steps are
tensor operations inside ``tf.data`` maps except the direction sampler (a small NumPy routine over
the q directions, run once per subject and shell).
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from dmri_rcnn.core.io import check_bvecs
from dmri_rcnn.core.processing.directions import farthest_point_subsets
from dmri_rcnn.core.processing.patching import extract_patches_tf
from dmri_rcnn.core.processing.qspace import Q_ENCODINGS, encode_q, q_channels
from dmri_rcnn.core.processing.scaling import percentile_scale, shell_scale
from dmri_rcnn.core.processing.shells import SHELL_TOLERANCE
from dmri_rcnn.core.processing.tfrecord import _FEATURES, parse_tfrecord_example
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike

__all__ = ["TrainingProcessor"]

_SHAPE_FEATURES = {key: _FEATURES[key] for key in ("i", "j", "k", "b", "bval", "bvec")}


class TrainingProcessor:
    """Builds the ``tf.data`` training/validation pipeline of the original dMRI-RCNN.

    Parameters
    ----------
    shells : b-values (s/mm²) to train on, e.g. ``[1000]`` or ``[1000, 2000, 3000]`` (combined model).
    q_in : number of context directions per example (6, 10 or 30 for the published weights).
    q_out : number of target directions per example.
    patch_shape : spatial patch size (m, n, o); the published models use (10, 10, 10).
    seed : integer seed for the direction sets and the shuffle; the same seed gives the same batches.
        ``None`` draws fresh randomness.
    norm : divide each subject's shell by its own 99th percentile inside the mask instead of the
        per-shell constant.
    shell_tolerance : half-width of the b-value band of a shell, s/mm².
    scales : ``{shell: divisor}`` overriding the per-shell constants (the original's ``norms``).
    percentile : percentile used with ``norm=True``.
    antipodal : choose the direction sets by the angle between axes (``v`` same as ``-v``) instead of the
        original's signed arc distance (see :mod:`dmri_rcnn.core.processing.directions`).
    target_mask : append the patch's brain mask (1 inside, 0 outside) to every target as one extra slot
        on the direction axis, so the target is (B, q_out + 1, m, n, o); for a loss restricted to the
        mask (:func:`dmri_rcnn.training.masked_mean_absolute_error`). Not in the original (False).
    target_shells : b-values (s/mm²) a cross-shell model predicts
        (:attr:`dmri_rcnn.core.model_spec.ModelSpec.target_shells`); empty (the original): each example's
        targets are of its context's shell.
    q_encoding : the model's q-space encoding (:attr:`dmri_rcnn.core.model_spec.ModelSpec.q_encoding`):
        ``"direction"`` gives the unit b-vectors (the original), ``"b_scaled"`` each b-vector times its
        b-value / 1000, ``"b_value"`` each unit b-vector and its b-value / 1000 as a fourth number
        (:func:`dmri_rcnn.core.processing.qspace.encode_q`).

    The original's keywords ``norms``, ``shell_var``, ``pcent`` and ``random_seed`` (``False``: start
    every direction subset at the lowest unused index) are accepted too.
    """

    def __init__(
        self,
        shells: Sequence[float],
        q_in: int,
        q_out: int = 10,
        patch_shape: Sequence[int] = (10, 10, 10),
        seed: int | None = None,
        norm: bool = False,
        shell_tolerance: float = SHELL_TOLERANCE,
        scales: Mapping[float, float] | None = None,
        percentile: float = 99.0,
        antipodal: bool = False,
        target_mask: bool = False,
        q_encoding: str = "direction",
        target_shells: Sequence[float] = (),
        **original_kwargs,
    ):
        unknown = set(original_kwargs) - {"norms", "shell_var", "pcent", "random_seed"}
        if unknown:
            raise TypeError(f"TrainingProcessor got unexpected keyword(s): {', '.join(sorted(unknown))}")
        scales = original_kwargs.get("norms", scales)
        shell_tolerance = float(original_kwargs.get("shell_var", shell_tolerance))
        percentile = float(original_kwargs.get("pcent", percentile))
        self.random_start = bool(original_kwargs.get("random_seed", True))

        if isinstance(shells, (int, float)):
            shells = [shells]
        self.shells = [float(s) for s in shells]
        if not self.shells:
            raise InputError("shells: expected at least one b-value")
        self.q_in, self.q_out = int(q_in), int(q_out)
        if self.q_in < 1 or self.q_out < 1:
            raise InputError(f"q_in and q_out must be positive, found q_in={q_in}, q_out={q_out}")
        self.patch_shape = tuple(int(s) for s in patch_shape)
        if len(self.patch_shape) != 3 or min(self.patch_shape) < 1:
            raise InputError(f"patch_shape: expected 3 positive sizes, found {tuple(patch_shape)}")
        self.seed = None if seed is None else int(seed)
        self.norm = bool(norm)
        self.shell_tolerance = shell_tolerance
        self.percentile = percentile
        self.antipodal = bool(antipodal)
        self.target_mask = bool(target_mask)
        if q_encoding not in Q_ENCODINGS:
            raise InputError(f"q_encoding is {q_encoding!r}; expected one of {', '.join(Q_ENCODINGS)}")
        self.q_encoding = q_encoding
        self.target_shells = [float(s) for s in target_shells]
        if any(s <= 0 for s in self.target_shells):
            raise InputError(f"target_shells: expected positive b-values, found {list(target_shells)}")
        if self.norm:
            self.scales = None
        elif scales is not None:
            missing = [s for s in self.shells if s not in {float(k) for k in scales}]
            if missing:
                raise InputError(f"scales: no divisor given for shell(s) {', '.join(f'{s:g}' for s in missing)}")
            self.scales = {float(k): float(v) for k, v in scales.items()}
        else:
            self.scales = {s: shell_scale(s) for s in self.shells}

    @property
    def set_size(self) -> int:
        """Directions used per example: ``q_in + q_out``."""
        return self.q_in + self.q_out

    # ------------------------------------------------------------------------------ public API

    def load_data(
        self,
        paths: Sequence[PathLike] | PathLike,
        validation: bool = False,
        batch_size: int = 4,
        bsize: int | None = None,
        buffer_size: int = 10000,
        run_par: bool = True,
        check_files: bool = True,
        interleave: int | None = None,
    ) -> tf.data.Dataset:
        """Build the dataset for ``model.fit``.

        Parameters
        ----------
        paths : TFRecord files written by ``save_tfrecord_data`` (one subject or octant each).
        validation : file-order direction sets and no shuffling (the original's validation mode).
        batch_size : examples per batch (``bsize`` is the original's name for it).
        buffer_size : shuffle buffer, in examples (training only).
        run_par : decode and patch subjects in parallel.
        check_files : read every file once up front so that a missing or unreadable file, a shell
            with fewer than ``q_in + q_out`` directions, or a diffusion direction that is not a unit
            vector (see :func:`dmri_rcnn.core.io.check_bvecs`) raises an InputError now rather than mid-fit.
        interleave : training only: read this many files at once, one example from each in turn, in a
            file order shuffled from the seed on every pass over the data (so each batch mixes subjects).
            None (the original): the files one after the other, in the order given.

        Returns
        -------
        tf.data.Dataset
            Elements ``((context, bvec_in, bvec_out), target)`` with shapes (B, q_in, m, n, o),
            (B, q_in, c), (B, q_out, c) and (B, q_out, m, n, o), all float32; the signal is scaled; c = 3
            numbers per b-vector, 4 under the ``"b_value"`` encoding.
        """
        if bsize is not None:
            batch_size = bsize
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files = [str(p) for p in paths]
        if not files:
            raise InputError("paths: expected at least one TFRecord file, found none")
        if check_files:
            for path in files:
                self.check_file(path)
        parallel = tf.data.AUTOTUNE if run_par else None
        # One random integer per subject and pass: new direction sets every epoch, reproducible from
        # the seed because the draw travels with its subject whatever the parallelism.
        subject_seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)
        if interleave and not validation:
            dataset = self._interleaved_examples(files, subject_seeds, int(interleave), parallel)
        else:
            records = tf.data.TFRecordDataset(files).map(parse_tfrecord_example, num_parallel_calls=parallel)
            dataset = tf.data.Dataset.zip((records, subject_seeds)).map(
                lambda record, subject_seed: self.subject_examples(record, subject_seed, validation),
                num_parallel_calls=parallel,
                deterministic=True,
            )
            dataset = dataset.unbatch()
        if not validation:
            dataset = dataset.shuffle(buffer_size, seed=self.seed, reshuffle_each_iteration=True)
        return dataset.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)

    def check_file(self, path: PathLike) -> None:
        """Raise InputError if ``path`` is not a readable subject TFRecord with enough directions per shell."""
        path = str(path)
        if not os.path.isfile(path):
            raise InputError(f"{path}: TFRecord file not found")
        try:
            headers = [tf.io.parse_single_example(r, _SHAPE_FEATURES) for r in tf.data.TFRecordDataset(path)]
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
            reason = (err.message or type(err).__name__).splitlines()[0]
            raise InputError(f"{path}: expected a dMRI TFRecord file, could not read it ({reason})") from None
        if not headers:
            raise InputError(f"{path}: TFRecord file holds no subject record")
        for header in headers:
            bvals = tf.io.parse_tensor(header["bval"], tf.float32).numpy()
            # records of other writers (the original's) may hold non-unit directions: refuse them here
            bvecs = tf.io.parse_tensor(header["bvec"], tf.float32).numpy().reshape(3, -1)
            check_bvecs(bvecs, f"{path} (bvecs)", bvals=bvals)
            for shell in dict.fromkeys(self.shells + self.target_shells):
                count = int(np.count_nonzero(np.abs(bvals - shell) <= self.shell_tolerance))
                if count < self.set_size:
                    raise InputError(
                        f"{path}: shell b={shell:g} has {count} directions (|b - {shell:g}| <= "
                        f"{self.shell_tolerance:g}); q_in + q_out = {self.set_size} are needed"
                    )

    def subject_examples(self, record: Mapping[str, tf.Tensor], subject_seed, validation: bool = False):
        """All examples of one subject (graph-compatible).

        Parameters
        ----------
        record : dict from ``parse_tfrecord_example``: ``dmri`` (i, j, k, q), ``bvec`` (3, q),
            ``bval`` (q,), ``mask`` (i, j, k).
        subject_seed : int64 scalar seeding this subject's direction sets (ignored for validation).
        validation : file-order sets instead of farthest-point sets.

        Returns
        -------
        ((context (X, q_in, m, n, o), bvec_in (X, q_in, c), bvec_out (X, q_out, c)), target (X, q_out, m, n, o))
            with X = patches touching the mask × sets, summed over shells.
        """
        dmri, bvec, bval, mask = record["dmri"], record["bvec"], record["bval"], record["mask"]
        q, m, n, o = self.set_size, *self.patch_shape
        signal_parts, bvec_parts, mask_parts = [], [], []
        if self.target_mask:
            mask_patches = extract_patches_tf(tf.cast(tf.not_equal(mask, 0), tf.float32)[..., None], mask, self.patch_shape)
            mask_patches = tf.transpose(mask_patches, [0, 4, 1, 2, 3])  # (P, 1, m, n, o)
        for position, (shell, target_shell) in enumerate(self.shell_pairs):
            in_shell, volumes = self._set_volumes(bvec, bval, (shell, target_shell), position, subject_seed, validation)
            n_sets = tf.shape(volumes)[0] // q
            shell_signal = tf.gather(dmri, volumes, axis=3) / self._scale_tensor(dmri, mask, in_shell, shell)
            patches = extract_patches_tf(shell_signal, mask, self.patch_shape)  # (P, m, n, o, S * q)
            n_patches = tf.shape(patches)[0]
            patches = tf.reshape(patches, [n_patches, m, n, o, n_sets, q])
            signal_parts.append(tf.reshape(tf.transpose(patches, [0, 4, 5, 1, 2, 3]), [-1, q, m, n, o]))
            model_bvecs = encode_q(tf.gather(bvec, volumes, axis=1), tf.gather(bval, volumes), self.q_encoding)
            channels = q_channels(self.q_encoding)
            set_bvecs = tf.transpose(tf.reshape(model_bvecs, [channels, n_sets, q]), [1, 2, 0])
            bvec_parts.append(tf.reshape(tf.tile(set_bvecs[None], [n_patches, 1, 1, 1]), [-1, q, channels]))
            if self.target_mask:  # the same mask patch for every set of a patch (patch-major, like the signal)
                mask_parts.append(tf.repeat(mask_patches, n_sets, axis=0))
        signal = tf.concat(signal_parts, axis=0)
        bvecs = tf.concat(bvec_parts, axis=0)
        context = tf.ensure_shape(signal[:, : self.q_in], [None, self.q_in, m, n, o])
        target = tf.ensure_shape(signal[:, self.q_in :], [None, self.q_out, m, n, o])
        if self.target_mask:
            target = tf.concat([target, tf.concat(mask_parts, axis=0)], axis=1)
            target = tf.ensure_shape(target, [None, self.q_out + 1, m, n, o])
        channels = q_channels(self.q_encoding)
        bvec_in = tf.ensure_shape(bvecs[:, : self.q_in], [None, self.q_in, channels])
        bvec_out = tf.ensure_shape(bvecs[:, self.q_in :], [None, self.q_out, channels])
        return (context, bvec_in, bvec_out), target

    @property
    def shell_pairs(self) -> list[tuple[float, float]]:
        """(context shell, target shell) of each group of examples, in the order they are emitted."""
        if not self.target_shells:
            return [(shell, shell) for shell in self.shells]
        return [(shell, target) for shell in self.shells for target in self.target_shells]

    # ------------------------------------------------------------------------------ internals

    def _set_volumes(self, bvec, bval, pair: tuple[float, float], position: int, subject_seed, validation: bool):
        """The context shell's volume indices and the example sets' volumes of one (context, target) shell pair.

        Returns
        -------
        in_shell : (q_context,) int64, the context shell's volumes
        volumes : (S * (q_in + q_out),) int64, set-major: each set's q_in context volumes, then its q_out
            target volumes
        """
        q = self.set_size
        in_shells = [tf.where(tf.abs(bval - shell) <= self.shell_tolerance)[:, 0] for shell in dict.fromkeys(pair)]
        for shell, shell_volumes in zip(dict.fromkeys(pair), in_shells):
            tf.debugging.assert_greater_equal(
                tf.shape(shell_volumes, out_type=tf.int64)[0],
                tf.constant(q, tf.int64),
                message=f"shell b={shell:g} has fewer than q_in + q_out = {q} directions",
            )
        in_shell, in_target = in_shells[0], in_shells[-1]
        if validation:  # file order: set k is volumes k*q .. k*q + q - 1 of each shell
            n_sets = tf.reduce_min([tf.shape(volumes, out_type=tf.int64)[0] for volumes in in_shells]) // q
            sets = tf.reshape(tf.range(n_sets * q, dtype=tf.int64), [-1, q])
        else:
            sets = tf.numpy_function(
                self._direction_sets,
                [*(tf.gather(bvec, volumes, axis=1) for volumes in in_shells), subject_seed,
                 tf.constant(position, tf.int64)],
                tf.int64,
                stateful=False,
            )
        context = tf.gather(in_shell, sets[:, : self.q_in])
        target = tf.gather(in_target, sets[:, self.q_in :])
        return in_shell, tf.reshape(tf.concat([context, target], axis=1), [-1])

    def _interleaved_examples(self, files: list[str], subject_seeds: tf.data.Dataset, cycle_length: int,
                              parallel) -> tf.data.Dataset:
        """Examples of ``cycle_length`` files at a time, one from each in turn; file order reshuffled each pass."""
        order = tf.data.Dataset.from_tensor_slices(files).shuffle(
            len(files), seed=self.seed, reshuffle_each_iteration=True
        )

        def file_examples(path, file_seed):
            records = tf.data.TFRecordDataset(path).map(parse_tfrecord_example).enumerate()
            # a file holding several records gives each its own direction sets
            return records.map(
                lambda index, record: self.subject_examples(record, tf.bitwise.bitwise_xor(file_seed, index))
            ).unbatch()

        return tf.data.Dataset.zip((order, subject_seeds)).interleave(
            file_examples,
            cycle_length=min(cycle_length, len(files)),
            block_length=1,
            num_parallel_calls=parallel,
            deterministic=True,
        )

    def _direction_sets(self, shell_bvecs: np.ndarray, *args) -> np.ndarray:
        """(S, q_in + q_out) int64 farthest-point sets (NumPy, per subject): q_in indices into the context
        shell's directions, then q_out into the target shell's.

        ``args`` is ``(subject_seed, position)`` for targets of the context's shell (disjoint sets of one
        split), or ``(target_bvecs, subject_seed, position)`` for another shell: the inputs of a split of
        the context shell and the outputs of a split of the target shell, as many sets as both have.
        """
        *target_bvecs, subject_seed, position = args
        rng = None
        if self.random_start:
            rng = np.random.default_rng([int(subject_seed) & 0xFFFFFFFFFFFFFFFF, int(position)])
        inputs, outputs = farthest_point_subsets(shell_bvecs, self.q_in, self.q_out, rng, self.antipodal)
        if target_bvecs:
            _, outputs = farthest_point_subsets(target_bvecs[0], self.q_in, self.q_out, rng, self.antipodal)
            n_sets = min(len(inputs), len(outputs))
            inputs, outputs = inputs[:n_sets], outputs[:n_sets]
        return np.concatenate([inputs, outputs], axis=1)

    def _scale_tensor(self, dmri: tf.Tensor, mask: tf.Tensor, in_shell: tf.Tensor, shell: float) -> tf.Tensor:
        if not self.norm:
            return tf.constant(self.scales[shell], tf.float32)
        inside = tf.boolean_mask(tf.gather(dmri, in_shell, axis=3), tf.not_equal(mask, 0))
        percentile = self.percentile
        scale = tf.numpy_function(
            lambda values: np.float32(percentile_scale(values, np.ones(values.shape, bool), percentile)),
            [inside],
            tf.float32,
            stateful=False,
        )
        return tf.reshape(scale, [])
