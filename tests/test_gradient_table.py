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
