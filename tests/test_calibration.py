"""FloorCalibration: exact and least-squares fits, and refusal of degenerate input."""

from __future__ import annotations

import numpy as np
import pytest

from libs.calibration import CalibrationError, FloorCalibration

# A camera looking obliquely at the floor: pixels -> metres.
H_TRUE = np.array(
    [
        [0.02, -0.004, -5.0],
        [0.001, -0.05, 30.0],
        [0.00002, 0.0012, 1.0],
    ]
)
QUAD_PX = [(100.0, 500.0), (700.0, 480.0), (650.0, 250.0), (180.0, 260.0)]


def _project(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    out = []
    for x, y in pts:  # plain per-point reference
        u, v, w = h @ np.array([x, y, 1.0])
        out.append((u / w, v / w))
    return np.array(out)


def test_four_points_recover_the_homography_exactly() -> None:
    img = np.array(QUAD_PX)
    cal = FloorCalibration.from_points(img, _project(H_TRUE, img))
    assert cal.reprojection_error_m < 1e-6
    assert cal.max_error_m < 1e-6
    rng = np.random.default_rng(0)
    others = rng.uniform([100, 250], [700, 500], (50, 2))
    np.testing.assert_allclose(cal.to_floor(others), _project(H_TRUE, others), atol=1e-6)
    assert cal.homography.shape == (3, 3)


def test_accepts_lists_of_tuples_as_config_gives_them() -> None:
    floor = [tuple(p) for p in _project(H_TRUE, np.array(QUAD_PX)).tolist()]
    cal = FloorCalibration.from_points(QUAD_PX, floor)
    assert cal.image_points.shape == (4, 2)
    assert cal.to_floor(np.array(QUAD_PX)).shape == (4, 2)


def test_least_squares_over_all_points_and_error_statistics() -> None:
    rng = np.random.default_rng(1)
    img = rng.uniform([50, 200], [750, 550], (12, 2))
    floor = _project(H_TRUE, img) + rng.normal(0.0, 0.05, (12, 2))
    cal = FloorCalibration.from_points(img, floor)
    residual = np.linalg.norm(cal.to_floor(img) - floor, axis=1)
    assert cal.reprojection_error_m == pytest.approx(float(np.sqrt(np.mean(residual**2))))
    assert cal.max_error_m == pytest.approx(float(residual.max()))
    assert 0.0 < cal.reprojection_error_m <= cal.max_error_m
    # Least squares through noisy points is close to the true mapping, better than the noise.
    probe = rng.uniform([100, 250], [700, 500], (100, 2))
    err = np.linalg.norm(cal.to_floor(probe) - _project(H_TRUE, probe), axis=1)
    assert np.median(err) < 0.1


def test_to_floor_is_vectorised_and_marks_points_beyond_the_horizon() -> None:
    img = np.array(QUAD_PX)
    cal = FloorCalibration.from_points(img, _project(H_TRUE, img))
    # Horizon of H_TRUE at x = 0: 0.0012 y + 1 = 0.
    horizon_y = -1.0 / H_TRUE[2, 1]
    pts = np.array([[0.0, -2000.0], [0.0, horizon_y - 1.0], [0.0, horizon_y + 5.0], [400.0, 400.0]])
    out = cal.to_floor(pts)
    assert out.shape == (4, 2)
    assert np.isnan(out[:2]).all()
    assert np.isfinite(out[2:]).all()
    np.testing.assert_allclose(out[2:], _project(H_TRUE, pts[2:]), rtol=1e-3)
    assert cal.to_floor(np.zeros((0, 2))).shape == (0, 2)


def test_calibration_error_is_a_value_error() -> None:
    assert issubclass(CalibrationError, ValueError)


GOOD_FLOOR = [(0.0, 0.0), (5.0, 0.0), (5.0, 5.0), (0.0, 5.0)]
GOOD_IMG = [(100.0, 500.0), (600.0, 500.0), (500.0, 200.0), (200.0, 200.0)]


@pytest.mark.parametrize(
    ("image", "floor", "message"),
    [
        (GOOD_IMG[:3], GOOD_FLOOR[:3], "at least 4"),
        ([], [], "at least 4"),
        (GOOD_IMG, GOOD_FLOOR[:3], "has 4 points but CalibrationFloorPoints has 3"),
        (
            [GOOD_IMG[0], GOOD_IMG[1], GOOD_IMG[2], GOOD_IMG[0]],
            GOOD_FLOOR,
            "CalibrationImagePoints 1 and 4 are the same point",
        ),
        (
            GOOD_IMG,
            [GOOD_FLOOR[0], GOOD_FLOOR[1], GOOD_FLOOR[1], GOOD_FLOOR[3]],
            "CalibrationFloorPoints 2 and 3 are the same point",
        ),
        (
            [(100.0, 500.0), (300.0, 500.0), (600.0, 500.0), (200.0, 200.0)],
            GOOD_FLOOR,
            "three of the four CalibrationImagePoints lie",
        ),
        (
            GOOD_IMG,
            [(0.0, 0.0), (5.0, 0.0), (5.0, 5.0), (2.5, 2.5)],  # 1, 3, 4 on the diagonal
            "three of the four CalibrationFloorPoints lie",
        ),
        (
            [(100.0, 500.0), (300.0, 500.0), (600.0, 500.0), (200.0, 500.01)],
            GOOD_FLOOR,
            "three of the four CalibrationImagePoints lie",
        ),
        (
            [(0.0, 0.0), (100.0, 1.0), (200.0, 2.0), (300.0, 3.0), (400.0, 4.0), (250.0, 2.0)],
            [(0.0, 0.0), (1.0, 0.0), (2.0, 1.0), (0.0, 2.0), (3.0, 3.0), (1.0, 3.0)],
            "CalibrationImagePoints lie (nearly) on one line",
        ),
        (
            [(100.0, float("nan")), *GOOD_IMG[1:]],
            GOOD_FLOOR,
            "not a finite number",
        ),
        (
            GOOD_IMG,
            [(float("inf"), 0.0), *GOOD_FLOOR[1:]],
            "not a finite number",
        ),
        (
            # The floor quadrilateral listed in crossing (bow-tie) order: no projective map
            # of the convex image quadrilateral keeps all four points in front of the camera.
            GOOD_IMG,
            [GOOD_FLOOR[0], GOOD_FLOOR[1], GOOD_FLOOR[3], GOOD_FLOOR[2]],
            "through the horizon",
        ),
        (GOOD_IMG, [(0.0, 0.0, 0.0)] * 4, "x,y points"),
        ([("a", "b")] * 4, GOOD_FLOOR, "not numbers"),
    ],
)
def test_degenerate_input_is_refused_with_a_reason(
    image: list[tuple[float, ...]], floor: list[tuple[float, ...]], message: str
) -> None:
    with pytest.raises(CalibrationError) as info:
        FloorCalibration.from_points(image, floor)
    assert message in str(info.value)


def test_more_than_four_points_with_three_collinear_are_fine() -> None:
    # Three points on one image row plus two off it: four of them are in general position.
    img = np.array([(100.0, 500.0), (400.0, 500.0), (700.0, 500.0), (650.0, 250.0), (180.0, 260.0)])
    cal = FloorCalibration.from_points(img, _project(H_TRUE, img))
    assert cal.max_error_m < 1e-6


def test_horizon_sign_is_normalised() -> None:
    img = np.array(QUAD_PX)
    cal = FloorCalibration.from_points(img, _project(-H_TRUE, img))
    w = cal.homography[2, :2] @ img.T + cal.homography[2, 2]
    assert (w > 0).all()
