"""The user's own subjects (subjects.source: local) are checked before any job: one line per bad subject
naming the subject, the file, what was found and what was expected; nothing written, inputs unchanged."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from workflow_utils import run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow

SUBJECTS = ("tr1", "va1", "te1")
FOLDER = "data/{subject}/T1w/Diffusion"


def local_config() -> dict:
    config = tiny_config()
    config["subjects"]["source"] = "local"
    config["local"] = {"path": FOLDER}
    return config


@pytest.fixture(scope="module")
def good_study(tmp_path_factory) -> Path:
    """Three tiny HCP-layout subjects (6x6x4 voxels, 20 directions per shell, 1 b0) and their config."""
    from dmri_rcnn.simulation import simulate_subject, write_subject

    root = tmp_path_factory.mktemp("good_study")
    for seed, subject in enumerate(SUBJECTS):
        write_subject(simulate_subject(seed=seed, shape=(6, 6, 4), n_directions=20, n_b0=1), root / FOLDER.format(subject=subject))
    write_config(root, local_config())
    return root


@pytest.fixture
def study(good_study, tmp_path) -> Path:
    """A private copy of the good study, to be damaged by one test."""
    shutil.copytree(good_study, tmp_path, dirs_exist_ok=True)
    return tmp_path


def subject_file(root: Path, subject: str, name: str) -> Path:
    return root / FOLDER.format(subject=subject) / name


def keep_volumes(root: Path, subject: str, keep) -> None:
    """Keep only the volumes selected by ``keep(bvals)`` in the image, bvals and bvecs."""
    bvals_path, bvecs_path = subject_file(root, subject, "bvals"), subject_file(root, subject, "bvecs")
    bvals, bvecs = np.loadtxt(bvals_path), np.loadtxt(bvecs_path)
    index = np.flatnonzero(keep(bvals))
    image = nib.load(subject_file(root, subject, "data.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[..., index], image.affine), subject_file(root, subject, "data.nii.gz"))
    np.savetxt(bvals_path, bvals[None, index], fmt="%d")
    np.savetxt(bvecs_path, bvecs[:, index], fmt="%.6f")


def drop_last_value(path: Path) -> None:
    table = np.loadtxt(path, ndmin=2)
    np.savetxt(path, table[:, :-1], fmt="%.6f")


def rewrite_image(path: Path, change) -> None:
    image = nib.load(path)
    data, affine = change(np.asarray(image.dataobj), image.affine.copy())
    nib.save(nib.Nifti1Image(data, affine), path)


def stretch_one_bvec(root: Path, subject: str) -> None:
    path = subject_file(root, subject, "bvecs")
    bvals, bvecs = np.loadtxt(subject_file(root, subject, "bvals")), np.loadtxt(path)
    column = int(np.flatnonzero(bvals > 500)[0])
    bvecs[:, column] *= 0.5
    np.savetxt(path, bvecs, fmt="%.6f")


def eight_directions_at_b1000(root: Path, subject: str) -> None:
    def keep(bvals):
        at_b1000 = np.flatnonzero(np.abs(bvals - 1000) <= 30)
        selected = np.abs(bvals - 1000) > 30
        selected[at_b1000[:8]] = True
        return selected

    keep_volumes(root, subject, keep)


def super_resolve_sr1_with_4_directions(root: Path) -> None:
    shutil.copytree(root / FOLDER.format(subject="te1"), root / FOLDER.format(subject="sr1"))

    def keep(bvals):
        at_b1000 = np.flatnonzero(np.abs(bvals - 1000) <= 30)
        selected = np.abs(bvals - 1000) > 30
        selected[at_b1000[:4]] = True
        return selected

    keep_volumes(root, "sr1", keep)
    config = local_config()
    config["super_resolve"] = {"subjects": ["sr1"], "model": "3D_b1000_q6"}
    write_config(root, config)


def ask_q_in_10(root: Path) -> None:
    config = local_config()
    config["evaluation"] = [{"shell": 1000, "q_in": [10]}]
    write_config(root, config)


TE1 = "data/te1/T1w/Diffusion"
TR1 = "data/tr1/T1w/Diffusion"
# case -> (damage the study, the start of the one line, a fragment it must hold)
BAD_SUBJECTS = {
    "bvals one short": (
        lambda root: drop_last_value(subject_file(root, "te1", "bvals")),
        f"subject te1: {TE1}/bvals has 60 values but data.nii.gz has 61 volumes",
        "",
    ),
    "bvecs one short": (
        lambda root: drop_last_value(subject_file(root, "va1", "bvecs")),
        "subject va1: data/va1/T1w/Diffusion/bvecs has 60 directions but data.nii.gz has 61 volumes",
        "",
    ),
    "3D image": (
        lambda root: rewrite_image(subject_file(root, "te1", "data.nii.gz"), lambda d, a: (d[..., 0], a)),
        f"subject te1: {TE1}/data.nii.gz is 3D with shape (6, 6, 4); expected a 4D image",
        "",
    ),
    "mask of another shape": (
        lambda root: rewrite_image(subject_file(root, "te1", "nodif_brain_mask.nii.gz"), lambda d, a: (d[:, :, :3], a)),
        f"subject te1: {TE1}/nodif_brain_mask.nii.gz has shape (6, 6, 3)",
        "expected a 3D mask of the spatial shape (6, 6, 4) of data.nii.gz",
    ),
    "empty mask, training subject": (
        lambda root: rewrite_image(subject_file(root, "tr1", "nodif_brain_mask.nii.gz"), lambda d, a: (0 * d, a)),
        f"subject tr1: {TR1}/nodif_brain_mask.nii.gz is empty",
        "at least one brain voxel",
    ),
    "empty mask, test subject": (
        lambda root: rewrite_image(subject_file(root, "te1", "nodif_brain_mask.nii.gz"), lambda d, a: (0 * d, a)),
        f"subject te1: {TE1}/nodif_brain_mask.nii.gz is empty",
        "",
    ),
    "b-vector of length 0.5": (
        lambda root: stretch_one_bvec(root, "te1"),
        f"subject te1: {TE1}/bvecs: column",
        "has length 0.5; expected unit b-vectors",
    ),
    "training subject without the evaluated shell": (
        lambda root: keep_volumes(root, "tr1", lambda b: np.abs(b - 1000) > 30),
        f"subject tr1: {TR1}/bvals has no volume at b = 1000",
        "a training subject needs that shell (q_in 6 + q_out 10 per training example)",
    ),
    "test subject without the evaluated shell": (
        lambda root: keep_volumes(root, "te1", lambda b: np.abs(b - 1000) > 30),
        f"subject te1: {TE1}/bvals has no volume at b = 1000",
        "a test subject needs that shell",
    ),
    "8 directions at b = 1000 with q_in 10": (
        lambda root: (eight_directions_at_b1000(root, "te1"), ask_q_in_10(root)),
        f"subject te1: {TE1}/bvals has 8 directions at b = 1000 (±30); a test subject needs at least 11",
        "q_in 10 context + 1 held-out target",
    ),
    "training subject with too few directions": (
        lambda root: eight_directions_at_b1000(root, "tr1"),
        f"subject tr1: {TR1}/bvals has 8 directions at b = 1000 (±30); a training subject needs at least 16",
        "",
    ),
    "super-resolved subject with too few directions": (
        super_resolve_sr1_with_4_directions,
        "subject sr1: data/sr1/T1w/Diffusion/bvals has 4 directions at b = 1000 (±30); a super-resolved subject needs at least 6",
        "3D_b1000_q6 reads q_in 6 context directions",
    ),
    "test subject without a b0": (
        lambda root: keep_volumes(root, "te1", lambda b: b > 50),
        f"subject te1: {TE1}/bvals has no b0 volume",
        "",
    ),
}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _shift(affine: np.ndarray) -> np.ndarray:
    """A 2 mm translation."""
    shift = np.zeros_like(affine)
    shift[:3, 3] = 2.0
    return shift


@pytest.mark.parametrize("case", list(BAD_SUBJECTS))
def test_a_bad_local_subject_stops_the_dry_run_in_one_line(study, case):
    damage, start, fragment = BAD_SUBJECTS[case]
    damage(study)
    before = tree_digest(study / "data")
    result = run_snakemake(study, "--dry-run", "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in output.splitlines() if line.startswith("subject ")]
    assert len(lines) == 1, output[-3000:]
    assert lines[0].startswith(start), lines[0]
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in output
    assert not (study / "results").exists()
    assert tree_digest(study / "data") == before


def test_a_mask_with_another_affine_is_one_warning(study):
    rewrite_image(
        subject_file(study, "te1", "nodif_brain_mask.nii.gz"),
        lambda d, a: (d, a + _shift(a)),
    )
    result = run_snakemake(study, "--dry-run", "--cores", "1")
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "subject te1:" in line]
    assert len(lines) == 1, output[-3000:]
    assert f"{TE1}/nodif_brain_mask.nii.gz: its affine differs" in lines[0]
    assert f"{TE1}/data.nii.gz" in lines[0]
    assert not (study / "results").exists()


def test_good_local_subjects_dry_run(good_study):
    before = tree_digest(good_study / "data")
    result = run_snakemake(good_study, "--dry-run", "--cores", "1")
    assert "subject " not in result.stdout + result.stderr
    assert "autocrop" in result.stdout
    assert not (good_study / "results").exists()
    assert tree_digest(good_study / "data") == before


def test_a_subject_with_a_missing_file_is_left_to_snakemake(study):
    # a run may ask for some subjects only; Snakemake names the missing file when a job needs it
    subject_file(study, "te1", "bvals").unlink()
    result = run_snakemake(study, "--dry-run", "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{TE1}/bvals" in output
    assert not [line for line in output.splitlines() if line.startswith("subject ")]


# ----- checks that need the voxels run in the first job that reads them ---------------------------------


def test_a_nan_voxel_stops_the_first_job_naming_subject_and_file(study):
    path = subject_file(study, "te1", "data.nii.gz")
    rewrite_image(path, lambda d, a: (np.where(np.arange(d.size).reshape(d.shape) == d.size // 2, np.nan, d).astype(np.float32), a))
    before = tree_digest(study / "data")
    result = run_snakemake(study, "--cores", "1", "results/preprocessed/te1/crop_box.json", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in output.splitlines() if "subject te1:" in line]
    assert len(lines) == 1, output[-3000:]
    assert f"subject te1: {TE1}/data.nii.gz: expected finite values, found 1 NaN/Inf value(s)" in lines[0]
    assert "Traceback" not in output
    assert not [p for p in (study / "results").rglob("*") if p.is_file()]
    assert tree_digest(study / "data") == before


# ----- a workflow script's bad input and Ctrl-C: one line in its log -------------------------------------

STEP = """
import sys
from types import SimpleNamespace
from dmri_rcnn.errors import InputError
from dmri_rcnn.study.logs import start_step

