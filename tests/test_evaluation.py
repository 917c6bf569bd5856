"""Evaluation: SH baseline, signal metrics, DTI metrics, summary table, and the SH command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from dipy.core.geometry import cart2sphere
from dipy.core.sphere import Sphere
from dipy.reconst import shm

from dmri_rcnn.cli import sh_baseline as sh_cli
from dmri_rcnn.core import io
from dmri_rcnn.errors import EXIT_BAD_INPUT, InputError
from dmri_rcnn.evaluation import (
    DTIMaps,
    axis_angle_deg,
    dominant_fibre_direction,
    dti_errors,
    evaluate_prediction,
    fit_dti,
    mean_absolute_error,
    normalise_by_b0,
    peak_signal_to_noise_ratio,
    root_mean_squared_error,
    select_sh_on_held_out,
    select_sh_parameters,
    sh_interpolate,
    ssim_per_volume,
    summarise_metrics,
)


def random_unit_vectors(n: int, seed: int) -> np.ndarray:
    """(3, n) random unit vectors."""
    vectors = np.random.default_rng(seed).normal(size=(3, n))
    return vectors / np.linalg.norm(vectors, axis=0)


def band_limited_signal(coefficients: np.ndarray, bvecs: np.ndarray, basis: str = "tournier07") -> np.ndarray:
    """Evaluate order-4 SH coefficients (..., 15) at (3, N) directions with DIPY's own basis functions."""
    _, theta, phi = cart2sphere(*bvecs)
    real_sh = shm.real_sh_tournier if basis == "tournier07" else shm.real_sh_descoteaux
    matrix, _, _ = real_sh(4, theta, phi, legacy=False)
    return coefficients @ matrix.T


# ---------------------------------------------------------------- signal metrics on hand-made arrays


def tiny_case():
    """Two voxels (one masked out), two volumes; errors 1 and 2 inside the mask."""
    acquired = np.array([[1.0, 2.0], [10.0, 10.0]]).reshape(2, 1, 1, 2)
    predicted = np.array([[2.0, 0.0], [0.0, 0.0]]).reshape(2, 1, 1, 2)
    mask = np.array([True, False]).reshape(2, 1, 1)
    return predicted, acquired, mask


def test_mae_rmse_psnr_match_hand_computed_values():
    predicted, acquired, mask = tiny_case()
    assert mean_absolute_error(predicted, acquired, mask) == pytest.approx(1.5)
    assert root_mean_squared_error(predicted, acquired, mask) == pytest.approx(np.sqrt(2.5))
    # data range inside the mask: max 2 - min 1 = 1
    assert peak_signal_to_noise_ratio(predicted, acquired, mask) == pytest.approx(20 * np.log10(1 / np.sqrt(2.5)))
    assert peak_signal_to_noise_ratio(predicted, acquired, mask, 100.0) == pytest.approx(20 * np.log10(100 / np.sqrt(2.5)))


def test_perfect_prediction_gives_zero_error_infinite_psnr_unit_ssim():
    acquired = np.random.default_rng(0).uniform(100, 200, size=(6, 5, 4, 3))
    mask = np.ones((6, 5, 4), bool)
    metrics = evaluate_prediction(acquired.copy(), acquired, mask, b0=np.full((6, 5, 4), 300.0))
    assert metrics["mae"] == 0.0 and metrics["rmse"] == 0.0
    assert metrics["mae_norm"] == 0.0 and metrics["rmse_norm"] == 0.0
    assert metrics["psnr"] == float("inf") and metrics["psnr_norm"] == float("inf")
    assert metrics["ssim"] == pytest.approx(1.0) and metrics["ssim_norm"] == pytest.approx(1.0)


def test_ssim_of_constant_images_is_the_luminance_term():
    alpha, beta, value_range = 3.0, 5.0, 10.0
    mask = np.ones((5, 5, 5), bool)
    ssim = ssim_per_volume(np.full((5, 5, 5, 1), beta), np.full((5, 5, 5, 1), alpha), mask, value_range)
    c1 = (0.01 * value_range) ** 2
    assert ssim == pytest.approx([(2 * alpha * beta + c1) / (alpha**2 + beta**2 + c1)])


