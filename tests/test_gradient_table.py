"""An acquisition travels as one DIPY GradientTable, built in one place with the project's b0 threshold."""

from __future__ import annotations

import numpy as np
import pytest
from dipy.core.gradients import GradientTable

from dmri_rcnn.core import io
from dmri_rcnn.errors import InputError


def _write_fsl(folder, bvals, bvecs):
    (folder / "bvals").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    (folder / "bvecs").write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in bvecs) + "\n")
    return folder / "bvals", folder / "bvecs"


def test_load_gradient_table_reads_fsl_files_with_the_projects_b0_threshold(tmp_path):
    # b = 5 and 45 are b0 volumes (below B0_THRESHOLD = 50) even with a direction written; b = 55 is not
    bvals = [0, 5, 45, 55, 1000, 995, 2010]
    bvecs = np.array([
        [0, 1, 0, 0, 1, 0, 0.6],
        [0, 0, 1, 1, 0, 1, 0.8],
        [0, 0, 0, 0, 0, 0, 0.0],
    ])
    table = io.load_gradient_table(*_write_fsl(tmp_path, bvals, bvecs))
    assert isinstance(table, GradientTable)
    assert table.b0_threshold == io.B0_THRESHOLD
    # DIPY stores b·g, so a b0 volume (no direction) reads back as b = 0
    np.testing.assert_array_equal(table.bvals, [0, 0, 0, 55, 1000, 995, 2010])
    assert table.b0s_mask.tolist() == [True, True, True, False, False, False, False]
    np.testing.assert_allclose(table.bvecs[:3], 0.0)  # b0 volumes carry no direction
    np.testing.assert_allclose(table.bvecs[3:], bvecs[:, 3:].T)


def test_make_gradient_table_builds_the_same_table_from_arrays(tmp_path):
    bvals = np.array([0, 1000, 1000, 1000])
    bvecs = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.004]])  # a length within tolerance is renormalised
    from_files = io.load_gradient_table(*_write_fsl(tmp_path, bvals, bvecs))
    from_arrays = io.make_gradient_table(bvals, bvecs)
    from_rows = io.make_gradient_table(bvals, bvecs.T)  # (q, 3), DIPY's layout
    for table in (from_arrays, from_rows):
        assert table.b0_threshold == io.B0_THRESHOLD
        np.testing.assert_allclose(table.bvecs, from_files.bvecs, atol=1e-6)
        np.testing.assert_array_equal(table.bvals, from_files.bvals)
    np.testing.assert_allclose(np.linalg.norm(from_arrays.bvecs[1:], axis=1), 1.0)


def test_a_bad_table_is_refused_naming_the_file(tmp_path):
    bval_path, bvec_path = _write_fsl(tmp_path, [0, 1000, 1000], np.array([[0, 1, 0.5], [0, 0, 0], [0, 0, 0]]))
    with pytest.raises(InputError, match=rf"{bvec_path}: column 3 of 3 \(b-value 1000\) has length 0.5"):
        io.load_gradient_table(bval_path, bvec_path)
    bval_path.write_text("0 1000\n")
    with pytest.raises(InputError, match="has 3 b-vectors but there are 2 b-values"):
        io.load_gradient_table(bval_path, bvec_path)


def test_a_super_resolved_scan_hands_its_acquisition_to_dipy_as_one_table():
    from dipy.reconst.dti import TensorModel

    from dmri_rcnn.core.processing.directions import evenly_spread_directions
    from dmri_rcnn.core.super_resolution import SuperResolved

    bvecs = np.concatenate([np.zeros((3, 2)), evenly_spread_directions(12, seed=0)], axis=1)
    bvals = np.r_[5.0, 0.0, np.full(12, 1000.0)]
    # an isotropic tensor, D = 0.0008 mm²/s; the b0 volumes hold S0
    signal = 1000.0 * np.exp(-np.where(bvals < io.B0_THRESHOLD, 0.0, bvals) * 0.0008)
    dmri = np.broadcast_to(signal, (2, 2, 1, bvals.size)).astype(np.float32)
    result = SuperResolved(dmri, bvals, bvecs, np.arange(bvals.size) < 8)
    table = result.gradient_table
    assert table.b0_threshold == io.B0_THRESHOLD and table.b0s_mask.sum() == 2
    fit = TensorModel(table).fit(result.dmri, mask=np.ones((2, 2, 1), bool))
    np.testing.assert_allclose(fit.md, 0.0008, rtol=1e-3)
