"""Q-space directions: farthest-point selection, evenly spread directions and the HCP-like scheme.

Directions are compared by the great-circle (arc) distance ``acos(u · v)`` of the unit b-vectors;
as in the original, ``v`` and ``-v`` count as far apart (the sign of a direction is kept). With
``antipodal=True`` the distance is the angle between axes, ``acos(|u · v|)``: the diffusion signal
is the same at ``v`` and ``-v``, and on a scheme whose axes are spread over a half sphere (HCP, the
synthetic subjects) the signed distance favours nearly opposite vectors, i.e. nearly the same axis.
A subset is grown greedily: start at one direction, then repeatedly add the unused direction whose
smallest distance to the subset so far is largest (ties: the lowest index).

:func:`hcp_like_scheme` is the gradient scheme the synthetic subjects are acquired with; super-resolution
offers its directions as targets.
"""

from __future__ import annotations

import functools

import numpy as np

from dmri_rcnn.errors import InputError

__all__ = [
    "arc_distances",
    "evenly_spread_directions",
    "farthest_point_order",
    "farthest_point_subsets",
    "hcp_like_scheme",
    "select_context_directions",
]

#: Seed of the shared gradient scheme: every synthetic subject is "scanned" with the same directions.
PROTOCOL_SEED = 20220315


def arc_distances(bvecs: np.ndarray, antipodal: bool = False) -> np.ndarray:
    """(q, q) matrix of arc distances (radians) between the columns of ``bvecs`` (3, q).

    With ``antipodal=True``, the angle between the axes (0 to pi/2), so ``v`` and ``-v`` coincide.
    """
    bvecs = np.asarray(bvecs, dtype=np.float64)
    if bvecs.ndim != 2 or bvecs.shape[0] != 3:
        raise InputError(f"bvecs: expected shape (3, q), found {bvecs.shape}")
    norms = np.linalg.norm(bvecs, axis=0)
    if np.any(norms == 0):
        raise InputError("bvecs: a zero b-vector (b0 volume) has no direction; select a shell first")
    unit = bvecs / norms
    cosines = unit.T @ unit
    if antipodal:
        cosines = np.abs(cosines)
    return np.arccos(np.clip(cosines, -1.0, 1.0))


def _grow_subset(distances: np.ndarray, available: np.ndarray, size: int, start: int) -> np.ndarray:
    """Pick ``size`` indices among ``available`` (bool, updated in place) by farthest-point selection."""
    picked = np.empty(size, dtype=np.int64)
    picked[0] = start
    available[start] = False
    nearest = distances[start].copy()  # distance of every direction to its nearest picked direction
    for n in range(1, size):
        candidate = np.where(available, nearest, -np.inf)
        pick = int(np.argmax(candidate))
        picked[n] = pick
        available[pick] = False
        np.minimum(nearest, distances[pick], out=nearest)
    return picked


def _start_index(available: np.ndarray, rng: np.random.Generator | None) -> int:
    free = np.flatnonzero(available)
    return int(free[0]) if rng is None else int(rng.choice(free))


