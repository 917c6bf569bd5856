"""Helpers for tests that drive the real ``snakemake`` command line in a temporary directory."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO_ROOT / "workflow" / "Snakefile"


def snakemake_executable() -> str:
    """The ``snakemake`` beside the running Python (the project's environment), else the one on PATH."""
    beside = Path(sys.executable).with_name("snakemake")
    return str(beside) if beside.exists() else shutil.which("snakemake") or "snakemake"


def load_default_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())


def tiny_config() -> dict:
    """The smallest study that still exercises every rule: 1 train, 1 validation, 1 test subject of
    16x16x10 voxels, 30 directions per shell, 1D + 3D at b = 1000 with q_in 6, width 0.05, 2 epochs of
    2 steps."""
    config = copy.deepcopy(load_default_config())
    config["subjects"].update(train=["tr1"], validation=["va1"], test=["te1"])
    config["synthetic"].update(shape=[16, 16, 10], n_directions=30, n_b0=2, write_noiseless=False)
    config["evaluation"] = [{"shell": 1000, "q_in": [6]}]
    config["models"].update(dims=[1, 3], width=0.05, min_filters=1)
    config["models"]["combined"]["enabled"] = False
    config["training"].update(epochs=2, steps_per_epoch=2, validation_steps=1, batch_size=2, shuffle_buffer=64)
    config["inference"]["batch_size"] = 8
    return config


def write_config(workdir: Path, config: dict) -> Path:
    """Write ``config`` as ``workdir/config/config.yaml`` (where the Snakefile's configfile points)."""
    path = Path(workdir) / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_snakemake(workdir: Path, *args: str, timeout: int = 600, check: bool = True, **popen) -> subprocess.CompletedProcess:
    """Run ``snakemake --snakefile <repo>/workflow/Snakefile --directory workdir ARGS``; return the result."""
    command = [snakemake_executable(), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env, **popen)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result
