"""The cross-shell study (config/cross-shell.yaml layered on the config) through the real ``snakemake``.

A dry run of the shipped configs plans its rules; a tiny study (one test subject, models trained for one
epoch of two steps) writes predictions of the b = 2000 shell, a summary with rows per target shell and
the figures (the bars, and example slices per target shell).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from workflow_utils import REPO_ROOT, load_default_config, run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow

CROSS_SHELL_CONFIG = str(REPO_ROOT / "config" / "cross-shell.yaml")


def job_counts(output: str) -> dict[str, int]:
    assert "Job stats:" in output, f"no job table in the dry run's output:\n{output[-4000:]}"
    table = output[output.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_cross_shell_config_plans_models_baselines_metrics_and_figure(tmp_path):
    config = load_default_config()
    write_config(tmp_path, config)
    result = run_snakemake(tmp_path, "--dry-run", "--cores", "1", "--configfile", CROSS_SHELL_CONFIG)
    counts = job_counts(result.stdout)
    n_test = len(config["subjects"]["test"])
    # per-shell 1D and 3D of the default study, and the cross-shell 1D and 3D for q_in 6 and 10
    assert counts["train_model"] == 2 + 2 * 2
    for q_in in (6, 10):
        assert f"results/models/3D_b1000_q{q_in}_to2000_3000_bscaled/best.weights.h5" in result.stdout
    assert counts["extract_shell"] == 2 * n_test  # b = 2000 and 3000
    assert counts["extrapolate_dti"] == 2 * 3 * n_test  # every q_in and target shell
    assert counts["predict_cross_shell"] == 2 * 2 * 2 * n_test  # 1D, 3D at b = 2000 and 3000, both q_in
    # b = 1000: DTI, SH and (q_in 6, which the default study evaluates) its per-shell 1D and 3D;
    # b = 2000 and 3000: DTI, 1D and 3D
    assert counts["evaluate_cross_shell"] == ((4 + 3 + 3) + (2 + 3 + 3)) * n_test
    assert counts["summarise_cross_shell"] == 1 and counts["plot_cross_shell"] == 1
    assert counts["plot_cross_shell_slices"] == 3  # one figure per target shell


def test_default_config_plans_no_cross_shell_job(tmp_path):
    write_config(tmp_path, load_default_config())
    counts = job_counts(run_snakemake(tmp_path, "--dry-run", "--cores", "1").stdout)
    assert not {"extract_shell", "extrapolate_dti", "predict_cross_shell", "evaluate_cross_shell"} & set(counts)
    assert counts["train_model"] == 2


@pytest.mark.slow
def test_tiny_cross_shell_study_predicts_b2000_and_summarises_per_target_shell(tmp_path):
    config = tiny_config()
    config["training"].update(epochs=1, steps_per_epoch=2)
    write_config(tmp_path, config)
    (tmp_path / "q6.yaml").write_text("cross_shell:\n  q_in: [6]\n")  # one context size: two models, not four
    slices = [f"results/cross_shell/example_slices_b{shell}.png" for shell in (1000, 2000, 3000)]
    targets = ["results/cross_shell/summary.tsv", "results/cross_shell/mae_per_target_shell.png", *slices]
    # targets first: --configfile takes every path that follows it
    run_snakemake(tmp_path, *targets, "--cores", "2", "--configfile", CROSS_SHELL_CONFIG, "q6.yaml", timeout=900)

    for method in ("1D", "3D", "DTI"):
        prediction = tmp_path / f"results/cross_shell/predictions/te1/q6/b2000/{method}.nii.gz"
        assert prediction.stat().st_size > 0, method
    summary = pd.read_csv(tmp_path / "results" / "cross_shell" / "summary.tsv", sep="\t")
    rows = {(int(shell), method) for shell, method in zip(summary["shell"], summary["method"])}
    assert rows == {(1000, "DTI"), (1000, "SH"), (1000, "1D"), (1000, "3D"), (2000, "DTI"), (2000, "1D"),
                    (2000, "3D"), (3000, "DTI"), (3000, "1D"), (3000, "3D")}
    assert (summary["mae"] > 0).all() and "mae_white_matter" in summary.columns
    at_2000 = summary[summary["shell"] == 2000]
    assert at_2000["mk_mae"].notna().all() and at_2000["fa_mae"].notna().all()
    assert summary.loc[summary["shell"] != 2000, "mk_mae"].isna().all()
    figure = Path(tmp_path / "results" / "cross_shell" / "mae_per_target_shell.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for path in slices:  # acquired + every method above, their errors beneath
        image = matplotlib.image.imread(tmp_path / path)
        assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0, path
    for rule in ("extract_shell", "predict_cross_shell", "extrapolate_dti", "evaluate_cross_shell",
                 "plot_cross_shell_slices"):
        assert any((tmp_path / "logs" / rule).rglob("*.log")), rule

    # the report of those targets holds the cross-shell table and figures in their own category
    run_snakemake(tmp_path, *targets, "--cores", "1", "--report", "report.html", "--configfile",
                  CROSS_SHELL_CONFIG, "q6.yaml")
    html = (tmp_path / "report.html").read_text(errors="replace")
    for name in ("Cross-shell", "mae_per_target_shell.png", "example_slices_b2000.png", "summary per target shell"):
        assert name in html, name