class Wildcards(dict):
    pass

snakemake = SimpleNamespace(
    log=[sys.argv[1]], rule="evaluate", wildcards=Wildcards(subject="te1"),
    input=["results/predictions/te1/b1000_q6/3D.nii.gz", "results/preprocessed/te1/nodif_brain_mask.nii.gz"],
    config={"subjects": {"source": "local"}, "local": {"path": "data/{subject}/T1w/Diffusion"}},
)
start_step(snakemake)
if sys.argv[2] == "input":
    raise InputError("mask is empty; metrics need at least one voxel inside it")
if sys.argv[2] == "copy":
    raise InputError("results/preprocessed/te1/bvals: no volume within 30 of shell b=1000")
raise KeyboardInterrupt
"""


@pytest.mark.parametrize(
    "fault, status, line",
    [
        (
            "input",
            2,
            "subject te1: mask is empty; metrics need at least one voxel inside it (rule evaluate, reading "
            "results/predictions/te1/b1000_q6/3D.nii.gz, results/preprocessed/te1/nodif_brain_mask.nii.gz)",
        ),
        (
            "copy",
            2,
            "subject te1: results/preprocessed/te1/bvals: no volume within 30 of shell b=1000 (rule evaluate, "
            "reading results/predictions/te1/b1000_q6/3D.nii.gz, results/preprocessed/te1/nodif_brain_mask.nii.gz); "
            "results/preprocessed/te1/bvals is cropped from data/te1/T1w/Diffusion/bvals",
        ),
        ("interrupt", 130, "evaluate: interrupted; no output written"),
    ],
)
def test_a_workflow_script_ends_with_one_line_in_its_log(tmp_path, fault, status, line):
    import subprocess
    import sys

    log = tmp_path / "step.log"
    result = subprocess.run([sys.executable, "-c", STEP, str(log), fault], capture_output=True, text=True, timeout=120)
    assert result.returncode == status, result.stderr
    text = log.read_text()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1 and text.rstrip().endswith(line), text


# ----- what each role needs, as a function of the config (no snakemake) ----------------------------------


def test_shell_requirements_follow_the_roles():
    from dmri_rcnn.study.preflight import shell_requirements

    config = local_config()
    config["evaluation"] = [{"shell": 1000, "q_in": [6, 10]}]
    config["models"]["combined"] = {"enabled": True, "dims": [3], "shells": [1000, 2000], "q_in": [10], "norm": False}
    counts = {role: {shell: need[0] for shell, need in shell_requirements(config, role).items()} for role in ("train", "validation", "test")}
    assert counts["test"] == {1000: 11}
    assert counts["train"] == {1000: 20, 2000: 20}
    assert counts["validation"] == {1000: 20, 2000: 20}
    config["training"]["epochs"] = 0
    assert shell_requirements(config, "train") == {}
    assert {shell: need[0] for shell, need in shell_requirements(config, "validation").items()} == {1000: 11}
