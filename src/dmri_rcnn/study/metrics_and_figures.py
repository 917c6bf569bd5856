"""Study steps: per-prediction metrics, the summary table and the report figures (evaluation env)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from dmri_rcnn import plot
from dmri_rcnn.core import io
from dmri_rcnn.evaluation import (
    dominant_fibre_direction,
    evaluate_prediction,
    fit_dti_with_targets,
    read_metric_tables,
    summarise_metrics,
)
from dmri_rcnn.evaluation.cross_shell import cross_shell_dki_errors, tissue_regions
from dmri_rcnn.evaluation.metrics import mean_absolute_error
from dmri_rcnn.evaluation.summary import (
    PAPER_ORDERING,
    method_sort_key,
    ordering_by_subject,
    ordering_report_rst,
    write_tsv,
)
from dmri_rcnn.simulation import TISSUE_LABELS
from dmri_rcnn.study.predict_dti import load_context_acquisition
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path


def evaluate(files: dict, subject: str, method: str, shell: int, q_in: int, out_path: PathLike) -> dict:
    """Metrics of one prediction against the acquired targets inside the mask; one-row TSV.

    Parameters
    ----------
    files : paths ``prediction``, ``targets``, ``target_bvecs``, ``context``, ``context_bvecs``, ``b0``,
        ``mask``, optionally ``context_bvals`` and ``target_bvals`` (the DTI fit then uses the acquired
        b-value of every volume instead of the nominal shell) and, for synthetic subjects, ``tissue``, ``fibre_dirs`` ((i, j, k, 3 n) components) and
        ``fibre_fractions`` for per-tissue and ground-truth metrics.
    subject, method, shell, q_in : identify the row.
    out_path : output TSV with columns ``subject, method, shell, q_in`` and the metrics of
        :func:`dmri_rcnn.evaluation.evaluate_prediction`.

    Returns
    -------
    The row as a dict.
    """
    extra = {}
    if "tissue" in files:
        extra["tissue_map"] = io.load_nifti(files["tissue"], dtype=np.uint8)
        extra["tissue_names"] = {label: name for label, name in TISSUE_LABELS.items() if label > 0}
    if "fibre_dirs" in files and "fibre_fractions" in files:
        extra["true_pdd"] = _true_direction(files["fibre_dirs"], files["fibre_fractions"])
    metrics = evaluate_prediction(
        io.load_nifti(files["prediction"]),
        io.load_nifti(files["targets"]),
        io.load_mask(files["mask"]),
        io.load_nifti(files["b0"]),
        context=io.load_nifti(files["context"]),
        context_bvecs=io.load_bvec(files["context_bvecs"]),
        target_bvecs=io.load_bvec(files["target_bvecs"]),
        bval=float(shell),
        context_bvals=io.load_bval(files["context_bvals"]) if "context_bvals" in files else None,
        target_bvals=io.load_bval(files["target_bvals"]) if "target_bvals" in files else None,
        **extra,
    )
    row = {"subject": subject, "method": method, "shell": int(shell), "q_in": int(q_in), **metrics}
    write_tsv(pd.DataFrame([row]), out_path)
    return row


def _true_direction(dirs_path: PathLike, fractions_path: PathLike) -> np.ndarray:
    """(i, j, k, 3) dominant fibre direction of a synthetic subject (its inputs freed on return)."""
    fractions = io.load_nifti(fractions_path)
    dirs = io.load_nifti(dirs_path).reshape(fractions.shape + (3,))
    return dominant_fibre_direction(dirs, fractions)


def summarise(paths, out_path: PathLike, result_path: PathLike | None = None) -> pd.DataFrame:
    """Mean and sd over subjects per method, shell and q_in (``results/summary.tsv``).

    ``result_path``: also write the report's statement of the result (reStructuredText): each test
    subject's MAE of 3D, 1D and SH and whether the paper's ordering 3D < 1D < SH holds.
    """
    rows = read_metric_tables(paths)
    table = summarise_metrics(rows)
    write_tsv(table, out_path)
    if result_path is not None:
        with atomic_path(result_path) as tmp:
            tmp.write_text(ordering_report_rst(ordering_by_subject(rows)))
    return table


def plot_result(paths, out_path: PathLike, rst_path: PathLike | None = None, metric: str = "mae") -> None:
    """The result figure: each test subject's error per method, titled with the verdict on the paper's ordering.

    ``paths``: the per-prediction metric tables (``results/metrics/...``), as for the summary.
    ``rst_path``: also write a reStructuredText image with the PNG inlined (a data URI), which the
    report's front page includes (Snakemake's own ``embeddedfigure`` leaves the file's path instead).
    """
    rows = read_metric_tables(paths)
    claim = " < ".join(PAPER_ORDERING)
    titles = {
        (int(shell), int(q_in)): f"b = {int(shell)} s/mm², q_in = {int(q_in)}: {claim} "
        f"on {int(group['holds'].sum())} of {len(group)} test subjects"
        for (shell, q_in), group in ordering_by_subject(rows, metric).groupby(["shell", "q_in"])
    }
    methods = sorted(rows["method"].unique(), key=method_sort_key)
    plot.plot_metric_by_subject(rows, metric, methods=methods, titles=titles, path=out_path)
    if rst_path is not None:
        # docutils joins an image URI split over lines (its line-length limit is 10,000 characters)
        encoded = base64.encodebytes(Path(out_path).read_bytes()).decode("ascii").split()
        lines = [".. image:: data:image/png;base64,", *(f"   {line}" for line in encoded),
                 f"   :alt: {metric.upper()} per test subject and method", ""]
        with atomic_path(rst_path) as tmp:
            tmp.write_text("\n".join(lines))


def plot_metric_vs_q_in(summary_path: PathLike, out_path: PathLike, metric: str = "mae") -> None:
    """The main comparison figure from the summary table."""
    plot.plot_error_vs_q_in(pd.read_csv(summary_path, sep="\t"), metric, path=out_path)


def plot_example_slices(targets: PathLike, mask: PathLike, predictions: dict, out_path: PathLike, direction: int = 0,
                        shell: int | None = None):
    """Acquired vs predicted slices (and absolute errors) of one target direction, every method.

    Rules plot_example_slices (the main study) and plot_cross_shell_slices (one figure per target shell;
    ``shell`` names it in the title).
    """
    acquired = io.load_nifti_volume(targets, direction)
    predicted = {method: io.load_nifti_volume(path, direction) for method, path in predictions.items()}
    title = f"target direction {direction}"
    plot.plot_comparison_slices(
        acquired,
        predicted,
        mask=io.load_mask(mask),
        title=title if shell is None else f"b = {int(shell)}, {title}",
        path=out_path,
    )


def plot_loss_curves(history_paths, out_path: PathLike) -> None:
    """Training and validation loss of every model, one panel each (model name = its folder)."""
    plot.plot_training_history({Path(path).parent.name: path for path in history_paths}, path=out_path)


def plot_fa_maps(files: dict, predictions: dict, shell: int, out_path: PathLike) -> None:
    """FA from b0 + context + acquired targets beside FA from b0 + context + each method's prediction.

    Parameters
    ----------
    files : paths ``b0``, ``context``, ``context_bvecs``, ``targets``, ``target_bvecs``, ``mask``.
    predictions : method name -> predicted targets NIfTI (same directions as ``targets``).
    shell : b-value of the shell (s/mm²).
    out_path : output PNG.
    """
    mask = io.load_mask(files["mask"])
    b0 = io.load_nifti(files["b0"])
    context = io.load_nifti(files["context"])
    context_bvecs = io.load_bvec(files["context_bvecs"], dtype=np.float64)
    target_bvecs = io.load_bvec(files["target_bvecs"], dtype=np.float64)

    per_volume = {key: io.load_bval(files[key]) for key in ("context_bvals", "target_bvals") if key in files}

    def fa_of(targets):
        return fit_dti_with_targets(b0, context, targets, context_bvecs, target_bvecs, float(shell), mask, **per_volume).fa

    fa_maps = {"acquired": fa_of(io.load_nifti(files["targets"]))}
    fa_maps.update({method: fa_of(io.load_nifti(path)) for method, path in predictions.items()})
    plot.plot_fa_maps(fa_maps, reference="acquired", mask=mask, title=f"FA, b = {int(shell)}", path=out_path)


# ----- the cross-shell study ---------------------------------------------------------------------

#: Target shells (s/mm²) whose kurtosis errors the cross-shell study measures: DKI of b0 + context + this shell.
DKI_SHELLS = (2000,)


def evaluate_cross_shell(files: dict, row: dict, out_path: PathLike, dki_shells=DKI_SHELLS) -> dict:
    """Errors of one prediction of a target shell; a one-row TSV (rule evaluate_cross_shell).

    Parameters
    ----------
    files : paths ``prediction``, ``targets`` (the acquired volumes), ``target_bvals``, ``target_bvecs``,
        ``mask``, the context split's ``b0``, ``context``, ``context_bvals``, ``context_bvecs`` and, for
        synthetic subjects, ``tissue``.
    row : ``subject``, ``method``, ``shell`` (the target shell, s/mm²) and ``q_in`` of the row.
    out_path : output TSV: the row, ``mae`` (signal units) and ``mae_{tissue}``, and at the shells of
        ``dki_shells`` the kurtosis errors of
        :func:`dmri_rcnn.evaluation.cross_shell.cross_shell_dki_errors` (``mk_mae``, ``fa_mae``, per
        tissue, ``dki_failed``).

    Returns
    -------
    The row as a dict.
    """
    predicted, acquired = io.load_nifti(files["prediction"]), io.load_nifti(files["targets"])
    mask = io.load_mask(files["mask"])
    regions = {"": mask}
    tissue = names = None
    if "tissue" in files:
        tissue = io.load_nifti(files["tissue"], dtype=np.uint8)
        names = {label: name for label, name in TISSUE_LABELS.items() if label > 0}
        regions.update({f"_{name}": region for name, region in tissue_regions(mask, tissue, names).items()})
    metrics = {f"mae{suffix}": mean_absolute_error(predicted, acquired, region) if region.any() else float("nan")
               for suffix, region in regions.items()}
    if int(row["shell"]) in dki_shells:
        context, gtab, _ = load_context_acquisition(files)
        target_gtab = io.load_gradient_table(files["target_bvals"], files["target_bvecs"])
        metrics.update(cross_shell_dki_errors(context, gtab, predicted, acquired, target_gtab, mask,
                                              tissue_map=tissue, tissue_names=names))
    result = {**row, **metrics}
    write_tsv(pd.DataFrame([result]), out_path)
    return result


def summarise_cross_shell(paths, out_path: PathLike) -> pd.DataFrame:
    """Mean and sd over subjects per method, target shell (column ``shell``) and q_in, ordered by target
    shell (:func:`dmri_rcnn.evaluation.summary.summarise_metrics`); written to ``out_path``."""
    table = summarise_metrics(read_metric_tables(paths))
    table = table.sort_values(["shell", "q_in"], kind="stable").reset_index(drop=True)
    write_tsv(table, out_path)
    return table


def plot_cross_shell(summary_path: PathLike, out_path: PathLike, metric: str = "mae") -> None:
    """The cross-shell figure: ``metric`` per target shell and method, one panel per q_in."""
    plot.plot_metric_per_shell(pd.read_csv(summary_path, sep="\t"), metric, path=out_path)
