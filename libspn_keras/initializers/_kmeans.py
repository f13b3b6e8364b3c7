"""Leaf location initialization by K-means clustering of the data of every spatial cell."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from scipy.optimize import linear_sum_assignment

from libspn_keras.initializers._poon_domingos import standardize_samplewise

CENTROID_INITIALIZATIONS = ("kmeans++", "random")


def _squared_distances(points: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """``||points - centroid||^2`` for ``points [P, N, D]`` and one centroid per problem ``[P, D]``: ``[P, N]``."""
    distances = np.zeros(points.shape[:2])
    for d in range(points.shape[-1]):  # one dimension at a time: no [P, N, D] temporary
        distances += np.square(points[..., d] - centroid[:, d, np.newaxis])
    return distances


def _assign(points: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (first on ties) of every point and its squared distance, each ``[P, N]``."""
    best = _squared_distances(points, centroids[:, 0])
    assignment = np.zeros(best.shape, dtype=np.int64)
    for cluster in range(1, centroids.shape[1]):
        distances = _squared_distances(points, centroids[:, cluster])
        closer = distances < best
        np.copyto(assignment, cluster, where=closer)
        np.minimum(best, distances, out=best)
    return assignment, best


def _cluster_means(points: np.ndarray, assignment: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Mean of the points of every cluster; an empty cluster keeps its centroid."""
    num_problems, _, dim = points.shape
    k = centroids.shape[1]
    flat = (assignment + k * np.arange(num_problems)[:, np.newaxis]).ravel()
    counts = np.bincount(flat, minlength=num_problems * k).reshape(num_problems, k)
    sums = np.stack(
        [np.bincount(flat, weights=points[..., d].ravel(), minlength=num_problems * k) for d in range(dim)], axis=-1
    ).reshape(num_problems, k, dim)
    filled = counts[..., np.newaxis] > 0
    return np.where(filled, sums / np.maximum(counts, 1)[..., np.newaxis], centroids)


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], stddev: float) -> np.ndarray:
    """Normal noise redrawn beyond two standard deviations (as ``keras.initializers.TruncatedNormal``)."""
    noise = rng.standard_normal(shape)
    outside = np.abs(noise) > 2.0
    while outside.any():
        noise[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(noise) > 2.0
    return stddev * noise


def _block_means(data: np.ndarray, factor: int) -> np.ndarray:
    """Average ``[N, H, W, D]`` over blocks of ``factor x factor`` cells (smaller blocks at the far edges)."""
    _, height, width, _ = data.shape
    rows, cols = np.arange(0, height, factor), np.arange(0, width, factor)
    sums = np.add.reduceat(np.add.reduceat(data, rows, axis=1), cols, axis=2)
    counts = np.diff(np.append(rows, height))[:, np.newaxis] * np.diff(np.append(cols, width))[np.newaxis, :]
    return sums / counts[np.newaxis, :, :, np.newaxis]


@keras.saving.register_keras_serializable(package="libspn_keras")
class KMeans(keras.initializers.Initializer):
    """Initializer learned through K-means from data.

    The centroids learned from K-means are used to initialize the location parameters of a location-scale leaf,
    such as a ``NormalLeaf``. This is particularly useful for variables with dimensionality of greater than 1.

    Currently only works for spatial SPNs: the leaf's input is ``[batch, height, width, var_dim]``, its
    ``location`` has shape ``[height, width, num_components, var_dim]`` and ``data`` is
    ``[num_samples, height, width, var_dim]``.

    The clustering is done **per cell**: the ``var_dim``-dimensional values of each cell (pixel) over the sampled
    data are clustered into ``k = min(num_components, max_num_clusters)`` clusters, for all cells at once
    (vectorized Lloyd iterations with one centroid set per cell). Steps:

    1. With ``samplewise_normalization``, every sample is z-scored over all its values (use it when the model
       starts with ``NormalizeStandardScore``).
    2. With ``downsample``, cells are averaged over blocks of ``downsample x downsample`` cells and each block is
       clustered once; every cell then takes the centroids of its block.
    3. A random ``data_fraction`` of the samples (at least ``k``) is clustered; centroids start with k-means++
       (each next centroid drawn with probability proportional to the squared distance to the nearest chosen
       one) or at random distinct samples, and a cell stops iterating once its mean squared error improves by
       less than ``stop_epsilon`` (or after ``num_iters`` iterations). Empty clusters keep their centroid.
    4. With ``group_centroids``, a second round of K-means over the centroids of all cells finds ``k`` group
       centroids while matching the centroids of each cell one-to-one to the groups (an optimal assignment per
       cell), and reorders every cell's centroids by group: component ``c`` then means the same thing in every
       cell (useful with weights shared across cells, e.g. ``Conv2DSum``). With ``use_groups``, every cell gets
       the group centroids themselves.
    5. If ``num_components > max_num_clusters``, each centroid is repeated ``num_components // k`` times
       (component ``c * (num_components // k) + r`` is copy ``r`` of centroid ``c``) and jittered with truncated
       normal noise of standard deviation ``jitter_factor``.

    Args:
        data: Data on which to perform K-means, ``[num_samples, height, width, var_dim]``.
        samplewise_normalization: Whether to normalize data before learning centroids.
        data_fraction: Fraction of the data to use for K-means (chosen randomly), in ``(0, 1]``.
        normalization_epsilon: Normalization constant (only used when ``samplewise_normalization`` is ``True``).
        stop_epsilon: Non-zero constant for difference in MSE on which to stop K-means fitting.
        num_iters: Maximum number of iterations.
        group_centroids: If ``True``, performs another round of K-means to group the centroids along the scope
            axes.
        max_num_clusters: Maximum number of clusters (use this to limit the memory needed).
        jitter_factor: If the number of clusters is larger than allowed according to ``max_num_clusters``, the
            learned ``max_num_clusters`` centroids are repeated and then jittered with noise generated from a
            truncated normal distribution with a standard deviation of ``jitter_factor``.
        centroid_initialization: Centroid initialization algorithm. If ``"kmeans++"``, will iteratively
            initialize clusters far apart from each other. If ``"random"``, the centroids will be initialized
            from the data randomly.
        downsample: Optional factor by which the cell grid is downsampled (block averages) before clustering.
        use_groups: With ``group_centroids``, give every cell the group centroids instead of its own centroids.
        seed: Seed of the random choices (data subset, centroid initialization, jitter). If ``None``, a seed is
            drawn from NumPy's global generator, so ``keras.utils.set_random_seed`` makes results reproducible.

    Raises:
        ValueError: If an argument is out of range, ``data`` is not ``[num_samples, height, width, var_dim]``
            with finite values, or (when called) the shape does not match the data.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> centers = np.array([[-5.0, 0.0], [5.0, 0.0]])
        >>> data = centers[rng.integers(2, size=(100, 3, 3))] + 0.1 * rng.normal(size=(100, 3, 3, 2))
        >>> init = KMeans(data, samplewise_normalization=False, data_fraction=1.0, seed=0)
        >>> locations = np.asarray(init((3, 3, 2, 2)))  # [height, width, num_components, var_dim]
        >>> np.round(locations[0, 0, :, 0]).tolist() in ([-5.0, 5.0], [5.0, -5.0])
        True
        >>> bool(np.all(np.round(locations) == np.round(locations[0, 0])))  # components line up across cells
        True
    """

    def __init__(
        self,
        data: np.ndarray | None = None,
        samplewise_normalization: bool = True,
        data_fraction: float = 0.2,
        normalization_epsilon: float = 1e-2,
        stop_epsilon: float = 1e-4,
        num_iters: int = 100,
        group_centroids: bool = True,
        max_num_clusters: int = 8,
        jitter_factor: float = 0.05,
        centroid_initialization: str = "kmeans++",
        downsample: int | None = None,
        use_groups: bool = False,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < float(data_fraction) <= 1.0:
            raise ValueError(f"KMeans expects 0 < data_fraction <= 1. Received: data_fraction={data_fraction}")
        if not float(normalization_epsilon) > 0.0:
            raise ValueError(
                f"KMeans expects normalization_epsilon > 0. Received: normalization_epsilon={normalization_epsilon}"
            )
        if not float(stop_epsilon) >= 0.0:
            raise ValueError(f"KMeans expects stop_epsilon >= 0. Received: stop_epsilon={stop_epsilon}")
        if not float(jitter_factor) >= 0.0:
            raise ValueError(f"KMeans expects jitter_factor >= 0. Received: jitter_factor={jitter_factor}")
        for name, value in (("num_iters", num_iters), ("max_num_clusters", max_num_clusters)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"KMeans expects {name} to be a positive integer. Received: {name}={value!r}")
        if downsample is not None and (isinstance(downsample, bool) or int(downsample) != downsample or downsample < 1):
            raise ValueError(
                f"KMeans expects downsample to be a positive integer or None. Received: downsample={downsample!r}"
            )
        if centroid_initialization not in CENTROID_INITIALIZATIONS:
            raise ValueError(
                f"KMeans expects centroid_initialization in {CENTROID_INITIALIZATIONS}. "
                f"Received: centroid_initialization={centroid_initialization!r}"
            )
        self.data = None if data is None else self._check_data(data)
        self.samplewise_normalization = bool(samplewise_normalization)
        self.data_fraction = float(data_fraction)
        self.normalization_epsilon = float(normalization_epsilon)
        self.stop_epsilon = float(stop_epsilon)
        self.num_iters = int(num_iters)
        self.group_centroids = bool(group_centroids)
        self.max_num_clusters = int(max_num_clusters)
        self.jitter_factor = float(jitter_factor)
        self.centroid_initialization = centroid_initialization
        self.downsample = None if downsample is None else int(downsample)
        self.use_groups = bool(use_groups)
        self.seed = seed

    @staticmethod
    def _check_data(data: Any) -> np.ndarray:
        array = np.asarray(data, dtype=np.float64)
        if array.ndim != 4:
            raise ValueError(
                "KMeans expects spatial data of shape [num_samples, height, width, var_dim]. "
                f"Received: data.shape={array.shape}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("KMeans expects finite data (remove samples with NaN or inf values first).")
        return array

    def __call__(self, shape: Any, dtype: Any = None) -> Any:
        """Return centroids shaped ``[height, width, num_components, var_dim]``."""
        if self.data is None:
            raise ValueError("KMeans needs data to learn centroids from. Received: data=None")
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4 or shape[:2] + shape[3:] != self.data.shape[1:]:
            raise ValueError(
                "KMeans initializes leaf locations of shape [height, width, num_components, var_dim] from data of "
                f"shape [num_samples, height, width, var_dim]. Received: shape={shape} for "
                f"data.shape={self.data.shape}"
            )
        height, width, num_components, var_dim = shape
        k = min(num_components, self.max_num_clusters)
        if num_components % k:
            raise ValueError(
                f"KMeans needs num_components to be a multiple of max_num_clusters={self.max_num_clusters} when it "
                f"is larger. Received: num_components={num_components}"
            )
        num_samples = len(self.data)
        if num_samples < k:
            raise ValueError(f"KMeans needs at least {k} samples to find {k} clusters. Received: {num_samples}")
        rng = np.random.default_rng(np.random.randint(2**31) if self.seed is None else self.seed)

        size = min(num_samples, max(math.ceil(num_samples * self.data_fraction), k))
        data = self.data[np.sort(rng.choice(num_samples, size=size, replace=False))]
        if self.samplewise_normalization:
            data = standardize_samplewise(data, self.normalization_epsilon)
        if self.downsample is not None:
            data = _block_means(data, self.downsample)
        grid = data.shape[1:3]
        points = np.ascontiguousarray(data.reshape(size, -1, var_dim).transpose(1, 0, 2))  # [cells, samples, var_dim]

        centroids = self._kmeans(points, self._initial_centroids(points, k, rng))
        if self.group_centroids:
            centroids = self._align_to_groups(centroids, rng)
        if num_components > k:
            centroids = np.repeat(centroids, num_components // k, axis=1)
            centroids = centroids + _truncated_normal(rng, centroids.shape, self.jitter_factor)
        centroids = centroids.reshape(*grid, num_components, var_dim)
        if self.downsample is not None:
            rows = np.arange(height) // self.downsample
            cols = np.arange(width) // self.downsample
            centroids = centroids[rows[:, np.newaxis], cols[np.newaxis, :]]
        return keras.ops.convert_to_tensor(centroids, dtype=dtype or keras.config.floatx())

    def _initial_centroids(self, points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        """Initial centroids ``[P, k, D]`` of every problem, drawn from its points ``[P, N, D]``."""
        num_problems, num_points, _ = points.shape
        problems = np.arange(num_problems)
        if self.centroid_initialization == "random":
            chosen = np.argsort(rng.random((num_problems, num_points)), axis=1)[:, :k]
            return points[problems[:, np.newaxis], chosen]
        centroids = [points[problems, rng.integers(num_points, size=num_problems)]]
        nearest = _squared_distances(points, centroids[0])
        for _ in range(1, k):
            total = nearest.sum(axis=1, keepdims=True)
            weights = np.where(total > 0, nearest / np.where(total > 0, total, 1.0), 1.0 / num_points)
            cumulative = np.cumsum(weights, axis=1)
            draw = rng.random((num_problems, 1)) * cumulative[:, -1:]
            index = np.minimum((cumulative <= draw).sum(axis=1), num_points - 1)
            centroids.append(points[problems, index])
            nearest = np.minimum(nearest, _squared_distances(points, centroids[-1]))
        return np.stack(centroids, axis=1)

    def _kmeans(self, points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        """Lloyd iterations for every problem at once; a problem stops when its MSE no longer improves."""
        centroids = centroids.copy()
        active = np.arange(len(points))  # problems still iterating
        previous = np.full(len(points), np.inf)
        for _ in range(self.num_iters):
            assignment, distances = _assign(points, centroids[active])
            mse = distances.mean(axis=1)
            improving = ~(np.abs(previous[active] - mse) < self.stop_epsilon)
            previous[active] = mse
            if not improving.all():
                active, points, assignment = active[improving], points[improving], assignment[improving]
            if not len(active):
                break
            centroids[active] = _cluster_means(points, assignment, centroids[active])
        return centroids

    def _align_to_groups(self, centroids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Reorder each cell's centroids ``[P, k, D]`` so that centroid ``c`` of every cell belongs to group ``c``."""
        num_problems, k, dim = centroids.shape
        flat = centroids.reshape(1, num_problems * k, dim)
        groups = self._initial_centroids(flat, k, rng)[0]  # [k, D]
        aligned = centroids
        previous = np.inf
        for _ in range(self.num_iters):
            costs = np.square(centroids[:, :, np.newaxis, :] - groups[np.newaxis, np.newaxis]).sum(axis=-1)
            order = np.stack([linear_sum_assignment(cost.T)[1] for cost in costs])  # group c takes order[p, c]
            aligned = centroids[np.arange(num_problems)[:, np.newaxis], order]
            groups = aligned.mean(axis=0)
            mse = float(np.square(aligned - groups).sum(axis=-1).mean())
            if abs(previous - mse) < self.stop_epsilon:
                break
            previous = mse
        if self.use_groups:
            return np.broadcast_to(groups, centroids.shape).copy()
        return aligned

    def get_config(self) -> dict[str, Any]:
        """Return the constructor arguments (the data is not serialized: its result lives in the weights)."""
        return {
            "data": None,
            "samplewise_normalization": self.samplewise_normalization,
            "data_fraction": self.data_fraction,
            "normalization_epsilon": self.normalization_epsilon,
            "stop_epsilon": self.stop_epsilon,
            "num_iters": self.num_iters,
            "group_centroids": self.group_centroids,
            "max_num_clusters": self.max_num_clusters,
            "jitter_factor": self.jitter_factor,
            "centroid_initialization": self.centroid_initialization,
            "downsample": self.downsample,
            "use_groups": self.use_groups,
            "seed": self.seed,
        }
