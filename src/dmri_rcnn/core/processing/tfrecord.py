"""Training subjects stored as TFRecord files, in the original dMRI-RCNN's schema.

One file holds one ``tf.train.Example`` (one subject, or one octant of a subject) with the features

============  ==========================================================  ========
feature       content                                                     dtype
============  ==========================================================  ========
``dmri``      ``tf.io.serialize_tensor`` of the (i, j, k, q) signal        float32
``bvec``      ``tf.io.serialize_tensor`` of the (3, q) b-vectors           float32
``bval``      ``tf.io.serialize_tensor`` of the (q,) b-values (s/mm²)      float32
``mask``      ``tf.io.serialize_tensor`` of the (i, j, k) brain mask       int8
``i j k b``   the four sizes, one each                                     int64
============  ==========================================================  ========

so files written here and by ``dmri-rcnn==0.4.2`` are interchangeable. A protobuf message cannot exceed
2 GiB: split large images with :func:`dmri_rcnn.core.io.split_image_to_octants` first.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from dmri_rcnn.core.io import check_bvecs, check_finite, validate_dmri_set
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

__all__ = [
    "TFRecordSubject",
    "load_tfrecord_data",
    "parse_tfrecord_example",
    "save_tfrecord_data",
    "tfrecord_dataset",
]

#: A serialised tf.train.Example must stay below protobuf's 2 GiB message limit.
MAX_RECORD_BYTES = 2**31 - 2**20

_FEATURES = {
    "i": tf.io.FixedLenFeature([], tf.int64),
    "j": tf.io.FixedLenFeature([], tf.int64),
    "k": tf.io.FixedLenFeature([], tf.int64),
    "b": tf.io.FixedLenFeature([], tf.int64),
    "dmri": tf.io.FixedLenFeature([], tf.string),
    "bvec": tf.io.FixedLenFeature([], tf.string),
    "bval": tf.io.FixedLenFeature([], tf.string),
    "mask": tf.io.FixedLenFeature([], tf.string),
}


class TFRecordSubject(NamedTuple):
    """Arrays of one TFRecord file."""

    dmri: np.ndarray  #: (i, j, k, q) float32 signal
    bvecs: np.ndarray  #: (3, q) float32
    bvals: np.ndarray  #: (q,) float32, s/mm²
    mask: np.ndarray  #: (i, j, k) int8


def _tensor_feature(array: np.ndarray) -> tf.train.Feature:
    serialized = tf.io.serialize_tensor(tf.convert_to_tensor(array)).numpy()
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[serialized]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def save_tfrecord_data(
    dmri: np.ndarray, bvecs: np.ndarray, bvals: np.ndarray, mask: np.ndarray, path: PathLike
) -> None:
    """Write one subject as a TFRecord file in the original's schema, atomically.

    Parameters
    ----------
    dmri : (i, j, k, q) float32 or float64 signal (stored as float32).
    bvecs : (3, q) b-vectors ((q, 3) is transposed): unit vectors except b0 volumes (b < 50 s/mm²),
        stored renormalised, with b0 columns as zero vectors.
    bvals : (q,) b-values, s/mm².
    mask : (i, j, k) brain mask; stored as int8 0/1 (a value > 0 is inside).
    path : output file, conventionally ``*.tfrecord``; parent folders are created.

    Raises
    ------
    InputError
        Shapes that do not fit together, NaN/Inf (also after the cast to float32), or an image too
        large for one record (split it into octants first).
    """
    name = str(path)
    dmri = np.asarray(dmri)
    bvecs = np.asarray(bvecs)
    if bvecs.ndim == 2 and bvecs.shape[0] != 3 and bvecs.shape[1] == 3:
        bvecs = bvecs.T
    names = {"dmri": f"{name} (dmri)", "bvec": f"{name} (bvecs)", "bval": f"{name} (bvals)", "mask": f"{name} (mask)"}
    validate_dmri_set(dmri, bvecs, np.asarray(bvals), np.asarray(mask), names)
    # stored as validated: diffusion directions renormalised to unit length, b0 columns zero
    bvecs = check_bvecs(bvecs, names["bvec"], bvals=np.asarray(bvals))
    with np.errstate(over="ignore"):  # an overflow becomes Inf, reported just below
        dmri32 = np.ascontiguousarray(dmri, dtype=np.float32)
    check_finite(dmri32, names["dmri"] + " after conversion to float32")
    if dmri32.nbytes > MAX_RECORD_BYTES:
        raise InputError(
            f"{name}: the dMRI image is {dmri32.nbytes / 2**30:.2f} GiB but a TFRecord example must stay "
            "below 2 GiB; save its octants (io.split_image_to_octants) to separate files"
        )
    feature = {
        "dmri": _tensor_feature(dmri32),
        "bvec": _tensor_feature(np.ascontiguousarray(bvecs, dtype=np.float32)),
        "bval": _tensor_feature(np.ascontiguousarray(bvals, dtype=np.float32)),
        "mask": _tensor_feature((np.asarray(mask) > 0).astype(np.int8)),
        "i": _int_feature(dmri.shape[0]),
        "j": _int_feature(dmri.shape[1]),
        "k": _int_feature(dmri.shape[2]),
        "b": _int_feature(dmri.shape[3]),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    with atomic_path(path) as tmp:
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            writer.write(example.SerializeToString())


def parse_tfrecord_example(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Decode one serialised example (graph-compatible; used in ``tf.data`` maps).

    Returns
    -------
    dict with ``dmri`` (i, j, k, q) float32, ``bvec`` (3, q) float32, ``bval`` (q,) float32 and
    ``mask`` (i, j, k) int8 tensors.
    """
    content = tf.io.parse_single_example(serialized, _FEATURES)
    i, j, k, b = content["i"], content["j"], content["k"], content["b"]
    return {
        "dmri": tf.reshape(tf.io.parse_tensor(content["dmri"], tf.float32), tf.stack([i, j, k, b])),
        "bvec": tf.reshape(tf.io.parse_tensor(content["bvec"], tf.float32), tf.stack([tf.constant(3, tf.int64), b])),
        "bval": tf.reshape(tf.io.parse_tensor(content["bval"], tf.float32), tf.reshape(b, [1])),
        "mask": tf.reshape(tf.io.parse_tensor(content["mask"], tf.int8), tf.stack([i, j, k])),
    }


