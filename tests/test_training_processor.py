"""TrainingProcessor, the direction sampler, shell filter and patching, on small synthetic subjects.

Every volume of the synthetic subject holds one constant value, ``100 * (v + 1)`` for volume ``v``,
so the volume behind any example slice can be read back from its values (after undoing the scale)
and checked against the b-vectors the pipeline paired with it.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from dmri_rcnn.core.processing import TrainingProcessor, save_tfrecord_data
from dmri_rcnn.core.processing.directions import (
    arc_distances,
    farthest_point_order,
    farthest_point_subsets,
    select_context_directions,
)
from dmri_rcnn.core.processing.patching import central_padding, extract_patches, extract_patches_tf
from dmri_rcnn.core.processing.shells import select_shell, shell_indices
from dmri_rcnn.errors import InputError

SPATIAL = (13, 12, 21)


def _unit(rng, n):
    v = rng.normal(size=(3, n))
    return v / np.linalg.norm(v, axis=0)


def make_subject(seed=0, n_1000=40, n_2000=20):
    """b0 ×2, b≈1000 × n_1000 (some at 970/1030), one b=1031 volume, b=2000 × n_2000."""
    rng = np.random.default_rng(seed)
    bvals = np.concatenate([[0, 5], np.full(n_1000, 1000.0), [1031.0], np.full(n_2000, 2000.0)])
    bvals[2], bvals[3] = 970.0, 1030.0  # inside the ±30 band, inclusive
    bvecs = np.concatenate([np.zeros((3, 2)), _unit(rng, n_1000 + 1 + n_2000)], axis=1)
    q = bvals.size
    dmri = np.broadcast_to(100.0 * (np.arange(q) + 1), SPATIAL + (q,)).copy()
    mask = np.zeros(SPATIAL, np.int8)
    mask[2:10, 3:9, 4:15] = 1
    return dmri, bvecs, bvals, mask


@pytest.fixture(scope="module")
def subject_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfr") / "subject.tfrecord"
    arrays = make_subject()
    save_tfrecord_data(*arrays, path)
    return path, arrays


def _collect(dataset):
    batches = list(dataset)
    parts = [np.concatenate([b[0][n].numpy() for b in batches]) for n in range(3)]
    return (*parts, np.concatenate([b[1].numpy() for b in batches])), [b[0][0].shape[0] for b in batches]


def _volume_ids(signal, scale):
    """(X, q) volume index per example slice from the constant-per-volume signal (max over space)."""
    values = signal.reshape(*signal.shape[:2], -1).max(axis=2) * scale
    return np.rint(values / 100.0).astype(int) - 1


# -------------------------------------------------------------------------------- pipeline output


def test_batches_shapes_dtypes_and_counts(subject_file):
    path, _ = subject_file
    dataset = TrainingProcessor(shells=[1000, 2000], q_in=6, seed=0).load_data([str(path)])
    spec = dataset.element_spec
    assert spec[0][0].shape.as_list() == [None, 6, 10, 10, 10]
    assert spec[0][1].shape.as_list() == [None, 6, 3] and spec[0][2].shape.as_list() == [None, 10, 3]
    assert spec[1].shape.as_list() == [None, 10, 10, 10, 10]
    assert all(s.dtype == tf.float32 for s in (*spec[0], spec[1]))
    (context, bvec_in, bvec_out, target), sizes = _collect(dataset)
    # mask box lands in 2x2x2 of the 2x2x3 padded patch grid; b1000: 40 dirs -> 2 sets, b2000: 20 -> 1 set
    assert context.shape[0] == 8 * (2 + 1) == 24
    assert sizes == [4] * 6


def test_scaling_pairing_and_shell_filter(subject_file):
    path, (_, bvecs, bvals, _) = subject_file
    processor = TrainingProcessor(shells=[1000, 2000], q_in=6, seed=3)
    (context, bvec_in, bvec_out, target), _ = _collect(processor.load_data([path]))
    scale_of = {1000: 4000.0, 2000: 3000.0}
    for n in range(context.shape[0]):
        # the shell of an example: its values must decode to volumes of one shell with that shell's scale
        decoded = {}
        for shell, scale in scale_of.items():
            ids = np.concatenate([_volume_ids(context[n : n + 1], scale)[0], _volume_ids(target[n : n + 1], scale)[0]])
            if np.all((ids >= 0) & (ids < bvals.size)) and np.all(np.abs(bvals[ids] - shell) <= 30):
                decoded[shell] = ids
        assert len(decoded) == 1, "each example is single-shell and scaled by its shell's constant"
        ((shell, ids),) = decoded.items()
        assert len(set(ids)) == 16  # context and target directions are disjoint
        assert 42 not in ids  # volume 42 is b=1031: outside the band
        np.testing.assert_array_equal(bvec_in[n], bvecs[:, ids[:6]].T.astype(np.float32))
        np.testing.assert_array_equal(bvec_out[n], bvecs[:, ids[6:]].T.astype(np.float32))
    # voxels outside the mask are kept (not zeroed): every patch holds more signal than mask voxels
    assert np.count_nonzero(context[:, 0]) > 8 * 6 * 11


def test_sets_partition_the_shell_per_pass(subject_file):
    path, (_, _, bvals, _) = subject_file
    processor = TrainingProcessor(shells=[1000], q_in=6, seed=11)
    (context, _, _, target), _ = _collect(processor.load_data([path], buffer_size=1))  # no reordering
    ids = np.concatenate([_volume_ids(context, 4000.0), _volume_ids(target, 4000.0)], axis=1)
    sets = {tuple(row) for row in ids}
    assert len(sets) == 2  # the same two sets for every patch of this pass
    used = np.concatenate([np.array(s) for s in sets])
    assert len(set(used)) == 32 and np.all(np.abs(bvals[used] - 1000) <= 30)


def test_seed_reproducible_and_new_sets_each_pass(subject_file):
    path, _ = subject_file

    def first_batches(seed, dataset=None):
        dataset = dataset or TrainingProcessor(shells=[1000], q_in=6, seed=seed).load_data([path])
        return [(b[0][1].numpy(), b[1].numpy()) for b in dataset.take(3)]

    a, b, c = first_batches(42), first_batches(42), first_batches(43)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    dataset = TrainingProcessor(shells=[1000], q_in=6, seed=42).load_data([path], buffer_size=1)
    pass_sets = []
    for _ in range(3):
        bvec_in = np.concatenate([batch[0][1].numpy() for batch in dataset])
        pass_sets.append({tuple(np.round(row, 5).ravel()) for row in bvec_in})
    assert not (pass_sets[0] == pass_sets[1] == pass_sets[2]), "direction sets must be redrawn every pass"


def test_validation_uses_file_order_without_shuffle(subject_file):
    path, _ = subject_file
    processor = TrainingProcessor(shells=[1000], q_in=6)
    (context, _, _, target), _ = _collect(processor.load_data([path], validation=True, bsize=3))
    ids = np.concatenate([_volume_ids(context, 4000.0), _volume_ids(target, 4000.0)], axis=1)
    bvals = make_subject()[2]
    in_band = [v for v in range(bvals.size) if abs(bvals[v] - 1000) <= 30]
    expected = np.array([in_band[0:16], in_band[16:32]] * 8)  # patch-major, two consecutive sets each
    np.testing.assert_array_equal(ids, expected)
    again, _ = _collect(processor.load_data([path], validation=True))
    np.testing.assert_array_equal(again[0], context)


def test_norm_scales_by_subject_percentile(subject_file):
    path, (dmri, _, bvals, mask) = subject_file
    processor = TrainingProcessor(shells=[2000], q_in=6, norm=True)
    (context, _, _, _), _ = _collect(processor.load_data([path], validation=True))
    shell = np.abs(bvals - 2000) <= 30
    p99 = np.percentile(dmri[..., shell].astype(np.float32)[mask != 0], 99)
    first_volume = np.flatnonzero(shell)[0]
    assert context[0, 0].max() == pytest.approx(100.0 * (first_volume + 1) / p99, rel=1e-6)


def test_too_few_directions_is_an_input_error(tmp_path):
    path = tmp_path / "sparse.tfrecord"
    save_tfrecord_data(*make_subject(n_1000=12, n_2000=20), path)
    with pytest.raises(InputError, match=r"sparse.tfrecord: shell b=1000 has 12 directions .* 16 are needed") as err:
        TrainingProcessor(shells=[1000], q_in=6).load_data([path])
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="shell b=3000 has 0 directions"):
        TrainingProcessor(shells=[3000], q_in=6).load_data([path], validation=True)
    # without the up-front check the graph still refuses, when the subject is reached
    for validation in (False, True):
        unchecked = TrainingProcessor(shells=[1000], q_in=6).load_data([path], validation=validation, check_files=False)
        with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than q_in \\+ q_out = 16"):
            list(unchecked)


def test_bad_files_and_arguments(tmp_path):
    with pytest.raises(InputError, match="missing.tfrecord: TFRecord file not found"):
        TrainingProcessor(shells=[1000], q_in=6).load_data([tmp_path / "missing.tfrecord"])
    junk = tmp_path / "junk.tfrecord"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match="junk.tfrecord: expected a dMRI TFRecord"):
        TrainingProcessor(shells=[1000], q_in=6).load_data([junk])
    with pytest.raises(InputError, match="unknown shell"):
        TrainingProcessor(shells=[1500], q_in=6)
    TrainingProcessor(shells=[1500], q_in=6, norms={1500: 3500.0})  # the original's keyword
    with pytest.raises(InputError, match="at least one"):
        TrainingProcessor(shells=[1000], q_in=6).load_data([])


# ---------------------------------------------------------------------------------------- sampler


def test_farthest_point_subsets_are_disjoint_and_sized():
    bvecs = _unit(np.random.default_rng(1), 90)
    inputs, outputs = farthest_point_subsets(bvecs, 6, 10, rng=7)
    assert inputs.shape == (5, 6) and outputs.shape == (5, 10)  # floor(90 / 16) = 5 sets, 10 left over
    used = np.concatenate([inputs.ravel(), outputs.ravel()])
    assert len(set(used)) == 80
    again = farthest_point_subsets(bvecs, 6, 10, rng=np.random.default_rng(7))
    assert np.array_equal(again[0], inputs) and np.array_equal(again[1], outputs)
    other = farthest_point_subsets(bvecs, 6, 10, rng=8)
    assert not np.array_equal(other[0], inputs)
    order = farthest_point_order(bvecs, 6, 10)
    assert sorted(order) == list(range(90))


def test_farthest_point_greedy_maximin_and_antipodes_distinct():
    # each pick maximises the distance to its nearest already-picked direction
    bvecs = _unit(np.random.default_rng(2), 30)
    distances = arc_distances(bvecs)
    inputs = farthest_point_subsets(bvecs, 8, 4)[0][0]  # first set of two
    for n in range(1, 8):
        nearest = distances[inputs[:n]].min(axis=0)
        nearest[inputs[:n]] = -1
        assert nearest[inputs[n]] == nearest.max()
    # antipodes are NOT the same direction: from +x the farthest direction is -x
    axes = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0], [0.6, 0.8, 0]]).T.astype(float)
    (picked,), _ = farthest_point_subsets(axes, 2, 1)
    assert list(picked) == [0, 3]


def test_antipodal_sampling_spreads_axes_on_a_half_sphere():
    # axes spread over a half sphere, as HCP and the synthetic subjects acquire them
    from dmri_rcnn.simulation import hcp_like_scheme

    bvals, bvecs = hcp_like_scheme(shells=(1000,), n_directions=90, n_b0=1)
    shell = bvecs[:, bvals > 500]
    signed, _ = select_context_directions(shell, 6, seed=3)
    axial, _ = select_context_directions(shell, 6, seed=3, antipodal=True)

    def smallest_axis_angle(idx):
        cos = np.abs(shell[:, idx].T @ shell[:, idx])[np.triu_indices(len(idx), 1)]
        return np.degrees(np.arccos(cos.max()))

    # the signed distance picks nearly opposite vectors (nearly the same axis); the axial one does not
    assert smallest_axis_angle(signed) < 30 < smallest_axis_angle(axial)
    distances = arc_distances(shell, antipodal=True)
    assert distances.max() <= np.pi / 2 + 1e-9
    inputs, outputs = farthest_point_subsets(shell, 6, 10, rng=1, antipodal=True)
    assert len(np.unique(np.concatenate([inputs.ravel(), outputs.ravel()]))) == inputs.size + outputs.size


def test_processor_antipodal_option_changes_only_the_sets(subject_file):
    plain = TrainingProcessor([1000], q_in=6, q_out=10, seed=0)
    axial = TrainingProcessor([1000], q_in=6, q_out=10, seed=0, antipodal=True)
    (ctx_a, bin_a, _), _ = next(iter(plain.load_data([subject_file[0]], batch_size=2)))
    (ctx_b, bin_b, _), _ = next(iter(axial.load_data([subject_file[0]], batch_size=2)))
    assert ctx_a.shape == ctx_b.shape and bin_a.shape == bin_b.shape
    assert axial.antipodal and not plain.antipodal


def test_select_context_directions():
    bvecs = _unit(np.random.default_rng(4), 64)
    context, target = select_context_directions(bvecs, 10, seed=5)
    assert context.shape == (10,) and target.shape == (54,)
    assert sorted(np.concatenate([context, target])) == list(range(64))
    np.testing.assert_array_equal(select_context_directions(bvecs, 10, seed=5)[0], context)
    assert select_context_directions(bvecs, 10, seed=None)[0][0] == 0
    with pytest.raises(InputError):
        select_context_directions(bvecs, 64)
    with pytest.raises(InputError, match="zero b-vector"):
        select_context_directions(np.zeros((3, 5)), 2)


def test_sampler_error_when_shell_too_small():
    with pytest.raises(InputError, match="12 directions cannot give q_in \\+ q_out = 16"):
        farthest_point_subsets(_unit(np.random.default_rng(0), 12), 6, 10)


# ----------------------------------------------------------------------------------- shells, patches


def test_shell_selection_tolerance_inclusive():
    bvals = np.array([0, 970, 1000, 1030, 1031, 969, 2000.0])
    np.testing.assert_array_equal(shell_indices(bvals, 1000), [1, 2, 3])
    dmri = np.arange(2 * 7).reshape(1, 1, 2, 7)
    d, v, b = select_shell(dmri, np.arange(21).reshape(3, 7), bvals, 2000)
    assert d.shape == (1, 1, 2, 1) and v.shape == (3, 1) and b.tolist() == [2000.0]
    with pytest.raises(InputError, match="no volume within 30 of shell b=3000"):
        select_shell(dmri, np.zeros((3, 7)), bvals, 3000)


def test_central_padding():
    np.testing.assert_array_equal(central_padding((13, 20, 21)), [[3, 4], [0, 0], [4, 5]])
    np.testing.assert_array_equal(central_padding((7, 8, 9), (4, 4, 4)), [[0, 1], [0, 0], [1, 2]])


def test_patch_extraction_numpy_and_tf_agree():
    rng = np.random.default_rng(6)
    volume = rng.random((13, 12, 21, 3)).astype(np.float32)
    mask = np.zeros((13, 12, 21), np.int8)
    mask[0, 0, 0] = 1  # only the first patch of the 2x2x3 grid
    mask[12, 11, 20] = 1  # and the last
    patches, kept = extract_patches(volume, mask)
    assert patches.shape == (2, 10, 10, 10, 3) and kept.tolist() == [0, 11]
    # padding before is floor(pad / 2): voxel (0, 0, 0) sits at (3, 4, 4) of the first patch
    np.testing.assert_array_equal(patches[0, 3, 4, 4], volume[0, 0, 0])
    assert patches[0, :3].sum() == 0
    patches_tf = extract_patches_tf(tf.constant(volume), tf.constant(mask)).numpy()
    np.testing.assert_array_equal(patches_tf, patches)
    full = np.ones_like(mask)
    assert extract_patches(volume, full)[0].shape[0] == 12


def test_target_mask_slot_holds_each_patch_brain_mask(subject_file):
    """With ``target_mask=True`` the target gains one slot: the patch's brain mask, aligned with the
    signal patches (same examples, same order) for every direction set and both shells."""
    path, (_, _, _, mask) = subject_file
    plain = TrainingProcessor(shells=[1000, 2000], q_in=6, seed=5).load_data([path], validation=True)
    masked = TrainingProcessor(shells=[1000, 2000], q_in=6, seed=5, target_mask=True).load_data(
        [path], validation=True
    )
    (_, _, _, target), _ = _collect(plain)
    (_, _, _, masked_target), _ = _collect(masked)
    assert masked_target.shape == target.shape[:1] + (11,) + target.shape[2:]
    np.testing.assert_array_equal(masked_target[:, :10], target)
    expected = extract_patches(mask.astype(np.float32)[..., None], mask, (10, 10, 10))[0][..., 0]  # (P, m, n, o)
    n_patches = expected.shape[0]
    slots = masked_target[:, 10]
    assert set(np.unique(slots)) == {0.0, 1.0}
    # per shell, examples are patch-major: each patch's mask repeats once per direction set
    sets_1000, sets_2000 = 40 // 16, 20 // 16  # 40 volumes within 30 s/mm² of b = 1000, 20 at 2000
    n_1000 = sets_1000 * n_patches
    assert slots.shape[0] == (sets_1000 + sets_2000) * n_patches
    np.testing.assert_array_equal(slots[:n_1000], np.repeat(expected, sets_1000, axis=0))
    np.testing.assert_array_equal(slots[n_1000:], np.repeat(expected, sets_2000, axis=0))
