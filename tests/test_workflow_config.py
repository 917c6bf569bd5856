"""Fast workflow checks: config validation, dry runs (default, paper on a local S3 server), lint, format,
and the conda environment files."""

from __future__ import annotations

import ast
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from workflow_utils import REPO_ROOT, load_default_config, run_snakemake, snakemake_executable, tiny_config, write_config

pytestmark = pytest.mark.workflow


def dry_run(workdir: Path, config: dict, *extra: str, check: bool = True):
    write_config(workdir, config)
    return run_snakemake(workdir, "--dry-run", "--cores", "1", *extra, check=check)


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    assert "Job stats:" in output, f"no job table in the dry run's output:\n{output[-4000:]}"
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_default_config_builds_the_whole_study(tmp_path):
    config = load_default_config()
    result = dry_run(tmp_path, config)
    counts = job_counts(result.stdout)
    n_subjects = sum(len(config["subjects"][g]) for g in ("train", "validation", "test"))
    n_test = len(config["subjects"]["test"])
    assert counts["simulate_subject"] == n_subjects
    assert counts["train_model"] == 2  # 1D and 3D at b1000, q_in 6
    assert counts["infer"] == 2 * n_test
    assert counts["predict_sh_baseline"] == len(config["sh_baselines"]) * n_test
    # the tuned SH is chosen once per (shell, q_in) on the validation subjects, whose context is split too
    assert counts["select_sh_baseline"] == 1
    assert counts["subsample_context"] == n_test + len(config["subjects"]["validation"])
    assert counts["evaluate"] == (2 + len(config["sh_baselines"])) * n_test
    for rule in ("summarise", "plot_example_slices", "plot_loss_curves", "all"):
        assert counts[rule] == 1
    assert counts["plot_metric_vs_q_in"] == 6  # error (MAE) and five more metrics against q_in
    assert not (tmp_path / "results").exists(), "a dry run must not write results"


def test_combined_model_is_evaluated_at_its_shells(tmp_path):
    config = tiny_config()
    config["synthetic"]["n_directions"] = 90
    config["evaluation"] = [{"shell": 1000, "q_in": [6, 10]}, {"shell": 2000, "q_in": [10]}]
    config["models"]["combined"] = {"enabled": True, "dims": [3], "shells": [1000, 2000], "q_in": [10]}
    result = dry_run(tmp_path, config)
    counts = job_counts(result.stdout)
    assert counts["train_model"] == 3 * 2 + 1
    assert "results/models/3D_all_q10/best.weights.h5" in result.stdout
    assert "results/predictions/te1/b2000_q10/3D_combined.nii.gz" in result.stdout
    assert "results/predictions/te1/b1000_q6/3D_combined.nii.gz" not in result.stdout


def test_published_full_width_weights_fit_the_default_min_filters(tmp_path):
    """``models: {weights: published, width: 1.0}`` and ``training: {epochs: 0}`` on the default config
    (``min_filters: 16``) is planned: at width 1.0 no layer has fewer than 16 filters, so the published
    weights (described with min_filters 1) build the same network; the jobs check them the same way
    (``test_trained_models.py::test_weights_fit_a_model_when_they_build_its_network``)."""
    config = load_default_config()
    config["models"].update(weights="published", width=1.0)
    config["training"]["epochs"] = 0
    assert config["models"]["min_filters"] == 16
    counts = job_counts(dry_run(tmp_path, config).stdout)
    assert counts["import_published_weights"] == len(config["models"]["dims"]) and "train_model" not in counts


