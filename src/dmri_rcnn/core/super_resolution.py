"""Angular super-resolution of a whole scan: keep what was acquired, add the volumes the model predicts.

This is the clinical use of the dMRI-RCNN: a scan with a few directions on one shell (the *context*) gets
many more predicted directions of that shell, and the result is one ordinary diffusion dataset that DTI or
CSD tools read (a 4D NIfTI with FSL ``bvals``/``bvecs``). There are no held-out targets to compare with.
A cross-shell model (:attr:`dmri_rcnn.core.model_spec.ModelSpec.target_shells`) adds volumes of other
shells instead, e.g. b = 2000 and 3000 from a b = 1000 acquisition: the result is then a multi-shell dataset.

Output volume order: the acquired b0 and context volumes, in the order of the input file and copied
value for value (never rescaled), then the predicted volumes in the order of the target directions.
Acquired volumes of other shells are not part of the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.core.inference import InferenceSettings, infer
from dmri_rcnn.core.io import B0_THRESHOLD
from dmri_rcnn.core.processing.directions import evenly_spread_directions, hcp_like_scheme, select_context_directions
from dmri_rcnn.core.processing.scaling import intensity_scale
from dmri_rcnn.core.processing.shells import SHELL_TOLERANCE, shell_indices
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike

#: Shells of the HCP-like scheme (:func:`hcp_like_scheme`), 90 directions each.
HCP_SHELLS = (1000, 2000, 3000)


class SuperResolved(NamedTuple):
    """A super-resolved scan: ``dmri (i, j, k, n_b0 + q_in + q_out)``, ``bvals (n,)``, ``bvecs (3, n)``,
    and ``acquired`` (n,) bool, True for the volumes copied from the input."""

    dmri: np.ndarray
    bvals: np.ndarray
    bvecs: np.ndarray
    acquired: np.ndarray

    @property
    def gradient_table(self):
        """The output's acquisition as one DIPY ``GradientTable`` (:func:`dmri_rcnn.core.io.make_gradient_table`),
        e.g. for ``TensorModel(result.gradient_table).fit(result.dmri, mask)``; b0 volumes read as b = 0."""
        return io.make_gradient_table(self.bvals, self.bvecs, name="super-resolved b-vectors")


def hcp_like_directions(shell: int) -> np.ndarray:
    """(3, 90) directions of ``shell`` in the HCP-like scheme the synthetic subjects are acquired with.

    Like the HCP protocol, 90 well-spread directions per shell, each shell rotated against the others.
    These are the package's own directions, not the HCP's gradient table: for a real HCP subject's
    directions, pass its ``bvecs`` file.
    """
    if int(shell) not in HCP_SHELLS:
        raise InputError(f"shell {shell}: the HCP-like scheme has shells {', '.join(map(str, HCP_SHELLS))}")
    bvals, bvecs = hcp_like_scheme(HCP_SHELLS)
    return bvecs[:, shell_indices(bvals, int(shell), tolerance=SHELL_TOLERANCE)]


def target_directions(targets: str | int | PathLike, shell: int, seed: int = 0) -> np.ndarray:
    """(3, q_out) unit target directions from a description.

    Parameters
    ----------
    targets : ``"hcp"`` (the 90 directions of :func:`hcp_like_directions`), a number N (N evenly spread
        directions, :func:`dmri_rcnn.core.processing.directions.evenly_spread_directions`), or the path
        of an FSL b-vector file (3 rows, one column per direction).
    shell : b-value (s/mm²) of the targets.
    seed : seed of the evenly spread directions.
    """
    text = str(targets).strip()
    if text.lower() == "hcp":
        return hcp_like_directions(shell)
    if text.isdigit():
        return evenly_spread_directions(int(text), seed=seed)
    bvecs = io.load_bvec(text, dtype=np.float64)
    norms = np.linalg.norm(bvecs, axis=0)
    if np.any(norms < 1e-6):
        raise InputError(f"{text}: target b-vector {int(np.argmin(norms)) + 1} is zero; a target needs a direction")
    return bvecs / norms


@dataclass(frozen=True)
class SuperResolutionSettings(InferenceSettings):
    """How :func:`super_resolve` reads the scan and chooses its context, and how it runs the model (the
    fields of :class:`dmri_rcnn.core.inference.InferenceSettings`).

    Attributes
    ----------
    tolerance : float
        Volumes within this of the shell's b-value (s/mm²) are the context.
    b0_threshold : float
        Volumes with b below it are b0 volumes (kept in the output).
    context_size : int or None
        The model's q_in. None: every volume of the shell is context. If the shell has more volumes,
        this many well-spread ones are the context (farthest-point selection,
        :func:`dmri_rcnn.core.processing.directions.select_context_directions` with ``seed`` and
        ``antipodal``) and the other volumes of the shell are left out of the output; fewer is an error.
    seed : int
        Seed of the farthest-point selection.
    antipodal : bool
        Whether the selection treats v and -v as one axis.
    q_encoding : str
        The model's q-space encoding (:attr:`dmri_rcnn.core.model_spec.ModelSpec.q_encoding`);
        ``"b_scaled"`` hands the network the context's and the targets' b-values with their directions.
    """

    tolerance: float = SHELL_TOLERANCE
    b0_threshold: float = B0_THRESHOLD
    context_size: int | None = None
    seed: int = 0
    antipodal: bool = True
    q_encoding: str = "direction"


def super_resolve(
    dmri: np.ndarray,
    bvals: np.ndarray,
    bvecs: np.ndarray,
    mask: np.ndarray,
    model,
    shell: int,
    target_bvecs: np.ndarray,
    scale: float | str | None = None,
    settings: SuperResolutionSettings | None = None,
    target_bvals: np.ndarray | float | None = None,
    **options,
) -> SuperResolved:
    """Predict the ``target_bvecs`` volumes from the scan's own volumes of ``shell``.

    Parameters
    ----------
    dmri : (i, j, k, q) the whole scan (b0, the shell, possibly other shells), raw signal.
    bvals : (q,) s/mm²; bvecs : (3, q).
    mask : (i, j, k) brain mask (> 0 is brain).
    model : keras.Model from :mod:`dmri_rcnn.core.model`.
    shell : b-value (s/mm²) of the context and the targets; volumes within ``settings.tolerance`` of it
        are the context (all of them, in file order, unless ``settings.context_size`` chooses).
    target_bvecs : (3, q_out) directions to predict.
    scale : signal divisor, or the model's scaling (``"shell"``, ``"percentile"``: the divisor is then
        :func:`dmri_rcnn.core.processing.scaling.intensity_scale` of the context); None = ``"shell"``.
    settings : :class:`SuperResolutionSettings`; None = the defaults.
    target_bvals : (q_out,) b-values (s/mm²) of the targets, or one for all; None = ``shell``. Other
        shells than the context's need a cross-shell model, whose ``q_encoding`` the settings give
        (checked by :func:`dmri_rcnn.core.model_spec.check_target_bvals` where the model is known).
    **options : any field of :class:`SuperResolutionSettings` by name (``tolerance``, ``b0_threshold``,
        ``context_size``, ``seed``, ``antipodal``, ``q_encoding``, ``batch_size``, ``overlap``,
        ``q_out_chunk``, ``progress``, ...), overriding ``settings``.

    Returns
    -------
    SuperResolved : the acquired b0 and context volumes (same values and dtype family as ``dmri``: float32,
        or float64 for float64 input), then the predictions, with ``target_bvals`` as their b-values.
    """
    settings = SuperResolutionSettings.with_options(settings, options, "super_resolve")
    tolerance, context_size = settings.tolerance, settings.context_size
    dmri = np.asarray(dmri)
    bvals = np.asarray(bvals, dtype=np.float64).ravel()
    bvecs = np.asarray(bvecs, dtype=np.float64)
    target_bvecs = np.asarray(target_bvecs, dtype=np.float64)
    target_bvals = _target_bvals(target_bvals, shell, target_bvecs)
    if dmri.ndim != 4:
        raise InputError(f"dmri: expected a 4D scan (i, j, k, q), found shape {dmri.shape}")
    if bvals.shape != (dmri.shape[3],) or bvecs.shape != (3, dmri.shape[3]):
        raise InputError(
            f"the scan has {dmri.shape[3]} volumes but {bvals.size} b-values and b-vectors of shape {bvecs.shape}; "
            "expected one b-value and one b-vector per volume"
        )
    context = shell_indices(bvals, shell, tolerance)
    if context.size == 0:
        found = ", ".join(f"{b:g}" for b in np.unique(np.round(bvals)))
        raise InputError(f"no volume within {tolerance:g} of shell b={shell}; b-values found: {found}")
    if context_size is not None and context.size != int(context_size):
        if context.size < int(context_size):
            raise InputError(
                f"shell b={shell} has {context.size} volumes; the model needs {context_size} context directions"
            )
        chosen, _ = select_context_directions(
            bvecs[:, context], int(context_size), settings.seed, antipodal=settings.antipodal
        )
        context = np.sort(context[chosen])
    is_b0 = bvals < settings.b0_threshold
    keep = np.flatnonzero(is_b0 | np.isin(np.arange(bvals.size), context))
    if scale is None or isinstance(scale, str):
        scale = intensity_scale(scale or "shell", shell, dmri[..., context], mask)
    predicted = infer(dmri[..., context], bvecs[:, context], target_bvecs, mask, model, shell=shell, scale=scale,
                      settings=settings, q_encoding=settings.q_encoding, bvals=(bvals[context], target_bvals))
    dtype = np.result_type(dmri.dtype, np.float32)
    volumes = np.concatenate([dmri[..., keep].astype(dtype), predicted.astype(dtype)], axis=3)
    out_bvals = np.concatenate([bvals[keep], target_bvals])
    out_bvecs = np.concatenate([bvecs[:, keep], target_bvecs], axis=1)
    acquired = np.arange(volumes.shape[3]) < keep.size
    return SuperResolved(volumes, out_bvals, out_bvecs, acquired)


def _target_bvals(target_bvals, shell: int, target_bvecs: np.ndarray) -> np.ndarray:
    """(q_out,) float64 b-values of the targets: ``target_bvals`` (one per target, or one for all) or ``shell``."""
    q_out = target_bvecs.shape[1] if target_bvecs.ndim == 2 else 0
    values = np.asarray(float(shell) if target_bvals is None else target_bvals, dtype=np.float64).ravel()
    if values.size == 1:
        values = np.full(q_out, values[0])
    if values.size != q_out:
        raise InputError(f"target_bvals: expected one b-value per target direction ({q_out}), found {values.size}")
    return values


def super_resolve_files(
    dmri: PathLike,
    bvals: PathLike,
    bvecs: PathLike,
    mask: PathLike,
    model,
    shell: int,
    target_bvecs: np.ndarray,
    out_dmri: PathLike,
    out_bvals: PathLike,
    out_bvecs: PathLike,
    **options,
) -> SuperResolved:
    """:func:`super_resolve` from files to files, keeping the scan's header (affine, voxel sizes, units).

    ``options`` are :func:`super_resolve`'s ``scale``, ``settings``, ``target_bvals`` or any of its
    settings by name.

    The three outputs are written atomically, the image last.
    """
    image = io.load_nifti_image(dmri)
    data = np.asarray(image.dataobj)
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float32)  # integer voxels are exact in float32
    io.check_finite(data, str(dmri))
    brain = io.load_nifti(mask, dtype=np.uint8) > 0
    if brain.shape != data.shape[:3]:
        raise InputError(f"{mask}: mask shape {brain.shape} differs from the scan's spatial shape {data.shape[:3]}")
    table_bvals = io.load_bval(bvals, dtype=np.float64)
    table_bvecs = io.load_bvec(bvecs, dtype=np.float64)
    result = super_resolve(data, table_bvals, table_bvecs, brain, model, shell, target_bvecs, **options)
    io.save_bval(result.bvals, out_bvals)
    io.save_bvec(result.bvecs, out_bvecs)
    io.save_nifti(result.dmri, image.affine, out_dmri, header=image.header)
    return result


def sidecar_table_paths(out_dmri: PathLike) -> tuple[Path, Path]:
    """``sr.nii.gz`` -> (``sr.bval``, ``sr.bvec``): the b-value and b-vector files beside an output image."""
    out_dmri = Path(out_dmri)
    stem = out_dmri.name[: -len(".nii.gz")] if out_dmri.name.endswith(".nii.gz") else out_dmri.stem
    return out_dmri.with_name(stem + ".bval"), out_dmri.with_name(stem + ".bvec")
