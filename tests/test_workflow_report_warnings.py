"""`snakemake --report` prints no warnings of its own: checked on placeholder outputs of the tiny study
(the report's content is tested on a real run in test_workflow.py)."""

from __future__ import annotations

import re

import pytest

from workflow_utils import run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow

# the smallest valid PNG: one transparent pixel
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def test_report_prints_no_runtime_warnings(tmp_path):
    write_config(tmp_path, tiny_config())
    dry = run_snakemake(tmp_path, "--dry-run", "--cores", "1")
    outputs = [path.strip() for line in re.findall(r"^    output: (.+)$", dry.stdout, re.MULTILINE) for path in line.split(",")]
    for name in outputs:
        path = tmp_path / name
        if path.name in ("octants", "tfrecords") or path.parent.name in ("octants", "tfrecords"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PNG if path.suffix == ".png" else b"metric\tvalue\nmae\t1\n")
    run_snakemake(tmp_path, "--cores", "1", "--touch")
    result = run_snakemake(tmp_path, "--cores", "1", "--report", "report.html")
    output = result.stdout + result.stderr
    assert "Report created" in output
    assert "Warning" not in output, output[-3000:]
