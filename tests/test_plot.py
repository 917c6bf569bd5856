"""Figures: the plotting functions and the ``dmri_rcnn_plot.py`` command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from dmri_rcnn.cli import plot as plot_cli
from dmri_rcnn.errors import EXIT_BAD_INPUT, InputError
from dmri_rcnn.plot import (
    plot_comparison_slices,
    plot_error_vs_q_in,
    plot_fa_maps,
    plot_metric_by_subject,
    plot_training_history,
    take_slice,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 2000


def summary_table() -> pd.DataFrame:
    rows = []
    for method, base in (("SH_original", 230), ("SH", 190), ("1D", 180), ("3D", 170)):
        for shell, q_values in ((1000, (6, 10, 30)), (2000, (10,))):
            for q_in in q_values:
                rows.append({"method": method, "shell": shell, "q_in": q_in, "n_subjects": 2,
                             "mae": base - q_in, "mae_sd": 5.0, "fa_mae": 0.05})
    return pd.DataFrame(rows)


def test_error_vs_q_in_has_one_panel_per_shell(tmp_path):
    figure = plot_error_vs_q_in(summary_table(), "mae", path=tmp_path / "mae.png")
    assert len(figure.axes) == 2
    assert_png(tmp_path / "mae.png")
    first = figure.axes[0]
    assert first.get_legend_handles_labels()[1] == ["SH_original", "SH", "1D", "3D"]
    assert figure.axes[1].get_title() == "b = 2000 s/mm²"
    # metric without an sd column still plots; a missing metric is an input error
    assert len(plot_error_vs_q_in(summary_table(), "fa_mae").axes) == 2
    with pytest.raises(InputError, match="psnr"):
        plot_error_vs_q_in(summary_table(), "psnr")


def test_result_figure_bars_per_subject_and_mean(tmp_path):
    rows = pd.DataFrame([
        {"subject": subject, "method": method, "shell": 1000, "q_in": q_in, "mae": base + offset + q_in}
        for subject, offset in (("synth05", 0.0), ("synth06", 10.0))
        for method, base in (("SH", 200.0), ("1D", 180.0), ("3D", 170.0))
        for q_in in (6, 10)
    ])
    titles = {(1000, 6): "verdict six", (1000, 10): "verdict ten"}
    figure = plot_metric_by_subject(rows, methods=["SH", "1D", "3D"], titles=titles, path=tmp_path / "result.png")
    assert_png(tmp_path / "result.png")
    assert [ax.get_title() for ax in figure.axes] == ["verdict six", "verdict ten"]
    first = figure.axes[0]
    assert [t.get_text() for t in first.get_xticklabels()] == ["synth05", "synth06", "mean"]
    # three methods x (two subjects + mean) bars; the mean bar of 3D at q_in 6 is (176 + 186) / 2
    heights = sorted(round(p.get_height(), 6) for p in first.patches)
    assert len(heights) == 9 and 181.0 in heights
    with pytest.raises(InputError, match="lacks column"):
        plot_metric_by_subject(rows.drop(columns="subject"))


def test_result_figure_from_metric_tables_writes_an_inline_image(tmp_path):
    from dmri_rcnn.study.metrics_and_figures import plot_result

    paths = []
    for subject, offset in (("synth05", 0.0), ("synth06", 10.0)):
        for method, mae in (("SH", 200.0), ("1D", 190.0), ("3D", 170.0)):
            path = tmp_path / f"{subject}_{method}.tsv"
            pd.DataFrame([{"subject": subject, "method": method, "shell": 1000, "q_in": 6, "mae": mae + offset}]).to_csv(
                path, sep="\t", index=False)
            paths.append(path)
    plot_result(paths, tmp_path / "result.png", tmp_path / "result_figure.rst")
    assert_png(tmp_path / "result.png")
    rst = (tmp_path / "result_figure.rst").read_text()
    assert rst.startswith(".. image:: data:image/png;base64,")
    assert max(len(line) for line in rst.splitlines()) < 200  # docutils refuses lines over 10,000 characters


def test_comparison_slices_layout_and_png(tmp_path):
    rng = np.random.default_rng(0)
    acquired = rng.uniform(1000, 2000, size=(8, 7, 6))
    predictions = {name: acquired + rng.normal(scale=s, size=acquired.shape) for name, s in (("SH", 90), ("1D", 60), ("3D", 30))}
    mask = np.zeros(acquired.shape, bool)
    mask[1:7, 1:6, 1:5] = True
    figure = plot_comparison_slices(acquired, predictions, mask=mask, axis=1, path=tmp_path / "slices.png")
    assert len(figure.axes) == 2 * 4 + 2  # signal row, error row, two colour bars
    assert_png(tmp_path / "slices.png")
    titles = [ax.get_title() for ax in figure.axes[:8]]
    assert titles[:4] == ["acquired", "SH", "1D", "3D"]
    mae_3d = float(re.search(r"MAE in mask ([0-9.]+)", titles[7]).group(1))
    assert mae_3d == pytest.approx(np.mean(np.abs(predictions["3D"] - acquired)[mask]), rel=1e-3)
    with pytest.raises(InputError, match="shape"):
        plot_comparison_slices(acquired, {"SH": acquired[:-1]})
    with pytest.raises(InputError, match="slice index"):
        plot_comparison_slices(acquired, predictions, axis=2, index=6)


def test_fa_maps_with_and_without_reference(tmp_path):
    rng = np.random.default_rng(1)
    maps = {name: rng.uniform(0, 1, size=(6, 6, 4)) for name in ("acquired", "SH", "1D", "3D")}
    assert len(plot_fa_maps(maps).axes) == 4 + 1
    figure = plot_fa_maps(maps, reference="acquired", mask=np.ones((6, 6, 4), bool), path=tmp_path / "fa.png")
    assert len(figure.axes) == 4 + 1 + 4 + 1
    assert_png(tmp_path / "fa.png")
    with pytest.raises(InputError, match="reference"):
        plot_fa_maps(maps, reference="truth")


def test_training_history_one_panel_per_model(tmp_path):
    paths = {}
    for name in ("1D_b1000_q6", "3D_b1000_q6", "3D_b1000_q10", "3D_all_q10"):
        table = pd.DataFrame({"epoch": [1, 2, 3], "loss": [0.3, 0.2, 0.15], "val_loss": [0.35, 0.25, 0.27]})
        paths[name] = tmp_path / f"{name}.tsv"
        table.to_csv(paths[name], sep="\t", index=False)
    figure = plot_training_history(paths, path=tmp_path / "loss.png")
    assert len(figure.axes) == 4
    assert_png(tmp_path / "loss.png")
    assert len(figure.axes[0].get_lines()) == 3  # training, validation, best-epoch marker
    pd.DataFrame({"step": [1], "loss": [0.1]}).to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(InputError, match="bad.tsv lacks column"):
        plot_training_history({"x": tmp_path / "bad.tsv"})


def test_take_slice_orientation():
    volume = np.arange(24).reshape(2, 3, 4)
    assert take_slice(volume, 2, 1).shape == (3, 2)
    np.testing.assert_array_equal(take_slice(volume, 0, 1), volume[1].T)


# ---------------------------------------------------------------- dmri_rcnn_plot.py


@pytest.fixture
def scans(tmp_path):
    rng = np.random.default_rng(2)
    affine = np.eye(4)
    reference = rng.uniform(500, 1500, size=(9, 8, 7, 3)).astype(np.float32)
    inferred = (reference + rng.normal(scale=50, size=reference.shape)).astype(np.float32)
    mask = np.zeros((9, 8, 7), np.uint8)
    mask[2:7, 2:6, 1:6] = 1
    nib.save(nib.Nifti1Image(reference, affine), tmp_path / "reference.nii.gz")
    nib.save(nib.Nifti1Image(inferred, affine), tmp_path / "inferred.nii.gz")
    nib.save(nib.Nifti1Image(inferred[..., :2], affine), tmp_path / "short.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    return tmp_path


def test_plot_cli_writes_png(scans):
    script = Path(sys.executable).parent / "dmri_rcnn_plot.py"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dmri_rcnn.cli.plot"]
    proc = subprocess.run(
        [*command, "-dmri_in", str(scans / "inferred.nii.gz"), "-reference", str(scans / "reference.nii.gz"),
         "-mask", str(scans / "mask.nii.gz"), "-volume", "2", "-axis", "0", "-slice", "4", "-out", str(scans / "cmp.png")],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    assert_png(scans / "cmp.png")


def test_plot_cli_several_inputs_with_labels(scans):
    out = scans / "two.png"
    assert plot_cli.main(["-dmri_in", str(scans / "inferred.nii.gz"), str(scans / "reference.nii.gz"), "-labels", "RCNN", "copy",
                          "-reference", str(scans / "reference.nii.gz"), "-out", str(out)]) == 0
    assert_png(out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-dmri_in", "short.nii.gz"], "-dmri_in: .*short.nii.gz: expected the -reference's shape \\(9, 8, 7, 3\\), found \\(9, 8, 7, 2\\)"),
        (["-dmri_in", "nothere.nii.gz"], "-dmri_in: .*nothere.nii.gz: NIfTI file not found"),
        (["-volume", "3"], "-volume: expected an index in 0..2"),
        (["-slice", "7"], "-slice: expected an index in 0..6 along axis 2, found 7"),
        (["-out", "cmp.jpg"], "-out .*cmp.jpg: expected a file name ending in .png"),
        (["-labels", "a", "b"], "-labels: expected one name per -dmri_in file \\(1\\), found 2"),
        (["-mask", "reference.nii.gz"], "-mask: .*reference.nii.gz: expected a 3D image \\(i, j, k\\), found shape \\(9, 8, 7, 3\\)"),
    ],
)
def test_plot_cli_bad_input_gives_one_line_and_no_output(scans, capsys, extra, message):
    args = {"-dmri_in": ["inferred.nii.gz"], "-reference": ["reference.nii.gz"], "-out": ["cmp.png"]}
    flag_values = {}
    current = None
    for item in extra:
        if item.startswith("-"):
            current = item
            flag_values[current] = []
        else:
            flag_values[current].append(item)
    args.update(flag_values)
    path_flags = {"-dmri_in", "-reference", "-out", "-mask"}
    argv = []
    for flag, values in args.items():
        argv += [flag, *[str(scans / v) if flag in path_flags else v for v in values]]
    before = set(os.listdir(scans))
    assert plot_cli.main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert set(os.listdir(scans)) == before
