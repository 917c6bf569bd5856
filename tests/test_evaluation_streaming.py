"""Evaluation one volume / one block of voxels at a time gives the numbers of the whole-array computation.

The references below are written here, straight from the definitions, on whole float64 arrays (the way
the evaluation computed everything before it streamed): pooled errors over ``pred[mask]``, SSIM with
4D filters whose window does not extend along q, b0-normalised copies, and one DIPY tensor fit of the
stacked b0 + context + target image.
"""

from __future__ import annotations

import tracemalloc
import warnings

import nibabel as nib
import numpy as np
import pytest
from dipy.reconst.dti import TensorModel
from scipy import ndimage

from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError
from dmri_rcnn.evaluation import (
    data_range,
    evaluate_prediction,
    fit_dti,
    fit_dti_with_targets,
    mean_b0,
    signal_metrics,
    ssim_per_volume,
    stack_for_dti,
)
from dmri_rcnn.evaluation.dti import MAX_PLAUSIBLE_MD, fit_dti_in_blocks

# ------------------------------------------------------------------------------------ references


def reference_ssim(pred, ref, mask, value_range, window="gaussian", size=7):
    """SSIM per volume from whole 4D float64 arrays (window over i, j, k only)."""
    if window == "gaussian":
        def local_mean(image):
            return ndimage.gaussian_filter(image, sigma=(1.5, 1.5, 1.5, 0), truncate=3.5, mode="reflect")
    else:
        def local_mean(image):
            return ndimage.uniform_filter(image, size=(size, size, size, 1), mode="reflect")
    x = np.where(mask[..., None], ref, 0.0)
    y = np.where(mask[..., None], pred, 0.0)
    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x, var_y = local_mean(x * x) - mu_x**2, local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map[mask].mean(axis=0)


def reference_signal_metrics(pred, ref, mask):
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    diff = pred[mask] - ref[mask]
    value_range = ref[mask].max() - ref[mask].min()
    rmse = np.sqrt(np.mean(diff**2))
    return {
        "mae": np.mean(np.abs(diff)),
        "rmse": rmse,
        "psnr": 20 * np.log10(value_range / rmse),
        "ssim": np.mean(reference_ssim(pred, ref, mask, value_range)),
    }


def reference_dti(dmri, gtab, mask):
    """One DIPY fit of the whole stacked float64 image with the mask; failures as fit_dti defines them."""
    assert gtab.b0_threshold == io.B0_THRESHOLD
    bvals = gtab.bvals
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = TensorModel(gtab, fit_method="WLS").fit(np.asarray(dmri, np.float64), mask=mask)
        fa, md, evals, pdd = fit.fa, fit.md, fit.evals, fit.evecs[..., :, 0]
        finite = np.isfinite(fa) & np.isfinite(md) & np.isfinite(evals).all(-1) & np.isfinite(pdd).all(-1)
        degenerate = (evals.min(-1) <= 2e-6 / bvals.max()) | (md > MAX_PLAUSIBLE_MD)
    failed = mask & (~finite | degenerate)
    keep = mask & ~failed
    return {"fa": np.where(keep, fa, 0.0), "md": np.where(keep, md, 0.0),
            "pdd": np.where(keep[..., None], pdd, 0.0), "failed": failed}


# ------------------------------------------------------------------------------------ test data


def unit_vectors(n, seed):
    vectors = np.random.default_rng(seed).normal(size=(3, n))
    return vectors / np.linalg.norm(vectors, axis=0)


