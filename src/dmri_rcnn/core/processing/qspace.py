"""The q-space encoding: how the b-vectors (and b-values) of a model's context and targets become its inputs.

The network reads one vector per context and per target volume (``enc_bvecs``, ``dec_bvecs``). What
that vector holds is the model's *q-space encoding* (:attr:`dmri_rcnn.core.model_spec.ModelSpec.q_encoding`):

``"direction"``
    The unit b-vector. The b-value is not an input: a model learns its shell from the signal's intensity.
    The original dMRI-RCNN and every published model.
``"b_scaled"``
    The b-vector times ``b / 1000``: a q-vector whose length carries the b-value (1 at b = 1000 s/mm²,
    2 at b = 2000). A model can then predict a shell other than its context's (cross-shell models).
``"b_value"``
    The unit b-vector followed by ``b / 1000`` as a fourth number: the b-value as an explicit input beside
    the direction, the other way to build a cross-shell model (4 input channels instead of 3, so its
    weights differ in shape from the other encodings').

:func:`encode_q` is the one place where this is decided; inference and the training pipeline both call it.
"""

from __future__ import annotations

import numpy as np

from dmri_rcnn.errors import InputError

__all__ = ["B_SCALE_REFERENCE", "Q_ENCODINGS", "encode_q", "q_channels"]

#: The q-space encodings a model may be trained with (see the module docstring).
Q_ENCODINGS = ("direction", "b_scaled", "b_value")

#: b-value (s/mm²) at which a ``"b_scaled"`` q-vector has unit length (and ``"b_value"``'s fourth number is 1).
B_SCALE_REFERENCE = 1000.0


def q_channels(encoding: str) -> int:
    """How many numbers the network reads per volume under ``encoding``: 4 for ``"b_value"``, else 3."""
    if encoding not in Q_ENCODINGS:
        raise InputError(f"q_encoding is {encoding!r}; expected one of {', '.join(Q_ENCODINGS)}")
    return 4 if encoding == "b_value" else 3


def encode_q(bvecs, bvals, encoding: str):
    """The model input of b-vectors under a q-space encoding.

    Parameters
    ----------
    bvecs : (3, q) array_like or tensor
        Unit b-vectors (FSL layout), float32 or float64.
    bvals : (q,) array_like or tensor
        Their b-values in s/mm² (the acquired ones where at hand); not read for ``"direction"``.
    encoding : str
        One of :data:`Q_ENCODINGS`.

    Returns
    -------
    (q_channels(encoding), q) array or tensor, the type and dtype of ``bvecs``
        ``bvecs`` unchanged for ``"direction"``; ``bvecs * bvals / 1000`` for ``"b_scaled"``; ``bvecs``
        with ``bvals / 1000`` as a fourth row for ``"b_value"``. A NumPy input gives a NumPy array; a
        TensorFlow tensor (inside ``tf.data``) gives a tensor.
    """
    if encoding not in Q_ENCODINGS:
        raise InputError(f"q_encoding is {encoding!r}; expected one of {', '.join(Q_ENCODINGS)}")
    if encoding == "direction":
        return bvecs
    if isinstance(bvecs, (list, tuple, np.ndarray)) or np.isscalar(bvecs):
        vectors = np.asarray(bvecs)
        values = np.asarray(bvals, dtype=vectors.dtype if vectors.dtype.kind == "f" else np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != 3 or values.shape != (vectors.shape[1],):
            raise InputError(
                f"b-vectors of shape {vectors.shape} and b-values of shape {values.shape}; expected (3, q) and (q,)"
            )
        relative = (values / values.dtype.type(B_SCALE_REFERENCE))[None, :]
        if encoding == "b_value":
            return np.concatenate([vectors, relative.astype(vectors.dtype)], axis=0)
        return vectors * relative
    # a tensor: the same arithmetic, left to TensorFlow (shapes are checked where the tensors are built)
    relative = (bvals / B_SCALE_REFERENCE)[None, :]
    if encoding == "b_value":
        # lazy: only a tensor (inside tf.data) reaches this line, so TensorFlow is already loaded
        import tensorflow as tf

        return tf.concat([bvecs, tf.cast(relative, bvecs.dtype)], axis=0)
    return bvecs * relative