# The cross-key checks are unit-tested in test_study_design.py; these few go through the real snakemake
# to show that both the schema's and the design's errors stop a run before any job.
BAD_CONFIGS = {
    "unknown shell": (lambda c: c["evaluation"][0].update(shell=1500), "evaluation[0].shell", "1500"),
    "train/test overlap": (lambda c: c["subjects"].update(test=["tr1"]), "subjects.test", "tr1"),
    "cosine without steps": (
        lambda c: c["training"].update(lr_schedule="cosine", steps_per_epoch=None),
        "training.lr_schedule",
        "steps_per_epoch",
    ),
    "unknown key (schema)": (lambda c: c["training"].update(epochz=3), "training", "epochz"),
    "published at width 0.05": (lambda c: c["models"].update(weights="published"), "models.width", "full width"),
    "no published model": (
        lambda c: (c["models"].update(weights="published", width=1.0), c["evaluation"][0].update(shell=2000)),
        "models.weights",
        "model 1D_b2000_q6 has no published weights; published: 1D_b1000_q6",
    ),
    "evaluation only from scratch": (lambda c: c["training"].update(epochs=0), "training.epochs", "models.weights"),
    "missing weights of a path pattern": (
        lambda c: (c["models"].update(weights="elsewhere/{model}.weights.h5"), c["training"].update(epochs=0)),
        "models.weights",
        "expected elsewhere/1D_b1000_q6.weights.h5",
    ),
    "super-resolve with a model not in the study": (
        lambda c: c.update(super_resolve={"subjects": ["x1"], "model": "3D_b2000_q10"}),
        "super_resolve.model",
        "3D_b2000_q10 is not one of the study's models",
    ),
    "bad source (schema)": (lambda c: c["subjects"].update(source="ftp"), "source", "ftp"),
    "example subject not a test subject": (
        lambda c: c["report"].update(example_subject="nosuch"),
        "report.example_subject",
        "nosuch is not a test subject",
    ),
    "fixed SH order above the context": (
        lambda c: c["sh_baselines"].append({"name": "SH8", "sh_order": 8, "smooth": 0.0}),
        "sh_baselines[2].sh_order",
        "order 8 has 45 coefficients",
    ),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, name):
    mutate, key, detail = BAD_CONFIGS[name]
    config = tiny_config()
    mutate(config)
    write_config(tmp_path, config)
    # a real run (not a dry run): it must stop while reading the config, before any job starts
    result = run_snakemake(tmp_path, "--cores", "1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert key in output, output[-3000:]
    assert detail in output, output[-3000:]
    assert "rule simulate_subject" not in output and "localrule" not in output
    assert "Failed validating" not in output, "the schema's error is one line, not the schema and the config"
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


def test_lint_reports_nothing():
    result = run_snakemake(REPO_ROOT, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_snakefmt_check_passes():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    result = subprocess.run(
        [str(snakefmt) if snakefmt.exists() else "snakefmt", "--check", "workflow/"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def local_s3():
    """A moto S3 server on 127.0.0.1 (stopped by PID afterwards); yields its endpoint URL."""
    moto = Path(sys.executable).with_name("moto_server")
    port = _free_port()
    process = subprocess.Popen(
        [str(moto) if moto.exists() else "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


def paper_dry_run(tmp_path, local_s3, config_name: str):
    """Dry run of a config/<name> HCP study against a local S3 server holding placeholder objects."""
    import boto3

    paper = yaml.safe_load((REPO_ROOT / "config" / config_name).read_text())
    client = boto3.client(
        "s3", endpoint_url=local_s3, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    client.create_bucket(Bucket=paper["hcp_s3"]["bucket"])
    subjects = [s for g in ("train", "validation", "test") for s in paper["subjects"][g]]
    prefix = paper["hcp_s3"]["prefix"]
    for subject in subjects:
        for name in ("data.nii.gz", "bvals", "bvecs", "nodif_brain_mask.nii.gz"):
            key = f"{prefix.format(subject=subject)}/{name}"
            client.put_object(Bucket=paper["hcp_s3"]["bucket"], Key=key, Body=b"placeholder")
    shutil.copy(REPO_ROOT / "config" / "config.yaml", tmp_path / "base.yaml")
    write_config(tmp_path, load_default_config())
    result = run_snakemake(
        tmp_path,
        "--dry-run",
        "--cores",
        "1",
        "--configfile",
        str(REPO_ROOT / "config" / config_name),
        "--storage-s3-endpoint-url",
        local_s3,
        "--storage-s3-access-key",
        "test",
        "--storage-s3-secret-key",
        "test",
    )
    return paper, subjects, job_counts(result.stdout)


def test_paper_config_dry_run_builds_the_full_dag_without_downloading(tmp_path, local_s3):
    paper, subjects, counts = paper_dry_run(tmp_path, local_s3, "paper.yaml")
    assert counts["download_hcp_subject"] == len(subjects)
    # 5 (shell, q_in) settings x (1D, 3D) + the combined 3D model
    assert counts["train_model"] == 11
    # per test subject: 5 settings x (1D, 3D), plus the combined model at its three q_in = 10 settings
    assert counts["infer"] == len(paper["subjects"]["test"]) * (5 * 2 + 3)
    assert not list(tmp_path.glob("resources/**/*.nii.gz")), "a dry run must not download"


def test_paper_published_config_evaluates_the_published_weights_without_training(tmp_path, local_s3):
    paper, subjects, counts = paper_dry_run(tmp_path, local_s3, "paper-published.yaml")
    assert paper["subjects"]["train"] == [] and paper["models"]["weights"] == "published"
    assert counts["download_hcp_subject"] == len(subjects) == 9
    assert "train_model" not in counts and "make_tfrecords" not in counts
    # 5 settings x (1D, 3D) + the combined 3D model, each imported once
    assert counts["import_published_weights"] == 11
    assert counts["infer"] == len(paper["subjects"]["test"]) * (5 * 2 + 3)
    assert counts["predict_sh_baseline"] == len(paper["subjects"]["test"]) * 5 * 2
    assert not list(tmp_path.glob("resources/**/*.nii.gz")) and not list(tmp_path.glob("resources/**/*.h5"))


# ----- conda environments ----------------------------------------------------------------------------

#: import name -> conda package name, where they differ
CONDA_NAME = {"yaml": "pyyaml", "matplotlib": "matplotlib-base", "tensorflow": "tensorflow-cpu", "skimage": "scikit-image"}


def _env_packages(env_file: Path) -> set[str]:
    spec = yaml.safe_load(env_file.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"], env_file
    names = set()
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            for pip_dep in dep["pip"]:
                names.add(re.split(r"[=<>!~ ]", pip_dep)[0].lower())
        else:
            name, _, version = dep.partition("=")
            assert version, f"{env_file}: {dep} is not pinned"
            names.add(name.lower())
    return names


def _third_party_imports(path: Path, seen: set[Path]) -> set[str]:
    """Top-level third-party modules imported by a script, following imports into dmri_rcnn."""
    if path in seen or not path.exists():
        return set()
    seen.add(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in modules:
            top = module.split(".")[0]
            if top == "dmri_rcnn":
                base = REPO_ROOT / "src" / Path(*module.split("."))
                for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                    found |= _third_party_imports(candidate, seen)
                # importing a submodule runs its parent packages' __init__ too
                parts = module.split(".")
                for depth in range(1, len(parts)):
                    found |= _third_party_imports(REPO_ROOT / "src" / Path(*parts[:depth]) / "__init__.py", seen)
            elif top not in sys.stdlib_module_names and top != "snakemake":
                found.add(top)
    return found


def test_conda_envs_are_pinned_and_cover_their_rules_imports():
    rules_dir = REPO_ROOT / "workflow" / "rules"
    checked = 0
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        for block in re.split(r"\n(?=\s*rule )", text):
            conda = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if not conda:
                continue
            env_file = (rules_dir / conda.group(1)).resolve()
            assert env_file.is_file(), f"{smk.name}: missing env {conda.group(1)}"
            packages = _env_packages(env_file)
            assert "-e .." in env_file.read_text(), f"{env_file.name} must install the dmri_rcnn package"
            if script:
                imports = _third_party_imports((rules_dir / script.group(1)).resolve(), set())
                missing = {CONDA_NAME.get(name, name) for name in imports} - packages
                assert not missing, f"{env_file.name} lacks {sorted(missing)} imported by {script.group(1)}"
                checked += 1
    assert checked >= 10


def test_each_rule_runs_the_script_named_after_it():
    """Rule ``X`` runs ``workflow/scripts/X.py``, so a log line, a rule and its script are found by one name."""
    rules = re.split(r"^\s*rule ", "\n".join(p.read_text() for p in sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk"))),
                     flags=re.MULTILINE)
    named = {}
    for block in rules[1:]:
        script = re.search(r'script:\s*\n\s*"\.\./scripts/([\w.]+)\.py"', block)
        if script:
            named[block.split(":", 1)[0].strip()] = script.group(1)
    assert len(named) >= 10, named
    assert {rule: script for rule, script in named.items() if rule != script} == {}


@pytest.mark.parametrize("pattern", ["data/{subject}/T1w/Diffusion", "scans/sub-{subject}"])
def test_local_subjects_are_read_in_place(tmp_path, pattern):
    from dmri_rcnn.simulation import simulate_subject, write_subject

    config = tiny_config()
    config["subjects"]["source"] = "local"
    config["local"] = {"path": pattern}
    for index, subject in enumerate(("tr1", "va1", "te1")):
        write_subject(simulate_subject(seed=index, shape=(6, 6, 4), n_directions=20, n_b0=1), tmp_path / pattern.format(subject=subject))
    result = dry_run(tmp_path, config)
    counts = job_counts(result.stdout)
    assert "simulate_subject" not in counts and "crop_truth" not in counts
    assert counts["autocrop"] == 3
    assert f"{pattern.format(subject='te1')}/data.nii.gz" in result.stdout


def _schema_defaults(schema: dict, node: dict, path: str = ""):
    """(dotted key, default) of every property with a default, object properties recursed into."""
    for key, spec in node.get("properties", {}).items():
        if "$ref" in spec:
            spec = {**schema["definitions"][spec["$ref"].split("/")[-1]], **spec}
        dotted = f"{path}.{key}" if path else key
        if "default" in spec:
            yield dotted, spec["default"]
        if spec.get("type") == "object":
            yield from _schema_defaults(schema, spec, dotted)


def test_schema_defaults_equal_the_default_config():
    # a key left out of a user's config means the same as the shipped config.yaml
    schema = yaml.safe_load((REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    config = load_default_config()
    checked = 0
    for dotted, default in _schema_defaults(schema, schema):
        value = config
        for part in dotted.split("."):
            assert part in value, f"config/config.yaml lacks {dotted} (schema default {default!r})"
            value = value[part]
        if isinstance(default, dict):  # an object's default: the keys it names must agree
            assert {k: value.get(k) for k in default} == default, dotted
        else:
            assert value == default, f"{dotted}: schema default {default!r}, config/config.yaml {value!r}"
        checked += 1
    assert checked >= 30


def test_every_rule_has_a_log_and_a_benchmark_mirroring_it():
    rules = 0
    for smk in sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = list(re.finditer(r"(?m)^[ ]*rule (\w+):", text))
        for start, end in zip(starts, [*starts[1:], None]):
            name, block = start.group(1), text[start.start() : end.start() if end else len(text)]
            log = re.search(r'log:\s*\n\s*"logs/([^"]+)\.log"', block)
            benchmark = re.search(r'benchmark:\s*\n\s*"benchmarks/([^"]+)\.tsv"', block)
            assert log and benchmark, f"{smk.name}: rule {name} lacks a log or a benchmark"
            assert log.group(1) == benchmark.group(1), f"rule {name}: logs/{log.group(1)} vs benchmarks/{benchmark.group(1)}"
            assert log.group(1).split("/")[0] == name, f"rule {name}: log and benchmark paths start with the rule's name"
            rules += 1
    assert rules >= 16
