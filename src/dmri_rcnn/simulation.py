"""Synthetic HCP-like diffusion MRI subjects with known anatomy, for the study workflow and the tests.

A subject is a small brain-shaped volume with curved and crossing white-matter bundles, grey-matter-like
and CSF-like regions, acquired with an HCP-like protocol (b = 0, 1000, 2000, 3000 s/mm², 90 well-spread
directions per shell plus interleaved b0 volumes, S0 between 3000 and 4000 so the original's per-shell
scale constants suit it) and corrupted with Rician noise. Everything random is drawn from one seed per
subject, so a subject is reproducible; the gradient scheme is shared by all subjects, as in the HCP.

The signal is the multi-tensor model of :func:`dipy.sims.voxel.multi_tensor` (axially symmetric tensors,
one per fibre population, weighted by volume fraction), evaluated for all voxels at once with NumPy.

Coordinates: the image affine is ``diag(-voxel_size, voxel_size, voxel_size)`` (x flipped, like HCP's
radiological storage), so FSL-convention b-vectors are expressed in voxel axes and the fibre directions
written out are in the same voxel frame as the b-vectors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

# The scheme lives in core (super-resolution's 'hcp' targets need it); it stays importable from here.
from dmri_rcnn.core.processing.directions import PROTOCOL_SEED, hcp_like_scheme  # noqa: F401
from dmri_rcnn.errors import InputError
from dmri_rcnn.utils import atomic_path

#: Tissue labels of the tissue map written beside each subject.
TISSUE_LABELS: dict[int, str] = {0: "background", 1: "white_matter", 2: "grey_matter", 3: "csf"}

#: Diffusivities in mm²/s. Fibres: axial / radial; GM and CSF are isotropic.
FIBRE_AXIAL_DIFFUSIVITY = 1.7e-3
FIBRE_RADIAL_DIFFUSIVITY = 0.3e-3
GREY_MATTER_DIFFUSIVITY = 0.8e-3
CSF_DIFFUSIVITY = 3.0e-3

#: Maximum number of fibre populations in one voxel (three bundles may cross).
MAX_FIBRES = 3


@dataclass
class SyntheticSubject:
    """One synthetic subject.

    Attributes
    ----------
    dmri : (i, j, k, q) float32
        Noisy diffusion-weighted signal (arbitrary units, HCP-like scale).
    bvals : (q,) float64
        b-values in s/mm² (b0 volumes have b = 5, shells deviate by a few s/mm² as in HCP files).
    bvecs : (3, q) float64
        Unit gradient directions in FSL convention (zero vectors for b0 volumes).
    mask : (i, j, k) uint8
        Brain mask (1 inside).
    tissue : (i, j, k) uint8
        Tissue labels, see :data:`TISSUE_LABELS`.
    fibre_dirs : (i, j, k, MAX_FIBRES, 3) float32
        Unit directions of the fibre populations (zero where a population is absent).
    fibre_fractions : (i, j, k, MAX_FIBRES) float32
        Volume fractions of the fibre populations (sum 1 in white matter, 0 elsewhere).
    noiseless : (i, j, k, q) float32 or None
        The signal before noise was added (None when simulated with ``keep_noiseless=False``).
    affine : (4, 4) float64
        Voxel-to-world transform in mm.
    noise_sigma : float
        Standard deviation of the Gaussian noise in each of the real and imaginary channels.
    """

    dmri: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    mask: np.ndarray
    tissue: np.ndarray
    fibre_dirs: np.ndarray
    fibre_fractions: np.ndarray
    noiseless: np.ndarray
    affine: np.ndarray
    noise_sigma: float
    metadata: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------------------------------


def _normalised_grid(shape: tuple[int, int, int]) -> np.ndarray:
    """Voxel centres in [-1, 1] per axis: (i, j, k, 3)."""
    axes = [np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1) for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norm > 0, norm, 1.0)


def _bundles(grid: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Three curved bundles that cross each other: list of (membership (i,j,k) bool, direction (i,j,k,3)).

    - an arc in the x–z plane (corpus-callosum-like), direction tangent to circles about its centre;
    - a mostly vertical bundle whose x position bends sinusoidally with z (corticospinal-like);
    - an arc in the x–y plane (longitudinal-fasciculus-like), crossing both of the others.
    Shapes, positions and thicknesses vary with the subject's seed.
    """
    x, y, z = grid[..., 0], grid[..., 1], grid[..., 2]
    bundles = []

    # 1. arc in x-z about (cx, cz), radius r, through all y near the middle
    cx, cz = rng.uniform(-0.1, 0.1), rng.uniform(-0.55, -0.35)
    radius, thickness = rng.uniform(0.55, 0.7), rng.uniform(0.14, 0.2)
    rho = np.hypot(x - cx, z - cz)
    member = (np.abs(rho - radius) < thickness) & (np.abs(y) < 0.5) & (z > cz)
    direction = np.stack([-(z - cz), np.zeros_like(x), x - cx], axis=-1)
    bundles.append((member, _unit(direction)))

    # 2. vertical bundle bending in x with z
    x0, amplitude, wavelength = rng.uniform(-0.3, -0.1), rng.uniform(0.15, 0.3), rng.uniform(0.8, 1.2)
    half_width = rng.uniform(0.14, 0.2)
    centre_x = x0 + amplitude * np.sin(np.pi * z / wavelength)
    member = (np.abs(x - centre_x) < half_width) & (np.abs(y - 0.1) < 0.35)
    slope = amplitude * np.pi / wavelength * np.cos(np.pi * z / wavelength)
    direction = np.stack([slope, np.zeros_like(x), np.ones_like(x)], axis=-1)
    bundles.append((member, _unit(direction)))

    # 3. arc in x-y about (cx, cy), through a slab of z
    cx, cy = rng.uniform(0.2, 0.4), rng.uniform(-0.1, 0.1)
    radius, thickness = rng.uniform(0.5, 0.65), rng.uniform(0.12, 0.18)
    z_centre = rng.uniform(-0.1, 0.2)
    rho = np.hypot(x - cx, y - cy)
    member = (np.abs(rho - radius) < thickness) & (np.abs(z - z_centre) < 0.3) & (x < cx)
    direction = np.stack([-(y - cy), x - cx, np.zeros_like(x)], axis=-1)
    bundles.append((member, _unit(direction)))
    return bundles


