"""Clustered heatmap of engaged people: DBSCAN over their recent positions.

This is the engagement service's heatmap (``window_seconds``, ``eps``, ``min_samples``,
``update_period``; a list of ``{position, intensity, radius}``), computed in the pipeline.

:func:`dbscan` is plain DBSCAN on a :class:`scipy.spatial.cKDTree`: a point is a *core*
point when the points within ``eps`` of it (itself included, distance ``<= eps``) number at
least ``min_samples``; clusters are the sets of core points linked by chains of core points
within ``eps`` of each other, plus the non-core ("border") points within ``eps`` of one of
their core points (a border point near two clusters joins the lower-numbered one; clusters
are numbered in the order of their first core point).  Everything else is noise (``-1``).
Points may carry a multiplicity (``counts``): a point with count 3 counts as three samples in
the core test.

:func:`find_clusters` turns the labels into :class:`Cluster` summaries:

- ``position``: the mean position of the cluster's samples (count-weighted);
- ``intensity``: the sum of the samples' ``seconds`` when given, else the number of samples;
- ``radius``: the largest distance from ``position`` to a member point;
- ``samples``: the number of samples.

:class:`ClusterWindow` keeps the samples of the last ``window_seconds`` (of the camera's
clock) and clusters them on demand.  To keep that cheap however long the window is (a person
standing still for an hour at 25 fps is 90,000 samples), samples are binned: positions are
snapped to a square grid of side ``eps / BINS_PER_EPS`` and each occupied bin becomes one
point at the *mean* of its samples, with their count and seconds.  Cluster positions,
sample counts and intensities are then exact; a radius may be smaller than the exact one by
at most the bin diagonal (``eps / BINS_PER_EPS * sqrt(2)``); bins whose means are within
``eps`` are neighbours, which can differ from the raw samples' answer by up to that diagonal.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

BINS_PER_EPS = 10
_KEY_OFFSET = 1 << 31  # bin indexes are shifted into [0, 2**32) before packing into a key


@dataclass(frozen=True)
class Cluster:
    position: tuple[float, float]
    intensity: float
    radius: float
    samples: int

    def as_dict(self, digits: int = 3) -> dict[str, Any]:
        """The engagement service's ``{position, intensity, radius}`` (plus ``samples``)."""
        return {
            "position": [round(self.position[0], digits), round(self.position[1], digits)],
            "intensity": round(self.intensity, 3),
            "radius": round(self.radius, digits),
            "samples": self.samples,
        }


def _as_points(points: np.ndarray) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {arr.shape}")
    return arr