def _ssim_by_direct_loop(pred, ref, mask, value_range, weights):
    """Independent SSIM: for every voxel, weighted statistics of its mirrored neighbourhood, one by one.

    Written from Wang et al. (2004) without scipy filters: ``weights`` is the (w, w, w) window (summing to
    1); borders mirror the image with the edge voxel repeated (scipy's "reflect" == NumPy's "symmetric");
    images are zeroed outside the mask; the map is averaged over masked voxels.
    """
    radius = weights.shape[0] // 2
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    result = []
    for volume in range(ref.shape[3]):
        x = np.pad(np.where(mask, ref[..., volume], 0.0), radius, mode="symmetric")
        y = np.pad(np.where(mask, pred[..., volume], 0.0), radius, mode="symmetric")
        values = []
        for i, j, k in zip(*np.nonzero(mask)):
            a = x[i : i + 2 * radius + 1, j : j + 2 * radius + 1, k : k + 2 * radius + 1]
            b = y[i : i + 2 * radius + 1, j : j + 2 * radius + 1, k : k + 2 * radius + 1]
            mean_a, mean_b = np.sum(weights * a), np.sum(weights * b)
            var_a = np.sum(weights * (a - mean_a) ** 2)
            var_b = np.sum(weights * (b - mean_b) ** 2)
            cov = np.sum(weights * (a - mean_a) * (b - mean_b))
            values.append(((2 * mean_a * mean_b + c1) * (2 * cov + c2)) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)))
        result.append(np.mean(values))
    return np.array(result)


@pytest.mark.parametrize("window", ["uniform", "gaussian"])
@pytest.mark.parametrize("masked", [False, True])
def test_ssim_matches_an_independent_direct_loop(window, masked):
    rng = np.random.default_rng(1)
    shape = (8, 7, 6)
    ref = rng.uniform(100, 1000, size=shape + (2,))
    pred = ref + rng.normal(scale=150, size=ref.shape)
    mask = np.ones(shape, bool)
    if masked:  # an irregular mask: the zeroing outside it must enter the windows of voxels near its edge
        mask = rng.uniform(size=shape) > 0.35
    value_range = float(ref[mask].max() - ref[mask].min())
    if window == "uniform":
        weights = np.full((3, 3, 3), 1 / 27)
        ours = ssim_per_volume(pred, ref, mask, window="uniform", size=3)
    else:
        radius = int(3.5 * 1.5 + 0.5)  # the Gaussian truncated at 3.5 sigma, sigma 1.5 voxels
        t = np.arange(-radius, radius + 1)
        g = np.exp(-(t**2) / (2 * 1.5**2))
        weights = g[:, None, None] * g[None, :, None] * g[None, None, :]
        weights /= weights.sum()
        ours = ssim_per_volume(pred, ref, mask)
    expected = _ssim_by_direct_loop(pred, ref, mask, value_range, weights)
    np.testing.assert_allclose(ours, expected, rtol=1e-9)
    assert np.all(expected < 0.99)  # the noise really lowers SSIM: the comparison is not between ones


def test_normalise_by_b0_divides_and_excludes_nonpositive_b0():
    dmri = np.array([[4.0, 8.0], [3.0, 3.0], [5.0, 5.0]]).reshape(3, 1, 1, 2)
    b0 = np.array([2.0, 0.0, 5.0]).reshape(3, 1, 1)
    mask = np.array([True, True, False]).reshape(3, 1, 1)
    normalised, valid = normalise_by_b0(dmri, b0, mask)
    np.testing.assert_allclose(normalised[0, 0, 0], [2.0, 4.0])
    assert valid.ravel().tolist() == [True, False, False]


def test_normalised_metrics_use_mean_of_b0_volumes():
    predicted, acquired, mask = tiny_case()
    b0 = np.stack([np.full((2, 1, 1), 1.0), np.full((2, 1, 1), 3.0)], axis=-1)  # mean b0 = 2
    metrics = evaluate_prediction(predicted, acquired, mask, b0)
    assert metrics["mae_norm"] == pytest.approx(0.75)
    assert metrics["rmse_norm"] == pytest.approx(np.sqrt(2.5) / 2)
    # PSNR is scale-free: normalising by a constant b0 leaves it unchanged
    assert metrics["psnr_norm"] == pytest.approx(metrics["psnr"])