def _smooth_random_field(shape: tuple[int, int, int], rng: np.random.Generator, n_waves: int = 4) -> np.ndarray:
    """A smooth field in [-1, 1] made of a few low-frequency cosines (bias-field-like)."""
    grid = _normalised_grid(shape)
    field_ = np.zeros(shape)
    for _ in range(n_waves):
        frequency = rng.uniform(0.3, 1.2, size=3)
        phase = rng.uniform(0, 2 * np.pi)
        field_ += np.cos(np.pi * (grid @ frequency) + phase)
    return field_ / n_waves


def synthetic_anatomy(shape: tuple[int, int, int], seed: int, brain_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Build the tissue layout and fibre configuration of one subject.

    Parameters
    ----------
    shape : (i, j, k)
        Volume size in voxels.
    seed : int
        Subject seed.
    brain_scale : float
        Size of the brain (and everything in it) relative to the field of view; 1.0 nearly fills it.

    Returns
    -------
    dict with ``mask`` (i,j,k) bool, ``tissue`` (i,j,k) uint8, ``fibre_dirs`` (i,j,k,3,3) float,
    ``fibre_fractions`` (i,j,k,3) float, ``s0`` (i,j,k) float (3000–4000 inside the brain).
    """
    if not 0 < brain_scale <= 1:
        raise InputError(f"brain_scale is {brain_scale}; expected a fraction of the field of view in (0, 1]")
    rng = np.random.default_rng(seed)
    grid = _normalised_grid(shape)
    if brain_scale != 1.0:
        grid = grid / brain_scale
    x, y, z = grid[..., 0], grid[..., 1], grid[..., 2]

    # brain: an ellipsoid with a gently wobbling surface
    semi_axes = rng.uniform(0.9, 0.98, size=3)
    radius = np.sqrt((x / semi_axes[0]) ** 2 + (y / semi_axes[1]) ** 2 + (z / semi_axes[2]) ** 2)
    wobble = 0.04 * _smooth_random_field(shape, rng)
    mask = radius + wobble < 1.0

    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[mask] = 1
    # cortex-like grey matter band under a thin CSF rim, and a deep grey-matter nucleus
    depth = 1.0 - (radius + wobble)
    tissue[mask & (depth < 0.2)] = 2
    nucleus_centre = rng.uniform([-0.45, -0.3, -0.3], [-0.25, 0.0, 0.0])
    tissue[mask & (np.linalg.norm(grid - nucleus_centre, axis=-1) < 0.17)] = 2
    tissue[mask & (depth < 0.05)] = 3
    # two ventricle-like CSF cavities either side of the midline
    ventricle_y = rng.uniform(0.15, 0.25)
    for side in (-1.0, 1.0):
        centre = np.array([0.05, side * ventricle_y, rng.uniform(0.0, 0.15)])
        scaled = (grid - centre) / np.array([0.35, 0.08, 0.12])
        tissue[mask & (np.linalg.norm(scaled, axis=-1) < 1.0)] = 3

    fibre_dirs = np.zeros(shape + (MAX_FIBRES, 3))
    present = np.zeros(shape + (MAX_FIBRES,), dtype=bool)
    white = tissue == 1
    for index, (member, direction) in enumerate(_bundles(grid, rng)):
        inside = member & white
        fibre_dirs[inside, index] = direction[inside]
        present[inside, index] = True
    # white matter outside every bundle: one population following a smooth, slowly turning field
    loose = white & ~present.any(axis=-1)
    angle = 0.5 * np.pi * _smooth_random_field(shape, rng, n_waves=3)
    elevation = 0.25 * np.pi * _smooth_random_field(shape, rng, n_waves=3)
    background_dir = np.stack(
        [np.cos(elevation) * np.cos(angle), np.cos(elevation) * np.sin(angle), np.sin(elevation)], axis=-1
    )
    fibre_dirs[loose, 0] = background_dir[loose]
    present[loose, 0] = True

    # unequal but comparable crossing fractions
    weights = rng.uniform(0.7, 1.3, size=MAX_FIBRES) * present
    fibre_fractions = weights / np.where(weights.sum(-1, keepdims=True) > 0, weights.sum(-1, keepdims=True), 1.0)

    # S0: tissue-dependent level (CSF brightest, as on T2-weighted b0) times a smooth receive-bias field
    level = np.select([tissue == 1, tissue == 2, tissue == 3], [3300.0, 3500.0, 3800.0], 0.0)
    bias = 1.0 + 0.05 * _smooth_random_field(shape, rng)
    s0 = np.clip(level * bias, 0.0, 4000.0)
    s0[mask] = np.clip(s0[mask], 3000.0, 4000.0)

    return {
        "mask": mask,
        "tissue": tissue,
        "fibre_dirs": fibre_dirs,
        "fibre_fractions": fibre_fractions,
        "s0": s0,
    }


# --------------------------------------------------------------------------------------------------
# Signal
# --------------------------------------------------------------------------------------------------


def multi_tensor_signal(
    bvals: np.ndarray,
    bvecs: np.ndarray,
    fibre_dirs: np.ndarray,
    fibre_fractions: np.ndarray,
    iso_fraction: np.ndarray,
    iso_diffusivity: np.ndarray,
    s0: np.ndarray,
    axial: float = FIBRE_AXIAL_DIFFUSIVITY,
    radial: float = FIBRE_RADIAL_DIFFUSIVITY,
) -> np.ndarray:
    """Noiseless multi-tensor signal for many voxels at once.

    For a fibre with unit direction ``v`` and axially symmetric tensor (``axial``, ``radial``, ``radial``),
    ``g^T D g = radial + (axial - radial) (g . v)^2``; the signal is
    ``S0 * (sum_f w_f exp(-b g^T D_f g) + w_iso exp(-b D_iso))`` — the same model as DIPY's
    ``multi_tensor`` with ``mevals = (axial, radial, radial)`` per fibre.

    Parameters
    ----------
    bvals : (q,) s/mm²
    bvecs : (3, q) unit vectors
    fibre_dirs : (n, f, 3) unit vectors
    fibre_fractions : (n, f) fractions of the anisotropic compartments
    iso_fraction : (n,) fraction of the isotropic compartment
    iso_diffusivity : (n,) mm²/s
    s0 : (n,) signal at b = 0
    axial, radial : float, mm²/s

    Returns
    -------
    (n, q) float64
    """
    bvals = np.asarray(bvals, dtype=np.float64)
    cosines = np.einsum("nfc,cq->nfq", fibre_dirs, np.asarray(bvecs, dtype=np.float64))
    apparent = radial + (axial - radial) * cosines**2
    anisotropic = np.einsum("nf,nfq->nq", fibre_fractions, np.exp(-bvals * apparent))
    isotropic = iso_fraction[:, None] * np.exp(-np.outer(iso_diffusivity, bvals))
    return s0[:, None] * (anisotropic + isotropic)


def add_rician_noise(
    signal: np.ndarray,
    sigma: float,
    rng: np.random.Generator,
    imaginary_rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise of standard deviation ``sigma`` per channel.

    Parameters
    ----------
    signal : (...) noiseless magnitude signal.
    sigma : standard deviation of the noise in each of the real and imaginary channels.
    rng : draws the real channel's noise, then (without ``imaginary_rng``) the imaginary channel's.
    imaginary_rng : draws the imaginary channel's noise instead, so a signal simulated chunk by chunk
        gets the same numbers as in one piece (see :func:`simulate_subject`).

    Returns
    -------
    (...) float64 noisy magnitude, the shape of ``signal``.
    """
    real = signal + rng.normal(0.0, sigma, size=signal.shape)
    imaginary = (rng if imaginary_rng is None else imaginary_rng).normal(0.0, sigma, size=signal.shape)
    return np.hypot(real, imaginary)


@dataclass(frozen=True)
class SimulationSettings:
    """The synthetic subject's size, acquisition and noise, and how :func:`simulate_subject` runs.

    shape : (i, j, k)
        Volume size in voxels (the default, 30×30×20 at 2 mm, keeps the default study fast on a CPU).
    voxel_size : float
        Isotropic voxel size in mm (written into the affine).
    shells : tuple of int
        Nominal b-values in s/mm².
    n_directions, n_b0 : int
        Directions per shell; number of b0 volumes.
    snr : float
        Signal-to-noise ratio of the b0 signal in white matter: noise sigma = 3300 / snr.
    chunk_voxels : int
        Voxels simulated per chunk: signal and noise are computed chunk by chunk (float64 only inside a
        chunk), so the peak memory is the float32 result plus the anatomy; the numbers do not depend on it.
    progress : bool
        Show a progress bar.
    brain_scale : float
        Size of the brain relative to the field of view (1.0: the ellipsoid nearly fills the volume, ~40%
        of the voxels; 0.8: ~22%, about HCP's share of brain voxels). Anatomy shrinks with it.
    keep_noiseless : bool
        Keep the noiseless signal (``noiseless``; None otherwise, which saves a float32 copy of the volume).
    """

    shape: tuple[int, int, int] = (30, 30, 20)
    voxel_size: float = 2.0
    shells: tuple[int, ...] = (1000, 2000, 3000)
    n_directions: int = 90
    n_b0: int = 6
    snr: float = 20.0
    chunk_voxels: int = 20000
    progress: bool = False
    brain_scale: float = 1.0
    keep_noiseless: bool = True


def _simulate_signal(anatomy: dict, bvals, bvecs, seed: int, sigma: float, settings: SimulationSettings):
    """Noisy and (with ``keep_noiseless``) noiseless signal, (n_voxels, q) float32 each, chunk by chunk."""
    tissue = anatomy["tissue"]
    iso_fraction = np.isin(tissue, (2, 3)).astype(np.float64)
    iso_diffusivity = np.select([tissue == 2, tissue == 3], [GREY_MATTER_DIFFUSIVITY, CSF_DIFFUSIVITY], 0.0)

    n_voxels = int(tissue.size)
    flat_dirs = anatomy["fibre_dirs"].reshape(n_voxels, MAX_FIBRES, 3)
    flat_fractions = anatomy["fibre_fractions"].reshape(n_voxels, MAX_FIBRES)
    flat_iso = iso_fraction.reshape(-1)
    flat_diff = iso_diffusivity.reshape(-1)
    flat_s0 = anatomy["s0"].reshape(-1)

    # The noise is drawn as if for the whole (voxels, q) array at once: all real parts, then all
    # imaginary parts, in C order. Drawing in consecutive chunks gives the same numbers, so a second
    # generator skipped past the real parts streams the imaginary ones.
    chunk_voxels = settings.chunk_voxels
    real_rng = np.random.default_rng([seed, 1])
    imaginary_rng = np.random.default_rng([seed, 1])
    n_values = n_voxels * bvals.size
    chunk_values = chunk_voxels * bvals.size
    for start in range(0, n_values, chunk_values):
        imaginary_rng.normal(0.0, sigma, size=min(chunk_values, n_values - start))

    dmri = np.empty((n_voxels, bvals.size), dtype=np.float32)
    noiseless = np.empty((n_voxels, bvals.size), dtype=np.float32) if settings.keep_noiseless else None
    starts = range(0, n_voxels, chunk_voxels)
    for start in tqdm(starts, desc="simulating", unit="chunk", disable=not settings.progress):
        block = slice(start, min(start + chunk_voxels, n_voxels))
        # outside the brain S0 = 0, so the signal is exactly 0: compute it for the brain voxels only
        brain = np.flatnonzero(flat_s0[block] > 0) + start
        clean = np.zeros((block.stop - start, bvals.size), dtype=np.float32)
        if brain.size:
            clean[brain - start] = multi_tensor_signal(
                bvals, bvecs, flat_dirs[brain], flat_fractions[brain], flat_iso[brain], flat_diff[brain], flat_s0[brain]
            )
        dmri[block] = add_rician_noise(clean, sigma, real_rng, imaginary_rng)
        if noiseless is not None:
            noiseless[block] = clean
    return dmri, noiseless


def simulate_subject(seed: int, settings: SimulationSettings | None = None, **options) -> SyntheticSubject:
    """Simulate one HCP-like subject.

    Parameters
    ----------
    seed : int
        Subject seed: anatomy, bundle shapes and noise all follow from it.
    settings : SimulationSettings, optional
        Size, acquisition, noise and run settings; None = the defaults.
    **options
        Any field of :class:`SimulationSettings` by name (``shape=``, ``voxel_size=``, ``shells=``,
        ``n_directions=``, ``n_b0=``, ``snr=``, ``chunk_voxels=``, ``progress=``, ``brain_scale=``,
        ``keep_noiseless=``), overriding ``settings``.

    Returns
    -------
    SyntheticSubject
    """
    unknown = sorted(set(options) - {item.name for item in dataclasses.fields(SimulationSettings)})
    if unknown:
        raise TypeError(f"simulate_subject() got unexpected keyword argument(s) {', '.join(unknown)}")
    settings = dataclasses.replace(settings if settings is not None else SimulationSettings(), **options)
    shape = tuple(int(n) for n in settings.shape)
    if len(shape) != 3 or min(shape) < 2:
        raise InputError(f"synthetic subject shape is {shape}; expected three sizes of at least 2 voxels")
    snr, voxel_size = settings.snr, settings.voxel_size
    if snr <= 0:
        raise InputError(f"snr is {snr}; expected a positive signal-to-noise ratio")
    bvals, bvecs = hcp_like_scheme(tuple(int(s) for s in settings.shells), settings.n_directions, settings.n_b0)
    anatomy = synthetic_anatomy(shape, seed, brain_scale=settings.brain_scale)
    sigma = 3300.0 / snr
    dmri, noiseless = _simulate_signal(anatomy, bvals, bvecs, seed, sigma, settings)
    dmri = dmri.reshape(shape + (bvals.size,))
    if noiseless is not None:
        noiseless = noiseless.reshape(shape + (bvals.size,))

    affine = np.diag([-voxel_size, voxel_size, voxel_size, 1.0])
    affine[:3, 3] = [voxel_size * (shape[0] - 1) / 2, -voxel_size * (shape[1] - 1) / 2, -voxel_size * (shape[2] - 1) / 2]
    return SyntheticSubject(
        dmri=dmri,
        bvals=bvals,
        bvecs=bvecs,
        mask=anatomy["mask"].astype(np.uint8),
        tissue=anatomy["tissue"],
        fibre_dirs=anatomy["fibre_dirs"].astype(np.float32),
        fibre_fractions=anatomy["fibre_fractions"].astype(np.float32),
        noiseless=noiseless,
        affine=affine,
        noise_sigma=sigma,
        metadata={"seed": seed, "shape": shape, "voxel_size": voxel_size, "snr": snr,
                  "shells": list(settings.shells), "brain_scale": settings.brain_scale},
    )


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

#: File names written by :func:`write_subject`, relative to the subject's diffusion folder.
SUBJECT_FILES = {
    "dmri": "data.nii.gz",
    "bvals": "bvals",
    "bvecs": "bvecs",
    "mask": "nodif_brain_mask.nii.gz",
    "tissue": "tissue.nii.gz",
    "fibre_dirs": "fibre_dirs.nii.gz",
    "fibre_fractions": "fibre_fractions.nii.gz",
    "noiseless": "data_noiseless.nii.gz",
}


def _write_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp:
        nib.save(image, tmp)


def _write_text(lines: str, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(lines)


def write_subject(subject: SyntheticSubject, out_dir: str | Path, write_noiseless: bool = False) -> dict[str, Path]:
    """Write a subject in HCP layout (``data.nii.gz``, ``bvals``, ``bvecs``, ``nodif_brain_mask.nii.gz``).

    Also written, for evaluation: ``tissue.nii.gz`` (uint8 labels, :data:`TISSUE_LABELS`),
    ``fibre_dirs.nii.gz`` ((i, j, k, 3 * MAX_FIBRES) float32: x, y, z of each population in voxel axes),
    ``fibre_fractions.nii.gz`` ((i, j, k, MAX_FIBRES) float32) and, if ``write_noiseless``,
    ``data_noiseless.nii.gz``. Every file is written atomically.

    Returns
    -------
    dict mapping the keys of :data:`SUBJECT_FILES` to the written paths.
    """
    if write_noiseless and subject.noiseless is None:  # before any file, so nothing is half-written
        raise InputError("write_noiseless is set, but the subject was simulated with keep_noiseless=False")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in SUBJECT_FILES.items()}
    _write_nifti(np.asarray(subject.dmri, dtype=np.float32), subject.affine, paths["dmri"])
    _write_text(" ".join(f"{b:g}" for b in subject.bvals) + "\n", paths["bvals"])
    _write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in subject.bvecs) + "\n", paths["bvecs"])
    _write_nifti(subject.mask.astype(np.uint8), subject.affine, paths["mask"])
    _write_nifti(subject.tissue.astype(np.uint8), subject.affine, paths["tissue"])
    dirs = subject.fibre_dirs.reshape(subject.fibre_dirs.shape[:3] + (-1,))
    _write_nifti(dirs.astype(np.float32), subject.affine, paths["fibre_dirs"])
    _write_nifti(subject.fibre_fractions.astype(np.float32), subject.affine, paths["fibre_fractions"])
    if write_noiseless:
        _write_nifti(np.asarray(subject.noiseless, dtype=np.float32), subject.affine, paths["noiseless"])
    else:
        del paths["noiseless"]
    return paths
