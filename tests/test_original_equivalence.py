"""Proof that this package IS the original dMRI-RCNN: same checkpoints, same outputs.

The original ``dmri-rcnn==0.4.2`` runs in its own environment (tf_keras, ``TF_USE_LEGACY_KERAS=1``). It
builds its 1D and 3D models, fills every variable (kernels, biases, LayerNorm gamma/beta, BatchNorm
moving statistics) with non-trivial random values, saves TensorFlow checkpoints with its own
``save_weights``, predicts fixed random patches, and runs its own inference (the library pipeline for the
3D model, its unmodified ``run_dmri_rcnn.py`` for the 1D model) on a small NIfTI subject. Here the
checkpoints are loaded into the Keras 3 models and everything is compared. It also loads a checkpoint
exported by this package (``save_original_checkpoint``) with the original's own ``get_3d_autoencoder``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import run_original
from published_weights import randomise
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder
from dmri_rcnn.core.weights import save_original_checkpoint

pytestmark = pytest.mark.original

TOLERANCE = 1e-4  # on the scaled signal (the model's own units)
SHELL = 1000
SHELL_SCALE = 4000.0

ORIGINAL_SCRIPT = r'''
import os, shutil, subprocess, sys
import numpy as np
import dmri_rcnn
from dmri_rcnn.core.model import get_1d_autoencoder, get_3d_autoencoder
from dmri_rcnn.core.processing import InferenceProcessor

work = sys.argv[1]
rng_seed = int(sys.argv[2])

def randomise(model, seed):
    rng = np.random.default_rng(seed)
    values = []
    for var in model.weights:
        name = var.name.split("/")[-1].split(":")[0]
        shape = tuple(var.shape)
        if name in ("kernel", "recurrent_kernel"):
            limit = np.sqrt(6.0 / np.prod(shape[:-1]))
            value = rng.uniform(-limit, limit, shape)
            if shape[-1] == 1:  # output unit: positive weights keep the final ReLU mostly active
                value = np.abs(value)
        elif name == "bias":
            value = np.full(shape, 0.1) if shape == (1,) else rng.normal(0.0, 0.1, shape)
        elif name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "beta":
            value = rng.normal(0.0, 0.2, shape)
        elif name == "moving_mean":
            value = rng.normal(0.0, 0.3, shape)
        elif name == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        else:
            raise RuntimeError(f"unexpected variable {var.name}")
        values.append(value.astype(np.float32))
    model.set_weights(values)

patches = np.load(os.path.join(work, "patches.npz"))
inputs = [patches["images"], patches["bvec_in"], patches["bvec_out"]]
models = {}
for dim, build in ((3, get_3d_autoencoder), (1, get_1d_autoencoder)):
    model = build()
    randomise(model, rng_seed + dim)
    model.save_weights(os.path.join(work, f"orig{dim}", "weights"))
    np.save(os.path.join(work, f"orig_pred{dim}.npy"), model.predict(inputs, batch_size=4, verbose=0))
    models[dim] = model

# 3D: the original's inference pipeline on a NIfTI subject (what its CLI runs after loading weights).
InferenceProcessor(models[3], shell=1000, batch_size=4).run_subject(
    os.path.join(work, "dmri.nii.gz"), os.path.join(work, "bvec_in"), os.path.join(work, "bvec_out"),
    os.path.join(work, "mask.nii.gz"), os.path.join(work, "orig_infer3.nii.gz"),
)

# 1D: the original's unmodified command-line script, finding the checkpoint in DMRI_RCNN_DIR.
home = os.path.join(work, "orig_home")
target = os.path.join(home, "1D_RCNN", "b1000_6in")
os.makedirs(target)
for name in os.listdir(os.path.join(work, "orig1")):
    if name.startswith("weights."):
        shutil.copy(os.path.join(work, "orig1", name), target)
script = os.path.join(os.path.dirname(dmri_rcnn.__file__), "bin", "run_dmri_rcnn.py")
subprocess.run(
    [sys.executable, script, "-dmri_in", os.path.join(work, "dmri.nii.gz"), "-bvec_in", os.path.join(work, "bvec_in"),
     "-bvec_out", os.path.join(work, "bvec_out"), "-mask", os.path.join(work, "mask.nii.gz"),
     "-dmri_out", os.path.join(work, "orig_cli1.nii.gz"), "-s", "1000", "-m", "1"],
    check=True, env={**os.environ, "DMRI_RCNN_DIR": home},
)

# A checkpoint written by the Keras 3 package, loaded by the original's own loader (assert_consumed).
exported = get_3d_autoencoder(os.path.join(work, "ours3", "weights"))
np.save(os.path.join(work, "orig_on_ours3.npy"), exported.predict(inputs, batch_size=4, verbose=0))
print("original done")
'''


def _unit_vectors(rng, n):
    v = rng.normal(size=(n, 3))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def write_subject(work: Path, rng) -> None:
    """25x10x10 subject, 6 context and 5 target directions; the mask leaves the last padded patch empty."""
    shape = (25, 10, 10)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), axis=-1)
    bvec_in, bvec_out = _unit_vectors(rng, 6), _unit_vectors(rng, 5)
    # Smooth anisotropic signal plus noise, stored as int16 like many scanners' output.
    profile = np.exp(-np.abs(grid @ bvec_in.T)) * 2500 + 300
    dmri = np.clip(profile + rng.normal(0, 80, profile.shape), 0, None).astype(np.int16)
    mask = np.zeros(shape, np.uint8)
    mask[2:15, 1:9, 2:8] = 1
    affine = np.diag([1.25, 1.25, 1.25, 1.0])
    affine[:3, 3] = [-10, 12, 3]
    nib.save(nib.Nifti1Image(dmri, affine), work / "dmri.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), work / "mask.nii.gz")
    np.savetxt(work / "bvec_in", bvec_in.T, fmt="%.6f")
    np.savetxt(work / "bvec_out", bvec_out.T, fmt="%.6f")


@pytest.fixture(scope="module")
def original_outputs(tmp_path_factory, original_python):
    work = tmp_path_factory.mktemp("equivalence")
    rng = np.random.default_rng(20220315)
    write_subject(work, rng)
    images = rng.uniform(0.0, 0.8, (5, 6, 10, 10, 10)).astype(np.float32)
    bvec_in = np.stack([_unit_vectors(rng, 6) for _ in range(5)])
    bvec_out = np.stack([_unit_vectors(rng, 4) for _ in range(5)])
    np.savez(work / "patches.npz", images=images, bvec_in=bvec_in, bvec_out=bvec_out)

    ours = get_3d_autoencoder()
    randomise(ours, 77)
    save_original_checkpoint(ours, work / "ours3" / "weights")
    ours_pred = ours.predict([images, bvec_in, bvec_out], batch_size=4, verbose=0)

    out = run_original(original_python, ORIGINAL_SCRIPT, str(work), "1000")
    assert "original done" in out
    return {"work": work, "inputs": [images, bvec_in, bvec_out], "ours_pred": ours_pred}


def _assert_non_trivial(prediction):
    # The comparison only means something if the random model produces varied, mostly non-zero output.
    assert np.mean(prediction > 0) > 0.2 and np.std(prediction) > 0.01


@pytest.mark.parametrize("dim", [3, 1])
def test_original_checkpoint_gives_original_predictions(original_outputs, dim):
    work = original_outputs["work"]
    build = get_3d_autoencoder if dim == 3 else get_1d_autoencoder
    model = build(str(work / f"orig{dim}" / "weights"))
    ours = model.predict(original_outputs["inputs"], batch_size=4, verbose=0)
    theirs = np.load(work / f"orig_pred{dim}.npy")
    _assert_non_trivial(theirs)
    diff = float(np.max(np.abs(ours - theirs)))
    print(f"{dim}D patch predictions: max abs diff {diff:.3g} (scaled signal)")
    assert ours.shape == theirs.shape
    assert diff <= TOLERANCE


def test_original_loads_checkpoint_exported_here(original_outputs):
    work = original_outputs["work"]
    theirs = np.load(work / "orig_on_ours3.npy")
    ours = original_outputs["ours_pred"]
    _assert_non_trivial(ours)
    diff = float(np.max(np.abs(ours - theirs)))
    print(f"exported 3D checkpoint in the original: max abs diff {diff:.3g} (scaled signal)")
    assert diff <= TOLERANCE


def _run_cli(work: Path, out: Path, *extra: str, env=None):
    cmd = [
        sys.executable, "-m", "dmri_rcnn.cli.run_dmri_rcnn",
        "-dmri_in", str(work / "dmri.nii.gz"), "-bvec_in", str(work / "bvec_in"),
        "-bvec_out", str(work / "bvec_out"), "-mask", str(work / "mask.nii.gz"),
        "-dmri_out", str(out), "-s", "1000", "--no-progress", *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or os.environ.copy())
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_matches_original_inference_3d(original_outputs, tmp_path):
    work = original_outputs["work"]
    out = tmp_path / "ours3.nii.gz"
    _run_cli(work, out, "-m", "3", "--weights", str(work / "orig3" / "weights"))
    ours, theirs = nib.load(out), nib.load(work / "orig_infer3.nii.gz")
    ours_data, theirs_data = ours.get_fdata(dtype=np.float32), theirs.get_fdata(dtype=np.float32)
    assert ours_data.shape == theirs_data.shape == (25, 10, 10, 5)
    _assert_non_trivial(theirs_data[:15])
    # The last padded patch holds no mask voxel: both leave it zero.
    assert np.all(theirs_data[18:] == 0) and np.all(ours_data[18:] == 0)
    diff = float(np.max(np.abs(ours_data - theirs_data)))
    print(f"3D NIfTI inference: max abs diff {diff:.3g} (signal units, scale {SHELL_SCALE:g})")
    assert diff <= TOLERANCE * SHELL_SCALE
    np.testing.assert_allclose(ours.affine, nib.load(work / "dmri.nii.gz").affine)


def test_cli_with_published_layout_matches_original_cli_1d(original_outputs, tmp_path):
    work = original_outputs["work"]
    home = tmp_path / "home"
    target = home / "1D_RCNN" / "b1000_6in"
    target.mkdir(parents=True)
    for path in (work / "orig1").glob("weights.*"):
        shutil.copy(path, target)
    out = tmp_path / "ours1.nii.gz"
    _run_cli(work, out, "-m", "1", env={**os.environ, "DMRI_RCNN_DIR": str(home)})
    ours = nib.load(out).get_fdata(dtype=np.float32)
    theirs = nib.load(work / "orig_cli1.nii.gz").get_fdata(dtype=np.float32)
    _assert_non_trivial(theirs[:15])
    diff = float(np.max(np.abs(ours - theirs)))
    print(f"1D CLI: max abs diff {diff:.3g} (signal units, scale {SHELL_SCALE:g})")
    assert diff <= TOLERANCE * SHELL_SCALE
