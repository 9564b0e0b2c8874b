"""DBSCAN of engaged positions (:mod:`libs.metrics.clusters`) on hand-made point sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from libs.metrics.clusters import BINS_PER_EPS, ClusterWindow, dbscan, find_clusters

# Blob A: the corners of a unit square (pairwise 1 or sqrt(2) apart): with eps 1.5 each point
# sees all four, so all are core points.  Blob B: three points in a row 1 apart: only the
# middle one sees three points (the ends are 2 apart), so the ends are border points.
BLOB_A = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
BLOB_B = [(10.0, 10.0), (11.0, 10.0), (12.0, 10.0)]
NOISE = [(5.0, 5.0), (20.0, 0.0)]


def test_two_blobs_and_noise() -> None:
    points = np.array(BLOB_A + NOISE[:1] + BLOB_B + NOISE[1:])
    labels = dbscan(points, eps=1.5, min_samples=3)
    assert labels.tolist() == [0, 0, 0, 0, -1, 1, 1, 1, -1]
    a, b = sorted(find_clusters(points, 1.5, 3), key=lambda c: c.position)
    assert a.position == pytest.approx((0.5, 0.5))
    assert a.radius == pytest.approx(math.sqrt(0.5))
    assert (a.samples, a.intensity) == (4, 4.0)
    assert b.position == pytest.approx((11.0, 10.0))
    assert b.radius == pytest.approx(1.0)  # the border points belong to the cluster
    assert (b.samples, b.intensity) == (3, 3.0)


def test_most_intense_first_and_the_service_shape() -> None:
    points = np.array(BLOB_B + BLOB_A)
    found = find_clusters(points, 1.5, 3)
    assert [c.samples for c in found] == [4, 3]
    assert found[0].as_dict() == {"position": [0.5, 0.5], "intensity": 4.0,
                                  "radius": round(math.sqrt(0.5), 3), "samples": 4}


def test_min_samples_is_inclusive_and_counts_the_point_itself() -> None:
    points = np.array(BLOB_A + BLOB_B)
    # the middle of blob B sees exactly 3 points (itself included): core at 3, not at 4
    assert dbscan(points, 1.5, 4).tolist() == [0, 0, 0, 0, -1, -1, -1]
    # eps is inclusive: points exactly eps apart are neighbours
    assert dbscan(np.array([(0.0, 0.0), (2.0, 0.0)]), 2.0, 2).tolist() == [0, 0]
    assert dbscan(np.array([(0.0, 0.0), (2.0, 0.0)]), 1.999, 2).tolist() == [-1, -1]


def test_counts_and_seconds() -> None:
    """A point seen 3 times is 3 samples; intensity is the seconds when given."""
    points = np.array([(0.0, 0.0), (0.0, 1.0), (30.0, 30.0)])
    found = find_clusters(points, 1.5, 3, counts=np.array([2, 1, 1]),
                          seconds=np.array([0.5, 0.25, 0.25]))
    assert len(found) == 1
    (c,) = found
    assert c.samples == 3 and c.intensity == 0.75
    assert c.position == pytest.approx((0.0, 1 / 3))  # count-weighted mean
    assert c.radius == pytest.approx(2 / 3)


def test_empty_and_bad_input() -> None:
    assert dbscan(np.zeros((0, 2)), 1.0, 1).tolist() == []
    assert find_clusters(np.zeros((0, 2)), 1.0, 1) == []
    with pytest.raises(ValueError):
        dbscan(np.zeros((3, 3)), 1.0, 1)
    with pytest.raises(ValueError):
        dbscan(np.zeros((3, 2)), 0.0, 1)


def test_dbscan_properties_on_random_points() -> None:
    """The definition, checked against brute-force distances on random data."""
    rng = np.random.default_rng(7)
    centres = rng.uniform(0, 100, (6, 2))
    points = np.concatenate([c + rng.normal(0, 3, (40, 2)) for c in centres]
                            + [rng.uniform(0, 100, (60, 2))])
    eps, min_samples = 4.0, 5
    labels = dbscan(points, eps, min_samples)
    dist = np.linalg.norm(points[:, None] - points[None], axis=2)
    near = dist <= eps
    core = near.sum(axis=1) >= min_samples
    for i in np.flatnonzero(core):
        # a core point's neighbours are all in its cluster
        assert (labels[near[i]] == labels[i]).all()
    for i in np.flatnonzero(~core):
        # a border point is in the cluster of one of its core neighbours; noise has none
        core_near = near[i] & core
        if labels[i] == -1:
            assert not core_near.any()
        else:
            assert labels[i] in set(labels[core_near].tolist())
    for label in range(labels.max() + 1):
        # the core points of a cluster are linked by chains of core neighbours
        members = np.flatnonzero((labels == label) & core)
        reached = {int(members[0])}
        frontier = [int(members[0])]
        while frontier:
            k = frontier.pop()
            for j in np.flatnonzero(near[k] & core):
                if int(j) not in reached:
                    reached.add(int(j))
                    frontier.append(int(j))
        assert reached == set(members.tolist())
    assert labels.max() >= 5 and (labels == -1).any()


def test_window_expiry() -> None:
    w = ClusterWindow(window_seconds=10, eps=1.5, min_samples=3)
    s = 1_000_000
    w.add(0, np.array(BLOB_A), 0.5)
    w.add(8 * s, np.array(BLOB_B), 0.5)
    both = w.clusters()
    assert sorted(c.samples for c in both) == [3, 4]
    assert sorted(c.intensity for c in both) == [1.5, 2.0]
    w.add(12 * s, np.zeros((0, 2)), 0.5)  # the clock moves on: blob A (t=0) is older than 10 s
    (only_b,) = w.clusters()
    assert only_b.position == pytest.approx((11.0, 10.0)) and len(w) == 3
    w.add(18 * s, np.zeros((0, 2)), 0.5)  # exactly 10 s after blob B: out of the window
    assert w.clusters() == [] and len(w) == 0


def test_window_bins_keep_positions_and_intensities_exact() -> None:
    """Binning: the same clusters as on the raw samples, radius within a bin diagonal."""
    rng = np.random.default_rng(3)
    eps = 40.0
    frames = [np.concatenate([rng.normal((200, 300), 8, (2, 2)),
                              rng.normal((600, 320), 8, (1, 2))]) for _ in range(300)]
    w = ClusterWindow(3600, eps, 2)
    for k, pts in enumerate(frames):
        w.add(k * 100_000, pts, 0.1)
    binned = w.clusters()
    raw = find_clusters(np.concatenate(frames), eps, 2,
                        seconds=np.full(sum(len(f) for f in frames), 0.1))
    assert len(binned) == len(raw) == 2
    for b, r in zip(binned, raw, strict=True):
        assert b.samples == r.samples
        assert b.intensity == pytest.approx(r.intensity)
        assert b.position == pytest.approx(r.position, abs=1e-9)
        assert r.radius - eps / BINS_PER_EPS * math.sqrt(2) <= b.radius <= r.radius + 1e-9


def test_window_ignores_nan_positions() -> None:
    w = ClusterWindow(60, 1.0, 1)
    w.add(0, np.array([(np.nan, 1.0), (2.0, 2.0)]), 1.0)
    (c,) = w.clusters()
    assert c.position == (2.0, 2.0) and c.samples == 1
