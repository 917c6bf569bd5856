"""Cross-shell baselines: a tensor fitted to b0 + b=1000 extrapolated to b=2000 and 3000, and kurtosis maps
of predicted shells scored against the acquired ones, on small noiseless simulated volumes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from dipy.core.gradients import gradient_table
from dipy.sims.voxel import multi_tensor_dki

from dmri_rcnn.core.io import B0_THRESHOLD
from dmri_rcnn.errors import InputError
from dmri_rcnn.evaluation.cross_shell import (
    context_volumes,
    cross_shell_dki_errors,
    dki_maps,
    extrapolate_dti,
)
from dmri_rcnn.simulation import hcp_like_scheme

SHAPE = (3, 2, 2)


def _table(bvals, bvecs):
    return gradient_table(bvals, bvecs=bvecs.T, b0_threshold=B0_THRESHOLD)


@pytest.fixture(scope="module")
def scheme():
    """An HCP-like b = 0, 1000, 2000, 3000 scheme, 20 directions per shell, and its b=2000/3000 part."""
    bvals, bvecs = hcp_like_scheme((1000, 2000, 3000), 20, 3)
    high = bvals > 1500
    return _table(bvals, bvecs), _table(bvals[high], bvecs[:, high])


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _tensor_voxels(rng) -> tuple[np.ndarray, np.ndarray]:
    """A known tensor (i, j, k, 3, 3) in mm²/s and S0 (i, j, k) per voxel."""
    tensors = np.empty((*SHAPE, 3, 3))
    for index in np.ndindex(SHAPE):
        evals = rng.uniform([1.2e-3, 0.2e-3, 0.2e-3], [1.8e-3, 0.6e-3, 0.4e-3])
        rotation = _rotation(rng)
        tensors[index] = rotation @ np.diag(evals) @ rotation.T
    return tensors, rng.uniform(2500.0, 4000.0, SHAPE)


def _tensor_signal(tensors, s0, bvals, bvecs) -> np.ndarray:
    """S0 exp(-b gᵀ D g) for every voxel and volume, written out independently of DIPY."""
    adc = np.einsum("iq,...ij,jq->...q", bvecs, tensors, bvecs)
    return s0[..., None] * np.exp(-np.asarray(bvals)[None, None, None, :] * adc)


def _mask() -> np.ndarray:
    mask = np.ones(SHAPE, dtype=bool)
    mask[0, 0, 0] = mask[2, 1, 1] = False
    return mask


def test_dti_extrapolation_equals_the_tensor_signal(scheme):
    gtab, targets = scheme
    tensors, s0 = _tensor_voxels(np.random.default_rng(3))
    # every shell acquired: the fit must use b0 and b=1000 only
    dmri = _tensor_signal(tensors, s0, gtab.bvals, gtab.bvecs.T)
    mask = _mask()

    predicted = extrapolate_dti(dmri, gtab, mask, targets)

    expected = _tensor_signal(tensors, s0, targets.bvals, targets.bvecs.T)
    assert predicted.shape == (*SHAPE, len(targets.bvals)) and predicted.dtype == np.float32
    np.testing.assert_allclose(predicted[mask], expected[mask], rtol=1e-6)
    assert not predicted[~mask].any()


def test_dti_extrapolation_ignores_the_other_shells(scheme):
    gtab, targets = scheme
    tensors, s0 = _tensor_voxels(np.random.default_rng(4))
    dmri = _tensor_signal(tensors, s0, gtab.bvals, gtab.bvecs.T)
    corrupted = dmri.copy()
    corrupted[..., gtab.bvals > 1500] *= 0.5
    mask = _mask()
    np.testing.assert_array_equal(
        extrapolate_dti(dmri, gtab, mask, targets), extrapolate_dti(corrupted, gtab, mask, targets)
    )
    kept = context_volumes(gtab)
    assert set(np.round(gtab.bvals[kept], -3)) == {0.0, 1000.0}


def _kurtosis_image(gtab) -> np.ndarray:
    """Two-compartment (intra- and extra-axonal) signal, non-Gaussian, for every voxel of SHAPE."""
    rng = np.random.default_rng(5)
    data = np.empty((*SHAPE, len(gtab.bvals)))
    mevals = np.array([[1.7e-3, 0.1e-3, 0.1e-3], [2.0e-3, 0.8e-3, 0.8e-3]])
    for index in np.ndindex(SHAPE):
        angle = tuple(rng.uniform([0.0, 0.0], [180.0, 360.0]))
        fraction = rng.uniform(30.0, 70.0)
        signal, _, _ = multi_tensor_dki(
            gtab, mevals, S0=rng.uniform(2500.0, 4000.0), angles=[angle, angle], fractions=[fraction, 100.0 - fraction],
            snr=None,
        )
        data[index] = signal
    return data


@pytest.fixture(scope="module")
def kurtosis_subject(scheme):
    """b0 + b=1000 context, acquired b=2000 targets, their tables, the mask and a tissue map."""
    gtab, _ = scheme
    low = gtab.bvals < 1500
    target = np.abs(gtab.bvals - 2000) <= 30
    data = _kurtosis_image(gtab)
    tissue = np.ones(SHAPE, dtype=np.uint8)
    tissue[1:] = 2
    return {
        "context": data[..., low],
        "gtab": _table(gtab.bvals[low], gtab.bvecs.T[:, low]),
        "acquired": data[..., target],
        "target_gtab": _table(gtab.bvals[target], gtab.bvecs.T[:, target]),
        "mask": _mask(),
        "tissue": tissue,
    }


def test_dki_maps_of_a_kurtotic_signal(kurtosis_subject):
    subject = kurtosis_subject
    data = np.concatenate([subject["context"], subject["acquired"]], axis=-1)
    joined = _table(
        np.concatenate([subject["gtab"].bvals, subject["target_gtab"].bvals]),
        np.concatenate([subject["gtab"].bvecs, subject["target_gtab"].bvecs]).T,
    )
    maps = dki_maps(data, joined, subject["mask"])
    mask = subject["mask"]
    assert np.all(np.isfinite(maps.mk)) and np.all(np.isfinite(maps.fa))
    assert np.all(maps.mk[mask] > 0) and not maps.failed.any()
    assert np.all((maps.fa[mask] > 0) & (maps.fa[mask] < 1))
    assert not maps.mk[~mask].any()


def test_identical_targets_give_zero_kurtosis_errors(kurtosis_subject):
    subject = kurtosis_subject
    errors = cross_shell_dki_errors(
        subject["context"], subject["gtab"], subject["acquired"], subject["acquired"], subject["target_gtab"],
        subject["mask"], tissue_map=subject["tissue"], tissue_names={1: "white_matter", 2: "grey_matter"},
    )
    assert errors == {
        "mk_mae": 0.0, "fa_mae": 0.0,
        "mk_mae_white_matter": 0.0, "fa_mae_white_matter": 0.0,
        "mk_mae_grey_matter": 0.0, "fa_mae_grey_matter": 0.0,
        "dki_failed": 0,
    }


def test_dti_extrapolated_targets_lose_the_kurtosis(kurtosis_subject):
    """A tensor has no kurtosis: b0 + b=1000 + its b=2000 extrapolation give MK near 0, so the MK error of
    the baseline is close to the acquired MK itself."""
    subject = kurtosis_subject
    mask = subject["mask"]
    predicted = extrapolate_dti(subject["context"], subject["gtab"], mask, subject["target_gtab"])
    errors = cross_shell_dki_errors(
        subject["context"], subject["gtab"], predicted, subject["acquired"], subject["target_gtab"], mask
    )
    assert errors["mk_mae"] > 0.1
    assert np.isfinite(errors["fa_mae"]) and errors["dki_failed"] == 0


def _one_line_error(call) -> str:
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_acquisitions_fail_with_one_line(scheme, kurtosis_subject):
    gtab, targets = scheme
    mask = _mask()
    no_b0 = gtab.bvals > B0_THRESHOLD
    table = _table(gtab.bvals[no_b0], gtab.bvecs.T[:, no_b0])
    message = _one_line_error(lambda: extrapolate_dti(np.ones((*SHAPE, no_b0.sum())), table, mask, targets))
    assert "no b0 volume" in message

    no_context = np.abs(gtab.bvals - 1000) > 30
    table = _table(gtab.bvals[no_context], gtab.bvecs.T[:, no_context])
    message = _one_line_error(lambda: extrapolate_dti(np.ones((*SHAPE, no_context.sum())), table, mask, targets))
    assert "context shell b=1000" in message and re.search(r"b-values found: 0, 20\d\d, 30\d\d$", message)

    message = _one_line_error(lambda: extrapolate_dti(np.ones((*SHAPE, 4)), gtab, mask, targets))
    assert f"one volume per b-value; found shape {(*SHAPE, 4)}" in message

    subject = kurtosis_subject
    message = _one_line_error(lambda: dki_maps(subject["context"], subject["gtab"], mask))
    assert "at least two diffusion-weighted shells" in message

    message = _one_line_error(
        lambda: cross_shell_dki_errors(
            subject["context"], subject["gtab"], subject["acquired"][..., :3], subject["acquired"],
            subject["target_gtab"], mask,
        )
    )
    assert message.startswith("predicted: expected a 4D image")