def test_metric_inputs_are_checked():
    predicted, acquired, mask = tiny_case()
    with pytest.raises(InputError, match="shape"):
        mean_absolute_error(predicted[..., :1], acquired, mask)
    with pytest.raises(InputError, match="mask"):
        mean_absolute_error(predicted, acquired, np.zeros((2, 1, 1), bool))
    with pytest.raises(InputError, match="DTI metrics need all"):
        evaluate_prediction(predicted, acquired, mask, np.ones((2, 1, 1)), bval=1000)


# ---------------------------------------------------------------- SH baseline


@pytest.mark.parametrize("basis", ["tournier07", "descoteaux07"])
def test_sh_baseline_recovers_a_band_limited_signal_exactly(basis):
    coefficients = np.random.default_rng(2).normal(size=(4, 3, 2, 15))
    context_bvecs = random_unit_vectors(20, seed=3)
    target_bvecs = random_unit_vectors(30, seed=4)
    context = band_limited_signal(coefficients, context_bvecs, basis)
    truth = band_limited_signal(coefficients, target_bvecs, basis)
    predicted = sh_interpolate(context, context_bvecs, target_bvecs, sh_order=4, basis=basis)
    assert predicted.shape == (4, 3, 2, 30)
    np.testing.assert_allclose(predicted, truth, atol=1e-5 * np.abs(truth).max())
    # The float64 core is exact to round-off (the public function returns float32 images).
    from dmri_rcnn.evaluation import sh_interpolation_matrix

    exact = context.reshape(-1, 20) @ sh_interpolation_matrix(context_bvecs, target_bvecs, 4, basis)
    np.testing.assert_allclose(exact, truth.reshape(-1, 30), atol=1e-6)
    # An order-2 fit cannot represent it.
    order2 = sh_interpolate(context, context_bvecs, target_bvecs, sh_order=2, basis=basis)
    assert np.abs(order2 - truth).max() > 0.1


@pytest.mark.parametrize(("order", "smooth"), [(2, 0.0), (4, 0.006), (6, 0.01)])
def test_sh_baseline_matches_dipy_sf_to_sh_and_sh_to_sf(order, smooth):
    context_bvecs = random_unit_vectors(30, seed=5)
    target_bvecs = random_unit_vectors(12, seed=6)
    signal = np.random.default_rng(7).uniform(500, 3000, size=(5, 30))
    coefficients = shm.sf_to_sh(
        signal, Sphere(xyz=context_bvecs.T), sh_order_max=order, basis_type="tournier07", legacy=False, smooth=smooth
    )
    expected = shm.sh_to_sf(coefficients, Sphere(xyz=target_bvecs.T), sh_order_max=order, basis_type="tournier07", legacy=False)
    predicted = sh_interpolate(signal, context_bvecs, target_bvecs, sh_order=order, smooth=smooth)
    np.testing.assert_allclose(predicted, expected, rtol=1e-5)


def test_sh_baseline_rejects_bad_settings():
    bvecs = random_unit_vectors(6, seed=8)
    with pytest.raises(InputError, match="even"):
        sh_interpolate(np.ones((2, 6)), bvecs, bvecs, sh_order=3)
    with pytest.raises(InputError, match="basis"):
        sh_interpolate(np.ones((2, 6)), bvecs, bvecs, basis="mrtrix")
    with pytest.raises(InputError, match="5 volumes"):
        sh_interpolate(np.ones((2, 5)), bvecs, bvecs)
    with pytest.raises(InputError, match="context bvecs: column 1 of 6 has length 2"):
        sh_interpolate(np.ones((2, 6)), 2 * bvecs, bvecs)
    # issue 11 case 4: 15 coefficients from 6 directions without smoothing is underdetermined
    with pytest.raises(InputError, match="SH order 4 has 15 coefficients but there are only 6 context directions"):
        sh_interpolate(np.ones((2, 6)), bvecs, bvecs, sh_order=4)
    assert np.isfinite(sh_interpolate(np.ones((2, 6)), bvecs, bvecs, sh_order=4, smooth=0.01)).all()


