"""Whole-volume inference: the original's tiling reproduced, overlap blending, chunking, bounded memory."""

from __future__ import annotations

import tracemalloc

import keras
import numpy as np
import pytest
from keras import ops

from dmri_rcnn.core.inference import InferenceSettings, blending_window, infer, overlap_padding
from dmri_rcnn.core.model import get_1d_autoencoder
from dmri_rcnn.errors import InputError


class _MeanContext(keras.layers.Layer):
    """Pointwise stand-in: each target volume = mean context volume x (1 + b_x)."""

    def call(self, images, bvec_out):
        mean = ops.mean(images, axis=1, keepdims=True)
        gain = 1.0 + ops.reshape(bvec_out[..., 0], (-1, ops.shape(bvec_out)[1], 1, 1, 1))
        return mean * gain


class _PatchMean(keras.layers.Layer):
    """Patch-level stand-in: every voxel gets the mean of its whole patch (maximal seams when tiled)."""

    def call(self, images, bvec_out):
        mean = ops.mean(images, axis=(1, 2, 3, 4), keepdims=True)  # (B, 1, 1, 1, 1)
        per_target = ops.reshape(ops.ones_like(bvec_out[..., 0]), (-1, ops.shape(bvec_out)[1], 1, 1, 1))
        return mean * per_target * ops.ones((1, 1, 10, 10, 10))


def _stand_in(layer_cls):
    images = keras.Input((None, 10, 10, 10), name="enc_images")
    bvec_in = keras.Input((None, 3), name="enc_bvecs")
    bvec_out = keras.Input((None, 3), name="dec_bvecs")
    return keras.Model([images, bvec_in, bvec_out], layer_cls()(images, bvec_out))


def _unit(rng, n):
    v = rng.normal(size=(3, n))
    return (v / np.linalg.norm(v, axis=0)).astype(np.float32)


@pytest.fixture(scope="module")
def small_rcnn():
    model = get_1d_autoencoder(width=0.1)
    rng = np.random.default_rng(5)
    for var in model.weights:
        if var.name in ("beta", "bias", "moving_mean"):
            var.assign(rng.normal(0, 0.1, tuple(var.shape)).astype(np.float32))
    dc4 = model.get_layer("decoder").get_layer("dc4_conv")
    dc4.bias.assign(np.array([0.5], np.float32))  # keep the final ReLU active
    return model


