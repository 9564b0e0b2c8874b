"""Image -> floor calibration for metric distances (``DistMethod = CalibratedDistance``).

A user clicks four or more points on the floor in the camera image and gives their positions
on the floor in metres.  :meth:`FloorCalibration.from_points` fits the plane-to-plane
homography through them (least squares over all points) and refuses input from which no
trustworthy mapping follows, with a message that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["CalibrationError", "FloorCalibration"]

# Points closer than this fraction of the point set's extent are "the same point".
DUPLICATE_TOLERANCE = 1e-3
# The four best-spread points must form triangles at least this large, relative to the
# squared extent of the set.  0.005 means, for a base spanning the whole set, the third point
# is at least 1% of the extent away from the line through the other two.
MIN_RELATIVE_AREA = 0.005
# Largest accepted condition number of the homography between normalised coordinates.
MAX_CONDITION = 1e7


class CalibrationError(ValueError):
    """The calibration points cannot give a usable image-to-floor mapping."""


def _as_points(points: Sequence[Sequence[float]] | np.ndarray, what: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{what} are not numbers: {exc}") from exc
    if arr.size == 0:
        return arr.reshape(0, 2)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise CalibrationError(f"{what} must be a list of x,y points, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise CalibrationError(f"{what} contain a value that is not a finite number")
    return arr


def _triangle_areas(p: np.ndarray, i: int, j: int, k: np.ndarray) -> np.ndarray:
    """Areas of the triangles (p[i], p[j], p[k]) for every index in ``k``."""
    u = p[j] - p[i]
    v = p[k] - p[i]
    return 0.5 * np.abs(u[0] * v[:, 1] - u[1] * v[:, 0])


def _check_spread(p: np.ndarray, what: str, unit: str) -> None:
    """Refuse duplicate points and point sets that (nearly) lie on one line.

    Four points in general position are picked greedily: the two farthest apart, the point
    making the largest triangle with them, then the point whose smallest triangle with any
    two of the first three is largest.  With exactly four points these are all of them, so
    the check is "no three of the four are collinear".  Areas are compared with the squared
    extent (largest distance between two points) so the test does not depend on units.
    """
    n = len(p)
    diff = p[:, None, :] - p[None, :, :]
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    extent = float(dist.max())
    if extent == 0.0:
        raise CalibrationError(f"all {what} are the same point")
    np.fill_diagonal(dist, np.inf)
    i, j = np.unravel_index(int(np.argmin(dist)), dist.shape)
    if dist[i, j] <= DUPLICATE_TOLERANCE * extent:
        raise CalibrationError(
            f"{what} {min(i, j) + 1} and {max(i, j) + 1} are the same point "
            f"({_fmt(p[i])} and {_fmt(p[j])} {unit})"
        )
    np.fill_diagonal(dist, 0.0)
    a, b = (int(x) for x in np.unravel_index(int(np.argmax(dist)), dist.shape))
    rest = np.array([k for k in range(n) if k not in (a, b)])
    area_ab = _triangle_areas(p, a, b, rest)
    c = int(rest[int(np.argmax(area_ab))])
    best_area = float(area_ab.max())
    rest = np.array([k for k in range(n) if k not in (a, b, c)])
    smallest = np.minimum.reduce(
        [
            _triangle_areas(p, a, b, rest),
            _triangle_areas(p, a, c, rest),
            _triangle_areas(p, b, c, rest),
        ]
    )
    d = int(rest[int(np.argmax(smallest))])
    worst = min(best_area, float(smallest.max()))
    if worst < MIN_RELATIVE_AREA * extent * extent:
        if n == 4:
            raise CalibrationError(
                f"three of the four {what} lie (nearly) on one line; pick four floor points "
                "that form a wide quadrilateral, no three in a row"
            )
        picked = ", ".join(str(x + 1) for x in sorted((a, b, c, d)))
        raise CalibrationError(
            f"the {what} lie (nearly) on one line (best-spread points {picked} still have three "
            "almost in a row); add points that are spread over the floor area"
        )


def _fmt(point: np.ndarray) -> str:
    return f"{point[0]:g},{point[1]:g}"


def _normaliser(p: np.ndarray) -> np.ndarray:
    """Similarity moving ``p`` to zero mean and mean distance sqrt(2) from the origin."""
    centre = p.mean(axis=0)
    mean_dist = float(np.linalg.norm(p - centre, axis=1).mean())
    s = np.sqrt(2.0) / mean_dist
    return np.array([[s, 0.0, -s * centre[0]], [0.0, s, -s * centre[1]], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class FloorCalibration:
    """A fitted image-to-floor homography and how well it reproduces its own points.

    ``homography`` maps homogeneous image pixels to homogeneous floor metres and is scaled so
    that every calibration point has a positive third coordinate ``w`` (in front of the
    horizon).  ``reprojection_error_m`` is the RMS and ``max_error_m`` the largest distance
    between a calibration point mapped to the floor and its given floor position.  With
    exactly four points the fit is exact and both are ~0.
    """

    homography: np.ndarray
    image_points: np.ndarray
    floor_points_m: np.ndarray
    reprojection_error_m: float
    max_error_m: float

    @classmethod
    def from_points(
        cls,
        image_points: Sequence[Sequence[float]] | np.ndarray,
        floor_points_m: Sequence[Sequence[float]] | np.ndarray,
    ) -> FloorCalibration:
        """Fit the mapping through >= 4 image/floor point pairs; raise CalibrationError."""
        img = _as_points(image_points, "CalibrationImagePoints")
        flr = _as_points(floor_points_m, "CalibrationFloorPoints")
        if len(img) != len(flr):
            raise CalibrationError(
                f"CalibrationImagePoints has {len(img)} points but CalibrationFloorPoints has "
                f"{len(flr)}; each image point needs its floor position"
            )
        if len(img) < 4:
            raise CalibrationError(
                f"a floor calibration needs at least 4 point pairs, got {len(img)}"
            )
        _check_spread(img, "CalibrationImagePoints", "px")
        _check_spread(flr, "CalibrationFloorPoints", "m")

        h, _ = cv2.findHomography(img, flr, 0)
        if h is None or h.shape != (3, 3) or not np.isfinite(h).all():
            raise CalibrationError("no homography fits these calibration points")
        h = np.asarray(h, dtype=np.float64)
        conditioned = _normaliser(flr) @ h @ np.linalg.inv(_normaliser(img))
        cond = float(np.linalg.cond(conditioned))
        if not np.isfinite(cond) or cond > MAX_CONDITION:
            raise CalibrationError(
                f"the fitted homography is singular or ill-conditioned (condition number "
                f"{cond:.3g}); check that the image and floor points are listed in the same "
                "order"
            )
        w = h[2, 0] * img[:, 0] + h[2, 1] * img[:, 1] + h[2, 2]
        if np.all(w < 0.0):
            h = -h  # same mapping; make the calibration points' side of the horizon w > 0
            w = -w
        if np.any(w <= 0.0):
            bad = ", ".join(str(int(k) + 1) for k in np.flatnonzero(w <= 0.0))
            raise CalibrationError(
                f"the fitted mapping sends calibration point(s) {bad} through the horizon; the "
                "image and floor points are probably not listed in the same order"
            )
        projected = (h[:, :2] @ img.T + h[:, 2:3]).T
        mapped = projected[:, :2] / projected[:, 2:3]
        err = np.linalg.norm(mapped - flr, axis=1)
        return cls(
            homography=h,
            image_points=img,
            floor_points_m=flr,
            reprojection_error_m=float(np.sqrt(np.mean(err * err))),
            max_error_m=float(err.max()),
        )

    def to_floor(self, points_px: np.ndarray) -> np.ndarray:
        """Map image pixels ``(N, 2)`` to floor metres ``(N, 2)`` (float64).

        Points on or beyond the horizon line (``w <= 0``: they cannot be on the floor in front
        of the camera) map to NaN.
        """
        p = np.asarray(points_px, dtype=np.float64).reshape(-1, 2)
        h = self.homography
        x = h[0, 0] * p[:, 0] + h[0, 1] * p[:, 1] + h[0, 2]
        y = h[1, 0] * p[:, 0] + h[1, 1] * p[:, 1] + h[1, 2]
        w = h[2, 0] * p[:, 0] + h[2, 1] * p[:, 1] + h[2, 2]
        valid = w > 0.0
        safe_w = np.where(valid, w, 1.0)
        out = np.stack([x / safe_w, y / safe_w], axis=1)
        out[~valid] = np.nan
        return out
