"""The workflow's container directives under ``--sdm apptainer``.

No Apptainer runtime or image registry is available in CI, so an ``apptainer`` stand-in on PATH records
the image and options Snakemake passes to ``apptainer exec`` for each job and then runs the job's command
on the host. What is checked is the workflow's side: which image each rule is given and that the
profile's ``--nv`` reaches the jobs, not Apptainer itself.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_utils import SNAKEFILE, snakemake_executable, tiny_config, write_config

pytestmark = pytest.mark.workflow

APPTAINER_STANDIN = '''#!{python}
"""Records `apptainer exec` calls as JSON lines in $APPTAINER_RECORD, then runs the command on the host."""
import json, os, subprocess, sys

args = sys.argv[1:]
if args[:1] == ["--version"]:
    print("apptainer version 1.3.4")
    sys.exit(0)
while args and args[0] in ("--quiet", "--silent"):
    args.pop(0)
assert args[0] == "exec", args
args.pop(0)
options = []
with_value = {{"--home", "--bind", "-B", "--pwd"}}
while args[0].startswith("-"):
    option = args.pop(0)
    options.append(option)
    if option in with_value:
        options.append(args.pop(0))
image, command = args[0], args[1:]
with open(os.environ["APPTAINER_RECORD"], "a") as record:
    record.write(json.dumps({{"image": image, "options": options, "command": command}}) + "\\n")
sys.exit(subprocess.call(command))
'''


def test_rules_run_in_the_configured_images_with_gpu_access(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    standin = bin_dir / "apptainer"
    standin.write_text(APPTAINER_STANDIN.format(python=sys.executable))
    standin.chmod(standin.stat().st_mode | stat.S_IEXEC)
    images = {kind: tmp_path / f"dmri-rcnn-study-{kind}.sif" for kind in ("cpu", "gpu")}
    for image in images.values():
        image.write_bytes(b"")  # a local image file: Snakemake uses it as is, without pulling
    workdir = tmp_path / "run"
    config = tiny_config()
    config["containers"] = {kind: str(path) for kind, path in images.items()}
    write_config(workdir, config)
    record = tmp_path / "apptainer.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "APPTAINER_RECORD": str(record),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }
    command = [
        snakemake_executable(), "--snakefile", str(SNAKEFILE), "--directory", str(workdir), "--cores", "2",
        "--sdm", "apptainer", "--apptainer-args=--nv", "results/tfrecords/tr1",
    ]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    ran = {}
    for call in calls:
        script = next((part for part in " ".join(call["command"]).split() if part.endswith(".py")), "")
        ran[Path(script).name.split(".")[-2] if script else "shell"] = call
    for step in ("simulate_subject", "autocrop", "split_octants", "make_tfrecords"):
        assert step in ran, f"{step} did not run through apptainer: {sorted(ran)}"
        assert ran[step]["image"] == str(images["cpu"])
        assert "--nv" in ran[step]["options"]
    assert (workdir / "results" / "tfrecords" / "tr1").is_dir()


def test_sdm_apptainer_without_an_image_stops_naming_the_key(tmp_path):
    write_config(tmp_path, tiny_config())
    result = subprocess.run(
        [snakemake_executable(), "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path), "-n", "--sdm", "apptainer"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "containers.cpu: --sdm apptainer needs an image" in result.stdout + result.stderr


def test_gpu_steps_use_the_gpu_image(tmp_path):
    """train_model and infer name containers.gpu (checked on the parsed workflow, no run needed)."""
    workdir = tmp_path
    config = tiny_config()
    config["containers"] = {"cpu": "docker://example/dmri-rcnn-study:cpu", "gpu": "docker://example/dmri-rcnn-study:gpu"}
    write_config(workdir, config)
    probe = f'''
import sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings, ConfigSettings
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(configfiles=[Path("config/config.yaml")]),
                      snakefile=Path({str(SNAKEFILE)!r}), workdir=Path({str(workdir)!r}))
    rules = wf._workflow._rules
    print({{name: rule.container_img for name, rule in rules.items()}})
'''
    result = subprocess.run([sys.executable, "-c", probe], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    images = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert images["train_model"] == images["infer"] == "docker://example/dmri-rcnn-study:gpu"
    assert images["autocrop"] == images["predict_sh_baseline"] == "docker://example/dmri-rcnn-study:cpu"