def _reference_tiling(dmri, bvec_in, bvec_out, mask, model, scale):
    """Independent, loop-based statement of the original's inference (slow but obvious)."""
    padding = [((-n) % 10 // 2, (-n) % 10 - (-n) % 10 // 2) for n in dmri.shape[:3]]
    x = np.pad(dmri.astype(np.float32) / scale, padding + [(0, 0)])
    m = np.pad(mask, padding)
    out = np.zeros(x.shape[:3] + (bvec_out.shape[1],), np.float32)
    for i in range(0, x.shape[0], 10):
        for j in range(0, x.shape[1], 10):
            for k in range(0, x.shape[2], 10):
                if not m[i : i + 10, j : j + 10, k : k + 10].any():
                    continue
                patch = np.moveaxis(x[i : i + 10, j : j + 10, k : k + 10], -1, 0)[None]
                pred = model.predict([patch, bvec_in.T[None], bvec_out.T[None]], verbose=0)[0]
                out[i : i + 10, j : j + 10, k : k + 10] = np.moveaxis(pred, 0, -1)
    (a, _), (b, _), (c, _) = padding
    return out[a : a + dmri.shape[0], b : b + dmri.shape[1], c : c + dmri.shape[2]] * np.float32(scale)


def test_default_reproduces_the_original_tiling(small_rcnn):
    rng = np.random.default_rng(0)
    dmri = rng.integers(0, 3000, (23, 12, 9, 6)).astype(np.int16)
    mask = np.zeros((23, 12, 9), bool)
    mask[1:12, 2:10, 1:8] = True  # patches along i beyond voxel 17 hold no mask voxel
    bvec_in, bvec_out = _unit(rng, 6), _unit(rng, 5)
    result = infer(dmri, bvec_in, bvec_out, mask, small_rcnn, shell=1000, batch_size=3, progress=False)
    expected = _reference_tiling(dmri, bvec_in, bvec_out, mask, small_rcnn, 4000.0)
    assert result.shape == (23, 12, 9, 5) and result.dtype == np.float32
    # batch composition changes the float32 summation order: allow 1e-5 of the scale (4000), nothing more
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5 * 4000)
    assert np.all(result[17:] == 0) and np.mean(result[:17] > 0) > 0.1
    chunked = infer(dmri, bvec_in, bvec_out, mask, small_rcnn, shell=1000, q_out_chunk=2, progress=False)
    np.testing.assert_allclose(chunked, result, rtol=0, atol=1e-5 * 4000)


def test_scale_is_applied_and_undone():
    model = _stand_in(_MeanContext)
    rng = np.random.default_rng(1)
    dmri = rng.uniform(100, 3000, (14, 11, 10, 6)).astype(np.float32)
    mask = np.ones(dmri.shape[:3], bool)
    bvec_in, bvec_out = _unit(rng, 6), _unit(rng, 4)
    expected = dmri.mean(axis=-1, keepdims=True) * (1 + bvec_out[0])
    for kwargs in ({"shell": 2000}, {"scale": 1234.5}):
        tiled = infer(dmri, bvec_in, bvec_out, mask, model, progress=False, **kwargs)
        np.testing.assert_allclose(tiled, expected, rtol=1e-5)
    blended = infer(dmri, bvec_in, bvec_out, mask, model, shell=3000, overlap=True, progress=False)
    np.testing.assert_allclose(blended, expected, rtol=1e-5)


def test_overlap_removes_seams():
    model = _stand_in(_PatchMean)
    ramp = np.broadcast_to(np.arange(30, dtype=np.float32)[:, None, None, None] * 100, (30, 10, 10, 6)).copy()
    mask = np.ones(ramp.shape[:3], bool)
    rng = np.random.default_rng(2)
    bvec_in, bvec_out = _unit(rng, 6), _unit(rng, 2)
    tiled = infer(ramp, bvec_in, bvec_out, mask, model, shell=1000, progress=False)
    blended = infer(ramp, bvec_in, bvec_out, mask, model, shell=1000, overlap=True, progress=False)
    tiled_steps = np.abs(np.diff(tiled[:, 5, 5, 0]))
    blended_steps = np.abs(np.diff(blended[:, 5, 5, 0]))
    # Tiling: flat inside each patch, a jump of 10 voxels' worth of ramp at each patch border.
    assert tiled_steps.max() == pytest.approx(1000, rel=1e-4) and np.count_nonzero(tiled_steps > 1) == 2
    # Blending: no step larger than a third of that jump anywhere.
    assert blended_steps.max() < 350
    assert np.all(np.diff(blended[8:22, 5, 5, 0]) > 0)  # away from the zero padding: rising like the input


def test_blending_window_and_padding():
    w = blending_window(10)
    assert w.min() > 0 and np.allclose(w, w[::-1]) and w.argmax() in (4, 5)
    padding = overlap_padding((20, 17, 10), stride=5)
    padded = np.array([20, 17, 10]) + padding.sum(axis=1)
    assert np.all((padded - 10) % 5 == 0) and np.all(padding[:, 0] >= 5) and np.all(padding[:, 1] >= 5)


def test_memory_does_not_grow_with_patches():
    model = _stand_in(_MeanContext)
    rng = np.random.default_rng(3)
    dmri = rng.uniform(0, 3000, (60, 60, 30, 6)).astype(np.float32)
    mask = np.ones(dmri.shape[:3], bool)
    bvec_in, bvec_out = _unit(rng, 6), _unit(rng, 80)
    infer(dmri[:10, :10, :10], bvec_in, bvec_out, mask[:10, :10, :10], model, shell=1000, progress=False)  # trace
    tracemalloc.start()
    try:
        result = infer(dmri, bvec_in, bvec_out, mask, model, shell=1000, batch_size=4, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output_bytes = result.nbytes
    # 108 patches; keeping all predictions before stitching (as the original does) would need 2x the output.
    assert peak >= output_bytes  # NumPy buffers are traced, so the bound below means something
    assert peak < output_bytes + 4 * dmri.nbytes + 4_000_000, (peak, output_bytes)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d, bi, bo, m: (d[..., 0], bi, bo, m), "expected a 4D array"),
        (lambda d, bi, bo, m: (d, bi, bo, m[:-1]), "mask: expected spatial shape"),
        (lambda d, bi, bo, m: (d, bi[:, :5], bo, m), "bvec_in has 5 directions but the dMRI has 6 volumes"),
        (lambda d, bi, bo, m: (d, bi, bo.T, m), r"bvec_out: expected shape \(3, N\)"),
    ],
)
def test_bad_arrays_raise_input_error(change, match):
    model = _stand_in(_MeanContext)
    rng = np.random.default_rng(4)
    args = change(rng.uniform(0, 1, (10, 10, 10, 6)), _unit(rng, 6), _unit(rng, 4), np.ones((10, 10, 10)))
    with pytest.raises(InputError, match=match):
        infer(*args, model, shell=1000, progress=False)


def test_settings_travel_as_one_object_or_by_name():
    model = _stand_in(_MeanContext)
    rng = np.random.default_rng(5)
    args = (rng.uniform(0, 1, (12, 10, 10, 6)), _unit(rng, 6), _unit(rng, 4), np.ones((12, 10, 10)), model)
    settings = InferenceSettings(batch_size=2, overlap=True, progress=False)
    by_name = infer(*args, shell=1000, batch_size=2, overlap=True, progress=False)
    np.testing.assert_array_equal(infer(*args, shell=1000, settings=settings), by_name)
    # a keyword overrides the object's field
    np.testing.assert_array_equal(infer(*args, shell=1000, settings=settings, overlap=False),
                                  infer(*args, shell=1000, batch_size=2, progress=False))
    with pytest.raises(TypeError, match="unexpected keyword argument.*batchsize"):
        infer(*args, shell=1000, batchsize=2)
    with pytest.raises(InputError, match="batch_size must be >= 1, found 0"):
        infer(*args, shell=1000, batch_size=0)


@pytest.mark.parametrize("model_dim", [2, 0])
def test_study_prediction_refuses_an_unknown_model_dimension(tmp_path, model_dim):
    # it used to build a 3D model for any dimension other than 1; the model is now one ModelSpec
    from dmri_rcnn.core.model_spec import ModelSpec
    from dmri_rcnn.study.predict_rcnn import predict_with_trained_model

    with pytest.raises(InputError, match=f"model_dim is {model_dim}; expected 1 or 3"):
        predict_with_trained_model(
            context=tmp_path / "c.nii.gz",
            context_bvecs=tmp_path / "c.bvec",
            target_bvecs=tmp_path / "t.bvec",
            mask=tmp_path / "m.nii.gz",
            weights=tmp_path / "w.weights.h5",
            spec=ModelSpec(model_dim=model_dim, q_in=6, shells=(1000,), width=0.1),
            shell=1000,
            out_path=tmp_path / "out.nii.gz",
        )
    assert not (tmp_path / "out.nii.gz").exists()
