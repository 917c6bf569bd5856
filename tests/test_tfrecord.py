"""TFRecord files: the original's schema, round trips, float64 input, atomic writes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from dmri_rcnn.core.processing import load_tfrecord_data, save_tfrecord_data
from dmri_rcnn.core.processing import tfrecord as tfrecord_module
from dmri_rcnn.errors import InputError


@pytest.fixture
def arrays():
    rng = np.random.default_rng(5)
    dmri = rng.random((5, 4, 3, 7)) * 3000  # float64 on purpose: the original crashed on it
    bvecs = rng.normal(size=(3, 7))
    bvecs /= np.linalg.norm(bvecs, axis=0)  # unit directions (the writer refuses others)
    bvecs[:, 0] = 0.0  # the b0 volume has none
    bvals = np.array([0, 1000, 1000, 2000, 2000, 3000, 3000.0])
    mask = np.zeros((5, 4, 3), np.uint8)
    mask[1:4, 1:3, 1] = 255
    return dmri, bvecs, bvals, mask


def test_round_trip_float64_input(arrays, tmp_path):
    dmri, bvecs, bvals, mask = arrays
    path = tmp_path / "sub" / "s01.tfrecord"
    save_tfrecord_data(dmri, bvecs, bvals, mask, path)
    loaded = load_tfrecord_data(path)
    assert [a.dtype for a in loaded] == [np.float32, np.float32, np.float32, np.int8]
    assert loaded.dmri.tobytes() == dmri.astype(np.float32).tobytes()
    np.testing.assert_allclose(loaded.bvecs, bvecs.astype(np.float32), atol=1e-7)
    np.testing.assert_array_equal(loaded.bvals, bvals.astype(np.float32))
    np.testing.assert_array_equal(loaded.mask, (mask != 0).astype(np.int8))  # 255 must not wrap to -1
    assert list(path.parent.iterdir()) == [path]


def test_transposed_bvecs_accepted(arrays, tmp_path):
    dmri, bvecs, bvals, mask = arrays
    save_tfrecord_data(dmri.astype(np.float32), bvecs.T, bvals, mask, tmp_path / "t.tfrecord")
    np.testing.assert_allclose(load_tfrecord_data(tmp_path / "t.tfrecord").bvecs, bvecs.astype(np.float32), atol=1e-7)


def test_schema_is_the_originals(arrays, tmp_path):
    dmri, bvecs, bvals, mask = arrays
    path = tmp_path / "s.tfrecord"
    save_tfrecord_data(dmri, bvecs, bvals, mask, path)
    raw = list(tf.data.TFRecordDataset(str(path)))
    assert len(raw) == 1
    example = tf.train.Example.FromString(raw[0].numpy())
    features = example.features.feature
    assert set(features) == {"dmri", "bvec", "bval", "mask", "i", "j", "k", "b"}
    assert [features[key].int64_list.value[0] for key in "ijkb"] == [5, 4, 3, 7]
    for key, dtype, shape in [
        ("dmri", tf.float32, (5, 4, 3, 7)),
        ("bvec", tf.float32, (3, 7)),
        ("bval", tf.float32, (7,)),
        ("mask", tf.int8, (5, 4, 3)),
    ]:
        tensor = tf.io.parse_tensor(features[key].bytes_list.value[0], dtype)
        assert tuple(tensor.shape) == shape


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d, v, b, m: (d[..., 0], v, b, m), "expected a 4D dMRI image"),
        (lambda d, v, b, m: (d, v[:, :5], b, m), "has 5 directions but .* has 7 volumes"),
        (lambda d, v, b, m: (d, np.ones((4, 7)), b, m), r"expected b-vectors of shape \(3, q\)"),
        (lambda d, v, b, m: (d, v, b[:6], m), "has 6 b-values but .* has 7 b-vectors"),
        (lambda d, v, b, m: (d, v, b, m[:, :, :2]), "spatial shape"),
        (lambda d, v, b, m: (np.where(d > 2900, np.nan, d), v, b, m), "NaN/Inf"),
        (lambda d, v, b, m: (d * 1e300, v, b, m), "after conversion to float32"),
    ],
)
def test_bad_inputs_raise_and_write_nothing(arrays, tmp_path, change, match):
    path = tmp_path / "bad.tfrecord"
    with pytest.raises(InputError, match=match) as err:
        save_tfrecord_data(*change(*arrays), path)
    assert "bad.tfrecord" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_previous_file_intact(arrays, tmp_path, monkeypatch):
    path = tmp_path / "s.tfrecord"
    save_tfrecord_data(*arrays, path)
    before = path.read_bytes()

    class BrokenWriter(tf.io.TFRecordWriter):
        def write(self, record):
            super().write(record[: len(record) // 2])
            raise OSError("disk full")

    monkeypatch.setattr(tfrecord_module.tf.io, "TFRecordWriter", BrokenWriter)
    with pytest.raises(OSError, match="disk full"):
        save_tfrecord_data(arrays[0] * 2, *arrays[1:], path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_too_large_for_one_record(arrays, tmp_path, monkeypatch):
    monkeypatch.setattr(tfrecord_module, "MAX_RECORD_BYTES", 100)
    with pytest.raises(InputError, match="split_image_to_octants"):
        save_tfrecord_data(*arrays, tmp_path / "big.tfrecord")


def test_reader_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_tfrecord_data(tmp_path / "missing.tfrecord")
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(b"definitely not a tfrecord file, just some bytes")
    with pytest.raises(InputError, match="junk.tfrecord: expected a dMRI TFRecord") as err:
        load_tfrecord_data(junk)
    assert "\n" not in str(err.value)