def dbscan(
    points: np.ndarray,
    eps: float,
    min_samples: float,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster labels ``(N,)`` (``0, 1, ...`` in order of their first core point; ``-1``
    noise) of ``points`` ``(N, 2)``.  ``counts`` is each point's multiplicity (default 1).

    All in compiled code: the pairs within ``eps`` come from the KD-tree, the clusters are the
    connected components of the graph of core points and their core neighbours, and a border
    point joins the lowest-numbered cluster among its core neighbours.
    """
    if eps <= 0:
        raise ValueError("eps must be > 0")
    pts = _as_points(points)
    n = len(pts)
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return labels
    weight = np.ones(n) if counts is None else np.asarray(counts, np.float64).reshape(n)
    pairs = cKDTree(pts).query_pairs(eps, output_type="ndarray").reshape(-1, 2)
    i, j = pairs[:, 0], pairs[:, 1]
    mass = weight + np.bincount(i, weight[j], n) + np.bincount(j, weight[i], n)
    core = mass >= min_samples
    core_idx = np.flatnonzero(core)
    if not len(core_idx):
        return labels
    linked = core[i] & core[j]
    graph = coo_matrix((np.ones(int(linked.sum())), (i[linked], j[linked])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    comp_of_core = component[core_idx]
    uniq, first = np.unique(comp_of_core, return_index=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))  # number clusters by first core point
    labels[core_idx] = rank[np.searchsorted(uniq, comp_of_core)]
    mixed = core[i] != core[j]
    border = np.where(core[i[mixed]], j[mixed], i[mixed])
    anchor = np.where(core[i[mixed]], i[mixed], j[mixed])
    if len(border):
        best = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(best, border, labels[anchor])
        joined = best != np.iinfo(np.int64).max
        labels[joined] = best[joined]
    return labels


def find_clusters(
    points: np.ndarray,
    eps: float,
    min_samples: float,
    counts: np.ndarray | None = None,
    seconds: np.ndarray | None = None,
) -> list[Cluster]:
    """DBSCAN clusters of ``points`` summarised (see the module docstring), most intense
    first.  ``counts``: samples per point (default 1); ``seconds``: the intensity of each
    point (default: its count)."""
    pts = _as_points(points)
    n = len(pts)
    cnt = np.ones(n) if counts is None else np.asarray(counts, np.float64).reshape(n)
    sec = cnt if seconds is None else np.asarray(seconds, np.float64).reshape(n)
    labels = dbscan(pts, eps, min_samples, None if counts is None else cnt)
    out: list[Cluster] = []
    for label in range(int(labels.max(initial=-1)) + 1):
        members = labels == label
        p, c = pts[members], cnt[members]
        total = float(c.sum())
        centre = (p * c[:, None]).sum(axis=0) / total if total > 0 else p.mean(axis=0)
        radius = float(np.sqrt(((p - centre) ** 2).sum(axis=1)).max())
        out.append(
            Cluster(
                position=(float(centre[0]), float(centre[1])),
                intensity=float(sec[members].sum()),
                radius=radius,
                samples=round(total),
            )
        )
    out.sort(key=lambda cl: (-cl.intensity, cl.position))
    return out


class ClusterWindow:
    """The binned samples of the last ``window_seconds`` and their clusters.

    :meth:`add` takes the positions of one frame (same units as ``eps``) and the seconds
    that frame stands for; :meth:`clusters` drops samples older than ``window_seconds``
    before the newest one added (a sample at exactly that age is dropped too) and runs
    :func:`find_clusters` on the bins.
    """

    def __init__(self, window_seconds: float, eps: float, min_samples: float) -> None:
        if window_seconds <= 0 or eps <= 0:
            raise ValueError("window_seconds and eps must be > 0")
        self.window_us = round(window_seconds * 1_000_000)
        self.eps = float(eps)
        self.min_samples = float(min_samples)
        self.bin_size = self.eps / BINS_PER_EPS
        self._frames: deque[tuple[int, np.ndarray, np.ndarray, float]] = deque()
        # bin key -> [samples, seconds, sum of x, sum of y]
        self._bins: dict[int, list[float]] = {}
        self._newest_us: int | None = None

    def __len__(self) -> int:
        """Samples in the window (before expiring on the next :meth:`clusters`)."""
        return int(sum(v[0] for v in self._bins.values()))

    def add(self, ts_us: int, positions: np.ndarray, seconds: float) -> None:
        pts = _as_points(positions)
        pts = pts[np.isfinite(pts).all(axis=1)]
        if self._newest_us is None or ts_us > self._newest_us:
            self._newest_us = ts_us
        if not len(pts):
            return
        cells = np.clip(np.floor(pts / self.bin_size), -_KEY_OFFSET, _KEY_OFFSET - 1)
        cells = cells.astype(np.int64) + _KEY_OFFSET
        keys = (cells[:, 0] << 32) | cells[:, 1]
        self._frames.append((ts_us, keys, pts, float(seconds)))
        bins = self._bins
        for key, (x, y) in zip(keys.tolist(), pts.tolist(), strict=True):
            acc = bins.get(key)
            if acc is None:
                bins[key] = [1.0, seconds, x, y]
            else:
                acc[0] += 1.0
                acc[1] += seconds
                acc[2] += x
                acc[3] += y

    def expire(self) -> None:
        if self._newest_us is None:
            return
        oldest_kept = self._newest_us - self.window_us
        bins = self._bins
        while self._frames and self._frames[0][0] <= oldest_kept:
            _, keys, pts, seconds = self._frames.popleft()
            for key, (x, y) in zip(keys.tolist(), pts.tolist(), strict=True):
                acc = bins[key]
                acc[0] -= 1.0
                if acc[0] <= 0.5:
                    del bins[key]
                else:
                    acc[1] -= seconds
                    acc[2] -= x
                    acc[3] -= y

    def clusters(self) -> list[Cluster]:
        self.expire()
        if not self._bins:
            return []
        values = np.array(list(self._bins.values()), np.float64)
        counts = values[:, 0]
        means = values[:, 2:4] / counts[:, None]
        return find_clusters(means, self.eps, self.min_samples, counts, values[:, 1])
