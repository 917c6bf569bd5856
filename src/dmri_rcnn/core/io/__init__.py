"""Reading and writing diffusion MRI data: NIfTI images, FSL b-vectors/b-values, cropping and octants.

Every loader checks what it reads and raises :class:`dmri_rcnn.errors.InputError` with a one-line
message naming the file, what was expected and what was found. Every writer goes through
:func:`dmri_rcnn.utils.atomic_path`, so a failure never leaves a half-written file.

``from dmri_rcnn.core import io`` gives every name below; each lives in the module of its job:

- :mod:`~dmri_rcnn.core.io.nifti`: NIfTI images, read streamed (the gzip CRC checked) and written
  atomically; the brain mask rule (:func:`load_mask`).
- :mod:`~dmri_rcnn.core.io.gradients`: FSL b-vector and b-value files, ``B0_THRESHOLD``,
  the acquisition as one DIPY ``GradientTable`` (:func:`load_gradient_table`).
- :mod:`~dmri_rcnn.core.io.dataset`: a dMRI image with its companions, checked to fit together.
- :mod:`~dmri_rcnn.core.io.geometry`: crop boxes and octants.
- :mod:`~dmri_rcnn.core.io.checks`: finite values, existing files.

Conventions
-----------
- dMRI images are ``(i, j, k, q)``: three spatial axes (voxels) then the q-space (volume) axis.
- Masks are ``(i, j, k)``; a voxel is inside the brain when its value is > 0 (one rule, applied by
  :func:`load_mask` everywhere: 0.4 is inside, 0 and negative values are outside).
- b-vectors are ``(3, q)`` (FSL layout: rows x, y, z); b-values are ``(q,)`` in s/mm². Every
  diffusion-weighted direction must be a unit vector: lengths within ``1 ± BVEC_UNIT_TOLERANCE`` are
  renormalised, anything else is refused naming the file and column. b0 volumes (b-value below
  ``B0_THRESHOLD`` where b-values are at hand, otherwise a zero vector) carry no direction and are
  stored as zero vectors.
"""

from __future__ import annotations

from dmri_rcnn.core.io.checks import check_finite
from dmri_rcnn.core.io.dataset import DMRISet, affine_mismatch, load_dmri_set, validate_dmri_set
from dmri_rcnn.core.io.geometry import CropBox, autocrop_dmri, merge_octants, split_image_to_octants, uncrop
from dmri_rcnn.core.io.gradients import (
    B0_THRESHOLD,
    BVEC_UNIT_TOLERANCE,
    check_bvecs,
    load_bval,
    load_bvec,
    load_gradient_table,
    make_gradient_table,
    save_bval,
    save_bvec,
)
from dmri_rcnn.core.io.nifti import (
    load_mask,
    load_nifti,
    load_nifti_image,
    load_nifti_volume,
    load_nifti_volumes,
    save_nifti,
)
from dmri_rcnn.types import PathLike  # noqa: F401  (importable from here, as before the split)

__all__ = [
    "CropBox",
    "DMRISet",
    "B0_THRESHOLD",
    "BVEC_UNIT_TOLERANCE",
    "autocrop_dmri",
    "check_bvecs",
    "check_finite",
    "load_bval",
    "load_bvec",
    "load_gradient_table",
    "load_dmri_set",
    "load_mask",
    "load_nifti",
    "load_nifti_image",
    "load_nifti_volume",
    "load_nifti_volumes",
    "make_gradient_table",
    "merge_octants",
    "save_bval",
    "save_bvec",
    "save_nifti",
    "split_image_to_octants",
    "uncrop",
    "validate_dmri_set",
]
