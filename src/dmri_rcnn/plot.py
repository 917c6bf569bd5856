"""Figures for the study and for users' own scans: the result per subject, error vs q_in, comparison
slices, FA maps, loss curves.

Every function builds a :class:`matplotlib.figure.Figure` without touching pyplot's global state (so it is
safe in scripts, workflows and threads, and needs no display), returns it, and, when ``path`` is given,
writes it as a PNG atomically.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path

AXIS_NAMES = {0: "sagittal (i)", 1: "coronal (j)", 2: "axial (k)"}
METHOD_COLOURS = {"SH_original": "#999999", "SH": "#1f77b4", "1D": "#ff7f0e", "3D": "#2ca02c", "DTI": "#9467bd"}
METRIC_LABELS = {
    "mae": "MAE (signal units)",
    "rmse": "RMSE (signal units)",
    "mae_norm": "MAE / mean b0",
    "rmse_norm": "RMSE / mean b0",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "fa_mae": "FA MAE",
    "md_mae": "MD MAE (mm²/s)",
    "pdd_angle_deg": "principal direction error (°)",
}


def save_figure(figure: Figure, path: PathLike, dpi: int = 100) -> None:
    """Write ``figure`` as a PNG to ``path`` atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")


def _finish(figure: Figure, path) -> Figure:
    if path is not None:
        save_figure(figure, path)
    return figure