def test_sh_selection_picks_the_true_order_on_a_band_limited_signal():
    coefficients = np.random.default_rng(9).normal(size=(50, 15))
    context_bvecs = random_unit_vectors(24, seed=10)
    selection = select_sh_parameters(band_limited_signal(coefficients, context_bvecs), context_bvecs, orders=(2, 4, 6))
    assert (selection.sh_order, selection.smooth) == (4, 0.0)
    assert selection.error < 1e-6
    # order 6 (28 coefficients) without smoothing is underdetermined by 24 directions: not a candidate
    assert len(selection.table) == 3 * 10 - 1
    assert (6, 0.0) not in [(order, smooth) for order, smooth, _ in selection.table]
    assert all(row[2] >= selection.error for row in selection.table)


def test_sh_selection_prefers_smoothing_for_isotropic_noise():
    rng = np.random.default_rng(11)
    context = 1000 + rng.normal(scale=50, size=(400, 6))
    selection = select_sh_parameters(context, random_unit_vectors(6, seed=12), np.ones(400, bool))
    plain_order2 = next(row[2] for row in selection.table if row[:2] == (2, 0.0))
    assert selection.error < plain_order2
    assert selection.sh_order == 0 or selection.smooth > 0


def test_held_out_selection_picks_the_true_order_on_a_band_limited_signal():
    coefficients = np.random.default_rng(21).normal(size=(60, 15))
    context_bvecs, target_bvecs = random_unit_vectors(20, seed=22), random_unit_vectors(30, seed=23)
    example = {
        "context": band_limited_signal(coefficients, context_bvecs),
        "context_bvecs": context_bvecs,
        "targets": band_limited_signal(coefficients, target_bvecs),
        "target_bvecs": target_bvecs,
    }
    selection = select_sh_on_held_out([example], orders=(2, 4), smooths=(0.0, 0.01))
    assert (selection.sh_order, selection.smooth, selection.criterion) == (4, 0.0, "held-out")
    assert selection.error < 1e-6
    assert [row[:2] for row in selection.table] == [(2, 0.0), (2, 0.01), (4, 0.0), (4, 0.01)]
    assert all(row[2] > 1e-3 for row in selection.table if row[:2] != (4, 0.0))


def test_held_out_selection_error_is_the_pooled_mae_inside_the_masks():
    context_bvecs, target_bvecs = random_unit_vectors(6, seed=24), random_unit_vectors(4, seed=25)
    rng = np.random.default_rng(26)
    examples = []
    for n_voxels in (5, 8):
        mask = np.zeros(n_voxels, bool)
        mask[:3] = True
        examples.append(
            {
                "context": rng.normal(1000, 30, (n_voxels, 6)),
                "context_bvecs": context_bvecs,
                "targets": rng.normal(1000, 30, (n_voxels, 4)),
                "target_bvecs": target_bvecs,
                "mask": mask,
            }
        )
    selection = select_sh_on_held_out(examples, orders=(0,), smooths=(0.0,))
    # order 0 predicts the context mean for every target direction
    errors = [np.abs(e["context"][e["mask"]].mean(-1, keepdims=True) - e["targets"][e["mask"]]) for e in examples]
    assert selection.error == pytest.approx(np.concatenate(errors).mean())


def test_held_out_selection_names_the_bad_example():
    bvecs = random_unit_vectors(6, seed=27)
    good = {"context": np.ones((4, 6)), "context_bvecs": bvecs, "targets": np.ones((4, 6)), "target_bvecs": bvecs}
    with pytest.raises(InputError, match="example 1: targets have 5 volumes but their bvecs have 6"):
        select_sh_on_held_out([good, {**good, "targets": np.ones((4, 5))}])
    with pytest.raises(InputError, match="example 0: no voxels inside the mask"):
        select_sh_on_held_out([{**good, "mask": np.zeros(4, bool)}])
    with pytest.raises(InputError, match="at least one example"):
        select_sh_on_held_out([])


