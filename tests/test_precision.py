"""bf16 precision mode: same weights, bfloat16 arithmetic, outputs close to fp32.

Tolerance (stated in the README's performance section): on model outputs of order 1 (the scaled signal),
the mean absolute difference bf16 vs fp32 stays below 2 % of the mean fp32 output and the largest
difference below 0.1. bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2 %) and a dozen
layers compound that; measured here: ≈ 0.5 % mean, ≈ 0.02 max.
"""

from __future__ import annotations

import keras
import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.cli.run_dmri_rcnn import main
from dmri_rcnn.core.inference import infer
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder

MEAN_RELATIVE_TOLERANCE = 0.02
MAX_ABS_TOLERANCE = 0.1


def randomise(model, seed=0):
    """Spread the normalisation statistics and keep the final ReLU active, so every layer matters."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape = tuple(var.shape)
        if var.name == "moving_mean":
            var.assign(rng.normal(0.0, 0.3, shape).astype(np.float32))
        elif var.name == "moving_variance":
            var.assign(rng.uniform(0.5, 2.0, shape).astype(np.float32))
        elif var.name == "gamma":
            var.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif var.name == "kernel" and shape[-1] == 1:
            var.assign(np.abs(var.numpy()))
        elif var.name == "bias" and shape == (1,):
            var.assign(np.full(shape, 0.3, np.float32))


def _unit(rng, shape):
    v = rng.normal(size=shape)
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def assert_close_to_fp32(bf16, fp32):
    diff = np.abs(bf16 - fp32)
    assert np.mean(np.abs(fp32)) > 0.05, "degenerate reference output"
    assert diff.mean() <= MEAN_RELATIVE_TOLERANCE * np.mean(np.abs(fp32)), diff.mean()
    assert diff.max() <= MAX_ABS_TOLERANCE, diff.max()
    assert diff.max() > 0, "bf16 gave bit-identical results: it did not compute in bfloat16"


@pytest.fixture(scope="module")
def fp32_and_bf16_3d(tmp_path_factory):
    keras.utils.set_random_seed(0)  # the initial weights, so the test is the same on every run
    fp32 = get_3d_autoencoder(width=0.25)
    randomise(fp32)
    path = tmp_path_factory.mktemp("bf16") / "small3d.weights.h5"
    fp32.save_weights(path)
    bf16 = get_3d_autoencoder(path, width=0.25, precision="bf16")
    return fp32, bf16


def test_bf16_model_keeps_float32_weights_and_computes_in_bfloat16(fp32_and_bf16_3d):
    fp32, bf16 = fp32_and_bf16_3d
    assert len(fp32.weights) == len(bf16.weights)
    for a, b in zip(fp32.weights, bf16.weights):
        assert b.dtype == "float32"
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    conv = bf16.get_layer("decoder").get_layer("dcv12_conv")
    assert conv.compute_dtype == "bfloat16"
    assert fp32.get_layer("decoder").get_layer("dcv12_conv").compute_dtype == "float32"


def test_bf16_predictions_close_to_fp32(fp32_and_bf16_3d):
    fp32, bf16 = fp32_and_bf16_3d
    rng = np.random.default_rng(1)
    inputs = [
        rng.uniform(0.1, 0.6, (3, 6, 10, 10, 10)).astype(np.float32),
        _unit(rng, (3, 6, 3)),
        _unit(rng, (3, 5, 3)),
    ]
    expected = fp32.predict(inputs, verbose=0)
    got = bf16.predict(inputs, verbose=0)
    assert got.dtype == np.float32 and got.shape == expected.shape == (3, 5, 10, 10, 10)
    assert_close_to_fp32(got, expected)


def test_bf16_whole_volume_inference_close_to_fp32(fp32_and_bf16_3d):
    fp32, bf16 = fp32_and_bf16_3d
    rng = np.random.default_rng(2)
    dmri = rng.uniform(400, 2400, (12, 10, 11, 6)).astype(np.float32)
    mask = np.ones(dmri.shape[:3], bool)
    bvec_in, bvec_out = _unit(rng, (6, 3)).T, _unit(rng, (4, 3)).T
    expected = infer(dmri, bvec_in, bvec_out, mask, fp32, shell=1000, progress=False)
    got = infer(dmri, bvec_in, bvec_out, mask, bf16, shell=1000, progress=False, q_out_chunk=3)
    assert got.dtype == np.float32 and got.shape == (12, 10, 11, 4)
    assert_close_to_fp32(got / 4000, expected / 4000)  # on the scaled signal, the model's units


def test_unknown_precision_is_rejected():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        get_1d_autoencoder(precision="fp16")


def test_cli_precision_flag(tmp_path, capsys):
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    model = get_1d_autoencoder()
    randomise(model, seed=3)
    weights = tmp_path / "model1d.weights.h5"
    model.save_weights(weights)
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    nib.save(nib.Nifti1Image(rng.uniform(400, 2400, (10, 10, 10, 6)).astype(np.float32), affine), tmp_path / "dmri.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.uint8), affine), tmp_path / "mask.nii.gz")
    np.savetxt(tmp_path / "bvec_in", _unit(rng, (6, 3)).T, fmt="%.6f")
    np.savetxt(tmp_path / "bvec_out", _unit(rng, (3, 3)).T, fmt="%.6f")

    def run(precision):
        out = tmp_path / f"out_{precision}.nii.gz"
        argv = ["-dmri_in", str(tmp_path / "dmri.nii.gz"), "-bvec_in", str(tmp_path / "bvec_in"),
                "-bvec_out", str(tmp_path / "bvec_out"), "-mask", str(tmp_path / "mask.nii.gz"),
                "-dmri_out", str(out), "-s", "1000", "-m", "1", "--weights", str(weights), "--no-progress",
                "--precision", precision]
        assert main(argv) == 0
        image = nib.load(out)
        assert image.get_data_dtype() == np.float32
        return np.asarray(image.dataobj) / 4000

    assert_close_to_fp32(run("bf16"), run("fp32"))
    with pytest.raises(SystemExit) as exit_info:
        main(["-dmri_in", "x", "-bvec_in", "x", "-bvec_out", "x", "-mask", "x", "-dmri_out", "x.nii.gz",
              "-s", "1000", "--precision", "fp16"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
