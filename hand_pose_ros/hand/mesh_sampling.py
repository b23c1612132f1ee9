"""Coarse versions of the open hand model's mesh and a vertex -> joint regressor.

Mesh-regressing networks (ReJSHand, CLIP-Hand, in the line of Pose2Mesh / FastMETRO /
HandOccNet) predict a coarse mesh first and upsample it, and get their joints from the vertices
by a fixed linear regressor (MANO's ``J_regressor`` in the papers). MANO's decimated meshes and
regressor do not apply to our 776-vertex template, so both are built here from the template:

- Coarse levels: geodesic farthest point sampling on the template's edge graph (deterministic,
  seeded at vertex 0), so every coarse vertex is a template vertex and coarse ground truth is a
  plain index into the full mesh. Upsampling matrices U (fine x coarse) blend each fine vertex
  from its 3 geodesically nearest coarse vertices by inverse distance (rows sum to 1); along the
  surface, not through the air, so the web between two fingers never mixes the fingers.
- Joint regressor J (21 x V): non-negative weights, rows summing to 1, each row restricted to the
  vertices of the parts that meet at that joint, fitted by least squares over random valid poses
  and shapes of the model. Rows summing to 1 make it commute with rotation and translation, so
  it applies to meshes in any frame.

Everything is computed on first use (well under a second) and cached in memory.
"""

from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls
from scipy.sparse.csgraph import dijkstra

from hand_pose_ros.hand.joints import NUM_JOINTS
from hand_pose_ros.hand.mesh import hand_template

# Vertex counts of the default coarse levels: the full mesh divided by 4 and by 16 (the factor
# of MANO's 778 -> 195 -> 49 hierarchy used by Pose2Mesh and FastMETRO).
DEFAULT_LEVELS: tuple[int, ...] = (194, 49)
_UPSAMPLE_NEIGHBOURS = 3
# Fitting set of the joint regressor: random valid poses and shapes (log-normal, the synthetic
# data's spread doubled so that the fit covers every hand the data holds).
_FIT_SAMPLES = 400
_FIT_SEED = 0
_FIT_SHAPE_SIGMA = 0.12
# Weight of the rows-sum-to-one equation in the least-squares system (metres are ~0.01-0.2, so
# this makes the constraint exact to ~1e-6).
_SUM_WEIGHT = 100.0


@dataclass(frozen=True)
class CoarseMesh:
    """One coarse level of the template mesh.

    indices: (C,) int64, template vertex index of every coarse vertex (coarse = full[indices]).
    upsample: (V, C) float32 scipy CSR matrix, fine = upsample @ coarse; rows sum to 1.
    adjacency: (C, C) bool, coarse vertices whose surface cells share a template edge.
    """

    indices: np.ndarray
    upsample: sp.csr_matrix
    adjacency: np.ndarray

    @property
    def num_vertices(self) -> int:
        return len(self.indices)


@cache
def _edge_graph() -> sp.csr_matrix:
    """(V, V) symmetric sparse matrix of template edge lengths (rest pose, metres)."""
    template = hand_template()
    faces = template.faces
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    length = np.linalg.norm(template.vertices[edges[:, 0]] - template.vertices[edges[:, 1]],
                            axis=1)
    n = len(template.vertices)
    graph = sp.coo_matrix((length, (edges[:, 0], edges[:, 1])), shape=(n, n))
    return (graph + graph.T).tocsr()


def farthest_point_sampling(count: int) -> np.ndarray:
    """(count,) template vertex indices by geodesic farthest point sampling from vertex 0."""
    graph = _edge_graph()
    n = graph.shape[0]
    if not 1 <= count <= n:
        raise ValueError(f"coarse vertex count must be in [1, {n}], got {count}")
    chosen = [0]
    distance = dijkstra(graph, indices=0)
    for _ in range(count - 1):
        # Ties (equal distances) resolve to the lowest index: argmax is deterministic.
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, dijkstra(graph, indices=nxt))
    return np.array(chosen, dtype=np.int64)


