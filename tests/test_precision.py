"""bf16 precision mode: same weights, bfloat16 arithmetic, outputs close to fp32.

bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2 %) and a dozen layers compound that. How
much depends on the kernels, so the bounds (on model outputs of order 1, the scaled signal) depend on the
kind of CPU, as :func:`dmri_rcnn.core.precision.cpu_bf16_kind` tells it:

- native bf16 (AVX512-BF16 or AMX-BF16 through oneDNN): mean |bf16 - fp32| at most 3 % of the mean fp32
  output, largest difference at most 0.1 (measured: 1.6 % and 0.059 for the full-width 1D model of
  ``test_cli_precision_flag`` on an AMX CPU, 0.4 % and 0.007 for the small 3D model);
- emulated bf16 (every other CPU, and any CPU with ``TF_ENABLE_ONEDNN_OPTS=0``: TensorFlow's Eigen
  kernels): at most 6 % and 0.2 (measured: 3.9 % and 0.109, and 0.9 % and 0.020).

The bounds are stated in docs/guide/gpus.md ("What each kind of CPU gets"), the measured figures in
docs/results.md.
"""

from __future__ import annotations

from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.cli.run_dmri_rcnn import main
from dmri_rcnn.core.inference import infer
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder
from dmri_rcnn.core.precision import PRECISION_REQUESTS, choose_precision, cpu_bf16_kind
from dmri_rcnn.errors import InputError

NATIVE_BF16 = cpu_bf16_kind()[0]
MEAN_RELATIVE_TOLERANCE = 0.03 if NATIVE_BF16 else 0.06
MAX_ABS_TOLERANCE = 0.1 if NATIVE_BF16 else 0.2


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
    with pytest.raises(InputError, match="precision is 'fp8'; expected one of fp32, bf16, fp16"):
        get_1d_autoencoder(precision="fp8")
    # one check, one message, wherever a precision is given (the model, its description, its training)
    from dmri_rcnn.core.model_spec import ModelSpec
    from dmri_rcnn.training import TrainingConfig

    with pytest.raises(InputError, match="precision is 'fp8'; expected one of fp32, bf16, fp16$"):
        ModelSpec(model_dim=1, q_in=6, shells=(1000,), precision="fp8")
    with pytest.raises(InputError, match="precision is 'fp8'; expected one of fp32, bf16, fp16, auto$"):
        TrainingConfig(model_dim=1, q_in=6, shells=(1000,), precision="fp8")


def test_the_config_schema_and_the_command_offer_the_precisions_the_package_knows():
    import yaml

    from dmri_rcnn.cli.run_dmri_rcnn import build_parser

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    assert tuple(schema["properties"]["training"]["properties"]["precision"]["enum"]) == PRECISION_REQUESTS
    flag = next(action for action in build_parser()._actions if action.dest == "precision")
    assert tuple(flag.choices) == PRECISION_REQUESTS


AVX2 = {"avx2", "fma", "sse4_2"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512_bf16"}


@pytest.mark.parametrize(
    "requested, gpus, flags, onednn, expected, reason",
    [
        ("auto", [], AVX2, "1", "fp32", "no native bf16"),
        ("auto", [], AVX512_BF16, "1", "bf16", "native bf16 (avx512_bf16)"),
        ("auto", [], AVX2 | {"amx_bf16"}, "1", "bf16", "native bf16 (amx_bf16)"),
        ("auto", [], AVX512_BF16, "0", "fp32", "TF_ENABLE_ONEDNN_OPTS=0"),
        ("auto", [("A100", (8, 0))], AVX2, "1", "bf16", "compute capability >= 8.0"),
        ("auto", [("H100", (9, 0)), ("V100", (7, 0))], AVX2, "1", "fp16", "7.x have fast fp16"),
        ("auto", [("P100", (6, 0))], AVX512_BF16, "1", "fp32", "neither fast bf16 nor fast fp16"),
        ("fp32", [], AVX512_BF16, "1", "fp32", "asked for"),
        ("bf16", [], AVX2, "1", "bf16", "emulates it"),
        ("fp16", [("T4", (7, 5))], AVX2, "1", "fp16", "asked for"),
    ],
)
def test_auto_precision_follows_the_devices(monkeypatch, requested, gpus, flags, onednn, expected, reason):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", onednn)
    choice = choose_precision(requested, gpus=gpus, flags=flags)
    assert choice.precision == expected
    assert reason in choice.reason
    assert ("GPU" in choice.devices) == bool(gpus)
    assert f"precision {expected} (" in choice.describe()


def test_auto_precision_refuses_unknown_requests():
    with pytest.raises(InputError, match="precision is 'fast'; expected one of fp32, bf16, fp16, auto"):
        choose_precision("fast", gpus=[], flags=set())


def test_onednn_is_asked_for_unless_the_user_set_it(tmp_path):
    """The package asks TensorFlow for oneDNN on x86-64 before TensorFlow loads; a user's 0 wins."""
    import platform
    import subprocess
    import sys

    script = "import os, dmri_rcnn; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    default = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    expected = "1" if platform.machine().lower() in ("x86_64", "amd64") else "None"
    assert default.stdout.strip() == expected
    chosen = subprocess.run([sys.executable, "-c", script], env={**env, "TF_ENABLE_ONEDNN_OPTS": "0"},
                            capture_output=True, text=True, check=True)
    assert chosen.stdout.strip() == "0"


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
    assert "Precision -> bf16 (asked for" in capsys.readouterr().out
    auto = run("auto")
    assert f"Precision -> {choose_precision('auto').precision} (auto: " in capsys.readouterr().out
    assert auto.shape == (10, 10, 10, 3)
    with pytest.raises(SystemExit) as exit_info:
        main(["-dmri_in", "x", "-bvec_in", "x", "-bvec_out", "x", "-mask", "x", "-dmri_out", "x.nii.gz",
              "-s", "1000", "--precision", "fp8"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fp8'" in capsys.readouterr().err
