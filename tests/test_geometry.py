"""libs.geometry against hand-worked cases and straightforward per-pair references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from libs.geometry import iou_matrix, nms, pairwise_distances, points_in_polygon


def _iou_reference(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def _random_boxes(rng: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0.0, 200.0, (n, 2))
    wh = rng.uniform(1.0, size, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize(
    ("a", "b", "inter", "union"),
    [
        ((0, 0, 2, 2), (0, 0, 2, 2), 4, 4),  # identical
        ((0, 0, 2, 2), (1, 0, 3, 2), 2, 6),  # half shifted
        ((0, 0, 4, 4), (1, 1, 3, 3), 4, 16),  # contained
        ((0, 0, 2, 2), (2, 0, 4, 2), 0, 8),  # touching edges
        ((0, 0, 2, 2), (5, 5, 6, 6), 0, 5),  # disjoint
        ((0, 0, 3, 1), (1, -1, 2, 3), 1, 6),  # cross
    ],
)
def test_iou_hand_cases(
    a: tuple[float, ...], b: tuple[float, ...], inter: float, union: float
) -> None:
    got = iou_matrix(np.array([a], float), np.array([b], float))
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(inter / union)
    # symmetric
    assert iou_matrix(np.array([b], float), np.array([a], float))[0, 0] == pytest.approx(
        inter / union
    )


def test_iou_degenerate_boxes_are_zero_not_nan() -> None:
    empty = np.array([[1.0, 1.0, 1.0, 1.0], [3.0, 3.0, 2.0, 2.0]])
    got = iou_matrix(empty, empty)
    assert np.isfinite(got).all()
    assert (got == 0.0).all()


def test_iou_matches_reference_on_random_boxes() -> None:
    rng = np.random.default_rng(1)
    a, b = _random_boxes(rng, 23), _random_boxes(rng, 17)
    got = iou_matrix(a, b)
    want = np.array([[_iou_reference(list(x), list(y)) for y in b] for x in a])
    assert got.shape == (23, 17)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_iou_keeps_float32_and_handles_empty() -> None:
    rng = np.random.default_rng(2)
    a = _random_boxes(rng, 5).astype(np.float32)
    got = iou_matrix(a, a)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.diag(got), 1.0, rtol=1e-6)
    assert iou_matrix(np.zeros((0, 4)), a).shape == (0, 5)
    assert iou_matrix(a, np.zeros((0, 4))).shape == (5, 0)
    with pytest.raises(ValueError, match="shape"):
        iou_matrix(np.zeros((3, 3)), a)


def _nms_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(_iou_reference(list(boxes[i]), list(boxes[k])) <= threshold for k in kept):
            kept.append(i)
    return sorted(kept)


def test_nms_chain_keeps_box_whose_suppressor_was_suppressed() -> None:
    # A overlaps B, B overlaps C, A does not overlap C.  B goes (A beats it), so C stays.
    boxes = np.array([[0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    iou_ab = _iou_reference(list(boxes[0]), list(boxes[1]))
    iou_bc = _iou_reference(list(boxes[1]), list(boxes[2]))
    assert iou_ab > 0.3 and iou_bc > 0.3
    assert _iou_reference(list(boxes[0]), list(boxes[2])) < 0.3
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]
    # With C the best: C suppresses B, and A survives as B no longer counts.
    assert nms(boxes, scores[::-1].copy(), 0.3).tolist() == [0, 2]
    # Middle box best: it removes both neighbours.
    assert nms(boxes, np.array([0.5, 0.9, 0.6]), 0.3).tolist() == [1]


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0])
def test_nms_matches_greedy_reference(threshold: float) -> None:
    rng = np.random.default_rng(int(threshold * 100))
    boxes = _random_boxes(rng, 40, size=60.0)
    scores = rng.random(40)
    scores[5] = scores[6]  # a tie: the lower index wins
    got = nms(boxes, scores, threshold)
    assert got.tolist() == _nms_reference(boxes, scores, threshold)
    assert np.all(np.diff(got) > 0)


def test_nms_threshold_is_strict_and_one_keeps_everything() -> None:
    boxes = np.array([[0, 0, 2, 2], [1, 0, 3, 2], [0, 0, 2, 2]], float)  # IoU 1/3, and 1
    scores = np.array([0.9, 0.5, 0.4])
    assert nms(boxes, scores, 1.0 / 3.0).tolist() == [0, 1]  # 1/3 is not above 1/3
    assert nms(boxes, scores, 0.33).tolist() == [0]
    assert nms(boxes, scores, 1.0).tolist() == [0, 1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="scores"):
        nms(boxes, scores[:2], 0.5)


SQUARE = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
U_SHAPE = np.array([[0, 0], [9, 0], [9, 9], [6, 9], [6, 3], [3, 3], [3, 9], [0, 9]], float)


@pytest.mark.parametrize(
    ("polygon", "point", "inside"),
    [
        (SQUARE, (5, 5), True),
        (SQUARE, (15, 5), False),
        (SQUARE, (-1, 5), False),
        (SQUARE, (5, -0.001), False),
        (SQUARE, (10, 5), True),  # right edge
        (SQUARE, (0, 5), True),  # left edge
        (SQUARE, (5, 10), True),  # top edge
        (SQUARE, (10, 10), True),  # vertex
        (SQUARE, (0, 0), True),  # vertex
        (SQUARE[::-1], (10, 5), True),  # clockwise: same answers
        (SQUARE[::-1], (5, 5), True),
        (U_SHAPE, (4.5, 6), False),  # in the notch
        (U_SHAPE, (1.5, 6), True),  # left arm
        (U_SHAPE, (7.5, 6), True),  # right arm
        (U_SHAPE, (4.5, 1.5), True),  # base
        (U_SHAPE, (4.5, 3), True),  # notch floor edge
        (U_SHAPE, (-5, 6), False),  # ray from the left passes both arms: even
    ],
)
def test_points_in_polygon_cases(
    polygon: np.ndarray, point: tuple[float, float], inside: bool
) -> None:
    got = points_in_polygon(np.array([point], float), polygon)
    assert got.dtype == bool
    assert got.tolist() == [inside]


def test_points_in_polygon_matches_opencv() -> None:
    rng = np.random.default_rng(3)
    poly = np.array([[10, 10], [200, 40], [150, 120], [220, 220], [40, 180], [80, 90]], float)
    pts = rng.uniform(0.0, 240.0, (500, 2))
    # Points on edges and vertices too.
    edge = np.arange(20) % len(poly)
    start, end = poly[edge], np.roll(poly, -1, axis=0)[edge]
    edge_pts = start + rng.random(20)[:, None] * (end - start)
    pts = np.concatenate([pts, poly, edge_pts])
    got = points_in_polygon(pts, poly)
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    want = np.array(
        [cv2.pointPolygonTest(contour, (float(x), float(y)), True) >= -1e-3 for x, y in pts]
    )
    assert got.tolist() == want.tolist()
    assert 50 < got.sum() < len(pts) - 50  # the sample has both kinds


def test_points_in_polygon_input_checks() -> None:
    assert points_in_polygon(np.zeros((0, 2)), SQUARE).shape == (0,)
    with pytest.raises(ValueError, match="3 points"):
        points_in_polygon(np.zeros((1, 2)), SQUARE[:2])


def test_pairwise_distances() -> None:
    pts = np.array([[0, 0], [3, 4], [6, 8]], float)
    got = pairwise_distances(pts)
    assert got.tolist() == [[0, 5, 10], [5, 0, 5], [10, 5, 0]]
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(30, 2)), rng.normal(size=(7, 2))
    np.testing.assert_allclose(pairwise_distances(a), cdist(a, a), atol=1e-12)
    np.testing.assert_allclose(pairwise_distances(a, b), cdist(a, b), atol=1e-12)
    d = pairwise_distances(a)
    assert (np.diag(d) == 0).all()
    assert (d == d.T).all()
    assert pairwise_distances(np.zeros((0, 2))).shape == (0, 0)