# ---------------------------------------------------------------- DTI


def tensor_phantom(seed: int = 0):
    """Noiseless single-tensor signal: FA ~0.8 along x in one half, isotropic in the other."""
    rng = np.random.default_rng(seed)
    bvecs = random_unit_vectors(30, seed=13)
    shape = (4, 4, 3)
    evals = np.where(np.arange(4)[:, None, None, None] < 2, [1.7e-3, 0.3e-3, 0.3e-3], [0.8e-3, 0.8e-3, 0.8e-3])
    evals = np.broadcast_to(evals, (*shape, 3))
    # D = diag(evals) in the scanner frame (principal axis x); signal S0 exp(-b g^T D g)
    adc = np.einsum("...d,dn->...n", evals, bvecs**2)
    s0 = 3000 + rng.uniform(-10, 10, size=shape)
    b0 = np.stack([s0, s0], axis=-1)
    dwi = s0[..., None] * np.exp(-1000 * adc)
    return b0, dwi, bvecs, np.ones(shape, bool)


def test_dti_metrics_are_zero_for_perfect_and_positive_for_perturbed_prediction():
    b0, dwi, bvecs, mask = tensor_phantom()
    context, target = dwi[..., :10], dwi[..., 10:]
    kwargs = dict(context=context, context_bvecs=bvecs[:, :10], target_bvecs=bvecs[:, 10:], bval=1000)
    perfect = evaluate_prediction(target, target, mask, b0, **kwargs)
    assert perfect["fa_mae"] == pytest.approx(0.0, abs=1e-12)
    assert perfect["md_mae"] == pytest.approx(0.0, abs=1e-15)
    assert perfect["pdd_angle_deg"] == pytest.approx(0.0, abs=1e-5)
    perturbed = target * np.random.default_rng(14).uniform(0.8, 1.2, size=target.shape)
    worse = evaluate_prediction(perturbed, target, mask, b0, **kwargs)
    assert worse["fa_mae"] > 0.005 and worse["md_mae"] > 1e-6 and worse["pdd_angle_deg"] > 0.1


def test_dti_fit_recovers_phantom_and_angle_is_antipodally_symmetric():
    b0, dwi, bvecs, mask = tensor_phantom()
    gtab = io.make_gradient_table(np.r_[0, 0, np.full(30, 1000)], np.c_[np.zeros((3, 2)), bvecs])
    maps = fit_dti(np.concatenate([b0, dwi], -1), gtab, mask)
    expected_fa = np.sqrt(0.5) * np.sqrt((1.4**2 + 0 + 1.4**2)) / np.sqrt(1.7**2 + 2 * 0.3**2)
    np.testing.assert_allclose(maps.fa[:2], expected_fa, rtol=1e-6)
    np.testing.assert_allclose(maps.fa[2:], 0.0, atol=1e-6)
    np.testing.assert_allclose(maps.md[:2], (1.7e-3 + 0.3e-3 + 0.3e-3) / 3, rtol=1e-6)
    np.testing.assert_allclose(maps.md[2:], 0.8e-3, rtol=1e-6)
    assert np.allclose(np.abs(maps.pdd[:2, ..., 0]), 1.0)
    x, y = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    assert axis_angle_deg(x, -x) == pytest.approx(0.0)
    assert axis_angle_deg(x, y) == pytest.approx(90.0)
    assert axis_angle_deg(x, np.array([1.0, 1.0, 0])) == pytest.approx(45.0)
    assert axis_angle_deg(-x, np.array([1.0, -1.0, 0])) == pytest.approx(45.0)


def test_dti_errors_by_hand_and_pdd_only_where_fa_exceeds_threshold():
    shape = (2, 1, 1)
    pdd_x = np.zeros((*shape, 3))
    pdd_x[..., 0] = 1
    pdd_y = np.zeros((*shape, 3))
    pdd_y[..., 1] = 1
    reference = DTIMaps(fa=np.array([0.5, 0.1]).reshape(shape), md=np.full(shape, 1e-3), pdd=pdd_x)
    predicted = DTIMaps(fa=np.array([0.4, 0.4]).reshape(shape), md=np.full(shape, 1.5e-3), pdd=pdd_y)
    errors = dti_errors(predicted, reference, np.ones(shape, bool))
    assert errors["fa_mae"] == pytest.approx(0.2)
    assert errors["md_mae"] == pytest.approx(0.5e-3)
    assert errors["pdd_angle_deg"] == pytest.approx(90.0)  # only the voxel with FA 0.5 counts


