"""Whole-volume inference with a dMRI-RCNN: scale, pad, cut into patches, predict, stitch, rescale.

The default reproduces the original package's inference exactly: the signal is divided by ``scale``
(per-shell constant or per-subject percentile), each spatial axis is zero-padded centrally to a multiple
of 10, the volume is tiled into non-overlapping 10x10x10 patches, patches without a mask voxel are skipped
(their output is zero), and predictions are stitched back, cropped and multiplied by ``scale``. Voxels
outside the mask but inside a kept patch are predicted like any other voxel (not masked).

``overlap=True`` instead predicts patches every ``stride`` voxels and blends them with a smooth window, so
that there are no seams at patch borders.

Batches are predicted one after another and written straight into the preallocated output, so memory
does not grow with the number of patches; ``q_out_chunk`` bounds it in the number of target directions.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from dmri_rcnn.core.architecture import PATCH_SHAPE
from dmri_rcnn.core.io import check_bvecs
from dmri_rcnn.core.processing.patching import central_padding
from dmri_rcnn.core.processing.qspace import Q_ENCODINGS, encode_q
from dmri_rcnn.core.processing.scaling import shell_scale
from dmri_rcnn.errors import InputError

#: Default bound on (patch, target direction) pairs per decoder call: keeps the 3D model's working memory
#: near 1 GB whatever q_out is (84 directions x batch 4 at once needed ~3.7 GB), at the same speed.
DECODE_PAIRS = 48


def _check_inputs(dmri, bvec_in, bvec_out, mask):
    bvec_in, bvec_out = np.asarray(bvec_in, dtype=np.float32), np.asarray(bvec_out, dtype=np.float32)
    if dmri.ndim != 4:
        raise InputError(f"dmri: expected a 4D array (i, j, k, q_in), found shape {dmri.shape}")
    if mask.shape != dmri.shape[:3]:
        raise InputError(f"mask: expected spatial shape {dmri.shape[:3]} of the dMRI, found {mask.shape}")
    checked = []
    for name, bvec in (("bvec_in", bvec_in), ("bvec_out", bvec_out)):
        if bvec.ndim != 2 or bvec.shape[0] != 3:
            raise InputError(f"{name}: expected shape (3, N), found {bvec.shape}")
        # every context and target volume needs a unit direction: no b0 (zero) columns, no scaled vectors
        checked.append(check_bvecs(bvec, name, allow_b0=False).astype(np.float32))
    if bvec_in.shape[1] != dmri.shape[3]:
        raise InputError(f"bvec_in has {bvec_in.shape[1]} directions but the dMRI has {dmri.shape[3]} volumes")
    return checked


def _encoded_bvecs(bvec_in, bvec_out, bvals, q_encoding: str):
    """The model's (c, q_in) and (c, q_out) float32 inputs of the checked b-vectors under ``q_encoding``."""
    if q_encoding == "direction" or q_encoding not in Q_ENCODINGS:
        return encode_q(bvec_in, None, q_encoding), encode_q(bvec_out, None, q_encoding)
    if bvals is None or len(bvals) != 2:
        raise InputError(f"q_encoding {q_encoding!r} needs bvals=(bval_in, bval_out), one b-value per direction")
    encoded = []
    for name, bvec, bval in (("bval_in", bvec_in, bvals[0]), ("bval_out", bvec_out, bvals[1])):
        bval = np.asarray(bval, dtype=np.float32).ravel()
        if bval.shape != (bvec.shape[1],):
            raise InputError(f"{name}: expected {bvec.shape[1]} b-values (one per direction), found {bval.size}")
        encoded.append(encode_q(bvec, bval, q_encoding).astype(np.float32))
    return encoded