def brain_case(shape=(14, 16, 12), q_out=9, q_in=6, n_b0=3, seed=0, dtype=np.float32, touch_border=False):
    """A tensor phantom with noise in an ellipsoid mask: b0, context, acquired and predicted targets."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    radius = 1.15 if touch_border else 0.8
    mask = np.sum(grid**2, -1) < radius**2
    evals = np.stack([rng.uniform(1.2e-3, 1.8e-3, shape), rng.uniform(2e-4, 6e-4, shape),
                      rng.uniform(2e-4, 6e-4, shape)], -1)
    s0 = np.where(mask, rng.uniform(2500, 3500, shape), rng.uniform(0, 40, shape))
    context_bvecs, target_bvecs = unit_vectors(q_in, seed + 1), unit_vectors(q_out, seed + 2)

    def signal(bvecs):
        return s0[..., None] * np.exp(-1000 * np.einsum("...d,dn->...n", evals, bvecs**2))

    b0 = s0[..., None] + rng.normal(0, 40, shape + (n_b0,))
    context = signal(context_bvecs) + rng.normal(0, 40, shape + (q_in,))
    acquired = signal(target_bvecs) + rng.normal(0, 40, shape + (q_out,))
    predicted = acquired + rng.normal(0, 120, acquired.shape)
    predicted[2:4, 5:7, 4:6] = -30.0  # non-decaying signal: failed tensor fits
    b0[shape[0] // 2, shape[1] // 2, shape[2] // 2] = 0.0  # a masked voxel with mean b0 <= 0 is left out of *_norm
    b0[shape[0] // 2 + 1, shape[1] // 2, shape[2] // 2] = -5.0
    tissue = rng.integers(1, 4, shape).astype(np.uint8)
    return {
        "predicted": predicted.astype(dtype), "acquired": acquired.astype(dtype), "mask": mask,
        "b0": b0.astype(dtype), "context": context.astype(dtype), "context_bvecs": context_bvecs,
        "target_bvecs": target_bvecs, "tissue": tissue,
    }


# ------------------------------------------------------------------------------------ signal metrics


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("touch_border", [False, True])
def test_signal_metrics_equal_the_whole_array_computation(dtype, touch_border):
    case = brain_case(dtype=dtype, touch_border=touch_border)
    pred, ref, mask = case["predicted"], case["acquired"], case["mask"]
    ours = signal_metrics(pred, ref, mask)
    expected = reference_signal_metrics(pred, ref, mask)
    assert list(ours) == ["mae", "rmse", "psnr", "ssim"]
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=1e-12, abs=0), key
    assert 0.5 < ours["ssim"] < 0.999  # noise lowers SSIM: not a comparison between ones


@pytest.mark.parametrize("window, size", [("gaussian", 7), ("uniform", 3), ("uniform", 4), ("uniform", 9)])
@pytest.mark.parametrize("touch_border", [False, True])
def test_ssim_on_the_masks_box_equals_filtering_the_whole_volume(window, size, touch_border):
    case = brain_case(shape=(22, 18, 20), q_out=3, dtype=np.float64, touch_border=touch_border)
    pred, ref, mask = case["predicted"], case["acquired"], case["mask"].copy()
    if not touch_border:  # a mask far from every edge: the box is much smaller than the image
        mask[:6], mask[-6:] = False, False
    value_range = float(ref[mask].max() - ref[mask].min())
    ours = ssim_per_volume(pred, ref, mask, window=window, size=size)
    np.testing.assert_allclose(ours, reference_ssim(pred, ref, mask, value_range, window, size), rtol=1e-12)


def test_data_range_and_mean_b0_stream_without_losing_nan_or_precision():
    case = brain_case()
    ref, mask, b0 = case["acquired"], case["mask"], case["b0"]
    assert data_range(ref, mask) == float(ref[mask].astype(np.float64).max() - ref[mask].astype(np.float64).min())
    np.testing.assert_allclose(mean_b0(b0), b0.astype(np.float64).mean(-1), rtol=1e-15)
    broken = ref.copy()
    index = tuple(np.argwhere(mask)[5]) + (2,)
    broken[index] = np.nan
    assert np.isnan(data_range(broken, mask))


# ------------------------------------------------------------------------------------ DTI fits


def stacked(case, targets):
    return stack_for_dti(case["b0"], case["context"], targets, case["context_bvecs"], case["target_bvecs"], 1000.0)


@pytest.mark.parametrize("block_voxels", [1, 7, 100, 100_000])
def test_blocked_dti_fit_equals_one_whole_grid_fit(block_voxels):
    case = brain_case(shape=(10, 12, 9))
    dmri, gtab = stacked(case, case["predicted"])
    mask = case["mask"]
    expected = reference_dti(dmri, gtab, mask)
    images = [case["b0"], case["context"], case["predicted"]]
    maps = fit_dti_in_blocks(images, gtab, mask, block_voxels=block_voxels)
    assert 0 < expected["failed"].sum() < mask.sum() / 2  # failures exist and are the exception
    np.testing.assert_array_equal(maps.failed, expected["failed"])
    np.testing.assert_allclose(maps.fa, expected["fa"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(maps.md, expected["md"], rtol=1e-10, atol=1e-16)
    # eigenvector sign is arbitrary; the axis must agree
    cosine = np.abs(np.sum(maps.pdd * expected["pdd"], -1))[mask & ~expected["failed"]]
    np.testing.assert_allclose(cosine, 1.0, atol=1e-9)
    whole = fit_dti(dmri, gtab, mask, block_voxels=block_voxels)
    for name in ("fa", "md", "pdd", "failed"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(maps, name))


def test_dti_blocks_of_dipys_chunk_size_give_identical_maps():
    """Blocks of a multiple of 10,000 voxels hand DIPY its own chunks: the maps are the same bits."""
    case = brain_case(shape=(34, 32, 30), q_out=6, n_b0=1, seed=3, touch_border=True)
    mask = case["mask"]
    assert mask.sum() > 20_000  # more than two of DIPY's chunks, the last one partial
    dmri, gtab = stacked(case, case["predicted"])
    expected = reference_dti(dmri, gtab, mask)
    maps = fit_dti_with_targets(case["b0"], case["context"], case["predicted"], case["context_bvecs"],
                                case["target_bvecs"], 1000.0, mask, block_voxels=10_000)
    for name in ("fa", "md", "pdd", "failed"):
        np.testing.assert_array_equal(getattr(maps, name), expected[name], err_msg=name)


def test_blocked_dti_fit_checks_its_inputs():
    case = brain_case(shape=(6, 6, 5))
    dmri, gtab = stacked(case, case["predicted"])
    images = [case["b0"], case["context"], case["predicted"]]
    with pytest.raises(InputError, match="block_voxels must be >= 1"):
        fit_dti_in_blocks(images, gtab, case["mask"], block_voxels=0)
    with pytest.raises(InputError, match="needs 18 volumes"):
        fit_dti_in_blocks(images[:2], gtab, case["mask"])
    with pytest.raises(InputError, match="spatial shape"):
        fit_dti_in_blocks([case["b0"][:5], *images[1:]], gtab, case["mask"])
    outside = case["predicted"].copy()
    outside[0, 0, 0, 1] = np.nan  # outside the mask, still a broken image
    assert not case["mask"][0, 0, 0]
    with pytest.raises(InputError, match="found 1 NaN/Inf"):
        fit_dti_in_blocks([case["b0"], case["context"], outside], gtab, case["mask"])
    with pytest.raises(InputError, match="share a spatial shape"):
        fit_dti_with_targets(case["b0"][:5], case["context"], case["predicted"], case["context_bvecs"],
                             case["target_bvecs"], 1000.0, case["mask"])


# ------------------------------------------------------------------------------------ evaluate_prediction


def reference_evaluation(case, tissue_names):
    """Every metric of evaluate_prediction from whole float64 arrays."""
    mask = case["mask"]
    pred, ref = (np.asarray(case[k], np.float64) for k in ("predicted", "acquired"))
    b0_mean = np.asarray(case["b0"], np.float64).mean(-1)
    valid = mask & (b0_mean > 0)
    safe = np.where(valid, b0_mean, 1.0)[..., None]
    pred_norm, ref_norm = np.where(valid[..., None], pred / safe, 0.0), np.where(valid[..., None], ref / safe, 0.0)
    metrics = reference_signal_metrics(pred, ref, mask)
    metrics.update({f"{k}_norm": v for k, v in reference_signal_metrics(pred_norm, ref_norm, valid).items()})
    fits = {}
    for name, targets in (("ref", ref), ("pred", pred)):
        dmri, gtab = stacked(case, targets)
        fits[name] = reference_dti(dmri, gtab, mask)

    def dti(region):
        failed = fits["ref"]["failed"] | fits["pred"]["failed"]
        ok = region & ~failed
        aniso = ok & (fits["ref"]["fa"] > 0.2)
        cos = np.abs(np.sum(fits["pred"]["pdd"][aniso] * fits["ref"]["pdd"][aniso], -1))
        return {"fa_mae": np.mean(np.abs(fits["pred"]["fa"][ok] - fits["ref"]["fa"][ok])),
                "md_mae": np.mean(np.abs(fits["pred"]["md"][ok] - fits["ref"]["md"][ok])),
                "pdd_angle_deg": np.mean(np.degrees(np.arccos(np.clip(cos, 0, 1)))),
                "dti_failed": int(np.count_nonzero(region & failed))}

    metrics.update(dti(mask))
    for label, name in tissue_names.items():
        region = mask & (case["tissue"] == label)
        diff = pred[region] - ref[region]
        norm_region = region & valid
        tissue = {"mae": np.mean(np.abs(diff)), "rmse": np.sqrt(np.mean(diff**2)),
                  "mae_norm": np.mean(np.abs(pred_norm[norm_region] - ref_norm[norm_region])), **dti(region)}
        metrics.update({f"{k}_{name}": v for k, v in tissue.items()})
    return metrics


@pytest.mark.parametrize("block_voxels", [1, 13, 100_000])
def test_evaluate_prediction_equals_the_whole_array_computation(block_voxels):
    case = brain_case(shape=(12, 14, 10), seed=4)
    names = {1: "wm", 2: "gm", 3: "csf"}
    ours = evaluate_prediction(
        case["predicted"], case["acquired"], case["mask"], case["b0"], context=case["context"],
        context_bvecs=case["context_bvecs"], target_bvecs=case["target_bvecs"], bval=1000.0,
        tissue_map=case["tissue"], tissue_names=names, dti_block_voxels=block_voxels,
    )
    expected = reference_evaluation(case, names)
    assert list(ours) == list(expected)  # the same columns in the same order
    assert expected["dti_failed"] > 0 and expected["mae_norm"] > 0
    for key, value in expected.items():
        if key.startswith("dti_failed"):
            assert ours[key] == value, key
        else:
            assert ours[key] == pytest.approx(value, rel=1e-9, abs=0), key


def test_evaluate_prediction_makes_no_float64_copy_of_a_4d_input():
    """The largest moment of the evaluation stays below one float64 copy of one target image.

    NumPy reports its allocations to tracemalloc, so this counts every array the evaluation makes
    (float64 copies of the inputs, normalised copies, the stacked DTI image all exceed the limit).
    """
    case = brain_case(shape=(40, 40, 36), q_out=64, seed=6)
    arguments = dict(context=case["context"], context_bvecs=case["context_bvecs"], target_bvecs=case["target_bvecs"],
                     bval=1000.0, tissue_map=case["tissue"], tissue_names={1: "wm", 2: "gm", 3: "csf"},
                     dti_block_voxels=200)  # DIPY's work space grows with the block: keep it small here
    one_copy = case["acquired"].size * 8
    tracemalloc.start()
    try:
        evaluate_prediction(case["predicted"], case["acquired"], case["mask"], case["b0"], **arguments)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * one_copy, f"peak {peak / 2**20:.1f} MiB vs a float64 copy {one_copy / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------ study steps on files


@pytest.fixture
def study_files(tmp_path):
    case = brain_case(shape=(10, 12, 9), seed=8)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    files = {}
    for key in ("b0", "context"):
        files[key] = tmp_path / f"{key}.nii.gz"
        io.save_nifti(case[key], affine, files[key])
    files["targets"] = tmp_path / "targets.nii.gz"
    io.save_nifti(case["acquired"], affine, files["targets"])
    files["prediction"] = tmp_path / "prediction.nii"  # uncompressed: both readers
    io.save_nifti(case["predicted"], affine, files["prediction"])
    files["mask"] = tmp_path / "mask.nii.gz"
    io.save_nifti(case["mask"].astype(np.uint8), affine, files["mask"])
    files["context_bvecs"], files["target_bvecs"] = tmp_path / "context.bvec", tmp_path / "targets.bvec"
    io.save_bvec(case["context_bvecs"], files["context_bvecs"])
    io.save_bvec(case["target_bvecs"], files["target_bvecs"])
    return case, {key: str(path) for key, path in files.items()}


def test_evaluate_method_row_is_evaluate_prediction_of_the_files(study_files, tmp_path):
    from dmri_rcnn.study.metrics_and_figures import evaluate

    case, files = study_files
    row = evaluate(files, "s1", "SH", 1000, 6, tmp_path / "row.tsv")
    expected = evaluate_prediction(
        io.load_nifti(files["prediction"]), io.load_nifti(files["targets"]), io.load_mask(files["mask"]),
        io.load_nifti(files["b0"]), context=io.load_nifti(files["context"]),
        context_bvecs=io.load_bvec(files["context_bvecs"]), target_bvecs=io.load_bvec(files["target_bvecs"]), bval=1000.0,
    )
    assert row == {"subject": "s1", "method": "SH", "shell": 1000, "q_in": 6, **expected}
    assert (tmp_path / "row.tsv").read_text().splitlines()[0].split("\t") == list(row)


def test_plot_steps_get_the_volume_and_fa_of_a_whole_fit(study_files, tmp_path, monkeypatch):
    from dmri_rcnn import plot
    from dmri_rcnn.study import metrics_and_figures

    case, files = study_files
    seen = {}
    monkeypatch.setattr(plot, "plot_comparison_slices", lambda acquired, predicted, **kw: seen.update(slices=(acquired, predicted)))
    monkeypatch.setattr(plot, "plot_fa_maps", lambda maps, **kw: seen.update(fa=maps))
    metrics_and_figures.plot_example_slices(files["targets"], files["mask"], {"SH": files["prediction"]}, tmp_path / "s.png", direction=3)
    acquired, predicted = seen["slices"]
    np.testing.assert_array_equal(acquired, case["acquired"][..., 3])
    np.testing.assert_array_equal(predicted["SH"], case["predicted"][..., 3])
    metrics_and_figures.plot_fa_maps(files, {"SH": files["prediction"]}, 1000, tmp_path / "fa.png")
    for name, targets in (("acquired", case["acquired"]), ("SH", case["predicted"])):
        dmri, gtab = stacked(case, targets)
        np.testing.assert_allclose(seen["fa"][name], reference_dti(dmri, gtab, case["mask"])["fa"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------ one volume from a file


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_load_nifti_volume_equals_the_whole_load(tmp_path, suffix):
    data = np.random.default_rng(2).normal(size=(7, 6, 5, 40)).astype(np.float32)
    path = tmp_path / f"dwi{suffix}"
    io.save_nifti(data, np.eye(4), path)
    for index in (0, 17, 39):
        volume = io.load_nifti_volume(path, index)
        assert volume.dtype == np.float32 and volume.shape == (7, 6, 5)
        np.testing.assert_array_equal(volume, data[..., index])
    with pytest.raises(InputError, match="volume 40 asked for; the image has 40 volumes"):
        io.load_nifti_volume(path, 40)
    io.save_nifti(data[..., 0], np.eye(4), tmp_path / f"b0{suffix}")
    with pytest.raises(InputError, match="expected a 4D image"):
        io.load_nifti_volume(tmp_path / f"b0{suffix}", 0)


def test_load_nifti_volume_reads_a_gzip_to_its_crc(tmp_path):
    data = np.random.default_rng(3).normal(size=(6, 6, 6, 20)).astype(np.float32)
    path = tmp_path / "dwi.nii.gz"
    io.save_nifti(data, np.eye(4), path)
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0xFF  # the CRC (last 8 bytes: CRC32, length): volume 0 decodes, the stream check fails
    path.write_bytes(bytes(raw))
    assert nib.load(path).shape == (6, 6, 6, 20)
    with pytest.raises(InputError, match="truncated or corrupt"):
        io.load_nifti_volume(path, 0)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_load_nifti_volumes_returns_the_asked_volumes_in_the_asked_order(tmp_path, suffix):
    data = np.random.default_rng(4).normal(size=(5, 4, 3, 30)).astype(np.float32)
    path = tmp_path / f"dwi{suffix}"
    io.save_nifti(data, np.eye(4), path)
    indices = [29, 3, 17, 3, 0]  # out of order, with a repeat
    volumes = io.load_nifti_volumes(path, indices)
    assert volumes.shape == (5, 4, 3, 5) and volumes.dtype == np.float32
    np.testing.assert_array_equal(volumes, data[..., indices])
    assert io.load_nifti_volumes(path, []).shape == (5, 4, 3, 0)
    with pytest.raises(InputError, match="volume 30 asked for; the image has 30 volumes"):
        io.load_nifti_volumes(path, [2, 30])


def test_load_nifti_volumes_holds_only_the_asked_volumes(tmp_path, monkeypatch):
    """Reading 4 of 64 volumes must not allocate the whole image (64 x 32 KB here). The drain to the
    gzip CRC reads 16 MB at a time; it is made small here so that it does not hide the arrays."""
    monkeypatch.setattr(io.nifti, "_DRAIN_BYTES", 64 << 10)
    data = np.random.default_rng(5).normal(size=(20, 20, 20, 64)).astype(np.float32)
    path = tmp_path / "dwi.nii.gz"
    io.save_nifti(data, np.eye(4), path)
    tracemalloc.start()
    try:
        volumes = io.load_nifti_volumes(path, [60, 1, 33, 2])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(volumes, data[..., [60, 1, 33, 2]])
    whole = data.nbytes
    assert peak < whole / 4, f"peak {peak} bytes for 4 of 64 volumes ({whole} bytes in all)"


def test_load_nifti_volumes_reads_a_gzip_to_its_crc(tmp_path):
    data = np.random.default_rng(6).normal(size=(6, 6, 6, 20)).astype(np.float32)
    path = tmp_path / "dwi.nii.gz"
    io.save_nifti(data, np.eye(4), path)
    raw = bytearray(path.read_bytes())
    raw[-6] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="truncated or corrupt"):
        io.load_nifti_volumes(path, [0, 1])