def test_tissue_breakdown_and_ground_truth_direction():
    b0, dwi, bvecs, mask = tensor_phantom()
    context, target = dwi[..., :10], dwi[..., 10:]
    predicted = target.copy()
    predicted[:2] += 30.0  # error only in the anisotropic half
    tissue = np.where(np.arange(4)[:, None, None] < 2, 1, 2) * np.ones(mask.shape, int)
    truth = np.zeros((*mask.shape, 3))
    truth[..., 1] = 1.0  # deliberately wrong: along y, while the phantom's fibres run along x
    metrics = evaluate_prediction(
        predicted, target, mask, b0, context=context, context_bvecs=bvecs[:, :10], target_bvecs=bvecs[:, 10:],
        bval=1000, tissue_map=tissue, tissue_names={1: "wm", 2: "csf", 3: "gm"}, true_pdd=truth,
    )
    assert metrics["mae_wm"] == pytest.approx(30.0) and metrics["mae_csf"] == pytest.approx(0.0)
    assert metrics["mae"] == pytest.approx(15.0)
    assert np.isnan(metrics["mae_gm"]) and np.isnan(metrics["fa_mae_gm"])
    assert metrics["fa_mae_csf"] == pytest.approx(0.0, abs=1e-9) and metrics["fa_mae_wm"] > 0
    assert metrics["pdd_angle_truth_deg"] == pytest.approx(90.0, abs=1.0)  # prediction error tilts it a little


