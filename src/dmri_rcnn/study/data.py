"""Study steps called by the workflow's scripts: cropping, octant split, TFRecords, context/target split.

Each function reads and writes files (atomically) so a Snakemake rule is one call; the science they
rely on lives in :mod:`dmri_rcnn.core.io` and :mod:`dmri_rcnn.core.processing`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dmri_rcnn.core import io
from dmri_rcnn.core.processing.directions import select_context_directions
from dmri_rcnn.core.processing.shells import require_shell_indices
from dmri_rcnn.errors import InputError
from dmri_rcnn.types import PathLike
from dmri_rcnn.utils import atomic_path


def _require_finite(data: np.ndarray, path: PathLike) -> None:
    """Refuse NaN or Inf in an (i, j, k, q) array, counted one i-slab at a time (no full-size copy)."""
    bad = sum(int(np.count_nonzero(~np.isfinite(data[i]))) for i in range(data.shape[0]))
    if bad:
        raise InputError(f"{path}: expected finite values, found {bad} NaN/Inf value(s) in the brain's bounding box")


def autocrop(
    dmri: PathLike,
    bvals: PathLike,
    bvecs: PathLike,
    mask: PathLike,
    out: dict,
    box_path: PathLike,
    slab: tuple[int, int] | None = None,
) -> tuple:
    """Crop a subject to the bounding box of its signal and mask; write the box as JSON.

    Parameters
    ----------
    dmri, bvals, bvecs, mask : input files (data.nii.gz, bvals, bvecs, nodif_brain_mask.nii.gz).
    out : dict with ``dmri``, ``bvals``, ``bvecs``, ``mask`` output paths.
    box_path : JSON file receiving ``{"start": [i, j, k], "stop": [...], "full_shape": [...]}``.
    slab : ``(first, stop)``: keep only the axial slices ``first <= k < stop`` counted from the lowest
        slice holding brain (``preprocess.test_slab``: evaluating a slab of a full-size test subject where
        whole-brain inference would take too long). The box written covers the slab, so ``crop_truth`` cuts
        the truth maps alike.

    Returns
    -------
    The cropped spatial shape (i', j', k').
    """
    data, affine = io.load_nifti(dmri, return_affine=True)
    brain = io.load_mask(mask).astype(np.uint8)
    bval = io.load_bval(bvals)
    bvec = io.load_bvec(bvecs, bvals=bval)
    if data.shape[-1] != bval.size or bvec.shape[1] != bval.size:
        raise InputError(
            f"{dmri}: {data.shape[-1]} volumes, but {bvals} lists {bval.size} b-values and {bvecs} "
            f"{bvec.shape[1]} directions; expected the same number"
        )
    cropped, cropped_mask, box = io.autocrop_dmri(data, brain, return_box=True)
    if slab is not None:
        # counted from the brain's lowest slice: noisy background keeps the crop box at the full volume
        first, stop = (int(v) for v in slab)
        brain_slices = np.flatnonzero(brain.any(axis=(0, 1)))
        if brain_slices.size == 0:
            raise InputError(f"{mask}: the brain mask is empty; a slab needs brain voxels")
        bottom = int(brain_slices[0])
        depth = int(brain_slices[-1]) + 1 - bottom
        if not 0 <= first < stop <= depth:
            raise InputError(
                f"{mask}: slab [{first}, {stop}) does not fit the brain's {depth} axial slices; "
                f"expected 0 <= first < stop <= {depth}"
            )
        box = io.CropBox(box.start[:2] + (bottom + first,), box.stop[:2] + (bottom + stop,))
        cropped, cropped_mask = data[box.slices], brain[box.slices]
    _require_finite(cropped, dmri)
    new_affine = box.shift_affine(affine)
    full_shape = list(data.shape[:3])
    # the crop is written from its view: a contiguous copy would add 1.9 GB at HCP size
    io.save_nifti(cropped, new_affine, out["dmri"])
    io.save_nifti(np.ascontiguousarray(cropped_mask, dtype=np.uint8), new_affine, out["mask"])
    io.save_bval(bval, out["bvals"])
    io.save_bvec(bvec, out["bvecs"])
    with atomic_path(box_path) as tmp:
        tmp.write_text(
            json.dumps({"start": list(box.start), "stop": list(box.stop), "full_shape": full_shape}) + "\n"
        )
    return box.shape


def crop_truth(image_path: PathLike, box_path: PathLike, out_path: PathLike) -> None:
    """Crop any (i, j, k, ...) image with a box written by :func:`autocrop` (e.g. a tissue map)."""
    box = json.loads(Path(box_path).read_text())
    data, affine = io.load_nifti(image_path, dtype=None, return_affine=True)
    if list(data.shape[:3]) != box["full_shape"]:
        raise InputError(f"{image_path}: spatial shape {data.shape[:3]}; expected {tuple(box['full_shape'])} like the dMRI")
    crop_box = io.CropBox(tuple(box["start"]), tuple(box["stop"]))
    io.save_nifti(np.ascontiguousarray(data[crop_box.slices]), crop_box.shift_affine(affine), out_path)


def split_octants(
    dmri: PathLike, bvals: PathLike, bvecs: PathLike, mask: PathLike, out_dir: PathLike, max_values: int
) -> int:
    """Write the subject as one part, or as 8 octants when it holds more than ``max_values`` values.

    A TFRecord holds a whole (i, j, k, q) float32 volume and cannot exceed 2 GiB, so large subjects are
    split by :func:`dmri_rcnn.core.io.split_image_to_octants`. Each part is a folder ``part-N`` with
    ``data.nii``, ``nodif_brain_mask.nii``, ``bvals`` and ``bvecs`` (uncompressed: they are temporary).

    Returns
    -------
    The number of parts written (1 or 8).
    """
    data, affine = io.load_nifti(dmri, return_affine=True)
    brain = io.load_mask(mask).astype(np.uint8)
    bval = io.load_bval(bvals)
    bvec = io.load_bvec(bvecs, bvals=bval)
    if data.size > max_values:
        parts = list(zip(io.split_image_to_octants(data), io.split_image_to_octants(brain)))
    else:
        parts = [(data, brain)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, (part_dmri, part_mask) in enumerate(parts):
        folder = out_dir / f"part-{index}"
        io.save_nifti(np.ascontiguousarray(part_dmri), affine, folder / "data.nii")
        io.save_nifti(np.ascontiguousarray(part_mask), affine, folder / "nodif_brain_mask.nii")
        io.save_bval(bval, folder / "bvals")
        io.save_bvec(bvec, folder / "bvecs")
    return len(parts)


def make_tfrecords(parts_dir: PathLike, out_dir: PathLike) -> list[Path]:
    """Write one TFRecord per part folder made by :func:`split_octants`; return their paths."""
    # lazy: TensorFlow only for the TFRecords (the other data rules' env has none)
    from dmri_rcnn.core.processing import save_tfrecord_data

    parts = sorted(p for p in Path(parts_dir).iterdir() if p.is_dir() and p.name.startswith("part-"))
    if not parts:
        raise InputError(f"{parts_dir}: no part-N folders; expected the output of split_octants")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part in parts:
        data = io.load_nifti(part / "data.nii")
        brain = io.load_mask(part / "nodif_brain_mask.nii")
        path = out_dir / f"{part.name}.tfrecord"
        bval = io.load_bval(part / "bvals")
        save_tfrecord_data(data, io.load_bvec(part / "bvecs", bvals=bval), bval, brain, path)
        written.append(path)
    return written


def subsample_context(
    dmri: PathLike,
    bvals: PathLike,
    bvecs: PathLike,
    shell: int,
    q_in: int,
    seed: int,
    out: dict,
    tolerance: float = 30.0,
    b0_threshold: float = io.B0_THRESHOLD,
    antipodal: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Split one shell of a test subject into context and held-out target directions.

    The context is a farthest-point subset of ``q_in`` of the shell's acquired directions
    (:func:`dmri_rcnn.core.processing.directions.select_context_directions`, seeded); every other
    direction of the shell is a target. Every method sees exactly these files.

    Parameters
    ----------
    dmri, bvals, bvecs : the subject's (cropped) files.
    shell : nominal b-value, s/mm².
    q_in : number of context directions.
    seed : seed of the farthest-point start.
    out : dict of output paths ``context``, ``context_bvecs``, ``context_bvals``, ``targets``,
        ``target_bvecs``, ``target_bvals`` and ``b0`` (all b0 volumes, (i, j, k, n_b0)).
    tolerance : shell membership tolerance, s/mm².
    b0_threshold : volumes with b below this (s/mm²) are b0.
    antipodal : spread the context by the angle between axes (``v`` same as ``-v``) rather than by the
        original's signed arc distance, which on a half-sphere scheme can pick near-opposite vectors,
        i.e. nearly the same axis.

    Returns
    -------
    context_index, target_index : indices into the shell's volumes (file order).
    """
    bval = io.load_bval(bvals)
    bvec = io.load_bvec(bvecs, bvals=bval)
    img = io.load_nifti_image(dmri)
    if len(img.shape) != 4 or img.shape[3] != bval.size:
        raise InputError(f"{dmri}: image shape {tuple(img.shape)} does not match the {bval.size} b-values of {bvals}")
    shell_index = require_shell_indices(bval, shell, tolerance, name=str(bvals))
    context_index, target_index = select_context_directions(bvec[:, shell_index], int(q_in), seed, antipodal=antipodal)
    b0_index = np.flatnonzero(bval < b0_threshold)
    if b0_index.size == 0:
        raise InputError(f"{bvals}: no b0 volume (b < {b0_threshold:g}); the evaluation needs one")
    # Only the shell's and the b0 volumes are read (one pass over the file), not the whole subject.
    pieces = {
        "context": shell_index[context_index],
        "targets": shell_index[target_index],
        "b0": b0_index,
    }
    volumes = io.load_nifti_volumes(dmri, np.concatenate(list(pieces.values())))
    start = 0
    for name, index in pieces.items():
        io.save_nifti(volumes[..., start : start + index.size], img.affine, out[name])
        start += index.size
        if name != "b0":
            prefix = "context" if name == "context" else "target"
            io.save_bvec(bvec[:, index], out[f"{prefix}_bvecs"])
            io.save_bval(bval[index], out[f"{prefix}_bvals"])
    return context_index, target_index


def extract_shell(dmri: PathLike, bvals: PathLike, bvecs: PathLike, shell: int, out: dict,
                  tolerance: float = 30.0) -> int:
    """Write every volume of one shell, the cross-shell study's acquired targets (rule extract_shell).

    Parameters
    ----------
    dmri, bvals, bvecs : the subject's (cropped) files.
    shell : nominal b-value, s/mm².
    out : dict of output paths ``targets`` ((i, j, k, n) volumes of the shell), ``target_bvecs`` and
        ``target_bvals``.
    tolerance : shell membership tolerance, s/mm².

    Returns
    -------
    The number of volumes written.
    """
    bval = io.load_bval(bvals)
    bvec = io.load_bvec(bvecs, bvals=bval)
    index = require_shell_indices(bval, shell, tolerance, name=str(bvals))
    io.save_nifti(io.load_nifti_volumes(dmri, index), io.load_nifti_image(dmri).affine, out["targets"])
    io.save_bvec(bvec[:, index], out["target_bvecs"])
    io.save_bval(bval[index], out["target_bvals"])
    return int(index.size)
