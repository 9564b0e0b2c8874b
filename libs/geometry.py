"""Vectorised plane geometry on numpy arrays: box overlap, suppression, polygons, distances.

Boxes are corner boxes ``x1, y1, x2, y2`` (rows of an ``(N, 4)`` array) in continuous
coordinates: a box's width is ``x2 - x1`` (no "+1" pixel convention) and a box with
``x2 <= x1`` or ``y2 <= y1`` has area 0.  Every function works on all rows at once; none
loops in Python over pairs of items.
"""

from __future__ import annotations

import numpy as np

__all__ = ["iou_matrix", "nms", "pairwise_distances", "points_in_polygon"]


def _as_boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(boxes)
    # float32 boxes (as Detections holds them) stay float32: half the memory traffic.
    arr = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64, copy=False)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {arr.shape}")
    return arr


def _areas(boxes: np.ndarray) -> np.ndarray:
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    return w * h


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4).

    Returns an ``(N, M)`` array in ``[0, 1]``, float32 when both inputs are float32, else
    float64.  Two boxes whose union has no area (both degenerate) have IoU 0.
    """
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b")
    ax1, ay1, ax2, ay2 = (a[:, k, None] for k in range(4))  # (N, 1) columns
    bx1, by1, bx2, by2 = b.T  # (M,) rows
    iw = np.minimum(ax2, bx2)
    iw -= np.maximum(ax1, bx1)
    np.maximum(iw, 0.0, out=iw)
    ih = np.minimum(ay2, by2)
    ih -= np.maximum(ay1, by1)
    np.maximum(ih, 0.0, out=ih)
    inter = iw * ih
    union = _areas(a)[:, None] + _areas(b)[None, :]
    union -= inter
    # union == 0 only when both boxes are empty, and then inter == 0: the IoU comes out 0.
    np.maximum(union, np.finfo(union.dtype).tiny, out=union)
    return np.divide(inter, union, out=inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression in descending score order.

    A box is removed when its IoU with a *kept* box of higher score (ties: lower index first)
    is strictly greater than ``iou_threshold``.  Returns the indexes of the kept boxes in
    ascending index order (so ``detections.select(nms(...))`` keeps the original order).

    The IoU matrix is computed once; only boxes that actually overlap a better one above the
    threshold are resolved one by one, in score order, because whether they survive depends
    on whether the box that overlaps them survived.
    """
    boxes = _as_boxes(boxes, "boxes")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = len(boxes)
    if len(scores) != n:
        raise ValueError(f"{n} boxes but {len(scores)} scores")
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order]
    # over[i, j]: box of rank i overlaps box of rank j above the threshold, and i is better.
    over = np.triu(iou_matrix(ranked, ranked) > iou_threshold, k=1)
    contested = np.flatnonzero(over.any(axis=0))
    keep = np.ones(n, dtype=bool)  # indexed by rank
    for j in contested:  # boxes with at least one better overlapping box, in rank order
        keep[j] = not bool(np.any(over[:j, j] & keep[:j]))
    return np.sort(order[keep])


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which of ``points`` (N, 2) lie inside the simple polygon ``polygon`` (K, 2), K >= 3.

    Ray casting (even-odd rule) along +x, vectorised over points and edges.  Points on the
    boundary (on an edge or a vertex, within 1e-9 of the polygon's size) always count as
    **inside**, whichever way the polygon is wound.  The polygon is closed implicitly (the
    last vertex joins the first).  Returns a bool array of shape ``(N,)``.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        raise ValueError(f"a polygon needs at least 3 points (K, 2), got shape {poly.shape}")
    if len(pts) == 0:
        return np.zeros(0, dtype=bool)
    ax, ay = poly[:, 0], poly[:, 1]
    nxt = np.roll(poly, -1, axis=0)
    bx, by = nxt[:, 0], nxt[:, 1]
    px, py = pts[:, 0:1], pts[:, 1:2]  # (N, 1) against (K,) edges

    # Even-odd crossings: edges that straddle the horizontal line through the point (half-open
    # in y so a vertex is counted once), crossed to the right of the point.
    straddle = (ay > py) != (by > py)
    dy = by - ay
    safe_dy = np.where(dy == 0.0, 1.0, dy)
    x_cross = ax + (py - ay) * (bx - ax) / safe_dy
    crossings = np.count_nonzero(straddle & (px < x_cross), axis=1)
    inside = (crossings % 2) == 1

    # Boundary: distance from the point to an edge segment ~ 0.
    ex, ey = bx - ax, by - ay
    length2 = ex * ex + ey * ey
    scale = float(np.ptp(poly, axis=0).max()) or 1.0
    tol = 1e-9 * scale
    t = ((px - ax) * ex + (py - ay) * ey) / np.where(length2 == 0.0, 1.0, length2)
    t = np.clip(t, 0.0, 1.0)
    dx = px - (ax + t * ex)
    dyy = py - (ay + t * ey)
    on_edge = ((dx * dx + dyy * dyy) <= tol * tol).any(axis=1)
    return inside | on_edge


def pairwise_distances(points: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances between every pair of rows.

    With one argument: ``(N, N)`` symmetric distances among ``points`` (N, D), zero on the
    diagonal.  With ``other`` (M, D): the ``(N, M)`` distances from each point to each other
    point.  D is usually 2.
    """
    p = np.asarray(points, dtype=np.float64)
    p = p.reshape(len(p), -1) if p.size else p.reshape(0, 2)
    q = p if other is None else np.asarray(other, dtype=np.float64).reshape(-1, p.shape[1])
    total = np.zeros((len(p), len(q)))
    for k in range(p.shape[1]):  # over coordinates (2), not over pairs
        d = p[:, k, None] - q[None, :, k]
        d *= d
        total += d
    return np.sqrt(total, out=total)