class _Predictor:
    """Runs a model on batches; with an encoder/decoder model the latent is computed once per batch."""

    def __init__(self, model):
        # lazy: the inputs are checked before TensorFlow loads (a fast error)
        import tensorflow as tf

        def compiled(call, keras_model):
            # One trace for every batch size and q: shapes come from the model's inputs (None = variable).
            specs = [tf.TensorSpec(tuple(t.shape), tf.float32) for t in keras_model.inputs]
            # A bf16 model (precision="bf16") computes in bfloat16; hand float32 on between the parts.
            return tf.function(lambda *args: tf.cast(call(*args), tf.float32), input_signature=specs)

        names = {layer.name for layer in model.layers}
        # bfloat16 activations take half the memory of float32 ones: twice the pairs per decoder call.
        decoder_dtype = model.get_layer("decoder").compute_dtype if "decoder" in names else model.compute_dtype
        self.pairs_per_call = DECODE_PAIRS * (2 if decoder_dtype == "bfloat16" else 1)
        if {"encoder", "decoder"} <= names:
            encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
            self._encode = compiled(lambda x, b: encoder([x, b], training=False), encoder)
            self._decode = compiled(lambda s, b: decoder([s, b], training=False), decoder)
            self._whole = None
        else:
            self._whole = compiled(lambda x, b, o: model([x, b, o], training=False), model)

    def __call__(self, images, bvec_in, bvec_out, q_out_chunk):
        """images (n, q_in, 10, 10, 10), bvec_in (n, q_in, 3), bvec_out (n, q_out, 3) -> (n, q_out, 10, 10, 10)."""
        q_out = bvec_out.shape[1]
        # Decoder memory grows with (patches x directions) per call: ~9 MB per pair for the 3D model (whole
        # command measured: 336 pairs 3.7 GB, 48 pairs 1.0 GB).
        chunk = int(q_out_chunk) if q_out_chunk else max(1, self.pairs_per_call // max(1, len(images)))
        images = np.ascontiguousarray(images, dtype=np.float32)
        bvec_in = np.ascontiguousarray(bvec_in, dtype=np.float32)
        bvec_out = np.ascontiguousarray(bvec_out, dtype=np.float32)
        latent = None if self._whole else self._encode(images, bvec_in)
        parts = []
        for start in range(0, q_out, chunk):
            targets = bvec_out[:, start : start + chunk]
            if latent is None:
                parts.append(np.asarray(self._whole(images, bvec_in, targets)))
            else:
                parts.append(np.asarray(self._decode(latent, targets)))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def blending_window(size: int = 10) -> np.ndarray:
    """1D weights ``sin²(π (t + 0.5) / size)``: smooth, largest at the centre, never zero."""
    t = np.arange(size, dtype=np.float64)
    return np.sin(np.pi * (t + 0.5) / size) ** 2


def overlap_padding(spatial_shape, stride: int, patch: int = 10) -> np.ndarray:
    """(3, 2) central padding so that patches every ``stride`` voxels cover each voxel ``patch/stride`` times.

    ``patch - stride`` extra voxels are added on each side so that border voxels are blended as well.
    """
    padding = []
    for size in spatial_shape[:3]:
        needed = size + 2 * (patch - stride)
        length = patch + math.ceil(max(needed - patch, 0) / stride) * stride
        total = length - size
        padding.append((total // 2, total - total // 2))
    return np.asarray(padding, dtype=np.int64)


@dataclass(frozen=True)
class InferenceSettings:
    """How :func:`infer` runs the model; the same numbers whatever the settings, up to float rounding.

    Attributes
    ----------
    batch_size : int
        Patches per model call.
    overlap : bool
        If True, patches every ``stride`` voxels blended with :func:`blending_window`.
    stride : int
        Patch spacing with ``overlap`` (1..10 voxels).
    q_out_chunk : int or None
        Decode at most this many target directions at once (same result up to float rounding, less
        memory). None: ``DECODE_PAIRS // batch_size`` (12 at batch size 4; twice that for a bf16 model).
    progress : bool
        Show a tqdm bar over patches.
    """

    batch_size: int = 4
    overlap: bool = False
    stride: int = 5
    q_out_chunk: int | None = None
    progress: bool = True

    def __post_init__(self):
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, found {self.batch_size}")
        if self.q_out_chunk is not None and self.q_out_chunk < 1:
            raise InputError(f"q_out_chunk must be >= 1, found {self.q_out_chunk}")
        patch = PATCH_SHAPE[0]
        if self.overlap and not 1 <= self.stride <= patch:
            raise InputError(f"stride must be between 1 and {patch}, found {self.stride}")

    @classmethod
    def with_options(cls, settings, options: dict, caller: str):
        """``settings`` (or the defaults) with the keyword ``options`` a caller passed one by one."""
        unknown = sorted(set(options) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(unknown)}")
        return dataclasses.replace(settings if settings is not None else cls(), **options)


def _divisor(shell, scale) -> float:
    if scale is None:
        if shell is None:
            raise InputError("infer: give either shell (1000, 2000, 3000) or scale")
        scale = shell_scale(shell)
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"infer: scale must be a positive number, found {scale}")
    return scale


def _patch_corners(brain: np.ndarray, step: int) -> np.ndarray:
    """(n_kept, 3) corners, in raster order (k fastest), of the patches every ``step`` voxels that hold a
    mask voxel of the padded ``brain``."""
    windows = np.lib.stride_tricks.sliding_window_view(brain, PATCH_SHAPE)[::step, ::step, ::step]
    return np.stack(np.nonzero(windows.any(axis=(3, 4, 5))), axis=1) * step


def _predict_patches(model, scaled, corners, bvec_in, bvec_out, settings: InferenceSettings):
    """Yield ``(corners (n, 3), (ii, jj, kk) voxel indices, prediction (n, 10, 10, 10, q_out))`` per batch
    of the patches of the padded, scaled ``(I, J, K, q_in)`` volume."""
    predictor = _Predictor(model)
    offsets = np.arange(PATCH_SHAPE[0])
    q_in, q_out, batch_size = scaled.shape[3], bvec_out.shape[1], settings.batch_size
    with tqdm(total=len(corners), unit="patch", desc="RCNN inference", disable=not settings.progress) as bar:
        for start in range(0, len(corners), batch_size):
            batch = corners[start : start + batch_size]
            n = len(batch)
            ii = (batch[:, 0, None] + offsets)[:, :, None, None]
            jj = (batch[:, 1, None] + offsets)[:, None, :, None]
            kk = (batch[:, 2, None] + offsets)[:, None, None, :]
            images = np.moveaxis(scaled[ii, jj, kk], -1, 1)  # (n, q_in, 10, 10, 10)
            predicted = predictor(
                images,
                np.broadcast_to(bvec_in.T, (n, q_in, bvec_in.shape[0])),
                np.broadcast_to(bvec_out.T, (n, q_out, bvec_out.shape[0])),
                settings.q_out_chunk,
            )
            yield batch, (ii, jj, kk), np.moveaxis(predicted, 1, -1)
            bar.update(n)


def infer(
    dmri: np.ndarray,
    bvec_in: np.ndarray,
    bvec_out: np.ndarray,
    mask: np.ndarray,
    model,
    shell: int | None = None,
    scale: float | None = None,
    settings: InferenceSettings | None = None,
    q_encoding: str = "direction",
    bvals=None,
    **options,
) -> np.ndarray:
    """Predict the dMRI volumes of ``bvec_out`` from the context volumes ``dmri``.

    Parameters
    ----------
    dmri : (i, j, k, q_in) array, raw signal (any real dtype)
    bvec_in : (3, q_in) float, unit b-vectors of ``dmri`` (lengths within 1 ± 0.01 are renormalised;
        zero or other lengths are refused, see :func:`dmri_rcnn.core.io.check_bvecs`)
    bvec_out : (3, q_out) float, unit b-vectors to predict (same rule)
    mask : (i, j, k) array, brain mask (voxels > 0 are brain)
    model : keras.Model from :mod:`dmri_rcnn.core.model` (10x10x10 patches)
    shell : b-value (1000, 2000, 3000 s/mm²) selecting the original's constant divisor; ignored if
        ``scale`` is given.
    scale : divisor of the signal (e.g. :func:`dmri_rcnn.core.processing.scaling.percentile_scale`).
    settings : :class:`InferenceSettings`; None = the defaults.
    q_encoding, bvals : the model's q-space encoding (``ModelSpec.q_encoding``, applied by ``qspace.encode_q``)
        and, for ``"b_scaled"`` and ``"b_value"``, ``(bval_in, bval_out)``: the b-values of the two b-vector
        sets, s/mm².
    **options : any field of :class:`InferenceSettings` by name (``batch_size``, ``overlap``, ``stride``,
        ``q_out_chunk``, ``progress``), overriding ``settings``.

    Returns
    -------
    (i, j, k, q_out) float32, predicted signal in the units of ``dmri``.
    """
    settings = InferenceSettings.with_options(settings, options, "infer")
    dmri = np.asarray(dmri)
    mask = np.asarray(mask)
    bvec_in, bvec_out = _encoded_bvecs(*_check_inputs(dmri, bvec_in, bvec_out, mask), bvals, q_encoding)
    scale = _divisor(shell, scale)
    patch, overlap = PATCH_SHAPE[0], settings.overlap
    step = settings.stride if overlap else patch

    spatial = dmri.shape[:3]
    q_out = bvec_out.shape[1]
    padding = overlap_padding(spatial, step, patch) if overlap else central_padding(spatial, PATCH_SHAPE)
    pad_width = [tuple(int(p) for p in pair) for pair in padding]
    scaled = np.pad(dmri.astype(np.float32) / scale, pad_width + [(0, 0)])
    padded_shape = scaled.shape[:3]
    corners = _patch_corners(np.pad(mask > 0, pad_width), step)

    output = np.zeros(padded_shape + (q_out,), dtype=np.float32)
    if overlap:
        window_1d = blending_window(patch).astype(np.float32)
        window = window_1d[:, None, None] * window_1d[None, :, None] * window_1d[None, None, :]
        weight = np.zeros(padded_shape, dtype=np.float32)
    else:
        # Non-overlapping blocks: a writable (Mx, My, Mz, 10, 10, 10, q_out) view of the output.
        counts = [n // patch for n in padded_shape]
        blocks = output.reshape(counts[0], patch, counts[1], patch, counts[2], patch, q_out).transpose(
            0, 2, 4, 1, 3, 5, 6
        )

    predictions = _predict_patches(model, scaled, corners, bvec_in, bvec_out, settings)
    for batch, (ii, jj, kk), predicted in predictions:
        if overlap:
            # Patches of one batch may overlap each other: unbuffered add.at sums repeated voxels.
            np.add.at(output, (ii, jj, kk), predicted * window[None, ..., None])
            np.add.at(weight, (ii, jj, kk), np.broadcast_to(window, (len(batch),) + PATCH_SHAPE))
        else:
            blocks[batch[:, 0] // patch, batch[:, 1] // patch, batch[:, 2] // patch] = predicted

    if overlap:
        np.divide(output, weight[..., None], out=output, where=weight[..., None] > 0)
    crop = tuple(slice(int(before), int(before) + size) for (before, _), size in zip(padding, spatial))
    result = output[crop]
    result *= np.float32(scale)
    return result
