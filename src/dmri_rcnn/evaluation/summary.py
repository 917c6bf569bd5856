"""Summary tables: per-(subject, shell, q_in, method) metric rows -> mean and sd per method, shell, q_in."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

#: Columns identifying one evaluated prediction.
KEY_COLUMNS = ("method", "shell", "q_in")
SUBJECT_COLUMN = "subject"

#: Display order of methods (others follow alphabetically).
METHOD_ORDER = ("SH_original", "SH", "1D", "3D")

#: Display order of the main metrics (others follow in their order of appearance).
METRIC_ORDER = (
    "mae",
    "rmse",
    "psnr",
    "ssim",
    "mae_norm",
    "rmse_norm",
    "psnr_norm",
    "ssim_norm",
    "fa_mae",
    "md_mae",
    "pdd_angle_deg",
    "pdd_angle_truth_deg",
)


def method_sort_key(method: str) -> tuple[int, str]:
    """Sort key putting the known methods in :data:`METHOD_ORDER` first."""
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), str(method))


def summarise_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of every metric over subjects, per method, shell and q_in.

    Parameters
    ----------
    rows : DataFrame
        One row per (subject, method, shell, q_in) with columns ``subject``, ``method``, ``shell``,
        ``q_in`` and numeric metric columns (as returned by ``evaluate_prediction``).

    Returns
    -------
    DataFrame
        Columns ``method, shell, q_in, n_subjects`` then, per metric, ``{metric}`` (mean over subjects),
        ``{metric}_sd`` (sample standard deviation, ddof = 1; NaN for one subject) and ``{metric}_n`` (the
        number of subjects behind that mean: those whose value is not NaN, e.g. a DTI error with no
        voxel left after failed fits). Rows ordered by
        method (SH_original, SH, 1D, 3D, others), shell, q_in. Infinite values (PSNR of a perfect
        prediction) give an infinite mean and a NaN sd.
    """
    required = (SUBJECT_COLUMN, *KEY_COLUMNS)
    missing = [col for col in required if col not in rows.columns]
    if missing:
        raise InputError(f"metrics table lacks column(s) {', '.join(missing)}; found {', '.join(map(str, rows.columns))}")
    if rows.duplicated(list(required)).any():
        raise InputError("metrics table has more than one row for a (subject, method, shell, q_in)")
    found = [c for c in rows.columns if c not in required and pd.api.types.is_numeric_dtype(rows[c])]
    metric_columns = [c for c in METRIC_ORDER if c in found] + [c for c in found if c not in METRIC_ORDER]
    grouped = rows.groupby(list(KEY_COLUMNS), sort=False)
    with np.errstate(invalid="ignore"):
        means = grouped[metric_columns].mean()
        sds = grouped[metric_columns].std(ddof=1)
        counts = grouped[metric_columns].count()
    summary = pd.DataFrame(index=means.index)
    summary["n_subjects"] = grouped[SUBJECT_COLUMN].nunique()
    for col in metric_columns:
        summary[col] = means[col]
        summary[f"{col}_sd"] = sds[col]
        summary[f"{col}_n"] = counts[col].astype(int)
    summary = summary.reset_index()
    order = sorted(
        range(len(summary)),
        key=lambda i: (method_sort_key(summary.loc[i, "method"]), summary.loc[i, "shell"], summary.loc[i, "q_in"]),
    )
    return summary.loc[order].reset_index(drop=True)


def write_tsv(table: pd.DataFrame, path: PathLike) -> None:
    """Write a table as tab-separated text atomically (no index, full float precision)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def read_metric_tables(paths) -> pd.DataFrame:
    """Concatenate per-prediction metrics TSVs into one table."""
    frames = [pd.read_csv(path, sep="\t") for path in paths]
    if not frames:
        raise InputError("no metrics tables given to summarise")
    return pd.concat(frames, ignore_index=True)


#: The paper's claim, best method first: the 3D RCNN beats the 1D RCNN, which beats the SH baseline.
PAPER_ORDERING = ("3D", "1D", "SH")


def ordering_by_subject(rows: pd.DataFrame, metric: str = "mae", ordering=PAPER_ORDERING) -> pd.DataFrame:
    """The metric of each method of ``ordering`` per test subject, and whether the ordering holds.

    Parameters
    ----------
    rows : one row per (subject, method, shell, q_in), as for :func:`summarise_metrics`.
    metric : a lower-is-better metric column (``mae``: raw signal units).
    ordering : methods from best to worst as claimed (default 3D < 1D < SH).

    Returns
    -------
    DataFrame with columns ``shell, q_in, subject``, one column per method of ``ordering`` (the metric)
    and ``holds`` (True where every method is strictly better than the next one). Settings where a
    method of ``ordering`` was not evaluated are left out.
    """
    ordering = list(ordering)
    wide = rows[rows["method"].isin(ordering)].pivot_table(
        index=["shell", "q_in", SUBJECT_COLUMN], columns="method", values=metric, aggfunc="first"
    )
    wide = wide.dropna(subset=[m for m in ordering if m in wide.columns])
    if any(m not in wide.columns for m in ordering):
        return pd.DataFrame(columns=["shell", "q_in", SUBJECT_COLUMN, *ordering, "holds"])
    wide = wide[ordering]
    holds = np.ones(len(wide), dtype=bool)
    for better, worse in zip(ordering, ordering[1:]):
        holds &= (wide[better] < wide[worse]).to_numpy()
    wide["holds"] = holds
    wide.columns.name = None
    return wide.reset_index()


def ordering_report_rst(table: pd.DataFrame, metric: str = "mae", ordering=PAPER_ORDERING) -> str:
    """reStructuredText stating, per (shell, q_in), each test subject's metric and whether the ordering holds.

    ``table`` is the output of :func:`ordering_by_subject`. The text ends with the mean over subjects and
    the best method's mean as a fraction of the last (the baseline's).
    """
    ordering = list(ordering)
    claim = " < ".join(f"{metric.upper()}({m})" for m in ordering)
    if table.empty:
        return f"The ordering {claim} was not evaluated: the study lacks one of {', '.join(ordering)}.\n"
    lines = []
    for (shell, q_in), group in table.groupby(["shell", "q_in"], sort=True):
        n_hold = int(group["holds"].sum())
        verdict = "holds on every test subject" if n_hold == len(group) else (
            f"holds on {n_hold} of {len(group)} test subjects")
        means = group[ordering].mean()
        ratio = means[ordering[0]] / means[ordering[-1]]
        lines += [
            f"**b = {shell} s/mm², q_in = {q_in}: the paper's ordering {claim} {verdict}.** "
            f"Mean {metric.upper()} of {ordering[0]} = {ratio:.2f} × that of {ordering[-1]}.",
            "",
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - test subject",
            *[f"     - {m}" for m in ordering],
            f"     - {' < '.join(ordering)}",
        ]
        for _, row in group.iterrows():
            lines += [f"   * - {row[SUBJECT_COLUMN]}", *[f"     - {row[m]:.1f}" for m in ordering],
                      f"     - {'yes' if row['holds'] else 'no'}"]
        mean_holds = all(means[a] < means[b] for a, b in zip(ordering, ordering[1:]))
        lines += ["   * - mean", *[f"     - {means[m]:.1f}" for m in ordering], f"     - {'yes' if mean_holds else 'no'}", ""]
    return "\n".join(lines) + "\n"
