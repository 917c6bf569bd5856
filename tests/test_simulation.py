"""Synthetic HCP-like subjects: signal model, acquisition scheme, anatomy, noise, files on disk."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from dmri_rcnn.errors import InputError
from dmri_rcnn.simulation import (
    CSF_DIFFUSIVITY,
    FIBRE_AXIAL_DIFFUSIVITY,
    FIBRE_RADIAL_DIFFUSIVITY,
    GREY_MATTER_DIFFUSIVITY,
    add_rician_noise,
    hcp_like_scheme,
    multi_tensor_signal,
    simulate_subject,
    synthetic_anatomy,
    write_subject,
)

SMALL = (16, 16, 10)


@pytest.fixture(scope="module")
def subject():
    return simulate_subject(seed=3, shape=SMALL)


def test_vectorised_signal_matches_dipy_multi_tensor():
    from dipy.core.gradients import gradient_table
    from dipy.core.geometry import sphere2cart
    from dipy.sims.voxel import multi_tensor

    bvals, bvecs = hcp_like_scheme(n_directions=30, n_b0=2)
    gtab = gradient_table(bvals, bvecs=bvecs.T, b0_threshold=50)
    angles = [(30.0, 40.0), (80.0, 200.0)]
    directions = np.array([sphere2cart(1, np.deg2rad(t), np.deg2rad(p)) for t, p in angles])
    evals = [FIBRE_AXIAL_DIFFUSIVITY, FIBRE_RADIAL_DIFFUSIVITY, FIBRE_RADIAL_DIFFUSIVITY]
    expected, _ = multi_tensor(gtab, np.array([evals, evals]), S0=3500.0, angles=angles, fractions=[60, 40], snr=None)
    ours = multi_tensor_signal(
        bvals,
        bvecs,
        directions[None],
        np.array([[0.6, 0.4]]),
        iso_fraction=np.zeros(1),
        iso_diffusivity=np.zeros(1),
        s0=np.array([3500.0]),
    )
    # DIPY pins b0 volumes (b = 5 here) to S0 exactly; our model attenuates them by exp(-5 D), as a scanner does
    diffusion_weighted = bvals > 50
    np.testing.assert_allclose(ours[0][diffusion_weighted], expected[diffusion_weighted], rtol=1e-6)
    np.testing.assert_allclose(ours[0][~diffusion_weighted], 3500.0, rtol=1e-2)


def test_scheme_is_hcp_like_and_well_spread():
    bvals, bvecs = hcp_like_scheme(shells=(1000, 2000, 3000), n_directions=90, n_b0=6)
    assert bvecs.shape == (3, 276) and bvals.shape == (276,)
    assert (bvals < 50).sum() == 6
    for shell in (1000, 2000, 3000):
        on_shell = np.abs(bvals - shell) <= 30
        assert on_shell.sum() == 90
        directions = bvecs[:, on_shell].T
        np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-6)
        # antipodally symmetric separation: 90 charges on a hemisphere are at least ~10 degrees apart
        cosine = np.abs(directions @ directions.T)
        np.fill_diagonal(cosine, 0.0)
        assert np.degrees(np.arccos(cosine.max())) > 10.0
    # the same protocol for every subject
    again = hcp_like_scheme(shells=(1000, 2000, 3000), n_directions=90, n_b0=6)
    np.testing.assert_array_equal(again[1], bvecs)


def test_subject_is_reproducible_per_seed(subject):
    same = simulate_subject(seed=3, shape=SMALL)
    other = simulate_subject(seed=4, shape=SMALL)
    np.testing.assert_array_equal(same.dmri, subject.dmri)
    assert not np.array_equal(other.tissue, subject.tissue)
    assert not np.allclose(other.dmri, subject.dmri)


def test_anatomy_has_every_tissue_and_crossings(subject):
    counts = np.bincount(subject.tissue.ravel(), minlength=4)
    assert (counts > 0).all(), counts
    assert set(np.unique(subject.tissue[subject.mask == 0])) == {0}
    n_fibres = (subject.fibre_fractions > 0).sum(-1)
    white = subject.tissue == 1
    assert (n_fibres[white] >= 1).all()
    assert (n_fibres[white] >= 2).sum() > 10, "bundles must cross somewhere"
    assert (n_fibres[~white] == 0).all()
    np.testing.assert_allclose(subject.fibre_fractions[white].sum(-1), 1.0, rtol=1e-5)
    lengths = np.linalg.norm(subject.fibre_dirs, axis=-1)[subject.fibre_fractions > 0]
    np.testing.assert_allclose(lengths, 1.0, atol=1e-5)


def test_fibre_field_is_spatially_coherent(subject):
    # the 3D model's advantage comes from neighbours: adjacent single-fibre voxels mostly share orientation
    single = (subject.fibre_fractions > 0).sum(-1) == 1
    main_dir = subject.fibre_dirs.sum(axis=-2)  # single-fibre voxels have one non-zero slot
    both = single[:-1] & single[1:]
    agreement = np.abs(np.sum(main_dir[:-1] * main_dir[1:], axis=-1))[both]
    assert agreement.size > 50
    assert np.median(agreement) > 0.95


def test_intensities_and_noise_are_hcp_like(subject):
    b0 = subject.bvals < 50
    s0 = subject.noiseless[..., b0].mean(-1)[subject.mask > 0]
    assert s0.min() >= 3000.0 - 1e-3 and s0.max() <= 4000.0 + 1e-3
    # diffusion weighting attenuates: mean signal falls from shell to shell
    means = [subject.noiseless[..., np.abs(subject.bvals - b) < 30][subject.mask > 0].mean() for b in (1000, 2000, 3000)]
    assert means[0] > means[1] > means[2] > 0
    # outside the brain the truth is zero, so the magnitude is Rayleigh: mean = sigma * sqrt(pi / 2)
    background = subject.dmri[subject.mask == 0]
    assert background.mean() == pytest.approx(subject.noise_sigma * np.sqrt(np.pi / 2), rel=0.03)
    assert subject.dmri.dtype == np.float32 and (subject.dmri >= 0).all()


def test_write_subject_in_hcp_layout(subject, tmp_path):
    paths = write_subject(subject, tmp_path / "100307" / "T1w" / "Diffusion", write_noiseless=True)
    folder = tmp_path / "100307" / "T1w" / "Diffusion"
    for name in ("data.nii.gz", "bvals", "bvecs", "nodif_brain_mask.nii.gz", "tissue.nii.gz", "data_noiseless.nii.gz"):
        assert (folder / name).is_file(), name
    image = nib.load(paths["dmri"])
    assert image.shape == SMALL + (subject.bvals.size,)
    np.testing.assert_allclose(image.get_fdata(dtype=np.float32), subject.dmri)
    np.testing.assert_allclose(image.affine, subject.affine)
    bvecs = np.loadtxt(paths["bvecs"])
    bvals = np.loadtxt(paths["bvals"])
    assert bvecs.shape == (3, subject.bvals.size)
    np.testing.assert_allclose(bvecs, subject.bvecs, atol=1e-6)
    np.testing.assert_allclose(bvals, subject.bvals)
    dirs = nib.load(paths["fibre_dirs"]).get_fdata()
    assert dirs.shape == SMALL + (9,)
    # no temporary files left behind
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_bad_parameters_raise_input_error():
    with pytest.raises(InputError, match="shape"):
        simulate_subject(seed=0, shape=(1, 10, 10))
    with pytest.raises(InputError, match="snr"):
        simulate_subject(seed=0, shape=SMALL, snr=0)


def test_streamed_simulation_equals_the_whole_volume_at_once(subject, tmp_path):
    # the reference: signal of every voxel in one call, then noise for the whole (voxels, q) array at once
    anatomy = synthetic_anatomy(SMALL, seed=3)
    tissue = anatomy["tissue"]
    n = int(np.prod(SMALL))
    clean = multi_tensor_signal(
        subject.bvals,
        subject.bvecs,
        anatomy["fibre_dirs"].reshape(n, 3, 3),
        anatomy["fibre_fractions"].reshape(n, 3),
        np.isin(tissue, (2, 3)).astype(np.float64).reshape(-1),
        np.select([tissue == 2, tissue == 3], [GREY_MATTER_DIFFUSIVITY, CSF_DIFFUSIVITY], 0.0).reshape(-1),
        anatomy["s0"].reshape(-1),
    ).astype(np.float32)
    noisy = add_rician_noise(clean, subject.noise_sigma, np.random.default_rng([3, 1])).astype(np.float32)
    np.testing.assert_array_equal(subject.noiseless.reshape(n, -1), clean)
    np.testing.assert_array_equal(subject.dmri.reshape(n, -1), noisy)
    # chunk size changes nothing, and dropping the noiseless copy leaves the noisy signal as it was
    streamed = simulate_subject(seed=3, shape=SMALL, chunk_voxels=333, keep_noiseless=False)
    np.testing.assert_array_equal(streamed.dmri, subject.dmri)
    assert streamed.noiseless is None
    refused = tmp_path / "refused"
    with pytest.raises(InputError, match="keep_noiseless"):
        write_subject(streamed, refused, write_noiseless=True)
    assert not refused.exists()  # refused before any file was written


def test_brain_scale_shrinks_the_brain_to_an_hcp_like_share():
    full = synthetic_anatomy((40, 48, 40), seed=7)
    small = synthetic_anatomy((40, 48, 40), seed=7, brain_scale=0.8)
    assert 0.38 < full["mask"].mean() < 0.5
    assert 0.18 < small["mask"].mean() < 0.28
    assert (np.bincount(small["tissue"].ravel(), minlength=4) > 0).all()
    with pytest.raises(InputError, match="brain_scale"):
        synthetic_anatomy((10, 10, 10), seed=7, brain_scale=1.5)
