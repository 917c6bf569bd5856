"""Pretrained models in the study, through the real ``snakemake`` and ``run_dmri_rcnn.py`` commands.

- ``models.weights: published`` with ``training.epochs: 0``: no training job; the published checkpoints
  (made by the test: random weights, non-trivial normalisation statistics; one placed in
  ``$DMRI_RCNN_DIR``, one downloaded over HTTP from 127.0.0.1) are evaluated, and their predictions are
  those of ``run_dmri_rcnn.py`` with the same checkpoint. ``super_resolve`` writes whole scans.
- A width-0.25 model trained by the workflow is used by ``run_dmri_rcnn.py --weights`` without flags.
- Fine-tuning that model (``models.weights`` a path pattern, one epoch) starts from it and changes it.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dmri_rcnn.core.processing.scaling import shell_scale
from published_weights import place_published_checkpoint, random_published_model, serve_tree
from workflow_utils import run_snakemake, tiny_config, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

CONTEXT = "results/context/te1/b1000_q6"
MASK = "results/preprocessed/te1/nodif_brain_mask.nii.gz"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def job_counts(output: str) -> dict[str, int]:
    import re

    assert "Job stats:" in output, output[-4000:]
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def run_command(workdir: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    exe = shutil.which("run_dmri_rcnn.py")
    assert exe, "console script run_dmri_rcnn.py is not installed"
    result = subprocess.run([exe, *args, "--no-progress"], cwd=workdir, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def published_study(tmp_path_factory):
    """Tiny study, published weights, epochs 0: the two predictions and one super-resolved subject."""
    workdir = tmp_path_factory.mktemp("published")
    home = workdir / "weights_home"
    saved = os.environ.get("DMRI_RCNN_DIR"), os.environ.get("DMRI_RCNN_WEIGHTS_URL")
    os.environ["DMRI_RCNN_DIR"] = str(home)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(workdir / "zenodo"))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        # 3D: already in $DMRI_RCNN_DIR; 1D: only on the (local) web server, downloaded by the workflow.
        place_published_checkpoint(random_published_model(3, seed=31), 3, 1000, 6)
        serve_tree(random_published_model(1, seed=32), workdir / "zenodo", 1, 1000, 6)
        thread.start()
        os.environ["DMRI_RCNN_WEIGHTS_URL"] = f"http://127.0.0.1:{server.server_address[1]}"

        config = tiny_config()
        config["subjects"]["train"] = []  # nothing is trained
        config["models"].update(weights="published", width=1.0)
        config["training"]["epochs"] = 0
        config["super_resolve"] = {"subjects": ["clin1"], "model": "3D_b1000_q6", "targets": "12"}
        write_config(workdir, config)
        plan = job_counts(run_snakemake(workdir, "--dry-run", "--cores", "1").stdout)
        run_snakemake(workdir, "--cores", "2", "results/predictions/te1/b1000_q6/1D.nii.gz",
                      "results/predictions/te1/b1000_q6/3D.nii.gz", "super_resolve", timeout=900)
    finally:
        server.shutdown()
        server.server_close()
        for name, value in zip(("DMRI_RCNN_DIR", "DMRI_RCNN_WEIGHTS_URL"), saved):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return workdir, plan


def test_evaluation_only_has_no_training_job(published_study):
    _, plan = published_study
    assert "train_model" not in plan and "make_tfrecords" not in plan and "plot_loss_curves" not in plan
    assert plan["import_published_weights"] == 2 and plan["infer"] == 2 and plan["evaluate"] == 4


@pytest.mark.parametrize("dim", [1, 3])
def test_published_predictions_equal_the_command_with_the_same_checkpoint(published_study, dim):
    workdir, _ = published_study
    out = workdir / f"command_{dim}D.nii.gz"
    run_command(workdir, "-dmri_in", f"{CONTEXT}/context.nii.gz", "-bvec_in", f"{CONTEXT}/context.bvec",
                "-bvec_out", f"{CONTEXT}/targets.bvec", "-mask", MASK, "-dmri_out", str(out), "-s", "1000",
                "-m", str(dim), env={"DMRI_RCNN_DIR": str(workdir / "weights_home"),
                                     "DMRI_RCNN_WEIGHTS_URL": "http://127.0.0.1:9"})
    ours = nib.load(workdir / f"results/predictions/te1/b1000_q6/{dim}D.nii.gz").get_fdata(dtype=np.float32)
    command = nib.load(out).get_fdata(dtype=np.float32)
    assert ours.shape == command.shape and ours.shape[3] == 24
    assert np.ptp(command) > 100.0  # a random model that still predicts a varied signal
    assert np.max(np.abs(ours - command)) <= 1e-4 * shell_scale(1000)


def test_super_resolve_writes_the_scan_with_predicted_volumes(published_study):
    workdir, _ = published_study
    raw = workdir / "resources/synthetic/clin1/T1w/Diffusion"
    source = nib.load(raw / "data.nii.gz")
    bvals_in, bvecs_in = np.loadtxt(raw / "bvals"), np.loadtxt(raw / "bvecs")
    out = workdir / "results/super_resolved/clin1"
    written = nib.load(out / "data.nii.gz")
    bvals, bvecs = np.loadtxt(out / "bvals"), np.loadtxt(out / "bvecs")
    n_b0 = int(np.sum(bvals_in < 50))
    assert n_b0 == 2
    assert written.shape[3] == n_b0 + 6 + 12 == bvals.size == bvecs.shape[1]
    # acquired volumes first, in file order, with their own b-values and vectors; then 12 at b=1000
    b0_in = list(np.flatnonzero(bvals_in < 50))
    acquired = [b0_in.pop(0) if bvals[k] < 50 else int(np.argmin(np.abs(bvecs_in - bvecs[:, [k]]).sum(0)))
                for k in range(8)]
    assert acquired == sorted(acquired) and len(set(acquired)) == 8
    assert np.sum(bvals_in[acquired] < 50) == n_b0 and np.all(np.abs(bvals_in[acquired][bvals_in[acquired] >= 50] - 1000) <= 30)
    np.testing.assert_array_equal(bvals[:8], bvals_in[acquired])
    np.testing.assert_array_equal(bvals[8:], 1000)
    np.testing.assert_allclose(np.linalg.norm(bvecs[:, 8:], axis=0), 1.0, atol=1e-5)
    data, original = np.asarray(written.dataobj), np.asarray(source.dataobj)
    for k, index in enumerate(acquired):
        np.testing.assert_array_equal(data[..., k], original[..., index].astype(data.dtype))  # bit-identical
    assert np.ptp(data[..., 8:]) > 100.0
    np.testing.assert_allclose(written.affine, source.affine)
    np.testing.assert_allclose(written.header.get_zooms(), source.header.get_zooms())
    assert written.header.get_xyzt_units() == source.header.get_xyzt_units()
    assert (workdir / "logs/super_resolve_subject/clin1.log").is_file()


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory):
    """Tiny study, 3D model of width 0.25 trained from scratch (one short epoch)."""
    workdir = tmp_path_factory.mktemp("trained")
    config = tiny_config()
    config["models"].update(dims=[3], width=0.25)
    config["training"].update(epochs=1)
    write_config(workdir, config)
    run_snakemake(workdir, "--cores", "2", "results/predictions/te1/b1000_q6/3D.nii.gz", timeout=900)
    return workdir, config


def test_command_uses_a_width_025_model_trained_by_the_workflow(trained_study):
    workdir, _ = trained_study
    out = workdir / "command.nii.gz"
    result = run_command(workdir, "-dmri_in", f"{CONTEXT}/context.nii.gz", "-bvec_in", f"{CONTEXT}/context.bvec",
                         "-bvec_out", f"{CONTEXT}/targets.bvec", "-mask", MASK, "-dmri_out", str(out), "-s", "1000",
                         "--weights", "results/models/3D_b1000_q6/best.weights.h5")
    assert "Model Type -> 3D" in result.stdout
    ours = nib.load(workdir / "results/predictions/te1/b1000_q6/3D.nii.gz").get_fdata(dtype=np.float32)
    command = nib.load(out).get_fdata(dtype=np.float32)
    np.testing.assert_allclose(command, ours, rtol=0, atol=1e-4 * shell_scale(1000))


def test_fine_tuning_from_another_runs_model(trained_study, tmp_path):
    """models.weights: a path pattern, epochs 1: the history starts at the start weights, which change."""
    from dmri_rcnn.core.model import load_trained_model
    from dmri_rcnn.core.model_spec import read_model_spec

    workdir, config = trained_study
    start = tmp_path / "start"
    start.mkdir()
    for name in ("best.weights.h5", "best.weights.json"):
        shutil.copy(workdir / "results/models/3D_b1000_q6" / name, start / f"3D_b1000_q6.{name.split('.', 1)[1]}")
    config = {**config, "models": {**config["models"], "weights": str(start / "{model}.weights.h5")}}
    write_config(workdir, config)
    plan = job_counts(run_snakemake(workdir, "--dry-run", "--cores", "1",
                                    "results/models/3D_b1000_q6/history.tsv").stdout)
    assert plan["train_model"] == 1 and "import_published_weights" not in plan
    run_snakemake(workdir, "--cores", "2", "results/models/3D_b1000_q6/history.tsv", timeout=900)
    history = pd.read_csv(workdir / "results/models/3D_b1000_q6/history.tsv", sep="\t")
    assert list(history["epoch"]) == [0, 1]
    assert np.isnan(history.loc[0, "loss"]) and np.isfinite(history.loc[0, "val_loss"])
    log = (workdir / "logs/train_model/3D_b1000_q6.log").read_text()
    assert f"from {start / '3D_b1000_q6.weights.h5'}" in log
    tuned = load_trained_model(workdir / "results/models/3D_b1000_q6/best.weights.h5")
    before = load_trained_model(start / "3D_b1000_q6.weights.h5")
    changed = [not np.array_equal(a, b) for a, b in zip(tuned.get_weights(), before.get_weights())]
    assert sum(changed) > len(changed) // 2
    assert read_model_spec(start / "3D_b1000_q6.weights.h5") == read_model_spec(
        workdir / "results/models/3D_b1000_q6/best.weights.h5")