@cache
def coarse_mesh(count: int) -> CoarseMesh:
    """The coarse level with ``count`` vertices (see the module docstring); cached."""
    indices = farthest_point_sampling(count)
    graph = _edge_graph()
    n = graph.shape[0]
    distance = dijkstra(graph, indices=indices)  # (C, V) geodesic distances, metres
    k = min(_UPSAMPLE_NEIGHBOURS, count)
    nearest = np.argsort(distance, axis=0, kind="stable")[:k].T  # (V, k) coarse ids
    near_distance = np.take_along_axis(distance.T, nearest, axis=1)
    weights = 1.0 / np.maximum(near_distance, 1e-9)
    # A fine vertex that is itself a coarse vertex copies it exactly.
    exact = near_distance[:, 0] < 1e-12
    weights[exact] = 0.0
    weights[exact, 0] = 1.0
    weights /= weights.sum(axis=1, keepdims=True)
    rows = np.repeat(np.arange(n), k)
    upsample = sp.csr_matrix((weights.ravel().astype(np.float32), (rows, nearest.ravel())),
                             shape=(n, count))
    # Surface cells: every template vertex belongs to its nearest coarse vertex.
    cell = nearest[:, 0]
    edges = sp.triu(graph).tocoo()
    a, b = cell[edges.row], cell[edges.col]
    adjacency = np.zeros((count, count), dtype=bool)
    adjacency[a, b] = adjacency[b, a] = True
    np.fill_diagonal(adjacency, False)
    return CoarseMesh(indices, upsample, adjacency)


def mesh_hierarchy(levels: tuple[int, ...] = DEFAULT_LEVELS) -> list[CoarseMesh]:
    """Coarse levels, finest first (e.g. 194 then 49 vertices); each upsamples to the full mesh.

    To go from level i+1 to level i: ``coarse_to_coarse_upsample(levels[i], levels[i + 1])``.
    """
    if list(levels) != sorted(levels, reverse=True):
        raise ValueError(f"levels must be decreasing vertex counts, got {levels}")
    return [coarse_mesh(count) for count in levels]


@cache
def coarse_to_coarse_upsample(fine_count: int, coarse_count: int) -> sp.csr_matrix:
    """(fine_count, coarse_count) upsampling between two coarse levels (rows sum to 1).

    The rows of the full-mesh upsampling of the coarser level, taken at the finer level's
    vertices.
    """
    if coarse_count >= fine_count:
        raise ValueError(f"need coarse_count < fine_count, got {coarse_count}, {fine_count}")
    return coarse_mesh(coarse_count).upsample[coarse_mesh(fine_count).indices].tocsr()


# Parts (``mesh.PART_NAMES``) whose vertices may weigh into each joint: the bones that meet
# there (palm = 0, finger f's bones 1 + 3f .. 3 + 3f). The wrist: the palm; a fingertip: its
# distal bone.
def _joint_parts(joint: int) -> tuple[int, ...]:
    if joint == 0:
        return (0,)
    finger, level = divmod(joint - 1, 4)
    first = 1 + 3 * finger
    return ((0, first), (first, first + 1), (first + 1, first + 2), (first + 2,))[level]


def _fit_samples() -> tuple[np.ndarray, np.ndarray]:
    """(S, V, 3) vertices and (S, 21, 3) joints of random valid hands, model frame, metres."""
    # Imported here: the model module imports torch, which the coarse meshes do not need.
    from hand_pose_ros.hand.model import OpenHandModel
    from hand_pose_ros.hand.poses import random_poses
    from hand_pose_ros.hand.skeleton import NUM_SHAPE

    rng = np.random.default_rng(_FIT_SEED)
    poses = random_poses(_FIT_SAMPLES, rng)
    shapes = _FIT_SHAPE_SIGMA * rng.standard_normal((_FIT_SAMPLES, NUM_SHAPE))
    out = OpenHandModel().forward(poses, shapes)
    return out.vertices, out.joints


@cache
def joint_regressor() -> np.ndarray:
    """(21, V) float32 vertex -> joint regressor of the open hand model: joints = J @ vertices.

    Non-negative, rows sum to 1, row j non-zero only on the parts that meet at joint j; fitted
    by non-negative least squares over random valid poses and shapes (see the module docstring).
    """
    template = hand_template()
    vertices, joints = _fit_samples()
    n = len(template.vertices)
    regressor = np.zeros((NUM_JOINTS, n))
    for joint in range(NUM_JOINTS):
        candidates = np.flatnonzero(np.isin(template.parts, _joint_parts(joint)))
        # Rows: x, y, z of every sample, then the sum-to-one equation.
        a = vertices[:, candidates, :].transpose(0, 2, 1).reshape(-1, len(candidates))
        b = joints[:, joint, :].reshape(-1)
        a = np.vstack([a, np.full((1, len(candidates)), _SUM_WEIGHT)])
        b = np.append(b, _SUM_WEIGHT)
        weights, _ = nnls(a, b, maxiter=50 * len(candidates))
        regressor[joint, candidates] = weights / weights.sum()
    return regressor.astype(np.float32)