def default_slice_index(shape: tuple[int, ...], axis: int, mask=None) -> int:
    """Middle slice along ``axis``: of the mask's extent when a mask is given, else of the volume."""
    if mask is not None and np.any(mask):
        other_axes = tuple(a for a in range(3) if a != axis)
        occupied = np.flatnonzero(np.any(np.asarray(mask, dtype=bool), axis=other_axes))
        return int((occupied[0] + occupied[-1]) // 2)
    return shape[axis] // 2


def take_slice(volume, axis: int, index: int) -> np.ndarray:
    """2D slice of a 3D volume ``(i, j, k)``, transposed so that ``imshow(origin='lower')`` shows it upright."""
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise InputError(f"expected a 3D volume to slice; found shape {vol.shape}")
    if axis not in (0, 1, 2):
        raise InputError(f"slice axis must be 0, 1 or 2; found {axis}")
    if not 0 <= index < vol.shape[axis]:
        raise InputError(f"slice index must be in 0..{vol.shape[axis] - 1} along axis {axis}; found {index}")
    return np.take(vol, index, axis=axis).T


def _check_same_shape(reference: np.ndarray, others: Mapping[str, np.ndarray], what: str) -> None:
    for name, arr in others.items():
        if np.shape(arr) != reference.shape:
            raise InputError(f"{what} {name!r} has shape {np.shape(arr)}; expected {reference.shape}")


def _require_columns(table: pd.DataFrame, columns, what: str) -> None:
    """One-line error when ``table`` lacks one of ``columns`` or has no rows (``what``: how it is named)."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{what} lacks column(s) {', '.join(missing)}")
    if table.empty:
        raise InputError(f"{what} is empty; nothing to plot")


def _grouped_bars(ax, heights: Mapping[str, list], n_groups: int, errors: Mapping[str, list] | None = None):
    """One bar per method in each of ``n_groups`` groups (methods side by side, in ``heights``' order);
    returns the bar containers by method."""
    width = 0.8 / max(len(heights), 1)
    bars = {}
    for m, (method, values) in enumerate(heights.items()):
        positions = np.arange(n_groups) + (m - (len(heights) - 1) / 2) * width
        yerr = errors.get(method) if errors else None
        bars[method] = ax.bar(positions, values, width, yerr=yerr, label=method, color=METHOD_COLOURS.get(method))
    return bars


def _legend_below(figure: Figure, ax) -> None:
    """The methods' legend in one row beneath the panels (from ``ax``'s bars)."""
    handles, labels = ax.get_legend_handles_labels()
    figure.legend(handles, labels, fontsize="small", loc="outside lower center", ncols=len(labels))


def plot_error_vs_q_in(
    summary: pd.DataFrame,
    metric: str = "mae",
    *,
    methods=None,
    path: PathLike | None = None,
    title: str | None = None,
) -> Figure:
    """The study's main comparison: a metric against the number of context directions, one panel per shell.

    Parameters
    ----------
    summary : DataFrame
        Summary table (``summarise_metrics``) with columns ``method, shell, q_in, {metric}`` and optionally
        ``{metric}_sd`` (drawn as error bars: sd over subjects).
    metric : str
        Column to plot.
    methods : sequence of str, optional
        Methods to draw, in legend order; by default all in the table.
    path : path, optional
        Where to write the PNG.

    Returns
    -------
    Figure
        One axes per shell.
    """
    _require_columns(summary, ("method", "shell", "q_in", metric), "summary table")
    shells = sorted(summary["shell"].unique())
    methods = list(methods) if methods is not None else list(dict.fromkeys(summary["method"]))
    figure = Figure(figsize=(4.2 * len(shells), 3.6), layout="constrained")
    axes = figure.subplots(1, len(shells), squeeze=False)[0]
    for ax, shell in zip(axes, shells):
        shell_rows = summary[summary["shell"] == shell]
        for method in methods:
            rows = shell_rows[shell_rows["method"] == method].sort_values("q_in")
            if rows.empty:
                continue
            sd = rows[f"{metric}_sd"].fillna(0.0) if f"{metric}_sd" in rows else None
            ax.errorbar(
                rows["q_in"],
                rows[metric],
                yerr=sd,
                marker="o",
                capsize=3,
                label=method,
                color=METHOD_COLOURS.get(method),
            )
        ax.set_xticks(sorted(shell_rows["q_in"].unique()))
        ax.set_xlabel("context directions q_in")
        ax.set_title(f"b = {int(shell)} s/mm²")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    axes[-1].legend(title="method", fontsize="small")
    if title:
        figure.suptitle(title)
    return _finish(figure, path)


def plot_metric_by_subject(
    rows: pd.DataFrame,
    metric: str = "mae",
    *,
    methods=None,
    titles: Mapping | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The result at a glance: a metric per test subject and method, one panel per (shell, q_in).

    Parameters
    ----------
    rows : DataFrame
        One row per evaluated prediction, with columns ``subject, method, shell, q_in, {metric}``.
    metric : str
        Column to plot (lower is better for the error metrics).
    methods : sequence of str, optional
        Methods to draw, in bar order; by default all in the table, in order of appearance.
    titles : mapping, optional
        ``{(shell, q_in): title}`` of each panel, e.g. the verdict on the paper's ordering.
    path : path, optional
        Where to write the PNG.

    Returns
    -------
    Figure
        One axes per (shell, q_in): grouped bars per test subject, then their mean, each bar labelled.
    """
    _require_columns(rows, ("subject", "method", "shell", "q_in", metric), "metric table")
    methods = list(methods) if methods is not None else list(dict.fromkeys(rows["method"]))
    settings = sorted({(int(s), int(q)) for s, q in zip(rows["shell"], rows["q_in"])})
    subjects = sorted(rows["subject"].unique())
    groups = [*subjects, "mean"] if len(subjects) > 1 else subjects
    figure = Figure(figsize=(1.5 + 1.4 * len(groups) * len(settings), 3.8), layout="constrained")
    axes = figure.subplots(1, len(settings), squeeze=False)[0]
    for ax, (shell, q_in) in zip(axes, settings):
        setting = rows[(rows["shell"] == shell) & (rows["q_in"] == q_in)]
        values = setting.pivot_table(index="subject", columns="method", values=metric, aggfunc="mean")
        if len(subjects) > 1:
            values.loc["mean"] = values.mean()
        heights = {method: [values.at[g, method] if g in values.index else np.nan for g in groups]
                   for method in methods if method in values.columns}
        for bars in _grouped_bars(ax, heights, len(groups)).values():
            ax.bar_label(bars, fmt="%.0f", fontsize="x-small", padding=1)
        ax.set_xticks(np.arange(len(groups)), groups)
        ax.set_xlabel("test subject")
        ax.set_title((titles or {}).get((shell, q_in), f"b = {shell} s/mm², q_in = {q_in}"), fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    axes[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    _legend_below(figure, axes[0])
    return _finish(figure, path)


def plot_metric_per_shell(summary: pd.DataFrame, metric: str = "mae", *, path: PathLike | None = None) -> Figure:
    """A metric per target shell and method: the cross-shell study's figure, one panel per q_in.

    Parameters
    ----------
    summary : DataFrame
        One row per (method, shell, q_in) with columns ``method, shell, q_in, {metric}`` and, optionally,
        ``{metric}_sd`` (drawn as error bars); ``shell`` is the target shell in s/mm².
    metric : str
        Column to plot.
    path : path, optional
        Where to write the PNG.

    Returns
    -------
    Figure
        Grouped bars per target shell, one per method evaluated there.
    """
    _require_columns(summary, ("method", "shell", "q_in", metric), "summary table")
    methods = list(dict.fromkeys(summary["method"]))
    shells = sorted({int(s) for s in summary["shell"]})
    contexts = sorted({int(q) for q in summary["q_in"]})
    figure = Figure(figsize=(1.5 + 1.6 * len(shells) * len(contexts), 3.8), layout="constrained")
    axes = figure.subplots(1, len(contexts), squeeze=False)[0]
    for ax, q_in in zip(axes, contexts):
        rows = summary[summary["q_in"] == q_in]
        by_method = {method: rows[rows["method"] == method].set_index("shell") for method in methods}
        heights = {method: [mine[metric].get(shell, np.nan) for shell in shells] for method, mine in by_method.items()}
        errors = {method: [mine[f"{metric}_sd"].get(shell, np.nan) for shell in shells]
                  for method, mine in by_method.items() if f"{metric}_sd" in mine}
        _grouped_bars(ax, heights, len(shells), errors)
        ax.set_xticks(np.arange(len(shells)), [f"b = {shell}" for shell in shells])
        ax.set_xlabel("target shell (s/mm²)")
        ax.set_title(f"q_in = {q_in}", fontsize="medium")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    _legend_below(figure, axes[0])
    return _finish(figure, path)


def plot_comparison_slices(
    acquired,
    predictions: Mapping[str, np.ndarray],
    *,
    mask=None,
    axis: int = 2,
    index: int | None = None,
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Acquired vs predicted slices of one diffusion direction, with absolute-error maps beneath.

    Parameters
    ----------
    acquired : (i, j, k) array_like
        Reference volume of one direction (signal units).
    predictions : mapping of str to (i, j, k) array_like
        Predicted volumes of the same direction, by method name (e.g. ``{'SH': ..., '1D': ..., '3D': ...}``).
    mask : (i, j, k) array_like of bool, optional
        Voxels outside are blanked in the error maps and the grey scale is set from the signal inside.
    axis, index : int
        Slice axis (0, 1, 2) and index (default: the middle of the mask or volume).
    title : str, optional
    path : path, optional
        Where to write the PNG.

    Returns
    -------
    Figure
        Two rows of ``1 + len(predictions)`` axes (signal; error, whose first panel is left empty) plus
        two colour-bar axes.
    """
    ref = np.asarray(acquired, dtype=np.float64)
    if ref.ndim != 3:
        raise InputError(f"acquired volume must be 3D; found shape {ref.shape}")
    if not predictions:
        raise InputError("no predicted volume given to compare with the acquired one")
    preds = {name: np.asarray(vol, dtype=np.float64) for name, vol in predictions.items()}
    _check_same_shape(ref, preds, "prediction")
    mask_arr = np.ones(ref.shape, dtype=bool) if mask is None else np.asarray(mask).astype(bool)
    if mask_arr.shape != ref.shape:
        raise InputError(f"mask has shape {mask_arr.shape}; expected {ref.shape}")
    if index is None:
        index = default_slice_index(ref.shape, axis, mask_arr if mask is not None else None)
    inside = ref[mask_arr] if mask_arr.any() else ref.ravel()
    vmin, vmax = np.percentile(inside, [1, 99])
    errors = {name: np.where(mask_arr, np.abs(vol - ref), np.nan) for name, vol in preds.items()}
    err_values = np.concatenate([e[mask_arr] for e in errors.values()]) if mask_arr.any() else np.zeros(1)
    err_max = max(float(np.percentile(err_values, 99)), 1e-12)

    n_cols = 1 + len(preds)
    figure = Figure(figsize=(2.6 * n_cols + 1.0, 5.4), layout="constrained")
    axes = figure.subplots(2, n_cols, squeeze=False)
    panels = [("acquired", ref)] + list(preds.items())
    signal_image = None
    for ax, (name, vol) in zip(axes[0], panels):
        signal_image = ax.imshow(take_slice(vol, axis, index), cmap="gray", vmin=vmin, vmax=vmax, origin="lower")
        ax.set_title(name)
    error_image = None
    for ax, (name, err) in zip(axes[1, 1:], errors.items()):
        error_image = ax.imshow(take_slice(err, axis, index), cmap="magma", vmin=0, vmax=err_max, origin="lower")
        mae = float(np.mean(err[mask_arr])) if mask_arr.any() else float("nan")
        ax.set_title(f"|{name} − acquired|\nMAE in mask {mae:.4g}", fontsize="small")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1, 0].axis("off")
    figure.colorbar(signal_image, ax=axes[0, :].tolist(), shrink=0.8, label="signal")
    figure.colorbar(error_image, ax=axes[1, :].tolist(), shrink=0.8, label="absolute error")
    where = f"{AXIS_NAMES[axis]} slice {index}"
    figure.suptitle(f"{title}, {where}" if title else where)
    return _finish(figure, path)


def plot_fa_maps(
    fa_maps: Mapping[str, np.ndarray],
    *,
    reference: str | None = None,
    mask=None,
    axis: int = 2,
    index: int | None = None,
    title: str | None = None,
    path: PathLike | None = None,
) -> Figure:
    """FA maps side by side; with ``reference`` a second row shows ``|FA - FA_reference|``.

    Parameters
    ----------
    fa_maps : mapping of str to (i, j, k) array_like
        FA (0..1) by source, e.g. ``{'acquired': ..., 'SH': ..., '1D': ..., '3D': ...}``.
    reference : str, optional
        Key of the map the others are compared with.
    mask, axis, index, title, path
        As in :func:`plot_comparison_slices`.

    Returns
    -------
    Figure
        ``len(fa_maps)`` axes plus a colour bar; with a reference, a second row of ``len(fa_maps)`` axes
        (the reference's own panel left empty) plus its colour bar.
    """
    if not fa_maps:
        raise InputError("no FA map given to plot")
    maps = {name: np.asarray(fa, dtype=np.float64) for name, fa in fa_maps.items()}
    first = next(iter(maps.values()))
    _check_same_shape(first, maps, "FA map")
    if reference is not None and reference not in maps:
        raise InputError(f"reference {reference!r} is not one of the FA maps ({', '.join(maps)})")
    mask_arr = None if mask is None else np.asarray(mask).astype(bool)
    if mask_arr is not None and mask_arr.shape != first.shape:
        raise InputError(f"mask has shape {mask_arr.shape}; expected {first.shape}")
    if index is None:
        index = default_slice_index(first.shape, axis, mask_arr)
    n_rows = 1 if reference is None else 2
    figure = Figure(figsize=(2.6 * len(maps) + 1.0, 2.8 * n_rows), layout="constrained")
    axes = figure.subplots(n_rows, len(maps), squeeze=False)
    fa_image = None
    for ax, (name, fa) in zip(axes[0], maps.items()):
        shown = fa if mask_arr is None else np.where(mask_arr, fa, 0.0)
        fa_image = ax.imshow(take_slice(shown, axis, index), cmap="gray", vmin=0, vmax=1, origin="lower")
        ax.set_title(f"FA: {name}")
    figure.colorbar(fa_image, ax=axes[0, :].tolist(), shrink=0.8, label="FA")
    if reference is not None:
        diff_image = None
        for ax, (name, fa) in zip(axes[1], maps.items()):
            if name == reference:
                ax.axis("off")
                continue
            diff = np.abs(fa - maps[reference])
            if mask_arr is not None:
                diff = np.where(mask_arr, diff, np.nan)
            diff_image = ax.imshow(take_slice(diff, axis, index), cmap="magma", vmin=0, vmax=0.3, origin="lower")
            ax.set_title(f"|FA {name} − {reference}|", fontsize="small")
        if diff_image is not None:
            figure.colorbar(diff_image, ax=axes[1, :].tolist(), shrink=0.8, label="|ΔFA|")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    where = f"{AXIS_NAMES[axis]} slice {index}"
    figure.suptitle(f"{title}, {where}" if title else f"FA, {where}")
    return _finish(figure, path)


def read_history(source) -> pd.DataFrame:
    """Training history as a DataFrame with columns ``epoch, loss[, val_loss]`` (TSV path or DataFrame)."""
    if isinstance(source, pd.DataFrame):
        table, label = source, "training history"
    else:
        label = f"training history {source}"
        try:
            table = pd.read_csv(source, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{label} cannot be read as a TSV table: {error}") from None
    missing = [c for c in ("epoch", "loss") if c not in table.columns]
    if missing:
        raise InputError(f"{label} lacks column(s) {', '.join(missing)}; found {', '.join(map(str, table.columns))}")
    return table


def plot_training_history(
    histories: Mapping[str, pd.DataFrame | PathLike],
    *,
    log_scale: bool = False,
    path: PathLike | None = None,
) -> Figure:
    """Training and validation loss per epoch, one panel per model.

    Parameters
    ----------
    histories : mapping of str to DataFrame or TSV path
        History tables with columns ``epoch``, ``loss`` and optionally ``val_loss``, by model name.
    log_scale : bool
        Logarithmic loss axis.
    path : path, optional

    Returns
    -------
    Figure
        One axes per model (in a grid of up to three columns; spare cells removed).
    """
    if not histories:
        raise InputError("no training history given to plot")
    tables = {name: read_history(src) for name, src in histories.items()}
    n_cols = min(3, len(tables))
    n_rows = -(-len(tables) // n_cols)
    figure = Figure(figsize=(4.0 * n_cols, 3.0 * n_rows), layout="constrained")
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, (name, table) in zip(axes, tables.items()):
        ax.plot(table["epoch"], table["loss"], marker=".", label="training")
        if "val_loss" in table and table["val_loss"].notna().any():
            ax.plot(table["epoch"], table["val_loss"], marker=".", label="validation")
            best = table.loc[table["val_loss"].idxmin()]
            ax.axvline(best["epoch"], color="grey", linestyle=":", linewidth=1)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (MAE, scaled signal)")
        if log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(tables) :]:
        figure.delaxes(ax)
    return _finish(figure, path)
