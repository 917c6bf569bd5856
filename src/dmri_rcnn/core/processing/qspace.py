"""The q-space encoding: how the b-vectors (and b-values) of a model's context and targets become its inputs.

The network reads one 3-vector per context and per target volume (``enc_bvecs``, ``dec_bvecs``). What
that vector holds is the model's *q-space encoding* (:attr:`dmri_rcnn.core.model_spec.ModelSpec.q_encoding`):

``"direction"``
    The unit b-vector. The b-value is not an input: a model learns its shell from the signal's intensity.
    The original dMRI-RCNN and every published model.
``"b_scaled"``
    The b-vector times ``b / 1000``: a q-vector whose length carries the b-value (1 at b = 1000 s/mm²,
    2 at b = 2000). A model can then predict a shell other than its context's (cross-shell models).

:func:`encode_q` is the one place where this is decided; inference and the training pipeline both call it.
"""

from __future__ import annotations

import numpy as np

from dmri_rcnn.errors import InputError

__all__ = ["B_SCALE_REFERENCE", "Q_ENCODINGS", "encode_q"]

#: The q-space encodings a model may be trained with (see the module docstring).
Q_ENCODINGS = ("direction", "b_scaled")

#: b-value (s/mm²) at which a ``"b_scaled"`` q-vector has unit length.
B_SCALE_REFERENCE = 1000.0


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
    (3, q) array or tensor, the type and dtype of ``bvecs``
        ``bvecs`` unchanged for ``"direction"``; ``bvecs * bvals / 1000`` for ``"b_scaled"``. A NumPy
        input gives a NumPy array; a TensorFlow tensor (inside ``tf.data``) gives a tensor.
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
        return vectors * (values / values.dtype.type(B_SCALE_REFERENCE))[None, :]
    # a tensor: the same arithmetic, left to TensorFlow (shapes are checked where the tensors are built)
    return bvecs * (bvals / B_SCALE_REFERENCE)[None, :]