def test_dominant_fibre_direction_only_where_one_population_dominates():
    dirs = np.zeros((3, 1, 1, 2, 3))
    dirs[:, 0, 0, 0] = [1, 0, 0]
    dirs[:, 0, 0, 1] = [0, 1, 0]
    fractions = np.array([[0.3, 0.7], [0.5, 0.5], [0.0, 0.0]]).reshape(3, 1, 1, 2)
    truth = dominant_fibre_direction(dirs, fractions)
    np.testing.assert_array_equal(truth[:, 0, 0], [[0, 1, 0], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(InputError, match="disagree"):
        dominant_fibre_direction(dirs[..., 0, :], fractions)


# ---------------------------------------------------------------- summary table


def test_summary_table_columns_means_and_sds_match_pandas():
    rng = np.random.default_rng(15)
    rows = pd.DataFrame(
        [
            {"subject": f"s{s}", "method": method, "shell": shell, "q_in": q_in,
             "pdd_angle_deg": rng.uniform(5, 30), "mae": rng.uniform(100, 300), "rmse": rng.uniform(100, 400),
             "fa_mae": rng.uniform(0, 0.1), "md_mae": rng.uniform(0, 1e-4), "mae_wm": rng.uniform(0, 1)}
            for s in range(3) for method in ("3D", "SH", "1D", "SH_original") for shell in (1000, 2000) for q_in in (6, 10)
        ]
    )
    summary = summarise_metrics(rows)
    metrics = ["mae", "rmse", "fa_mae", "md_mae", "pdd_angle_deg", "mae_wm"]
    assert list(summary.columns) == [
        "method", "shell", "q_in", "n_subjects", *[f"{m}{suffix}" for m in metrics for suffix in ("", "_sd", "_n")]
    ]
    assert len(summary) == 4 * 2 * 2
    assert summary["method"].tolist()[::4] == ["SH_original", "SH", "1D", "3D"]
    assert (summary["n_subjects"] == 3).all()
    expected = rows.groupby(["method", "shell", "q_in"])[["mae", "pdd_angle_deg"]].agg(["mean", "std"])
    for _, row in summary.iterrows():
        key = (row["method"], row["shell"], row["q_in"])
        assert row["mae"] == pytest.approx(expected.loc[key, ("mae", "mean")])
        assert row["mae_sd"] == pytest.approx(expected.loc[key, ("mae", "std")])
        assert row["pdd_angle_deg_sd"] == pytest.approx(expected.loc[key, ("pdd_angle_deg", "std")])


def test_summary_rejects_missing_columns_and_duplicates():
    rows = pd.DataFrame({"subject": ["a", "a"], "method": ["SH", "SH"], "shell": [1000, 1000], "q_in": [6, 6], "mae": [1.0, 2.0]})
    with pytest.raises(InputError, match="more than one row"):
        summarise_metrics(rows)
    with pytest.raises(InputError, match="q_in"):
        summarise_metrics(rows.drop(columns="q_in"))


# ---------------------------------------------------------------- dmri_rcnn_sh_baseline.py


@pytest.fixture
def sh_inputs(tmp_path):
    """Context NIfTI (order-4 band-limited signal, 20 directions) with its bvecs and 30 target bvecs."""
    coefficients = np.random.default_rng(16).normal(size=(5, 4, 3, 15)) * 100
    coefficients[..., 0] += 2000
    context_bvecs, target_bvecs = random_unit_vectors(20, seed=17), random_unit_vectors(30, seed=18)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(band_limited_signal(coefficients, context_bvecs).astype(np.float32), affine), tmp_path / "ctx.nii.gz")
    np.savetxt(tmp_path / "ctx.bvec", context_bvecs, fmt="%1.6f")
    np.savetxt(tmp_path / "tgt.bvec", target_bvecs, fmt="%1.6f")
    mask = np.zeros((5, 4, 3), np.uint8)
    mask[1:4, 1:3] = 1
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    truth = band_limited_signal(coefficients, np.loadtxt(tmp_path / "tgt.bvec"))
    return tmp_path, truth, affine


def console_command(name: str) -> list[str]:
    """The installed console script beside this Python, else the module behind it."""
    script = Path(sys.executable).parent / name
    module = {"dmri_rcnn_sh_baseline.py": "dmri_rcnn.cli.sh_baseline", "dmri_rcnn_plot.py": "dmri_rcnn.cli.plot"}[name]
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


def test_sh_cli_writes_interpolated_volumes(sh_inputs):
    folder, truth, affine = sh_inputs
    out = folder / "pred.nii.gz"
    proc = subprocess.run(
        [*console_command("dmri_rcnn_sh_baseline.py"), "-dmri_in", str(folder / "ctx.nii.gz"), "-bvec_in",
         str(folder / "ctx.bvec"), "-bvec_out", str(folder / "tgt.bvec"), "-dmri_out", str(out), "-s", "1000",
         "-sh_order", "4"],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    image = nib.load(out)
    assert image.shape == (5, 4, 3, 30)
    np.testing.assert_allclose(image.affine, affine)
    np.testing.assert_allclose(image.get_fdata(), truth, rtol=1e-3)


def test_sh_cli_default_is_the_original_order_2_and_auto_selects(sh_inputs, capsys):
    folder, truth, _ = sh_inputs
    common = ["-dmri_in", str(folder / "ctx.nii.gz"), "-bvec_in", str(folder / "ctx.bvec"), "-bvec_out", str(folder / "tgt.bvec")]
    assert sh_cli.main([*common, "-dmri_out", str(folder / "o2.nii.gz")]) == 0
    order2 = sh_interpolate(nib.load(folder / "ctx.nii.gz").get_fdata(), np.loadtxt(folder / "ctx.bvec"), np.loadtxt(folder / "tgt.bvec"), sh_order=2)
    np.testing.assert_allclose(nib.load(folder / "o2.nii.gz").get_fdata(), order2, rtol=1e-5)
    assert sh_cli.main([*common, "-dmri_out", str(folder / "auto.nii"), "-sh_order", "auto", "-mask", str(folder / "mask.nii.gz")]) == 0
    assert "selected SH order 4, smoothing 0" in capsys.readouterr().err
    np.testing.assert_allclose(nib.load(folder / "auto.nii").get_fdata(), truth, rtol=1e-3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"-dmri_in": "missing.nii.gz"}, "-dmri_in: .*missing.nii.gz: NIfTI file not found"),
        ({"-bvec_in": "tgt.bvec"}, "-dmri_in: .*one volume per -bvec_in direction \\(30 in .*tgt.bvec\\), found 20"),
        ({"-bvec_out": "bad.bvec"}, "-bvec_out: .*bad.bvec: expected b-vectors as 3 rows"),
        ({"-bvec_in": "long.bvec"}, "-bvec_in: .*long.bvec: column [0-9]+ of 20 has length 2"),
        ({"-sh_order": "3"}, "-sh_order: expected an even integer >= 0 or 'auto', found 3"),
        ({"-smooth": "-1"}, "-smooth: expected a value >= 0, found -1"),
        ({"-dmri_out": "pred.txt"}, "-dmri_out .*pred.txt: expected a file name ending in .nii or .nii.gz"),
        ({"-mask": "ctx.bvec"}, "-mask: .*ctx.bvec: expected a NIfTI image"),
    ],
)
def test_sh_cli_bad_input_gives_one_line_and_no_output(sh_inputs, capsys, change, message):
    folder, _, _ = sh_inputs
    np.savetxt(folder / "bad.bvec", np.ones((2, 30)))
    np.savetxt(folder / "long.bvec", 2 * np.loadtxt(folder / "ctx.bvec"))
    args = {"-dmri_in": "ctx.nii.gz", "-bvec_in": "ctx.bvec", "-bvec_out": "tgt.bvec", "-dmri_out": "pred.nii.gz"}
    args.update(change)
    argv = [item for flag, value in args.items() for item in (flag, value if flag in ("-sh_order", "-smooth") else str(folder / value))]
    before = set(os.listdir(folder))
    assert sh_cli.main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert __import__("re").search(message, err), err
    assert set(os.listdir(folder)) == before


