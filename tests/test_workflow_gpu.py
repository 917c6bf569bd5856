"""One GPU on a workstation: `--resources gpu=1` runs one TensorFlow job at a time, the real snakemake CLI.

Two models (1D and 3D of the tiny study) train, one epoch of one step each, first with plain
``--cores 2``, then again with ``--resources gpu=1``; a job's interval is read from its Snakemake
benchmark file (written as the job ends, holding the job's seconds).
"""

from __future__ import annotations

import re

import pandas as pd
import pytest

from workflow_utils import REPO_ROOT, run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow

MODELS = ("1D_b1000_q6", "3D_b1000_q6")
TARGETS = [f"results/models/{model}/best.weights.h5" for model in MODELS]


def run_training(workdir, *options: str) -> list[tuple[float, float]]:
    """Train both models with ``options``; (start, end) in seconds of each training job, in start order."""
    # targets first: --forcerun and --resources take every value that follows them
    result = run_snakemake(workdir, *TARGETS, "--cores", "2", "--notemp", *options)
    output = result.stdout + result.stderr
    assert output.count("rule train_model") == 2, output[-3000:]
    intervals = []
    for model in MODELS:
        benchmark = workdir / "benchmarks" / "train_model" / f"{model}.tsv"
        seconds = float(pd.read_csv(benchmark, sep="\t")["s"].iloc[0])
        end = benchmark.stat().st_mtime
        intervals.append((end - seconds, end))
    return sorted(intervals)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny study trained once (plain --cores 2), its TFRecords kept for training again; the intervals."""
    workdir = tmp_path_factory.mktemp("gpu_workstation")
    config = tiny_config()
    config["training"].update(epochs=1, steps_per_epoch=1, validation_steps=1)
    write_config(workdir, config)
    return workdir, run_training(workdir)


@pytest.mark.slow
def test_without_a_gpu_limit_the_trainings_run_side_by_side(trained):
    _, [(_, first_end), (second_start, _)] = trained
    assert second_start < first_end - 1


@pytest.mark.slow
def test_one_gpu_runs_one_training_at_a_time(trained):
    workdir, _ = trained
    (_, first_end), (second_start, _) = run_training(workdir, "--forcerun", "train_model", "--resources", "gpu=1")
    assert second_start >= first_end


def test_every_tensorflow_step_lets_gpu_memory_grow():
    """Each rule in the TensorFlow env calls configure_devices (train_model through dmri_rcnn.training)."""
    rules = re.split(r"^rule ", "".join(p.read_text() for p in (REPO_ROOT / "workflow" / "rules").glob("*.smk")),
                     flags=re.MULTILINE)
    scripts = [re.search(r'"\.\./scripts/(\w+\.py)"', rule).group(1) for rule in rules if "envs/tensorflow.yaml" in rule]
    assert {"train_model.py", "infer.py", "super_resolve_subject.py", "make_tfrecords.py"} <= set(scripts)
    for script in scripts:
        text = (REPO_ROOT / "workflow" / "scripts" / script).read_text()
        assert "configure_devices()" in text or "train_model(" in text, script


def test_loading_a_trained_model_lets_gpu_memory_grow_first(monkeypatch, tmp_path):
    import dmri_rcnn.core.model.trained as trained
    from dmri_rcnn.core.model import get_1d_autoencoder, save_trained_model
    from dmri_rcnn.core.model_spec import ModelSpec

    weights = tmp_path / "m.weights.h5"
    save_trained_model(get_1d_autoencoder(width=0.05), ModelSpec(model_dim=1, q_in=6, shells=(1000,), width=0.05), weights)
    calls = []
    monkeypatch.setattr(trained, "configure_devices", lambda: calls.append("devices"))
    monkeypatch.setattr(trained, "build_model_from_spec",
                        lambda *args, build=trained.build_model_from_spec: calls.append("model") or build(*args))
    trained.load_trained_model(weights)
    assert calls == ["devices", "model"]