def farthest_point_subsets(
    bvecs: np.ndarray,
    q_in: int,
    q_out: int,
    rng: np.random.Generator | int | None = None,
    antipodal: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the directions of one shell into disjoint, well-spread (input, output) sets.

    ``S = q // (q_in + q_out)`` sets are built one after another; in each, the ``q_in`` input
    directions are chosen first (random unused start, then farthest-point), then the ``q_out``
    output directions the same way from what is still unused. The ``q - S (q_in + q_out)`` leftover
    directions are not used.

    Parameters
    ----------
    bvecs : (3, q) b-vectors of one shell.
    q_in, q_out : sizes of the input (context) and output (target) subsets.
    rng : NumPy Generator or integer seed for the random starts. ``None`` starts each subset at the
        lowest unused index (deterministic; the original's ``random_seed=False``).
    antipodal : compare axes (``v`` same as ``-v``) instead of signed directions (the original).

    Returns
    -------
    input_sets : (S, q_in) int64 indices into the columns of ``bvecs``.
    output_sets : (S, q_out) int64 indices; all indices of both arrays are distinct.
    """
    q_in, q_out = int(q_in), int(q_out)
    if q_in < 1 or q_out < 1:
        raise InputError(f"q_in and q_out must be positive, found q_in={q_in}, q_out={q_out}")
    distances = arc_distances(bvecs, antipodal)
    n_dirs = distances.shape[0]
    n_sets = n_dirs // (q_in + q_out)
    if n_sets == 0:
        raise InputError(
            f"bvecs: a shell with {n_dirs} directions cannot give q_in + q_out = {q_in + q_out} distinct directions"
        )
    if rng is not None and not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(rng)
    available = np.ones(n_dirs, dtype=bool)
    inputs = np.empty((n_sets, q_in), dtype=np.int64)
    outputs = np.empty((n_sets, q_out), dtype=np.int64)
    for s in range(n_sets):
        inputs[s] = _grow_subset(distances, available, q_in, _start_index(available, rng))
        outputs[s] = _grow_subset(distances, available, q_out, _start_index(available, rng))
    return inputs, outputs


def farthest_point_order(
    bvecs: np.ndarray,
    q_in: int,
    q_out: int,
    rng: np.random.Generator | int | None = None,
    antipodal: bool = False,
) -> np.ndarray:
    """(q,) permutation: set 1 inputs, set 1 outputs, set 2 inputs, ..., then the leftovers ascending.

    This is the volume order the original's training pipeline produced (``ShellReorder``).
    """
    inputs, outputs = farthest_point_subsets(bvecs, q_in, q_out, rng, antipodal)
    used = np.concatenate([inputs, outputs], axis=1).ravel()
    leftover = np.setdiff1d(np.arange(np.asarray(bvecs).shape[1]), used)
    return np.concatenate([used, leftover])


def select_context_directions(
    bvecs: np.ndarray, q_in: int, seed: int | None = 0, antipodal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``q_in`` well-spread context directions of one shell; all the others become targets.

    For the evaluation split: the model sees the context volumes and must predict the targets.

    Parameters
    ----------
    bvecs : (3, q) b-vectors of one shell.
    q_in : number of context directions (6, 10 or 30 for the published weights).
    seed : integer seed for the random start (same seed, same split); ``None`` starts at index 0.
    antipodal : compare axes (``v`` same as ``-v``) instead of signed directions (the original).

    Returns
    -------
    context_idx : (q_in,) int64 indices in selection order.
    target_idx : (q - q_in,) int64, the remaining indices ascending.
    """
    distances = arc_distances(bvecs, antipodal)
    n_dirs = distances.shape[0]
    if not 1 <= int(q_in) < n_dirs:
        raise InputError(f"bvecs: need 1 <= q_in < {n_dirs} directions to leave targets, found q_in={q_in}")
    available = np.ones(n_dirs, dtype=bool)
    rng = None if seed is None else np.random.default_rng(seed)
    context = _grow_subset(distances, available, int(q_in), _start_index(available, rng))
    return context, np.flatnonzero(available).astype(np.int64)


def evenly_spread_directions(n_directions: int, seed: int = 0, iterations: int = 1000) -> np.ndarray:
    """``n_directions`` unit b-vectors spread evenly over the sphere, as an acquisition scheme would be.

    Random points on a half sphere are pushed apart by electrostatic repulsion of antipodal pairs
    (DIPY's ``disperse_charges``), so no two directions are close to the same axis.

    Returns
    -------
    (3, n_directions) float64 unit vectors (the same for the same ``seed``).
    """
    # lazy: DIPY's sphere (0.4 s) loads only for evenly spread directions
    from dipy.core.sphere import HemiSphere, disperse_charges

    n_directions = int(n_directions)
    if n_directions < 1:
        raise InputError(f"n_directions is {n_directions}; expected a positive number of directions")
    rng = np.random.default_rng(seed)
    theta = np.arccos(rng.uniform(-1.0, 1.0, n_directions))
    phi = rng.uniform(0.0, 2.0 * np.pi, n_directions)
    spread, _ = disperse_charges(HemiSphere(theta=theta, phi=phi), iterations)
    vertices = np.asarray(spread.vertices, dtype=np.float64)
    return (vertices / np.linalg.norm(vertices, axis=1, keepdims=True)).T.copy()


@functools.lru_cache(maxsize=16)
def _well_spread_directions(n_directions: int, seed: int, iterations: int = 1000) -> np.ndarray:
    """Return ``(n_directions, 3)`` unit vectors spread by electrostatic repulsion (antipodally symmetric)."""
    return evenly_spread_directions(n_directions, seed, iterations).T


def hcp_like_scheme(
    shells: tuple[int, ...] = (1000, 2000, 3000),
    n_directions: int = 90,
    n_b0: int = 6,
    seed: int = PROTOCOL_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Build an HCP-like multi-shell gradient scheme.

    Each shell gets its own set of ``n_directions`` well-spread directions (different shells are rotated
    relative to each other, as in HCP); shells are interleaved volume by volume and the b0 volumes are
    spread evenly through the acquisition. b-values carry HCP-like deviations (b0 = 5, shells within
    ±15 s/mm² of nominal) so that shell selection with a tolerance is exercised.

    Parameters
    ----------
    shells : tuple of int
        Nominal b-values in s/mm².
    n_directions : int
        Directions per shell.
    n_b0 : int
        Number of b0 volumes (>= 1).
    seed : int
        Seed of the scheme (shared by all subjects).

    Returns
    -------
    bvals : (q,) float64, s/mm²
    bvecs : (3, q) float64, unit vectors (zeros for b0)
    """
    if n_b0 < 1:
        raise InputError(f"n_b0 is {n_b0}; a subject needs at least one b0 volume")
    if n_directions < 1:
        raise InputError(f"n_directions is {n_directions}; expected a positive number of directions per shell")
    rng = np.random.default_rng(seed)
    per_shell = [_well_spread_directions(n_directions, seed + 1 + index) for index, _ in enumerate(shells)]
    # interleave the shells: volume v of shell s goes to position v * n_shells + s
    dw_bvecs = np.stack(per_shell, axis=1).reshape(-1, 3)
    nominal = np.tile(np.asarray(shells, dtype=np.float64), n_directions)
    deviation = rng.choice(np.arange(-15.0, 16.0, 5.0), size=nominal.size)
    dw_bvals = nominal + deviation

    n_dw = dw_bvals.size
    b0_positions = np.linspace(0, n_dw + n_b0 - 1, n_b0).round().astype(int)
    total = n_dw + n_b0
    is_b0 = np.zeros(total, dtype=bool)
    is_b0[b0_positions] = True
    bvals = np.empty(total)
    bvecs = np.zeros((total, 3))
    bvals[is_b0] = 5.0
    bvals[~is_b0] = dw_bvals
    bvecs[~is_b0] = dw_bvecs
    return bvals, bvecs.T.copy()