def tfrecord_dataset(paths: Sequence[PathLike], num_parallel_calls=tf.data.AUTOTUNE) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of decoded subjects (dicts as from :func:`parse_tfrecord_example`), in file order."""
    files = [str(p) for p in paths]
    return tf.data.TFRecordDataset(files).map(
        parse_tfrecord_example, num_parallel_calls=num_parallel_calls, deterministic=True
    )


def load_tfrecord_data(path: PathLike) -> TFRecordSubject:
    """Read one TFRecord file (written here or by the original package) into NumPy arrays.

    Returns
    -------
    TFRecordSubject
        ``dmri`` (i, j, k, q) float32, ``bvecs`` (3, q) float32, ``bvals`` (q,) float32,
        ``mask`` (i, j, k) int8.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: TFRecord file not found")
    try:
        records = [parse_tfrecord_example(r) for r in tf.data.TFRecordDataset(str(path))]
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:
        reason = (err.message or type(err).__name__).splitlines()[0]
        raise InputError(f"{path}: expected a dMRI TFRecord file, could not read it ({reason})") from None
    if len(records) != 1:
        raise InputError(f"{path}: expected exactly one subject record, found {len(records)}")
    record = records[0]
    return TFRecordSubject(
        record["dmri"].numpy(), record["bvec"].numpy(), record["bval"].numpy(), record["mask"].numpy()
    )
