"""Shared fixtures. Tests run on CPU, offline, with DIPY's data folder kept in a temporary place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]

# Console scripts (run_dmri_rcnn.py, snakemake, ...) and `python` in subprocesses must be those of the
# environment running the tests, also when pytest is started as .venv/bin/pytest without activation.
_ENV_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _ENV_BIN:
    os.environ["PATH"] = _ENV_BIN + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(autouse=True)
def _isolated_home_dirs(tmp_path_factory, monkeypatch):
    """Keep DIPY's and dmri_rcnn's data folders out of the user's home."""
    monkeypatch.setenv("DIPY_HOME", str(tmp_path_factory.getbasetemp() / "dipy_home"))
    monkeypatch.setenv("DMRI_RCNN_DIR", str(tmp_path_factory.getbasetemp() / "dmri_rcnn_home"))


@pytest.fixture(scope="session")
def original_python() -> Path:
    """Python of the separate environment holding the original ``dmri-rcnn==0.4.2``.

    Taken from ``$DMRI_RCNN_ORIGINAL_PYTHON`` (``make test`` sets it) or built with ``make original-env``.
    """
    env_path = os.environ.get("DMRI_RCNN_ORIGINAL_PYTHON")
    python = Path(env_path) if env_path else REPO_ROOT / ".venv-original" / "bin" / "python"
    if not python.exists():
        subprocess.run(["make", "-C", str(REPO_ROOT), "original-env"], check=True)
    check = subprocess.run(
        [str(python), "-c", "import dmri_rcnn, tf_keras; print(dmri_rcnn.__file__)"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
    assert check.returncode == 0, f"original environment at {python} is broken:\n{check.stderr}"
    return python


def run_original(original_python: Path, script: str, *args: str, timeout: int = 600) -> str:
    """Run ``script`` (Python source) with the original package under legacy Keras; return stdout."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": ""}
    proc = subprocess.run(
        [str(original_python), "-c", script, *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(f"original package script failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Two small simulated subjects as TFRecords: ``[train, validation]`` (12x12x10 voxels, 20 directions)."""
    from dmri_rcnn.core.processing import save_tfrecord_data
    from dmri_rcnn.simulation import simulate_subject

    folder = tmp_path_factory.mktemp("records")
    paths = []
    for name, seed in (("train", 1), ("val", 2)):
        subject = simulate_subject(seed=seed, shape=(12, 12, 10), n_directions=20, n_b0=1)
        path = folder / name / "part-0.tfrecord"
        save_tfrecord_data(subject.dmri, subject.bvecs, subject.bvals, subject.mask, path)
        paths.append(path)
    return paths