def test_sh_cli_process_reports_bad_input_without_traceback(sh_inputs):
    folder, _, _ = sh_inputs
    proc = subprocess.run(
        [*console_command("dmri_rcnn_sh_baseline.py"), "-dmri_in", str(folder / "ctx.nii.gz"), "-bvec_in",
         str(folder / "tgt.bvec"), "-bvec_out", str(folder / "tgt.bvec"), "-dmri_out", str(folder / "x.nii.gz")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == EXIT_BAD_INPUT
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert not (folder / "x.nii.gz").exists()


def test_paper_ordering_per_subject_and_its_report_text():
    from docutils.core import publish_parts

    from dmri_rcnn.evaluation.summary import ordering_by_subject, ordering_report_rst

    mae = {("s1", "SH"): 200.0, ("s1", "1D"): 190.0, ("s1", "3D"): 170.0, ("s1", "SH_original"): 210.0,
           ("s2", "SH"): 205.0, ("s2", "1D"): 208.0, ("s2", "3D"): 160.0, ("s2", "SH_original"): 215.0}
    rows = pd.DataFrame([{"subject": s, "method": m, "shell": 1000, "q_in": 6, "mae": v, "rmse": 2 * v}
                         for (s, m), v in mae.items()])
    table = ordering_by_subject(rows)
    assert list(table.columns) == ["shell", "q_in", "subject", "3D", "1D", "SH", "holds"]
    assert table.set_index("subject")["holds"].to_dict() == {"s1": True, "s2": False}  # s2: 1D worse than SH
    text = ordering_report_rst(table)
    assert "holds on 1 of 2 test subjects" in text
    assert f"{(170 + 160) / (200 + 205):.2f} × that of SH" in text
    html = publish_parts(text, writer_name="html")["body"]
    assert "<table" in html and "208.0" in html and "ERROR" not in html

    rows.loc[(rows.subject == "s2") & (rows.method == "1D"), "mae"] = 195.0
    assert "holds on every test subject" in ordering_report_rst(ordering_by_subject(rows))
    without_1d = ordering_by_subject(rows[rows.method != "1D"])
    assert without_1d.empty and "was not evaluated" in ordering_report_rst(without_1d)
